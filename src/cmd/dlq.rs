//! `adstream dlq inspect` and `adstream dlq redrive`: what landed in a dead-letter topic and why, and re-sending
//! selected dead letters to the topic they came from.
//!
//! A dead letter is the original record (same partition, key, value bytes and timestamp) written by a job to
//! `dlq.<topic>` with headers that say why (`dlq_error_class`, `dlq_error_message`), where from (`source_topic`,
//! `source_partition`, `source_offset`), when (`redirected_at`, epoch millis), by which job (`redirected_by`, its
//! application id) and `correlation_id`.
//!
//! Both commands read the dead-letter topic from the beginning to its end at call time (`read_committed`, so
//! dead letters of aborted transactions are never shown or re-sent), partition by partition in offset order,
//! and exit.
//!
//! The format's rules (the record type, which topic a letter may go back to, one re-send per source record, the
//! headers of a re-sent record) are library code in `adstream_processors::runtime::dead_letter`; this module
//! parses arguments, reads the topic, prints and produces.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, SecondsFormat};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use adstream_kafka::read::{self, ReadError, ReadOptions};
use adstream_kafka::QuietEof;
use adstream_processors::runtime::dead_letter::{
    header, keep_one_per_source, redrive_headers, topics_of, Class, DeadLetter,
};

use crate::config::Settings;

/// Timeout of metadata and watermark requests.
const TIMEOUT: Duration = Duration::from_secs(10);
/// A partition read that makes no progress for this long is an error rather than a hang.
const STALL: Duration = Duration::from_secs(30);
/// Bytes of the value shown in the table's hex preview.
const PREVIEW_BYTES: usize = 16;
/// Output format of `dlq inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One readable block per dead letter, then a per-class summary.
    Table,
    /// One JSON object per line (every header, key and value in hex); the per-class summary goes to stderr.
    Json,
}

/// Arguments of `adstream dlq inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Source topic whose dead letters to list (e.g. `ads.clicks` reads `dlq.ads.clicks`), or the dead-letter
    /// topic itself.
    pub topic: String,
    /// Show at most this many dead letters (in partition, offset order); the summary still counts all of them.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Show only dead letters of this class (`dlq_error_class`), e.g. `invalid-value` or `bad-magic-byte`.
    #[arg(long, value_name = "CLASS")]
    pub class: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Arguments of `adstream dlq redrive`. At least one selection (`--class`, `--offsets` or `--all`) is required;
/// `--class` and `--offsets` together select the dead letters matching both.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Select with --class, --offsets (with --partition) or --all; --class and --offsets \
                        together select the dead letters matching both. Records that fail again are dead-lettered \
                        again (as new dead letters)."
)]
pub struct RedriveArgs {
    /// Source topic whose dead letters to re-send (e.g. `ads.clicks` reads `dlq.ads.clicks`), or the dead-letter
    /// topic itself. Each record goes back to the topic and partition named by its `source_topic` and
    /// `source_partition` headers.
    pub topic: String,
    /// Re-send the dead letters of this class (`dlq_error_class`), e.g. `invalid-value`.
    #[arg(long, value_name = "CLASS")]
    pub class: Option<String>,
    /// Re-send the dead letters at these offsets of the dead-letter topic (comma separated; needs --partition).
    #[arg(
        long,
        value_name = "OFFSETS",
        value_delimiter = ',',
        requires = "partition"
    )]
    pub offsets: Vec<i64>,
    /// Partition of the dead-letter topic that --offsets refer to.
    #[arg(long, value_name = "P", requires = "offsets")]
    pub partition: Option<i32>,
    /// Re-send every dead letter of the topic.
    #[arg(long, conflicts_with_all = ["class", "offsets", "partition"])]
    pub all: bool,
    /// List what would be re-sent, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The consumer type of every read here.
type Reader = BaseConsumer<QuietEof>;

fn reader_config(settings: &Settings) -> ClientConfig {
    let mut config = settings.kafka_config();
    config
        .set("group.id", "adstream-dlq")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    config
}

/// Number of partitions of `topic`, or None when it does not exist. A topic the broker knows but cannot describe
/// yet (just created, leader election) is asked again until [`TIMEOUT`].
fn partition_count(consumer: &Reader, bootstrap: &str, topic: &str) -> Result<Option<i32>> {
    read::partition_count::<_, Infallible>(consumer, topic, TIMEOUT)
        .with_context(|| format!("cannot reach Kafka at {bootstrap}"))
}

/// Reads every partition of `topic` from its beginning to its end at call time, handing each record to `visit`:
/// in offset order within a partition, partitions interleaved. Fails naming the topic when it does not exist.
fn scan(
    config: &ClientConfig,
    bootstrap: &str,
    topic: &str,
    source: &str,
    mut visit: impl FnMut(DeadLetter) -> Result<()>,
) -> Result<i32> {
    let consumer: Reader = config
        .create_with_context(QuietEof)
        .context("invalid Kafka client configuration")?;
    let partitions = partition_count(&consumer, bootstrap, topic)?.with_context(|| {
        format!(
            "dead-letter topic '{topic}' does not exist: no job reading '{source}' has started, or the name is \
             wrong"
        )
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
    read::read_to_end(&consumer, topic, &all, &options, |message| {
        visit(DeadLetter::from_message(message))
    })
    .map_err(|e| match e {
        ReadError::Record(error) => error,
        other => anyhow::Error::new(other),
    })?;
    Ok(partitions)
}

/// Reads `topic` off the async runtime (librdkafka's consumer blocks).
async fn scan_blocking<S: Send + 'static>(
    settings: &Settings,
    topic: &str,
    source: &str,
    mut state: S,
    mut visit: impl FnMut(&mut S, DeadLetter) -> Result<()> + Send + 'static,
) -> Result<(S, i32)> {
    let config = reader_config(settings);
    let bootstrap = settings.bootstrap_servers.clone();
    let (topic, source) = (topic.to_owned(), source.to_owned());
    tokio::task::spawn_blocking(move || {
        let partitions = scan(&config, &bootstrap, &topic, &source, |letter| {
            visit(&mut state, letter)
        })?;
        Ok((state, partitions))
    })
    .await
    .context("the reader thread failed")?
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `0x00 0x01 …` style preview of the first bytes.
fn preview(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes
        .iter()
        .take(PREVIEW_BYTES)
        .map(|b| format!("{b:02x}"))
        .collect();
    let more = if bytes.len() > PREVIEW_BYTES {
        " …"
    } else {
        ""
    };
    format!("{}{more}", shown.join(" "))
}

/// A key as text when it is printable UTF-8, else as hex.
fn show_key(key: Option<&[u8]>) -> String {
    match key {
        None => "(none)".to_owned(),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) if !text.chars().any(char::is_control) => format!("{text:?}"),
            _ => format!("0x{}", hex(bytes)),
        },
    }
}

fn show_millis(millis: Option<i64>) -> String {
    millis
        .and_then(DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| "(none)".to_owned())
}

/// `redirected_at` (epoch millis) as RFC 3339, or the raw text when it is not a number.
fn show_redirected(letter: &DeadLetter) -> String {
    match letter.header(header::REDIRECTED_AT) {
        None => "(none)".to_owned(),
        Some(raw) => match raw
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
        {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => format!("{raw:?} (not epoch millis)"),
        },
    }
}

fn print_block(dlq_topic: &str, letter: &DeadLetter) {
    let or_none = |name: &str| letter.header(name).unwrap_or_else(|| "(none)".to_owned());
    println!(
        "{dlq_topic}  partition {}  offset {}",
        letter.partition, letter.offset
    );
    println!("  class           {}", letter.class());
    println!("  message         {}", or_none(header::MESSAGE));
    println!(
        "  source          {}  partition {}  offset {}",
        or_none(header::SOURCE_TOPIC),
        or_none(header::SOURCE_PARTITION),
        or_none(header::SOURCE_OFFSET)
    );
    println!("  redirected at   {}", show_redirected(letter));
    println!("  redirected by   {}", or_none(header::REDIRECTED_BY));
    println!("  timestamp       {}", show_millis(letter.timestamp_ms));
    println!("  correlation id  {}", or_none(header::CORRELATION_ID));
    println!("  key             {}", show_key(letter.key.as_deref()));
    match &letter.value {
        None => println!("  value           (none: tombstone)"),
        Some(value) => println!(
            "  value           {} byte(s)  {}",
            value.len(),
            preview(value)
        ),
    }
    println!();
}

fn json_line(dlq_topic: &str, letter: &DeadLetter) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = letter
        .headers
        .iter()
        .map(|(key, value)| {
            let value = value
                .as_deref()
                .map(|v| serde_json::Value::from(String::from_utf8_lossy(v).into_owned()))
                .unwrap_or(serde_json::Value::Null);
            (key.clone(), value)
        })
        .collect();
    let key_text = letter
        .key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok());
    serde_json::json!({
        "dlq_topic": dlq_topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "timestamp": letter.timestamp_ms,
        "class": letter.class(),
        "redirected_at": show_redirected(letter),
        "key": key_text,
        "key_hex": letter.key.as_deref().map(hex),
        "value_size": letter.value.as_ref().map(Vec::len),
        "value_hex": letter.value.as_deref().map(hex),
        "headers": headers,
    })
}

/// Note for a `--class` that matched nothing.
fn unmatched_class_note(class: &str, counts: &BTreeMap<String, u64>) -> String {
    let present: Vec<&str> = counts.keys().map(String::as_str).collect();
    let mut note = format!("no dead letter of class '{class}'");
    if !present.is_empty() {
        note.push_str(&format!("; classes present: {}", present.join(", ")));
    }
    if !Class::ALL.iter().any(|known| known.as_str() == class) {
        let known: Vec<&str> = Class::ALL.iter().map(|known| known.as_str()).collect();
        note.push_str(&format!(
            "; classes the runtime writes: {}",
            known.join(", ")
        ));
    }
    note
}

/// What `inspect` gathers while reading.
#[derive(Default)]
struct Inspection {
    counts: BTreeMap<String, u64>,
    total: u64,
    /// The first `limit` selected dead letters of each partition (partitions arrive interleaved; the first
    /// `limit` overall in partition, offset order are among these).
    first: BTreeMap<i32, Vec<DeadLetter>>,
    shown: u64,
}

/// `adstream dlq inspect <topic>`: the dead letters of the topic in partition, offset order, readably, then a
/// count per class.
pub async fn inspect(settings: &Settings, args: InspectArgs) -> Result<()> {
    let (dlq_topic, source) = topics_of(&args.topic)?;
    let class = args.class.clone();
    let limit = args.limit;
    let (mut found, _) = scan_blocking(
        settings,
        &dlq_topic,
        &source,
        Inspection::default(),
        move |state, letter| {
            let letter_class = letter.class();
            state.total += 1;
            *state.counts.entry(letter_class.clone()).or_default() += 1;
            if class.as_deref().is_none_or(|c| c == letter_class) {
                let kept = state.first.entry(letter.partition).or_default();
                if kept.len() < limit {
                    kept.push(letter);
                }
            }
            Ok(())
        },
    )
    .await?;
    let first = std::mem::take(&mut found.first);
    for letter in first.into_values().flatten().take(limit) {
        found.shown += 1;
        match args.format {
            Format::Table => print_block(&dlq_topic, &letter),
            Format::Json => println!("{}", json_line(&dlq_topic, &letter)),
        }
    }
    let summary = summary_text(&dlq_topic, &found, args.class.as_deref());
    match args.format {
        Format::Table => print!("{summary}"),
        Format::Json => eprint!("{summary}"),
    }
    Ok(())
}

fn summary_text(dlq_topic: &str, found: &Inspection, class: Option<&str>) -> String {
    if found.total == 0 {
        return format!("{dlq_topic} is empty: no dead letters\n");
    }
    let mut text = format!(
        "{dlq_topic}: {} dead letter(s), {} shown",
        found.total, found.shown
    );
    if let Some(class) = class {
        let matching = found.counts.get(class).copied().unwrap_or(0);
        text.push_str(&format!(" ({matching} of class {class})"));
    }
    text.push('\n');
    if let Some(class) = class.filter(|c| !found.counts.contains_key(*c)) {
        text.push_str(&format!("{}\n", unmatched_class_note(class, &found.counts)));
    }
    let width = found
        .counts
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(5)
        .max(5);
    text.push_str(&format!("  {:<width$}  {:>8}\n", "class", "count"));
    for (class, count) in &found.counts {
        text.push_str(&format!("  {class:<width$}  {count:>8}\n"));
    }
    text
}

/// What `redrive` gathers while reading.
#[derive(Default)]
struct Selection {
    selected: Vec<DeadLetter>,
    counts: BTreeMap<String, u64>,
    wanted_offsets: BTreeSet<i64>,
    /// Offsets of `--offsets` found in `--partition`, whatever their class.
    found_offsets: BTreeSet<i64>,
}

/// `adstream dlq redrive <topic>`: re-sends the selected dead letters to their source topic and partition with
/// their original key, value, timestamp and headers (minus the dead-letter ones) plus `redriven_from`, through
/// an idempotent producer with `acks=all`, and waits for every delivery.
pub async fn redrive(settings: &Settings, args: RedriveArgs) -> Result<()> {
    if !args.all && args.class.is_none() && args.offsets.is_empty() {
        bail!(
            "nothing selected: give --class CLASS, --offsets A,B,C with --partition P, or --all \
             (add --dry-run to see what would be sent)"
        );
    }
    if let Some(bad) = args.offsets.iter().find(|o| **o < 0) {
        bail!("--offsets: {bad} is not an offset");
    }
    let (dlq_topic, source) = topics_of(&args.topic)?;
    let class = args.class.clone();
    let partition = args.partition;
    let state = Selection {
        wanted_offsets: args.offsets.iter().copied().collect(),
        ..Selection::default()
    };
    let (mut found, partitions) = scan_blocking(
        settings,
        &dlq_topic,
        &source,
        state,
        move |state, letter| {
            let letter_class = letter.class();
            *state.counts.entry(letter_class.clone()).or_default() += 1;
            let class_ok = class.as_deref().is_none_or(|c| c == letter_class);
            let offset_ok = state.wanted_offsets.is_empty()
                || (Some(letter.partition) == partition
                    && state.wanted_offsets.contains(&letter.offset));
            if offset_ok && !state.wanted_offsets.is_empty() {
                state.found_offsets.insert(letter.offset);
            }
            if class_ok && offset_ok {
                state.selected.push(letter);
            }
            Ok(())
        },
    )
    .await?;
    if let Some(p) = args.partition {
        if p < 0 || p >= partitions {
            bail!(
                "--partition {p}: {dlq_topic} has partitions 0 to {}",
                partitions - 1
            );
        }
        // Every requested offset must exist, whatever --class says.
        let missing: Vec<String> = found
            .wanted_offsets
            .difference(&found.found_offsets)
            .map(i64::to_string)
            .collect();
        if !missing.is_empty() {
            bail!(
                "no dead letter at offset(s) {} of {dlq_topic} partition {p}; nothing was sent",
                missing.join(", ")
            );
        }
    }
    if found.selected.is_empty() {
        let why = match &args.class {
            Some(class) if !found.counts.contains_key(class) => {
                unmatched_class_note(class, &found.counts)
            }
            _ => "no dead letter matches the selection".to_owned(),
        };
        println!("nothing to redrive from {dlq_topic}: {why}");
        return Ok(());
    }
    found.selected.sort_by_key(|l| (l.partition, l.offset));
    let duplicates = keep_one_per_source(&mut found.selected);
    if duplicates > 0 {
        println!(
            "{duplicates} dead letter(s) name a source record already selected (several jobs read the topic and each \
             dead-lettered it): each source record is re-sent once"
        );
    }
    // A letter cut to fit the dead-letter topic no longer holds the original record: it is never re-sent.
    let before = found.selected.len();
    found
        .selected
        .retain(|letter| letter.header(header::TRUNCATED).is_none());
    let truncated = before - found.selected.len();
    if truncated > 0 {
        println!(
            "{truncated} dead letter(s) were truncated when dead-lettered (too large to carry whole; see their \
             dlq_original_value_sha256 header) and are not re-sent"
        );
    }
    if found.selected.is_empty() {
        println!("nothing to redrive from {dlq_topic}");
        return Ok(());
    }
    // Every selected record must say where it goes before anything is sent.
    let mut targets = Vec::with_capacity(found.selected.len());
    for letter in &found.selected {
        targets.push(letter.source(&dlq_topic, &source)?);
    }
    if args.dry_run {
        for (letter, (topic, partition)) in found.selected.iter().zip(&targets) {
            println!(
                "{dlq_topic}/{}/{}  {}  -> {topic} partition {partition}  key {}  {}",
                letter.partition,
                letter.offset,
                letter.class(),
                show_key(letter.key.as_deref()),
                match &letter.value {
                    Some(v) => format!("{} byte(s)", v.len()),
                    None => "no value".to_owned(),
                }
            );
        }
        println!(
            "dry run: would re-send {} dead letter(s) from {dlq_topic} ({}); nothing was sent",
            found.selected.len(),
            per_topic(&targets)
        );
        return Ok(());
    }
    check_targets(settings, &targets).await?;
    let selected = std::mem::take(&mut found.selected);
    send(settings, &dlq_topic, &selected, &targets).await?;
    println!(
        "re-sent {} dead letter(s) from {dlq_topic} ({}); all delivered",
        selected.len(),
        per_topic(&targets)
    );
    Ok(())
}

/// `3 to ads.clicks, 1 to ads.impressions`.
fn per_topic(targets: &[(String, i32)]) -> String {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for (topic, _) in targets {
        *counts.entry(topic.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(topic, n)| format!("{n} to {topic}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fails unless every target topic exists with the target partition.
async fn check_targets(settings: &Settings, targets: &[(String, i32)]) -> Result<()> {
    let mut highest: HashMap<String, i32> = HashMap::new();
    for (topic, partition) in targets {
        let entry = highest.entry(topic.clone()).or_insert(*partition);
        *entry = (*entry).max(*partition);
    }
    let config = reader_config(settings);
    let bootstrap = settings.bootstrap_servers.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let consumer: Reader = config
            .create_with_context(QuietEof)
            .context("invalid Kafka client configuration")?;
        for (topic, partition) in highest {
            match partition_count(&consumer, &bootstrap, &topic)? {
                None => bail!("source topic '{topic}' does not exist; nothing was sent"),
                Some(count) if partition >= count => bail!(
                    "source topic '{topic}' has {count} partition(s), a dead letter came from partition \
                     {partition}; nothing was sent"
                ),
                Some(_) => {}
            }
        }
        Ok(())
    })
    .await
    .context("the metadata thread failed")?
}

/// Produces every selected dead letter to its target and waits for all deliveries; any failure is an error.
async fn send(
    settings: &Settings,
    dlq_topic: &str,
    selected: &[DeadLetter],
    targets: &[(String, i32)],
) -> Result<()> {
    let mut config = settings.kafka_config();
    if config.get("message.timeout.ms").is_none() {
        // Bounded so that an unreachable broker fails the deliveries within seconds, not the 5-minute default.
        config.set("message.timeout.ms", "30000");
    }
    config.set("enable.idempotence", "true").set("acks", "all");
    let producer: FutureProducer = config
        .create()
        .context("invalid Kafka client configuration")?;
    let mut pending: VecDeque<(String, DeliveryFuture)> = VecDeque::new();
    let mut failures: Vec<String> = Vec::new();
    for (enqueued, (letter, (topic, partition))) in selected.iter().zip(targets).enumerate() {
        let from = format!("{dlq_topic}/{}/{}", letter.partition, letter.offset);
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(*partition)
            .headers(redrive_headers(letter, &from));
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &letter.value {
            record = record.payload(value.as_slice());
        }
        if let Some(ts) = letter.timestamp_ms {
            record = record.timestamp(ts);
        }
        loop {
            match producer.send_result(record) {
                Ok(future) => {
                    pending.push_back((from, future));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    match pending.pop_front() {
                        Some((from, future)) => await_delivery(&from, future, &mut failures).await,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((error, _)) => {
                    // Wait for what is in flight, so the report says exactly what was delivered.
                    while let Some((from, future)) = pending.pop_front() {
                        await_delivery(&from, future, &mut failures).await;
                    }
                    bail!(
                        "cannot send {from} to {topic} partition {partition}: {error}; of the {enqueued} \
                         record(s) sent before it, {} were delivered and {} failed{}",
                        enqueued - failures.len(),
                        failures.len(),
                        failures
                            .first()
                            .map(|f| format!(" (first: {f})"))
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
    while let Some((from, future)) = pending.pop_front() {
        await_delivery(&from, future, &mut failures).await;
    }
    if let Some(first) = failures.first() {
        bail!(
            "{} of {} re-sent record(s) not delivered; first: {first}",
            failures.len(),
            selected.len()
        );
    }
    Ok(())
}

async fn await_delivery(from: &str, future: DeliveryFuture, failures: &mut Vec<String>) {
    match future.await {
        Ok(Ok(_)) => {}
        Ok(Err((error, _))) => failures.push(format!("{from}: {error}")),
        Err(_) => failures.push(format!("{from}: the producer dropped the delivery report")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_previews_are_readable() {
        assert_eq!(show_key(None), "(none)");
        assert_eq!(show_key(Some(b"cmp-1")), "\"cmp-1\"");
        assert_eq!(show_key(Some(&[0xff, 0x00])), "0xff00");
        assert_eq!(preview(&[0, 1, 0xab]), "00 01 ab");
        assert!(preview(&[7; 40]).ends_with(" …"));
        assert_eq!(show_millis(Some(0)), "1970-01-01T00:00:00.000Z");
    }
}
