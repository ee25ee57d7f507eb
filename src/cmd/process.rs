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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adstream_processors::campaign_metrics::{CampaignMetricsConfig, CampaignMetricsJob, EmitMode};
use adstream_processors::runtime::{self, DeliveryGuarantee, JobMetrics, RuntimeConfig};
use adstream_processors::window::Lateness;
use adstream_schemas::events::{AdClick, AdImpression, AvroRecord, Campaign};
use adstream_schemas::outputs::{
    AttributionCredit, AttributionModel, CampaignAlert, CampaignMetrics,
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

/// Arguments of `process campaign-metrics`.
#[derive(Args)]
pub struct CampaignMetricsArgs {
    /// Processor name in the topology; also the consumer group, the changelog prefix and the transactional id
    /// prefix.
    #[arg(long, default_value = "campaign-metrics")]
    application_id: String,
    /// This replica's id: unique per replica, stable across its restarts (e.g. a StatefulSet pod name).
    #[arg(long, env = "ADSTREAM_INSTANCE_ID", default_value = "0")]
    instance_id: String,
    /// Delivery guarantee.
    #[arg(long, value_enum, default_value = "exactly-once")]
    guarantee: Guarantee,
    /// How often outputs, state and offsets are committed, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    commit_interval_ms: u64,
    /// Grace period after a window's end (watermark time) before its row is final, in seconds.
    #[arg(long, default_value_t = 600)]
    grace_secs: u64,
    /// How long after a window's end its state is kept for corrections, in seconds; later events go to
    /// `late.<topic>`.
    #[arg(long, default_value_t = 2 * 86_400)]
    retention_secs: u64,
    /// When rows are emitted.
    #[arg(long, value_enum, default_value = "updating")]
    emit: Emit,
    /// Attribution model whose credits (from the processor's input carrying AttributionCredit, if it has one)
    /// count as conversions and revenue.
    #[arg(long, value_enum, default_value = "last-touch")]
    attribution_model: Model,
    /// Address of the /metrics, /healthz and /readyz endpoint.
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_listen: SocketAddr,
    /// Stop once every input partition has been read to its end (replays, batch catch-up).
    #[arg(long)]
    until_end: bool,
}

/// The topic of `processor`'s `list` (inputs or outputs) whose value schema is `full_name` and whose name contains
/// `contains`.
fn topic_for(
    topology: &Topology,
    processor: &Processor,
    outputs: bool,
    full_name: &str,
    contains: &str,
) -> Result<String> {
    let list = if outputs {
        &processor.outputs
    } else {
        &processor.inputs
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
            if outputs { "output" } else { "input" },
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

/// Runs the campaign-metrics job until `shutdown` resolves (or, with `--until-end`, until its inputs are read).
pub async fn campaign_metrics(
    settings: &Settings,
    topology: &Topology,
    args: CampaignMetricsArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let processor = topology.processor(&args.application_id).ok_or_else(|| {
        anyhow!(
            "no processor named '{}' in {}",
            args.application_id,
            topology.origin()
        )
    })?;
    let lateness = Lateness::new(
        Duration::from_secs(args.grace_secs),
        Duration::from_secs(args.retention_secs),
    )
    .context("invalid --grace-secs/--retention-secs")?;
    let job = CampaignMetricsJob::new(CampaignMetricsConfig {
        impressions: topic_for(topology, processor, false, AdImpression::FULL_NAME, "")?,
        clicks: topic_for(topology, processor, false, AdClick::FULL_NAME, "")?,
        campaigns: topic_for(topology, processor, false, Campaign::FULL_NAME, "")?,
        hourly: topic_for(
            topology,
            processor,
            true,
            CampaignMetrics::FULL_NAME,
            "hourly",
        )?,
        daily: topic_for(
            topology,
            processor,
            true,
            CampaignMetrics::FULL_NAME,
            "daily",
        )?,
        alerts: topic_for(topology, processor, true, CampaignAlert::FULL_NAME, "")?,
        credits: processor
            .inputs
            .iter()
            .any(|name| {
                topology.topic(name).and_then(|t| t.value_schema.as_deref())
                    == Some(AttributionCredit::FULL_NAME)
            })
            .then(|| topic_for(topology, processor, false, AttributionCredit::FULL_NAME, ""))
            .transpose()?,
        attribution_model: args.attribution_model.into(),
        lateness,
        emit: match args.emit {
            Emit::Updating => EmitMode::Updating,
            Emit::Final => EmitMode::Final,
        },
    })
    .map_err(|e| anyhow!("cannot build the job: {e}"))?;

    let mut config = RuntimeConfig::new(
        &args.application_id,
        settings.kafka_config(),
        &settings.registry_url,
    );
    config.instance_id = args.instance_id;
    config.guarantee = match args.guarantee {
        Guarantee::ExactlyOnce => DeliveryGuarantee::ExactlyOnce,
        Guarantee::AtLeastOnce => DeliveryGuarantee::AtLeastOnce,
    };
    config.commit_interval = Duration::from_millis(args.commit_interval_ms.max(1));
    config.exit_at_end_of_input = args.until_end;
    let metrics = config.metrics.clone();

    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--metrics-listen)",
                args.metrics_listen
            )
        })?;
    info!(address = %args.metrics_listen, "serving /metrics, /healthz, /readyz");
    let server = tokio::spawn(serve_operations(
        listener,
        metrics,
        args.application_id.clone(),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let handle = tokio::runtime::Handle::current();
    let worker = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || runtime::run(config, Box::new(job), stop, handle))
    };
    tokio::pin!(shutdown);
    tokio::pin!(worker);
    let outcome = tokio::select! {
        outcome = &mut worker => outcome,
        () = &mut shutdown => {
            info!("shutting down: committing and leaving the group");
            stop.store(true, Ordering::Relaxed);
            (&mut worker).await
        }
    };
    server.abort();
    let summary = outcome
        .context("the job thread panicked")?
        .context("the job stopped with an error")?;
    println!(
        "campaign-metrics stopped: {} records, {} commits, {} aborts, {} dead letters, {} late, {} restored",
        summary.records,
        summary.commits,
        summary.aborts,
        summary.dead_letters,
        summary.late,
        summary.restored
    );
    Ok(())
}

async fn serve_operations(
    listener: tokio::net::TcpListener,
    metrics: Arc<JobMetrics>,
    application_id: String,
) {
    let for_metrics = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = for_metrics.render(&application_id);
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
                let ready = metrics.is_ready();
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
