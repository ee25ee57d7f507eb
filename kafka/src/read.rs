//! Reading a topic to its end, written once: state restores, the registry's replay, the dead-letter tools, reports,
//! benchmarks and tests all read "everything there is now" the same way.
//!
//! A partition is at its end when librdkafka reports the end of partition (`enable.partition.eof=true`, see
//! [`reader_config`]), which under `read_committed` is the last stable offset, so transaction markers and aborted
//! records never keep a read waiting. With [`ReadOptions::stop_at_high_watermark`] a partition also ends at the
//! record just before the high watermark taken when the read starts, so records produced meanwhile are not read,
//! and empty partitions are not even assigned.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::is_transient_consumer_error;

/// How [`read_to_end`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// The read fails with [`ReadError::Stalled`] when neither a record nor an end of partition arrived for this
    /// long (time spent in the record callback does not count).
    pub stall_timeout: Duration,
    /// How long one `poll` waits.
    pub poll_interval: Duration,
    /// End each partition at the high watermark taken when the read starts (and skip empty partitions), besides
    /// the end-of-partition event.
    pub stop_at_high_watermark: bool,
    /// Log consumer errors other than end of partition as warnings and keep reading, instead of failing.
    pub tolerate_errors: bool,
}

impl Default for ReadOptions {
    /// 30 s stall timeout, 200 ms polls, ends at end-of-partition events only, errors fail the read.
    fn default() -> ReadOptions {
        ReadOptions {
            stall_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            stop_at_high_watermark: false,
            tolerate_errors: false,
        }
    }
}

/// Why reading a topic to its end failed. `E` is the record callback's own error.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E> {
    /// The topic's metadata could not be fetched.
    #[error("cannot describe topic '{topic}': {reason}")]
    Metadata {
        /// The topic.
        topic: String,
        /// What the client or broker said.
        reason: String,
    },
    /// A partition's offsets could not be read.
    #[error("cannot read the offsets of {topic} partition {partition}: {source}")]
    Watermarks {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// The partitions could not be assigned.
    #[error("cannot assign {topic}: {source}")]
    Assign {
        /// The topic.
        topic: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// The consumer reported an error while reading.
    #[error("reading {topic}: {source}")]
    Consume {
        /// The topic.
        topic: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// Nothing arrived for [`ReadOptions::stall_timeout`].
    #[error(
        "{topic}: no progress for {}s (partitions {open:?} not at their end, {read} records read)",
        timeout.as_secs_f64()
    )]
    Stalled {
        /// The topic.
        topic: String,
        /// The partitions not at their end yet.
        open: Vec<i32>,
        /// Records read before the stall.
        read: u64,
        /// The stall timeout that passed.
        timeout: Duration,
    },
    /// The record callback failed; the read stopped there.
    #[error("{0}")]
    Record(E),
}

/// `fetch.wait.max.ms` of the readers [`reader_config`] configures.
const READER_FETCH_WAIT_MS: &str = "10";

/// `fetch.queue.backoff.ms` of consumers that drain a backlog: how long librdkafka waits before fetching a partition
/// again once its local queue holds `queued.min.messages` (100,000 by default). librdkafka's default is 1 s, and a
/// consumer that drains the queue in less stops for the rest of that second: a read of 1M small records took 3.65 s
/// with it and 1.01 s with 10 ms (confluent-kafka on the same librdkafka, local broker); campaign-metrics on 4M
/// events finished in 39.4 s with it and 22.0 s with 10 ms, for the same CPU time.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// Sets `fetch.queue.backoff.ms` to [`FETCH_QUEUE_BACKOFF_MS`] unless `config` (the user's `-X` settings) has it.
pub fn without_fetch_queue_backoff(config: &mut ClientConfig) {
    if config.get("fetch.queue.backoff.ms").is_none() {
        config.set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    }
}

/// `base` plus what a reader needs: its own `group.id` (nothing is committed and no group is joined, partitions are
/// assigned by hand), end-of-partition events, `auto.offset.reset=earliest`, `read_committed` or not, and no
/// fetch pause on a full local queue ([`without_fetch_queue_backoff`]).
pub fn reader_config(base: &ClientConfig, group_id: &str, read_committed: bool) -> ClientConfig {
    let mut config = base.clone();
    without_fetch_queue_backoff(&mut config);
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        // The end of a partition is known only from a fetch that finds nothing more, which the broker holds back
        // for `fetch.wait.max.ms` (500 ms by default) waiting for data: a reader that wants the end, not new
        // records, asks to be answered at once. A restore reads several topics in turn, so this is its start-up time.
        .set("fetch.wait.max.ms", READER_FETCH_WAIT_MS)
        .set(
            "isolation.level",
            if read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        );
    config
}

/// The number of partitions of `topic`, or None when the broker says it does not exist. A topic the broker knows
/// but cannot describe yet (just created, leader election) is asked again until `timeout`.
pub fn partition_count<C: ConsumerContext, E>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>, ReadError<E>> {
    let deadline = Instant::now() + timeout;
    loop {
        let metadata =
            consumer
                .fetch_metadata(Some(topic), timeout)
                .map_err(|e| ReadError::Metadata {
                    topic: topic.to_owned(),
                    reason: format!("cannot reach Kafka: {e}"),
                })?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        match found.error() {
            None if !found.partitions().is_empty() => {
                return Ok(Some(found.partitions().len() as i32))
            }
            Some(code)
                if RDKafkaErrorCode::from(code) == RDKafkaErrorCode::UnknownTopicOrPartition =>
            {
                return Ok(None)
            }
            problem if Instant::now() >= deadline => {
                let reason = problem
                    .map(|code| RDKafkaErrorCode::from(code).to_string())
                    .unwrap_or_else(|| "no partitions".to_owned());
                return Err(ReadError::Metadata {
                    topic: topic.to_owned(),
                    reason,
                });
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Low and high watermarks of one partition. A partition without a leader yet (a topic just created, a broker
/// restarting) is asked again until `timeout`.
pub fn watermarks<C: ConsumerContext, E>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<(i64, i64), ReadError<E>> {
    let deadline = Instant::now() + timeout;
    loop {
        match consumer.fetch_watermarks(topic, partition, timeout) {
            Ok(found) => return Ok(found),
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::UnknownTopicOrPartition,
            )) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            Err(source) => {
                return Err(ReadError::Watermarks {
                    topic: topic.to_owned(),
                    partition,
                    source,
                })
            }
        }
    }
}

/// Reads `partitions` of `topic` from their beginning to their end, handing each record to `on_record` in offset
/// order within a partition (partitions interleaved). The consumer must have been created with
/// `enable.partition.eof=true` unless `options.stop_at_high_watermark` is set and the topic has no transactions.
/// The consumer's assignment is replaced. Returns the number of records handed over.
pub fn read_to_end<C: ConsumerContext, E>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
    options: &ReadOptions,
    on_record: impl FnMut(&BorrowedMessage<'_>) -> Result<(), E>,
) -> Result<u64, ReadError<E>> {
    read_until(consumer, topic, partitions, options, on_record, |_| true)
}

/// [`read_to_end`], where a partition at its end-of-partition event is finished only once `finished(partition)`
/// agrees; until then the read waits there for more records (bounded by the stall timeout). A partition ended by
/// [`ReadOptions::stop_at_high_watermark`] ends there whatever `finished` says. A state restore uses it to wait for the
/// records of a commit it knows happened but cannot read yet: under `read_committed` the end is the last stable
/// offset, which stays behind a transaction still open (a crashed writer's, until it times out) or a commit
/// whose markers have not landed.
pub fn read_until<C: ConsumerContext, E>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
    options: &ReadOptions,
    mut on_record: impl FnMut(&BorrowedMessage<'_>) -> Result<(), E>,
    mut finished: impl FnMut(i32) -> bool,
) -> Result<u64, ReadError<E>> {
    // Learn the partitions' leaders before assigning. Assigned at `Offset::Beginning` with no leader known yet,
    // librdkafka resolves the offset only on its next offset-query retry, half a second later: that wait, once per
    // topic, was most of a small restore (0.52 s to the first record of a 100-record topic, 0.03 s with this).
    partition_count(consumer, topic, options.stall_timeout)?;
    // Open partitions, each with its high watermark when that is where it ends.
    let mut open: BTreeMap<i32, Option<i64>> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for &partition in partitions {
        let end = if options.stop_at_high_watermark {
            let (low, high) = watermarks(consumer, topic, partition, options.stall_timeout)?;
            if high <= low {
                continue;
            }
            Some(high)
        } else {
            None
        };
        open.insert(partition, end);
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(|source| ReadError::Assign {
                topic: topic.to_owned(),
                source,
            })?;
    }
    if open.is_empty() {
        return Ok(0);
    }
    consumer
        .assign(&assignment)
        .map_err(|source| ReadError::Assign {
            topic: topic.to_owned(),
            source,
        })?;
    let mut read = 0u64;
    // Records and ends of partition seen, and that count when the clock was last read: the clock is read only after
    // a poll that brought neither (two clock reads per record were a few percent of a restore).
    let mut progress = 0u64;
    let mut progress_at_check = 0u64;
    let mut last_progress = Instant::now();
    // Partitions at their end that `finished` kept open, logged once each.
    let mut waiting = std::collections::BTreeSet::new();
    while !open.is_empty() {
        let before = progress;
        match consumer.poll(options.poll_interval) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                progress += 1;
                if finished(partition) {
                    open.remove(&partition);
                } else if waiting.insert(partition) {
                    tracing::info!(
                        topic,
                        partition,
                        "at the end, waiting for records still to come"
                    );
                }
            }
            // A broker restarting or a leader moving: librdkafka reconnects by itself, the stall timeout bounds
            // the wait (a restore failed on the first such error when a broker of the cluster was killed).
            Some(Err(error)) if options.tolerate_errors || is_transient_consumer_error(&error) => {
                tracing::warn!(topic, %error, "while reading to the end");
            }
            Some(Err(source)) => {
                return Err(ReadError::Consume {
                    topic: topic.to_owned(),
                    source,
                })
            }
            Some(Ok(message)) => {
                let partition = message.partition();
                // A record of a partition already ended is not progress.
                if let Some(&end) = open.get(&partition) {
                    if end.is_some_and(|high| message.offset() >= high) {
                        open.remove(&partition);
                    } else {
                        on_record(&message).map_err(ReadError::Record)?;
                        read += 1;
                        progress += 1;
                        if end.is_some_and(|high| message.offset() + 1 >= high) {
                            open.remove(&partition);
                        }
                    }
                }
            }
        }
        if progress == before {
            if progress != progress_at_check {
                // Time spent in the record callback (which may wait for a registry) is not the broker stalling.
                progress_at_check = progress;
                last_progress = Instant::now();
            } else if last_progress.elapsed() > options.stall_timeout {
                return Err(ReadError::Stalled {
                    topic: topic.to_owned(),
                    open: open.keys().copied().collect(),
                    read,
                    timeout: options.stall_timeout,
                });
            }
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_do_not_pause_fetching_on_a_full_queue_unless_the_user_says_so() {
        let reader = reader_config(&ClientConfig::new(), "g", true);
        assert_eq!(
            reader.get("fetch.queue.backoff.ms"),
            Some(FETCH_QUEUE_BACKOFF_MS)
        );
        let mut users = ClientConfig::new();
        users.set("fetch.queue.backoff.ms", "500");
        let reader = reader_config(&users, "g", true);
        assert_eq!(reader.get("fetch.queue.backoff.ms"), Some("500"));
    }
}
