//! `adstream replay`: a time range of one topic's events, optionally only one event type (`ce_type`) or one key,
//! re-produced to another topic with provenance headers, or written to a file.
//!
//! Both paths read only the offsets the range needs (offsets for times, and the key's partition when a key is
//! given). Re-produced records keep their key, value bytes (same schema ids), timestamp and headers, and gain
//! `replay_source_topic`, `replay_source_partition`, `replay_source_offset`, `replay_id` and `replayed_at`; the
//! producer is idempotent and every delivery is confirmed before the command reports success. Files are written
//! through the topic's history table (columns as in `adstream sql`): `.parquet`, `.csv`, or JSON lines otherwise.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adstream_kafka::partitioner::kafka_partition;
use adstream_processors::runtime::headers::{key_text, KafkaHeaders};
use adstream_query::instant::parse_instant;
use adstream_query::output::{write_results, OutputFormat};
use adstream_query::pushdown::{HEADERS, KEY, TIMESTAMP};
use adstream_query::table::{TableMode, TopicTable};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use datafusion::common::ScalarValue;
use datafusion::functions::core::expr_fn::named_struct;
use datafusion::functions_nested::expr_fn::array_has;
use datafusion::prelude::{col, lit, SessionContext};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};

use crate::config::Settings;
use crate::scan::{ProgressPrinter, ScanArgs};

/// Arguments of `adstream replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// Topic to read.
    #[arg(long)]
    topic: String,
    /// Start of the range (inclusive): RFC 3339, a date or epoch milliseconds.
    #[arg(long)]
    from: String,
    /// End of the range (exclusive).
    #[arg(long)]
    to: String,
    /// Only events of this CloudEvents type (the `ce_type` header, e.g. `io.adstream.ad.click.v1`).
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Only records with this key (the aggregate: a campaign id, a user id...).
    #[arg(long)]
    key: Option<String>,
    /// Re-produce the records to this topic (it must exist).
    #[arg(long, conflicts_with = "out", required_unless_present = "out")]
    to_topic: Option<String>,
    /// Write the records to this file: `.parquet`, `.csv`, or JSON lines for any other name.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    scan: ScanArgs,
}

/// Runs `adstream replay`.
pub async fn run(settings: &Settings, args: ReplayArgs) -> Result<()> {
    let from_ms = parse_instant(&args.from)?;
    let to_ms = parse_instant(&args.to)?;
    if to_ms <= from_ms {
        bail!("--to ({}) must be after --from ({})", args.to, args.from);
    }
    match (&args.to_topic, &args.out) {
        (Some(target), _) => to_topic(settings, &args, target.clone(), from_ms, to_ms).await,
        (None, Some(path)) => to_file(settings, &args, path, from_ms, to_ms).await,
        (None, None) => bail!("give --to-topic TOPIC or --out FILE"),
    }
}

fn timestamp(ms: i64) -> datafusion::prelude::Expr {
    lit(ScalarValue::TimestampMillisecond(
        Some(ms),
        Some("UTC".into()),
    ))
}

async fn to_file(
    settings: &Settings,
    args: &ReplayArgs,
    path: &PathBuf,
    from_ms: i64,
    to_ms: i64,
) -> Result<()> {
    let source = args.scan.open_source(settings)?;
    let topic = args.topic.clone();
    let table_source = source.clone();
    let table = tokio::task::spawn_blocking(move || {
        TopicTable::from_registry(table_source, &topic, TableMode::History)
    })
    .await??;
    let ctx = SessionContext::new();
    let mut frame = ctx
        .read_table(Arc::new(table))?
        .filter(col(TIMESTAMP).gt_eq(timestamp(from_ms)))?
        .filter(col(TIMESTAMP).lt(timestamp(to_ms)))?;
    if let Some(key) = &args.key {
        frame = frame.filter(col(KEY).eq(lit(key.as_str())))?;
    }
    if let Some(event_type) = &args.event_type {
        let header = named_struct(vec![
            lit("key"),
            lit("ce_type"),
            lit("value"),
            lit(event_type.as_str()),
        ]);
        frame = frame.filter(array_has(col(HEADERS), header))?;
    }
    let format = OutputFormat::for_path(path);
    let started = Instant::now();
    let progress = ProgressPrinter::start("replay", source.progress());
    let rows = write_results(frame.execute_stream().await?, format, Some(path.as_path())).await?;
    drop(progress);
    let (fetched, _) = source.progress().snapshot();
    eprintln!(
        "{rows} record(s) of {} written to {} ({fetched} fetched, {:.2} s)",
        args.topic,
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Counts failed deliveries and keeps the first error.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
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

async fn to_topic(
    settings: &Settings,
    args: &ReplayArgs,
    target: String,
    from_ms: i64,
    to_ms: i64,
) -> Result<()> {
    let source = args.scan.open_source(settings)?;
    let mut config = settings.kafka_config();
    config
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // The Java client's partitioner: a key lands where every other adstream writer puts it.
        .set("partitioner", "murmur2_random");
    let producer: ThreadedProducer<Deliveries> = config
        .create_with_context(Deliveries::default())
        .context("invalid Kafka producer configuration")?;
    let topic = args.topic.clone();
    let key = args.key.clone();
    let event_type = args.event_type.clone();
    let replay_id = format!(
        "replay-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let started = Instant::now();
    let progress = ProgressPrinter::start("replay", source.progress());
    let read_source = source.clone();
    let (sent, producer) = tokio::task::spawn_blocking(move || -> Result<_> {
        read_source
            .partitions(&target)
            .with_context(|| format!("--to-topic {target}"))?;
        let count = read_source.partitions(&topic)?;
        let partitions: Option<Vec<i32>> = key
            .as_ref()
            .map(|k| vec![kafka_partition(k.as_bytes(), count)]);
        let ranges =
            read_source.plan_ranges(&topic, partitions.as_deref(), Some(from_ms), Some(to_ms))?;
        let replayed_at = chrono::Utc::now().timestamp_millis().to_string();
        let mut sent = 0u64;
        for range in ranges {
            read_source.read_range(&topic, range, 4096, |messages| {
                for message in messages {
                    if !wanted(
                        message,
                        from_ms,
                        to_ms,
                        key.as_deref(),
                        event_type.as_deref(),
                    ) {
                        continue;
                    }
                    let headers = provenance(message, &topic, &replay_id, &replayed_at);
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
        Ok((sent, producer))
    })
    .await??;
    drop(progress);
    let producer = tokio::task::spawn_blocking(move || {
        let flushed = producer.flush(Duration::from_secs(60));
        (flushed, producer)
    })
    .await?;
    let (flushed, producer) = producer;
    flushed.map_err(|e| anyhow!("not every replayed record was confirmed by Kafka: {e}"))?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = producer
            .context()
            .first_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_default();
        bail!("{failed} of {sent} replayed record(s) were not delivered; first error: {first}");
    }
    eprintln!(
        "{sent} record(s) of {} replayed to {} in {:.2} s",
        args.topic,
        args.to_topic.as_deref().unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Whether `message` is in the range and matches the key and type filters.
fn wanted(
    message: &BorrowedMessage<'_>,
    from_ms: i64,
    to_ms: i64,
    key: Option<&str>,
    event_type: Option<&str>,
) -> bool {
    let in_range = message
        .timestamp()
        .to_millis()
        .is_some_and(|t| t >= from_ms && t < to_ms);
    let key_ok = key.is_none_or(|k| message.key() == Some(k.as_bytes()));
    let type_ok = event_type.is_none_or(|wanted| {
        KafkaHeaders::of(message)
            .iter()
            .any(|(key, value)| key == b"ce_type" && value == Some(wanted.as_bytes()))
    });
    // Watermark markers of the processors are progress announcements, never events.
    let event = message.key().is_some() || message.payload().is_some();
    in_range && key_ok && type_ok && event
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
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), adstream_query::QueryError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                back,
            )) => {
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((error, back)) => {
                return Err(adstream_query::QueryError::Kafka {
                    topic: back.topic.to_owned(),
                    message: error.to_string(),
                })
            }
        }
    }
}
