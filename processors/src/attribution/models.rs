//! Attribution models: how much of a conversion each touch of a journey, or each channel of a path dataset, earns.
//!
//! Two kinds of input:
//!
//! - **A journey** (the live job): the [`Touch`]es of one user before one conversion, sorted by time, oldest
//!   first. [`rule_shares`] splits that conversion between them under a [`RuleModel`].
//! - **A path dataset** (offline analysis; ChannelAttribution's `path,total_conversions,total_conversion_value,
//!   total_null` format): [`PathCount`]s, each a channel sequence with how many journeys along it converted, their
//!   conversion value and how many did not convert. [`rule_credits_over_paths`], [`shapley`] and [`markov`] credit
//!   the channels with conversions and value ([`ChannelCredits`]).
//!
//! # Rule models
//!
//! Times are `i64` milliseconds; `Δt` of a touch is the conversion time minus the touch time. Only *eligible*
//! touches earn anything: clicks always, views only when [`RuleSettings::count_views`] is set. With `n` eligible
//! touches, counted in journey order:
//!
//! - [`RuleModel::LastTouch`] / [`RuleModel::FirstTouch`]: 1 to the last / first eligible touch.
//! - [`RuleModel::Linear`]: `1/n` to every eligible touch (per touch, so a channel touched twice earns twice).
//! - [`RuleModel::TimeDecay`]: weight `0.5^(Δt/H)` with `H` = [`RuleSettings::half_life_ms`], normalised to sum
//!   to 1 over the journey. Normalisation makes the shares depend only on the gaps between touches, so the weights
//!   are computed relative to the most recent eligible touch (weight exactly 1): the journey's total can never
//!   underflow to 0, however old its touches are.
//! - [`RuleModel::PositionBased`] (40/20/40): the first and the last eligible touch get 40 % each and the middle
//!   touches share 20 % equally; a single touch gets 100 %, two touches 50 % each.
//!
//! Then the view weight: every share of a view is multiplied by [`RuleSettings::view_weight`] (clicks by 1) and
//! the journey's shares are normalised to sum to 1 again. A weight of 1 changes nothing, and it cannot move
//! credit under first or last touch (one touch holds everything). If weighting leaves nothing to normalise (only
//! views earned and the weight is 0), the unweighted shares stand, so a converting journey with an eligible touch
//! always hands out the whole conversion.
//!
//! # Path datasets
//!
//! A path's channels are parsed with [`parse_path`]. Paths with no channel earn no channel anything and are
//! skipped by every model. Every channel that occurs in any path appears in the credits, with zeros when it
//! earned nothing. Counts are used as given: check them with [`validate_paths`] first ([`markov`] does).
//!
//! - **Rule models** ([`rule_credits_over_paths`]): each channel of a path is a click; the last one is at the
//!   conversion and each earlier one a further hour before it (`Δt` = 0 h, 1 h, 2 h, … counted from the end),
//!   since path datasets carry no times. A path's conversions and value are split by [`rule_shares`].
//! - **Shapley** ([`shapley`]): the channels are the players and a coalition `S` is worth the conversions (value)
//!   of the paths whose channel *set* is a subset of `S`. That game is a sum of unanimity games, one per channel
//!   set `T` with weight `R(T)` = conversions of the paths whose channel set is exactly `T`, so the Shapley value
//!   has the closed form `φ_i = Σ_{T ∋ i} R(T) / |T|` (Dalessandro et al., 2012): every path splits its
//!   conversions equally between its *distinct* channels. Exact, in time linear in the dataset.
//! - **Markov** ([`markov`]): a first-order chain with states start, the channels, conversion and null, fitted
//!   like ChannelAttribution's `markov_model` with its default `order=1`: consecutive repeats of a channel collapse
//!   into one visit (`a > a > b` is `a > b`, no self-loops; keeping them would only rescale a state's other
//!   transitions, so absorption probabilities are the same either way), and every transition of a path is counted
//!   `conversions + nulls` times, ending in conversion `conversions` times and in null `nulls` times. The
//!   absorption probabilities are solved exactly (Gaussian elimination with partial pivoting) rather than
//!   simulated, as are the chain with each channel removed (a removed channel leads to null). Removal effect
//!   `RE(c) = 1 − P(conversion | c removed) / P(conversion)` (Anderl et al., 2016); conversion credits are
//!   `total conversions × RE(c) / Σ RE`. Value credits use the same rule on the expected conversion *value*: a
//!   conversion reached from channel `s` is worth the mean value of the conversions that ended at `s`, which is
//!   how ChannelAttribution simulates value. Cost: one dense solve per channel, `O(channels⁴)` in all — fine for
//!   the tens to hundreds of channels of a marketing mix.
//! - **Counterfactuals** ([`MarkovChain`]): the same chain, kept to ask what share of the conversions survives
//!   when a *set* of channels leads to null: `P(conversion | set removed) / P(conversion)`, i.e. one minus the
//!   set's removal effect (for one channel, `1 − RE(c)` above). Backtests use it for paused campaigns.
//! - **Per-journey credit from fitted weights** ([`weighted_shares`]): a data-driven model's per-channel weights
//!   (removal effects, Shapley values) turned into one conversion's shares: each distinct channel of the journey
//!   gets its weight over the journey's total, split equally between its touches.
//!
//! # Compared with marketing-attribution-models (mam 2.1.1)
//!
//! mam's time-decay and position-based models agree with ours on the journeys where both are defined (the Python
//! oracle tests check this); they differ as follows:
//!
//! - **Time unit and origin.** mam takes `Δt` in hours per touch. From its journey format it uses the hours given;
//!   from its session format it measures them to the *last touch* of the journey, not to a conversion. Ours is
//!   milliseconds to the conversion. As normalised shares depend only on the gaps between touches, the origin
//!   does not matter (short of the underflow below), and our path-dataset convention (1 hour per position, 0 at
//!   the end) is mam's journey format with `Δt` = `k > … > 1 > 0`.
//! - **Decay.** Same parameterisation (`0.5^(Δt/H)`, half-life `H`, default 168 h) — but mam normalises the raw
//!   weights, which all underflow to 0 once every touch is more than about 1,075 half-lives old, and then credits
//!   NaN. Ours normalises relative to the newest touch and gives it everything in that limit.
//! - **Path datasets.** mam's grouped-journey format (ChannelAttribution's) carries no times, and mam refuses
//!   time decay on it; ours uses the 1-hour step above.
//! - **Touch kinds.** mam has none: every touch counts with weight 1, i.e. ours with only clicks, or with
//!   `count_views` and `view_weight = 1`.
//! - **One and two touches** under position based: 100 % and 50/50 in both.

use std::collections::BTreeMap;

use adstream_schemas::outputs::AttributionModel;
use serde::{Deserialize, Serialize};

const MILLIS_PER_HOUR: i64 = 3_600_000;

/// Why settings or a path dataset were rejected, or the Markov model could not be solved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The time-decay half-life is zero or negative.
    #[error("half-life must be greater than zero, got {half_life_ms} ms")]
    HalfLifeNotPositive {
        /// The rejected half-life.
        half_life_ms: i64,
    },
    /// The view weight is negative, infinite or NaN.
    #[error("view weight must be a finite number >= 0, got {view_weight}")]
    InvalidViewWeight {
        /// The rejected weight.
        view_weight: f64,
    },
    /// A path's count or value is negative, infinite or NaN.
    #[error("path {index}: {field} must be a finite number >= 0, got {value}")]
    InvalidCount {
        /// Position of the path in the dataset (0-based).
        index: usize,
        /// Which field: `conversions`, `value` or `nulls`.
        field: &'static str,
        /// The rejected number.
        value: f64,
    },
    /// The counts are each finite, but the totals the models add up are not.
    #[error("the dataset's counts are too large: their totals overflow")]
    CountsOverflow,
    /// The Markov chain's linear system has no unique solution. A chain fitted from valid counts always has one
    /// (every visited state reaches conversion or null), so this reports numeric trouble, not bad input.
    #[error("the Markov chain's absorption equations are singular")]
    SingularChain,
}

/// How a user met the ad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TouchKind {
    /// An impression.
    View,
    /// A click.
    Click,
}

/// One touch of a journey, as the rule models see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Touch {
    /// When the touch happened, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// View or click.
    pub kind: TouchKind,
}

/// The rule models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleModel {
    /// Everything to the last eligible touch.
    LastTouch,
    /// Everything to the first eligible touch.
    FirstTouch,
    /// Equal shares per eligible touch.
    Linear,
    /// Exponentially more to recent touches, by half-life.
    TimeDecay,
    /// 40 % first, 40 % last, 20 % shared by the touches between.
    PositionBased,
}

impl RuleModel {
    /// Every rule model, in declaration order.
    pub const ALL: [RuleModel; 5] = [
        RuleModel::LastTouch,
        RuleModel::FirstTouch,
        RuleModel::Linear,
        RuleModel::TimeDecay,
        RuleModel::PositionBased,
    ];

    /// The model's name in configuration and output: `"last-touch"`, `"first-touch"`, `"linear"`,
    /// `"time-decay"` or `"position-based"` (the same as its serde name and the contract's
    /// [`AttributionModel::name`]).
    pub fn name(self) -> &'static str {
        AttributionModel::from(self).name()
    }
}

/// The contract's name for a rule model (credits carry it).
impl From<RuleModel> for AttributionModel {
    fn from(model: RuleModel) -> Self {
        match model {
            RuleModel::LastTouch => AttributionModel::LastTouch,
            RuleModel::FirstTouch => AttributionModel::FirstTouch,
            RuleModel::Linear => AttributionModel::Linear,
            RuleModel::TimeDecay => AttributionModel::TimeDecay,
            RuleModel::PositionBased => AttributionModel::PositionBased,
        }
    }
}

/// Settings of the rule models. Every field has a serde default, so `{}` deserialises to [`RuleSettings::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSettings {
    /// Time-decay half-life in milliseconds (default 7 days = 168 h, like marketing-attribution-models).
    #[serde(default = "default_half_life_ms")]
    pub half_life_ms: i64,
    /// Whether impressions (views) count as touches (default true).
    #[serde(default = "default_count_views")]
    pub count_views: bool,
    /// Weight of a view relative to a click (default 1.0): a model's share of a touch is multiplied by its kind's
    /// weight, then the shares of the journey are normalised to sum to 1.
    #[serde(default = "default_view_weight")]
    pub view_weight: f64,
}

fn default_half_life_ms() -> i64 {
    168 * MILLIS_PER_HOUR
}

fn default_count_views() -> bool {
    true
}

fn default_view_weight() -> f64 {
    1.0
}

impl Default for RuleSettings {
    fn default() -> Self {
        RuleSettings {
            half_life_ms: default_half_life_ms(),
            count_views: default_count_views(),
            view_weight: default_view_weight(),
        }
    }
}

impl RuleSettings {
    /// Checks that the half-life is positive and the view weight finite and not negative.
    ///
    /// [`rule_shares`] never fails on settings that do not pass (it must not stop a live job), but its answer is
    /// then only a fallback: a half-life `<= 0` acts as the limit of a very short one (everything to the most
    /// recent eligible touches, equally), and an invalid view weight is ignored.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.half_life_ms <= 0 {
            return Err(ModelError::HalfLifeNotPositive {
                half_life_ms: self.half_life_ms,
            });
        }
        if !(self.view_weight.is_finite() && self.view_weight >= 0.0) {
            return Err(ModelError::InvalidViewWeight {
                view_weight: self.view_weight,
            });
        }
        Ok(())
    }
}

/// Shares of one conversion per touch, same order and length as `touches` (sorted by time, oldest first; the
/// caller guarantees every touch is at or before `conversion_time_ms`). Each share in `[0, 1]`; they sum to 1
/// (within 1e-12) when at least one touch is eligible, else all are 0. Views get 0 when !count_views.
///
/// See the module documentation for the models. Allocates only the returned vector, never panics and never
/// returns NaN, whatever the input: settings that fail [`RuleSettings::validate`] get the fallback described
/// there, and a touch after the conversion (which the caller rules out) still gets a share in `[0, 1]`, as time
/// decay only looks at the gaps between touches.
pub fn rule_shares(
    model: RuleModel,
    touches: &[Touch],
    conversion_time_ms: i64,
    settings: &RuleSettings,
) -> Vec<f64> {
    let mut shares = vec![0.0; touches.len()];
    let eligible = |touch: &Touch| settings.count_views || touch.kind == TouchKind::Click;
    let count = touches.iter().filter(|t| eligible(t)).count();
    if count == 0 {
        return shares;
    }
    match model {
        RuleModel::LastTouch => {
            if let Some(last) = touches.iter().rposition(eligible) {
                shares[last] = 1.0;
            }
        }
        RuleModel::FirstTouch => {
            if let Some(first) = touches.iter().position(eligible) {
                shares[first] = 1.0;
            }
        }
        RuleModel::Linear => {
            let each = 1.0 / count as f64;
            for (share, touch) in shares.iter_mut().zip(touches) {
                if eligible(touch) {
                    *share = each;
                }
            }
        }
        RuleModel::PositionBased => {
            let middle = if count > 2 {
                0.2 / (count - 2) as f64
            } else {
                0.0
            };
            let mut rank = 0;
            for (share, touch) in shares.iter_mut().zip(touches) {
                if !eligible(touch) {
                    continue;
                }
                *share = match count {
                    1 => 1.0,
                    2 => 0.5,
                    _ if rank == 0 || rank == count - 1 => 0.4,
                    _ => middle,
                };
                rank += 1;
            }
        }
        RuleModel::TimeDecay => {
            // Δt in i128 so that no pair of i64 instants overflows. The smallest Δt (the most recent eligible
            // touch) is the reference: dividing every weight by its weight changes nothing after normalisation.
            let lag = |touch: &Touch| i128::from(conversion_time_ms) - i128::from(touch.time_ms);
            let newest = touches
                .iter()
                .filter(|t| eligible(t))
                .map(lag)
                .min()
                .unwrap_or(0);
            let half_life = settings.half_life_ms as f64;
            let mut total = 0.0;
            for (share, touch) in shares.iter_mut().zip(touches) {
                if !eligible(touch) {
                    continue;
                }
                let behind = (lag(touch) - newest) as f64;
                *share = if settings.half_life_ms > 0 {
                    (-behind / half_life).exp2()
                } else if behind == 0.0 {
                    1.0
                } else {
                    0.0
                };
                total += *share;
            }
            // total >= 1: the newest touch weighs exactly 2^0.
            for share in &mut shares {
                *share /= total;
            }
        }
    }
    apply_view_weight(&mut shares, touches, settings);
    shares
}

/// Multiplies the shares of views by the view weight and renormalises; leaves them unweighted when that is a
/// no-op, when the weight is invalid, or when nothing would be left to normalise.
fn apply_view_weight(shares: &mut [f64], touches: &[Touch], settings: &RuleSettings) {
    let weight = settings.view_weight;
    if !settings.count_views || weight == 1.0 || !(weight.is_finite() && weight >= 0.0) {
        return;
    }
    let weighted = |share: f64, touch: &Touch| match touch.kind {
        TouchKind::View => share * weight,
        TouchKind::Click => share,
    };
    let total: f64 = shares
        .iter()
        .zip(touches)
        .map(|(share, touch)| weighted(*share, touch))
        .sum();
    if !(total > 0.0 && total.is_finite()) {
        return;
    }
    for (share, touch) in shares.iter_mut().zip(touches) {
        *share = weighted(*share, touch) / total;
    }
}

/// Paths that share one channel sequence, with how many ended in a conversion and how many did not.
#[derive(Debug, Clone, PartialEq)]
pub struct PathCount {
    /// The channels touched, in order (repeats allowed).
    pub channels: Vec<String>,
    /// How many journeys along this path converted.
    pub conversions: f64,
    /// The total conversion value of those journeys.
    pub value: f64,
    /// How many journeys along this path did not convert.
    pub nulls: f64,
}

/// Credits per channel: (conversions, value).
pub type ChannelCredits = BTreeMap<String, (f64, f64)>;

/// The channels of a path written as text, e.g. `"search > display > search"` with separator `">"`: each
/// channel trimmed of surrounding whitespace, empty ones dropped. An empty separator means the whole text is one
/// channel.
pub fn parse_path(text: &str, separator: &str) -> Vec<String> {
    if separator.is_empty() {
        let channel = text.trim();
        return if channel.is_empty() {
            Vec::new()
        } else {
            vec![channel.to_owned()]
        };
    }
    text.split(separator)
        .map(str::trim)
        .filter(|channel| !channel.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Checks that every count and value is finite and not negative, and that the totals the models add up
/// (conversions, nulls and transitions weighted by them, value) do not overflow.
pub fn validate_paths(paths: &[PathCount]) -> Result<(), ModelError> {
    let mut transitions = 0.0;
    let mut value = 0.0;
    for (index, path) in paths.iter().enumerate() {
        for (field, number) in [
            ("conversions", path.conversions),
            ("value", path.value),
            ("nulls", path.nulls),
        ] {
            if !(number.is_finite() && number >= 0.0) {
                return Err(ModelError::InvalidCount {
                    index,
                    field,
                    value: number,
                });
            }
        }
        // A path of n channels makes n + 1 transitions, each counted conversions + nulls times.
        transitions += (path.conversions + path.nulls) * (path.channels.len() as f64 + 1.0);
        value += path.value;
    }
    if transitions.is_finite() && value.is_finite() {
        Ok(())
    } else {
        Err(ModelError::CountsOverflow)
    }
}

/// Every channel of the dataset with zero credit, so that each model reports the same channels.
fn zero_credits(paths: &[PathCount]) -> ChannelCredits {
    paths
        .iter()
        .flat_map(|path| &path.channels)
        .map(|channel| (channel.clone(), (0.0, 0.0)))
        .collect()
}

/// Adds `share` of a path's conversions and value to `channel`.
fn credit(credits: &mut ChannelCredits, channel: &str, path: &PathCount, share: f64) {
    if let Some((conversions, value)) = credits.get_mut(channel) {
        *conversions += path.conversions * share;
        *value += path.value * share;
    }
}

/// Rule models aggregated over a path dataset: each channel of a path is a touch, and its share of the path
/// ([`rule_shares`]) times the path's conversions and value is its credit.
///
/// Path datasets carry no times, so the touches are one hour apart: the last channel is at the conversion, the
/// one before it 1 hour earlier, and so on (this only matters to time decay, through `half_life_ms`). Every
/// channel is a click, so `count_views` and `view_weight` have no effect here.
pub fn rule_credits_over_paths(
    model: RuleModel,
    paths: &[PathCount],
    settings: &RuleSettings,
) -> ChannelCredits {
    let mut credits = zero_credits(paths);
    let mut touches = Vec::new();
    for path in paths {
        let n = path.channels.len() as i64;
        touches.clear();
        touches.extend((0..n).map(|position| Touch {
            time_ms: (position - (n - 1)).saturating_mul(MILLIS_PER_HOUR),
            kind: TouchKind::Click,
        }));
        let shares = rule_shares(model, &touches, 0, settings);
        for (channel, share) in path.channels.iter().zip(shares) {
            credit(&mut credits, channel, path, share);
        }
    }
    credits
}

/// Shapley value credit, exact over channel sets, with v(S) = conversions (value) of paths whose channel set is a
/// subset of S.
///
/// Computed with the closed form `φ_i = Σ_{T ∋ i} R(T) / |T|` (Dalessandro et al., 2012; see the module
/// documentation): each path's conversions and value are split equally between its distinct channels. Repeats
/// and order within a path do not matter, and non-converting journeys (nulls) do not enter `v`.
pub fn shapley(paths: &[PathCount]) -> ChannelCredits {
    let mut credits = zero_credits(paths);
    let mut distinct: Vec<&str> = Vec::new();
    for path in paths {
        distinct.clear();
        distinct.extend(path.channels.iter().map(String::as_str));
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.is_empty() {
            continue;
        }
        let share = 1.0 / distinct.len() as f64;
        for channel in &distinct {
            credit(&mut credits, channel, path, share);
        }
    }
    credits
}

/// Result of the Markov model.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkovResult {
    /// Probability that a journey from the start state ends in a conversion. For a chain fitted from a dataset this
    /// equals the dataset's conversion rate, conversions / (conversions + nulls).
    pub conversion_probability: f64,
    /// Removal effect of each channel on conversions, `1 − P(conversion | channel removed) / P(conversion)`, in
    /// [0, 1]; all 0 when nothing converts.
    pub removal_effects: BTreeMap<String, f64>,
    /// Removal effect of each channel on the expected conversion value (see the module documentation); all 0
    /// when there is no value.
    pub value_removal_effects: BTreeMap<String, f64>,
    /// Total conversions and value of the dataset, split in proportion to the removal effects.
    pub credits: ChannelCredits,
}

/// First-order Markov chain attribution (states start, channels, conversion, null) with absorption probabilities
/// solved exactly: removal effect `RE(c) = 1 − P(conv | c removed) / P(conv)`, credits = total × `RE(c) / ΣRE`,
/// for conversions and for value.
///
/// Repeated consecutive channels collapse into one visit, as in ChannelAttribution's `markov_model` (order 1,
/// no self-loops); see the module documentation for the fitting, the value model and the cost. Fails on counts
/// that [`validate_paths`] rejects.
pub fn markov(paths: &[PathCount]) -> Result<MarkovResult, ModelError> {
    validate_paths(paths)?;
    let chain = Chain::fit(paths);
    let names: Vec<&str> = chain.channels.keys().copied().collect();
    let [probability, expected_value] = chain.absorb(None)?;
    let mut removal_effects = BTreeMap::new();
    let mut value_removal_effects = BTreeMap::new();
    for (index, name) in names.iter().enumerate() {
        // Channel states are numbered 1.. in name order, after the start state 0.
        let [removed_probability, removed_value] = chain.absorb(Some(index + 1))?;
        removal_effects.insert(
            (*name).to_owned(),
            removal_effect(probability, removed_probability),
        );
        value_removal_effects.insert(
            (*name).to_owned(),
            removal_effect(expected_value, removed_value),
        );
    }
    let total_conversions: f64 = chain.paths().map(|p| p.conversions).sum();
    let total_value: f64 = chain.paths().map(|p| p.value).sum();
    let conversion_sum: f64 = removal_effects.values().sum();
    let value_sum: f64 = value_removal_effects.values().sum();
    let credits = removal_effects
        .iter()
        .zip(value_removal_effects.values())
        .map(|((name, effect), value_effect)| {
            let conversions = proportional(total_conversions, *effect, conversion_sum);
            let value = proportional(total_value, *value_effect, value_sum);
            (name.clone(), (conversions, value))
        })
        .collect();
    Ok(MarkovResult {
        conversion_probability: probability,
        removal_effects,
        value_removal_effects,
        credits,
    })
}

/// A first-order Markov chain fitted on a path dataset (as [`markov`] fits it), kept to answer counterfactuals:
/// what share of the conversions survives when a *set* of channels leads to null.
pub struct MarkovChain<'a> {
    chain: Chain<'a>,
    probability: f64,
}

impl<'a> MarkovChain<'a> {
    /// Fits the chain on `paths`; fails on counts that [`validate_paths`] rejects, or when the chain cannot be
    /// solved.
    pub fn fit(paths: &'a [PathCount]) -> Result<MarkovChain<'a>, ModelError> {
        validate_paths(paths)?;
        let chain = Chain::fit(paths);
        let [probability, _] = chain.absorb_without(&[])?;
        Ok(MarkovChain { chain, probability })
    }

    /// Probability that a journey from the start state converts (the dataset's conversion rate).
    pub fn conversion_probability(&self) -> f64 {
        self.probability
    }

    /// `P(conversion | every channel of removed leads to null) / P(conversion)`, in [0, 1]: one minus the removal
    /// effect of the set, so for one channel `1 − RE(c)` of [`markov`]. Channels the chain never saw are ignored;
    /// 1 when nothing known is removed or nothing converts at all.
    pub fn survival<S: AsRef<str>>(&self, removed: &[S]) -> Result<f64, ModelError> {
        let mut states: Vec<usize> = removed
            .iter()
            .filter_map(|channel| self.chain.channels.get(channel.as_ref()).copied())
            .collect();
        states.sort_unstable();
        states.dedup();
        if states.is_empty() {
            return Ok(1.0);
        }
        let [removed_probability, _] = self.chain.absorb_without(&states)?;
        Ok(1.0 - removal_effect(self.probability, removed_probability))
    }
}

/// Shares of one conversion per touch under a data-driven model, from per-channel `weights` fitted over paths
/// (Markov removal effects, Shapley values): `channels` are the touches' channels, oldest first. Each *distinct*
/// channel of the journey gets `w(c) / Σ w` over the journey's distinct channels (a missing, negative or
/// non-finite weight counts as 0; equal shares when the sum is 0), split equally between that channel's touches,
/// as the models themselves ignore repeats (Shapley works on channel sets, Markov collapses repeated visits).
/// Same length as `channels`; sums to 1 unless `channels` is empty.
pub fn weighted_shares<S: AsRef<str>>(channels: &[S], weights: &BTreeMap<String, f64>) -> Vec<f64> {
    let mut distinct: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for channel in channels {
        let weight = weights
            .get(channel.as_ref())
            .copied()
            .filter(|w| w.is_finite() && *w > 0.0)
            .unwrap_or(0.0);
        distinct.entry(channel.as_ref()).or_insert((weight, 0)).1 += 1;
    }
    let total: f64 = distinct.values().map(|(w, _)| w).sum();
    let count = distinct.len() as f64;
    channels
        .iter()
        .map(|channel| {
            let (weight, touches) = distinct[channel.as_ref()];
            let share = if total > 0.0 {
                weight / total
            } else {
                1.0 / count
            };
            share / touches as f64
        })
        .collect()
}

/// `1 − removed / full`, clamped to [0, 1]: removing a channel can only lose conversions, so anything outside is
/// rounding; 0 when nothing converts at all.
fn removal_effect(full: f64, removed: f64) -> f64 {
    if full > 0.0 {
        (1.0 - removed / full).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// `total × part / sum`, or 0 when there is nothing to divide by.
fn proportional(total: f64, part: f64, sum: f64) -> f64 {
    if sum > 0.0 {
        total * part / sum
    } else {
        0.0
    }
}

/// Transition counts of a first-order chain. State 0 is the start, states `1..=channels.len()` the channels in
/// name order; conversion and null are kept as per-state exit counts instead of states.
struct Chain<'a> {
    source: &'a [PathCount],
    /// Channel name → state index.
    channels: BTreeMap<&'a str, usize>,
    /// `transitions[from * states + to]`: how often `from` led to `to`.
    transitions: Vec<f64>,
    /// Per state: how often it led to a conversion.
    to_conversion: Vec<f64>,
    /// Per state: total value of the conversions it led to.
    value_out: Vec<f64>,
    /// Per state: how often it led anywhere (other states, conversion or null).
    out_total: Vec<f64>,
}

impl<'a> Chain<'a> {
    fn fit(paths: &'a [PathCount]) -> Self {
        let mut channels: BTreeMap<&str, usize> = paths
            .iter()
            .flat_map(|path| &path.channels)
            .map(|channel| (channel.as_str(), 0))
            .collect();
        for (index, state) in channels.values_mut().enumerate() {
            *state = index + 1;
        }
        let states = channels.len() + 1;
        let mut chain = Chain {
            source: paths,
            transitions: vec![0.0; states * states],
            to_conversion: vec![0.0; states],
            value_out: vec![0.0; states],
            out_total: vec![0.0; states],
            channels,
        };
        for path in chain.paths() {
            let journeys = path.conversions + path.nulls;
            let mut from = 0;
            for channel in &path.channels {
                let to = chain.channels[channel.as_str()];
                // A repeat of the current channel is the same visit (no self-loops), as in ChannelAttribution.
                if to != from {
                    chain.transitions[from * states + to] += journeys;
                    chain.out_total[from] += journeys;
                    from = to;
                }
            }
            chain.to_conversion[from] += path.conversions;
            chain.value_out[from] += path.value;
            chain.out_total[from] += journeys;
        }
        chain
    }

    /// The paths that have at least one channel; the others are no journey through the chain.
    fn paths(&self) -> impl Iterator<Item = &'a PathCount> {
        self.source.iter().filter(|path| !path.channels.is_empty())
    }

    /// From the start state: the probability of ending in a conversion and the expected conversion value, with
    /// state `removed` (if any) leading straight to null.
    ///
    /// Solves `x = Q x + r` for every transient state at once, i.e. `(I − Q) x = r`, where `Q` are the
    /// transition probabilities between transient states and `r` the one-step conversion probability (value:
    /// the one-step expected value, conversions' value out of the state / everything out of it).
    fn absorb(&self, removed: Option<usize>) -> Result<[f64; 2], ModelError> {
        self.absorb_without(removed.as_slice())
    }

    /// [`Chain::absorb`] with every state of `removed` leading straight to null.
    fn absorb_without(&self, removed: &[usize]) -> Result<[f64; 2], ModelError> {
        let states = self.out_total.len();
        let mut matrix = vec![0.0; states * states];
        let mut rhs = vec![[0.0; 2]; states];
        for from in 0..states {
            matrix[from * states + from] = 1.0;
            let total = self.out_total[from];
            // A removed state and one nothing ever left (unreachable) convert nothing: x = 0.
            if removed.contains(&from) || total <= 0.0 {
                continue;
            }
            for to in 0..states {
                matrix[from * states + to] -= self.transitions[from * states + to] / total;
            }
            rhs[from] = [
                self.to_conversion[from] / total,
                self.value_out[from] / total,
            ];
        }
        let solution = solve(matrix, rhs).ok_or(ModelError::SingularChain)?;
        Ok(solution[0])
    }
}

/// Solves `A x = b` for two right-hand sides by Gaussian elimination with partial pivoting; `a` is `n × n`
/// row-major. `None` when a pivot is zero or not finite (no unique solution, or overflow).
fn solve(mut a: Vec<f64>, mut b: Vec<[f64; 2]>) -> Option<Vec<[f64; 2]>> {
    let n = b.len();
    for column in 0..n {
        let pivot_row = (column..n)
            .max_by(|&i, &j| a[i * n + column].abs().total_cmp(&a[j * n + column].abs()))?;
        let pivot = a[pivot_row * n + column];
        if pivot == 0.0 || !pivot.is_finite() {
            return None;
        }
        if pivot_row != column {
            for k in 0..n {
                a.swap(pivot_row * n + k, column * n + k);
            }
            b.swap(pivot_row, column);
        }
        for row in column + 1..n {
            let factor = a[row * n + column] / pivot;
            if factor == 0.0 {
                continue;
            }
            for k in column..n {
                a[row * n + k] -= factor * a[column * n + k];
            }
            let pivot_rhs = b[column];
            for (entry, pivot_entry) in b[row].iter_mut().zip(pivot_rhs) {
                *entry -= factor * pivot_entry;
            }
        }
    }
    for row in (0..n).rev() {
        let mut sum = b[row];
        for k in row + 1..n {
            let coefficient = a[row * n + k];
            for (entry, known) in sum.iter_mut().zip(b[k]) {
                *entry -= coefficient * known;
            }
        }
        let diagonal = a[row * n + row];
        b[row] = sum.map(|entry| entry / diagonal);
    }
    b.iter().flatten().all(|x| x.is_finite()).then_some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = MILLIS_PER_HOUR;

    fn click(time_ms: i64) -> Touch {
        Touch {
            time_ms,
            kind: TouchKind::Click,
        }
    }

    fn view(time_ms: i64) -> Touch {
        Touch {
            time_ms,
            kind: TouchKind::View,
        }
    }

    /// `n` clicks one hour apart, the last at `conversion_ms`.
    fn clicks(n: i64, conversion_ms: i64) -> Vec<Touch> {
        (0..n)
            .map(|i| click(conversion_ms - (n - 1 - i) * HOUR))
            .collect()
    }

    fn hourly() -> RuleSettings {
        RuleSettings {
            half_life_ms: HOUR,
            ..RuleSettings::default()
        }
    }

    fn assert_close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{actual:?} vs {expected:?}");
        }
    }

    fn shares(model: RuleModel, touches: &[Touch], settings: &RuleSettings) -> Vec<f64> {
        let conversion = touches.last().map_or(0, |t| t.time_ms);
        rule_shares(model, touches, conversion, settings)
    }

    /// A deterministic xorshift64* generator, so random cases are the same on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Up to 15 paths of up to 6 touches over five channels, with random conversions, values and nulls.
    fn random_paths(rng: &mut Rng) -> Vec<PathCount> {
        let alphabet = ["a", "b", "c", "d", "e"];
        (0..1 + rng.below(15))
            .map(|_| PathCount {
                channels: (0..1 + rng.below(6))
                    .map(|_| alphabet[rng.below(5) as usize].to_owned())
                    .collect(),
                conversions: rng.below(5) as f64,
                value: rng.unit() * 50.0,
                nulls: rng.below(20) as f64,
            })
            .collect()
    }

    fn path(channels: &str, conversions: f64, value: f64, nulls: f64) -> PathCount {
        PathCount {
            channels: parse_path(channels, ">"),
            conversions,
            value,
            nulls,
        }
    }

    #[test]
    fn names_match_serde_names_and_all_lists_each_model_once() {
        for model in RuleModel::ALL {
            let json = serde_json::to_string(&model).unwrap();
            assert_eq!(json, format!("\"{}\"", model.name()));
        }
        let mut all = RuleModel::ALL.to_vec();
        all.dedup();
        assert_eq!(all.len(), 5);
        assert_eq!(serde_json::to_string(&TouchKind::View).unwrap(), "\"view\"");
    }

    #[test]
    fn settings_default_per_field_and_validate() {
        let empty: RuleSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, RuleSettings::default());
        assert_eq!(empty.half_life_ms, 168 * HOUR);
        assert!(empty.count_views);
        assert_eq!(empty.view_weight, 1.0);
        let partial: RuleSettings = serde_json::from_str(r#"{"view_weight": 0.25}"#).unwrap();
        assert_eq!(partial.view_weight, 0.25);
        assert_eq!(partial.half_life_ms, 168 * HOUR);
        assert_eq!(empty.validate(), Ok(()));

        let zero = RuleSettings {
            half_life_ms: 0,
            ..RuleSettings::default()
        };
        assert_eq!(
            zero.validate(),
            Err(ModelError::HalfLifeNotPositive { half_life_ms: 0 })
        );
        for bad in [-0.5, f64::INFINITY, f64::NAN] {
            let settings = RuleSettings {
                view_weight: bad,
                ..RuleSettings::default()
            };
            assert!(matches!(
                settings.validate(),
                Err(ModelError::InvalidViewWeight { .. })
            ));
        }
        let zero_weight = RuleSettings {
            view_weight: 0.0,
            ..RuleSettings::default()
        };
        assert_eq!(zero_weight.validate(), Ok(()));
    }

    #[test]
    fn one_touch_gets_everything_under_every_model() {
        for model in RuleModel::ALL {
            assert_close(&shares(model, &clicks(1, 0), &hourly()), &[1.0]);
        }
    }

    #[test]
    fn two_touches() {
        let touches = clicks(2, 10 * HOUR);
        let s = hourly();
        assert_close(&shares(RuleModel::LastTouch, &touches, &s), &[0.0, 1.0]);
        assert_close(&shares(RuleModel::FirstTouch, &touches, &s), &[1.0, 0.0]);
        assert_close(&shares(RuleModel::Linear, &touches, &s), &[0.5, 0.5]);
        assert_close(&shares(RuleModel::PositionBased, &touches, &s), &[0.5, 0.5]);
        // Δt = 1 h and 0 with H = 1 h: weights 1/2 and 1.
        assert_close(
            &shares(RuleModel::TimeDecay, &touches, &s),
            &[1.0 / 3.0, 2.0 / 3.0],
        );
    }

    #[test]
    fn three_touches() {
        let touches = clicks(3, 0);
        let s = hourly();
        assert_close(
            &shares(RuleModel::LastTouch, &touches, &s),
            &[0.0, 0.0, 1.0],
        );
        assert_close(
            &shares(RuleModel::FirstTouch, &touches, &s),
            &[1.0, 0.0, 0.0],
        );
        let third = 1.0 / 3.0;
        assert_close(&shares(RuleModel::Linear, &touches, &s), &[third; 3]);
        assert_close(
            &shares(RuleModel::PositionBased, &touches, &s),
            &[0.4, 0.2, 0.4],
        );
        // Weights 1/4, 1/2, 1 → sum 7/4.
        assert_close(
            &shares(RuleModel::TimeDecay, &touches, &s),
            &[1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0],
        );
    }

    #[test]
    fn five_touches() {
        let touches = clicks(5, 1_700_000_000_000);
        let s = hourly();
        assert_close(
            &shares(RuleModel::LastTouch, &touches, &s),
            &[0., 0., 0., 0., 1.],
        );
        assert_close(
            &shares(RuleModel::FirstTouch, &touches, &s),
            &[1., 0., 0., 0., 0.],
        );
        assert_close(&shares(RuleModel::Linear, &touches, &s), &[0.2; 5]);
        let middle = 0.2 / 3.0;
        assert_close(
            &shares(RuleModel::PositionBased, &touches, &s),
            &[0.4, middle, middle, middle, 0.4],
        );
        // Weights 1/16, 1/8, 1/4, 1/2, 1 → sum 31/16.
        assert_close(
            &shares(RuleModel::TimeDecay, &touches, &s),
            &[1. / 31., 2. / 31., 4. / 31., 8. / 31., 16. / 31.],
        );
    }

    #[test]
    fn time_decay_uses_the_gap_to_the_conversion_and_the_default_half_life() {
        // One touch a half-life (168 h) before the conversion, one 336 h before: weights 1/2 and 1/4.
        let conversion = 1_000 * HOUR;
        let touches = [
            click(conversion - 336 * HOUR),
            click(conversion - 168 * HOUR),
        ];
        let got = rule_shares(
            RuleModel::TimeDecay,
            &touches,
            conversion,
            &RuleSettings::default(),
        );
        assert_close(&got, &[1.0 / 3.0, 2.0 / 3.0]);
        // 30 minutes and 0 before the conversion with H = 1 h: weights 2^-0.5 and 1.
        let touches = [click(conversion - HOUR / 2), click(conversion)];
        let got = rule_shares(RuleModel::TimeDecay, &touches, conversion, &hourly());
        let w = 0.5f64.sqrt();
        assert_close(&got, &[w / (1.0 + w), 1.0 / (1.0 + w)]);
    }

    #[test]
    fn time_decay_of_very_old_touches_does_not_underflow_to_nan() {
        // Every raw weight 0.5^(Δt/H) underflows to 0 here (Δt/H > 1e5); the newest touch takes it all.
        let touches = [click(0), click(1_000 * HOUR)];
        let got = rule_shares(RuleModel::TimeDecay, &touches, 200_000 * HOUR, &hourly());
        assert_close(&got, &[0.0, 1.0]);
        // Touches at the same instant share equally.
        let touches = [click(5), click(5)];
        let got = rule_shares(RuleModel::TimeDecay, &touches, i64::MAX, &hourly());
        assert_close(&got, &[0.5, 0.5]);
    }

    #[test]
    fn views_are_skipped_when_not_counted() {
        let touches = [
            view(0),
            click(HOUR),
            view(2 * HOUR),
            click(3 * HOUR),
            view(4 * HOUR),
        ];
        let s = RuleSettings {
            count_views: false,
            half_life_ms: HOUR,
            view_weight: 3.0,
        };
        let got = |model| shares(model, &touches, &s);
        assert_close(&got(RuleModel::LastTouch), &[0., 0., 0., 1., 0.]);
        assert_close(&got(RuleModel::FirstTouch), &[0., 1., 0., 0., 0.]);
        assert_close(&got(RuleModel::Linear), &[0., 0.5, 0., 0.5, 0.]);
        assert_close(&got(RuleModel::PositionBased), &[0., 0.5, 0., 0.5, 0.]);
        // Clicks 3 h and 1 h before the conversion (at 4 h): weights 1/8 and 1/2.
        assert_close(&got(RuleModel::TimeDecay), &[0., 0.2, 0., 0.8, 0.]);
        // Counted, the views take part like clicks (weight 1).
        let counted = RuleSettings {
            count_views: true,
            view_weight: 1.0,
            ..s
        };
        assert_close(
            &shares(RuleModel::LastTouch, &touches, &counted),
            &[0., 0., 0., 0., 1.],
        );
    }

    #[test]
    fn no_eligible_touch_gives_all_zero() {
        let only_views = [view(0), view(HOUR)];
        let s = RuleSettings {
            count_views: false,
            ..RuleSettings::default()
        };
        for model in RuleModel::ALL {
            assert_eq!(shares(model, &only_views, &s), vec![0.0, 0.0]);
            assert!(rule_shares(model, &[], 0, &s).is_empty());
        }
    }

    #[test]
    fn view_weight_scales_views_then_renormalises() {
        let touches = [view(0), click(HOUR), click(2 * HOUR)];
        let s = RuleSettings {
            view_weight: 0.5,
            ..hourly()
        };
        // Linear 1/3 each → 1/6, 1/3, 1/3 → / (5/6).
        assert_close(&shares(RuleModel::Linear, &touches, &s), &[0.2, 0.4, 0.4]);
        // Position based .4 .2 .4 → .2 .2 .4 → / .8.
        assert_close(
            &shares(RuleModel::PositionBased, &touches, &s),
            &[0.25, 0.25, 0.5],
        );
        // First touch is a view: one touch holds everything, weighting cannot move it.
        assert_close(
            &shares(RuleModel::FirstTouch, &touches, &s),
            &[1.0, 0.0, 0.0],
        );
        // Weight 0 hands the views' part to the clicks.
        let zero = RuleSettings {
            view_weight: 0.0,
            ..hourly()
        };
        let touches = [view(0), click(HOUR), view(2 * HOUR), view(3 * HOUR)];
        assert_close(
            &shares(RuleModel::PositionBased, &touches, &zero),
            &[0.0, 1.0, 0.0, 0.0],
        );
        // ...unless only views earned: then the unweighted shares stand.
        assert_close(
            &shares(RuleModel::LastTouch, &touches, &zero),
            &[0.0, 0.0, 0.0, 1.0],
        );
        assert_close(
            &shares(RuleModel::Linear, &[view(0), view(1)], &zero),
            &[0.5, 0.5],
        );
    }

    #[test]
    fn invalid_settings_fall_back_without_nan() {
        let touches = [view(0), click(HOUR), click(HOUR)];
        for half_life_ms in [0, -HOUR, i64::MIN] {
            let s = RuleSettings {
                half_life_ms,
                ..RuleSettings::default()
            };
            // The limit of a tiny half-life: the most recent touches share everything.
            assert_close(
                &shares(RuleModel::TimeDecay, &touches, &s),
                &[0.0, 0.5, 0.5],
            );
        }
        for view_weight in [f64::NAN, f64::INFINITY, -1.0] {
            let s = RuleSettings {
                view_weight,
                ..RuleSettings::default()
            };
            let third = 1.0 / 3.0;
            assert_close(&shares(RuleModel::Linear, &touches, &s), &[third; 3]);
        }
    }

    #[test]
    fn extreme_instants_neither_panic_nor_produce_nan() {
        let touches = [click(i64::MIN), view(0), click(i64::MAX)];
        for model in RuleModel::ALL {
            for conversion in [i64::MIN, 0, i64::MAX] {
                let got = rule_shares(model, &touches, conversion, &RuleSettings::default());
                assert!(got.iter().all(|s| (0.0..=1.0).contains(s)), "{got:?}");
                assert!((got.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn random_journeys_have_shares_in_unit_range_summing_to_one() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for _ in 0..2_000 {
            let n = rng.below(12) as usize;
            let mut time = rng.below(1 << 40) as i64;
            let touches: Vec<Touch> = (0..n)
                .map(|_| {
                    time += rng.below(30 * 24 * HOUR as u64) as i64;
                    if rng.below(2) == 0 {
                        view(time)
                    } else {
                        click(time)
                    }
                })
                .collect();
            let conversion = time + rng.below(24 * HOUR as u64) as i64;
            let settings = RuleSettings {
                half_life_ms: 1 + rng.below(400 * HOUR as u64) as i64,
                count_views: rng.below(3) != 0,
                view_weight: [0.0, 0.3, 1.0, 2.5][rng.below(4) as usize],
            };
            let eligible = touches
                .iter()
                .any(|t| settings.count_views || t.kind == TouchKind::Click);
            for model in RuleModel::ALL {
                let got = rule_shares(model, &touches, conversion, &settings);
                assert_eq!(got.len(), n);
                assert!(got.iter().all(|s| (0.0..=1.0).contains(s)), "{got:?}");
                let total: f64 = got.iter().sum();
                if eligible {
                    assert!((total - 1.0).abs() < 1e-12, "{model:?} {got:?}");
                } else {
                    assert_eq!(total, 0.0);
                }
                if !settings.count_views {
                    for (share, touch) in got.iter().zip(&touches) {
                        if touch.kind == TouchKind::View {
                            assert_eq!(*share, 0.0);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn parse_path_trims_and_drops_empty_channels() {
        assert_eq!(parse_path(" a > b>c > ", ">"), ["a", "b", "c"]);
        assert_eq!(parse_path("a > > b", " > "), ["a", "> b"]);
        assert_eq!(parse_path("a >  > b", " > "), ["a", "b"]);
        assert_eq!(
            parse_path("paid search|email", "|"),
            ["paid search", "email"]
        );
        assert!(parse_path("  ", ">").is_empty());
        assert_eq!(parse_path(" a>b ", ""), ["a>b"]);
        assert!(parse_path("", "").is_empty());
    }

    #[test]
    fn rule_credits_over_paths_by_hand() {
        let paths = [
            path("a > b", 3.0, 30.0, 7.0),
            path("b > a > c", 2.0, 4.0, 0.0),
            path("d", 0.0, 0.0, 5.0),
            path("", 9.0, 9.0, 9.0),
        ];
        let settings = hourly();
        let get = |model| rule_credits_over_paths(model, &paths, &settings);
        let expect = |pairs: &[(&str, f64, f64)]| -> ChannelCredits {
            pairs
                .iter()
                .map(|(c, conv, value)| (c.to_string(), (*conv, *value)))
                .collect()
        };
        assert_eq!(
            get(RuleModel::LastTouch),
            expect(&[("a", 0., 0.), ("b", 3., 30.), ("c", 2., 4.), ("d", 0., 0.)])
        );
        assert_eq!(
            get(RuleModel::FirstTouch),
            expect(&[("a", 3., 30.), ("b", 2., 4.), ("c", 0., 0.), ("d", 0., 0.)])
        );
        let close = |got: ChannelCredits, want: ChannelCredits| {
            assert_eq!(got.len(), want.len());
            for ((gc, (g1, g2)), (wc, (w1, w2))) in got.iter().zip(&want) {
                assert_eq!(gc, wc);
                assert!(
                    (g1 - w1).abs() < 1e-12 && (g2 - w2).abs() < 1e-12,
                    "{got:?}"
                );
            }
        };
        close(
            get(RuleModel::Linear),
            expect(&[
                ("a", 1.5 + 2. / 3., 15. + 4. / 3.),
                ("b", 1.5 + 2. / 3., 15. + 4. / 3.),
                ("c", 2. / 3., 4. / 3.),
                ("d", 0., 0.),
            ]),
        );
        // Path 2 is b (2 h before), a (1 h), c (0 h): weights 1/4, 1/2, 1 over 7/4. Path 1: a 1/3, b 2/3.
        close(
            get(RuleModel::TimeDecay),
            expect(&[
                ("a", 1. + 2. * 2. / 7., 10. + 4. * 2. / 7.),
                ("b", 2. + 2. / 7., 20. + 4. / 7.),
                ("c", 2. * 4. / 7., 4. * 4. / 7.),
                ("d", 0., 0.),
            ]),
        );
        close(
            get(RuleModel::PositionBased),
            expect(&[
                ("a", 1.5 + 0.4, 15. + 0.8),
                ("b", 1.5 + 0.8, 15. + 1.6),
                ("c", 0.8, 1.6),
                ("d", 0., 0.),
            ]),
        );
    }

    /// Shapley values by the definition: the average marginal contribution over coalitions,
    /// `Σ_{S ⊆ N∖{i}} |S|! (n−|S|−1)! / n! · (v(S ∪ {i}) − v(S))`.
    fn brute_force_shapley(paths: &[PathCount]) -> ChannelCredits {
        let names: Vec<String> = zero_credits(paths).into_keys().collect();
        let n = names.len();
        let mask_of = |p: &PathCount| {
            p.channels.iter().fold(0usize, |m, c| {
                m | 1 << names.iter().position(|x| x == c).unwrap()
            })
        };
        let worth = |coalition: usize| {
            paths
                .iter()
                .filter(|p| !p.channels.is_empty() && mask_of(p) & !coalition == 0)
                .fold((0.0, 0.0), |(c, v), p| (c + p.conversions, v + p.value))
        };
        let factorial = |k: usize| (1..=k).map(|x| x as f64).product::<f64>();
        let mut out = ChannelCredits::new();
        for (i, name) in names.iter().enumerate() {
            let (mut conversions, mut value) = (0.0, 0.0);
            for coalition in 0..1usize << n {
                if coalition & 1 << i != 0 {
                    continue;
                }
                let size = coalition.count_ones() as usize;
                let weight = factorial(size) * factorial(n - size - 1) / factorial(n);
                let (with_c, with_v) = worth(coalition | 1 << i);
                let (without_c, without_v) = worth(coalition);
                conversions += weight * (with_c - without_c);
                value += weight * (with_v - without_v);
            }
            out.insert(name.clone(), (conversions, value));
        }
        out
    }

    #[test]
    fn shapley_closed_form_equals_coalition_enumeration() {
        let by_hand = [path("a > b", 2.0, 6.0, 1.0), path("a", 1.0, 1.0, 0.0)];
        let got = shapley(&by_hand);
        assert_eq!(got["a"], (2.0, 4.0));
        assert_eq!(got["b"], (1.0, 3.0));
        assert_eq!(brute_force_shapley(&by_hand), got);

        let mut rng = Rng(0xfeed_beef_0000_0042);
        let alphabet = ["a", "b", "c", "d", "e", "f"];
        for _ in 0..200 {
            let paths: Vec<PathCount> = (0..1 + rng.below(8))
                .map(|_| {
                    let channels = (0..rng.below(6))
                        .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize].to_owned())
                        .collect();
                    PathCount {
                        channels,
                        conversions: rng.below(10) as f64,
                        value: rng.unit() * 100.0,
                        nulls: rng.below(10) as f64,
                    }
                })
                .collect();
            let got = shapley(&paths);
            let want = brute_force_shapley(&paths);
            assert_eq!(got.len(), want.len());
            for ((gc, (g1, g2)), (wc, (w1, w2))) in got.iter().zip(&want) {
                assert_eq!(gc, wc);
                assert!(
                    (g1 - w1).abs() < 1e-9 && (g2 - w2).abs() < 1e-9,
                    "{paths:?}"
                );
            }
        }
    }

    fn assert_near(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-12, "{actual} vs {expected}");
    }

    #[test]
    fn markov_on_a_chain_solved_by_hand() {
        // start→a 2/3, start→b 1/3, b→a 1, a→conversion 2/3, a→null 1/3 (the repeat of b is one visit).
        let paths = [path("a", 1.0, 10.0, 1.0), path("b > b > a", 1.0, 20.0, 0.0)];
        let result = markov(&paths).unwrap();
        assert_near(result.conversion_probability, 2.0 / 3.0);
        // Without a nothing converts; without b the third of journeys through b is lost: 4/9 instead of 2/3.
        assert_near(result.removal_effects["a"], 1.0);
        assert_near(result.removal_effects["b"], 1.0 / 3.0);
        assert_near(result.credits["a"].0, 1.5);
        assert_near(result.credits["b"].0, 0.5);
        // Every conversion happens at a, worth (10 + 20) / 2 on average: the value effects equal the others.
        assert_near(result.value_removal_effects["a"], 1.0);
        assert_near(result.value_removal_effects["b"], 1.0 / 3.0);
        assert_near(result.credits["a"].1, 22.5);
        assert_near(result.credits["b"].1, 7.5);
    }

    #[test]
    fn markov_solves_cycles_exactly() {
        // a→b→a: x_a = 1/3 + x_b/3 and x_b = 1/3 + x_a/3, so x_a = x_b = 1/2; without b, x_a = 1/3.
        let paths = [
            path("a > b > a", 1.0, 1.0, 0.0),
            path("a", 0.0, 0.0, 1.0),
            path("b", 1.0, 3.0, 1.0),
        ];
        let result = markov(&paths).unwrap();
        assert_near(result.conversion_probability, 0.5);
        assert_near(result.removal_effects["a"], 2.0 / 3.0);
        assert_near(result.removal_effects["b"], 2.0 / 3.0);
        assert_near(result.credits["a"].0, 1.0);
        assert_near(result.credits["b"].0, 1.0);
        // Value: a conversion at a is worth 1, at b 3, so y_a = 1/3·1 + y_b/3 and y_b = 1/3·3 + y_a/3: y_a = 3/4,
        // y_b = 5/4, E = 1 (= 4 value / 4 journeys). Without b: y_a = 1/3, E = 1/6; without a: y_b = 1, E = 1/2.
        assert_near(result.value_removal_effects["a"], 0.5);
        assert_near(result.value_removal_effects["b"], 5.0 / 6.0);
        assert_near(result.credits["a"].1, 1.5);
        assert_near(result.credits["b"].1, 2.5);
    }

    #[test]
    fn markov_conversion_probability_is_the_conversion_rate_and_effects_lie_in_unit_range() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for _ in 0..100 {
            let paths = random_paths(&mut rng);
            let conversions: f64 = paths.iter().map(|p| p.conversions).sum();
            let journeys: f64 = paths.iter().map(|p| p.conversions + p.nulls).sum();
            let result = markov(&paths).unwrap();
            let rate = if journeys > 0.0 {
                conversions / journeys
            } else {
                0.0
            };
            assert!((result.conversion_probability - rate).abs() < 1e-12);
            for effect in result
                .removal_effects
                .values()
                .chain(result.value_removal_effects.values())
            {
                assert!((0.0..=1.0).contains(effect));
            }
            let credited: f64 = result.credits.values().map(|c| c.0).sum();
            if result.removal_effects.values().any(|e| *e > 0.0) {
                assert!((credited - conversions).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn markov_survival_of_a_set_solved_by_hand() {
        // start→a 2/5, start→b 1/5, start→c 2/5; a→c and b→c always; c→conversion 3/5, c→null 2/5.
        let paths = [
            path("a > c", 1.0, 5.0, 1.0),
            path("b > c", 1.0, 5.0, 0.0),
            path("c", 1.0, 5.0, 1.0),
        ];
        let chain = MarkovChain::fit(&paths).unwrap();
        assert_near(chain.conversion_probability(), 3.0 / 5.0);
        // Without a and b only the journeys starting at c convert: 2/5 · 3/5 of 3/5.
        assert_near(chain.survival(&["a", "b"]).unwrap(), 2.0 / 5.0);
        assert_near(chain.survival(&["b", "a", "a"]).unwrap(), 2.0 / 5.0);
        assert_near(chain.survival(&["a"]).unwrap(), 3.0 / 5.0);
        assert_near(chain.survival(&["b"]).unwrap(), 4.0 / 5.0);
        assert_near(chain.survival(&["c", "a"]).unwrap(), 0.0);
        // A channel the chain never saw, or nothing, removes nothing.
        assert_eq!(chain.survival(&["z"]).unwrap(), 1.0);
        assert_eq!(chain.survival::<&str>(&[]).unwrap(), 1.0);
    }

    #[test]
    fn markov_survival_of_one_channel_is_one_minus_its_removal_effect() {
        let mut rng = Rng(0x5a5a_0000_1111_2222);
        for _ in 0..100 {
            let paths = random_paths(&mut rng);
            let result = markov(&paths).unwrap();
            let chain = MarkovChain::fit(&paths).unwrap();
            assert_eq!(
                chain.conversion_probability(),
                result.conversion_probability
            );
            for (channel, effect) in &result.removal_effects {
                let survival = chain.survival(&[channel]).unwrap();
                assert!((survival - (1.0 - effect)).abs() < 1e-12, "{channel}");
            }
            // Removing more never keeps more.
            let all: Vec<&String> = result.removal_effects.keys().collect();
            let everything = chain.survival(&all).unwrap();
            assert!(everything <= 1e-12 || result.conversion_probability == 0.0);
        }
    }

    #[test]
    fn weighted_shares_split_per_distinct_channel() {
        let weights: BTreeMap<String, f64> = [
            ("a".to_owned(), 3.0),
            ("b".to_owned(), 1.0),
            ("z".to_owned(), 0.0),
        ]
        .into_iter()
        .collect();
        // a earns 3/4, split between its two touches; b 1/4.
        let got = weighted_shares(&["a", "b", "a"], &weights);
        let want = [0.375, 0.25, 0.375];
        for (g, w) in got.iter().zip(want) {
            assert_near(*g, w);
        }
        // Unknown and zero weights earn nothing, unless nothing has weight: then equal per channel.
        assert_eq!(weighted_shares(&["a", "q"], &weights), [1.0, 0.0]);
        assert_eq!(
            weighted_shares(&["z", "q", "q"], &weights),
            [0.5, 0.25, 0.25]
        );
        assert!(weighted_shares::<&str>(&[], &weights).is_empty());
    }

    #[test]
    fn markov_with_no_conversion_credits_nothing() {
        let result = markov(&[path("a > b", 0.0, 0.0, 4.0)]).unwrap();
        assert_eq!(result.conversion_probability, 0.0);
        assert_eq!(result.removal_effects["a"], 0.0);
        assert_eq!(result.credits["b"], (0.0, 0.0));
    }

    #[test]
    fn markov_rejects_invalid_counts() {
        assert_eq!(
            markov(&[path("a", 1.0, 1.0, 0.0), path("b", 1.0, -2.0, 0.0)]),
            Err(ModelError::InvalidCount {
                index: 1,
                field: "value",
                value: -2.0
            })
        );
        assert!(matches!(
            markov(&[path("a", f64::NAN, 1.0, 0.0)]),
            Err(ModelError::InvalidCount {
                field: "conversions",
                ..
            })
        ));
        assert_eq!(
            markov(&[path("a > b", 1e308, 0.0, 1e308)]),
            Err(ModelError::CountsOverflow)
        );
    }

    #[test]
    fn solver_reports_singular_systems_and_solves_with_pivoting() {
        assert_eq!(solve(vec![1.0, 2.0, 2.0, 4.0], vec![[1.0, 0.0]; 2]), None);
        // A zero on the diagonal needs a row swap: [[0, 1], [1, 0]] x = [2, 3] → x = [3, 2].
        assert_eq!(
            solve(vec![0.0, 1.0, 1.0, 0.0], vec![[2.0, 1.0], [3.0, 5.0]]),
            Some(vec![[3.0, 5.0], [2.0, 1.0]])
        );
    }
}
