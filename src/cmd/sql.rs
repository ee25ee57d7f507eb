//! `adstream sql "<query>"`: one SQL query over the topology's topics, printed as a table, CSV or JSON lines, or
//! written as Parquet.
//!
//! Tables are those of `adstream_query::catalog`: `"<topic>"` (latest per key for compacted topics, history
//! otherwise) and `history."<topic>"`. Queries are read-only. Long scans print their progress on stderr every two
//! seconds; a summary line (rows, records fetched from Kafka, time) ends every run on stderr.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adstream_query::catalog;
use adstream_query::source::{KafkaSource, ScanProgress};
use adstream_topology::Topology;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use datafusion::arrow::array::RecordBatch;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use crate::config::Settings;

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

/// Scan settings shared by the commands that read topics as tables.
#[derive(Args, Clone)]
pub struct ScanArgs {
    /// How late (behind newer records of its partition) a record may have been written and still be found by a
    /// time-range query on `_timestamp`.
    #[arg(long, default_value_t = 24)]
    pub max_lateness_hours: u64,
}

/// A Kafka source with the settings' client config and registry.
pub fn open_source(settings: &Settings, scan: &ScanArgs) -> Result<Arc<KafkaSource>> {
    let source = KafkaSource::new(settings.kafka_config(), &settings.registry_url)?
        .with_max_lateness(Duration::from_secs(scan.max_lateness_hours * 3600));
    Ok(Arc::new(source))
}

/// A session over every topology topic (blocking metadata and registry calls run off the async threads).
pub async fn open_session(
    source: &Arc<KafkaSource>,
    topology: &Topology,
) -> Result<SessionContext> {
    let source = source.clone();
    let topology = topology.clone();
    let (ctx, _) =
        tokio::task::spawn_blocking(move || catalog::session_for_topology(&source, &topology))
            .await??;
    Ok(ctx)
}

/// Read-only: no DDL (`CREATE EXTERNAL TABLE`, `DROP`), no DML (`INSERT`, `COPY ... TO`), no `SET`.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Prints the progress of the running scans on stderr every two seconds until dropped.
pub struct ProgressPrinter {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressPrinter {
    /// Starts printing `progress` under `label`.
    pub fn start(label: &str, progress: Arc<ScanProgress>) -> ProgressPrinter {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let label = label.to_owned();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut next = Duration::from_secs(2);
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if started.elapsed() >= next {
                    next += Duration::from_secs(2);
                    let (fetched, planned) = progress.snapshot();
                    let percent = if planned > 0 {
                        format!(" ({:.0}%)", 100.0 * fetched as f64 / planned as f64)
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "{label}: {fetched} of {planned} records read{percent}, {:.0} s",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        });
        ProgressPrinter {
            done,
            thread: Some(thread),
        }
    }
}

impl Drop for ProgressPrinter {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `adstream sql`.
pub async fn run(settings: &Settings, topology: &Topology, args: SqlArgs) -> Result<()> {
    if args.format == Format::Parquet && args.out.is_none() {
        bail!("--format parquet writes a file: give it with --out FILE.parquet");
    }
    let source = open_source(settings, &args.scan)?;
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
    let rows = write_results(stream, args.format, args.out.as_ref()).await?;
    drop(progress);
    let (fetched, planned) = source.progress().snapshot();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{rows} row(s); {fetched} record(s) fetched from Kafka of {planned} planned; {seconds:.2} s ({:.0} records/s)",
        fetched as f64 / seconds.max(1e-9)
    );
    Ok(())
}

/// Writes a result stream in `format` to `out` or stdout; returns the row count.
pub async fn write_results(
    mut stream: SendableRecordBatchStream,
    format: Format,
    out: Option<&PathBuf>,
) -> Result<usize> {
    let schema = stream.schema();
    let sink: Box<dyn Write + Send> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let mut rows = 0usize;
    match format {
        Format::Table => {
            let mut batches: Vec<RecordBatch> = Vec::new();
            while let Some(batch) = stream.next().await {
                let batch = batch.context("the query failed")?;
                rows += batch.num_rows();
                batches.push(batch);
            }
            let mut sink = sink;
            let table = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?;
            writeln!(sink, "{table}")?;
            sink.flush()?;
        }
        Format::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(sink);
            while let Some(batch) = stream.next().await {
                let batch = batch.context("the query failed")?;
                rows += batch.num_rows();
                writer.write(&batch)?;
            }
        }
        Format::Json => {
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(sink);
            while let Some(batch) = stream.next().await {
                let batch = batch.context("the query failed")?;
                rows += batch.num_rows();
                writer.write(&batch)?;
            }
            writer.finish()?;
        }
        Format::Parquet => {
            let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(sink, schema, None)?;
            while let Some(batch) = stream.next().await {
                let batch = batch.context("the query failed")?;
                rows += batch.num_rows();
                writer.write(&batch)?;
            }
            writer.close()?;
        }
    }
    Ok(rows)
}

/// A moment on the command line: RFC 3339 (`2026-11-02T12:00:00Z`), a date (`2026-11-02`, midnight UTC) or
/// epoch milliseconds.
pub fn parse_instant(text: &str) -> Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_millis());
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(midnight) = date.and_hms_opt(0, 0, 0) {
            return Ok(midnight.and_utc().timestamp_millis());
        }
    }
    bail!("{text:?} is not a time: give RFC 3339 (2026-11-02T12:00:00Z), a date (2026-11-02) or epoch milliseconds")
}
