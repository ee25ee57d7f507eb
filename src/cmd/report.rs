//! `adstream report campaigns`: what a BI tool would show from the compacted outputs, in the terminal.
//!
//! The topics are the campaign-metrics job's outputs (`hourly`, `daily`, `alerts`), found through its ports in its
//! processor entry of the topology (`--application-id`), as the job itself finds them.
//!
//! The report is SQL over topic tables (`adstream_query::report`): the latest row per key of the metrics topic of
//! the chosen granularity (what compaction keeps), summed per campaign, the top campaigns by spend with their KPIs
//! (the job's own KPI maths), then the alerts that are firing (latest state per campaign and kind). Topics are
//! read to their end at call time, `read_committed`. `--watch` repeats it.
//!
//! Rows are decoded with the registry schema named by each record's schema id, read as this build's
//! `CampaignMetrics`/`CampaignAlert` (so rows written by an older or newer compatible job still read).

use std::sync::Arc;
use std::time::Duration;

use adstream_processors::campaign_metrics::job::CampaignMetricsDefinition;
use adstream_processors::jobs::{Job, Wiring};
use adstream_query::report::{AlertReport, CampaignReport, ReportSession};
use adstream_query::source::KafkaSource;
use adstream_topology::Topology;
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use crate::config::Settings;

/// Which metrics topic to summarise.
#[derive(Clone, Copy, ValueEnum)]
pub enum GranularityArg {
    /// The rows of the job's `hourly` output (`metrics.campaign.hourly`).
    Hourly,
    /// The rows of the job's `daily` output (`metrics.campaign.daily`).
    Daily,
}

/// Arguments of `report campaigns`.
#[derive(Args)]
pub struct CampaignsArgs {
    /// Windows to sum per campaign.
    #[arg(long, value_enum, default_value = "daily")]
    granularity: GranularityArg,
    /// How many campaigns to list (by spend).
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Print the report again every this many seconds until interrupted.
    #[arg(long)]
    watch: Option<u64>,
    /// The campaign-metrics processor of the topology, whose outputs are reported.
    #[arg(long, default_value = "campaign-metrics")]
    application_id: String,
}

/// Fails, as reading it would, when `topic` does not exist (metadata calls block: off the async threads).
async fn require_topic(source: &Arc<KafkaSource>, topic: &str, bootstrap: &str) -> Result<()> {
    let (source, owned) = (source.clone(), topic.to_owned());
    match tokio::task::spawn_blocking(move || source.partitions(&owned))
        .await
        .context("the metadata thread panicked")?
    {
        Ok(_) => Ok(()),
        Err(missing @ adstream_query::QueryError::NoSuchTopic(_)) => Err(missing.into()),
        Err(other) => Err(anyhow::Error::new(other))
            .with_context(|| format!("cannot reach Kafka at {bootstrap}")),
    }
}

fn money(micros: f64) -> String {
    format!("{:.2}", micros / 1e6)
}

fn optional(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map(format).unwrap_or_else(|| "-".to_owned())
}

fn print_campaigns(metrics_topic: &str, report: &CampaignReport) {
    println!(
        "{metrics_topic}: {} rows, {} campaigns{}",
        report.rows,
        report.campaigns,
        if report.undecodable > 0 {
            format!(", {} undecodable", report.undecodable)
        } else {
            String::new()
        }
    );
    println!(
        "{:<22} {:<10} {:>11} {:>9} {:>13} {:>7} {:>8} {:>8} {:>8} {:>8} {:>6} {:>8} {:>12}",
        "campaign",
        "platform",
        "impressions",
        "clicks",
        "spend",
        "CTR %",
        "CPC",
        "CPM",
        "conv.",
        "CPA",
        "ROAS",
        "windows",
        "corrections"
    );
    for summary in &report.top {
        let kpis = &summary.kpis;
        println!(
            "{:<22} {:<10} {:>11} {:>9} {:>9} {:<3} {:>7} {:>8} {:>8} {:>8.1} {:>8} {:>6} {:>8} {:>12}",
            summary.campaign_id,
            format!("{:?}", summary.platform),
            summary.totals.impressions,
            summary.totals.clicks,
            money(summary.totals.spend_micros as f64),
            summary.currency,
            optional(kpis.ctr, |v| format!("{:.2}", v * 100.0)),
            optional(kpis.cpc_micros, money),
            optional(kpis.cpm_micros, money),
            summary.totals.conversions,
            optional(kpis.cpa_micros, money),
            optional(kpis.roas, |v| format!("{v:.2}")),
            format!("{}/{}", summary.final_windows, summary.windows),
            summary.corrections
        );
    }
}

fn print_alerts(alerts_topic: &str, report: &AlertReport, top: usize) {
    println!(
        "\n{alerts_topic}: {} changes, {} firing now",
        report.changes,
        report.firing.len()
    );
    for alert in report.firing.iter().take(top.max(10)) {
        println!(
            "  {:<9} {:<22} {}",
            format!("{:?}", alert.severity),
            alert.campaign_id,
            alert.message
        );
    }
}

async fn report_once(
    source: &Arc<KafkaSource>,
    session: &ReportSession,
    bootstrap: &str,
    top: usize,
) -> Result<()> {
    require_topic(source, session.metrics_topic(), bootstrap).await?;
    let campaigns = CampaignReport::query(session, top).await?;
    print_campaigns(session.metrics_topic(), &campaigns);
    require_topic(source, session.alerts_topic(), bootstrap).await?;
    let alerts = AlertReport::query(session).await?;
    print_alerts(session.alerts_topic(), &alerts, top);
    Ok(())
}

/// Prints the report (repeatedly with `--watch`).
pub async fn campaigns(
    settings: &Settings,
    topology: &Topology,
    args: CampaignsArgs,
) -> Result<()> {
    // The job's own ports name its outputs, as `adstream process campaign-metrics` writes them.
    let wiring = Wiring::resolve(
        topology,
        &args.application_id,
        CampaignMetricsDefinition::PORTS,
    )?;
    let metrics_topic = wiring.topic(match args.granularity {
        GranularityArg::Hourly => "hourly",
        GranularityArg::Daily => "daily",
    })?;
    let alerts_topic = wiring.topic("alerts")?;
    let source = Arc::new(KafkaSource::new(
        settings.kafka_config(),
        settings.registry.clone(),
    )?);
    let session = ReportSession::new(&source, &metrics_topic, &alerts_topic)?;
    loop {
        report_once(&source, &session, &settings.bootstrap_servers, args.top).await?;
        let Some(seconds) = args.watch else {
            return Ok(());
        };
        tokio::time::sleep(Duration::from_secs(seconds.max(1))).await;
        println!();
    }
}
