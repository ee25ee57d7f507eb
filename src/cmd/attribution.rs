//! `adstream attribution models`: credit a path dataset under every attribution model.
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

use std::collections::BTreeMap;
use std::path::PathBuf;

use adstream_processors::attribution::dataset::parse_dataset;
use adstream_processors::attribution::models::{self, ChannelCredits, RuleModel, RuleSettings};
use anyhow::{bail, Context, Result};
use serde::Serialize;

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
