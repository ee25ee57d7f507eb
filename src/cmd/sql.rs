//! `adstream sql "<query>"`: one SQL query over the topology's topics, printed as a table, CSV or JSON lines, or
//! written as Parquet.
//!
//! Tables are those of `adstream_query::catalog`: `"<topic>"` (latest per key for compacted topics, history
//! otherwise) and `history."<topic>"`. Queries are read-only. Long scans print their progress on stderr every two
//! seconds; a summary line (rows, records fetched from Kafka, time) ends every run on stderr.

use std::path::PathBuf;
use std::time::Instant;

use adstream_query::output::{write_results, OutputFormat};
use adstream_query::session::{open_session, read_only};
use adstream_topology::Topology;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::config::Settings;
use crate::scan::{ProgressPrinter, ScanArgs};

/// How results are printed.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row.
    Json,
    /// Apache Parquet (needs `--out`).
    Parquet,
}

impl From<Format> for OutputFormat {
    fn from(format: Format) -> OutputFormat {
        match format {
            Format::Table => OutputFormat::Table,
            Format::Csv => OutputFormat::Csv,
            Format::Json => OutputFormat::Json,
            Format::Parquet => OutputFormat::Parquet,
        }
    }
}

/// Arguments of `adstream sql`.
#[derive(Args)]
pub struct SqlArgs {
    /// The query, e.g. `SELECT campaign_id, count(*) FROM "ads.impressions" GROUP BY 1`.
    pub query: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write the results to this file instead of stdout (required for Parquet).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub scan: ScanArgs,
}

/// Runs `adstream sql`.
pub async fn run(settings: &Settings, topology: &Topology, args: SqlArgs) -> Result<()> {
    if args.format == Format::Parquet && args.out.is_none() {
        bail!("--format parquet writes a file: give it with --out FILE.parquet");
    }
    let source = args.scan.open_source(settings)?;
    let ctx = open_session(&source, topology).await?;
    // The same allow list as the Postgres-wire server: a clear refusal before anything is planned.
    if let Err(refusal) = adstream_query::server::read_only::check_sql(&ctx, &args.query) {
        bail!(
            "cannot execute {}: adstream sql is read-only (SELECT, WITH, EXPLAIN and SHOW)",
            refusal.kind
        );
    }
    let started = Instant::now();
    let progress = ProgressPrinter::start("scan", source.progress());
    let frame = ctx
        .sql_with_options(&args.query, read_only())
        .await
        .context("the query does not plan")?;
    let stream = frame.execute_stream().await.context("the query failed")?;
    let rows = write_results(stream, args.format.into(), args.out.as_deref()).await?;
    drop(progress);
    let (fetched, planned) = source.progress().snapshot();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{rows} row(s); {fetched} record(s) fetched from Kafka of up to {planned} planned; {seconds:.2} s ({:.0} records/s)",
        fetched as f64 / seconds.max(1e-9)
    );
    Ok(())
}
