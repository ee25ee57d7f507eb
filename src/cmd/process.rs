//! `adstream process <job>`: runs a stream processor with its HTTP operations endpoint.
//!
//! The job's topics come from its processor entry in the topology file, matched by the records they carry
//! (`value_schema`): inputs carrying impressions, clicks and campaigns; outputs carrying `CampaignMetrics` (the one
//! whose name contains `hourly`, and the one whose name contains `daily`) and `CampaignAlert`; an input carrying
//! `AttributionCredit` is optional.
//!
//! The endpoint serves `/metrics` (Prometheus text), `/healthz` (the process is up) and `/readyz` (200 once the
//! job owns partitions and has restored them). SIGTERM or SIGINT commits what was processed and leaves the group.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adstream_processors::attribution::models::RuleSettings;
use adstream_processors::attribution::operator::{AttributionConfig, AttributionJob};
use adstream_processors::attribution::repartition::{RepartitionConfig, TouchRepartition};
use adstream_processors::campaign_metrics::{CampaignMetricsConfig, CampaignMetricsJob, EmitMode};
use adstream_processors::fatigue::operator::{CreativeFatigueConfig, CreativeFatigueJob};
use adstream_processors::runtime::{
    self, merge_expositions, DeliveryGuarantee, InternalReplication, JobMetrics, Operator,
    RuntimeConfig,
};
use adstream_processors::window::Lateness;
use adstream_query::backtest::strategy as defaults;
use adstream_query::backtest::JobTopics;
use adstream_schemas::events::{AdClick, AdImpression, AvroRecord, Campaign, Conversion};
use adstream_schemas::outputs::{
    AttributedConversion, AttributionCredit, AttributionModel, CampaignAlert, CampaignMetrics,
    CreativeFatigue,
};
use adstream_topology::{Processor, Topology};
use anyhow::{anyhow, bail, Context, Result};
use axum::http::StatusCode;
use axum::routing::get;
use clap::{Args, ValueEnum};
use tracing::info;

use crate::config::Settings;

/// Delivery guarantee flag values.
#[derive(Clone, Copy, ValueEnum)]
pub enum Guarantee {
    /// Kafka transactions: outputs, state and offsets commit together.
    ExactlyOnce,
    /// Outputs flushed before offsets are committed; a crash may repeat the effects of uncommitted records.
    AtLeastOnce,
}

/// Emit mode flag values.
#[derive(Clone, Copy, ValueEnum)]
pub enum Emit {
    /// Every changed row at every commit.
    Updating,
    /// Each row once when final (watermark past end + grace), then corrections.
    Final,
}

/// Attribution model flag values.
#[derive(Clone, Copy, ValueEnum)]
pub enum Model {
    /// All credit to the last touch.
    LastTouch,
    /// All credit to the first touch.
    FirstTouch,
    /// Equal credit to every touch.
    Linear,
    /// Credit halving with every half-life before the conversion.
    TimeDecay,
    /// 40/20/40 over first, middle and last touches.
    PositionBased,
    /// Shapley value.
    Shapley,
    /// Markov removal effect.
    Markov,
}

impl From<Model> for AttributionModel {
    fn from(model: Model) -> Self {
        match model {
            Model::LastTouch => AttributionModel::LastTouch,
            Model::FirstTouch => AttributionModel::FirstTouch,
            Model::Linear => AttributionModel::Linear,
            Model::TimeDecay => AttributionModel::TimeDecay,
            Model::PositionBased => AttributionModel::PositionBased,
            Model::Shapley => AttributionModel::Shapley,
            Model::Markov => AttributionModel::Markov,
        }
    }
}

/// Settings every job takes: identity, delivery guarantee, commits, the operations endpoint.
#[derive(Args)]
pub struct RunArgs {
    /// This replica's id: unique per replica, stable across its restarts (e.g. a StatefulSet pod name).
    #[arg(long, env = "ADSTREAM_INSTANCE_ID", default_value = "0")]
    instance_id: String,
    /// Delivery guarantee.
    #[arg(long, value_enum, default_value = "exactly-once")]
    guarantee: Guarantee,
    /// How often outputs, state and offsets are committed, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    commit_interval_ms: u64,
    /// Address of the /metrics, /healthz and /readyz endpoint.
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_listen: SocketAddr,
    /// Stop once every input partition has been read to its end (replays, batch catch-up).
    #[arg(long)]
    until_end: bool,
    /// An input record whose timestamp is more than this many seconds ahead of the wall clock goes to the DLQ
    /// (class `future-timestamp`) instead of moving event time.
    #[arg(long, default_value_t = adstream_processors::runtime::DEFAULT_MAX_EVENT_TIME_AHEAD.as_secs())]
    max_event_time_ahead_secs: u64,
}

impl RunArgs {
    /// The runtime settings of the job (or stage) `application_id`.
    fn runtime_config(
        &self,
        settings: &Settings,
        topology: &Topology,
        application_id: &str,
    ) -> RuntimeConfig {
        let mut config = RuntimeConfig::new(
            application_id,
            settings.kafka_config(),
            &settings.registry_url,
        );
        config.instance_id = self.instance_id.clone();
        config.guarantee = match self.guarantee {
            Guarantee::ExactlyOnce => DeliveryGuarantee::ExactlyOnce,
            Guarantee::AtLeastOnce => DeliveryGuarantee::AtLeastOnce,
        };
        config.commit_interval = Duration::from_millis(self.commit_interval_ms.max(1));
        config.exit_at_end_of_input = self.until_end;
        config.max_event_time_ahead = Duration::from_secs(self.max_event_time_ahead_secs);
        let internal = topology.internal_topics();
        config.internal_topics = InternalReplication {
            replication_factor: internal.replication_factor,
            min_insync_replicas: internal.min_insync_replicas,
        };
        config
    }
}

/// Arguments of `process campaign-metrics`.
#[derive(Args)]
pub struct CampaignMetricsArgs {
    /// Processor name in the topology; also the consumer group, the changelog prefix and the transactional id
    /// prefix.
    #[arg(long, default_value = "campaign-metrics")]
    application_id: String,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    job: CampaignMetricsSettings,
}

/// What the campaign-metrics job computes, apart from how it runs: shared by `process campaign-metrics` and the
/// commands that re-run it over history (`state`).
#[derive(Args, Clone)]
pub struct CampaignMetricsSettings {
    /// Grace period after a window's end (watermark time) before its row is final, in seconds.
    #[arg(long, default_value_t = defaults::DEFAULT_METRICS_GRACE_SECS)]
    grace_secs: u64,
    /// How long after a window's end its state is kept for corrections, in seconds; later events go to
    /// `late.<topic>`.
    #[arg(long, default_value_t = defaults::DEFAULT_METRICS_RETENTION_SECS)]
    retention_secs: u64,
    /// When rows are emitted.
    #[arg(long, value_enum, default_value = "updating")]
    emit: Emit,
    /// Attribution model whose credits (from the processor's input carrying AttributionCredit, if it has one)
    /// count as conversions and revenue.
    #[arg(long, value_enum, default_value = "last-touch")]
    attribution_model: Model,
}

/// Arguments of `process creative-fatigue`.
#[derive(Args)]
pub struct CreativeFatigueArgs {
    /// Processor name in the topology; also the consumer group, the changelog prefix and the transactional id
    /// prefix.
    #[arg(long, default_value = "creative-fatigue")]
    application_id: String,
    #[command(flatten)]
    run: RunArgs,
    /// How long after an hour's end (watermark time) it closes, waiting for out-of-order events, in seconds.
    #[arg(long, default_value_t = defaults::DEFAULT_FATIGUE_GRACE_SECS)]
    grace_secs: u64,
    /// How long after an hour's end a late event still counts in its hour (the creative is reassessed), in
    /// seconds; later events go to `late.<topic>`.
    #[arg(long, default_value_t = defaults::DEFAULT_FATIGUE_RETENTION_SECS)]
    retention_secs: u64,
    /// A creative whose status did not change gets a new record after this much event time, in hours.
    #[arg(long, default_value_t = defaults::DEFAULT_REPORT_INTERVAL_HOURS)]
    report_interval_hours: f64,
    /// JSON file overriding detector settings (any subset of the `FatigueConfig` fields; see `adstream fatigue
    /// evaluate` to measure a setting against planted ground truth).
    #[arg(long)]
    detector_config: Option<PathBuf>,
}

/// Arguments of `process attribution`.
#[derive(Args)]
pub struct AttributionArgs {
    /// Processor name in the topology. The repartition stage runs as `<name>-repartition` (its own consumer group
    /// and transactional id) and writes the internal topic `<name>-repartition`.
    #[arg(long, default_value = "attribution")]
    application_id: String,
    #[command(flatten)]
    run: RunArgs,
    /// Touches older than this before a conversion do not count, in days.
    #[arg(long, default_value_t = defaults::DEFAULT_LOOKBACK_DAYS)]
    lookback_days: f64,
    /// How long a conversion waits, in watermark time, for touches that are still on their way, in seconds.
    #[arg(long, default_value_t = defaults::DEFAULT_ATTRIBUTION_GRACE_SECS)]
    grace_secs: u64,
    /// How long past the watermark a late conversion can still be attributed completely, in seconds (touches are
    /// kept this much longer than the lookback).
    #[arg(long, default_value_t = defaults::DEFAULT_ATTRIBUTION_RETENTION_SECS)]
    retention_secs: u64,
    /// Time-decay half-life, in hours.
    #[arg(long, default_value_t = defaults::DEFAULT_HALF_LIFE_HOURS)]
    half_life_hours: f64,
    /// Whether impressions (views) count as touches.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    count_views: bool,
    /// Weight of a view against a click (1 = equal).
    #[arg(long, default_value_t = defaults::DEFAULT_VIEW_WEIGHT)]
    view_weight: f64,
}

/// Which topic list of a processor entry to look in.
#[derive(Clone, Copy)]
enum List {
    /// `inputs`.
    Inputs,
    /// `repartition`: read with another key, re-keyed by the processor.
    Repartition,
    /// `outputs`.
    Outputs,
}

/// The topic of `processor`'s `list` whose value schema is `full_name` and whose name contains `contains`.
fn topic_for(
    topology: &Topology,
    processor: &Processor,
    list: List,
    full_name: &str,
    contains: &str,
) -> Result<String> {
    let (list, what) = match list {
        List::Inputs => (&processor.inputs, "input"),
        List::Repartition => (&processor.repartition, "topic to repartition"),
        List::Outputs => (&processor.outputs, "output"),
    };
    let found: Vec<&String> = list
        .iter()
        .filter(|name| {
            topology.topic(name).and_then(|t| t.value_schema.as_deref()) == Some(full_name)
                && name.contains(contains)
        })
        .collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!(
            "processor {} in {} has no {} carrying {full_name}{}",
            processor.name,
            topology.origin(),
            what,
            if contains.is_empty() {
                String::new()
            } else {
                format!(" with '{contains}' in its name")
            }
        ),
        many => bail!(
            "processor {} in {}: {} topics carry {full_name}: {:?}",
            processor.name,
            topology.origin(),
            many.len(),
            many
        ),
    }
}

/// The campaign-metrics job of processor `application_id` in `topology`, configured by `settings`.
pub fn campaign_metrics_job(
    topology: &Topology,
    application_id: &str,
    settings: &CampaignMetricsSettings,
) -> Result<CampaignMetricsJob> {
    let processor = find_processor(topology, application_id)?;
    let lateness = Lateness::new(
        Duration::from_secs(settings.grace_secs),
        Duration::from_secs(settings.retention_secs),
    )
    .context("invalid --grace-secs/--retention-secs")?;
    CampaignMetricsJob::new(CampaignMetricsConfig {
        impressions: topic_for(
            topology,
            processor,
            List::Inputs,
            AdImpression::FULL_NAME,
            "",
        )?,
        clicks: topic_for(topology, processor, List::Inputs, AdClick::FULL_NAME, "")?,
        campaigns: topic_for(topology, processor, List::Inputs, Campaign::FULL_NAME, "")?,
        hourly: topic_for(
            topology,
            processor,
            List::Outputs,
            CampaignMetrics::FULL_NAME,
            "hourly",
        )?,
        daily: topic_for(
            topology,
            processor,
            List::Outputs,
            CampaignMetrics::FULL_NAME,
            "daily",
        )?,
        alerts: topic_for(
            topology,
            processor,
            List::Outputs,
            CampaignAlert::FULL_NAME,
            "",
        )?,
        credits: processor
            .inputs
            .iter()
            .any(|name| {
                topology.topic(name).and_then(|t| t.value_schema.as_deref())
                    == Some(AttributionCredit::FULL_NAME)
            })
            .then(|| {
                topic_for(
                    topology,
                    processor,
                    List::Inputs,
                    AttributionCredit::FULL_NAME,
                    "",
                )
            })
            .transpose()?,
        attribution_model: settings.attribution_model.into(),
        lateness,
        emit: match settings.emit {
            Emit::Updating => EmitMode::Updating,
            Emit::Final => EmitMode::Final,
        },
    })
    .map_err(|e| anyhow!("cannot build the job: {e}"))
}

/// Runs the campaign-metrics job until `shutdown` resolves (or, with `--until-end`, until its inputs are read).
pub async fn campaign_metrics(
    settings: &Settings,
    topology: &Topology,
    args: CampaignMetricsArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let job = campaign_metrics_job(topology, &args.application_id, &args.job)?;
    let config = args
        .run
        .runtime_config(settings, topology, &args.application_id);
    run_stages(
        vec![Stage {
            name: args.application_id.clone(),
            config,
            operator: Box::new(job),
        }],
        &args.run,
        shutdown,
    )
    .await
}

/// Runs the attribution job: the repartition stage and the attribution stage, side by side (with `--until-end`,
/// one after the other, so the second reads everything the first wrote).
pub async fn attribution(
    settings: &Settings,
    topology: &Topology,
    args: AttributionArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let processor = find_processor(topology, &args.application_id)?;
    let conversions = topic_for(topology, processor, List::Inputs, Conversion::FULL_NAME, "")?;
    let partitions = topology
        .topic(&conversions)
        .map(|t| t.partitions)
        .ok_or_else(|| anyhow!("topic {conversions} is not in {}", topology.origin()))?;
    let touches = format!("{}-repartition", args.application_id);
    let repartition = TouchRepartition::new(RepartitionConfig {
        impressions: topic_for(
            topology,
            processor,
            List::Repartition,
            AdImpression::FULL_NAME,
            "",
        )?,
        clicks: topic_for(
            topology,
            processor,
            List::Repartition,
            AdClick::FULL_NAME,
            "",
        )?,
        touches: touches.clone(),
        partitions,
    })
    .map_err(|e| anyhow!("cannot build the repartition stage: {e}"))?;
    let attribution = AttributionJob::new(AttributionConfig {
        touches,
        conversions,
        partitions,
        attributed: topic_for(
            topology,
            processor,
            List::Outputs,
            AttributedConversion::FULL_NAME,
            "",
        )?,
        credits: topic_for(
            topology,
            processor,
            List::Outputs,
            AttributionCredit::FULL_NAME,
            "",
        )?,
        lookback_ms: hours_ms(args.lookback_days * 24.0, "--lookback-days")?,
        grace_ms: secs_ms(args.grace_secs),
        retention_ms: secs_ms(args.retention_secs),
        settings: RuleSettings {
            half_life_ms: hours_ms(args.half_life_hours, "--half-life-hours")?,
            count_views: args.count_views,
            view_weight: args.view_weight,
        },
    })
    .map_err(|e| anyhow!("invalid attribution settings: {e}"))?;
    let stage_one = format!("{}-repartition", args.application_id);
    run_stages(
        vec![
            Stage {
                config: args.run.runtime_config(settings, topology, &stage_one),
                name: stage_one,
                operator: Box::new(repartition),
            },
            Stage {
                name: args.application_id.clone(),
                config: args
                    .run
                    .runtime_config(settings, topology, &args.application_id),
                operator: Box::new(attribution),
            },
        ],
        &args.run,
        shutdown,
    )
    .await
}

/// Runs the creative-fatigue job until `shutdown` resolves (or, with `--until-end`, until its inputs are read).
pub async fn creative_fatigue(
    settings: &Settings,
    topology: &Topology,
    args: CreativeFatigueArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let processor = find_processor(topology, &args.application_id)?;
    let job = CreativeFatigueJob::new(CreativeFatigueConfig {
        impressions: topic_for(
            topology,
            processor,
            List::Inputs,
            AdImpression::FULL_NAME,
            "",
        )?,
        clicks: topic_for(topology, processor, List::Inputs, AdClick::FULL_NAME, "")?,
        output: topic_for(
            topology,
            processor,
            List::Outputs,
            CreativeFatigue::FULL_NAME,
            "",
        )?,
        detector: super::fatigue::detector_config(args.detector_config.as_deref())?,
        lateness: Lateness::new(
            Duration::from_secs(args.grace_secs),
            Duration::from_secs(args.retention_secs),
        )
        .context("invalid --grace-secs/--retention-secs")?,
        report_interval_ms: hours_ms(args.report_interval_hours, "--report-interval-hours")?,
    })
    .map_err(|e| anyhow!("invalid creative-fatigue settings: {e}"))?;
    run_stages(
        vec![Stage {
            name: args.application_id.clone(),
            config: args
                .run
                .runtime_config(settings, topology, &args.application_id),
            operator: Box::new(job),
        }],
        &args.run,
        shutdown,
    )
    .await
}

/// The topics and application ids of the three jobs for a backtest, resolved as the jobs resolve them.
pub fn backtest_topics(
    topology: &Topology,
    metrics: &str,
    fatigue: &str,
    attribution: &str,
) -> Result<JobTopics> {
    let metrics_processor = find_processor(topology, metrics)?;
    let fatigue_processor = find_processor(topology, fatigue)?;
    let attribution_processor = find_processor(topology, attribution)?;
    let input = |processor, name| topic_for(topology, processor, List::Inputs, name, "");
    let output =
        |processor, name, contains| topic_for(topology, processor, List::Outputs, name, contains);
    let impressions = input(metrics_processor, AdImpression::FULL_NAME)?;
    let conversions = input(attribution_processor, Conversion::FULL_NAME)?;
    let partitions = |topic: &str| {
        topology
            .topic(topic)
            .map(|t| t.partitions)
            .ok_or_else(|| anyhow!("topic {topic} is not in {}", topology.origin()))
    };
    Ok(JobTopics {
        clicks: input(metrics_processor, AdClick::FULL_NAME)?,
        campaigns: input(metrics_processor, Campaign::FULL_NAME)?,
        hourly: output(metrics_processor, CampaignMetrics::FULL_NAME, "hourly")?,
        daily: output(metrics_processor, CampaignMetrics::FULL_NAME, "daily")?,
        alerts: output(metrics_processor, CampaignAlert::FULL_NAME, "")?,
        credits: output(attribution_processor, AttributionCredit::FULL_NAME, "")?,
        attributed: output(attribution_processor, AttributedConversion::FULL_NAME, "")?,
        fatigue: output(fatigue_processor, CreativeFatigue::FULL_NAME, "")?,
        metrics_app: metrics.to_owned(),
        fatigue_app: fatigue.to_owned(),
        attribution_app: attribution.to_owned(),
        partitions: partitions(&impressions)?,
        conversion_partitions: partitions(&conversions)?,
        impressions,
        conversions,
    })
}

/// A flag in hours as milliseconds; it must be a positive number.
fn hours_ms(hours: f64, flag: &str) -> Result<i64> {
    if hours.is_finite() && hours > 0.0 {
        Ok((hours * 3_600_000.0) as i64)
    } else {
        bail!("{flag} must be a positive number, got {hours}")
    }
}

/// A flag in seconds as milliseconds, saturating.
fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn find_processor<'t>(topology: &'t Topology, name: &str) -> Result<&'t Processor> {
    topology
        .processor(name)
        .ok_or_else(|| anyhow!("no processor named '{name}' in {}", topology.origin()))
}

/// One consume–process–produce loop of a job.
struct Stage {
    /// Application id of the stage (metrics label, consumer group).
    name: String,
    config: RuntimeConfig,
    operator: Box<dyn Operator>,
}

/// Runs `stages` with one operations endpoint until `shutdown` resolves: all at once, or, with `--until-end`, one
/// after the other. The first stage to fail stops the others.
async fn run_stages(
    stages: Vec<Stage>,
    run: &RunArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(run.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--metrics-listen)", run.metrics_listen))?;
    info!(address = %run.metrics_listen, "serving /metrics, /healthz, /readyz");
    let server = tokio::spawn(serve_operations(
        listener,
        stages
            .iter()
            .map(|s| (s.name.clone(), s.config.metrics.clone()))
            .collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let handle = tokio::runtime::Handle::current();
    let start = |stage: Stage| {
        let stop = stop.clone();
        let handle = handle.clone();
        let name = stage.name;
        tokio::task::spawn_blocking(move || {
            let outcome = runtime::run(stage.config, stage.operator, stop, handle);
            (name, outcome)
        })
    };
    let mut waiting: std::collections::VecDeque<Stage> = stages.into();
    let mut running = tokio::task::JoinSet::new();
    let start_next = |running: &mut tokio::task::JoinSet<_>,
                      waiting: &mut std::collections::VecDeque<Stage>| {
        let count = if run.until_end { 1 } else { waiting.len() };
        for stage in waiting.drain(..count.min(waiting.len())) {
            running.spawn(start(stage));
        }
    };
    start_next(&mut running, &mut waiting);
    tokio::pin!(shutdown);
    let mut failure = None;
    let mut shutting_down = false;
    while !running.is_empty() {
        tokio::select! {
            joined = running.join_next() => {
                let Some(joined) = joined else { break };
                let (name, outcome) = joined.context("a job thread failed")?.context("a job thread panicked")?;
                match outcome {
                    Ok(summary) => println!(
                        "{name} stopped: {} records, {} commits, {} aborts, {} dead letters, {} late, {} restored",
                        summary.records,
                        summary.commits,
                        summary.aborts,
                        summary.dead_letters,
                        summary.late,
                        summary.restored
                    ),
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        failure.get_or_insert(anyhow::Error::new(e).context(format!("{name} stopped with an error")));
                    }
                }
                if failure.is_none() && !shutting_down {
                    start_next(&mut running, &mut waiting);
                }
            }
            () = &mut shutdown, if !shutting_down => {
                info!("shutting down: committing and leaving the group");
                shutting_down = true;
                stop.store(true, Ordering::Relaxed);
            }
        }
    }
    server.abort();
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn serve_operations(listener: tokio::net::TcpListener, jobs: Vec<(String, Arc<JobMetrics>)>) {
    let jobs = Arc::new(jobs);
    let for_metrics = jobs.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = merge_expositions(
                    for_metrics
                        .iter()
                        .map(|(name, metrics)| metrics.render(name)),
                );
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        text,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = jobs.iter().all(|(_, metrics)| metrics.is_ready());
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "restoring or not assigned yet\n",
                        )
                    }
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "operations endpoint stopped");
    }
}
