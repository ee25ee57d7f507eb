//! The attribution job's definition: settings, ports and constructor (see [`crate::jobs`]).

use adstream_schemas::events::{AdClick, AdImpression, AvroRecord, Conversion};
use adstream_schemas::outputs::{AttributedConversion, AttributionCredit, Journey, ModelWeight};
use serde::{Deserialize, Serialize};

use super::models::RuleSettings;
use super::operator::{AttributionConfig, AttributionJob};
use super::repartition::{RepartitionConfig, TouchRepartition};
use crate::jobs::{Job, Port, PortList, Stage, Wiring};
use crate::runtime::JobError;

/// Default [`AttributionSettings::lookback_days`].
pub const DEFAULT_LOOKBACK_DAYS: f64 = 30.0;
/// Default [`AttributionSettings::grace_secs`].
pub const DEFAULT_GRACE_SECS: u64 = 600;
/// Default [`AttributionSettings::retention_secs`].
pub const DEFAULT_RETENTION_SECS: u64 = 86_400;
/// Default [`AttributionSettings::half_life_hours`].
pub const DEFAULT_HALF_LIFE_HOURS: f64 = 168.0;
/// Default [`AttributionSettings::view_weight`].
pub const DEFAULT_VIEW_WEIGHT: f64 = 1.0;

/// What the attribution job computes, apart from how it runs. Every conversion is credited under every rule
/// model; which model counts is the reader's choice (campaign-metrics' `attribution_model`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct AttributionSettings {
    /// Touches older than this before a conversion do not count, in days.
    #[arg(long, default_value_t = DEFAULT_LOOKBACK_DAYS)]
    pub lookback_days: f64,
    /// Time-decay half-life, in hours.
    #[arg(long, default_value_t = DEFAULT_HALF_LIFE_HOURS)]
    pub half_life_hours: f64,
    /// Whether impressions (views) count as touches.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub count_views: bool,
    /// Weight of a view against a click (1 = equal).
    #[arg(long, default_value_t = DEFAULT_VIEW_WEIGHT)]
    pub view_weight: f64,
    /// How long a conversion waits, in watermark time, for touches that are still on their way, in seconds.
    #[arg(long, default_value_t = DEFAULT_GRACE_SECS)]
    pub grace_secs: u64,
    /// How long past the watermark a late conversion can still be attributed completely, in seconds (touches are
    /// kept this much longer than the lookback).
    #[arg(long, default_value_t = DEFAULT_RETENTION_SECS)]
    pub retention_secs: u64,
}

impl Default for AttributionSettings {
    fn default() -> Self {
        AttributionSettings {
            lookback_days: DEFAULT_LOOKBACK_DAYS,
            half_life_hours: DEFAULT_HALF_LIFE_HOURS,
            count_views: true,
            view_weight: DEFAULT_VIEW_WEIGHT,
            grace_secs: DEFAULT_GRACE_SECS,
            retention_secs: DEFAULT_RETENTION_SECS,
        }
    }
}

impl AttributionSettings {
    /// The lookback in milliseconds; it must be a positive number of days.
    pub fn lookback_ms(&self) -> Result<i64, JobError> {
        positive_ms(self.lookback_days * 24.0, "lookback_days")
    }
}

/// `hours` as milliseconds; `field` names the setting in the error when it is not a positive number.
fn positive_ms(hours: f64, field: &str) -> Result<i64, JobError> {
    if hours.is_finite() && hours > 0.0 {
        Ok((hours * 3_600_000.0) as i64)
    } else {
        Err(JobError::Settings(format!(
            "{field} must be a positive number, got {hours}"
        )))
    }
}

/// Seconds as milliseconds, saturating.
fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The attribution job: a repartition stage (`<application id>-repartition`: impressions and clicks re-keyed by
/// user into the internal topic of that name, with the conversions' partition count) and the attribution stage.
pub struct AttributionDefinition;

impl AttributionDefinition {
    /// The internal topic (and application id) of the repartition stage of `application_id`.
    pub fn repartition_topic(application_id: &str) -> String {
        format!("{application_id}-repartition")
    }

    /// Stage one over the topics of `wiring`.
    pub fn repartition(wiring: &Wiring) -> Result<TouchRepartition, JobError> {
        TouchRepartition::new(RepartitionConfig {
            impressions: wiring.topic("impressions")?,
            clicks: wiring.topic("clicks")?,
            touches: AttributionDefinition::repartition_topic(wiring.application_id()),
            partitions: wiring.partitions("conversions")?,
        })
    }

    /// Stage two over the topics of `wiring`. The model-weights table, when wired, must have the conversions'
    /// partition count: task n reads its partition n, where the fit writes every weight.
    pub fn operator(
        wiring: &Wiring,
        settings: &AttributionSettings,
    ) -> Result<AttributionJob, JobError> {
        let model_weights = wiring.optional("model_weights").map(str::to_owned);
        if let Some(topic) = &model_weights {
            let (weights, conversions) = (
                wiring.partitions("model_weights")?,
                wiring.partitions("conversions")?,
            );
            if weights != conversions {
                return Err(JobError::Settings(format!(
                    "{topic} has {weights} partitions but the conversions {conversions}: every task reads the \
                     weights from its own partition, so they must be equal"
                )));
            }
        }
        AttributionJob::new(AttributionConfig {
            touches: AttributionDefinition::repartition_topic(wiring.application_id()),
            conversions: wiring.topic("conversions")?,
            partitions: wiring.partitions("conversions")?,
            attributed: wiring.topic("attributed")?,
            credits: wiring.topic("credits")?,
            journeys: wiring.optional("journeys").map(str::to_owned),
            model_weights,
            lookback_ms: settings.lookback_ms()?,
            grace_ms: secs_ms(settings.grace_secs),
            retention_ms: secs_ms(settings.retention_secs),
            settings: RuleSettings {
                half_life_ms: positive_ms(settings.half_life_hours, "half_life_hours")?,
                count_views: settings.count_views,
                view_weight: settings.view_weight,
            },
        })
    }
}

impl Job for AttributionDefinition {
    const NAME: &'static str = "attribution";
    const ABOUT: &'static str =
        "Multi-touch attribution: touches re-keyed by user, every conversion credited under each rule model and, once \
         fitted, Markov and Shapley; closed journeys written for the fit";
    const PORTS: &'static [Port] = &[
        Port::new(
            "impressions",
            PortList::Repartition,
            AdImpression::FULL_NAME,
        ),
        Port::new("clicks", PortList::Repartition, AdClick::FULL_NAME),
        Port::new("conversions", PortList::Input, Conversion::FULL_NAME),
        Port::new("model_weights", PortList::Input, ModelWeight::FULL_NAME).optional(),
        Port::new(
            "attributed",
            PortList::Output,
            AttributedConversion::FULL_NAME,
        ),
        Port::new("credits", PortList::Output, AttributionCredit::FULL_NAME),
        Port::new("journeys", PortList::Output, Journey::FULL_NAME).optional(),
    ];
    type Settings = AttributionSettings;

    fn stages(wiring: &Wiring, settings: &Self::Settings) -> Result<Vec<Stage>, JobError> {
        let repartition = AttributionDefinition::repartition(wiring)?;
        let attribution = AttributionDefinition::operator(wiring, settings)?;
        Ok(vec![
            Stage {
                application_id: AttributionDefinition::repartition_topic(wiring.application_id()),
                operator: Box::new(repartition),
            },
            Stage {
                application_id: wiring.application_id().to_owned(),
                operator: Box::new(attribution),
            },
        ])
    }
}
