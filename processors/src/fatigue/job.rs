//! The creative-fatigue job's definition: settings, ports and constructor (see [`crate::jobs`]).

use std::path::Path;
use std::time::Duration;

use adstream_schemas::events::{AdClick, AdImpression, AvroRecord};
use adstream_schemas::outputs::{CreativeAlert, CreativeFatigue as FatigueRecord};
use serde::{Deserialize, Serialize};

use super::detector::FatigueConfig;
use super::operator::{CreativeFatigueConfig, CreativeFatigueJob};
use crate::jobs::{Job, Port, PortList, Stage, Wiring};
use crate::runtime::JobError;
use crate::window::Lateness;

/// Default [`CreativeFatigueSettings::grace_secs`].
pub const DEFAULT_GRACE_SECS: u64 = 600;
/// Default [`CreativeFatigueSettings::retention_secs`].
pub const DEFAULT_RETENTION_SECS: u64 = 12 * 3_600;
/// Default [`CreativeFatigueSettings::report_interval_hours`].
pub const DEFAULT_REPORT_INTERVAL_HOURS: f64 = 6.0;

/// What the creative-fatigue job computes, apart from how it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct CreativeFatigueSettings {
    /// How long after an hour's end (watermark time) it closes, waiting for out-of-order events, in seconds.
    #[arg(long, default_value_t = DEFAULT_GRACE_SECS)]
    pub grace_secs: u64,
    /// How long after an hour's end a late event still counts in its hour (the creative is reassessed), in
    /// seconds; later events go to `late.<topic>`.
    #[arg(long, default_value_t = DEFAULT_RETENTION_SECS)]
    pub retention_secs: u64,
    /// A creative whose status did not change gets a new record after this much event time, in hours.
    #[arg(long, default_value_t = DEFAULT_REPORT_INTERVAL_HOURS)]
    pub report_interval_hours: f64,
    /// Detector settings: any subset of the `FatigueConfig` fields (in YAML, e.g. `{ cusum_threshold: 8 }`; on
    /// the command line a JSON file of them; see `adstream fatigue evaluate` to measure a setting against planted
    /// ground truth).
    #[arg(
        long = "detector-config",
        value_name = "JSON_FILE",
        value_parser = detector_config_arg,
        default_value = "",
        hide_default_value = true
    )]
    pub detector: FatigueConfig,
}

impl Default for CreativeFatigueSettings {
    fn default() -> Self {
        CreativeFatigueSettings {
            grace_secs: DEFAULT_GRACE_SECS,
            retention_secs: DEFAULT_RETENTION_SECS,
            report_interval_hours: DEFAULT_REPORT_INTERVAL_HOURS,
            detector: FatigueConfig::default(),
        }
    }
}

/// The detector settings: the defaults, overridden by the JSON file at `path` when given; validated.
pub fn read_detector_config(path: Option<&Path>) -> Result<FatigueConfig, JobError> {
    let config = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| JobError::Settings(format!("cannot read {}: {e}", path.display())))?;
            serde_json::from_str::<FatigueConfig>(&text).map_err(|e| {
                JobError::Settings(format!(
                    "{} is not a valid fatigue config: {e}",
                    path.display()
                ))
            })?
        }
        None => FatigueConfig::default(),
    };
    config
        .validate()
        .map_err(|e| JobError::Settings(e.to_string()))?;
    Ok(config)
}

/// `--detector-config`: a path (empty: the defaults).
fn detector_config_arg(path: &str) -> Result<FatigueConfig, JobError> {
    read_detector_config((!path.is_empty()).then_some(Path::new(path)))
}

/// The creative-fatigue job.
pub struct CreativeFatigueDefinition;

impl CreativeFatigueDefinition {
    /// The operator over the topics of `wiring`.
    pub fn operator(
        wiring: &Wiring,
        settings: &CreativeFatigueSettings,
    ) -> Result<CreativeFatigueJob, JobError> {
        let hours = settings.report_interval_hours;
        if !(hours.is_finite() && hours > 0.0) {
            return Err(JobError::Settings(format!(
                "report_interval_hours must be a positive number, got {hours}"
            )));
        }
        CreativeFatigueJob::new(CreativeFatigueConfig {
            impressions: wiring.topic("impressions")?,
            clicks: wiring.topic("clicks")?,
            output: wiring.topic("fatigue")?,
            alerts: wiring.optional("alerts").map(str::to_owned),
            detector: settings.detector.clone(),
            lateness: Lateness::new(
                Duration::from_secs(settings.grace_secs),
                Duration::from_secs(settings.retention_secs),
            )
            .map_err(|e| JobError::Settings(format!("grace_secs/retention_secs: {e}")))?,
            report_interval_ms: (hours * 3_600_000.0) as i64,
        })
    }
}

impl Job for CreativeFatigueDefinition {
    const NAME: &'static str = "creative-fatigue";
    const ABOUT: &'static str =
        "Per creative, CTR decline against its own baseline: CUSUM alarm, decay fit, score and days remaining";
    const PORTS: &'static [Port] = &[
        Port::new("impressions", PortList::Input, AdImpression::FULL_NAME),
        Port::new("clicks", PortList::Input, AdClick::FULL_NAME),
        Port::new("fatigue", PortList::Output, FatigueRecord::FULL_NAME),
        Port::new("alerts", PortList::Output, CreativeAlert::FULL_NAME).optional(),
    ];
    type Settings = CreativeFatigueSettings;

    fn stages(wiring: &Wiring, settings: &Self::Settings) -> Result<Vec<Stage>, JobError> {
        Ok(vec![Stage {
            application_id: wiring.application_id().to_owned(),
            operator: Box::new(CreativeFatigueDefinition::operator(wiring, settings)?),
        }])
    }
}
