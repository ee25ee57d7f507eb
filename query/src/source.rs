//! Kafka and the schema registry as the query engine sees them: topic metadata, offsets for times, offset ranges
//! read partition by partition, and writer schemas by id.
//!
//! Everything here blocks (librdkafka calls); async callers run it on tokio's blocking pool.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adstream_kafka::read;
use adstream_kafka::registry_client::{RegistryClient, RegistrySettings, DEFAULT_TIMEOUT};
use adstream_kafka::QuietEof;
use apache_avro::Schema;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::QueryError;

/// How long a metadata request may take before the query fails.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// A partition read that makes no progress for this long fails the query rather than hanging it.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How a topic's record timestamps follow its offsets, which decides where a time range's read may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampOrder {
    /// Written roughly in timestamp order (the event streams of producers and connectors): a record lies at most
    /// the source's maximum lateness behind newer ones, so a read ends at the first record past the range's end
    /// plus that lateness.
    Roughly,
    /// No order to rely on (processor outputs: one commit writes rows of many windows, each stamped with its
    /// window's start): a read goes to the partition's end and the scan filters by timestamp.
    Unordered,
}

/// Records of one partition between two offsets: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRange {
    /// Partition number.
    pub partition: i32,
    /// First offset to read.
    pub start: i64,
    /// One past the last offset to read.
    pub end: i64,
    /// The read also ends at the first record whose timestamp is at or after this (a time range's end plus the
    /// source's maximum lateness). Not an offset from Kafka's time index: in a topic written in transactions a
    /// commit marker carries the wall-clock time of its commit, so the index can point at a marker long before
    /// records whose timestamps lie inside the range (a processor's rows for last month's events, committed
    /// today). Markers are never handed to the reader, so only records end the read here.
    pub stop_at_ms: Option<i64>,
}

impl PartitionRange {
    /// Offsets in the range (an upper bound on its records: transaction markers and aborted records take
    /// offsets too, and a read with `stop_at_ms` may end early).
    pub fn len(&self) -> u64 {
        (self.end - self.start).max(0) as u64
    }

    /// Whether the range holds no offsets.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Shared counters of a query's reads, for progress output and for tests that check what a query fetched.
#[derive(Debug, Default)]
pub struct ScanProgress {
    /// Offsets the running scans planned to read (an upper bound: a time range ends at its first record past the
    /// range and its lateness).
    pub planned: AtomicU64,
    /// Records fetched from Kafka so far.
    pub fetched: AtomicU64,
}

impl ScanProgress {
    /// (fetched, planned) now.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.fetched.load(Ordering::Relaxed),
            self.planned.load(Ordering::Relaxed),
        )
    }
}

/// Kafka and the registry, shared by every table of a session.
pub struct KafkaSource {
    config: ClientConfig,
    registry: RegistryClient,
    /// Parsed writer schemas by id; leaked because there are few and datum readers borrow them for 'static.
    writers: Mutex<HashMap<u32, &'static Schema>>,
    /// How far behind a partition's newest timestamp a record may be written: time-range reads go this far past
    /// the range's end so that late records (whose timestamps lie inside the range) are found.
    max_lateness_ms: i64,
    progress: Arc<ScanProgress>,
}

impl KafkaSource {
    /// A source reading with the base client `config` (bootstrap servers, security) and the registry at
    /// `registry` (URL, credentials, CA bundle). Reads are `read_committed`: aborted transactions of the
    /// processors are never seen.
    pub fn new(
        config: ClientConfig,
        registry: impl Into<RegistrySettings>,
    ) -> Result<KafkaSource, QueryError> {
        let registry = registry.into();
        let registry = RegistryClient::connect(&registry, DEFAULT_TIMEOUT).map_err(|e| {
            QueryError::Registry {
                subject: "client setup".to_owned(),
                message: e.to_string(),
            }
        })?;
        Ok(KafkaSource {
            config,
            registry,
            writers: Mutex::new(HashMap::new()),
            max_lateness_ms: 24 * 3_600_000,
            progress: Arc::new(ScanProgress::default()),
        })
    }

    /// Sets how late (behind the newest timestamp of its partition) a record may be and still be found by a
    /// time-range read. Default one day.
    pub fn with_max_lateness(mut self, lateness: Duration) -> KafkaSource {
        self.max_lateness_ms = lateness.as_millis().min(i64::MAX as u128) as i64;
        self
    }

    /// The counters of this source's reads.
    pub fn progress(&self) -> Arc<ScanProgress> {
        self.progress.clone()
    }

    /// The registry client.
    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    /// How late a record may be and still be found by a time-range read.
    pub fn max_lateness_ms(&self) -> i64 {
        self.max_lateness_ms
    }

    /// A consumer for metadata and reads (no group membership: partitions are assigned by hand, nothing is
    /// committed).
    pub fn consumer(&self) -> Result<BaseConsumer<QuietEof>, QueryError> {
        let mut config = self.config.clone();
        config
            .set("group.id", "adstream-query")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            // A scan runs one consumer per partition, and each holds its prefetch queue, the fetch response being
            // parsed and the messages of the batch being decoded: librdkafka's defaults (64 MB queue, 50 MB
            // fetches) made a 4+4-partition scan hold ~900 MB, and 16 MB queues with 16 MB fetches still ~600 MB
            // over the process. With the queue's fetch backoff off (below), 4 MB queues and 2 MB fetches keep each
            // partition's reader fed at the decoder's rate.
            .set("fetch.max.bytes", "4194304")
            .set("max.partition.fetch.bytes", "2097152")
            .set("queued.max.messages.kbytes", "4096");
        // A scan drains that queue in well under librdkafka's default 1 s pause before the next fetch.
        read::without_fetch_queue_backoff(&mut config);
        config
            .create_with_context(QuietEof)
            .map_err(|e| QueryError::Kafka {
                topic: String::new(),
                message: format!("invalid client configuration: {e}"),
            })
    }

    /// Partition count of `topic`.
    pub fn partitions(&self, topic: &str) -> Result<i32, QueryError> {
        let consumer = self.consumer()?;
        partition_count(&consumer, topic)
    }

    /// Per partition of `topic`: the offsets to read for records with timestamps in `[from_ms, to_ms)` (either
    /// bound open when None), restricted to `partitions` when given.
    ///
    /// The start is exact: Kafka's offset for a time is the first record (in log order) whose timestamp is at or
    /// after it, so no earlier offset holds a record of the range. For a topic written in timestamp `order`, the
    /// read ends at the first record whose timestamp is at or after `to_ms` plus the source's maximum lateness
    /// (see [`PartitionRange::stop_at_ms`]), so that records written late, after newer ones, are still read;
    /// otherwise at the partition's end. The scan filters rows by timestamp afterwards.
    pub fn plan_ranges(
        &self,
        topic: &str,
        partitions: Option<&[i32]>,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        order: TimestampOrder,
    ) -> Result<Vec<PartitionRange>, QueryError> {
        let stop_at_ms = match order {
            TimestampOrder::Roughly => to_ms.map(|to| to.saturating_add(self.max_lateness_ms)),
            TimestampOrder::Unordered => None,
        };
        let consumer = self.consumer()?;
        let count = partition_count(&consumer, topic)?;
        let chosen: Vec<i32> = match partitions {
            Some(list) => list
                .iter()
                .copied()
                .filter(|p| *p >= 0 && *p < count)
                .collect(),
            None => (0..count).collect(),
        };
        let kafka = |e: KafkaError| QueryError::Kafka {
            topic: topic.to_owned(),
            message: e.to_string(),
        };
        let mut ranges = Vec::with_capacity(chosen.len());
        for &partition in &chosen {
            // Waits out a partition without a leader for a moment (a broker restarting, leadership moving back):
            // the chaos test's replay met NotLeaderForPartition here right after a broker kill.
            let (low, high) =
                read::watermarks::<_, Infallible>(&consumer, topic, partition, METADATA_TIMEOUT)
                    .map_err(|e| QueryError::Kafka {
                        topic: topic.to_owned(),
                        message: e.to_string(),
                    })?;
            ranges.push(PartitionRange {
                partition,
                start: low,
                end: high,
                stop_at_ms,
            });
        }
        let offsets_for = |time: i64| -> Result<Vec<Option<i64>>, QueryError> {
            let mut list = TopicPartitionList::new();
            for &partition in &chosen {
                list.add_partition_offset(topic, partition, Offset::Offset(time))
                    .map_err(kafka)?;
            }
            let answer = consumer
                .offsets_for_times(list, METADATA_TIMEOUT)
                .map_err(kafka)?;
            Ok(chosen
                .iter()
                .map(|&partition| {
                    answer
                        .find_partition(topic, partition)
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            // No record at or after the time.
                            _ => None,
                        })
                })
                .collect())
        };
        if let Some(from) = from_ms {
            for (range, offset) in ranges.iter_mut().zip(offsets_for(from)?) {
                range.start = offset.unwrap_or(range.end).max(range.start);
            }
        }
        for range in &mut ranges {
            range.end = range.end.max(range.start);
        }
        Ok(ranges)
    }

    /// Reads `range` of `topic` in order, handing batches of up to `batch_size` messages to `on_batch`; stops
    /// early when `on_batch` returns false. Records past the range's end (or the partition's readable end, for a
    /// partition with open transactions) are not read.
    pub fn read_range(
        &self,
        topic: &str,
        range: PartitionRange,
        batch_size: usize,
        mut on_batch: impl FnMut(&[BorrowedMessage<'_>]) -> Result<bool, QueryError>,
    ) -> Result<(), QueryError> {
        if range.is_empty() {
            return Ok(());
        }
        let kafka = |e: KafkaError| QueryError::Kafka {
            topic: topic.to_owned(),
            message: format!("partition {}: {e}", range.partition),
        };
        let consumer = self.consumer()?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, range.partition, Offset::Offset(range.start))
            .map_err(kafka)?;
        consumer.assign(&list).map_err(kafka)?;
        let mut batch: Vec<BorrowedMessage<'_>> = Vec::with_capacity(batch_size);
        let mut last_progress = std::time::Instant::now();
        loop {
            match consumer.poll(Duration::from_millis(200)) {
                None => {
                    if !batch.is_empty() {
                        self.hand_over(&mut batch, &mut on_batch)?;
                    }
                    if last_progress.elapsed() > STALL_TIMEOUT {
                        return Err(QueryError::Kafka {
                            topic: topic.to_owned(),
                            message: format!(
                                "partition {}: no record for {} s while reading offsets {}..{}",
                                range.partition,
                                STALL_TIMEOUT.as_secs(),
                                range.start,
                                range.end
                            ),
                        });
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(kafka(e)),
                Some(Ok(message)) => {
                    last_progress = std::time::Instant::now();
                    let offset = message.offset();
                    let past_time = range.stop_at_ms.is_some_and(|stop| {
                        message.timestamp().to_millis().is_some_and(|t| t >= stop)
                    });
                    if offset >= range.end || past_time {
                        break;
                    }
                    batch.push(message);
                    let last = offset + 1 >= range.end;
                    if batch.len() >= batch_size || last {
                        if !self.hand_over(&mut batch, &mut on_batch)? {
                            return Ok(());
                        }
                        if last {
                            return Ok(());
                        }
                    }
                }
            }
        }
        if !batch.is_empty() {
            self.hand_over(&mut batch, &mut on_batch)?;
        }
        Ok(())
    }

    fn hand_over<'c>(
        &self,
        batch: &mut Vec<BorrowedMessage<'c>>,
        on_batch: &mut impl FnMut(&[BorrowedMessage<'c>]) -> Result<bool, QueryError>,
    ) -> Result<bool, QueryError> {
        self.progress
            .fetched
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let more = on_batch(batch)?;
        batch.clear();
        Ok(more)
    }

    /// The writer schema registered under `id`, parsed (fetched once per id).
    pub fn writer_schema(&self, id: u32) -> Result<&'static Schema, QueryError> {
        if let Some(schema) = self.writers.lock().ok().and_then(|w| w.get(&id).copied()) {
            return Ok(schema);
        }
        let registry = self.registry.clone();
        let text = block_on(async move { registry.schema_by_id(id).await })
            .map_err(|e| QueryError::Registry {
                subject: format!("schema id {id}"),
                message: e.to_string(),
            })?
            .ok_or_else(|| QueryError::Registry {
                subject: format!("schema id {id}"),
                message: "unknown to the registry".to_owned(),
            })?;
        let schema = Schema::parse_str(&text).map_err(|e| QueryError::Registry {
            subject: format!("schema id {id}"),
            message: format!("does not parse: {e}"),
        })?;
        let schema: &'static Schema = Box::leak(Box::new(schema));
        if let Ok(mut writers) = self.writers.lock() {
            writers.insert(id, schema);
        }
        Ok(schema)
    }

    /// The latest schema registered under `subject`, parsed, with its id.
    pub fn latest_schema(&self, subject: &str) -> Result<(u32, Schema), QueryError> {
        let registry = self.registry.clone();
        let owned = subject.to_owned();
        let registered = block_on(async move { registry.latest(&owned).await })
            .map_err(|e| QueryError::Registry {
                subject: subject.to_owned(),
                message: e.to_string(),
            })?
            .ok_or_else(|| QueryError::Registry {
                subject: subject.to_owned(),
                message: "no schema registered (run `adstream schemas register`)".to_owned(),
            })?;
        let schema = Schema::parse_str(&registered.schema).map_err(|e| QueryError::Registry {
            subject: subject.to_owned(),
            message: format!("does not parse: {e}"),
        })?;
        Ok((registered.id, schema))
    }
}

/// Why a registry call from blocking code failed.
#[derive(Debug, thiserror::Error)]
enum RegistryCallError {
    /// The call's own runtime could not start.
    #[error("cannot start a runtime for a registry call: {0}")]
    Runtime(std::io::Error),
    /// The registry refused or could not be reached.
    #[error(transparent)]
    Registry(#[from] adstream_kafka::registry_client::RegistryClientError),
    /// The call's thread panicked.
    #[error("the registry call panicked")]
    Panicked,
}

/// Runs a registry call from blocking code, whether or not the thread belongs to a tokio runtime: on a thread of
/// its own with a runtime of its own (calls are rare: schemas are cached per id).
fn block_on<T: Send + 'static>(
    future: impl std::future::Future<
            Output = Result<T, adstream_kafka::registry_client::RegistryClientError>,
        > + Send
        + 'static,
) -> Result<T, RegistryCallError> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RegistryCallError::Runtime)?;
        Ok(runtime.block_on(future)?)
    })
    .join()
    .unwrap_or(Err(RegistryCallError::Panicked))
}

fn partition_count(consumer: &BaseConsumer<QuietEof>, topic: &str) -> Result<i32, QueryError> {
    read::partition_count::<_, Infallible>(consumer, topic, METADATA_TIMEOUT)
        .map_err(|e| QueryError::Kafka {
            topic: topic.to_owned(),
            message: e.to_string(),
        })?
        .ok_or_else(|| QueryError::NoSuchTopic(topic.to_owned()))
}
