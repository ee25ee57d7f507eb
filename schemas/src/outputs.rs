//! Rust types for the processors' output and internal records: `schemas/campaign_metrics.avsc`,
//! `schemas/campaign_alert.avsc`, `schemas/attribution_credit.avsc`, `schemas/attributed_conversion.avsc`,
//! `schemas/attribution_touch.avsc` (the attribution job's repartition topic), `schemas/attribution_journey.avsc`,
//! `schemas/attribution_model_weight.avsc`, `schemas/creative_fatigue.avsc` and
//! `schemas/creative_alert.avsc`.
//!
//! Like [`crate::events`], each struct serializes to exactly its `.avsc` record, checked by the tests below. Output
//! records are keyed by the processor (the metrics key combines campaign, granularity and window start), so they do
//! not implement [`crate::events::AvroRecord`], whose key is a field.

use serde::{Deserialize, Serialize};

use crate::events::Platform;

/// `schemas/campaign_metrics.avsc`.
pub const CAMPAIGN_METRICS_AVSC: &str = include_str!("../campaign_metrics.avsc");
/// `schemas/campaign_alert.avsc`.
pub const CAMPAIGN_ALERT_AVSC: &str = include_str!("../campaign_alert.avsc");
/// `schemas/attribution_credit.avsc`.
pub const ATTRIBUTION_CREDIT_AVSC: &str = include_str!("../attribution_credit.avsc");
/// `schemas/attributed_conversion.avsc`.
pub const ATTRIBUTED_CONVERSION_AVSC: &str = include_str!("../attributed_conversion.avsc");
/// `schemas/attribution_touch.avsc`.
pub const ATTRIBUTION_TOUCH_AVSC: &str = include_str!("../attribution_touch.avsc");
/// `schemas/attribution_journey.avsc`.
pub const ATTRIBUTION_JOURNEY_AVSC: &str = include_str!("../attribution_journey.avsc");
/// `schemas/attribution_model_weight.avsc`.
pub const ATTRIBUTION_MODEL_WEIGHT_AVSC: &str = include_str!("../attribution_model_weight.avsc");
/// `schemas/creative_fatigue.avsc`.
pub const CREATIVE_FATIGUE_AVSC: &str = include_str!("../creative_fatigue.avsc");
/// `schemas/creative_alert.avsc`.
pub const CREATIVE_ALERT_AVSC: &str = include_str!("../creative_alert.avsc");

/// Window length of a metrics row. Unknown symbols from newer writers read as [`Granularity::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Granularity {
    /// A clock hour in the campaign's time zone.
    Hourly,
    /// A calendar day in the campaign's time zone.
    Daily,
    /// A symbol this reader does not know.
    Unknown,
}

impl Granularity {
    /// Lower-case name used in record keys and topic names.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hourly => "hourly",
            Granularity::Daily => "daily",
            Granularity::Unknown => "unknown",
        }
    }
}

/// One campaign's metrics for one window; see the schema's docs for each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignMetrics {
    /// Campaign the row aggregates.
    pub campaign_id: String,
    /// Window length.
    pub granularity: Granularity,
    /// Window start, inclusive (UTC epoch millis).
    pub window_start: i64,
    /// Window end, exclusive (UTC epoch millis).
    pub window_end: i64,
    /// IANA time zone of the window boundaries.
    pub time_zone: String,
    /// Platform of the campaign's events.
    pub platform: Platform,
    /// Ad account of the campaign's events.
    pub account_id: String,
    /// ISO 4217 currency of spend and revenue.
    pub currency: String,
    /// Impressions.
    pub impressions: i64,
    /// Clicks.
    pub clicks: i64,
    /// Spend in micros.
    pub spend_micros: i64,
    /// Credited conversions.
    pub conversions: f64,
    /// Credited revenue in micros.
    pub revenue_micros: f64,
    /// Click-through rate; None without impressions.
    pub ctr: Option<f64>,
    /// Cost per click in micros; None without clicks.
    pub cpc_micros: Option<f64>,
    /// Cost per thousand impressions in micros; None without impressions.
    pub cpm_micros: Option<f64>,
    /// Cost per acquisition in micros; None without conversions.
    pub cpa_micros: Option<f64>,
    /// Return on ad spend; None without spend.
    pub roas: Option<f64>,
    /// The watermark passed window end plus grace.
    pub is_final: bool,
    /// Events that corrected the row after it was final.
    pub corrections: i64,
    /// Per-key emission counter.
    pub revision: i64,
    /// Wall-clock emission time (UTC epoch millis).
    pub emitted_at: i64,
    /// Correlation id of the last input record that changed the row.
    pub correlation_id: String,
}

impl CampaignMetrics {
    /// Full name of the Avro record.
    pub const FULL_NAME: &'static str = "io.adstream.metrics.CampaignMetrics";
    /// The `.avsc` text.
    pub const SCHEMA: &'static str = CAMPAIGN_METRICS_AVSC;
}

/// Writes the compacted-topic key of a metrics row: `<campaign_id>|<granularity>|<window start, RFC 3339 UTC>`.
/// Readable in any consumer and unique per (campaign, granularity, window). Appends to `out` so the hot path can
/// reuse one buffer.
pub fn write_metrics_key(
    campaign_id: &str,
    granularity: Granularity,
    window_start_ms: i64,
    out: &mut String,
) {
    use std::fmt::Write;
    out.push_str(campaign_id);
    out.push('|');
    out.push_str(granularity.as_str());
    out.push('|');
    // Twice per input record in campaign-metrics: digits by hand, not chrono's format machinery (a fifth of the
    // job's CPU when it was); years outside 0000..=9999 fall back to chrono.
    if let Some((year, month, day, hour, minute, second)) = utc_fields(window_start_ms) {
        push_padded(out, year, 4);
        out.push('-');
        push_padded(out, month, 2);
        out.push('-');
        push_padded(out, day, 2);
        out.push('T');
        push_padded(out, hour, 2);
        out.push(':');
        push_padded(out, minute, 2);
        out.push(':');
        push_padded(out, second, 2);
        out.push('Z');
        return;
    }
    match chrono::DateTime::from_timestamp_millis(window_start_ms) {
        Some(start) => {
            // Writing into a String cannot fail.
            let _ = write!(out, "{}", start.format("%Y-%m-%dT%H:%M:%SZ"));
        }
        None => {
            let _ = write!(out, "{window_start_ms}");
        }
    }
}

/// (year, month, day, hour, minute, second) in UTC of epoch millis, for years 0 to 9999; Howard Hinnant's
/// `civil_from_days` on the proleptic Gregorian calendar.
fn utc_fields(epoch_ms: i64) -> Option<(u32, u32, u32, u32, u32, u32)> {
    let seconds = epoch_ms.div_euclid(1000);
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let field = |v: i64| u32::try_from(v).ok();
    Some((
        field(year)?,
        field(month)?,
        field(day)?,
        field(of_day / 3600)?,
        field(of_day % 3600 / 60)?,
        field(of_day % 60)?,
    ))
}

/// Appends `value` in decimal, zero-padded to `width` digits.
fn push_padded(out: &mut String, value: u32, width: u32) {
    let mut divisor = 10u32.pow(width.saturating_sub(1));
    while divisor > 0 {
        out.push(char::from(b'0' + ((value / divisor) % 10) as u8));
        divisor /= 10;
    }
}

/// Which condition an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertKind {
    /// Spend runs ahead of the daily budget's expected-by-now.
    PacingOver,
    /// Spend runs behind the daily budget's expected-by-now.
    PacingUnder,
    /// Day spend reached a tier of the daily budget (by default 90 % and 100 %).
    DailyBudgetReached,
    /// Lifetime spend reached a tier of the lifetime budget (by default 90 % and 100 %).
    LifetimeBudgetReached,
    /// CTR below the campaign's minimum.
    CtrBelowTarget,
    /// CPC above the campaign's maximum.
    CpcAboveTarget,
    /// ROAS below the campaign's minimum.
    RoasBelowTarget,
    /// CPA above the campaign's target.
    CpaAboveTarget,
    /// CPM above the campaign's target.
    CpmAboveTarget,
    /// A symbol this reader does not know.
    Unknown,
}

impl AlertKind {
    /// The symbol of the Avro enum in the alerts topic (`PACING_OVER`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::PacingOver => "PACING_OVER",
            AlertKind::PacingUnder => "PACING_UNDER",
            AlertKind::DailyBudgetReached => "DAILY_BUDGET_REACHED",
            AlertKind::LifetimeBudgetReached => "LIFETIME_BUDGET_REACHED",
            AlertKind::CtrBelowTarget => "CTR_BELOW_TARGET",
            AlertKind::CpcAboveTarget => "CPC_ABOVE_TARGET",
            AlertKind::RoasBelowTarget => "ROAS_BELOW_TARGET",
            AlertKind::CpaAboveTarget => "CPA_ABOVE_TARGET",
            AlertKind::CpmAboveTarget => "CPM_ABOVE_TARGET",
            AlertKind::Unknown => "UNKNOWN",
        }
    }
}

/// New state of an alert condition: seed 004's four levels, ordered `Low < Medium < High < Critical`, then
/// `Resolved` and `Unknown`.
///
/// The schema still lists `INFO` and `WARNING`, written before the four levels existed; they read as `Low` and
/// `Medium` (serde aliases), so old records and old stored alert state keep their meaning, and nothing writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertSeverity {
    /// Worth a look (legacy `INFO`).
    #[serde(alias = "INFO")]
    Low,
    /// Watch it today (legacy `WARNING`).
    #[serde(alias = "WARNING")]
    Medium,
    /// Act today.
    High,
    /// Act now: money is being lost or delivery has stopped.
    Critical,
    /// The condition no longer holds.
    Resolved,
    /// A symbol this reader does not know.
    Unknown,
}

impl AlertSeverity {
    /// The firing severities, least urgent first.
    pub const FIRING: [AlertSeverity; 4] = [
        AlertSeverity::Low,
        AlertSeverity::Medium,
        AlertSeverity::High,
        AlertSeverity::Critical,
    ];

    /// The symbol of the Avro enum in the alerts topic (`LOW`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Low => "LOW",
            AlertSeverity::Medium => "MEDIUM",
            AlertSeverity::High => "HIGH",
            AlertSeverity::Critical => "CRITICAL",
            AlertSeverity::Resolved => "RESOLVED",
            AlertSeverity::Unknown => "UNKNOWN",
        }
    }
}

/// A change of one alert condition of a campaign; see the schema's docs for each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignAlert {
    /// `<campaign_id>|<kind>|<event_time millis>`.
    pub alert_id: String,
    /// Campaign; the record key.
    pub campaign_id: String,
    /// Condition.
    pub kind: AlertKind,
    /// New state.
    pub severity: AlertSeverity,
    /// State before; None when it was not firing.
    pub previous_severity: Option<AlertSeverity>,
    /// Observed value.
    pub observed: f64,
    /// Threshold or target.
    pub threshold: f64,
    /// `<rule>:tier<N>` when firing, `<rule>:resolved` on a resolution; empty in old records.
    #[serde(default)]
    pub rule: String,
    /// Level of the tier that fired, in the rule's measure; 0 on a resolution.
    #[serde(default)]
    pub rule_level: f64,
    /// One readable line.
    pub message: String,
    /// Start of the campaign's local day (UTC epoch millis).
    pub day_start: i64,
    /// Event-time watermark of the observation (UTC epoch millis).
    pub event_time: i64,
    /// Correlation id of the input record that raised the change.
    pub correlation_id: String,
}

impl CampaignAlert {
    /// Full name of the Avro record.
    pub const FULL_NAME: &'static str = "io.adstream.alerts.CampaignAlert";
    /// The `.avsc` text.
    pub const SCHEMA: &'static str = CAMPAIGN_ALERT_AVSC;
}

/// Attribution model of a credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttributionModel {
    /// All credit to the last touch before the conversion.
    LastTouch,
    /// All credit to the first touch in the lookback window.
    FirstTouch,
    /// Equal credit to every touch.
    Linear,
    /// Credit halving with every half-life before the conversion.
    TimeDecay,
    /// 40 % first, 40 % last, 20 % spread over the middle.
    PositionBased,
    /// Shapley value over channel sets.
    Shapley,
    /// Markov-chain removal effect.
    Markov,
    /// A symbol this reader does not know.
    Unknown,
}

impl AttributionModel {
    /// Every model a writer produces (not `Unknown`), in declaration order.
    pub const ALL: [AttributionModel; 7] = [
        AttributionModel::LastTouch,
        AttributionModel::FirstTouch,
        AttributionModel::Linear,
        AttributionModel::TimeDecay,
        AttributionModel::PositionBased,
        AttributionModel::Shapley,
        AttributionModel::Markov,
    ];

    /// The model's name in settings, flags and strategy files: `last-touch`, `first-touch`, `linear`,
    /// `time-decay`, `position-based`, `shapley`, `markov` (`unknown` for a symbol this reader does not know).
    pub fn name(self) -> &'static str {
        match self {
            AttributionModel::LastTouch => "last-touch",
            AttributionModel::FirstTouch => "first-touch",
            AttributionModel::Linear => "linear",
            AttributionModel::TimeDecay => "time-decay",
            AttributionModel::PositionBased => "position-based",
            AttributionModel::Shapley => "shapley",
            AttributionModel::Markov => "markov",
            AttributionModel::Unknown => "unknown",
        }
    }

    /// The model's symbol in the Avro enum (`LAST_TOUCH`, …), as in credit ids.
    pub fn symbol(self) -> &'static str {
        match self {
            AttributionModel::LastTouch => "LAST_TOUCH",
            AttributionModel::FirstTouch => "FIRST_TOUCH",
            AttributionModel::Linear => "LINEAR",
            AttributionModel::TimeDecay => "TIME_DECAY",
            AttributionModel::PositionBased => "POSITION_BASED",
            AttributionModel::Shapley => "SHAPLEY",
            AttributionModel::Markov => "MARKOV",
            AttributionModel::Unknown => "UNKNOWN",
        }
    }

    /// Whether the model is a rule applied to one journey at a time (what the attribution job credits live);
    /// Shapley and Markov are data-driven, computed over a dataset of paths.
    pub fn is_rule_based(self) -> bool {
        matches!(
            self,
            AttributionModel::LastTouch
                | AttributionModel::FirstTouch
                | AttributionModel::Linear
                | AttributionModel::TimeDecay
                | AttributionModel::PositionBased
        )
    }
}

impl std::fmt::Display for AttributionModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`AttributionModel::name`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown attribution model '{0}' (one of: last-touch, first-touch, linear, time-decay, position-based, shapley, markov)")]
pub struct UnknownModelName(pub String);

impl std::str::FromStr for AttributionModel {
    type Err = UnknownModelName;

    /// Parses a model name (`time-decay`); the Avro symbol (`TIME_DECAY`) is accepted too.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        AttributionModel::ALL
            .into_iter()
            .find(|model| model.name() == text || model.symbol() == text)
            .ok_or_else(|| UnknownModelName(text.to_owned()))
    }
}

/// Serde for an [`AttributionModel`] as its name (`time-decay`) in settings and strategy files, where the type's
/// own serde is the Avro symbol: `#[serde(with = "adstream_schemas::outputs::model_name")]`.
pub mod model_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::AttributionModel;

    /// Writes the model's name.
    pub fn serialize<S: Serializer>(model: &AttributionModel, out: S) -> Result<S::Ok, S::Error> {
        out.serialize_str(model.name())
    }

    /// Reads a model name.
    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<AttributionModel, D::Error> {
        let text = String::deserialize(input)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One conversion's credit to one campaign under one model; see the schema's docs for each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributionCredit {
    /// `<conversion_id>|<campaign_id>|<model>`.
    pub credit_id: String,
    /// The credited conversion.
    pub conversion_id: String,
    /// The campaign credited; the record key.
    pub campaign_id: String,
    /// The model.
    pub model: AttributionModel,
    /// Credited share of the conversion.
    pub conversions: f64,
    /// Credited share of the value, in micros.
    pub revenue_micros: f64,
    /// Currency of the revenue.
    pub currency: String,
    /// Conversion time (UTC epoch millis).
    pub conversion_time: i64,
}

impl AttributionCredit {
    /// Full name of the Avro record.
    pub const FULL_NAME: &'static str = "io.adstream.attribution.AttributionCredit";
    /// The `.avsc` text.
    pub const SCHEMA: &'static str = ATTRIBUTION_CREDIT_AVSC;
}

/// How a user met an ad. Unknown symbols from newer writers read as [`TouchKind::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TouchKind {
    /// An impression.
    View,
    /// A click.
    Click,
    /// A symbol this reader does not know.
    Unknown,
}

/// One ad touch re-keyed by user (the attribution job's repartition topic); see the schema's docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// The Avro record is `Touch`; Avro's serde reader checks the struct name against it.
#[serde(rename = "Touch")]
pub struct AttributionTouch {
    /// Id of the impression or click.
    pub event_id: String,
    /// View or click.
    pub kind: TouchKind,
    /// Event time (UTC epoch millis).
    pub event_time: i64,
    /// The user; the record key.
    pub user_id: String,
    /// Campaign of the ad.
    pub campaign_id: String,
    /// Creative of the ad.
    pub creative_id: String,
}

/// [`AttributionTouch`] with borrowed strings, for writers that hold them already (the repartition stage reads
/// them in place from the impression or click): serializes to the same Avro datum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename = "Touch")]
pub struct AttributionTouchRef<'a> {
    /// Id of the impression or click.
    pub event_id: &'a str,
    /// View or click.
    pub kind: TouchKind,
    /// Event time (UTC epoch millis).
    pub event_time: i64,
    /// The user; the record key.
    pub user_id: &'a str,
    /// Campaign of the ad.
    pub campaign_id: &'a str,
    /// Creative of the ad.
    pub creative_id: &'a str,
}

impl AttributionTouch {
    /// Full name of the Avro record.
    pub const FULL_NAME: &'static str = "io.adstream.attribution.Touch";
    /// The `.avsc` text.
    pub const SCHEMA: &'static str = ATTRIBUTION_TOUCH_AVSC;
}

/// One touch that preceded a conversion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Touchpoint {
    /// Id of the impression or click.
    pub event_id: String,
    /// View or click.
    pub kind: TouchKind,
    /// Event time (UTC epoch millis).
    pub event_time: i64,
    /// Campaign of the ad.
    pub campaign_id: String,
    /// Creative of the ad.
    pub creative_id: String,
}

/// One model's shares of a conversion, per touchpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelShares {
    /// The model.
    pub model: AttributionModel,
    /// Share per touchpoint, in the order of the touchpoints.
    pub shares: Vec<f64>,
}

/// A conversion with its touchpoints and every rule model's shares; see the schema's docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributedConversion {
    /// The conversion; the record key.
    pub conversion_id: String,
    /// The converting user.
    pub user_id: String,
    /// Conversion time (UTC epoch millis).
    pub conversion_time: i64,
    /// Value in micros.
    pub value_micros: i64,
    /// Currency of the value.
    pub currency: String,
    /// The lookback window used.
    pub lookback_ms: i64,
    /// Eligible touches, oldest first.
    pub touchpoints: Vec<Touchpoint>,
    /// Shares per model.
    pub credits: Vec<ModelShares>,
    /// When the job attributed it (wall clock).
    pub attributed_at: i64,
    /// Correlation id of the conversion record.
    pub correlation_id: String,
}

impl AttributedConversion {
    /// Full name of the Avro record.
    pub const FULL_NAME: &'static str = "io.adstream.attribution.AttributedConversion";
    /// The `.avsc` text.
    pub const SCHEMA: &'static str = ATTRIBUTED_CONVERSION_AVSC;
}

/// One touch of a journey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JourneyTouch {
    /// Id of the impression or click.
    pub event_id: String,
    /// View or click.
    pub kind: TouchKind,
    /// Event time (UTC epoch millis).
    pub event_time: i64,
    /// Campaign of the ad: the journey's channel.
    pub campaign_id: String,
    /// Creative of the ad.
    pub creative_id: String,
}

/// One closed journey of a user (`attribution.journeys`); see the schema's docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journey {
    /// The conversion id of a converted journey; `<user_id>|<first touch id>|<last touch id>` otherwise.
    pub journey_id: String,
    /// The user; the record key.
    pub user_id: String,
    /// Whether the journey ended in a conversion.
    pub converted: bool,
    /// The conversion of a converted journey.
    pub conversion_id: Option<String>,
    /// Conversion value in micros; 0 when not converted.
    pub value_micros: i64,
    /// Currency of the value; empty when not converted.
    pub currency: String,
    /// Event time the journey ended (UTC epoch millis).
    pub ended_at: i64,
    /// Campaign ids joined by ` > `.
    pub path: String,
    /// The touches, oldest first.
    pub touches: Vec<JourneyTouch>,
    /// When the job closed it (wall clock).
    pub closed_at: i64,
    /// Correlation id of the conversion, or of the last touch.
    pub correlation_id: String,
}

impl Journey {
    /// Full name of the Avro record.
    pub const FULL_NAME: &'static str = "io.adstream.attribution.Journey";
    /// The `.avsc` text.
    pub const SCHEMA: &'static str = ATTRIBUTION_JOURNEY_AVSC;
    /// Separator of the channels in [`Journey::path`].
    pub const PATH_SEPARATOR: &'static str = " > ";
}

/// A data-driven model of `attribution.model_weights`. Unknown symbols from newer writers read as
/// [`WeightModel::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WeightModel {
    /// Shapley value over channel sets.
    Shapley,
    /// First-order Markov removal effect.
    Markov,
    /// A symbol this reader does not know.
    Unknown,
}

impl WeightModel {
    /// The models a fit writes.
    pub const ALL: [WeightModel; 2] = [WeightModel::Shapley, WeightModel::Markov];
}

/// The credit model a weight model credits conversions under.
impl From<WeightModel> for AttributionModel {
    fn from(model: WeightModel) -> Self {
        match model {
            WeightModel::Shapley => AttributionModel::Shapley,
            WeightModel::Markov => AttributionModel::Markov,
            WeightModel::Unknown => AttributionModel::Unknown,
        }
    }
}

/// One channel's weight under one data-driven model (`attribution.model_weights`); see the schema's docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelWeight {
    /// The model.
    pub model: WeightModel,
    /// The channel (a campaign id).
    pub channel: String,
    /// Markov: removal effect; Shapley: Shapley value in conversions.
    pub weight: f64,
    /// `weight` over the sum of the model's weights.
    pub share: f64,
    /// The period's conversions credited to the channel.
    pub credited_conversions: f64,
    /// Fit period start, inclusive (UTC epoch millis).
    pub period_start: i64,
    /// Fit period end, exclusive (UTC epoch millis).
    pub period_end: i64,
    /// Journeys in the period.
    pub journeys: i64,
    /// Converted journeys in the period.
    pub conversions: i64,
    /// When the fit ran (wall clock); the same for every record of one fit.
    pub fitted_at: i64,
}

impl ModelWeight {
    /// Full name of the Avro record.
    pub const FULL_NAME: &'static str = "io.adstream.attribution.ModelWeight";
    /// The `.avsc` text.
    pub const SCHEMA: &'static str = ATTRIBUTION_MODEL_WEIGHT_AVSC;

    /// The record key: `<model symbol>|<channel>`.
    pub fn key(&self) -> String {
        format!(
            "{}|{}",
            AttributionModel::from(self.model).symbol(),
            self.channel
        )
    }
}

/// Fatigue status of a creative. Unknown symbols from newer writers read as [`FatigueStatus::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FatigueStatus {
    /// No confirmed decline.
    Healthy,
    /// A decline that is confirmed but small, or large but not yet confirmed.
    Limited,
    /// A confirmed, large decline.
    Fatigued,
    /// A symbol this reader does not know.
    Unknown,
}

/// The fitted decay curve CTR(f) = ctr_at_zero · exp(−lambda · f).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecayCurve {
    /// Fitted CTR at exposure 0.
    pub ctr_at_zero: f64,
    /// Decay rate per unit of exposure.
    pub lambda: f64,
    /// Standard error of lambda.
    pub lambda_std_error: f64,
    /// Hourly points fitted.
    pub points: i32,
    /// Exposure where the fitted segment starts.
    pub from_exposure: f64,
}

/// One closed hour of a creative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FatiguePoint {
    /// Start of the hour (UTC epoch millis).
    pub hour_start: i64,
    /// Impressions in the hour.
    pub impressions: i64,
    /// Clicks in the hour.
    pub clicks: i64,
    /// Spend in the hour, in micros.
    pub spend_micros: i64,
    /// Exposure at the hour's end.
    pub exposure: f64,
}

/// A creative's fatigue assessment; see the schema's docs for each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreativeFatigue {
    /// The creative; the record key.
    pub creative_id: String,
    /// Its campaign.
    pub campaign_id: String,
    /// Status.
    pub status: FatigueStatus,
    /// Status of the previous record for this creative.
    pub previous_status: Option<FatigueStatus>,
    /// Score in [0, 1].
    pub score: f64,
    /// Baseline CTR.
    pub baseline_ctr: Option<f64>,
    /// Current CTR.
    pub current_ctr: Option<f64>,
    /// Baseline cost per click, micros.
    pub baseline_cost_per_click_micros: Option<f64>,
    /// Current cost per click, micros.
    pub current_cost_per_click_micros: Option<f64>,
    /// Change-point statistic.
    pub change_statistic: f64,
    /// Its alarm threshold.
    pub change_threshold: f64,
    /// When the decline was confirmed.
    pub change_detected_at: Option<i64>,
    /// When the decline began (estimate).
    pub change_started_at: Option<i64>,
    /// Impressions per reached user.
    pub exposure: f64,
    /// Estimated reach.
    pub reach_estimate: i64,
    /// Impressions so far.
    pub impressions: i64,
    /// Clicks so far.
    pub clicks: i64,
    /// Spend so far, micros.
    pub spend_micros: i64,
    /// The fitted decay curve.
    pub decay: Option<DecayCurve>,
    /// Predicted days until CTR falls below the configured share of baseline.
    pub days_remaining: Option<f64>,
    /// Lower end of the interval.
    pub days_remaining_low: Option<f64>,
    /// Upper end of the interval.
    pub days_remaining_high: Option<f64>,
    /// Recent closed hours, oldest first.
    pub recent_points: Vec<FatiguePoint>,
    /// End of the last closed hour covered.
    pub assessed_until: i64,
    /// `status_change` or `periodic`.
    pub reason: String,
    /// Wall-clock emit time.
    pub emitted_at: i64,
    /// Correlation id of the last event that changed the creative.
    pub correlation_id: String,
}

impl CreativeFatigue {
    /// Full name of the Avro record.
    pub const FULL_NAME: &'static str = "io.adstream.fatigue.CreativeFatigue";
    /// The `.avsc` text.
    pub const SCHEMA: &'static str = CREATIVE_FATIGUE_AVSC;
}

/// A change of a creative's fatigue status; see the schema's docs for each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreativeAlert {
    /// `<creative_id>|<event_time millis>`.
    pub alert_id: String,
    /// The creative; the record key.
    pub creative_id: String,
    /// Its campaign.
    pub campaign_id: String,
    /// The new status.
    pub status: FatigueStatus,
    /// The status before; None when the first assessment is already not healthy.
    pub previous_status: Option<FatigueStatus>,
    /// Score in [0, 1].
    pub score: f64,
    /// Baseline CTR.
    pub baseline_ctr: Option<f64>,
    /// Current CTR.
    pub current_ctr: Option<f64>,
    /// When the decline began (estimate).
    pub change_started_at: Option<i64>,
    /// End of the last hour assessed; the record timestamp.
    pub event_time: i64,
    /// The job's clock when it wrote the record.
    pub emitted_at: i64,
    /// Correlation id of the last event that changed the creative.
    pub correlation_id: String,
}

impl CreativeAlert {
    /// Full name of the Avro record.
    pub const FULL_NAME: &'static str = "io.adstream.alerts.CreativeAlert";
    /// The `.avsc` text.
    pub const SCHEMA: &'static str = CREATIVE_ALERT_AVSC;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::tests::assert_matches_schema;

    #[test]
    fn creative_alert_matches_schema() {
        assert_matches_schema(
            CreativeAlert::FULL_NAME,
            CreativeAlert::SCHEMA,
            CreativeAlert {
                alert_id: "cr-1|1700003600000".into(),
                creative_id: "cr-1".into(),
                campaign_id: "meta-c1".into(),
                status: FatigueStatus::Fatigued,
                previous_status: Some(FatigueStatus::Limited),
                score: 0.6,
                baseline_ctr: Some(0.02),
                current_ctr: Some(0.012),
                change_started_at: Some(1_700_000_000_000),
                event_time: 1_700_003_600_000,
                emitted_at: 1_700_003_700_000,
                correlation_id: "corr".into(),
            },
        );
    }

    #[test]
    fn metrics_match_schema() {
        assert_matches_schema(
            CampaignMetrics::FULL_NAME,
            CampaignMetrics::SCHEMA,
            CampaignMetrics {
                campaign_id: "meta-c1".into(),
                granularity: Granularity::Daily,
                window_start: 1_700_000_000_000,
                window_end: 1_700_086_400_000,
                time_zone: "America/New_York".into(),
                platform: Platform::Meta,
                account_id: "act".into(),
                currency: "USD".into(),
                impressions: 1000,
                clicks: 20,
                spend_micros: 5_000_000,
                conversions: 1.5,
                revenue_micros: 12_000_000.0,
                ctr: Some(0.02),
                cpc_micros: Some(250_000.0),
                cpm_micros: Some(5_000_000.0),
                cpa_micros: Some(3_333_333.3),
                roas: None,
                is_final: true,
                corrections: 2,
                revision: 7,
                emitted_at: 1_700_100_000_000,
                correlation_id: "corr".into(),
            },
        );
    }

    #[test]
    fn alert_matches_schema() {
        assert_matches_schema(
            CampaignAlert::FULL_NAME,
            CampaignAlert::SCHEMA,
            CampaignAlert {
                alert_id: "c|PACING_OVER|1".into(),
                campaign_id: "c".into(),
                kind: AlertKind::PacingOver,
                severity: AlertSeverity::Resolved,
                previous_severity: Some(AlertSeverity::Medium),
                observed: 0.05,
                threshold: 0.1,
                rule: "pacing_over:resolved".into(),
                rule_level: 0.0,
                message: "spend is back on pace".into(),
                day_start: 1_700_000_000_000,
                event_time: 1_700_000_100_000,
                correlation_id: "corr".into(),
            },
        );
    }

    /// The alert schema as it was before the four severities, the rule fields and CPM: the current one without
    /// them.
    fn alert_schema_before_rules() -> apache_avro::Schema {
        let mut json: serde_json::Value = serde_json::from_str(CAMPAIGN_ALERT_AVSC).expect("json");
        let fields = json["fields"].as_array_mut().expect("fields");
        fields.retain(|f| f["name"] != "rule" && f["name"] != "rule_level");
        for field in fields.iter_mut() {
            let Some(symbols) = field
                .get_mut("type")
                .and_then(|t| t.get_mut("symbols"))
                .and_then(|s| s.as_array_mut())
            else {
                continue;
            };
            {
                symbols.retain(|s| {
                    !["LOW", "MEDIUM", "HIGH", "CPM_ABOVE_TARGET"]
                        .contains(&s.as_str().unwrap_or(""))
                });
            }
        }
        apache_avro::Schema::parse_str(&json.to_string()).expect("old schema")
    }

    fn sample_alert(severity: AlertSeverity) -> CampaignAlert {
        CampaignAlert {
            alert_id: "c|CPA_ABOVE_TARGET|1".into(),
            campaign_id: "c".into(),
            kind: AlertKind::CpaAboveTarget,
            severity,
            previous_severity: None,
            observed: 30.0,
            threshold: 20.0,
            rule: "cpa_above_target:tier2".into(),
            rule_level: 0.25,
            message: "CPA above target".into(),
            day_start: 1_700_000_000_000,
            event_time: 1_700_000_100_000,
            correlation_id: "corr".into(),
        }
    }

    /// `value` written with `writer` and read back with `reader`.
    fn round_trip(
        writer: &apache_avro::Schema,
        reader: &apache_avro::Schema,
        value: apache_avro::types::Value,
    ) -> apache_avro::types::Value {
        let mut datum = Vec::new();
        apache_avro::writer::datum::GenericDatumWriter::builder(writer)
            .build()
            .expect("writer")
            .write_value(&mut datum, value)
            .expect("written");
        apache_avro::reader::datum::GenericDatumReader::builder(writer)
            .reader_schema(reader)
            .build()
            .expect("reader")
            .read_value(&mut datum.as_slice())
            .expect("resolves")
    }

    #[test]
    fn alerts_evolve_compatibly_both_ways_and_legacy_severities_read_as_low_and_medium() {
        use apache_avro::types::Value;
        let new = apache_avro::Schema::parse_str(CAMPAIGN_ALERT_AVSC).expect("schema");
        let old = alert_schema_before_rules();
        // New readers read old records; old readers read new ones (an unknown symbol takes the enum's default).
        assert_eq!(
            crate::compat::can_read(&old, &new).map_err(|p| p.len()),
            Ok(())
        );
        assert_eq!(
            crate::compat::can_read(&new, &old).map_err(|p| p.len()),
            Ok(())
        );

        for (symbol, index, expected) in [
            ("INFO", 0, AlertSeverity::Low),
            ("WARNING", 1, AlertSeverity::Medium),
            ("CRITICAL", 2, AlertSeverity::Critical),
        ] {
            // An old writer's record: its own enum, no rule fields.
            let mut value =
                apache_avro::to_value(sample_alert(AlertSeverity::Critical)).expect("value");
            let Value::Record(fields) = &mut value else {
                panic!("not a record")
            };
            fields.retain(|(name, _)| name != "rule" && name != "rule_level");
            for (name, field) in fields.iter_mut() {
                if name == "severity" {
                    *field = Value::Enum(index, symbol.into());
                }
            }
            let read = round_trip(&old, &new, value);
            let alert: CampaignAlert = apache_avro::from_value(&read).expect("decodes");
            assert_eq!(alert.severity, expected, "{symbol}");
            assert_eq!((alert.rule.as_str(), alert.rule_level), ("", 0.0));
        }

        // A new record read by an old reader: HIGH is unknown to it and reads as UNKNOWN, not as an error.
        let value = apache_avro::to_value(sample_alert(AlertSeverity::High)).expect("value");
        let read = round_trip(&new, &old, value);
        let Value::Record(fields) = read else {
            panic!("not a record")
        };
        let severity = fields
            .iter()
            .find(|(name, _)| name == "severity")
            .map(|(_, v)| v.clone());
        assert_eq!(severity, Some(Value::Enum(4, "UNKNOWN".into())));
    }

    #[test]
    fn credit_matches_schema() {
        assert_matches_schema(
            AttributionCredit::FULL_NAME,
            AttributionCredit::SCHEMA,
            AttributionCredit {
                credit_id: "cv-1|meta-c1|LINEAR".into(),
                conversion_id: "cv-1".into(),
                campaign_id: "meta-c1".into(),
                model: AttributionModel::Linear,
                conversions: 0.5,
                revenue_micros: 12_500_000.0,
                currency: "USD".into(),
                conversion_time: 1_700_000_000_000,
            },
        );
    }

    #[test]
    fn touch_matches_schema() {
        assert_matches_schema(
            AttributionTouch::FULL_NAME,
            AttributionTouch::SCHEMA,
            AttributionTouch {
                event_id: "imp-1".into(),
                kind: TouchKind::View,
                event_time: 1_700_000_000_000,
                user_id: "u-1".into(),
                campaign_id: "meta-c1".into(),
                creative_id: "meta-c1-cr-0".into(),
            },
        );
    }

    #[test]
    fn journey_matches_schema() {
        for (converted, conversion_id) in [(true, Some("cv-1".to_owned())), (false, None)] {
            assert_matches_schema(
                Journey::FULL_NAME,
                Journey::SCHEMA,
                Journey {
                    journey_id: "cv-1".into(),
                    user_id: "u-1".into(),
                    converted,
                    conversion_id,
                    value_micros: 25_000_000,
                    currency: "USD".into(),
                    ended_at: 1_700_000_500_000,
                    path: "meta-c1 > meta-c2".into(),
                    touches: vec![JourneyTouch {
                        event_id: "clk-1".into(),
                        kind: TouchKind::Click,
                        event_time: 1_700_000_000_000,
                        campaign_id: "meta-c1".into(),
                        creative_id: "meta-c1-cr-0".into(),
                    }],
                    closed_at: 1_700_000_600_000,
                    correlation_id: "corr-1".into(),
                },
            );
        }
    }

    #[test]
    fn model_weight_matches_schema() {
        let weight = ModelWeight {
            model: WeightModel::Markov,
            channel: "meta-c1".into(),
            weight: 0.4,
            share: 0.25,
            credited_conversions: 12.5,
            period_start: 1_700_000_000_000,
            period_end: 1_700_086_400_000,
            journeys: 200,
            conversions: 50,
            fitted_at: 1_700_086_500_000,
        };
        assert_eq!(weight.key(), "MARKOV|meta-c1");
        assert_matches_schema(ModelWeight::FULL_NAME, ModelWeight::SCHEMA, weight);
    }

    #[test]
    fn attributed_conversion_matches_schema() {
        assert_matches_schema(
            AttributedConversion::FULL_NAME,
            AttributedConversion::SCHEMA,
            AttributedConversion {
                conversion_id: "cv-1".into(),
                user_id: "u-1".into(),
                conversion_time: 1_700_000_500_000,
                value_micros: 25_000_000,
                currency: "USD".into(),
                lookback_ms: 30 * 86_400_000,
                touchpoints: vec![Touchpoint {
                    event_id: "clk-1".into(),
                    kind: TouchKind::Click,
                    event_time: 1_700_000_000_000,
                    campaign_id: "meta-c1".into(),
                    creative_id: "meta-c1-cr-0".into(),
                }],
                credits: vec![ModelShares {
                    model: AttributionModel::TimeDecay,
                    shares: vec![1.0],
                }],
                attributed_at: 1_700_000_600_000,
                correlation_id: "corr".into(),
            },
        );
    }

    #[test]
    fn fatigue_matches_schema() {
        assert_matches_schema(
            CreativeFatigue::FULL_NAME,
            CreativeFatigue::SCHEMA,
            CreativeFatigue {
                creative_id: "meta-c1-cr-0".into(),
                campaign_id: "meta-c1".into(),
                status: FatigueStatus::Fatigued,
                previous_status: Some(FatigueStatus::Limited),
                score: 0.8,
                baseline_ctr: Some(0.02),
                current_ctr: Some(0.012),
                baseline_cost_per_click_micros: Some(500_000.0),
                current_cost_per_click_micros: None,
                change_statistic: 12.5,
                change_threshold: 8.0,
                change_detected_at: Some(1_700_000_000_000),
                change_started_at: None,
                exposure: 3.2,
                reach_estimate: 10_000,
                impressions: 32_000,
                clicks: 500,
                spend_micros: 250_000_000,
                decay: Some(DecayCurve {
                    ctr_at_zero: 0.03,
                    lambda: 0.3,
                    lambda_std_error: 0.05,
                    points: 24,
                    from_exposure: 2.1,
                }),
                days_remaining: Some(2.5),
                days_remaining_low: Some(1.9),
                days_remaining_high: None,
                recent_points: vec![FatiguePoint {
                    hour_start: 1_699_999_200_000,
                    impressions: 100,
                    clicks: 2,
                    spend_micros: 700_000,
                    exposure: 3.19,
                }],
                assessed_until: 1_700_000_000_000,
                reason: "status_change".into(),
                emitted_at: 1_700_000_100_000,
                correlation_id: "corr".into(),
            },
        );
    }

    #[test]
    fn metrics_key_dates_equal_chronos_formatting() {
        // Edges (epoch, before it, leap days, century rules, the last representable year) and a sweep.
        let mut instants = vec![
            0,
            -1,
            -86_400_000,
            951_782_400_000,   // 2000-02-29
            4_107_542_400_000, // 2100-03-01
            -62_167_219_200_000,
            253_402_300_799_999,
            1_798_761_600_000,
        ];
        let mut t: i64 = -62_000_000_000_000;
        while t < 253_000_000_000_000 {
            instants.push(t);
            t += 7_777_777_777;
        }
        for ms in instants {
            let mut ours = String::new();
            write_metrics_key("c", Granularity::Hourly, ms, &mut ours);
            let chrono = chrono::DateTime::from_timestamp_millis(ms)
                .expect("in range")
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            assert_eq!(ours, format!("c|hourly|{chrono}"), "{ms}");
        }
        // Outside 0000..=9999 the key still carries chrono's rendering.
        let mut far = String::new();
        write_metrics_key("c", Granularity::Daily, 253_402_300_800_000, &mut far);
        assert_eq!(far, "c|daily|+10000-01-01T00:00:00Z");
    }

    #[test]
    fn metrics_key_is_readable_and_sorts_by_window() {
        let mut key = String::new();
        write_metrics_key("meta-c1", Granularity::Hourly, 1_798_761_600_000, &mut key);
        assert_eq!(key, "meta-c1|hourly|2027-01-01T00:00:00Z");
    }

    #[test]
    fn a_borrowed_touch_writes_the_datum_of_the_owned_one() {
        let schema = apache_avro::Schema::parse_str(AttributionTouch::SCHEMA).expect("schema");
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .expect("writer");
        let owned = AttributionTouch {
            event_id: "clk-1".into(),
            kind: TouchKind::Click,
            event_time: 1_700_000_000_000,
            user_id: "u-7".into(),
            campaign_id: "meta-c1".into(),
            creative_id: "cr-2".into(),
        };
        let borrowed = AttributionTouchRef {
            event_id: &owned.event_id,
            kind: owned.kind,
            event_time: owned.event_time,
            user_id: &owned.user_id,
            campaign_id: &owned.campaign_id,
            creative_id: &owned.creative_id,
        };
        assert_eq!(
            writer
                .write_ser_to_vec(&borrowed)
                .expect("borrowed encodes"),
            writer.write_ser_to_vec(&owned).expect("owned encodes")
        );
    }
}
