//! Data-driven credit on the stream: Markov removal effects and Shapley values fitted over the journeys of a
//! period ([`fit_weights`]), and the latest fit applied to a new conversion's touches ([`LatestWeights`]).
//!
//! **The channel is the campaign.** Credits are keyed by campaign id, so the models are fitted with one channel
//! per campaign: a journey's path is its touches' campaign ids in order (`attribution.journeys`' `path`).
//!
//! **Fit.** The paths of a period's journeys, counted (conversions, value, nulls per distinct path: ChannelAttribution's
//! path-data rows), go through [`super::models::markov`] and [`super::models::shapley`] unchanged. A channel's
//! MARKOV weight is its first-order removal effect `RE(c)`; its SHAPLEY weight is its Shapley value in conversions.
//! Each [`ModelWeight`] also carries its share of the model's total and the period's conversions credited to it.
//!
//! **Crediting a conversion.** With weights `w` of one model (the newest fit of that model as a whole; see
//! [`LatestWeights::apply`]) and a conversion whose touchpoints have channels `c_1 … c_n`: each *distinct*
//! channel of the journey gets `w(c) / Σ_{distinct d} w(d)` of the conversion, split evenly over its touches. A
//! channel without a weight (a campaign the fit has not seen) weighs 0. When the journey's channels weigh nothing
//! in all (or no fit of the model has been read yet) the model credits nothing for that conversion: it is left out
//! of the conversion's shares, never faked. Otherwise the shares sum to 1 per conversion, like the rule models'.

use std::collections::{BTreeMap, HashMap};

use adstream_schemas::outputs::{ModelWeight, WeightModel};

use super::models::{markov, shapley, ModelError, PathCount};

/// The period a fit covers and when it ran, all in UTC epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitPeriod {
    /// Journeys that ended at or after this count.
    pub start_ms: i64,
    /// Journeys that ended before this count.
    pub end_ms: i64,
    /// Wall-clock time of the fit.
    pub fitted_at_ms: i64,
}

/// The weights of both data-driven models over `paths` (a period's journeys, counted per distinct path), one
/// record per model and channel, Shapley first, channels in name order. `journeys` and `conversions` are what the
/// records report as counted (the sums of the paths' counts). Fails on counts [`super::models::validate_paths`]
/// rejects or when the chain cannot be solved.
pub fn fit_weights(paths: &[PathCount], period: FitPeriod) -> Result<Vec<ModelWeight>, ModelError> {
    let markov = markov(paths)?;
    let shapley = shapley(paths);
    let conversions: f64 = paths.iter().map(|p| p.conversions).sum();
    let journeys: f64 = paths.iter().map(|p| p.conversions + p.nulls).sum();
    let shapley_weights: BTreeMap<String, f64> = shapley
        .into_iter()
        .map(|(channel, (credited, _))| (channel, credited))
        .collect();
    let mut records = Vec::new();
    for (model, weights) in [
        (WeightModel::Shapley, &shapley_weights),
        (WeightModel::Markov, &markov.removal_effects),
    ] {
        let total: f64 = weights.values().sum();
        for (channel, weight) in weights {
            let share = if total > 0.0 { weight / total } else { 0.0 };
            records.push(ModelWeight {
                model,
                channel: channel.clone(),
                weight: *weight,
                share,
                credited_conversions: share * conversions,
                period_start: period.start_ms,
                period_end: period.end_ms,
                journeys: journeys.round() as i64,
                conversions: conversions.round() as i64,
                fitted_at: period.fitted_at_ms,
            });
        }
    }
    Ok(records)
}

/// One model's newest fit.
#[derive(Debug, Clone, Default, PartialEq)]
struct Fit {
    fitted_at: i64,
    weights: HashMap<String, f64>,
}

/// The newest fit of each data-driven model, as read from `attribution.model_weights`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatestWeights {
    fits: BTreeMap<WeightModel, Fit>,
}

impl LatestWeights {
    /// Takes in one weight record. A fit is used as a whole: a record of a newer fit than the model's current one
    /// (by `fitted_at`) replaces all of the model's weights, so channels the newer fit did not see weigh nothing;
    /// a record of the current fit adds to it; a record of an older fit (a replayed or re-read record) is ignored.
    /// Records of unknown models and weights that are not finite numbers ≥ 0 are ignored; returns whether the
    /// record changed anything (a table read again at a restore brings the same records once more).
    pub fn apply(&mut self, record: &ModelWeight) -> bool {
        if record.model == WeightModel::Unknown
            || !(record.weight.is_finite() && record.weight >= 0.0)
        {
            return false;
        }
        let fit = self.fits.entry(record.model).or_default();
        if fit.weights.is_empty() || record.fitted_at > fit.fitted_at {
            fit.fitted_at = record.fitted_at;
            fit.weights.clear();
        } else if record.fitted_at < fit.fitted_at {
            return false;
        }
        fit.weights.insert(record.channel.clone(), record.weight) != Some(record.weight)
    }

    /// The models with a fit, in [`WeightModel::ALL`] order.
    pub fn models(&self) -> impl Iterator<Item = WeightModel> + '_ {
        WeightModel::ALL
            .into_iter()
            .filter(|model| self.fits.contains_key(model))
    }

    /// The shares of `model` per touch of a journey whose touches have channels `channels` (see the module
    /// documentation); None when the model has no fit or the journey's channels weigh nothing.
    pub fn shares(&self, model: WeightModel, channels: &[&str]) -> Option<Vec<f64>> {
        let fit = self.fits.get(&model)?;
        let mut touches_per_channel: HashMap<&str, usize> = HashMap::new();
        for channel in channels {
            *touches_per_channel.entry(channel).or_default() += 1;
        }
        let weight = |channel: &str| fit.weights.get(channel).copied().unwrap_or(0.0);
        let total: f64 = touches_per_channel.keys().map(|c| weight(c)).sum();
        if !(total > 0.0 && total.is_finite()) {
            return None;
        }
        Some(
            channels
                .iter()
                .map(|channel| {
                    let touches = touches_per_channel.get(channel).copied().unwrap_or(1);
                    weight(channel) / total / touches as f64
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(channels: &[&str], conversions: f64, nulls: f64) -> PathCount {
        PathCount {
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            conversions,
            value: conversions * 10.0,
            nulls,
        }
    }

    fn weight(model: WeightModel, channel: &str, weight: f64, fitted_at: i64) -> ModelWeight {
        ModelWeight {
            model,
            channel: channel.into(),
            weight,
            share: 0.0,
            credited_conversions: 0.0,
            period_start: 0,
            period_end: 1,
            journeys: 1,
            conversions: 1,
            fitted_at,
        }
    }

    const PERIOD: FitPeriod = FitPeriod {
        start_ms: 100,
        end_ms: 200,
        fitted_at_ms: 300,
    };

    #[test]
    fn markov_weights_are_the_removal_effects_and_shapley_the_values() {
        let paths = [
            path(&["a", "b"], 2.0, 1.0),
            path(&["a"], 1.0, 3.0),
            path(&["b", "c"], 0.0, 2.0),
        ];
        let records = fit_weights(&paths, PERIOD).expect("fit");
        let markov_model = markov(&paths).expect("markov");
        let of = |model: WeightModel, channel: &str| {
            records
                .iter()
                .find(|r| r.model == model && r.channel == channel)
                .expect("record")
                .clone()
        };
        for channel in ["a", "b", "c"] {
            let record = of(WeightModel::Markov, channel);
            assert_eq!(record.weight, markov_model.removal_effects[channel]);
            assert_eq!((record.journeys, record.conversions), (9, 3));
            assert_eq!(
                (record.period_start, record.period_end, record.fitted_at),
                (100, 200, 300)
            );
        }
        // Shapley by hand: a > b splits 2 conversions between a and b; a alone earns its 1.
        assert_eq!(of(WeightModel::Shapley, "a").weight, 2.0);
        assert_eq!(of(WeightModel::Shapley, "b").weight, 1.0);
        assert_eq!(of(WeightModel::Shapley, "c").weight, 0.0);
        for model in WeightModel::ALL {
            let credited: f64 = records
                .iter()
                .filter(|r| r.model == model)
                .map(|r| r.credited_conversions)
                .sum();
            assert!((credited - 3.0).abs() < 1e-12, "{model:?}: {credited}");
        }
    }

    #[test]
    fn shares_split_a_channels_weight_over_its_touches_and_sum_to_one() {
        let mut latest = LatestWeights::default();
        assert!(latest.apply(&weight(WeightModel::Markov, "a", 0.6, 1)));
        assert!(latest.apply(&weight(WeightModel::Markov, "b", 0.2, 1)));
        let shares = latest
            .shares(WeightModel::Markov, &["a", "b", "a", "new"])
            .expect("shares");
        // a weighs 0.6 of 0.8 over two touches; b 0.2 of 0.8; an unfitted campaign nothing.
        for (share, expected) in shares.iter().zip([0.375, 0.25, 0.375, 0.0]) {
            assert!((share - expected).abs() < 1e-12, "{shares:?}");
        }
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(
            !latest.apply(&weight(WeightModel::Markov, "b", 0.2, 1)),
            "nothing new"
        );
    }

    #[test]
    fn no_fit_or_no_weight_credits_nothing() {
        let mut latest = LatestWeights::default();
        assert_eq!(latest.shares(WeightModel::Shapley, &["a"]), None);
        latest.apply(&weight(WeightModel::Shapley, "a", 0.0, 1));
        latest.apply(&weight(WeightModel::Shapley, "b", 3.0, 1));
        assert_eq!(latest.shares(WeightModel::Shapley, &["a", "c"]), None);
        assert_eq!(latest.shares(WeightModel::Shapley, &[]), None);
        assert_eq!(latest.shares(WeightModel::Markov, &["b"]), None);
        assert_eq!(
            latest.models().collect::<Vec<_>>(),
            vec![WeightModel::Shapley]
        );
    }

    #[test]
    fn a_newer_fit_replaces_the_model_as_a_whole_and_an_older_one_is_ignored() {
        let mut latest = LatestWeights::default();
        latest.apply(&weight(WeightModel::Markov, "a", 0.5, 10));
        latest.apply(&weight(WeightModel::Markov, "b", 0.5, 10));
        assert!(latest.apply(&weight(WeightModel::Markov, "b", 0.25, 20)));
        assert_eq!(
            latest.shares(WeightModel::Markov, &["a", "b"]),
            Some(vec![0.0, 1.0])
        );
        assert!(!latest.apply(&weight(WeightModel::Markov, "a", 0.9, 10)));
        assert!(!latest.apply(&weight(WeightModel::Markov, "a", f64::NAN, 30)));
        assert!(!latest.apply(&weight(WeightModel::Unknown, "a", 1.0, 30)));
        assert_eq!(
            latest.shares(WeightModel::Markov, &["a", "b"]),
            Some(vec![0.0, 1.0])
        );
    }
}
