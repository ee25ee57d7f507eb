//! Replaying a time range of one topic's events (optionally one event type, `ce_type`, or one key): re-produced to
//! another topic with provenance headers, or written to a file through the topic's history table.
//!
//! Both read only the offsets the range needs (offsets for times, and the key's partition when a key is given).
//! Re-produced records keep their key, value bytes (same schema ids), timestamp and headers, and gain
//! `replay_source_topic`, `replay_source_partition`, `replay_source_offset`, `replay_id` and `replayed_at`; the
//! producer is idempotent and every delivery is confirmed before success is reported. Files have the columns of
//! the history table (as in `adstream sql`): `.parquet`, `.csv`, or JSON lines otherwise.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adstream_kafka::partitioner::kafka_partition;
use adstream_kafka::produce::send_waiting_for_room;
use adstream_processors::runtime::headers::{key_text, KafkaHeaders};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::functions::core::expr_fn::named_struct;
use datafusion::functions_nested::expr_fn::array_has;
use datafusion::prelude::{col, lit, Expr, SessionContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message};

use crate::output::{write_results, OutputError, OutputFormat};
use crate::pushdown::{HEADERS, KEY, TIMESTAMP};
use crate::source::{KafkaSource, TimestampOrder};
use crate::table::{TableMode, TopicTable};
use crate::QueryError;

/// How long the producer may take to confirm the last deliveries.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Kafka, the registry or the topic's table failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The range could not be planned or read as a table.
    #[error(transparent)]
    Plan(#[from] DataFusionError),
    /// The file could not be written.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// librdkafka refused the producer configuration.
    #[error("invalid Kafka producer configuration")]
    Producer(#[source] KafkaError),
    /// The producer did not confirm every record in time.
    #[error("not every replayed record was confirmed by Kafka: {0}")]
    Unconfirmed(KafkaError),
    /// Kafka refused some records.
    #[error("{failed} of {sent} replayed record(s) were not delivered; first error: {first}")]
    Undelivered {
        /// Records refused.
        failed: u64,
        /// Records sent.
        sent: u64,
        /// The first refusal.
        first: String,
    },
    /// The thread reading the topic panicked or was cancelled.
    #[error("the replay thread failed")]
    Thread(#[from] tokio::task::JoinError),
}

/// What to replay: the events of `topic` with timestamps in `[from_ms, to_ms)`, optionally of one key and one
/// CloudEvents type.
#[derive(Debug, Clone)]
pub struct ReplayRange {
    /// The topic read.
    pub topic: String,
    /// Start (epoch millis), inclusive.
    pub from_ms: i64,
    /// End (epoch millis), exclusive.
    pub to_ms: i64,
    /// Only records with this key.
    pub key: Option<String>,
    /// Only records whose `ce_type` header is this.
    pub event_type: Option<String>,
}

impl ReplayRange {
    /// Whether `message` is in the range and matches the key and type filters.
    fn wants(&self, message: &BorrowedMessage<'_>) -> bool {
        let in_range = message
            .timestamp()
            .to_millis()
            .is_some_and(|t| t >= self.from_ms && t < self.to_ms);
        let key_ok = self
            .key
            .as_deref()
            .is_none_or(|k| message.key() == Some(k.as_bytes()));
        let type_ok = self.event_type.as_deref().is_none_or(|wanted| {
            KafkaHeaders::of(message)
                .iter()
                .any(|(key, value)| key == b"ce_type" && value == Some(wanted.as_bytes()))
        });
        // Watermark markers of the processors are progress announcements, never events.
        let event = message.key().is_some() || message.payload().is_some();
        in_range && key_ok && type_ok && event
    }
}

/// A timestamp literal comparable with the tables' `_timestamp` column.
fn timestamp(ms: i64) -> Expr {
    lit(ScalarValue::TimestampMillisecond(
        Some(ms),
        Some("UTC".into()),
    ))
}

/// Writes the range's records to `path` in the format its name asks for ([`OutputFormat::for_path`]); returns the
/// row count.
pub async fn to_file(
    source: &Arc<KafkaSource>,
    range: &ReplayRange,
    path: &Path,
) -> Result<usize, ReplayError> {
    let topic = range.topic.clone();
    let table_source = source.clone();
    // Registry and metadata calls block: off the async threads.
    let table = tokio::task::spawn_blocking(move || {
        // Replays read event streams, written roughly in time order.
        TopicTable::from_registry(table_source, &topic, TableMode::History)
            .map(TopicTable::in_timestamp_order)
    })
    .await??;
    let ctx = SessionContext::new();
    let mut frame = ctx
        .read_table(Arc::new(table))?
        .filter(col(TIMESTAMP).gt_eq(timestamp(range.from_ms)))?
        .filter(col(TIMESTAMP).lt(timestamp(range.to_ms)))?;
    if let Some(key) = &range.key {
        frame = frame.filter(col(KEY).eq(lit(key.as_str())))?;
    }
    if let Some(event_type) = &range.event_type {
        let header = named_struct(vec![
            lit("key"),
            lit("ce_type"),
            lit("value"),
            lit(event_type.as_str()),
        ]);
        frame = frame.filter(array_has(col(HEADERS), header))?;
    }
    let format = OutputFormat::for_path(path);
    Ok(write_results(frame.execute_stream().await?, format, Some(path)).await?)
}

/// Counts failed deliveries and keeps the first error.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.first_error.lock() {
                first.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

/// Re-produces the range's records to `target` (which must exist) with a producer made from `config` (the user's
/// client settings); returns how many were sent, once Kafka confirmed every one.
pub async fn to_topic(
    source: &Arc<KafkaSource>,
    config: &ClientConfig,
    range: &ReplayRange,
    target: &str,
) -> Result<u64, ReplayError> {
    let mut config = config.clone();
    config
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // The Java client's partitioner: a key lands where every other adstream writer puts it.
        .set("partitioner", "murmur2_random");
    let producer: ThreadedProducer<Deliveries> = config
        .create_with_context(Deliveries::default())
        .map_err(ReplayError::Producer)?;
    let replay_id = format!(
        "replay-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let (source, range, target) = (source.clone(), range.clone(), target.to_owned());
    // librdkafka's reads and the producer's queue block: off the async threads, flush included.
    tokio::task::spawn_blocking(move || -> Result<u64, ReplayError> {
        let count = source.partitions(&range.topic)?;
        let partitions: Option<Vec<i32>> = range
            .key
            .as_ref()
            .map(|k| vec![kafka_partition(k.as_bytes(), count)]);
        let ranges = source.plan_ranges(
            &range.topic,
            partitions.as_deref(),
            Some(range.from_ms),
            Some(range.to_ms),
            TimestampOrder::Roughly,
        )?;
        let replayed_at = chrono::Utc::now().timestamp_millis().to_string();
        let mut sent = 0u64;
        for partition_range in ranges {
            source.read_range(&range.topic, partition_range, 4096, |messages| {
                for message in messages {
                    if !range.wants(message) {
                        continue;
                    }
                    let headers = provenance(message, &range.topic, &replay_id, &replayed_at);
                    let mut record = BaseRecord::to(&target).headers(headers);
                    if let Some(k) = message.key() {
                        record = record.key(k);
                    }
                    if let Some(v) = message.payload() {
                        record = record.payload(v);
                    }
                    if let Some(ts) = message.timestamp().to_millis() {
                        record = record.timestamp(ts);
                    }
                    send(&producer, record)?;
                    sent += 1;
                }
                Ok(true)
            })?;
        }
        producer
            .flush(FLUSH_TIMEOUT)
            .map_err(ReplayError::Unconfirmed)?;
        let failed = producer.context().failed.load(Ordering::Relaxed);
        if failed > 0 {
            let first = producer
                .context()
                .first_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_default();
            return Err(ReplayError::Undelivered {
                failed,
                sent,
                first,
            });
        }
        Ok(sent)
    })
    .await?
}

/// The record's headers plus where it was replayed from (an earlier replay's provenance is replaced).
fn provenance(
    message: &BorrowedMessage<'_>,
    topic: &str,
    replay_id: &str,
    replayed_at: &str,
) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    for (key, value) in KafkaHeaders::of(message).iter() {
        if !key.starts_with(b"replay") {
            headers = headers.insert(Header {
                key: &key_text(key),
                value,
            });
        }
    }
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    for (key, value) in [
        ("replay_source_topic", topic),
        ("replay_source_partition", partition.as_str()),
        ("replay_source_offset", offset.as_str()),
        ("replay_id", replay_id),
        ("replayed_at", replayed_at),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    headers
}

/// Sends one record, waiting out a full local queue.
fn send(
    producer: &ThreadedProducer<Deliveries>,
    record: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), QueryError> {
    send_waiting_for_room(producer, record).map_err(|refused| QueryError::Kafka {
        topic: refused.1.topic.to_owned(),
        message: refused.0.to_string(),
    })
}
