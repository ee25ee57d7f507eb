//! `adstream attribution models`: credit a path dataset under every attribution model. `adstream attribution fit`:
//! fit Markov removal effects and Shapley values over the live job's journeys into `attribution.model_weights`.
//! `adstream attribution journeys`: a period's journeys as a path dataset.
//!
//! Input is ChannelAttribution's path-data CSV: a header, then one row per distinct path with columns `path`,
//! `total_conversions`, and optionally `total_conversion_value` and `total_null` (0 when absent); other columns
//! are ignored, and fields may be double-quoted. Output is one JSON object on stdout:
//!
//! ```text
//! { "conversion_probability": p,
//!   "removal_effects": {channel: re}, "value_removal_effects": {channel: re},
//!   "models": { "last-touch": {channel: {"conversions": x, "value": y}}, ..., "shapley": {...}, "markov": {...} } }
//! ```
//!
//! The maths lives in `adstream_processors::attribution::models`, the dataset's parsing in
//! `adstream_processors::attribution::dataset`; this file only reads the file, checks flags and prints.
//!
//! **fit** reads the journeys of the attribution processor (`--application-id`, its `journeys` output in the
//! topology) that ended in the sliding period `[until − period, until)` (`until`: now at each fit, or `--until`),
//! grouped by path with SQL (`adstream_query::journeys`), fits both models
//! (`adstream_processors::attribution::weights::fit_weights`) and writes one `ModelWeight` per model and campaign,
//! key `<MODEL>|<campaign>`, to *every* partition of the processor's `model_weights` input, in one Kafka
//! transaction (so a job's task sees a fit whole). Once, or every `--interval-secs` until stopped. A period
//! without a converted journey writes nothing (there is nothing to fit) and says so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use adstream_kafka::produce::send_waiting_for_room;
use adstream_kafka::registry_client::{RegistryClient, DEFAULT_TIMEOUT};
use adstream_processors::attribution::dataset::parse_dataset;
use adstream_processors::attribution::job::AttributionDefinition;
use adstream_processors::attribution::models::{self, ChannelCredits, RuleModel, RuleSettings};
use adstream_processors::attribution::weights::{fit_weights, FitPeriod};
use adstream_processors::jobs::{Job, Wiring};
use adstream_processors::runtime::WireEncoder;
use adstream_query::instant::parse_instant;
use adstream_query::journeys::{paths_csv, JourneySession, PathRow};
use adstream_schemas::outputs::{ModelWeight, WeightModel};
use adstream_topology::Topology;
use anyhow::{anyhow, bail, Context, Result};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde::Serialize;

use crate::config::Settings;
use crate::scan::ScanArgs;

const MILLIS_PER_HOUR: f64 = 3_600_000.0;

/// Output format of `attribution models`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One pretty-printed JSON object.
    Json,
}

/// Arguments of `adstream attribution models`.
#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// CSV path dataset with a header: `path,total_conversions[,total_conversion_value][,total_null]`
    /// (ChannelAttribution's path-data format).
    #[arg(long, value_name = "FILE")]
    pub paths: PathBuf,
    /// Separator between the channels of a path; channels are trimmed, empty ones dropped.
    #[arg(long, default_value = " > ")]
    pub separator: String,
    /// Half-life of the time-decay model, in hours; a path's touches are one hour apart, the last at the
    /// conversion.
    #[arg(long, default_value_t = 168.0)]
    pub half_life_hours: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// Credit of one channel under one model.
#[derive(Serialize)]
struct Credit {
    conversions: f64,
    value: f64,
}

/// What `attribution models` prints.
#[derive(Serialize)]
struct Report {
    conversion_probability: f64,
    removal_effects: BTreeMap<String, f64>,
    value_removal_effects: BTreeMap<String, f64>,
    models: BTreeMap<&'static str, BTreeMap<String, Credit>>,
}

/// `adstream attribution models`: reads the dataset, runs every model and prints the report.
pub fn models(args: ModelsArgs) -> Result<()> {
    if !(args.half_life_hours.is_finite() && args.half_life_hours > 0.0) {
        bail!(
            "--half-life-hours must be a positive number of hours, got {}",
            args.half_life_hours
        );
    }
    let settings = RuleSettings {
        // `as` saturates, so an absurdly long half-life stays a valid (huge) one.
        half_life_ms: (args.half_life_hours * MILLIS_PER_HOUR).round() as i64,
        ..RuleSettings::default()
    };
    settings
        .validate()
        .context("--half-life-hours is below one millisecond")?;
    let text = std::fs::read_to_string(&args.paths)
        .with_context(|| format!("cannot read {}", args.paths.display()))?;
    let paths = parse_dataset(&text, &args.separator, &args.paths)?;
    models::validate_paths(&paths).with_context(|| format!("{}", args.paths.display()))?;
    let markov = models::markov(&paths)
        .with_context(|| format!("Markov model of {}", args.paths.display()))?;

    let mut credits = BTreeMap::new();
    for model in RuleModel::ALL {
        credits.insert(
            model.name(),
            as_json(models::rule_credits_over_paths(model, &paths, &settings)),
        );
    }
    credits.insert("shapley", as_json(models::shapley(&paths)));
    credits.insert("markov", as_json(markov.credits));
    let report = Report {
        conversion_probability: markov.conversion_probability,
        removal_effects: markov.removal_effects,
        value_removal_effects: markov.value_removal_effects,
        models: credits,
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}

fn as_json(credits: ChannelCredits) -> BTreeMap<String, Credit> {
    credits
        .into_iter()
        .map(|(channel, (conversions, value))| (channel, Credit { conversions, value }))
        .collect()
}

/// Which journeys: the attribution processor and the sliding period.
#[derive(Clone, clap::Args)]
pub struct PeriodArgs {
    /// The attribution processor of the topology: its `journeys` output is read, its `model_weights` input written.
    #[arg(long, default_value = AttributionDefinition::NAME)]
    pub application_id: String,
    /// Length of the sliding period in days: the journeys that ended in [until - period, until).
    #[arg(long, default_value_t = 30.0)]
    pub period_days: f64,
    /// End of the period, exclusive (RFC 3339, a date or epoch milliseconds); default: the wall clock at each fit.
    #[arg(long)]
    pub until: Option<String>,
    #[command(flatten)]
    pub scan: ScanArgs,
}

impl PeriodArgs {
    /// `[from, until)` in epoch milliseconds, `until` defaulting to `now_ms`.
    fn period(&self, now_ms: i64) -> Result<(i64, i64)> {
        if !(self.period_days.is_finite() && self.period_days > 0.0) {
            bail!(
                "--period-days must be a positive number of days, got {}",
                self.period_days
            );
        }
        let until = match &self.until {
            Some(text) => parse_instant(text).with_context(|| format!("--until {text}"))?,
            None => now_ms,
        };
        let period_ms = (self.period_days * 86_400_000.0).round() as i64;
        Ok((until.saturating_sub(period_ms), until))
    }
}

/// Arguments of `adstream attribution fit`.
#[derive(clap::Args)]
pub struct FitArgs {
    #[command(flatten)]
    pub period: PeriodArgs,
    /// Fit again every this many seconds until stopped (a long-running job); once when absent.
    #[arg(long)]
    pub interval_secs: Option<u64>,
}

/// Arguments of `adstream attribution journeys`.
#[derive(clap::Args)]
pub struct JourneysArgs {
    #[command(flatten)]
    pub period: PeriodArgs,
    /// Write the period's paths to this file as ChannelAttribution path data (`path,total_conversions,
    /// total_conversion_value,total_null`); to stdout when absent.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The journeys topic of the processor and a session over it.
fn journey_session(
    settings: &Settings,
    topology: &Topology,
    period: &PeriodArgs,
) -> Result<(Wiring, JourneySession)> {
    let wiring = Wiring::resolve(
        topology,
        &period.application_id,
        AttributionDefinition::PORTS,
    )?;
    let journeys = wiring.optional("journeys").ok_or_else(|| {
        anyhow!(
            "processor {} in {} writes no journeys (add a topic carrying io.adstream.attribution.Journey to its \
             outputs)",
            period.application_id,
            topology.origin()
        )
    })?;
    let source = period.scan.open_source(settings)?;
    let session = JourneySession::new(&source, journeys)?;
    Ok((wiring, session))
}

/// `adstream attribution journeys`: the period's journeys as path data.
pub async fn journeys(settings: &Settings, topology: &Topology, args: JourneysArgs) -> Result<()> {
    let (_, session) = journey_session(settings, topology, &args.period)?;
    let (from, until) = args.period.period(now_ms())?;
    let rows = session.paths(from, until).await?;
    let csv = paths_csv(&rows);
    let (conversions, nulls) = rows
        .iter()
        .fold((0, 0), |(c, n), row| (c + row.conversions, n + row.nulls));
    match &args.export {
        Some(path) => {
            std::fs::write(path, csv)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "{}: {} paths, {conversions} converted and {nulls} other journeys that ended in [{from}, {until}) \
                 written to {}",
                session.topic(),
                rows.len(),
                path.display()
            );
        }
        None => print!("{csv}"),
    }
    Ok(())
}

/// Writes records to every partition of one topic in transactions.
struct WeightWriter {
    producer: ThreadedProducer<DefaultProducerContext>,
    encoder: WireEncoder,
    topic: String,
    partitions: i32,
}

impl WeightWriter {
    async fn new(settings: &Settings, wiring: &Wiring) -> Result<WeightWriter> {
        let topic = wiring.optional("model_weights").ok_or_else(|| {
            anyhow!(
                "processor {} reads no model weights (add a broadcast topic carrying \
                 io.adstream.attribution.ModelWeight to its inputs)",
                wiring.application_id()
            )
        })?;
        let partitions = wiring.partitions("model_weights")?;
        let registry = RegistryClient::connect(&settings.registry, DEFAULT_TIMEOUT)?;
        let subject = format!("{topic}-value");
        let id = registry
            .register(&subject, ModelWeight::SCHEMA)
            .await
            .with_context(|| format!("cannot register {subject}"))?;
        let encoder = WireEncoder::new(ModelWeight::SCHEMA, id)?;
        let producer: ThreadedProducer<DefaultProducerContext> = settings
            .kafka_config()
            .set(
                "transactional.id",
                format!("{}-fit", wiring.application_id()),
            )
            .set("enable.idempotence", "true")
            .create()
            .map_err(|e| anyhow!("cannot create a producer: {e}"))?;
        producer
            .init_transactions(Duration::from_secs(30))
            .map_err(|e| anyhow!("cannot start transactions on {topic}: {e}"))?;
        Ok(WeightWriter {
            producer,
            encoder,
            topic: topic.to_owned(),
            partitions,
        })
    }

    /// Writes every record to every partition, all in one transaction (aborted on any failure).
    fn write(&self, records: &[ModelWeight]) -> Result<()> {
        let topic = &self.topic;
        self.producer
            .begin_transaction()
            .map_err(|e| anyhow!("cannot begin a transaction on {topic}: {e}"))?;
        let written = self.send_all(records).and_then(|()| {
            self.producer
                .commit_transaction(Duration::from_secs(60))
                .map_err(|e| anyhow!("cannot commit the weights to {topic}: {e}"))
        });
        if written.is_err() {
            // Nothing of this fit is visible to read_committed readers; the next fit starts a new transaction.
            let _ = self.producer.abort_transaction(Duration::from_secs(30));
        }
        written
    }

    fn send_all(&self, records: &[ModelWeight]) -> Result<()> {
        let topic = &self.topic;
        let mut value = Vec::new();
        for record in records {
            value.clear();
            self.encoder.encode(record, &mut value)?;
            let key = record.key();
            for partition in 0..self.partitions {
                let pending = BaseRecord::to(topic)
                    .key(key.as_str())
                    .payload(value.as_slice())
                    .partition(partition)
                    .timestamp(record.fitted_at);
                send_waiting_for_room(&self.producer, pending)
                    .map_err(|refused| anyhow!("cannot write to {topic}: {}", refused.0))?;
            }
        }
        Ok(())
    }
}

/// One fit: the period's paths, both models, the records written. Returns the records (none when the period has
/// no conversion).
async fn fit_once(
    session: &JourneySession,
    writer: &WeightWriter,
    period: &PeriodArgs,
) -> Result<Vec<ModelWeight>> {
    let fitted_at = now_ms();
    let (from, until) = period.period(fitted_at)?;
    let rows: Vec<PathRow> = session.paths(from, until).await?;
    let paths: Vec<_> = rows.iter().map(PathRow::path_count).collect();
    let conversions: i64 = rows.iter().map(|row| row.conversions).sum();
    if conversions == 0 {
        eprintln!(
            "{}: no converted journey ended in [{from}, {until}) ({} paths): nothing to fit",
            session.topic(),
            rows.len()
        );
        return Ok(Vec::new());
    }
    let records = fit_weights(
        &paths,
        FitPeriod {
            start_ms: from,
            end_ms: until,
            fitted_at_ms: fitted_at,
        },
    )?;
    let records = tokio::task::block_in_place(|| writer.write(&records).map(|()| records))?;
    let markov = records
        .iter()
        .filter(|r| r.model == WeightModel::Markov)
        .count();
    eprintln!(
        "{}: fitted {} paths ({conversions} conversions) that ended in [{from}, {until}); wrote {} weights \
         ({markov} campaigns) to {} partitions of {}",
        session.topic(),
        rows.len(),
        records.len(),
        writer.partitions,
        writer.topic
    );
    Ok(records)
}

/// `adstream attribution fit`: once, or every `--interval-secs` until `shutdown`.
pub async fn fit(
    settings: &Settings,
    topology: &Topology,
    args: FitArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let (wiring, session) = journey_session(settings, topology, &args.period)?;
    let session = Arc::new(session);
    let writer = WeightWriter::new(settings, &wiring).await?;
    let Some(interval) = args.interval_secs else {
        fit_once(&session, &writer, &args.period).await?;
        return Ok(());
    };
    tokio::pin!(shutdown);
    loop {
        // A failed fit (a broker or registry outage) is reported and tried again at the next interval.
        if let Err(e) = fit_once(&session, &writer, &args.period).await {
            eprintln!("fit failed, next try in {interval} s: {e:#}");
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(interval.max(1))) => {}
        }
    }
}
