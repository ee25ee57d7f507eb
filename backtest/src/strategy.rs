//! A backtest strategy: the settings of the live jobs a strategist may change, and the actions (pauses) the live
//! system does not take. Read from YAML; each job's section is that job's own settings type (the one `adstream
//! process <job>` flattens into flags), with the job's defaults, so an empty file is the live configuration.

use std::collections::BTreeMap;
use std::path::Path;

use adstream_processors::attribution::job::{AttributionDefinition, AttributionSettings};
use adstream_processors::campaign_metrics::job::{
    CampaignMetricsDefinition, CampaignMetricsSettings,
};
use adstream_processors::fatigue::job::{CreativeFatigueDefinition, CreativeFatigueSettings};
use adstream_processors::jobs::Job;
use adstream_schemas::outputs::{model_name, AttributionModel};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};

use crate::BacktestError;

/// One strategy file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Strategy {
    /// Name in tables, files and reports; defaults to the file name without its extension.
    pub name: Option<String>,
    /// The attribution job's settings, and the model whose credits count as conversions and revenue.
    pub attribution: AttributionSection,
    /// The campaign-metrics job's settings.
    pub metrics: CampaignMetricsSettings,
    /// The creative-fatigue job's settings and the rule that pauses fatigued creatives.
    pub fatigue: FatigueSection,
    /// The rule that pauses a campaign's delivery at a budget limit.
    pub budget: BudgetSettings,
    /// Settings of the other jobs the topology runs (a job added beside adstream's own), by job name, each in
    /// that job's settings format; a job not named here runs with its defaults.
    pub jobs: BTreeMap<String, serde_yaml::Value>,
}

/// The `attribution:` section: the attribution job's settings, and `model`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AttributionSection {
    /// Model whose credits count as the strategy's conversions and revenue: campaign-metrics'
    /// `attribution_model`, written here where strategists look for it. A rule model (last-touch, first-touch,
    /// linear, time-decay, position-based) or a data-driven one (markov, shapley: fitted on the backtest's own
    /// history, see [`crate::journeys`]); default that of `metrics:`.
    #[serde(with = "optional_model_name", skip_serializing_if = "Option::is_none")]
    pub model: Option<AttributionModel>,
    /// The job's settings. `lookback_days` is also the backtest's warm-up before `--from`.
    #[serde(flatten)]
    pub job: AttributionSettings,
}

/// The `fatigue:` section: the creative-fatigue job's settings, and `pause`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct FatigueSection {
    /// Pausing fatigued creatives. Default off (the live system pauses nothing).
    pub pause: FatiguePause,
    /// The job's settings; `detector` takes any subset of the `FatigueConfig` fields, e.g.
    /// `{ cusum_threshold: 8, fatigued_score: 0.3 }`.
    #[serde(flatten)]
    pub job: CreativeFatigueSettings,
}

/// Reads a job's section that has one key of the strategy's own (`extra`) beside the job's settings: the settings
/// type keeps refusing unknown fields, which serde's `flatten` would not.
fn split_section<'de, D, S, E>(input: D, extra: &str) -> Result<(Option<E>, S), D::Error>
where
    D: Deserializer<'de>,
    S: DeserializeOwned + Default,
    E: DeserializeOwned,
{
    let mut map = match serde_yaml::Value::deserialize(input)? {
        serde_yaml::Value::Null => serde_yaml::Mapping::new(),
        serde_yaml::Value::Mapping(map) => map,
        other => {
            return Err(D::Error::custom(format!(
                "expected a mapping, got {other:?}"
            )))
        }
    };
    let own = map
        .remove(extra)
        .map(|value| {
            serde_yaml::from_value::<E>(value)
                .map_err(|e| D::Error::custom(format!("{extra}: {e}")))
        })
        .transpose()?;
    let settings = if map.is_empty() {
        S::default()
    } else {
        serde_yaml::from_value(serde_yaml::Value::Mapping(map)).map_err(D::Error::custom)?
    };
    Ok((own, settings))
}

impl<'de> Deserialize<'de> for AttributionSection {
    fn deserialize<D: Deserializer<'de>>(input: D) -> Result<Self, D::Error> {
        let (name, job) = split_section::<_, AttributionSettings, String>(input, "model")?;
        let model = name
            .map(|name| name.parse::<AttributionModel>())
            .transpose()
            .map_err(|e| D::Error::custom(format!("attribution.model: {e}")))?;
        Ok(AttributionSection { model, job })
    }
}

impl<'de> Deserialize<'de> for FatigueSection {
    fn deserialize<D: Deserializer<'de>>(input: D) -> Result<Self, D::Error> {
        let (pause, job) =
            split_section::<_, CreativeFatigueSettings, FatiguePause>(input, "pause")?;
        Ok(FatigueSection {
            pause: pause.unwrap_or_default(),
            job,
        })
    }
}

/// Serde of an optional model by name.
mod optional_model_name {
    use serde::Serializer;

    use super::{model_name, AttributionModel};

    pub fn serialize<S: Serializer>(
        model: &Option<AttributionModel>,
        out: S,
    ) -> Result<S::Ok, S::Error> {
        match model {
            Some(model) => model_name::serialize(model, out),
            None => out.serialize_none(),
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
            strategy.attribution.job.lookback_days,
            "attribution.lookback_days",
        )?;
        positive(
            strategy.attribution.job.half_life_hours,
            "attribution.half_life_hours",
        )?;
        positive(
            strategy.attribution.job.view_weight,
            "attribution.view_weight",
        )?;
        positive(
            strategy.fatigue.job.report_interval_hours,
            "fatigue.report_interval_hours",
        )?;
        if let Some(model) = strategy.attribution.model {
            let default = CampaignMetricsSettings::default().attribution_model;
            if strategy.metrics.attribution_model != default
                && strategy.metrics.attribution_model != model
            {
                return Err(error(format!(
                    "attribution.model ({model}) and metrics.attribution_model ({}) disagree: set one",
                    strategy.metrics.attribution_model
                )));
            }
            strategy.metrics.attribution_model = model;
        }
        strategy
            .fatigue
            .job
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

    /// The settings of the job named `job` (in the job registry) as YAML: its section for adstream's own jobs,
    /// its entry under `jobs:` for another, else empty (the job's defaults).
    pub fn job_settings_yaml(&self, job: &str) -> Result<String, BacktestError> {
        let yaml = match job {
            CampaignMetricsDefinition::NAME => serde_yaml::to_string(&self.metrics),
            CreativeFatigueDefinition::NAME => serde_yaml::to_string(&self.fatigue.job),
            AttributionDefinition::NAME => serde_yaml::to_string(&self.attribution.job),
            other => match self.jobs.get(other) {
                Some(settings) => serde_yaml::to_string(settings),
                None => Ok(String::new()),
            },
        };
        yaml.map_err(|e| BacktestError::Strategy {
            file: self.name().to_owned(),
            message: format!("the settings of {job} do not print as YAML: {e}"),
        })
    }

    /// The attribution lookback in milliseconds.
    pub fn lookback_ms(&self) -> i64 {
        (self.attribution.job.lookback_days * 86_400_000.0) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_live_configuration() {
        let strategy = Strategy::parse("", "live.yaml", "live").expect("parses");
        assert_eq!(strategy.name(), "live");
        assert_eq!(strategy.attribution.job, AttributionSettings::default());
        assert_eq!(strategy.attribution.job.lookback_days, 30.0);
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
        assert_eq!(
            strategy.metrics.attribution_model,
            AttributionModel::TimeDecay
        );
        assert_eq!(strategy.attribution.job.half_life_hours, 48.0);
        assert_eq!(strategy.fatigue.job.detector.cusum_threshold, 8.0);
        assert_eq!(strategy.fatigue.pause.min_score, Some(0.5));
        assert_eq!(
            strategy.budget.pause_at.map(|l| l.daily_budget_share),
            Some(0.9)
        );
    }

    #[test]
    fn data_driven_models_are_strategies_models() {
        for (name, model) in [
            ("markov", AttributionModel::Markov),
            ("shapley", AttributionModel::Shapley),
        ] {
            let text = format!("attribution: {{ model: {name} }}\n");
            let strategy = Strategy::parse(&text, "d.yaml", "d").expect("parses");
            assert_eq!(strategy.metrics.attribution_model, model);
        }
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let unknown = Strategy::parse("attribution: { modle: linear }\n", "a.yaml", "a")
            .expect_err("unknown field");
        let text = unknown.to_string();
        assert!(text.contains("a.yaml") && text.contains("modle"), "{text}");
        let model = Strategy::parse("attribution: { model: bandit }\n", "b.yaml", "b")
            .expect_err("not a model");
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
