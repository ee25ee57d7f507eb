//! `adstream report campaigns`: what a BI tool would show from the compacted outputs, in the terminal.
//!
//! Reads the metrics topic of the chosen granularity to its end (`read_committed`), keeps the latest row per key
//! (what compaction keeps), sums each campaign's windows and prints the top campaigns by spend with their KPIs,
//! then the alerts that are firing (latest state per campaign and kind). `--watch` repeats it.
//!
//! Rows are decoded with the registry schema named by each record's schema id, read as this build's
//! `CampaignMetrics`/`CampaignAlert` (so rows written by an older or newer compatible job still read).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::time::Duration;

use adstream_kafka::read::{self, ReadOptions};
use adstream_kafka::registry_client::RegistryClient;
use adstream_kafka::QuietEof;
use adstream_processors::campaign_metrics::kpi::{Kpis, Totals};
use adstream_processors::runtime::{SchemaCache, TypedDecoder};
use adstream_schemas::outputs::{AlertSeverity, CampaignAlert, CampaignMetrics};
use adstream_topology::Topology;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use rdkafka::consumer::BaseConsumer;
use rdkafka::Message;

use crate::config::Settings;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Which metrics topic to summarise.
#[derive(Clone, Copy, ValueEnum)]
pub enum GranularityArg {
    /// `metrics.campaign.hourly` rows.
    Hourly,
    /// `metrics.campaign.daily` rows.
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
}

/// The one topology topic whose value schema is `full_name` and whose name contains `contains`.
fn topic_with(topology: &Topology, full_name: &str, contains: &str) -> Result<String> {
    let found: Vec<&str> = topology
        .topics()
        .iter()
        .filter(|t| t.value_schema.as_deref() == Some(full_name) && t.name.contains(contains))
        .map(|t| t.name.as_str())
        .collect();
    match found.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => bail!(
            "{} declares no topic carrying {full_name} named *{contains}*",
            topology.origin()
        ),
        many => bail!(
            "{}: several topics carry {full_name}: {many:?}",
            topology.origin()
        ),
    }
}

/// Decoded records as (key, value), and how many records did not decode.
type Decoded<T> = (Vec<(Vec<u8>, T)>, u64);

/// Every record of `topic` from the beginning to its end at call time, decoded; undecodable records are counted.
fn read_all<T: serde::de::DeserializeOwned>(
    settings: &Settings,
    topic: &str,
    decoder: &mut TypedDecoder,
    schemas: &mut SchemaCache,
) -> Result<Decoded<T>> {
    let config = read::reader_config(&settings.kafka_config(), "adstream-report", true);
    let consumer: BaseConsumer<QuietEof> = config
        .create_with_context(QuietEof)
        .context("invalid Kafka client configuration")?;
    let partitions = read::partition_count::<_, Infallible>(&consumer, topic, TIMEOUT)
        .with_context(|| format!("cannot reach Kafka at {}", settings.bootstrap_servers))?
        .ok_or_else(|| anyhow!("topic {topic} does not exist (run `adstream topology apply`)"))?;
    let options = ReadOptions {
        stall_timeout: TIMEOUT,
        ..ReadOptions::default()
    };
    let mut rows = Vec::new();
    let mut undecodable = 0;
    let all: Vec<i32> = (0..partitions).collect();
    read::read_to_end::<_, Infallible>(&consumer, topic, &all, &options, |message| {
        let Some(key) = message.key() else {
            return Ok(());
        };
        if message.payload().is_none() {
            return Ok(());
        }
        match decoder.decode::<T>(schemas, message.payload()) {
            Ok(row) => rows.push((key.to_vec(), row)),
            Err(_) => undecodable += 1,
        }
        Ok(())
    })?;
    Ok((rows, undecodable))
}

/// One campaign's sums over its windows.
#[derive(Default)]
struct CampaignSummary {
    platform: String,
    currency: String,
    totals: Totals,
    windows: usize,
    open_windows: usize,
    last_window_start: i64,
    corrections: i64,
}

fn money(micros: f64) -> String {
    format!("{:.2}", micros / 1e6)
}

fn optional(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map(format).unwrap_or_else(|| "-".to_owned())
}

fn report_once(
    settings: &Settings,
    metrics_topic: &str,
    alerts_topic: &str,
    top: usize,
    schemas: &mut SchemaCache,
) -> Result<()> {
    let mut metrics_decoder =
        TypedDecoder::new(CampaignMetrics::FULL_NAME, CampaignMetrics::SCHEMA)
            .map_err(|e| anyhow!(e))?;
    let (rows, bad_rows) =
        read_all::<CampaignMetrics>(settings, metrics_topic, &mut metrics_decoder, schemas)?;
    let latest: HashMap<Vec<u8>, CampaignMetrics> = rows.into_iter().collect();
    let mut campaigns: BTreeMap<String, CampaignSummary> = BTreeMap::new();
    for row in latest.values() {
        let summary = campaigns.entry(row.campaign_id.clone()).or_default();
        summary.platform = format!("{:?}", row.platform);
        summary.currency.clone_from(&row.currency);
        summary.totals.add(&Totals {
            impressions: u64::try_from(row.impressions).unwrap_or(0),
            clicks: u64::try_from(row.clicks).unwrap_or(0),
            spend_micros: row.spend_micros,
            conversions: row.conversions,
            revenue_micros: row.revenue_micros,
        });
        summary.windows += 1;
        summary.open_windows += usize::from(!row.is_final);
        summary.last_window_start = summary.last_window_start.max(row.window_start);
        summary.corrections += row.corrections;
    }
    let mut ranked: Vec<(&String, &CampaignSummary)> = campaigns.iter().collect();
    ranked.sort_by(|a, b| {
        b.1.totals
            .spend_micros
            .cmp(&a.1.totals.spend_micros)
            .then(a.0.cmp(b.0))
    });
    println!(
        "{metrics_topic}: {} rows, {} campaigns{}",
        latest.len(),
        campaigns.len(),
        if bad_rows > 0 {
            format!(", {bad_rows} undecodable")
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
    for (campaign, summary) in ranked.iter().take(top) {
        let kpis = Kpis::of(&summary.totals);
        println!(
            "{:<22} {:<10} {:>11} {:>9} {:>9} {:<3} {:>7} {:>8} {:>8} {:>8.1} {:>8} {:>6} {:>8} {:>12}",
            campaign,
            summary.platform,
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
            format!(
                "{}/{}",
                summary.windows - summary.open_windows,
                summary.windows
            ),
            summary.corrections
        );
    }

    let mut alert_decoder = TypedDecoder::new(CampaignAlert::FULL_NAME, CampaignAlert::SCHEMA)
        .map_err(|e| anyhow!(e))?;
    let (alerts, _) =
        read_all::<CampaignAlert>(settings, alerts_topic, &mut alert_decoder, schemas)?;
    let changes = alerts.len();
    let mut state: BTreeMap<(String, String), CampaignAlert> = BTreeMap::new();
    for (_, alert) in alerts {
        state.insert(
            (alert.campaign_id.clone(), format!("{:?}", alert.kind)),
            alert,
        );
    }
    let firing: Vec<&CampaignAlert> = state
        .values()
        .filter(|a| a.severity != AlertSeverity::Resolved)
        .collect();
    println!(
        "\n{alerts_topic}: {changes} changes, {} firing now",
        firing.len()
    );
    for alert in firing.iter().take(top.max(10)) {
        println!(
            "  {:<9} {:<22} {}",
            format!("{:?}", alert.severity),
            alert.campaign_id,
            alert.message
        );
    }
    Ok(())
}

/// Prints the report (repeatedly with `--watch`).
pub async fn campaigns(
    settings: &Settings,
    topology: &Topology,
    args: CampaignsArgs,
) -> Result<()> {
    let granularity = match args.granularity {
        GranularityArg::Hourly => "hourly",
        GranularityArg::Daily => "daily",
    };
    let metrics_topic = topic_with(topology, CampaignMetrics::FULL_NAME, granularity)?;
    let alerts_topic = topic_with(topology, CampaignAlert::FULL_NAME, "")?;
    let registry = RegistryClient::new(&settings.registry_url)?;
    let settings = settings.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut schemas = SchemaCache::new(registry, handle);
        loop {
            report_once(
                &settings,
                &metrics_topic,
                &alerts_topic,
                args.top,
                &mut schemas,
            )?;
            let Some(seconds) = args.watch else {
                return Ok(());
            };
            std::thread::sleep(Duration::from_secs(seconds.max(1)));
            println!();
        }
    })
    .await
    .context("the report thread panicked")?
}
