//! `adstream replay`: a time range of one topic's events, optionally only one event type (`ce_type`) or one key,
//! re-produced to another topic with provenance headers, or written to a file.
//!
//! Both paths read only the offsets the range needs (offsets for times, and the key's partition when a key is
//! given). Re-produced records keep their key, value bytes (same schema ids), timestamp and headers, and gain
//! `replay_source_topic`, `replay_source_partition`, `replay_source_offset`, `replay_id` and `replayed_at`; the
//! producer is idempotent and every delivery is confirmed before the command reports success. Files are written
//! through the topic's history table (columns as in `adstream sql`): `.parquet`, `.csv`, or JSON lines otherwise.
//! The replay itself is `adstream_query::replay`; this module parses arguments and prints.

use std::path::PathBuf;
use std::time::Instant;

use adstream_query::instant::parse_instant;
use adstream_query::replay::{self, ReplayRange};
use anyhow::{bail, Context, Result};
use clap::Args;

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
    let range = ReplayRange {
        topic: args.topic.clone(),
        from_ms,
        to_ms,
        key: args.key.clone(),
        event_type: args.event_type.clone(),
    };
    let source = args.scan.open_source(settings)?;
    let started = Instant::now();
    match (&args.to_topic, &args.out) {
        (Some(target), _) => {
            // A missing target would otherwise only show in the delivery reports.
            let (check_source, checked) = (source.clone(), target.clone());
            tokio::task::spawn_blocking(move || check_source.partitions(&checked))
                .await?
                .with_context(|| format!("--to-topic {target}"))?;
            let progress = ProgressPrinter::start("replay", source.progress());
            let sent = replay::to_topic(&source, &settings.kafka_config(), &range, target).await?;
            drop(progress);
            eprintln!(
                "{sent} record(s) of {} replayed to {target} in {:.2} s",
                args.topic,
                started.elapsed().as_secs_f64()
            );
        }
        (None, Some(path)) => {
            let progress = ProgressPrinter::start("replay", source.progress());
            let rows = replay::to_file(&source, &range, path).await?;
            drop(progress);
            let (fetched, _) = source.progress().snapshot();
            eprintln!(
                "{rows} record(s) of {} written to {} ({fetched} fetched, {:.2} s)",
                args.topic,
                path.display(),
                started.elapsed().as_secs_f64()
            );
        }
        (None, None) => bail!("give --to-topic TOPIC or --out FILE"),
    }
    Ok(())
}
