//! `adstream fatigue`: the creative-fatigue detector offline, without Kafka: `evaluate` scores it against the
//! generator's planted fatigue, `fit` prints the Poisson decay fit of a CSV (the Python oracle test compares it
//! with statsmodels).

use std::path::PathBuf;
use std::time::Instant;

use adstream_processors::fatigue::detector::fit_poisson_decay;
use adstream_processors::fatigue::evaluate::{
    CreativeTruthInput, EvaluationCriteria, FatigueEvent, Replay,
};
use adstream_processors::fatigue::job::read_detector_config;
use adstream_processors::fatigue::points::parse_points;
use adstream_producers::generator::{Generated, GeneratedEvent, Generator, GeneratorConfig};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

/// Subcommands of `adstream fatigue`.
#[derive(Subcommand)]
pub enum FatigueCommand {
    /// Generate traffic in process (no Kafka), replay it through the fatigue detector as the live job would, and
    /// score the detections against the planted fatigue: recall, precision, detection delay, one row per
    /// creative.
    Evaluate(EvaluateArgs),
    /// Fit clicks ~ Poisson(impressions · exp(β0 + β1·exposure)) to a CSV with columns
    /// `exposure,impressions,clicks` and print β0, β1 and their standard errors as JSON.
    Fit(FitArgs),
}

/// Arguments of `fatigue evaluate`. The defaults give enough fatiguing creatives with enough clicks each for
/// recall and precision to mean something, in about a minute in a debug build.
#[derive(Args)]
pub struct EvaluateArgs {
    /// Generator seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Ad events and conversions to generate.
    #[arg(long, default_value_t = 6_000_000)]
    events: u64,
    /// Campaigns (three to six creatives each); fewer campaigns give each creative more traffic.
    #[arg(long, default_value_t = 12)]
    campaigns: usize,
    /// Length of the simulated period in days.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Share of creatives with a planted fatigue curve.
    #[arg(long, default_value_t = 0.5)]
    fatigued_share: f64,
    /// JSON file overriding detector settings (any subset of the `FatigueConfig` fields).
    #[arg(long)]
    detector_config: Option<PathBuf>,
    /// A planted creative counts as positive when its CTR fell by at least this share by the end.
    #[arg(long, default_value_t = EvaluationCriteria::default().min_true_decline)]
    min_true_decline: f64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `fatigue fit`.
#[derive(Args)]
pub struct FitArgs {
    /// CSV file with a header and columns `exposure,impressions,clicks`.
    #[arg(long)]
    points: PathBuf,
}

/// Runs an `adstream fatigue` subcommand.
pub fn run(command: FatigueCommand) -> Result<()> {
    match command {
        FatigueCommand::Evaluate(args) => evaluate(args),
        FatigueCommand::Fit(args) => fit(args),
    }
}

fn evaluate(args: EvaluateArgs) -> Result<()> {
    let config = read_detector_config(args.detector_config.as_deref())?;
    if !(args.fatigued_share >= 0.0 && args.fatigued_share <= 1.0) {
        bail!(
            "--fatigued-share must be in [0, 1], got {}",
            args.fatigued_share
        );
    }
    if !(args.min_true_decline > 0.0 && args.min_true_decline < 1.0) {
        bail!(
            "--min-true-decline must be in (0, 1), got {}",
            args.min_true_decline
        );
    }
    let criteria = EvaluationCriteria {
        min_true_decline: args.min_true_decline,
        ..EvaluationCriteria::default()
    };
    let mut generator = Generator::new(GeneratorConfig {
        seed: args.seed,
        events: args.events,
        campaigns: args.campaigns,
        days: args.days,
        fatigued_creative_share: args.fatigued_share,
        // Journeys are for attribution; keeping them would only cost memory here.
        journey_limit: 0,
        ..GeneratorConfig::default()
    });
    eprintln!(
        "replaying {} generated events (seed {}, {} campaigns, {} days) through the fatigue detector",
        args.events, args.seed, args.campaigns, args.days
    );
    let started = Instant::now();
    let mut replay = Replay::new(&config, &criteria);
    let mut seen: u64 = 0;
    for generated in generator.by_ref() {
        seen += 1;
        if seen.is_multiple_of(1_000_000) {
            eprintln!(
                "  {seen:>10} events ({:>5.1}%), {:.0} s",
                100.0 * seen as f64 / args.events.max(1) as f64,
                started.elapsed().as_secs_f64()
            );
        }
        if let Some(event) = fatigue_event(generated) {
            replay.push(event);
        }
    }
    let truth: Vec<CreativeTruthInput> = generator
        .manifest()
        .creatives
        .into_iter()
        .map(|c| CreativeTruthInput {
            creative_id: c.creative_id,
            campaign_id: c.campaign_id,
            planted: c.fatigue_planted,
            onset_frequency: c.fatigue_onset_frequency,
            lambda: c.fatigue_lambda,
            onset_ms: c.fatigue_onset_ms,
            baseline_ctr: c.baseline_ctr,
            impressions: c.impressions,
            reach: c.reach,
        })
        .collect();
    let report = replay.finish(&truth);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

/// The detector's view of a generated record: impressions and clicks; everything else is not its input. Here
/// rather than in a library because no library crate depends on both the generator and the detector.
fn fatigue_event(generated: Generated) -> Option<FatigueEvent> {
    match generated.event {
        GeneratedEvent::Impression(i) => Some(FatigueEvent::Impression {
            creative_id: i.creative_id,
            campaign_id: i.campaign_id,
            time_ms: i.event_time,
            user_id: i.user_id,
            cost_micros: i.cost_micros,
        }),
        GeneratedEvent::Click(c) => Some(FatigueEvent::Click {
            creative_id: c.creative_id,
            time_ms: c.event_time,
            cost_micros: c.cost_micros,
        }),
        _ => None,
    }
}

fn fit(args: FitArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.points)
        .with_context(|| format!("cannot read {}", args.points.display()))?;
    let points = parse_points(&text).with_context(|| format!("in {}", args.points.display()))?;
    let fit = fit_poisson_decay(&points)?;
    println!("{}", serde_json::to_string_pretty(&fit)?);
    Ok(())
}
