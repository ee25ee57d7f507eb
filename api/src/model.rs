//! What queries, subscriptions and SSE streams return: GraphQL objects that serialize to the same JSON (camelCase
//! fields) for SSE. Enum values are the Avro symbols (`HOURLY`, `CRITICAL`, `LAST_TOUCH`, ...); times are UTC epoch
//! milliseconds; money is in micros of the row's currency.

use adstream_schemas::events::Campaign;
use adstream_schemas::outputs::{AlertSeverity, CampaignAlert, CampaignMetrics, CreativeFatigue};
use async_graphql::{Enum, SimpleObject};
use serde::Serialize;

/// The Avro symbol of a serde enum of the contract (they serialize as their symbol).
fn symbol<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        _ => "UNKNOWN".to_owned(),
    }
}

/// Window length asked for.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WindowGranularity {
    /// Clock hours in the campaign's time zone.
    Hourly,
    /// Calendar days in the campaign's time zone.
    Daily,
}

impl WindowGranularity {
    /// The Avro symbol rows carry (`HOURLY`, `DAILY`).
    pub fn symbol(self) -> &'static str {
        match self {
            WindowGranularity::Hourly => "HOURLY",
            WindowGranularity::Daily => "DAILY",
        }
    }
}

/// Lowest severity a client wants to hear about.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MinSeverity {
    /// Everything.
    Info,
    /// Warnings and critical alerts.
    Warning,
    /// Critical alerts only.
    Critical,
}

impl MinSeverity {
    /// The level `alert` reaches: a firing alert's by its severity, a resolution's by the severity it had, so a
    /// client that was told an alert fired is also told it resolved. None for an unknown severity.
    pub fn of(alert: &CampaignAlert) -> Option<MinSeverity> {
        let level = |severity: AlertSeverity| match severity {
            AlertSeverity::Info => Some(MinSeverity::Info),
            AlertSeverity::Warning => Some(MinSeverity::Warning),
            AlertSeverity::Critical => Some(MinSeverity::Critical),
            AlertSeverity::Resolved | AlertSeverity::Unknown => None,
        };
        match alert.severity {
            AlertSeverity::Resolved => alert.previous_severity.and_then(level),
            other => level(other),
        }
    }
}

/// KPI targets of a campaign; null means no target.
#[derive(SimpleObject, Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Targets {
    /// Minimum click-through rate.
    pub min_ctr: Option<f64>,
    /// Maximum cost per click, micros.
    pub max_cpc_micros: Option<i64>,
    /// Target cost per acquisition, micros.
    pub target_cpa_micros: Option<i64>,
    /// Minimum return on ad spend.
    pub min_roas: Option<f64>,
}

/// A campaign with its settings (the campaigns table's latest record).
#[derive(SimpleObject, Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CampaignView {
    /// Campaign id.
    pub campaign_id: String,
    /// Display name.
    pub name: String,
    /// Platform symbol.
    pub platform: String,
    /// Advertiser account.
    pub account_id: String,
    /// Objective symbol.
    pub objective: String,
    /// Delivery status symbol.
    pub status: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// Daily budget, micros; null without one.
    pub daily_budget_micros: Option<i64>,
    /// Lifetime budget, micros; null without one.
    pub lifetime_budget_micros: Option<i64>,
    /// Delivery start.
    pub start_time: i64,
    /// Delivery end; null when open-ended.
    pub end_time: Option<i64>,
    /// IANA time zone.
    pub time_zone: String,
    /// KPI targets.
    pub targets: Targets,
    /// When the settings last changed.
    pub updated_at: i64,
}

impl From<&Campaign> for CampaignView {
    fn from(c: &Campaign) -> CampaignView {
        CampaignView {
            campaign_id: c.campaign_id.clone(),
            name: c.name.clone(),
            platform: symbol(&c.platform),
            account_id: c.account_id.clone(),
            objective: symbol(&c.objective),
            status: symbol(&c.status),
            currency: c.currency.clone(),
            daily_budget_micros: c.daily_budget_micros,
            lifetime_budget_micros: c.lifetime_budget_micros,
            start_time: c.start_time,
            end_time: c.end_time,
            time_zone: c.time_zone.clone(),
            targets: Targets {
                min_ctr: c.targets.min_ctr,
                max_cpc_micros: c.targets.max_cpc_micros,
                target_cpa_micros: c.targets.target_cpa_micros,
                min_roas: c.targets.min_roas,
            },
            updated_at: c.updated_at,
        }
    }
}

/// One campaign's KPIs for one window (a metrics topic's latest row for its key).
#[derive(SimpleObject, Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricsRow {
    /// Campaign.
    pub campaign_id: String,
    /// `HOURLY` or `DAILY`.
    pub granularity: String,
    /// Window start, inclusive.
    pub window_start: i64,
    /// Window end, exclusive.
    pub window_end: i64,
    /// IANA time zone of the window.
    pub time_zone: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// Impressions.
    pub impressions: i64,
    /// Clicks.
    pub clicks: i64,
    /// Spend, micros.
    pub spend_micros: i64,
    /// Credited conversions.
    pub conversions: f64,
    /// Credited revenue, micros.
    pub revenue_micros: f64,
    /// Click-through rate.
    pub ctr: Option<f64>,
    /// Cost per click, micros.
    pub cpc_micros: Option<f64>,
    /// Cost per thousand impressions, micros.
    pub cpm_micros: Option<f64>,
    /// Cost per acquisition, micros.
    pub cpa_micros: Option<f64>,
    /// Return on ad spend.
    pub roas: Option<f64>,
    /// Whether the window is closed (a later row is a correction).
    pub is_final: bool,
    /// Per-key emission counter.
    pub revision: i64,
    /// When the job emitted the row (wall clock).
    pub emitted_at: i64,
    /// Correlation id of the last input record that changed the row.
    pub correlation_id: String,
}

impl From<&CampaignMetrics> for MetricsRow {
    fn from(m: &CampaignMetrics) -> MetricsRow {
        MetricsRow {
            campaign_id: m.campaign_id.clone(),
            granularity: symbol(&m.granularity),
            window_start: m.window_start,
            window_end: m.window_end,
            time_zone: m.time_zone.clone(),
            currency: m.currency.clone(),
            impressions: m.impressions,
            clicks: m.clicks,
            spend_micros: m.spend_micros,
            conversions: m.conversions,
            revenue_micros: m.revenue_micros,
            ctr: m.ctr,
            cpc_micros: m.cpc_micros,
            cpm_micros: m.cpm_micros,
            cpa_micros: m.cpa_micros,
            roas: m.roas,
            is_final: m.is_final,
            revision: m.revision,
            emitted_at: m.emitted_at,
            correlation_id: m.correlation_id.clone(),
        }
    }
}

/// A change of one alert condition of a campaign.
#[derive(SimpleObject, Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    /// `<campaign_id>|<kind>|<event_time millis>`.
    pub alert_id: String,
    /// Campaign.
    pub campaign_id: String,
    /// Condition symbol (`DAILY_BUDGET_REACHED`, ...).
    pub kind: String,
    /// New state: `INFO`, `WARNING`, `CRITICAL` or `RESOLVED`.
    pub severity: String,
    /// State before; null when it was not firing.
    pub previous_severity: Option<String>,
    /// Observed value.
    pub observed: f64,
    /// Threshold or target.
    pub threshold: f64,
    /// One readable line.
    pub message: String,
    /// Start of the campaign's local day.
    pub day_start: i64,
    /// Event time of the observation.
    pub event_time: i64,
    /// Correlation id of the input record that raised the change.
    pub correlation_id: String,
}

impl From<&CampaignAlert> for AlertView {
    fn from(a: &CampaignAlert) -> AlertView {
        AlertView {
            alert_id: a.alert_id.clone(),
            campaign_id: a.campaign_id.clone(),
            kind: a.kind.as_str().to_owned(),
            severity: a.severity.as_str().to_owned(),
            previous_severity: a.previous_severity.map(|s| s.as_str().to_owned()),
            observed: a.observed,
            threshold: a.threshold,
            message: a.message.clone(),
            day_start: a.day_start,
            event_time: a.event_time,
            correlation_id: a.correlation_id.clone(),
        }
    }
}

/// The fitted decay curve CTR(f) = ctrAtZero · exp(−lambda · f).
#[derive(SimpleObject, Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DecayView {
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
#[derive(SimpleObject, Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FatiguePointView {
    /// Start of the hour.
    pub hour_start: i64,
    /// Impressions in the hour.
    pub impressions: i64,
    /// Clicks in the hour.
    pub clicks: i64,
    /// Exposure (impressions per reached user) at the hour's end.
    pub exposure: f64,
}

/// A creative's latest fatigue assessment.
#[derive(SimpleObject, Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FatigueView {
    /// Creative.
    pub creative_id: String,
    /// Its campaign.
    pub campaign_id: String,
    /// `HEALTHY`, `LIMITED` or `FATIGUED`.
    pub status: String,
    /// Fatigue score in [0, 1].
    pub score: f64,
    /// CTR over the baseline period.
    pub baseline_ctr: Option<f64>,
    /// Current CTR.
    pub current_ctr: Option<f64>,
    /// Impressions per reached user so far.
    pub exposure: f64,
    /// Impressions so far.
    pub impressions: i64,
    /// Clicks so far.
    pub clicks: i64,
    /// The fitted decay curve; null until a decline is detected with enough points.
    pub decay: Option<DecayView>,
    /// Predicted days until CTR falls below the configured share of baseline.
    pub days_remaining: Option<f64>,
    /// The most recent closed hours, oldest first.
    pub recent_points: Vec<FatiguePointView>,
    /// End of the last closed hour assessed.
    pub assessed_until: i64,
    /// When the job emitted the record.
    pub emitted_at: i64,
}

impl From<&CreativeFatigue> for FatigueView {
    fn from(f: &CreativeFatigue) -> FatigueView {
        FatigueView {
            creative_id: f.creative_id.clone(),
            campaign_id: f.campaign_id.clone(),
            status: symbol(&f.status),
            score: f.score,
            baseline_ctr: f.baseline_ctr,
            current_ctr: f.current_ctr,
            exposure: f.exposure,
            impressions: f.impressions,
            clicks: f.clicks,
            decay: f.decay.as_ref().map(|d| DecayView {
                ctr_at_zero: d.ctr_at_zero,
                lambda: d.lambda,
                lambda_std_error: d.lambda_std_error,
                points: d.points,
                from_exposure: d.from_exposure,
            }),
            days_remaining: f.days_remaining,
            recent_points: f
                .recent_points
                .iter()
                .map(|p| FatiguePointView {
                    hour_start: p.hour_start,
                    impressions: p.impressions,
                    clicks: p.clicks,
                    exposure: p.exposure,
                })
                .collect(),
            assessed_until: f.assessed_until,
            emitted_at: f.emitted_at,
        }
    }
}

/// A campaign's credits under one attribution model, summed over every credit read.
#[derive(SimpleObject, Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CreditTotals {
    /// Campaign.
    pub campaign_id: String,
    /// Model symbol (`LAST_TOUCH`, `LINEAR`, ...).
    pub model: String,
    /// Credited conversions.
    pub conversions: f64,
    /// Credited revenue, micros.
    pub revenue_micros: f64,
    /// Credit records summed.
    pub credits: i64,
}
