//! A limit on Kafka client calls that can outlive their own timeout.
//!
//! `rd_kafka_send_offsets_to_transaction` hands the offsets to the group coordinator through librdkafka's
//! coordinator-request state machine, which never checks its deadline (librdkafka #5456, open): when the
//! coordinator it has cached is down, or was dropped from the metadata while its broker restarted (#5511), the call
//! waits until some connection of the producer goes up or down. On a quiet cluster that is a broker closing an idle
//! connection (`connections.max.idle.ms`, ten minutes). The chaos run met it after a broker kill: the attribution
//! instances sat 5–10 minutes inside the call, their transactions timed out, and the credits they had computed
//! reached campaign-metrics after it had moved past their hours.
//!
//! [`within`] runs such a call on a thread of its own and stops waiting after a limit. The caller then treats the
//! transaction's outcome as unknown and starts over with new clients, whose `init_transactions` fences the stuck
//! producer and aborts its transaction; the thread keeps its clone of the producer until librdkafka returns.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use tracing::{warn, Span};

/// A call [`within`] gave up on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Abandoned {
    /// The call did not return in time; it goes on in the background.
    #[error("{call} did not return within {limit:?} (librdkafka #5456)")]
    NoReturn {
        /// What was called.
        call: &'static str,
        /// How long the caller waited.
        limit: Duration,
    },
    /// No thread could be started for the call, which was not made.
    #[error("{call}: cannot start a thread for it: {source}")]
    Spawn {
        /// What was to be called.
        call: &'static str,
        /// Why the thread did not start.
        source: std::io::Error,
    },
}

/// Runs `work` on a thread of its own and waits at most `limit` for its result. A call given up on finishes in the
/// background, and says so in the log when it does, with the tracing span of the caller.
pub(crate) fn within<T: Send + 'static>(
    call: &'static str,
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Abandoned> {
    let (sender, receiver) = mpsc::sync_channel(1);
    let span = Span::current();
    let started = Instant::now();
    std::thread::Builder::new()
        .name("adstream-kafka-call".into())
        .spawn(move || {
            let result = work();
            if sender.send(result).is_err() {
                let _entered = span.enter();
                warn!(
                    call,
                    after_secs = started.elapsed().as_secs_f64(),
                    "a Kafka client call given up on has returned"
                );
            }
        })
        .map_err(|source| Abandoned::Spawn { call, source })?;
    receiver
        .recv_timeout(limit)
        .map_err(|_| Abandoned::NoReturn { call, limit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_returns_in_time_gives_its_result() {
        assert_eq!(within("add", Duration::from_secs(5), || 2 + 2).unwrap(), 4);
    }

    #[test]
    fn a_call_that_does_not_return_is_given_up_on_at_the_limit() {
        let (_keep_blocked, blocked) = mpsc::channel::<()>();
        let started = Instant::now();
        let outcome = within("block", Duration::from_millis(200), move || blocked.recv());
        assert!(matches!(
            outcome,
            Err(Abandoned::NoReturn { call: "block", .. })
        ));
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
}
