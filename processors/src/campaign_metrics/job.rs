//! The campaign-metrics job's definition: settings, ports and constructor (see [`crate::jobs`]).

use std::time::Duration;

use adstream_schemas::events::{AdClick, AdImpression, AvroRecord, Campaign};
use adstream_schemas::outputs::{
    model_name, AttributionCredit, AttributionModel, CampaignAlert,
    CampaignMetrics as MetricsRecord,
};
use serde::{Deserialize, Serialize};

use super::alerts::AlertRules;
use super::{CampaignMetricsConfig, CampaignMetricsJob, EmitMode};
use crate::jobs::{Job, Port, PortList, Stage, Wiring};
use crate::runtime::JobError;
use crate::window::Lateness;

/// Default [`CampaignMetricsSettings::grace_secs`].
pub const DEFAULT_GRACE_SECS: u64 = 600;
/// Default [`CampaignMetricsSettings::retention_secs`].
pub const DEFAULT_RETENTION_SECS: u64 = 2 * 86_400;
/// Default [`CampaignMetricsSettings::pacing_check_minutes`].
pub const DEFAULT_PACING_CHECK_MINUTES: u64 = 15;

/// What the campaign-metrics job computes, apart from how it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct CampaignMetricsSettings {
    /// Grace period after a window's end (watermark time) before its row is final, in seconds.
    #[arg(long, default_value_t = DEFAULT_GRACE_SECS)]
    pub grace_secs: u64,
    /// How long after a window's end its state is kept for corrections, in seconds; later events go to
    /// `late.<topic>`.
    #[arg(long, default_value_t = DEFAULT_RETENTION_SECS)]
    pub retention_secs: u64,
    /// When rows are emitted.
    #[arg(long, value_enum, default_value = "updating")]
    pub emit: EmitMode,
    /// Attribution model whose credits (from the processor's input carrying AttributionCredit, if it has one)
    /// count as conversions and revenue: last-touch, first-touch, linear, time-decay, position-based, shapley or
    /// markov.
    #[arg(long, default_value_t = AttributionModel::LastTouch)]
    #[serde(with = "model_name")]
    pub attribution_model: AttributionModel,
    /// Every active campaign of the campaigns table has its alerts evaluated at least this often, in minutes of
    /// event time, with or without events of its own (a campaign delivering nothing raises PACING_UNDER).
    #[arg(long, default_value_t = DEFAULT_PACING_CHECK_MINUTES)]
    pub pacing_check_minutes: u64,
    /// Tier levels and severities of the alert rules (`alert_rules:` in YAML; flags `--pacing-tiers`,
    /// `--budget-tiers`, `--ctr-tiers`, `--cpc-tiers`, `--cpm-tiers`, `--roas-tiers`, `--cpa-tiers`).
    #[command(flatten)]
    pub alert_rules: AlertRules,
}

impl Default for CampaignMetricsSettings {
    fn default() -> Self {
        CampaignMetricsSettings {
            grace_secs: DEFAULT_GRACE_SECS,
            retention_secs: DEFAULT_RETENTION_SECS,
            emit: EmitMode::Updating,
            attribution_model: AttributionModel::LastTouch,
            pacing_check_minutes: DEFAULT_PACING_CHECK_MINUTES,
            alert_rules: AlertRules::default(),
        }
    }
}

/// The campaign-metrics job.
pub struct CampaignMetricsDefinition;

impl CampaignMetricsDefinition {
    /// The operator over the topics of `wiring`.
    pub fn operator(
        wiring: &Wiring,
        settings: &CampaignMetricsSettings,
    ) -> Result<CampaignMetricsJob, JobError> {
        let lateness = Lateness::new(
            Duration::from_secs(settings.grace_secs),
            Duration::from_secs(settings.retention_secs),
        )
        .map_err(|e| JobError::Settings(format!("grace_secs/retention_secs: {e}")))?;
        settings
            .alert_rules
            .validate()
            .map_err(|e| JobError::Settings(e.to_string()))?;
        CampaignMetricsJob::new(CampaignMetricsConfig {
            impressions: wiring.topic("impressions")?,
            clicks: wiring.topic("clicks")?,
            campaigns: wiring.topic("campaigns")?,
            hourly: wiring.topic("hourly")?,
            daily: wiring.topic("daily")?,
            alerts: wiring.topic("alerts")?,
            credits: wiring.optional("credits").map(str::to_owned),
            attribution_model: settings.attribution_model,
            lateness,
            emit: settings.emit,
            pacing_check_ms: i64::try_from(settings.pacing_check_minutes)
                .ok()
                .and_then(|minutes| minutes.checked_mul(60_000))
                .filter(|ms| *ms > 0)
                .ok_or_else(|| {
                    JobError::Settings(format!(
                        "pacing_check_minutes must be between 1 and {}, got {}",
                        i64::MAX / 60_000,
                        settings.pacing_check_minutes
                    ))
                })?,
            alert_rules: settings.alert_rules.clone(),
        })
    }
}

impl Job for CampaignMetricsDefinition {
    const NAME: &'static str = "campaign-metrics";
    const ABOUT: &'static str =
        "Hourly and daily KPIs per campaign (CTR, CPC, CPM, CPA, ROAS) and budget, pacing and KPI alerts";
    const PORTS: &'static [Port] = &[
        Port::new("impressions", PortList::Input, AdImpression::FULL_NAME),
        Port::new("clicks", PortList::Input, AdClick::FULL_NAME),
        Port::new("campaigns", PortList::Input, Campaign::FULL_NAME),
        Port::new("credits", PortList::Input, AttributionCredit::FULL_NAME).optional(),
        Port::new("hourly", PortList::Output, MetricsRecord::FULL_NAME).named("hourly"),
        Port::new("daily", PortList::Output, MetricsRecord::FULL_NAME).named("daily"),
        Port::new("alerts", PortList::Output, CampaignAlert::FULL_NAME),
    ];
    type Settings = CampaignMetricsSettings;

    fn stages(wiring: &Wiring, settings: &Self::Settings) -> Result<Vec<Stage>, JobError> {
        Ok(vec![Stage {
            application_id: wiring.application_id().to_owned(),
            operator: Box::new(CampaignMetricsDefinition::operator(wiring, settings)?),
        }])
    }
}
