//! `adstream produce generate`: deterministic realistic traffic into the event topics.

use std::path::PathBuf;
use std::time::Duration;

use adstream_producers::generator::{CpaBreach, Generator, GeneratorConfig};
use adstream_producers::pipeline::{produce_generated, RunOptions};
use adstream_producers::producer::{EventProducer, EventTopics, ProducerSettings};
use adstream_schemas::events::{AdClick, AdImpression, AvroRecord, Campaign, Conversion, Creative};
use adstream_topology::Topology;
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;

use crate::config::Settings;

/// Arguments of `produce generate`.
#[derive(Args)]
pub struct GenerateArgs {
    /// Seed: equal seeds and arguments give equal events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Ad events and conversions to produce (campaign and creative records come on top).
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Records per second; unlimited when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Number of campaigns across the four platforms.
    #[arg(long, default_value_t = 24)]
    campaigns: usize,
    /// Start of the simulated period (RFC 3339).
    #[arg(long, default_value = "2026-11-01T00:00:00Z")]
    start: String,
    /// Length of the simulated period in days.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Plant a CPA breach, CAMPAIGN:DAY:FACTOR: campaign CAMPAIGN (its index, from 0) gets a target CPA of three
    /// times its expected CPA and pays FACTOR times its prices on local day DAY of the period (from 0), so that
    /// CPA_ABOVE_TARGET fires that day and resolves the next.
    #[arg(long)]
    cpa_breach: Option<CpaBreach>,
    /// Where to write the ground-truth manifest (JSON).
    #[arg(long, default_value = "manifest.json")]
    manifest: PathBuf,
}

/// The one topic of `topology` whose `value_schema` is `full_name`.
pub fn topic_of(topology: &Topology, full_name: &str) -> Result<String> {
    let mut matches = topology
        .topics()
        .iter()
        .filter(|t| t.value_schema.as_deref() == Some(full_name));
    match (matches.next(), matches.next()) {
        (Some(topic), None) => Ok(topic.name.clone()),
        (None, _) => bail!("the topology declares no topic with value_schema {full_name}"),
        (Some(a), Some(b)) => bail!(
            "topics {} and {} both declare value_schema {full_name}",
            a.name,
            b.name
        ),
    }
}

/// Resolves which topic carries each record type from the topology's `value_schema` declarations.
pub fn event_topics(topology: &Topology) -> Result<EventTopics> {
    Ok(EventTopics {
        impressions: topic_of(topology, AdImpression::FULL_NAME)?,
        clicks: topic_of(topology, AdClick::FULL_NAME)?,
        conversions: topic_of(topology, Conversion::FULL_NAME)?,
        campaigns: topic_of(topology, Campaign::FULL_NAME)?,
        creatives: topic_of(topology, Creative::FULL_NAME)?,
    })
}

/// Runs `produce generate`.
pub async fn generate(settings: &Settings, topology: &Topology, args: GenerateArgs) -> Result<()> {
    let start = DateTime::parse_from_rfc3339(&args.start)
        .with_context(|| format!("--start '{}' is not an RFC 3339 time", args.start))?
        .with_timezone(&Utc);
    if let Some(breach) = args.cpa_breach {
        if breach.campaign >= args.campaigns || breach.day >= args.days {
            bail!(
                "--cpa-breach names campaign {} on day {}, but there are {} campaigns over {} days",
                breach.campaign,
                breach.day,
                args.campaigns,
                args.days
            );
        }
    }
    let config = GeneratorConfig {
        seed: args.seed,
        events: args.events,
        campaigns: args.campaigns,
        start_ms: start.timestamp_millis(),
        days: args.days,
        cpa_breach: args.cpa_breach,
        ..GeneratorConfig::default()
    };
    let producer_settings = ProducerSettings {
        kafka: settings.kafka_config(),
        registry: settings.registry.clone(),
        topics: event_topics(topology)?,
        source: "/adstream/generator".to_string(),
        connect_timeout: Duration::from_secs(5),
    };
    let producer = EventProducer::connect(&producer_settings).await?;
    eprintln!(
        "generating {} events (seed {}, {} campaigns, {} days from {}){}",
        args.events,
        args.seed,
        args.campaigns,
        args.days,
        start.to_rfc3339(),
        args.rate
            .map(|r| format!(" at {r:.0}/s"))
            .unwrap_or_default()
    );
    let mut generator = Generator::new(config);
    let options = RunOptions {
        rate: args.rate,
        ..RunOptions::default()
    };
    let total = args.events;
    let done = tokio::task::block_in_place(|| {
        produce_generated(&producer, &mut generator, &options, |p| {
            eprintln!(
                "  {:>10} sent ({:>5.1}%), {:>10} acknowledged, {:>9.0} records/s",
                p.sent,
                100.0 * p.sent as f64 / total.max(1) as f64,
                p.delivered,
                p.rate()
            );
        })
    })?;
    let manifest = generator.manifest();
    let file = std::fs::File::create(&args.manifest)
        .with_context(|| format!("cannot create manifest {}", args.manifest.display()))?;
    serde_json::to_writer(std::io::BufWriter::new(file), &manifest)
        .with_context(|| format!("cannot write manifest {}", args.manifest.display()))?;
    let c = &manifest.counts;
    let t = &producer_settings.topics;
    println!(
        "produced {} records in {:.1}s ({:.0} records/s), all acknowledged",
        done.sent,
        done.elapsed.as_secs_f64(),
        done.rate()
    );
    println!("  {:<24} {:>10}", t.impressions, c.impressions);
    println!("  {:<24} {:>10}", t.clicks, c.clicks);
    println!("  {:<24} {:>10}", t.conversions, c.conversions);
    println!("  {:<24} {:>10}", t.campaigns, c.campaigns);
    println!("  {:<24} {:>10}", t.creatives, c.creatives);
    let fatigued = manifest
        .creatives
        .iter()
        .filter(|c| c.fatigue_onset_ms.is_some())
        .count();
    println!(
        "  out of order {}, late {}, creatives fatiguing {fatigued}/{}; manifest {}",
        manifest.out_of_order_ids.len(),
        manifest.late_ids.len(),
        manifest.creatives.len(),
        args.manifest.display()
    );
    Ok(())
}
