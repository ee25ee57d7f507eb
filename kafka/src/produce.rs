//! Enqueueing records on a producer whose local queue may be full.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};

/// How long to wait before enqueueing again on a full queue.
const FULL_QUEUE_PAUSE: Duration = Duration::from_millis(5);

/// A record `send` could not enqueue, and why (the record comes back to the caller, as rdkafka returns it).
pub type NotEnqueued<'a, K, P, D> = Box<(KafkaError, BaseRecord<'a, K, P, D>)>;

/// Enqueues `record` on `producer`, waiting while the producer's local queue is full: its own thread serves
/// deliveries and makes room. Any other error is returned with the record. Blocks the calling thread while it waits.
// The closure has the shape of rdkafka's own `send`, which returns the record by value in its error.
#[allow(clippy::result_large_err)]
pub fn send_waiting_for_room<'a, K, P, C>(
    producer: &ThreadedProducer<C>,
    record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
) -> Result<(), NotEnqueued<'a, K, P, C::DeliveryOpaque>>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
    C: ProducerContext + 'static,
{
    retry_while_full(record, |record| producer.send(record)).map_err(Box::new)
}

/// [`send_waiting_for_room`] over any `send` that hands the record back on failure.
fn retry_while_full<R>(
    mut record: R,
    mut send: impl FnMut(R) -> Result<(), (KafkaError, R)>,
) -> Result<(), (KafkaError, R)> {
    loop {
        match send(record) {
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(FULL_QUEUE_PAUSE);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_is_waited_out_and_other_errors_return_the_record() {
        let mut full = 3;
        let sent = retry_while_full("r", |record| {
            if full > 0 {
                full -= 1;
                Err((
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    record,
                ))
            } else {
                Ok(())
            }
        });
        assert!(sent.is_ok() && full == 0);
        let refused = retry_while_full("r", |record| {
            Err((
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                record,
            ))
        });
        assert!(matches!(refused, Err((_, "r"))));
    }
}
