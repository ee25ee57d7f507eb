//! The journeys of a backtest's own history, the data-driven models fitted on them, and the Markov counterfactual
//! of a strategy's pauses.
//!
//! # Journeys
//!
//! Built from the touches (impressions and clicks with a user) and conversions the backtest reads, over all of it
//! (warm-up and period), as the history happened, before any pause: the models describe what the live traffic did,
//! and a strategy's pauses are the counterfactual asked of them. The attribution topic `attribution.model_weights`
//! is not read: a backtest fits its own models and needs no live model job.
//!
//! - A **converting journey** per conversion (valid ones with a user, each conversion id once): its user's *eligible*
//!   touches in `[conversion − lookback, conversion]`, oldest first — the strategy's `lookback_days`, and views
//!   only when `count_views` — the same touches the attribution job credits. Its channels are the touches'
//!   campaigns; a touch may belong to several conversions of its user.
//! - A **non-converting journey** per user: the user's eligible touches that are in no conversion's lookback (the
//!   touches that did not lead to a conversion within the lookback), oldest first. Touches near the end of the
//!   history whose conversion would come after it count here too.
//!
//! The journeys are counted per channel sequence into a path dataset ([`PathCount`]s) for
//! [`adstream_processors::attribution::models`]: `markov` (removal effects), `shapley`, and the chain of
//! [`MarkovChain`].
//!
//! # Data-driven credit
//!
//! A strategy whose model is `markov` or `shapley` credits every attributed conversion of its run (the attribution
//! job's `attribution.conversions` record: the kept eligible touches) with weights fitted on the journeys: the
//! channels' Markov removal effects, or their Shapley values in conversions. Shares per touch follow
//! [`weighted_shares`](adstream_processors::attribution::models::weighted_shares): each distinct campaign of the conversion's touches gets its weight over the sum of the
//! weights of the conversion's distinct campaigns (equal shares if that sum is 0), split equally between its
//! touches; the shares of one conversion sum to 1, and its revenue is split the same way. (The replayed
//! campaign-metrics tables count the credits the attribution job writes: its rule models'; the outcomes count
//! these.)
//!
//! # The Markov counterfactual
//!
//! The attribution job credits a conversion whenever one of its touches was kept: the **naive** counterfactual
//! loses a conversion only when every touch was removed, and keeps the others whole. The **Markov** counterfactual
//! asks the first-order chain fitted on the journeys instead. For a conversion of the period, let `R` be the
//! campaigns its journey no longer visits: those with touches in its lookback none of which were kept (a creative
//! pause that leaves another touch of the same campaign removes no visit: the chain, whose states are campaigns
//! and which collapses repeats, sees the same journey). It survives with probability
//!
//! `s(R) = P(conversion | every campaign of R leads to null) / P(conversion) = 1 − RE(R)`,
//!
//! the removal effect of the *set* `R` (for one campaign, exactly the `markov` model's removal effect): the share
//! of the chain's conversions that happen without those campaigns. A conversion that lost no visit survives (1),
//! also when it lost some touches; one that lost visits survives with `s(R)` whether or not touches remain, so a
//! conversion all of whose touches were removed may still be expected in part (the chain's other ways to a
//! conversion), and one that kept a touch may be lost in part. Expected conversions and revenue are fractional:
//! each credit of a surviving conversion is multiplied by its `s(R)`, and a conversion without any kept touch,
//! which no kept campaign can be credited with, counts `s(R)` conversions and `s(R) × value` in the
//! [`NO_KEPT_TOUCH`] row. `R` is taken per conversion, not as the set of all paused campaigns, because a
//! journey can only lose what it visited; with one paused campaign the two agree on every affected conversion.
//!
//! Why the set's removal effect rather than a per-path probability: a first-order chain has no memory of the
//! journey beyond its current state, so "this path without these touches" has no probability of its own that is
//! not 0 or 1; the chain's answer is population-level — how many of the conversions it produces need the removed
//! campaigns — and each affected conversion is taken as a draw from them.

use std::collections::{BTreeMap, HashMap, HashSet};

use adstream_processors::attribution::models::{
    markov, shapley, MarkovChain, PathCount, TouchKind,
};
use adstream_schemas::outputs::AttributionModel;

use crate::engine::History;
use crate::BacktestError;

/// The row of the conversions that survive the Markov counterfactual without a kept touch.
pub const NO_KEPT_TOUCH: &str = "(no kept touch)";

/// How a conversion that lost a visit fares under the Markov counterfactual.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Survival {
    /// `s(R)`.
    pub probability: f64,
    /// Whether one of its touches was kept (then the attribution job credited it).
    pub kept_touch: bool,
    /// Conversion time.
    pub time_ms: i64,
    /// Its value, micros.
    pub value_micros: i64,
}

/// One conversion's journey.
pub(crate) struct ConversionJourney {
    /// Index in the history's conversions.
    pub conversion: usize,
    /// Indices in the history's events of its eligible touches, oldest first.
    pub touches: Vec<usize>,
}

/// The journeys of a history under one lookback and view rule (see the module doc).
pub(crate) struct Journeys {
    pub conversions: Vec<ConversionJourney>,
    pub paths: Vec<PathCount>,
}

impl Journeys {
    /// The journeys of `history` with touches in `[conversion − lookback_ms, conversion]`, views only when
    /// `count_views`.
    pub fn build(history: &History, lookback_ms: i64, count_views: bool) -> Journeys {
        // Per user, the eligible touches (time, event index), oldest first.
        let mut touches: HashMap<u32, Vec<(i64, usize)>> = HashMap::new();
        for (index, info) in history.infos().iter().enumerate() {
            let Some(info) = info else { continue };
            let Some(user) = info.user() else { continue };
            if count_views || info.kind() == TouchKind::Click {
                touches.entry(user).or_default().push((info.time_ms, index));
            }
        }
        for list in touches.values_mut() {
            list.sort_unstable();
        }
        let campaign = |index: usize| -> u32 {
            history.infos()[index]
                .map(|info| info.campaign)
                .unwrap_or_default()
        };
        // Channel sequence → (conversions, value, nulls).
        let mut counts: BTreeMap<Vec<u32>, (f64, f64, f64)> = BTreeMap::new();
        // Per event: whether it is in some conversion's journey.
        let mut used = vec![false; history.infos().len()];
        let mut conversions = Vec::with_capacity(history.conversions().len());
        for (n, conversion) in history.conversions().iter().enumerate() {
            let list = touches
                .get(&conversion.user)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let from = conversion.time_ms.saturating_sub(lookback_ms);
            let start = list.partition_point(|(t, _)| *t < from);
            let end = list.partition_point(|(t, _)| *t <= conversion.time_ms);
            let journey: Vec<usize> = list[start..end.max(start)]
                .iter()
                .map(|(_, i)| *i)
                .collect();
            if !journey.is_empty() {
                for index in &journey {
                    used[*index] = true;
                }
                let entry = counts
                    .entry(journey.iter().map(|i| campaign(*i)).collect())
                    .or_default();
                entry.0 += 1.0;
                entry.1 += conversion.value_micros as f64;
            }
            conversions.push(ConversionJourney {
                conversion: n,
                touches: journey,
            });
        }
        for list in touches.values() {
            let rest: Vec<u32> = list
                .iter()
                .filter(|(_, i)| !used[*i])
                .map(|(_, i)| campaign(*i))
                .collect();
            if !rest.is_empty() {
                counts.entry(rest).or_default().2 += 1.0;
            }
        }
        let ids = history.campaign_ids();
        let paths = counts
            .into_iter()
            .map(|(channels, (conversions, value, nulls))| PathCount {
                channels: channels
                    .into_iter()
                    .map(|c| ids[c as usize].clone())
                    .collect(),
                conversions,
                value,
                nulls,
            })
            .collect();
        Journeys { conversions, paths }
    }

    /// The per-campaign weights `model` credits with (Markov removal effects, Shapley values in conversions);
    /// None for a rule model.
    pub fn weights(
        &self,
        model: AttributionModel,
    ) -> Result<Option<BTreeMap<String, f64>>, BacktestError> {
        Ok(match model {
            AttributionModel::Markov => Some(markov(&self.paths)?.removal_effects),
            AttributionModel::Shapley => Some(
                shapley(&self.paths)
                    .into_iter()
                    .map(|(channel, (conversions, _))| (channel, conversions))
                    .collect(),
            ),
            _ => None,
        })
    }

    /// The Markov survival of every conversion of `[from_ms, to_ms)` that lost a visit when only the events
    /// marked in `kept` are kept (see the module doc), by conversion id.
    pub fn survival(
        &self,
        history: &History,
        kept: &[bool],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<HashMap<String, Survival>, BacktestError> {
        // Fitted when a conversion first needs it: not at all for a strategy that removes nothing.
        let mut chain: Option<MarkovChain<'_>> = None;
        let ids = history.campaign_ids();
        let mut by_set: HashMap<Vec<u32>, f64> = HashMap::new();
        let mut out = HashMap::new();
        for journey in &self.conversions {
            let conversion = &history.conversions()[journey.conversion];
            if conversion.time_ms < from_ms || conversion.time_ms >= to_ms {
                continue;
            }
            if journey.touches.iter().all(|i| kept[*i]) {
                continue;
            }
            let campaign = |i: &usize| history.infos()[*i].map(|info| info.campaign);
            let visited: HashSet<u32> = journey.touches.iter().filter_map(campaign).collect();
            let still: HashSet<u32> = journey
                .touches
                .iter()
                .filter(|i| kept[**i])
                .filter_map(campaign)
                .collect();
            let mut removed: Vec<u32> = visited.difference(&still).copied().collect();
            if removed.is_empty() {
                continue;
            }
            removed.sort_unstable();
            let survival = match by_set.get(&removed) {
                Some(survival) => *survival,
                None => {
                    let names: Vec<&str> =
                        removed.iter().map(|c| ids[*c as usize].as_str()).collect();
                    let chain = match &mut chain {
                        Some(chain) => chain,
                        None => chain.insert(MarkovChain::fit(&self.paths)?),
                    };
                    let survival = chain.survival(&names)?;
                    by_set.insert(removed, survival);
                    survival
                }
            };
            out.insert(
                conversion.id.clone(),
                Survival {
                    probability: survival,
                    kept_touch: !still.is_empty(),
                    time_ms: conversion.time_ms,
                    value_micros: conversion.value_micros,
                },
            );
        }
        Ok(out)
    }
}
