//! Reading a dead-letter topic: every partition from its beginning to its end at call time, `read_committed` (so
//! dead letters of aborted transactions are never seen), partition by partition in offset order; and what
//! `adstream dlq inspect` keeps of it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use adstream_kafka::read::{self, ReadError, ReadOptions};
use adstream_kafka::QuietEof;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;

use super::DeadLetter;

/// Timeout of metadata and watermark requests.
const TIMEOUT: Duration = Duration::from_secs(10);
/// A partition read that makes no progress for this long is an error rather than a hang.
const STALL: Duration = Duration::from_secs(30);

/// The consumer type of every read here.
pub(crate) type Reader = BaseConsumer<QuietEof>;

/// Why a dead-letter topic (or a topic's metadata) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// librdkafka refused the client configuration.
    #[error("invalid Kafka client configuration")]
    Client(#[source] KafkaError),
    /// The cluster did not answer a metadata request.
    #[error("cannot reach Kafka at {bootstrap}")]
    Unreachable {
        /// The bootstrap servers asked.
        bootstrap: String,
        /// What failed (boxed: the error is large and this one is rare).
        #[source]
        source: Box<ReadError<Infallible>>,
    },
    /// The dead-letter topic does not exist.
    #[error(
        "dead-letter topic '{dlq_topic}' does not exist: no job reading '{source_topic}' has started, or the name \
         is wrong"
    )]
    NoSuchTopic {
        /// The dead-letter topic.
        dlq_topic: String,
        /// The topic its letters came from.
        source_topic: String,
    },
    /// Reading the topic failed (boxed: the error is large and this one is rare).
    #[error(transparent)]
    Read(Box<ReadError<Infallible>>),
    /// The thread reading the topic panicked or was cancelled.
    #[error("the reader thread failed")]
    Thread(#[source] tokio::task::JoinError),
}

/// `base` (the user's client settings) as a dead-letter reader: no group joined or committed, end-of-partition
/// events, `read_committed`.
pub(crate) fn reader_config(base: &ClientConfig) -> ClientConfig {
    let mut config = base.clone();
    config
        .set("group.id", "adstream-dlq")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    config
}

/// A reader created from `config`.
pub(crate) fn reader(config: &ClientConfig) -> Result<Reader, ScanError> {
    config
        .create_with_context(QuietEof)
        .map_err(ScanError::Client)
}

/// Number of partitions of `topic`, or None when it does not exist. A topic the broker knows but cannot describe
/// yet (just created, leader election) is asked again until [`TIMEOUT`].
pub(crate) fn partition_count(
    consumer: &Reader,
    bootstrap: &str,
    topic: &str,
) -> Result<Option<i32>, ScanError> {
    read::partition_count::<_, Infallible>(consumer, topic, TIMEOUT).map_err(|source| {
        ScanError::Unreachable {
            bootstrap: bootstrap.to_owned(),
            source: Box::new(source),
        }
    })
}

/// Reads every partition of `dlq_topic` from its beginning to its end at call time, handing each letter to
/// `visit`: in offset order within a partition, partitions interleaved. `base` is the user's client config,
/// `bootstrap` its servers (for messages), `source_topic` the topic the letters came from (for the message when
/// `dlq_topic` does not exist). Returns the partition count.
pub fn scan(
    base: &ClientConfig,
    bootstrap: &str,
    dlq_topic: &str,
    source_topic: &str,
    mut visit: impl FnMut(DeadLetter),
) -> Result<i32, ScanError> {
    let consumer = reader(&reader_config(base))?;
    let partitions = partition_count(&consumer, bootstrap, dlq_topic)?.ok_or_else(|| {
        ScanError::NoSuchTopic {
            dlq_topic: dlq_topic.to_owned(),
            source_topic: source_topic.to_owned(),
        }
    })?;
    // read_committed: a partition ends at its last stable offset, announced by an end-of-partition event, or at
    // the record just before the high watermark at call time (records after it arrived after the call).
    let options = ReadOptions {
        stall_timeout: STALL,
        poll_interval: Duration::from_millis(500),
        stop_at_high_watermark: true,
        tolerate_errors: false,
    };
    let all: Vec<i32> = (0..partitions).collect();
    read::read_to_end(&consumer, dlq_topic, &all, &options, |message| {
        visit(DeadLetter::from_message(message));
        Ok::<(), Infallible>(())
    })
    .map_err(|e| ScanError::Read(Box::new(e)))?;
    Ok(partitions)
}

/// [`scan`] off the async runtime (librdkafka's consumer blocks), gathering into `state`; returns it and the
/// partition count.
pub async fn scan_blocking<S: Send + 'static>(
    base: &ClientConfig,
    bootstrap: &str,
    dlq_topic: &str,
    source_topic: &str,
    mut state: S,
    mut visit: impl FnMut(&mut S, DeadLetter) + Send + 'static,
) -> Result<(S, i32), ScanError> {
    let base = base.clone();
    let bootstrap = bootstrap.to_owned();
    let (dlq_topic, source_topic) = (dlq_topic.to_owned(), source_topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let partitions = scan(&base, &bootstrap, &dlq_topic, &source_topic, |letter| {
            visit(&mut state, letter)
        })?;
        Ok((state, partitions))
    })
    .await
    .map_err(ScanError::Thread)?
}

/// What `adstream dlq inspect` shows of a dead-letter topic.
#[derive(Debug, Default)]
pub struct Inspection {
    /// Dead letters per class, all of them.
    pub counts: BTreeMap<String, u64>,
    /// Dead letters in the topic.
    pub total: u64,
    /// The first letters of the class asked for (any class without one), at most the limit, in partition, offset
    /// order.
    pub shown: Vec<DeadLetter>,
}

/// Reads `dlq_topic` to its end: the count per class, and the first `limit` letters of `class` (any class when
/// None) in partition, offset order.
pub async fn inspect(
    base: &ClientConfig,
    bootstrap: &str,
    dlq_topic: &str,
    source_topic: &str,
    class: Option<String>,
    limit: usize,
) -> Result<Inspection, ScanError> {
    /// The first `limit` letters of each partition: partitions arrive interleaved, and the first `limit` overall
    /// in partition, offset order are among these.
    type FirstPerPartition = BTreeMap<i32, Vec<DeadLetter>>;
    let (found, _) = scan_blocking(
        base,
        bootstrap,
        dlq_topic,
        source_topic,
        (Inspection::default(), FirstPerPartition::new()),
        move |(inspection, first), letter| {
            let letter_class = letter.class();
            inspection.total += 1;
            *inspection.counts.entry(letter_class.clone()).or_default() += 1;
            if class.as_deref().is_none_or(|c| c == letter_class) {
                let kept = first.entry(letter.partition).or_default();
                if kept.len() < limit {
                    kept.push(letter);
                }
            }
        },
    )
    .await?;
    let (mut inspection, first) = found;
    inspection.shown = first.into_values().flatten().take(limit).collect();
    Ok(inspection)
}
