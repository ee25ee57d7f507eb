//! Rust types for the processors' output records: `schemas/campaign_metrics.avsc`, `schemas/campaign_alert.avsc`
//! and `schemas/attribution_credit.avsc`.
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

/// Which condition an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertKind {
    /// Spend runs ahead of the daily budget's expected-by-now.
    PacingOver,
    /// Spend runs behind the daily budget's expected-by-now.
    PacingUnder,
    /// Day spend reached 90 % / 100 % of the daily budget.
    DailyBudgetReached,
    /// Lifetime spend reached 90 % / 100 % of the lifetime budget.
    LifetimeBudgetReached,
    /// CTR below the campaign's minimum.
    CtrBelowTarget,
    /// CPC above the campaign's maximum.
    CpcAboveTarget,
    /// ROAS below the campaign's minimum.
    RoasBelowTarget,
    /// A symbol this reader does not know.
    Unknown,
}

/// New state of an alert condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertSeverity {
    /// Worth a look.
    Info,
    /// Needs attention today.
    Warning,
    /// Needs attention now.
    Critical,
    /// The condition no longer holds.
    Resolved,
    /// A symbol this reader does not know.
    Unknown,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::tests::assert_matches_schema;

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
                previous_severity: Some(AlertSeverity::Warning),
                observed: 0.05,
                threshold: 0.1,
                message: "spend is back on pace".into(),
                day_start: 1_700_000_000_000,
                event_time: 1_700_000_100_000,
                correlation_id: "corr".into(),
            },
        );
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
    fn metrics_key_is_readable_and_sorts_by_window() {
        let mut key = String::new();
        write_metrics_key("meta-c1", Granularity::Hourly, 1_798_761_600_000, &mut key);
        assert_eq!(key, "meta-c1|hourly|2027-01-01T00:00:00Z");
    }
}
