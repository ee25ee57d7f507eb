//! What queries, subscriptions and SSE streams return: GraphQL objects that serialize to the same JSON (camelCase
//! fields) for SSE. Enum values are the Avro symbols (`HOURLY`, `HIGH`, `LAST_TOUCH`, ...); times are UTC epoch
//! milliseconds; money is in micros of the row's currency.

use adstream_schemas::events::Campaign;
use adstream_schemas::outputs::{
    AlertSeverity, CampaignAlert, CampaignMetrics, CreativeAlert, CreativeFatigue, FatigueStatus,
};
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

/// Lowest severity a client wants to hear about: seed 004's four levels, and the two names of the levels before
/// them (`INFO` = `LOW`, `WARNING` = `MEDIUM`) so that existing clients keep working.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MinSeverity {
    /// Everything.
    Low,
    /// Medium, high and critical alerts.
    Medium,
    /// High and critical alerts.
    High,
    /// Critical alerts only.
    Critical,
    /// The same as `LOW` (its name before there were four levels).
    #[graphql(deprecation = "use LOW")]
    Info,
    /// The same as `MEDIUM` (its name before there were four levels).
    #[graphql(deprecation = "use MEDIUM")]
    Warning,
}

impl MinSeverity {
    /// The lowest firing severity this admits.
    pub fn lowest(self) -> AlertSeverity {
        match self {
            MinSeverity::Low | MinSeverity::Info => AlertSeverity::Low,
            MinSeverity::Medium | MinSeverity::Warning => AlertSeverity::Medium,
            MinSeverity::High => AlertSeverity::High,
            MinSeverity::Critical => AlertSeverity::Critical,
        }
    }

    /// Whether a change that reaches `level` (see [`alert_level`]) is wanted.
    pub fn admits(self, level: AlertSeverity) -> bool {
        level >= self.lowest()
    }
}

/// The firing severity of a symbol (`LOW` … `CRITICAL`); None for `RESOLVED`, `UNKNOWN` or anything else.
pub fn firing_severity(symbol: &str) -> Option<AlertSeverity> {
    AlertSeverity::FIRING
        .into_iter()
        .find(|severity| severity.as_str() == symbol)
}

/// The level an alert change reaches: a firing alert's by its severity, a resolution's by the severity it had, so
/// a client that was told an alert fired is also told it resolved. None for an unknown severity.
pub fn alert_level(view: &AlertView) -> Option<AlertSeverity> {
    match view.severity.as_str() {
        "RESOLVED" => view.previous_severity.as_deref().and_then(firing_severity),
        other => firing_severity(other),
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
    /// Maximum cost per thousand impressions, micros.
    pub target_cpm_micros: Option<i64>,
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
                target_cpm_micros: c.targets.target_cpm_micros,
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

/// A change of one alert condition: of a campaign (`alerts.campaign`), or of one of its creatives' fatigue
/// (`alerts.creative`, kind `CREATIVE_FATIGUE`).
#[derive(SimpleObject, Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    /// `<campaign_id>|<kind>|<event_time millis>`, or `<creative_id>|<event_time millis>` for a creative.
    pub alert_id: String,
    /// Campaign.
    pub campaign_id: String,
    /// The creative of a `CREATIVE_FATIGUE` alert; null for campaign alerts.
    pub creative_id: Option<String>,
    /// Condition symbol (`DAILY_BUDGET_REACHED`, ..., `CREATIVE_FATIGUE`).
    pub kind: String,
    /// New state: `LOW`, `MEDIUM`, `HIGH`, `CRITICAL` or `RESOLVED` (a creative: `LIMITED` is `MEDIUM`,
    /// `FATIGUED` is `HIGH`, back to `HEALTHY` is `RESOLVED`).
    pub severity: String,
    /// State before; null when it was not firing.
    pub previous_severity: Option<String>,
    /// The rule and tier that decided the change (`cpa_above_target:tier2`, `cpa_above_target:resolved`;
    /// `creative_fatigue:<status>` for a creative); empty for records written before rules were named.
    pub rule: String,
    /// Level of the tier that fired, in the rule's measure (0.25 = 25 %); 0 for a resolution and a creative.
    pub rule_level: f64,
    /// Observed value (a creative: its current CTR).
    pub observed: f64,
    /// Threshold or target (a creative: its baseline CTR).
    pub threshold: f64,
    /// One readable line.
    pub message: String,
    /// Start of the campaign's local day; null for a creative.
    pub day_start: Option<i64>,
    /// Event time of the observation.
    pub event_time: i64,
    /// Correlation id of the input record that raised the change.
    pub correlation_id: String,
}

/// The kind of the alerts of `alerts.creative` in the alert stream.
pub const CREATIVE_FATIGUE_KIND: &str = "CREATIVE_FATIGUE";

impl From<&CampaignAlert> for AlertView {
    fn from(a: &CampaignAlert) -> AlertView {
        AlertView {
            alert_id: a.alert_id.clone(),
            campaign_id: a.campaign_id.clone(),
            creative_id: None,
            kind: a.kind.as_str().to_owned(),
            severity: a.severity.as_str().to_owned(),
            previous_severity: a.previous_severity.map(|s| s.as_str().to_owned()),
            rule: a.rule.clone(),
            rule_level: a.rule_level,
            observed: a.observed,
            threshold: a.threshold,
            message: a.message.clone(),
            day_start: Some(a.day_start),
            event_time: a.event_time,
            correlation_id: a.correlation_id.clone(),
        }
    }
}

/// The alert severity a creative's fatigue status stands for: a limited decline is worth watching (`MEDIUM`), a
/// fatigued creative needs a new one today (`HIGH`); healthy is no alert (None).
fn fatigue_severity(status: FatigueStatus) -> Option<AlertSeverity> {
    match status {
        FatigueStatus::Healthy => None,
        FatigueStatus::Limited => Some(AlertSeverity::Medium),
        FatigueStatus::Fatigued => Some(AlertSeverity::High),
        FatigueStatus::Unknown => Some(AlertSeverity::Unknown),
    }
}

impl From<&CreativeAlert> for AlertView {
    fn from(a: &CreativeAlert) -> AlertView {
        let severity = fatigue_severity(a.status).unwrap_or(AlertSeverity::Resolved);
        let previous = a.previous_status.and_then(fatigue_severity);
        let status = symbol(&a.status);
        let ctr =
            |ctr: Option<f64>| ctr.map_or("unknown".to_owned(), |c| format!("{:.2}%", c * 100.0));
        AlertView {
            alert_id: a.alert_id.clone(),
            campaign_id: a.campaign_id.clone(),
            creative_id: Some(a.creative_id.clone()),
            kind: CREATIVE_FATIGUE_KIND.to_owned(),
            severity: severity.as_str().to_owned(),
            previous_severity: previous.map(|s| s.as_str().to_owned()),
            rule: format!("creative_fatigue:{}", status.to_ascii_lowercase()),
            rule_level: 0.0,
            observed: a.current_ctr.unwrap_or(0.0),
            threshold: a.baseline_ctr.unwrap_or(0.0),
            message: format!(
                "creative {} is {status}{}: CTR {} against a {} baseline (score {:.2})",
                a.creative_id,
                a.previous_status
                    .map(|p| format!(" (was {})", symbol(&p)))
                    .unwrap_or_default(),
                ctr(a.current_ctr),
                ctr(a.baseline_ctr),
                a.score,
            ),
            day_start: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_severity_admits_its_level_and_above_and_keeps_the_legacy_names() {
        let admitted = |min: MinSeverity| {
            AlertSeverity::FIRING
                .into_iter()
                .filter(|level| min.admits(*level))
                .map(AlertSeverity::as_str)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            admitted(MinSeverity::Low),
            ["LOW", "MEDIUM", "HIGH", "CRITICAL"]
        );
        assert_eq!(admitted(MinSeverity::High), ["HIGH", "CRITICAL"]);
        assert_eq!(admitted(MinSeverity::Critical), ["CRITICAL"]);
        // `?minSeverity=WARNING` of an existing client still means "medium and above".
        let legacy: MinSeverity = serde_json::from_str("\"WARNING\"").expect("legacy name");
        assert_eq!(admitted(legacy), ["MEDIUM", "HIGH", "CRITICAL"]);
        let legacy: MinSeverity = serde_json::from_str("\"INFO\"").expect("legacy name");
        assert_eq!(admitted(legacy), admitted(MinSeverity::Low));
        assert_eq!(firing_severity("RESOLVED"), None);
    }
}
