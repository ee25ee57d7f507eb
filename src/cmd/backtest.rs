//! `adstream backtest --from TIME --to TIME --strategy a.yaml [--strategy b.yaml ...] [--out DIR] [--to-topic T]`:
//! replays a period of history through the live jobs' operators once per strategy and compares the outcomes
//! (see `adstream_backtest`).
//!
//! The jobs come from the job registry and the topology: every processor entry whose job this binary has (or the
//! ones `--processor` names), wired as `adstream process` wires them. Progress goes to stderr; the side-by-side
//! table to stdout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use adstream_backtest::{engine, report, Dataflow, History, Period, Strategy};
use adstream_processors::jobs::JobRegistry;
use adstream_query::instant::parse_instant;
use adstream_topology::Topology;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::config::Settings;
use crate::scan::ScanArgs;

/// Arguments of `adstream backtest`.
#[derive(Args)]
pub struct BacktestArgs {
    /// Start of the period (RFC 3339, a date for midnight UTC, or epoch milliseconds), inclusive.
    #[arg(long)]
    pub from: String,
    /// End of the period, exclusive.
    #[arg(long)]
    pub to: String,
    /// Strategy file (YAML); repeat for each strategy. Deltas are against the first. An empty file is the live
    /// configuration.
    #[arg(long = "strategy", required = true)]
    pub strategies: Vec<PathBuf>,
    /// History replayed before `--from` to build state, in hours [default: the longest attribution lookback].
    #[arg(long)]
    pub warmup_hours: Option<f64>,
    /// Folder for outcomes.parquet, actions.parquet, timeline.parquet and report.html.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the outcomes as JSON records (key `<strategy>|<campaign>`) to this topic (it must exist;
    /// checked before the history is read).
    #[arg(long)]
    pub to_topic: Option<String>,
    /// A processor entry of the topology to replay; repeat for each [default: every entry whose job this binary
    /// has, see `adstream jobs`].
    #[arg(long = "processor", value_name = "NAME")]
    pub processors: Vec<String>,
    #[command(flatten)]
    pub scan: ScanArgs,
}

/// Runs the backtest and prints the comparison.
pub async fn run(settings: &Settings, topology: &Topology, args: BacktestArgs) -> Result<()> {
    let from_ms = parse_instant(&args.from).context("--from")?;
    let to_ms = parse_instant(&args.to).context("--to")?;
    if to_ms <= from_ms {
        bail!("--to must be after --from");
    }
    let strategies = args
        .strategies
        .iter()
        .map(|path| Strategy::load(path))
        .collect::<Result<Vec<_>, _>>()?;
    let warmup_ms = match args.warmup_hours {
        Some(hours) if hours.is_finite() && hours >= 0.0 => (hours * 3_600_000.0) as i64,
        Some(hours) => bail!("--warmup-hours must be a non-negative number, got {hours}"),
        None => strategies
            .iter()
            .map(Strategy::lookback_ms)
            .max()
            .unwrap_or(0),
    };
    let flow = Dataflow::resolve(topology, &JobRegistry::builtin(), &args.processors)?;
    for (processor, job) in flow.processors() {
        eprintln!("replaying processor {processor} (job {})", job.name());
    }
    let source = args.scan.open_source(settings)?;
    let period = Period {
        from_ms,
        to_ms,
        warmup_ms,
    };
    let runtime = tokio::runtime::Handle::current();
    let target = args.to_topic.clone();
    let (runs, history_size) = tokio::task::spawn_blocking(move || {
        // A missing target would otherwise only show after the whole run.
        if let Some(target) = &target {
            source
                .partitions(target)
                .with_context(|| format!("--to-topic {target}"))?;
        }
        let started = Instant::now();
        let mut last = Instant::now();
        let mut read = 0u64;
        let history = History::read(&source, &flow, period, runtime, &mut |n, topic| {
            read += n;
            if last.elapsed() > Duration::from_secs(2) {
                eprintln!("reading history: {read} records ({topic})");
                last = Instant::now();
            }
        })?;
        eprintln!(
            "history: {} records ({} impressions and clicks) in {:.1} s",
            history.record_count(),
            history.event_count(),
            started.elapsed().as_secs_f64()
        );
        let mut last = Instant::now();
        let runs = engine::run_all(
            &history,
            &flow,
            &strategies,
            period,
            &mut |name, done, total| {
                if last.elapsed() > Duration::from_secs(2) || done == total {
                    eprintln!("strategy {name}: {done} / {total} records replayed");
                    last = Instant::now();
                }
            },
        )?;
        Ok::<_, anyhow::Error>((runs, history.record_count()))
    })
    .await
    .context("the backtest thread panicked")??;
    print!("{}", report::comparison_table(&runs));
    if let Some(dir) = &args.out {
        report::write_outputs(dir, &runs, from_ms, to_ms)?;
        eprintln!("wrote {}", dir.display());
    }
    if let Some(topic) = &args.to_topic {
        let producer: FutureProducer = settings
            .kafka_config()
            .create()
            .map_err(|e| anyhow!("cannot create a producer: {e}"))?;
        let records = report::outcome_records(&runs, from_ms, to_ms);
        for (key, value) in &records {
            producer
                .send(
                    FutureRecord::to(topic).key(key).payload(value),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| anyhow!("cannot write to {topic}: {e}"))?;
        }
        eprintln!("wrote {} outcome records to {topic}", records.len());
    }
    eprintln!("replayed {history_size} records per strategy");
    Ok(())
}
