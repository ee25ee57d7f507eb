//! The reconciliation job's definition: settings, ports and constructor (see [`crate::jobs`]).

use adstream_schemas::events::{AdClick, AdImpression, AvroRecord};
use adstream_schemas::platform::PlatformReport;
use adstream_schemas::reconciliation::CampaignReconciliation;
use serde::{Deserialize, Serialize};

use super::operator::{ReconciliationConfig, ReconciliationJob};
use super::repartition::{ReportRepartition, ReportRepartitionConfig};
use crate::jobs::{Job, Port, PortList, Stage, Wiring};
use crate::runtime::JobError;

/// Default [`ReconciliationSettings::threshold`].
pub const DEFAULT_THRESHOLD: f64 = 0.02;
/// Default [`ReconciliationSettings::min_impressions`].
pub const DEFAULT_MIN_IMPRESSIONS: i64 = 100;
/// Default [`ReconciliationSettings::restatement_secs`]: 7 days, the connectors' default look-back.
pub const DEFAULT_RESTATEMENT_SECS: u64 = 7 * 86_400;
/// Default [`ReconciliationSettings::retention_secs`].
pub const DEFAULT_RETENTION_SECS: u64 = 86_400;

/// What the reconciliation job compares, apart from how it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct ReconciliationSettings {
    /// Share of difference (|events - platform| / the larger) in impressions, clicks or spend above which a
    /// final window is MISMATCHED and alerted.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// Fewest impressions (on the larger side) for a final window to be judged; smaller windows are
    /// INSUFFICIENT_VOLUME, since one click more or less is no evidence of anything.
    #[arg(long, default_value_t = DEFAULT_MIN_IMPRESSIONS)]
    pub min_impressions: i64,
    /// How long after a window's end (event time) the platform may still restate it, in seconds: until then the
    /// window is PENDING, never alerted.
    #[arg(long, default_value_t = DEFAULT_RESTATEMENT_SECS)]
    pub restatement_secs: u64,
    /// How long a final window is kept for late corrections before it is dropped, in seconds.
    #[arg(long, default_value_t = DEFAULT_RETENTION_SECS)]
    pub retention_secs: u64,
}

impl Default for ReconciliationSettings {
    fn default() -> Self {
        ReconciliationSettings {
            threshold: DEFAULT_THRESHOLD,
            min_impressions: DEFAULT_MIN_IMPRESSIONS,
            restatement_secs: DEFAULT_RESTATEMENT_SECS,
            retention_secs: DEFAULT_RETENTION_SECS,
        }
    }
}

fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The reconciliation job.
pub struct ReconciliationDefinition;

impl ReconciliationDefinition {
    /// The internal topic the report rows are re-keyed into.
    pub fn repartition_topic(application_id: &str) -> String {
        format!("{application_id}-repartition")
    }
}

impl Job for ReconciliationDefinition {
    const NAME: &'static str = "reconciliation";
    const ABOUT: &'static str =
        "Platform-reported impressions, clicks and spend against the events' own, per campaign and report window, with an alert when they differ";
    const PORTS: &'static [Port] = &[
        Port::new("reports", PortList::Repartition, PlatformReport::FULL_NAME),
        Port::new("impressions", PortList::Input, AdImpression::FULL_NAME),
        Port::new("clicks", PortList::Input, AdClick::FULL_NAME),
        Port::new(
            "reconciliation",
            PortList::Output,
            CampaignReconciliation::FULL_NAME,
        )
        .named("metrics"),
        Port::new(
            "alerts",
            PortList::Output,
            CampaignReconciliation::FULL_NAME,
        )
        .named("alerts"),
    ];
    type Settings = ReconciliationSettings;

    fn stages(wiring: &Wiring, settings: &Self::Settings) -> Result<Vec<Stage>, JobError> {
        let repartitioned = ReconciliationDefinition::repartition_topic(wiring.application_id());
        let partitions = wiring.partitions("impressions")?;
        let repartition = ReportRepartition::new(ReportRepartitionConfig {
            reports: wiring.topic("reports")?,
            repartitioned: repartitioned.clone(),
            partitions,
        })?;
        let reconciliation = ReconciliationJob::new(ReconciliationConfig {
            impressions: wiring.topic("impressions")?,
            clicks: wiring.topic("clicks")?,
            reports: repartitioned.clone(),
            partitions,
            rows: wiring.topic("reconciliation")?,
            alerts: wiring.topic("alerts")?,
            threshold: settings.threshold,
            min_impressions: settings.min_impressions,
            restatement_ms: secs_ms(settings.restatement_secs),
            retention_ms: secs_ms(settings.retention_secs),
        })?;
        Ok(vec![
            Stage {
                application_id: repartitioned,
                operator: Box::new(repartition),
            },
            Stage {
                application_id: wiring.application_id().to_owned(),
                operator: Box::new(reconciliation),
            },
        ])
    }
}
