//! A backtest strategy: the settings of the live jobs a strategist may change, and the actions (pauses) the live
//! system does not take. Read from YAML; every field has the live jobs' default, so an empty file is the live
//! configuration, and the `adstream process` flags take their defaults from the constants here.

use std::path::Path;

use adstream_processors::fatigue::detector::FatigueConfig;
use adstream_schemas::outputs::AttributionModel;
use serde::{Deserialize, Serialize};

use super::BacktestError;

/// Default attribution lookback, in days (`process attribution --lookback-days`).
pub const DEFAULT_LOOKBACK_DAYS: f64 = 30.0;
/// Default attribution grace, in seconds (`process attribution --grace-secs`).
pub const DEFAULT_ATTRIBUTION_GRACE_SECS: u64 = 600;
/// Default attribution retention, in seconds (`process attribution --retention-secs`).
pub const DEFAULT_ATTRIBUTION_RETENTION_SECS: u64 = 86_400;
/// Default time-decay half-life, in hours (`process attribution --half-life-hours`).
pub const DEFAULT_HALF_LIFE_HOURS: f64 = 168.0;
/// Default view weight (`process attribution --view-weight`).
pub const DEFAULT_VIEW_WEIGHT: f64 = 1.0;
/// Default campaign-metrics grace, in seconds (`process campaign-metrics --grace-secs`).
pub const DEFAULT_METRICS_GRACE_SECS: u64 = 600;
/// Default campaign-metrics retention, in seconds (`process campaign-metrics --retention-secs`).
pub const DEFAULT_METRICS_RETENTION_SECS: u64 = 2 * 86_400;
/// Default creative-fatigue grace, in seconds (`process creative-fatigue --grace-secs`).
pub const DEFAULT_FATIGUE_GRACE_SECS: u64 = 600;
/// Default creative-fatigue retention, in seconds (`process creative-fatigue --retention-secs`).
pub const DEFAULT_FATIGUE_RETENTION_SECS: u64 = 12 * 3_600;
/// Default creative-fatigue report interval, in hours (`process creative-fatigue --report-interval-hours`).
pub const DEFAULT_REPORT_INTERVAL_HOURS: f64 = 6.0;

/// One strategy file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Strategy {
    /// Name in tables, files and reports; defaults to the file name without its extension.
    pub name: Option<String>,
    /// The attribution job's settings, and the model whose credits count as conversions and revenue.
    pub attribution: AttributionSettings,
    /// The campaign-metrics job's settings.
    pub metrics: MetricsSettings,
    /// The creative-fatigue job's settings and the rule that pauses fatigued creatives.
    pub fatigue: FatigueSettings,
    /// The rule that pauses a campaign's delivery at a budget limit.
    pub budget: BudgetSettings,
}

/// Rule-based attribution models a strategy can count conversions with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// All credit to the last touch (the live campaign-metrics default).
    #[default]
    LastTouch,
    /// All credit to the first touch in the lookback.
    FirstTouch,
    /// Equal credit to every touch.
    Linear,
    /// Credit halving with every half-life before the conversion.
    TimeDecay,
    /// 40/20/40 over first, middle and last touches.
    PositionBased,
}

impl From<Model> for AttributionModel {
    fn from(model: Model) -> Self {
        match model {
            Model::LastTouch => AttributionModel::LastTouch,
            Model::FirstTouch => AttributionModel::FirstTouch,
            Model::Linear => AttributionModel::Linear,
            Model::TimeDecay => AttributionModel::TimeDecay,
            Model::PositionBased => AttributionModel::PositionBased,
        }
    }
}

/// The attribution job's settings (`adstream process attribution` flags) and the model counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttributionSettings {
    /// Model whose credits count as the strategy's conversions and revenue (campaign-metrics'
    /// `--attribution-model`). Default last-touch.
    pub model: Model,
    /// Touches older than this before a conversion do not count, in days; also the backtest's warm-up before
    /// `--from`. Default 30.
    pub lookback_days: f64,
    /// Time-decay half-life, in hours. Default 168.
    pub half_life_hours: f64,
    /// Whether impressions (views) count as touches. Default true.
    pub count_views: bool,
    /// Weight of a view against a click. Default 1.
    pub view_weight: f64,
    /// How long a conversion waits, in watermark time, for touches still on their way, in seconds. Default 600.
    pub grace_secs: u64,
    /// How long past the watermark a late conversion can still be attributed, in seconds. Default 86,400.
    pub retention_secs: u64,
}

impl Default for AttributionSettings {
    fn default() -> Self {
        AttributionSettings {
            model: Model::default(),
            lookback_days: DEFAULT_LOOKBACK_DAYS,
            half_life_hours: DEFAULT_HALF_LIFE_HOURS,
            count_views: true,
            view_weight: DEFAULT_VIEW_WEIGHT,
            grace_secs: DEFAULT_ATTRIBUTION_GRACE_SECS,
            retention_secs: DEFAULT_ATTRIBUTION_RETENTION_SECS,
        }
    }
}

/// The campaign-metrics job's settings (`adstream process campaign-metrics` flags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Grace after a window's end before its row is final, in seconds. Default 600.
    pub grace_secs: u64,
    /// How long after a window's end its state is kept for corrections, in seconds. Default 172,800.
    pub retention_secs: u64,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            grace_secs: DEFAULT_METRICS_GRACE_SECS,
            retention_secs: DEFAULT_METRICS_RETENTION_SECS,
        }
    }
}

/// The creative-fatigue job's settings (`adstream process creative-fatigue` flags) and the pause rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FatigueSettings {
    /// Detector settings: any subset of the `FatigueConfig` fields (what `--detector-config` takes), e.g.
    /// `{ cusum_threshold: 8, fatigued_score: 0.3 }`. Default the live detector.
    pub detector: FatigueConfig,
    /// How long after an hour's end it closes, in seconds. Default 600.
    pub grace_secs: u64,
    /// How long after an hour's end it still takes late events, in seconds. Default 43,200 (12 hours).
    pub retention_secs: u64,
    /// A creative whose status did not change gets a new record after this much event time, in hours. Default 6.
    pub report_interval_hours: f64,
    /// Pausing fatigued creatives. Default off (the live system pauses nothing).
    pub pause: FatiguePause,
}

impl Default for FatigueSettings {
    fn default() -> Self {
        FatigueSettings {
            detector: FatigueConfig::default(),
            grace_secs: DEFAULT_FATIGUE_GRACE_SECS,
            retention_secs: DEFAULT_FATIGUE_RETENTION_SECS,
            report_interval_hours: DEFAULT_REPORT_INTERVAL_HOURS,
            pause: FatiguePause::default(),
        }
    }
}

/// Statuses of the fatigue job, from healthiest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PauseStatus {
    /// A decline not (yet) confirmed, or a small confirmed one.
    Limited,
    /// A confirmed decline with a score at or above the detector's `fatigued_score`.
    #[default]
    Fatigued,
}

/// When a creative is paused: from the first fatigue record (at or after `--from`) that meets the rule, its later
/// impressions and clicks, and their spend, are removed from every job's input.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FatiguePause {
    /// Whether the rule applies. Default false.
    pub enabled: bool,
    /// The status (or worse) that pauses. Default fatigued.
    pub status: PauseStatus,
    /// If set, a record whose score is at least this pauses too, whatever its status.
    pub min_score: Option<f64>,
}

/// Budget rule.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetSettings {
    /// If set, a campaign whose spend in its local day (its time zone, from ads.campaigns) reaches this limit is
    /// paused for the rest of that day: its later impressions and clicks, and their spend, are removed. Default
    /// none (the live system pauses nothing). Campaigns without a daily budget are never paused.
    pub pause_at: Option<BudgetLimit>,
}

/// A daily spend limit relative to the campaign's daily budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetLimit {
    /// Share of the daily budget at which delivery stops, e.g. 1.0 at the budget, 0.8 to pace below it.
    pub daily_budget_share: f64,
}

impl Strategy {
    /// Reads and checks the strategy file at `path`; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Strategy, BacktestError> {
        let text = std::fs::read_to_string(path).map_err(|e| BacktestError::Strategy {
            file: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        let fallback = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "strategy".to_owned());
        Strategy::parse(&text, &path.display().to_string(), &fallback)
    }

    /// Parses strategy YAML `text` (from `file`, named in errors); a strategy without a name gets `fallback`.
    pub fn parse(text: &str, file: &str, fallback: &str) -> Result<Strategy, BacktestError> {
        let error = |message: String| BacktestError::Strategy {
            file: file.to_owned(),
            message,
        };
        // An empty file is the live configuration; serde_yaml reads it as null, not as an empty map.
        let mut strategy: Strategy = if text.trim().is_empty() {
            Strategy::default()
        } else {
            // serde_yaml names the field path (e.g. `attribution.model: unknown variant ...`) and the line.
            serde_yaml::from_str(text).map_err(|e| error(e.to_string()))?
        };
        if strategy.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            strategy.name = Some(fallback.to_owned());
        }
        let positive = |value: f64, field: &str| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(error(format!(
                    "{field} must be a positive number, got {value}"
                )))
            }
        };
        positive(
            strategy.attribution.lookback_days,
            "attribution.lookback_days",
        )?;
        positive(
            strategy.attribution.half_life_hours,
            "attribution.half_life_hours",
        )?;
        positive(strategy.attribution.view_weight, "attribution.view_weight")?;
        positive(
            strategy.fatigue.report_interval_hours,
            "fatigue.report_interval_hours",
        )?;
        strategy
            .fatigue
            .detector
            .validate()
            .map_err(|e| error(format!("fatigue.detector: {e}")))?;
        if let Some(score) = strategy.fatigue.pause.min_score {
            if !(0.0..=1.0).contains(&score) {
                return Err(error(format!(
                    "fatigue.pause.min_score must be in [0, 1], got {score}"
                )));
            }
        }
        if let Some(limit) = &strategy.budget.pause_at {
            positive(
                limit.daily_budget_share,
                "budget.pause_at.daily_budget_share",
            )?;
        }
        Ok(strategy)
    }

    /// The strategy's name (set by [`Strategy::parse`]).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("strategy")
    }

    /// The attribution lookback in milliseconds.
    pub fn lookback_ms(&self) -> i64 {
        (self.attribution.lookback_days * 86_400_000.0) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_live_configuration() {
        let strategy = Strategy::parse("", "live.yaml", "live").expect("parses");
        assert_eq!(strategy.name(), "live");
        assert_eq!(strategy.attribution, AttributionSettings::default());
        assert_eq!(strategy.attribution.lookback_days, 30.0);
        assert!(!strategy.fatigue.pause.enabled);
        assert_eq!(strategy.budget.pause_at, None);
    }

    #[test]
    fn a_full_file_parses() {
        let text = "name: pause\nattribution: { model: time-decay, half_life_hours: 48 }\n\
                    fatigue:\n  detector: { cusum_threshold: 8 }\n  pause: { enabled: true, min_score: 0.5 }\n\
                    budget: { pause_at: { daily_budget_share: 0.9 } }\n";
        let strategy = Strategy::parse(text, "pause.yaml", "x").expect("parses");
        assert_eq!(strategy.name(), "pause");
        assert_eq!(strategy.attribution.model, Model::TimeDecay);
        assert_eq!(strategy.attribution.half_life_hours, 48.0);
        assert_eq!(strategy.fatigue.detector.cusum_threshold, 8.0);
        assert_eq!(strategy.fatigue.pause.min_score, Some(0.5));
        assert_eq!(
            strategy.budget.pause_at.map(|l| l.daily_budget_share),
            Some(0.9)
        );
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let unknown = Strategy::parse("attribution: { modle: linear }\n", "a.yaml", "a")
            .expect_err("unknown field");
        let text = unknown.to_string();
        assert!(text.contains("a.yaml") && text.contains("modle"), "{text}");
        let model = Strategy::parse("attribution: { model: shapley }\n", "b.yaml", "b")
            .expect_err("not a rule model");
        let text = model.to_string();
        assert!(
            text.contains("b.yaml") && text.contains("attribution.model"),
            "{text}"
        );
        let share = Strategy::parse(
            "budget: { pause_at: { daily_budget_share: -1 } }\n",
            "c.yaml",
            "c",
        )
        .expect_err("negative share");
        assert!(
            share
                .to_string()
                .contains("budget.pause_at.daily_budget_share"),
            "{share}"
        );
    }
}
