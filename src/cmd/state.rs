//! `adstream state --campaign ID --at TIME`: one campaign's metrics as the campaign-metrics job had them at a
//! moment, rebuilt from history.
//!
//! The job itself is re-run (`runtime::simulate`, the live operator code) over the records of that campaign with
//! timestamps up to the moment: its key's partition of each input (found with Kafka's partitioner, so only that
//! partition is read, and only up to the offset for the moment plus the allowed lateness), the campaign's settings
//! as they were then, and its attribution credits. Windows still open at the moment show what they held then.

use std::collections::BTreeMap;

use adstream_kafka::partitioner::kafka_partition;
use adstream_processors::campaign_metrics::job::{
    CampaignMetricsDefinition, CampaignMetricsSettings,
};
use adstream_processors::campaign_metrics::kpi::{Kpis, Totals};
use adstream_processors::jobs::{Job, Wiring};
use adstream_processors::runtime::simulate::{
    interleave_by_timestamp, simulate, SimulateOptions, SimulatedRecord,
};
use adstream_processors::runtime::{Operator, SchemaCache, TypedDecoder};
use adstream_schemas::outputs::{CampaignAlert, CampaignMetrics, Granularity};
use anyhow::{anyhow, Context, Result};
use clap::{Args, ValueEnum};
use rdkafka::Message;

use adstream_query::instant::parse_instant;
use adstream_query::source::TimestampOrder;

use crate::config::Settings;
use crate::scan::ScanArgs;

/// Which windows to show.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateGranularity {
    /// Hourly windows.
    Hourly,
    /// Daily windows (in the campaign's time zone).
    Daily,
}

/// Arguments of `adstream state`.
#[derive(Args)]
pub struct StateArgs {
    /// The campaign id.
    #[arg(long)]
    campaign: String,
    /// The moment: RFC 3339 (`2026-11-02T12:00:00Z`), a date (midnight UTC) or epoch milliseconds.
    #[arg(long)]
    at: String,
    /// Windows to list.
    #[arg(long, value_enum, default_value = "daily")]
    granularity: StateGranularity,
    /// The campaign-metrics processor of the topology.
    #[arg(long, default_value = "campaign-metrics")]
    application_id: String,
    /// Print JSON (one object per window) instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    job: CampaignMetricsSettings,
    #[command(flatten)]
    scan: ScanArgs,
}

/// Runs `adstream state`.
pub async fn run(
    settings: &Settings,
    topology: &adstream_topology::Topology,
    args: StateArgs,
) -> Result<()> {
    let at_ms = parse_instant(&args.at)?;
    let wiring = Wiring::resolve(
        topology,
        &args.application_id,
        CampaignMetricsDefinition::PORTS,
    )?;
    let job = CampaignMetricsDefinition::operator(&wiring, &args.job)?;
    let source = args.scan.open_source(settings)?;
    let inputs = job.inputs();
    let outputs = job.outputs();
    let campaign = args.campaign.clone();
    let read_source = source.clone();
    // Blocking reads (librdkafka) off the async threads.
    let (records, partitions) = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut records = Vec::new();
        let mut task_count = 1;
        for (index, input) in inputs.iter().enumerate() {
            let count = read_source.partitions(&input.topic)?;
            task_count = task_count.max(count);
            let partition = kafka_partition(campaign.as_bytes(), count);
            // The job's inputs here are event streams, written roughly in time order.
            let ranges = read_source.plan_ranges(
                &input.topic,
                Some(&[partition]),
                None,
                Some(at_ms + 1),
                TimestampOrder::Roughly,
            )?;
            for range in ranges {
                read_source.read_range(&input.topic, range, 4096, |messages| {
                    for message in messages {
                        let timestamp = message.timestamp().to_millis();
                        if timestamp.is_some_and(|t| t > at_ms) {
                            continue;
                        }
                        // The campaign's records, and the watermark markers of inputs that carry them.
                        let ours = message.key() == Some(campaign.as_bytes());
                        let marker = message.key().is_none() && message.payload().is_none();
                        if !ours && !marker {
                            continue;
                        }
                        records.push(SimulatedRecord::from_message(index, &input.topic, message));
                    }
                    Ok(true)
                })?;
            }
        }
        Ok((records, task_count))
    })
    .await??;
    let replayed = records.len();

    // Outputs are encoded with the ids their subjects have in the registry, so one cache decodes them back.
    let mut output_ids = Vec::with_capacity(outputs.len());
    for output in &outputs {
        let (id, _) = source
            .latest_schema(&format!("{}-value", output.topic))
            .with_context(|| format!("output {} of {}", output.topic, args.application_id))?;
        output_ids.push(id);
    }
    let registry = source.registry().clone();
    let handle = tokio::runtime::Handle::current();
    let application_id = args.application_id.clone();
    let simulation = tokio::task::spawn_blocking(move || {
        let options = SimulateOptions::new(&application_id, partitions, output_ids);
        simulate(
            Box::new(job),
            SchemaCache::new(registry.clone(), handle.clone()),
            interleave_by_timestamp(records),
            &options,
        )
        .map(|simulation| (simulation, SchemaCache::new(registry, handle)))
    })
    .await?
    .map_err(|e| anyhow!("re-running {}: {e}", args.application_id))?;
    let (simulation, mut cache) = simulation;

    let wanted = match args.granularity {
        StateGranularity::Hourly => Granularity::Hourly,
        StateGranularity::Daily => Granularity::Daily,
    };
    let mut decoder = TypedDecoder::new(CampaignMetrics::FULL_NAME, CampaignMetrics::SCHEMA)
        .map_err(|e| anyhow!("{e}"))?;
    let mut windows: BTreeMap<i64, CampaignMetrics> = BTreeMap::new();
    for output in &outputs {
        if output.value_schema != CampaignMetrics::SCHEMA {
            continue;
        }
        for value in simulation.compacted(&output.topic).values() {
            let row: CampaignMetrics =
                tokio::task::block_in_place(|| decoder.decode(&mut cache, Some(value)))
                    .map_err(|e| anyhow!("decoding a re-run row: {e}"))?;
            if row.campaign_id == args.campaign && row.granularity == wanted {
                windows.insert(row.window_start, row);
            }
        }
    }
    let mut alert_decoder = TypedDecoder::new(CampaignAlert::FULL_NAME, CampaignAlert::SCHEMA)
        .map_err(|e| anyhow!("{e}"))?;
    let mut alerts: Vec<CampaignAlert> = Vec::new();
    for output in &outputs {
        if output.value_schema != CampaignAlert::SCHEMA {
            continue;
        }
        for value in simulation.compacted(&output.topic).values() {
            let alert: CampaignAlert =
                tokio::task::block_in_place(|| alert_decoder.decode(&mut cache, Some(value)))
                    .map_err(|e| anyhow!("decoding a re-run alert: {e}"))?;
            if alert.campaign_id == args.campaign {
                alerts.push(alert);
            }
        }
    }
    print_state(&args, at_ms, replayed, &windows, &alerts)
}

fn print_state(
    args: &StateArgs,
    at_ms: i64,
    replayed: usize,
    windows: &BTreeMap<i64, CampaignMetrics>,
    alerts: &[CampaignAlert],
) -> Result<()> {
    if args.json {
        for row in windows.values() {
            println!("{}", serde_json::to_string(row)?);
        }
        return Ok(());
    }
    let at = chrono::DateTime::from_timestamp_millis(at_ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| at_ms.to_string());
    println!(
        "campaign {} as of {at} ({replayed} records replayed through the campaign-metrics job)",
        args.campaign
    );
    println!(
        "{:<20} {:>11} {:>8} {:>13} {:>9} {:>11} {:>7} {:>9} {:>9} {:>9} {:>7} {:>6}",
        "window start",
        "impressions",
        "clicks",
        "spend",
        "conv.",
        "revenue",
        "CTR %",
        "CPC",
        "CPM",
        "CPA",
        "ROAS",
        "final"
    );
    let mut total = Totals::default();
    let mut currency = String::new();
    for row in windows.values() {
        let totals = Totals {
            impressions: u64::try_from(row.impressions).unwrap_or(0),
            clicks: u64::try_from(row.clicks).unwrap_or(0),
            spend_micros: row.spend_micros,
            conversions: row.conversions,
            revenue_micros: row.revenue_micros,
        };
        total.add(&totals);
        currency.clone_from(&row.currency);
        let start = chrono::DateTime::from_timestamp_millis(row.window_start)
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        print_row(&start, &totals, if row.is_final { "yes" } else { "no" });
    }
    print_row(&format!("total ({currency})"), &total, "");
    if !alerts.is_empty() {
        println!("\nalerts:");
        for alert in alerts {
            println!("  {}", serde_json::to_string(alert)?);
        }
    }
    Ok(())
}

fn print_row(label: &str, totals: &Totals, last: &str) {
    let kpis = Kpis::of(totals);
    let money = |micros: Option<f64>| micros.map_or("-".to_owned(), |m| format!("{:.2}", m / 1e6));
    println!(
        "{:<20} {:>11} {:>8} {:>13.2} {:>9.2} {:>11.2} {:>7} {:>9} {:>9} {:>9} {:>7} {:>6}",
        label,
        totals.impressions,
        totals.clicks,
        totals.spend_micros as f64 / 1e6,
        totals.conversions,
        totals.revenue_micros / 1e6,
        kpis.ctr
            .map_or("-".to_owned(), |c| format!("{:.2}", c * 100.0)),
        money(kpis.cpc_micros),
        money(kpis.cpm_micros),
        money(kpis.cpa_micros),
        kpis.roas.map_or("-".to_owned(), |r| format!("{r:.2}")),
        last
    );
}
