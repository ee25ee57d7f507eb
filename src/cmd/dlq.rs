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
//! headers of a re-sent record), reading the topic and re-sending are library code in
//! `adstream_processors::runtime::dead_letter` (`scan`, `redrive`); this module parses arguments and prints.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use chrono::{DateTime, SecondsFormat};

use adstream_processors::runtime::dead_letter::redrive::{self, Selector};
use adstream_processors::runtime::dead_letter::scan::{self, Inspection};
use adstream_processors::runtime::dead_letter::{header, topics_of, Class, DeadLetter};

use crate::config::Settings;

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
                        together select the dead letters matching both. Each re-sent record is recorded in the \
                        compacted topic redriven.<topic>, and a later redrive leaves it out: running a redrive twice \
                        re-sends each record once. Records that fail again are dead-lettered again (as new dead \
                        letters) and can be re-sent."
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

/// `adstream dlq inspect <topic>`: the dead letters of the topic in partition, offset order, readably, then a
/// count per class.
pub async fn inspect(settings: &Settings, args: InspectArgs) -> Result<()> {
    let (dlq_topic, source) = topics_of(&args.topic)?;
    let found = scan::inspect(
        &settings.kafka_config(),
        &settings.bootstrap_servers,
        &dlq_topic,
        &source,
        args.class.clone(),
        args.limit,
    )
    .await?;
    for letter in &found.shown {
        match args.format {
            Format::Table => print_block(&dlq_topic, letter),
            Format::Json => println!("{}", json_line(&dlq_topic, letter)),
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
        found.total,
        found.shown.len()
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

/// `adstream dlq redrive <topic>`: re-sends the selected dead letters to their source topic and partition with
/// their original key, value, timestamp and headers (minus the dead-letter ones) plus `redriven_from`, with an
/// entry per letter in the ledger `redriven.<topic>`, in one Kafka transaction, and waits for every delivery.
/// Letters the ledger lists (re-sent by an earlier run) are left out.
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
    let config = settings.kafka_config();
    let selector = Selector {
        class: args.class.clone(),
        offsets: args.offsets.iter().copied().collect(),
        partition: args.partition,
    };
    let found = redrive::select(
        &config,
        &settings.bootstrap_servers,
        &dlq_topic,
        &source,
        selector,
    )
    .await?;
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
    // What earlier redrives re-sent (the ledger) is left out, so running the same redrive twice sends once.
    let sent = redrive::read_ledger(&config, &settings.bootstrap_servers, &dlq_topic).await?;
    let plan = redrive::plan(found.selected, &dlq_topic, &sent);
    if plan.already_sent > 0 {
        println!(
            "{} dead letter(s) were re-sent by an earlier redrive (ledger {}) and are not re-sent",
            plan.already_sent,
            redrive::ledger_topic(&dlq_topic)
        );
    }
    if plan.duplicates > 0 {
        println!(
            "{} dead letter(s) name a source record already selected (several jobs read the topic and each \
             dead-lettered it): each source record is re-sent once",
            plan.duplicates
        );
    }
    if plan.truncated > 0 {
        println!(
            "{} dead letter(s) were truncated when dead-lettered (too large to carry whole; see their \
             dlq_original_value_sha256 header) and are not re-sent",
            plan.truncated
        );
    }
    if plan.letters.is_empty() {
        println!("nothing to redrive from {dlq_topic}");
        return Ok(());
    }
    let targets = redrive::targets(&plan.letters, &dlq_topic, &source)?;
    if args.dry_run {
        for (letter, (topic, partition)) in plan.letters.iter().zip(&targets) {
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
            plan.letters.len(),
            redrive::per_topic(&targets)
        );
        return Ok(());
    }
    redrive::check_targets(&config, &settings.bootstrap_servers, &targets).await?;
    redrive::send(&config, &dlq_topic, &plan.letters, &targets).await?;
    println!(
        "re-sent {} dead letter(s) from {dlq_topic} ({}); all delivered",
        plan.letters.len(),
        redrive::per_topic(&targets)
    );
    Ok(())
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
