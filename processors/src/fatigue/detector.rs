//! Per-creative fatigue state and maths: hourly series, baseline, Bernoulli CUSUM, Poisson decay fit, score,
//! status and days remaining. Pure (no I/O, no clock); see the [module overview](super) for the method.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One hour of event time in milliseconds; the series is bucketed by epoch-aligned UTC hours.
pub const HOUR_MS: i64 = 3_600_000;
const DAY_MS: f64 = 86_400_000.0;
/// At most this many hours are held unsettled (open, or closed but still correctable) at once. A caller that
/// advances as its watermark does holds its grace and retention's worth; catching up on a backlog, one input can
/// run days ahead of another (a partition of clicks read to its end before the impressions of the same hours),
/// and its events must still land in their own hours, so the cap is five weeks. It only keeps the state bounded
/// if a caller stops advancing.
pub const MAX_PENDING_HOURS: usize = 35 * 24;
/// The reach sketch has `2^REACH_SKETCH_PRECISION` registers: 1,024, a relative standard error of about 3.3 %.
/// Part of the serialized state, so changing it invalidates stored states.
pub const REACH_SKETCH_PRECISION: u32 = 10;
const REACH_REGISTERS: usize = 1 << REACH_SKETCH_PRECISION;
/// Hash bits left for the rank after the register index; ranks are `1..=RANK_BITS + 1`.
const RANK_BITS: u32 = 64 - REACH_SKETCH_PRECISION;
/// Largest CTR the CUSUM accepts as a baseline: `ln(1 - p0)` must stay finite even if a creative logs more
/// clicks than impressions (clicks joined to the wrong creative upstream).
const MAX_CUSUM_CTR: f64 = 0.999;
/// Newton iterations allowed for the Poisson fit; it converges in under ten on well-posed data.
const MAX_FIT_ITERATIONS: usize = 100;
/// The fit has converged when no parameter moves by more than this, relative to `1 + |parameter|`.
const FIT_TOLERANCE: f64 = 1e-11;
/// The two-sided 95 % normal quantile, for the days-remaining interval.
const Z_95: f64 = 1.959_963_984_540_054;

/// Why a [`FatigueConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FatigueError {
    /// A field is outside its valid range.
    #[error("fatigue config: {field} must be {requirement}, got {value}")]
    InvalidConfig {
        /// The field name, as in the serialized config.
        field: &'static str,
        /// The valid range, in words.
        requirement: &'static str,
        /// The rejected value (integers converted to `f64`).
        value: f64,
    },
}

/// Why [`fit_poisson_decay`] could not fit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// A fit of two parameters needs at least two points.
    #[error("a Poisson decay fit needs at least 2 points, got {0}")]
    TooFewPoints(usize),
    /// A point has no impressions (its offset `ln(impressions)` is undefined) or a non-finite exposure.
    #[error("point {index} is invalid: impressions must be positive and exposure finite")]
    InvalidPoint {
        /// Zero-based position of the point in the input.
        index: usize,
    },
    /// Without clicks the intercept's estimate is minus infinity.
    #[error("the points have no clicks, so the CTR level cannot be estimated")]
    NoClicks,
    /// Every point has the same exposure, so the slope is not identified.
    #[error("every point has the same exposure, so the decay rate cannot be estimated")]
    NoExposureSpread,
    /// Newton's method did not converge, which happens when the maximum-likelihood estimate does not exist
    /// (e.g. all clicks at the lowest exposure and none elsewhere: the slope runs to minus infinity).
    #[error("the Poisson fit did not converge (the data may not determine a finite decay rate)")]
    NotConverged,
}

/// Tuning of the fatigue detector. Every field has a default (`#[serde(default)]`), so a partial JSON object
/// overrides only what it names. Changing a field changes how new hours are assessed; stored series stay valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FatigueConfig {
    /// Hours of event time, from the creative's first closed hour, that form its own baseline. The baseline
    /// grows past this until it also holds `baseline_min_impressions` and `baseline_min_clicks`. Default 24:
    /// a full day, so the time-of-day mix of the baseline matches the later comparisons.
    pub baseline_hours: u32,
    /// Impressions the baseline needs at least. Default 2,000.
    pub baseline_min_impressions: u64,
    /// Clicks the baseline needs at least. Its CTR has a relative standard error of about `1/sqrt(clicks)`, and
    /// an over-estimated baseline reads as a decline later; `baseline_margin` absorbs that error in the CUSUM,
    /// and the decay test does not use the baseline at all, while a higher minimum would delay the baseline of
    /// low-traffic creatives past their fatigue onset (with 100, creatives with about a hundred clicks a week
    /// were never assessed). Default 30 (18 %).
    pub baseline_min_clicks: u64,
    /// How many standard errors the CUSUM's reference CTR sits below the baseline CTR: it compares hours with
    /// `p0 · (1 − z/sqrt(baseline clicks))`, a lower confidence bound of the baseline, so that a baseline that
    /// came out high by chance does not make a steady creative drift towards an alarm. Default 1.
    pub baseline_margin: f64,
    /// The decline the CUSUM is designed to detect: a drop of CTR from the baseline `p0` to `(1 - d)·p0`. It
    /// accumulates evidence whenever CTR runs below about `(1 - d/2)·p0`. Default 0.2.
    pub design_decline: f64,
    /// CUSUM decision threshold `h` on the log-likelihood ratio: alarm when the statistic exceeds it. Higher
    /// means fewer false alarms and later detection: with the reference at the true CTR, the mean number of
    /// hours with traffic before a false alarm is at least `e^h`. Default 10 (22,026 hours).
    pub cusum_threshold: f64,
    /// α of the decay test: the bound on the probability that a creative whose CTR does not depend on its
    /// exposure is ever flagged by the test, over its whole life (a time-uniform bound, so hourly looks need no
    /// correction). Lower means fewer false alarms and later detection. Default 0.05.
    pub decay_test_alpha: f64,
    /// ρ of the decay test's normal-mixture boundary, in the units of the test's information (clicks times
    /// squared exposure): its boundary is tightest, relative to the information, around this much evidence.
    /// Default 30, about what a creative with a few hundred clicks has gathered a day after its exposure began
    /// to grow.
    pub decay_test_mixture: f64,
    /// CTR decline (as a share of the baseline) at which the score reaches 1; the score is
    /// `clamp(decline / score_full_decline, 0, 1)`. Default 0.5.
    pub score_full_decline: f64,
    /// Score from which a creative is `limited` even without a detected change. Default 0.3 (a 15 % decline
    /// at the default scale).
    pub limited_score: f64,
    /// Score a detected change needs to make the creative `fatigued`; a detected change with a lower score is
    /// `limited`. Default 0.4 (a 20 % decline at the default scale).
    pub fatigued_score: f64,
    /// θ: days remaining count until the fitted CTR falls below `θ · baseline`. Default 0.5.
    pub remaining_share: f64,
    /// Closed hourly points kept per creative (the fit's and windows' history); older ones are dropped, which
    /// bounds the state. Default 168 (a week).
    pub max_points: usize,
    /// Consecutive hours are pooled into one fit point until it has this many impressions, so quiet night
    /// hours do not add near-empty points. Default 200.
    pub min_fit_point_impressions: u64,
    /// Pooled points the decay fit needs at least. Default 6.
    pub min_fit_points: usize,
    /// Clicks the decay fit needs at least. Default 30.
    pub min_fit_clicks: u64,
    /// Hours of recent points whose pooled CTR is the current CTR when there is no decay fit, and whose cost
    /// per click is the current one. Default 24 (a whole day, so time-of-day effects cancel).
    pub current_window_hours: u32,
    /// Hours of recent points over which exposure growth per day is measured for days remaining. Default 24.
    pub growth_window_hours: u32,
    /// Days remaining are capped here, also when the interval is unbounded (the slower-decay end of the
    /// interval is not declining at all). Default 365.
    pub max_days_remaining: f64,
}

impl Default for FatigueConfig {
    fn default() -> Self {
        Self {
            baseline_hours: 24,
            baseline_min_impressions: 2_000,
            baseline_min_clicks: 30,
            baseline_margin: 1.0,
            design_decline: 0.2,
            cusum_threshold: 10.0,
            decay_test_alpha: 0.05,
            decay_test_mixture: 30.0,
            score_full_decline: 0.5,
            limited_score: 0.3,
            fatigued_score: 0.4,
            remaining_share: 0.5,
            max_points: 168,
            min_fit_point_impressions: 200,
            min_fit_points: 6,
            min_fit_clicks: 30,
            current_window_hours: 24,
            growth_window_hours: 24,
            max_days_remaining: 365.0,
        }
    }
}

/// Upper bound of [`FatigueConfig::max_points`], so a configuration cannot make the state unbounded in practice.
pub const MAX_POINTS_LIMIT: usize = 24 * 366;

impl FatigueConfig {
    /// Checks every field's range. [`CreativeSeries::advance`] assumes a valid config: with an invalid
    /// one its outputs stay finite but are meaningless.
    pub fn validate(&self) -> Result<(), FatigueError> {
        fn check(
            ok: bool,
            field: &'static str,
            requirement: &'static str,
            value: f64,
        ) -> Result<(), FatigueError> {
            if ok {
                Ok(())
            } else {
                Err(FatigueError::InvalidConfig {
                    field,
                    requirement,
                    value,
                })
            }
        }
        let open_unit = |x: f64| x > 0.0 && x < 1.0;
        check(
            self.baseline_hours >= 1,
            "baseline_hours",
            "at least 1",
            f64::from(self.baseline_hours),
        )?;
        check(
            self.baseline_min_impressions >= 1,
            "baseline_min_impressions",
            "at least 1",
            self.baseline_min_impressions as f64,
        )?;
        check(
            self.baseline_min_clicks >= 1,
            "baseline_min_clicks",
            "at least 1",
            self.baseline_min_clicks as f64,
        )?;
        check(
            self.baseline_margin.is_finite() && self.baseline_margin >= 0.0,
            "baseline_margin",
            "finite and not negative",
            self.baseline_margin,
        )?;
        check(
            open_unit(self.design_decline),
            "design_decline",
            "in (0, 1)",
            self.design_decline,
        )?;
        check(
            self.cusum_threshold.is_finite() && self.cusum_threshold > 0.0,
            "cusum_threshold",
            "positive and finite",
            self.cusum_threshold,
        )?;
        check(
            open_unit(self.decay_test_alpha),
            "decay_test_alpha",
            "in (0, 1)",
            self.decay_test_alpha,
        )?;
        check(
            self.decay_test_mixture.is_finite() && self.decay_test_mixture > 0.0,
            "decay_test_mixture",
            "positive and finite",
            self.decay_test_mixture,
        )?;
        check(
            self.score_full_decline > 0.0 && self.score_full_decline <= 1.0,
            "score_full_decline",
            "in (0, 1]",
            self.score_full_decline,
        )?;
        check(
            self.limited_score > 0.0 && self.limited_score <= 1.0,
            "limited_score",
            "in (0, 1]",
            self.limited_score,
        )?;
        check(
            self.fatigued_score > 0.0 && self.fatigued_score <= 1.0,
            "fatigued_score",
            "in (0, 1]",
            self.fatigued_score,
        )?;
        check(
            open_unit(self.remaining_share),
            "remaining_share",
            "in (0, 1)",
            self.remaining_share,
        )?;
        check(
            (2..=MAX_POINTS_LIMIT).contains(&self.max_points),
            "max_points",
            "in 2..=8784",
            self.max_points as f64,
        )?;
        check(
            self.min_fit_points >= 2 && self.min_fit_points <= self.max_points,
            "min_fit_points",
            "at least 2 and at most max_points",
            self.min_fit_points as f64,
        )?;
        check(
            self.min_fit_clicks >= 1,
            "min_fit_clicks",
            "at least 1",
            self.min_fit_clicks as f64,
        )?;
        check(
            self.current_window_hours >= 1,
            "current_window_hours",
            "at least 1",
            f64::from(self.current_window_hours),
        )?;
        check(
            self.growth_window_hours >= 1,
            "growth_window_hours",
            "at least 1",
            f64::from(self.growth_window_hours),
        )?;
        check(
            self.max_days_remaining.is_finite() && self.max_days_remaining > 0.0,
            "max_days_remaining",
            "positive and finite",
            self.max_days_remaining,
        )
    }
}

/// A creative's fatigue status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FatigueStatus {
    /// No meaningful decline (or no baseline yet).
    Healthy,
    /// Declining: either a moderate decline without a confirmed change, or a confirmed change that is still
    /// small.
    Limited,
    /// A confirmed change (CUSUM alarm) with a large decline: time to refresh the creative.
    Fatigued,
}

/// One closed hour of a creative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Start of the UTC hour, epoch milliseconds.
    pub hour_start_ms: i64,
    /// Impressions counted in the hour.
    pub impressions: u64,
    /// Clicks counted in the hour.
    pub clicks: u64,
    /// Impression and click cost counted in the hour, micros.
    pub spend_micros: i64,
    /// Exposure at the hour's end: the creative's identified impressions up to then over the estimated reach of
    /// their users.
    pub exposure: f64,
}

/// A Poisson decay fit in the form the assessment reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecayFit {
    /// CTR at exposure 0, `exp(β0)`.
    pub ctr_at_zero: f64,
    /// Decay rate per unit of exposure, `λ = −β1`.
    pub lambda: f64,
    /// Standard error of λ from the inverse Fisher information.
    pub lambda_std_error: f64,
    /// Pooled points fitted.
    pub points: usize,
    /// Exposure where the fitted segment starts (its first point).
    pub from_exposure: f64,
}

/// Days until the fitted CTR falls below `θ · baseline`, with a 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DaysRemaining {
    /// Point estimate from λ.
    pub estimate: f64,
    /// From the faster decay `λ + 1.96·se`.
    pub low: f64,
    /// From the slower decay `λ − 1.96·se`; [`FatigueConfig::max_days_remaining`] when that is not a decay.
    pub high: f64,
}

/// The detector's view of one creative after its last closed hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// Healthy, limited or fatigued.
    pub status: FatigueStatus,
    /// Severity in [0, 1]: the current CTR's decline from the baseline, scaled by
    /// [`FatigueConfig::score_full_decline`]. 0 while there is no baseline.
    pub score: f64,
    /// CTR of the baseline hours; `None` until the baseline is complete.
    pub baseline_ctr: Option<f64>,
    /// The more precise of two estimates: the decay fit's CTR at the current exposure, or the pooled CTR of the
    /// last [`FatigueConfig::current_window_hours`] (relative standard error about `1/sqrt(clicks)`). `None`
    /// without a fit and without impressions in the window.
    pub current_ctr: Option<f64>,
    /// Spend per click of the baseline hours.
    pub baseline_cost_per_click_micros: Option<f64>,
    /// Spend per click over the last [`FatigueConfig::current_window_hours`]; `None` without clicks there.
    pub current_cost_per_click_micros: Option<f64>,
    /// The CUSUM statistic after the last closed hour.
    pub change_statistic: f64,
    /// The CUSUM threshold it is compared with.
    pub change_threshold: f64,
    /// End of the hour in which the decline was confirmed, while the alarm lasts: the earlier of the hour in
    /// which the CUSUM crossed its threshold (its alarm lasts while the statistic stays above zero) and the hour
    /// in which the decay test crossed its boundary (its alarm lasts while the test stays beyond it).
    pub change_detected_at_ms: Option<i64>,
    /// The detector's estimate of when the decline began: start of the first hour of the statistic's current
    /// run above zero. `None` while the statistic is zero.
    pub change_started_at_ms: Option<i64>,
    /// The decay test's standardized statistic `U/sqrt(V)`: about standard normal while CTR does not depend on
    /// exposure, negative when clicks fall as exposure grows. `None` until exposure has varied and there are
    /// clicks. (Absent from states stored before the test existed, hence the default.)
    #[serde(default)]
    pub decay_statistic: Option<f64>,
    /// The decay test's boundary in the same units: the test confirms a decline while the statistic is below it.
    #[serde(default)]
    pub decay_boundary: Option<f64>,
    /// Exposure (impressions per reached user) at the last closed hour.
    pub exposure: f64,
    /// Estimated distinct users reached.
    pub reach_estimate: u64,
    /// Impressions in closed hours.
    pub impressions: u64,
    /// Clicks in closed hours.
    pub clicks: u64,
    /// Spend in closed hours, micros.
    pub spend_micros: i64,
    /// Poisson fit of CTR against exposure over the points since the change started.
    pub decay: Option<DecayFit>,
    /// Days until CTR falls below `θ · baseline`; needs a decay fit with λ > 0 and growing exposure.
    pub days_remaining: Option<DaysRemaining>,
    /// End of the last closed hour that had traffic (event time); `i64::MIN` before any.
    pub assessed_until_ms: i64,
}

impl Assessment {
    fn empty() -> Self {
        Self {
            status: FatigueStatus::Healthy,
            score: 0.0,
            baseline_ctr: None,
            current_ctr: None,
            baseline_cost_per_click_micros: None,
            current_cost_per_click_micros: None,
            change_statistic: 0.0,
            change_threshold: 0.0,
            change_detected_at_ms: None,
            change_started_at_ms: None,
            decay_statistic: None,
            decay_boundary: None,
            exposure: 0.0,
            reach_estimate: 0,
            impressions: 0,
            clicks: 0,
            spend_micros: 0,
            decay: None,
            days_remaining: None,
            assessed_until_ms: i64::MIN,
        }
    }
}

/// One point of a Poisson decay fit: impressions and clicks at an exposure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FitPoint {
    /// The covariate (impressions per reached user).
    pub exposure: f64,
    /// Impressions; the model's offset is `ln(impressions)`, so it must be positive.
    pub impressions: u64,
    /// Clicks.
    pub clicks: u64,
}

/// Maximum-likelihood estimate of `clicks ~ Poisson(impressions · exp(β0 + β1 · exposure))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoissonFit {
    /// Intercept: `ln` of the CTR at exposure 0.
    pub beta0: f64,
    /// Slope: change of `ln CTR` per unit of exposure (`−λ`).
    pub beta1: f64,
    /// Standard error of β0 (inverse Fisher information).
    pub se_beta0: f64,
    /// Standard error of β1 (inverse Fisher information).
    pub se_beta1: f64,
    /// Covariance of β0 and β1 (inverse Fisher information), for the standard error of a prediction.
    pub cov_beta0_beta1: f64,
    /// Newton iterations taken.
    pub iterations: usize,
    /// Points fitted.
    pub points: usize,
}

/// Fits `clicks ~ Poisson(impressions · exp(β0 + β1 · exposure))` (a Poisson GLM with log link and offset
/// `ln(impressions)`) by Newton's method, which for the canonical log link is the same as IRLS / Fisher scoring.
///
/// The exposure is centred on its impression-weighted mean while iterating, which keeps the Hessian well
/// conditioned; the start is the pooled CTR with slope 0, and a step that lowers the likelihood is halved.
/// Standard errors come from the inverse Fisher information `(Xᵀ W X)⁻¹`, `W = diag(μ)`, at the estimate.
pub fn fit_poisson_decay(points: &[FitPoint]) -> Result<PoissonFit, FitError> {
    if let Some(index) = points
        .iter()
        .position(|p| p.impressions == 0 || !p.exposure.is_finite())
    {
        return Err(FitError::InvalidPoint { index });
    }
    if points.len() < 2 {
        return Err(FitError::TooFewPoints(points.len()));
    }
    let impressions: f64 = points.iter().map(|p| p.impressions as f64).sum();
    let clicks: f64 = points.iter().map(|p| p.clicks as f64).sum();
    if clicks == 0.0 {
        return Err(FitError::NoClicks);
    }
    let center = points
        .iter()
        .map(|p| p.impressions as f64 * p.exposure)
        .sum::<f64>()
        / impressions;
    let (min, max) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.exposure), hi.max(p.exposure))
        });
    if max - min <= 1e-12 * center.abs().max(1.0) {
        return Err(FitError::NoExposureSpread);
    }
    // Parameters in the centred form ln CTR = a + b·(x − center).
    let (mut a, mut b) = ((clicks / impressions).ln(), 0.0);
    let mut log_likelihood = poisson_log_likelihood(points, center, a, b);
    let mut iterations = 0;
    loop {
        if iterations == MAX_FIT_ITERATIONS {
            return Err(FitError::NotConverged);
        }
        iterations += 1;
        let (da, db) = newton_step(points, center, a, b).ok_or(FitError::NotConverged)?;
        // Step halving: the full Newton step is taken whenever it does not lower the likelihood, which near
        // the optimum is always (the small tolerance absorbs rounding in the sum).
        let mut t = 1.0;
        let (next_a, next_b, next_ll) = loop {
            let (na, nb) = (a + t * da, b + t * db);
            let ll = poisson_log_likelihood(points, center, na, nb);
            if ll >= log_likelihood - 1e-12 * log_likelihood.abs().max(1.0) || t < 1e-10 {
                break (na, nb, ll);
            }
            t *= 0.5;
        };
        if !(next_a.is_finite() && next_b.is_finite() && next_ll.is_finite()) {
            return Err(FitError::NotConverged);
        }
        let moved = (next_a - a).abs() / (1.0 + a.abs()) + (next_b - b).abs() / (1.0 + b.abs());
        (a, b, log_likelihood) = (next_a, next_b, next_ll);
        if moved <= FIT_TOLERANCE {
            break;
        }
    }
    let info = fisher_information(points, center, a, b);
    let det = info.det();
    if !(det > 0.0 && det.is_finite()) {
        return Err(FitError::NotConverged);
    }
    let (var_a, var_b, cov_ab) = (info.i11 / det, info.i00 / det, -info.i01 / det);
    // Back from the centred form: β0 = a − b·center, so var(β0) = var(a) + c²·var(b) − 2c·cov(a, b).
    let beta0 = a - b * center;
    let var_beta0 = var_a + center * center * var_b - 2.0 * center * cov_ab;
    let fit = PoissonFit {
        beta0,
        beta1: b,
        se_beta0: var_beta0.max(0.0).sqrt(),
        se_beta1: var_b.max(0.0).sqrt(),
        // cov(a − b·c, b) = cov(a, b) − c·var(b).
        cov_beta0_beta1: cov_ab - center * var_b,
        iterations,
        points: points.len(),
    };
    if [fit.beta0, fit.se_beta0, fit.se_beta1, fit.cov_beta0_beta1]
        .iter()
        .all(|x| x.is_finite())
    {
        Ok(fit)
    } else {
        Err(FitError::NotConverged)
    }
}

/// Fisher information of the centred parameters `(a, b)`: `Σ μ [1, x−c; x−c, (x−c)²]`.
struct Information {
    i00: f64,
    i01: f64,
    i11: f64,
    /// Score (gradient of the log-likelihood) `Σ (k − μ) [1, x−c]`.
    g0: f64,
    g1: f64,
}

impl Information {
    fn det(&self) -> f64 {
        self.i00 * self.i11 - self.i01 * self.i01
    }
}

fn fisher_information(points: &[FitPoint], center: f64, a: f64, b: f64) -> Information {
    let mut info = Information {
        i00: 0.0,
        i01: 0.0,
        i11: 0.0,
        g0: 0.0,
        g1: 0.0,
    };
    for p in points {
        let x = p.exposure - center;
        let mu = p.impressions as f64 * (a + b * x).exp();
        let residual = p.clicks as f64 - mu;
        info.i00 += mu;
        info.i01 += mu * x;
        info.i11 += mu * x * x;
        info.g0 += residual;
        info.g1 += residual * x;
    }
    info
}

/// The Newton step `I⁻¹ U` at `(a, b)`, or `None` when the information matrix is singular or not finite.
fn newton_step(points: &[FitPoint], center: f64, a: f64, b: f64) -> Option<(f64, f64)> {
    let info = fisher_information(points, center, a, b);
    let det = info.det();
    if !(det > 0.0 && det.is_finite()) {
        return None;
    }
    Some((
        (info.i11 * info.g0 - info.i01 * info.g1) / det,
        (info.i00 * info.g1 - info.i01 * info.g0) / det,
    ))
}

/// `Σ k·η − μ` with `η = ln n + a + b(x − c)`, dropping terms that do not depend on the parameters.
fn poisson_log_likelihood(points: &[FitPoint], center: f64, a: f64, b: f64) -> f64 {
    let ll: f64 = points
        .iter()
        .map(|p| {
            let eta = a + b * (p.exposure - center);
            p.clicks as f64 * eta - p.impressions as f64 * eta.exp()
        })
        .sum();
    if ll.is_finite() {
        ll
    } else {
        f64::NEG_INFINITY
    }
}

/// Counts and users of one hour that is not settled yet. Field names are one letter: the changelog stores every
/// unsettled hour each time the state changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PendingHour {
    #[serde(rename = "h")]
    hour_start_ms: i64,
    #[serde(rename = "n")]
    impressions: u64,
    #[serde(rename = "k")]
    clicks: u64,
    #[serde(rename = "s")]
    spend_micros: i64,
    /// Impressions with a user id.
    #[serde(rename = "i")]
    identified_impressions: u64,
    /// The hour's own users, as sparse reach registers: merged into the cumulative sketch when the hour is
    /// folded, so exposure counts exactly the users up to the hour's end.
    #[serde(rename = "u")]
    users: HourUsers,
}

impl PendingHour {
    fn new(hour_start_ms: i64) -> Self {
        Self {
            hour_start_ms,
            impressions: 0,
            clicks: 0,
            spend_micros: 0,
            identified_impressions: 0,
            users: HourUsers::default(),
        }
    }
}

/// The reach registers one hour's users set, sparse: `(register << 6) | rank`, sorted by register, at most one
/// entry per register. Only ranks above the settled sketch's register are kept: every fold starts from the
/// settled sketch, which only grows, so a lower rank can never change a point. Once a creative has reached a few
/// thousand users, new users rarely raise a register, and an hour holds a handful of entries.
///
/// Serialized as a string of three base64-alphabet characters per entry (16 bits in 18).
#[derive(Debug, Clone, Default, PartialEq)]
struct HourUsers {
    entries: Vec<u16>,
}

impl HourUsers {
    /// Adds a user's hash, unless `settled` already holds its rank.
    fn insert(&mut self, hash: u64, settled: &ReachSketch) {
        let (register, rank) = register_and_rank(hash);
        if rank <= settled.registers[register] {
            return;
        }
        let entry = (register as u16) << 6 | u16::from(rank);
        match self
            .entries
            .binary_search_by_key(&register, |e| usize::from(e >> 6))
        {
            Ok(index) => {
                if rank > (self.entries[index] & 63) as u8 {
                    self.entries[index] = entry;
                }
            }
            Err(index) => self.entries.insert(index, entry),
        }
    }

    /// Drops the entries `settled` holds (it grew by the hours just settled).
    fn prune(&mut self, settled: &ReachSketch) {
        self.entries
            .retain(|&e| (e & 63) as u8 > settled.registers[usize::from(e >> 6)]);
    }
}

impl Serialize for HourUsers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(self.entries.len() * 3);
        for &entry in &self.entries {
            for shift in [10, 4] {
                text.push(char::from(
                    BASE64_ALPHABET[usize::from((entry >> shift) & 63)],
                ));
            }
            text.push(char::from(BASE64_ALPHABET[usize::from(entry & 15)]));
        }
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for HourUsers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = String::deserialize(deserializer)?;
        let digit = |byte: u8| {
            BASE64_ALPHABET
                .iter()
                .position(|&c| c == byte)
                .map(|v| v as u16)
                .ok_or_else(|| D::Error::custom("invalid reach register entry"))
        };
        if text.len() % 3 != 0 {
            return Err(D::Error::custom(
                "reach register entries are 3 characters each",
            ));
        }
        let mut entries = Vec::with_capacity(text.len() / 3);
        for chunk in text.as_bytes().chunks_exact(3) {
            let low = digit(chunk[2])?;
            if low > 15 {
                return Err(D::Error::custom("invalid reach register entry"));
            }
            let entry = digit(chunk[0])? << 10 | digit(chunk[1])? << 4 | low;
            let rank = u32::from(entry & 63);
            let ordered = entries
                .last()
                .is_none_or(|last: &u16| last >> 6 < entry >> 6);
            if rank == 0 || rank > RANK_BITS + 1 || !ordered {
                return Err(D::Error::custom("invalid reach register entry"));
            }
            entries.push(entry);
        }
        Ok(HourUsers { entries })
    }
}

/// Baseline accumulation; `ctr` is set once the baseline is complete and never changes afterwards.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Baseline {
    /// Start of the first closed hour with traffic.
    start_ms: Option<i64>,
    impressions: u64,
    clicks: u64,
    spend_micros: i64,
    ctr: Option<f64>,
    cost_per_click_micros: Option<f64>,
}

/// Bernoulli CUSUM state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Cusum {
    statistic: f64,
    /// Start of the first hour of the statistic's current run above zero.
    run_start_ms: Option<i64>,
    /// End of the hour in which the current run crossed the threshold.
    detected_at_ms: Option<i64>,
}

/// The decay test: the score test of `λ = 0` (CTR does not depend on exposure) against `λ > 0` in the Poisson
/// model `clicks ~ Poisson(impressions · exp(β0 − λ·exposure))`, over every closed hour of the creative, kept as
/// running sums so that an hour costs O(1) and the state is six numbers whatever the history.
///
/// The score is `U = Σ k·(f − f̄)` (clicks' exposure minus what a constant CTR would give), with `f̄` the
/// impression-weighted mean exposure; conditional on the hours' impressions and the total clicks, a constant CTR
/// spreads the clicks over the hours multinomially, so `U` has mean 0 and variance exactly
/// `V = (K/N)·Σ n·(f − f̄)²`. The sums are updated in Welford's form (mean and centred moments), which stays
/// accurate when exposure is large and varies little.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct DecayTest {
    #[serde(rename = "n")]
    impressions: u64,
    #[serde(rename = "k")]
    clicks: u64,
    /// Impression-weighted mean exposure `f̄`.
    #[serde(rename = "m")]
    mean_exposure: f64,
    /// `Σ n·(f − f̄)²`.
    #[serde(rename = "s")]
    exposure_spread: f64,
    /// `U = Σ k·(f − f̄)`.
    #[serde(rename = "u")]
    score: f64,
    /// End of the hour in which the statistic crossed the boundary, while it stays below it.
    #[serde(rename = "d")]
    detected_at_ms: Option<i64>,
}

impl DecayTest {
    /// The test over `points`, for a state stored before the test existed: the points it kept are the history
    /// it has.
    fn from_points(points: &[SeriesPoint]) -> Self {
        let mut test = Self::default();
        for p in points {
            test.add(p.impressions, p.clicks, p.exposure);
        }
        test
    }

    /// Adds one hour.
    fn add(&mut self, impressions: u64, clicks: u64, exposure: f64) {
        let total = self.impressions + impressions;
        let previous_mean = self.mean_exposure;
        let mean = if total > 0 {
            previous_mean + impressions as f64 * (exposure - previous_mean) / total as f64
        } else {
            previous_mean
        };
        self.exposure_spread += impressions as f64 * (exposure - previous_mean) * (exposure - mean);
        // The earlier clicks' deviations move by the shift of the mean; the new hour adds its own.
        self.score +=
            clicks as f64 * (exposure - mean) - self.clicks as f64 * (mean - previous_mean);
        self.impressions = total;
        self.clicks += clicks;
        self.mean_exposure = mean;
    }

    /// The standardized statistic `U/sqrt(V)` and the boundary it is compared with, `−b/sqrt(V)` with Robbins'
    /// normal-mixture boundary `b = sqrt((V + ρ)·(ln((V + ρ)/ρ) + 2·ln(1/α)))`: for a martingale with variance
    /// process `V`, the probability that it ever goes below `−b` is at most `α`. `None` without clicks or
    /// without spread of exposure.
    fn evidence(&self, config: &FatigueConfig) -> Option<(f64, f64)> {
        // Positive, which also rules out NaN.
        let information =
            Some(ratio(self.clicks as f64, self.impressions as f64)? * self.exposure_spread)
                .filter(|information| *information > 0.0)?;
        let rho = config.decay_test_mixture;
        let boundary = ((information + rho)
            * (((information + rho) / rho).ln() + 2.0 * (1.0 / config.decay_test_alpha).ln()))
        .sqrt();
        let deviation = information.sqrt();
        Some((
            finite(self.score / deviation)?,
            finite(-boundary / deviation)?,
        ))
    }
}

/// A HyperLogLog sketch of distinct user ids: fixed size (1,024 one-byte registers) whatever the traffic.
///
/// Serialized as a string of one base64-alphabet character per register (register values are at most 55, so
/// one character of 64 holds one exactly): 1,024 characters instead of a JSON array of numbers.
#[derive(Clone, PartialEq)]
struct ReachSketch {
    registers: Box<[u8; REACH_REGISTERS]>,
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl ReachSketch {
    fn new() -> Self {
        Self {
            registers: Box::new([0; REACH_REGISTERS]),
        }
    }

    /// Adds a 64-bit hash (see [`register_and_rank`]).
    #[cfg(test)]
    fn insert(&mut self, hash: u64) {
        let (index, rank) = register_and_rank(hash);
        let register = &mut self.registers[index];
        *register = (*register).max(rank);
    }

    /// Adds one hour's users: the register-wise maximum, so merging is order-independent.
    fn merge(&mut self, users: &HourUsers) {
        for &entry in &users.entries {
            let register = &mut self.registers[usize::from(entry >> 6)];
            *register = (*register).max((entry & 63) as u8);
        }
    }

    /// Cardinality estimate by Ertl's improved raw estimator ("New cardinality estimation algorithms for
    /// HyperLogLog sketches", 2017), which is nearly unbiased from zero to billions without the classic
    /// estimator's switch to linear counting and its bias in between.
    fn estimate(&self) -> f64 {
        let m = REACH_REGISTERS as f64;
        let mut histogram = [0u32; RANK_BITS as usize + 2];
        for &register in self.registers.iter() {
            histogram[usize::from(register).min(RANK_BITS as usize + 1)] += 1;
        }
        if histogram[0] as usize == REACH_REGISTERS {
            return 0.0;
        }
        let q = RANK_BITS as usize;
        let mut z = m * ertl_tau(1.0 - f64::from(histogram[q + 1]) / m);
        for k in (1..=q).rev() {
            z = 0.5 * (z + f64::from(histogram[k]));
        }
        z += m * ertl_sigma(f64::from(histogram[0]) / m);
        let estimate = m * m / (2.0 * std::f64::consts::LN_2 * z);
        if estimate.is_finite() {
            estimate
        } else {
            0.0
        }
    }
}

/// Ertl's σ(x) = x + Σ_{k≥1} x^(2^k) 2^(k−1), for the share of empty registers x < 1.
fn ertl_sigma(x: f64) -> f64 {
    if x >= 1.0 {
        return f64::INFINITY;
    }
    let (mut x, mut y, mut z) = (x, 1.0, x);
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if z == previous {
            return z;
        }
    }
}

/// Ertl's τ(x) = (1 − x − Σ_{k≥1} (1 − x^(2^−k))² 2^−k) / 3, for the share of saturated registers' complement.
fn ertl_tau(x: f64) -> f64 {
    if x <= 0.0 || x >= 1.0 {
        return 0.0;
    }
    let (mut x, mut y, mut z) = (x, 1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == previous {
            return z / 3.0;
        }
    }
}

/// The register a 64-bit hash picks (its top bits) and its rank there (the run of leading zeros of the rest, plus
/// one).
fn register_and_rank(hash: u64) -> (usize, u8) {
    let index = (hash >> RANK_BITS) as usize;
    let rest = hash << REACH_SKETCH_PRECISION;
    (index, (rest.leading_zeros().min(RANK_BITS) + 1) as u8)
}

impl std::fmt::Debug for ReachSketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReachSketch")
            .field("estimate", &self.estimate())
            .finish()
    }
}

impl Serialize for ReachSketch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text: String = self
            .registers
            .iter()
            .map(|&r| char::from(BASE64_ALPHABET[usize::from(r & 63)]))
            .collect();
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for ReachSketch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = String::deserialize(deserializer)?;
        if text.len() != REACH_REGISTERS {
            return Err(D::Error::custom(format!(
                "reach sketch must have {REACH_REGISTERS} characters, got {}",
                text.len()
            )));
        }
        let mut sketch = ReachSketch::new();
        for (register, byte) in sketch.registers.iter_mut().zip(text.bytes()) {
            let value = BASE64_ALPHABET
                .iter()
                .position(|&c| c == byte)
                .filter(|&v| v <= RANK_BITS as usize + 1)
                .ok_or_else(|| D::Error::custom("invalid reach sketch register"))?;
            *register = value as u8;
        }
        Ok(sketch)
    }
}

/// A stable 64-bit hash of a user id (FNV-1a, then MurmurHash3's finalizer to spread FNV's weak high bits).
/// Stable across Rust versions and processes, unlike `std`'s hasher, because the sketch it feeds is persisted.
/// Does not allocate.
fn hash_user(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in id.as_bytes() {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Serializes points as `[hour_start_ms, impressions, clicks, spend_micros, exposure]` tuples: the changelog
/// stores up to `max_points` of them every time the state changes, and field names would double its size.
mod point_tuples {
    use super::SeriesPoint;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        points: &[SeriesPoint],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(points.iter().map(|p| {
            (
                p.hour_start_ms,
                p.impressions,
                p.clicks,
                p.spend_micros,
                p.exposure,
            )
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<SeriesPoint>, D::Error> {
        let tuples: Vec<(i64, u64, u64, i64, f64)> = Vec::deserialize(deserializer)?;
        Ok(tuples
            .into_iter()
            .map(
                |(hour_start_ms, impressions, clicks, spend_micros, exposure)| SeriesPoint {
                    hour_start_ms,
                    impressions,
                    clicks,
                    spend_micros,
                    exposure,
                },
            )
            .collect())
    }
}

/// What became of a recorded event.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Counted in its own hour (or, if the caller stopped closing hours and [`MAX_PENDING_HOURS`] are held, in
    /// the nearest held hour).
    Counted,
    /// Its hour was already settled (past retention): not counted; the caller reports it as late.
    Expired,
}

/// All state of one creative: the settled fold (closed hourly points in a bounded ring, reach sketch, baseline,
/// CUSUM), the hours not settled yet, and the assessment.
///
/// Hours pass through three stages as the caller's watermark advances (see [`CreativeSeries::advance`]):
/// *open* (events still expected), *closed* (a provisional point, assessed, but a late event of the hour still
/// counts in it and the points after it are recomputed), *settled* (folded for good; a later event of the hour is
/// [`Recorded::Expired`]). Every event is counted in its own hour and each point's exposure counts exactly the
/// impressions and users up to the hour's end, so, as long as no event expires, the points and the assessment are
/// a function of the events alone, not of the order they arrived in or of when hours closed.
///
/// Its size is bounded whatever the traffic: at most [`MAX_PENDING_HOURS`] unsettled hours (each with the sparse
/// reach registers of its own users, at most 2 bytes per register), `max_points` settled points and a fixed
/// 1,024-register reach sketch; serialized to JSON it is about 10 KB with a week of points and few unsettled
/// hours, most of it the points (as tuples) and the sketch (one character per register).
///
/// JSON round trips are exact (the workspace enables `serde_json`'s `float_roundtrip`, so a restored series
/// goes on exactly as the original would have). The assessment of the closed hours is not serialized: it is
/// recomputed from the settled fold and the unsettled hours by the next `advance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreativeSeries {
    creative_id: String,
    campaign_id: String,
    /// Every settled hour, folded; never revisited.
    settled: Fold,
    /// Hours not settled yet, oldest first, distinct hour starts: those before `closed_until_ms` are closed.
    pending: Vec<PendingHour>,
    /// Hours starting before this are closed.
    closed_until_ms: Option<i64>,
    /// Hours starting before this are settled.
    settled_until_ms: Option<i64>,
    /// A late event changed a closed hour since the last `advance`, so `current` must be recomputed.
    #[serde(default)]
    amended: bool,
    /// `settled` plus the closed pending hours, assessed: what [`CreativeSeries::assessment`] and
    /// [`CreativeSeries::recent_points`] report. Derived; `None` after deserializing, until the next `advance`.
    #[serde(skip)]
    current: Option<Fold>,
}

impl CreativeSeries {
    /// An empty series for a creative of a campaign.
    pub fn new(creative_id: &str, campaign_id: &str) -> Self {
        Self {
            creative_id: creative_id.to_string(),
            campaign_id: campaign_id.to_string(),
            settled: Fold::new(),
            pending: Vec::with_capacity(4),
            closed_until_ms: None,
            settled_until_ms: None,
            amended: false,
            current: None,
        }
    }

    /// The creative's id.
    pub fn creative_id(&self) -> &str {
        &self.creative_id
    }

    /// The id of the creative's campaign.
    pub fn campaign_id(&self) -> &str {
        &self.campaign_id
    }

    /// Whether an event of `time_ms` would be counted: its UTC hour is not settled.
    pub fn accepts(&self, time_ms: i64) -> bool {
        self.settled_until_ms
            .is_none_or(|settled| hour_start(time_ms) >= settled)
    }

    /// Counts an impression, its cost and its user in the UTC hour of `time_ms`, unless that hour is settled.
    /// If the hour is closed but not settled, its point (and every later one) is recomputed at the next
    /// [`CreativeSeries::advance`]. Does not allocate, except when an hour or a reach register is added beyond
    /// the capacity used so far.
    pub fn record_impression(
        &mut self,
        time_ms: i64,
        user_id: Option<&str>,
        cost_micros: i64,
    ) -> Recorded {
        let Some(index) = self.pending_hour(time_ms) else {
            return Recorded::Expired;
        };
        let hour = &mut self.pending[index];
        hour.impressions += 1;
        hour.spend_micros = hour.spend_micros.saturating_add(cost_micros);
        if let Some(user) = user_id {
            hour.identified_impressions += 1;
            hour.users.insert(hash_user(user), &self.settled.reach);
        }
        Recorded::Counted
    }

    /// Counts a click and its cost in the UTC hour of `time_ms`, unless that hour is settled (see
    /// [`CreativeSeries::record_impression`]).
    pub fn record_click(&mut self, time_ms: i64, cost_micros: i64) -> Recorded {
        let Some(index) = self.pending_hour(time_ms) else {
            return Recorded::Expired;
        };
        let hour = &mut self.pending[index];
        hour.clicks += 1;
        hour.spend_micros = hour.spend_micros.saturating_add(cost_micros);
        Recorded::Counted
    }

    /// Closes every hour that ends at or before `close_until_ms` (normally the watermark minus the grace period)
    /// and settles every hour that ends at or before `settle_until_ms` (the watermark minus the retention;
    /// never later than the close boundary), oldest first. Each closed hour with traffic becomes a point and
    /// updates the baseline or the CUSUM; then the decay fit and the assessment are recomputed once. Hours
    /// without traffic produce no point and leave the assessment as it was. Returns true if the assessment may
    /// have changed: an hour with traffic closed, or a late event changed a closed hour.
    ///
    /// A point's exposure is the creative's identified impressions up to the hour's end divided by the estimated
    /// reach of their users, so it does not depend on how far the caller had read into the next hour.
    pub fn advance(
        &mut self,
        close_until_ms: i64,
        settle_until_ms: i64,
        config: &FatigueConfig,
    ) -> bool {
        let close_boundary = hour_start(close_until_ms);
        let settle_boundary = hour_start(settle_until_ms).min(close_boundary);
        let closed_before = self.closed_until_ms.unwrap_or(i64::MIN);
        let was_closed = self
            .pending
            .partition_point(|h| h.hour_start_ms < closed_before);
        let mut changed = self.amended;
        let mut current = match self.current.take() {
            Some(current) if !self.amended => current,
            // Recomputed from the settled fold: after a late event, or after the state was restored.
            _ => {
                let mut fold = self.settled.clone();
                for hour in &self.pending[..was_closed] {
                    fold.close_hour(hour, config);
                }
                fold.assess(config);
                fold
            }
        };
        self.amended = false;
        let now_closed = self
            .pending
            .partition_point(|h| h.hour_start_ms < close_boundary);
        for hour in &self.pending[was_closed.min(now_closed)..now_closed] {
            current.close_hour(hour, config);
            changed = true;
        }
        if changed {
            current.assess(config);
        }
        self.closed_until_ms = Some(closed_before.max(close_boundary));
        // Settled hours were closed already, in the same order, so `current` stays what it is.
        let settling = self
            .pending
            .partition_point(|h| h.hour_start_ms < settle_boundary);
        for hour in &self.pending[..settling] {
            self.settled.close_hour(hour, config);
        }
        self.pending.drain(..settling);
        if settling > 0 {
            for hour in &mut self.pending {
                hour.users.prune(&self.settled.reach);
            }
        }
        if settle_boundary > self.settled_until_ms.unwrap_or(i64::MIN) {
            self.settled_until_ms = Some(settle_boundary);
        }
        self.current = Some(current);
        changed
    }

    /// Whether hours are held that are not settled yet (a caller need not advance a series without).
    pub fn has_pending_hours(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The assessment after the last closed hour with traffic, as of the last [`CreativeSeries::advance`].
    pub fn assessment(&self) -> &Assessment {
        &self.view().assessment
    }

    /// Closed hourly points, oldest first; at most [`FatigueConfig::max_points`] of them.
    pub fn recent_points(&self) -> &[SeriesPoint] {
        &self.view().points
    }

    fn view(&self) -> &Fold {
        self.current.as_ref().unwrap_or(&self.settled)
    }

    /// The index of the unsettled hour an event of `time_ms` counts in, or `None` if its hour is settled. If
    /// [`MAX_PENDING_HOURS`] are held already (the caller stopped advancing), an event of another hour goes into
    /// the nearest held hour, so the state stays bounded.
    fn pending_hour(&mut self, time_ms: i64) -> Option<usize> {
        let hour = hour_start(time_ms);
        if self.settled_until_ms.is_some_and(|settled| hour < settled) {
            return None;
        }
        let index = match self
            .pending
            .binary_search_by_key(&hour, |h| h.hour_start_ms)
        {
            Ok(index) => index,
            Err(index) if self.pending.len() < MAX_PENDING_HOURS => {
                self.pending.insert(index, PendingHour::new(hour));
                index
            }
            // Full: the next later held hour, or the last if the event is later than all.
            Err(index) => index.min(self.pending.len() - 1),
        };
        if self
            .closed_until_ms
            .is_some_and(|closed| self.pending[index].hour_start_ms < closed)
        {
            self.amended = true;
        }
        Some(index)
    }
}

/// The settled part of a series, or the settled part plus the closed hours: reach, points, baseline, CUSUM and
/// the assessment they give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fold {
    /// Impressions recorded with a user id, in the folded hours: the numerator of exposure, since only those
    /// reach the sketch.
    identified_impressions: u64,
    reach: ReachSketch,
    #[serde(with = "point_tuples")]
    points: Vec<SeriesPoint>,
    baseline: Baseline,
    cusum: Cusum,
    /// `None` only in a state stored before the decay test existed; the next folded hour rebuilds it from
    /// `points`.
    #[serde(default)]
    decay_test: Option<DecayTest>,
    assessment: Assessment,
}

impl Fold {
    fn new() -> Self {
        Self {
            identified_impressions: 0,
            reach: ReachSketch::new(),
            points: Vec::new(),
            baseline: Baseline::default(),
            cusum: Cusum::default(),
            decay_test: Some(DecayTest::default()),
            assessment: Assessment::empty(),
        }
    }

    /// Folds one hour in: its point, then the baseline or the CUSUM. The caller folds hours oldest first.
    fn close_hour(&mut self, hour: &PendingHour, config: &FatigueConfig) {
        let PendingHour {
            hour_start_ms,
            impressions,
            clicks,
            spend_micros,
            identified_impressions,
            ref users,
        } = *hour;
        self.identified_impressions += identified_impressions;
        self.reach.merge(users);
        let hour_end_ms = hour_start_ms.saturating_add(HOUR_MS);
        let totals = &mut self.assessment;
        totals.impressions += impressions;
        totals.clicks += clicks;
        totals.spend_micros = totals.spend_micros.saturating_add(spend_micros);
        totals.assessed_until_ms = hour_end_ms;
        let reach = self.reach.estimate();
        // Every identified impression reached someone, so exposure is at least 1; the sketch's error could
        // otherwise put it just below while reach is nearly the impression count.
        let exposure = if self.identified_impressions > 0 && reach >= 1.0 {
            (self.identified_impressions as f64 / reach).max(1.0)
        } else {
            0.0
        };
        totals.reach_estimate = reach.round() as u64;
        totals.exposure = exposure;
        let decay_test = self
            .decay_test
            .get_or_insert_with(|| DecayTest::from_points(&self.points));
        decay_test.add(impressions, clicks, exposure);
        self.points.push(SeriesPoint {
            hour_start_ms,
            impressions,
            clicks,
            spend_micros,
            exposure,
        });
        if self.points.len() > config.max_points {
            let excess = self.points.len() - config.max_points;
            self.points.drain(..excess);
        }

        let Some(p0) = self.baseline.ctr else {
            let baseline = &mut self.baseline;
            let start_ms = *baseline.start_ms.get_or_insert(hour_start_ms);
            baseline.impressions += impressions;
            baseline.clicks += clicks;
            baseline.spend_micros = baseline.spend_micros.saturating_add(spend_micros);
            let long_enough =
                hour_end_ms.saturating_sub(start_ms) >= i64::from(config.baseline_hours) * HOUR_MS;
            if long_enough
                && baseline.impressions >= config.baseline_min_impressions
                && baseline.clicks >= config.baseline_min_clicks
            {
                baseline.ctr = ratio(baseline.clicks as f64, baseline.impressions as f64);
                baseline.cost_per_click_micros =
                    ratio(baseline.spend_micros as f64, baseline.clicks as f64);
            }
            return;
        };
        if let Some(decay_test) = &mut self.decay_test {
            match decay_test.evidence(config) {
                Some((statistic, boundary)) if statistic < boundary => {
                    decay_test.detected_at_ms.get_or_insert(hour_end_ms);
                }
                _ => decay_test.detected_at_ms = None,
            }
        }
        // The reference is the baseline's lower confidence bound: a baseline that came out high by chance
        // would otherwise read as a decline for the rest of the creative's life.
        let relative_error = 1.0 / (self.baseline.clicks.max(1) as f64).sqrt();
        let reference = p0 * (1.0 - config.baseline_margin * relative_error).max(0.01);
        let increment = cusum_increment(reference, config.design_decline, impressions, clicks);
        let cusum = &mut self.cusum;
        cusum.statistic = (cusum.statistic + increment).max(0.0);
        if cusum.statistic <= 0.0 {
            cusum.statistic = 0.0;
            cusum.run_start_ms = None;
            cusum.detected_at_ms = None;
            return;
        }
        cusum.run_start_ms.get_or_insert(hour_start_ms);
        if cusum.statistic > config.cusum_threshold && cusum.detected_at_ms.is_none() {
            cusum.detected_at_ms = Some(hour_end_ms);
        }
    }

    /// Recomputes the decay fit, current CTR and CPC, score, status and days remaining.
    fn assess(&mut self, config: &FatigueConfig) {
        let last_end_ms = self
            .points
            .last()
            .map_or(i64::MIN, |p| p.hour_start_ms.saturating_add(HOUR_MS));
        let exposure = self.assessment.exposure;
        let fitted = match (self.baseline.ctr, self.cusum.run_start_ms) {
            (Some(_), Some(run_start_ms)) => self.decay_fit(run_start_ms, exposure, config),
            _ => None,
        };
        let window_start_ms =
            last_end_ms.saturating_sub(i64::from(config.current_window_hours) * HOUR_MS);
        let (window_impressions, window_clicks, window_spend) = self
            .points
            .iter()
            .filter(|p| p.hour_start_ms >= window_start_ms)
            .fold((0u64, 0u64, 0i64), |(n, k, s), p| {
                (
                    n + p.impressions,
                    k + p.clicks,
                    s.saturating_add(p.spend_micros),
                )
            });
        // The more precise of the two estimates of the current CTR: the fit's prediction follows a decline
        // without the window's lag, but right after a run starts, or when exposure barely moved, it is
        // noisier than the window (whose relative standard error is about 1/sqrt(clicks)).
        let window_ctr = ratio(window_clicks as f64, window_impressions as f64);
        let window_log_se = if window_clicks > 0 {
            1.0 / (window_clicks as f64).sqrt()
        } else {
            f64::INFINITY
        };
        let current_ctr = match &fitted {
            Some((_, prediction)) if prediction.log_se <= window_log_se => Some(prediction.ctr),
            _ => window_ctr,
        };

        let baseline_ctr = self.baseline.ctr;
        let score = match (baseline_ctr, current_ctr) {
            (Some(baseline), Some(current)) if baseline > 0.0 => {
                let decline = 1.0 - current / baseline;
                finite(decline / config.score_full_decline).map_or(0.0, |s| s.clamp(0.0, 1.0))
            }
            _ => 0.0,
        };
        let decay_detected_at_ms = self.decay_test.as_ref().and_then(|t| t.detected_at_ms);
        let detected_at_ms = match (self.cusum.detected_at_ms, decay_detected_at_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let alarm = detected_at_ms.is_some();
        let status = if alarm && score >= config.fatigued_score {
            FatigueStatus::Fatigued
        } else if alarm || (baseline_ctr.is_some() && score >= config.limited_score) {
            FatigueStatus::Limited
        } else {
            FatigueStatus::Healthy
        };
        let days_remaining = match (&fitted, baseline_ctr) {
            (Some((fit, prediction)), Some(baseline)) => self.days_remaining(
                fit,
                prediction.ctr,
                baseline * config.remaining_share,
                last_end_ms,
                config,
            ),
            _ => None,
        };
        let decay = fitted.map(|(fit, _)| fit);
        let a = &mut self.assessment;
        a.status = status;
        a.score = score;
        a.baseline_ctr = baseline_ctr;
        a.current_ctr = current_ctr;
        a.baseline_cost_per_click_micros = self.baseline.cost_per_click_micros;
        a.current_cost_per_click_micros = ratio(window_spend as f64, window_clicks as f64);
        a.change_statistic = self.cusum.statistic;
        a.change_threshold = config.cusum_threshold;
        a.change_detected_at_ms = detected_at_ms;
        a.change_started_at_ms = self.cusum.run_start_ms;
        let evidence = self.decay_test.as_ref().and_then(|t| t.evidence(config));
        a.decay_statistic = evidence.map(|(statistic, _)| statistic);
        a.decay_boundary = evidence.map(|(_, boundary)| boundary);
        a.decay = decay;
        a.days_remaining = days_remaining;
    }

    /// Poisson fit over the points since `from_ms`, pooled to at least `min_fit_point_impressions` each, with
    /// its prediction at `exposure`.
    fn decay_fit(
        &self,
        from_ms: i64,
        exposure: f64,
        config: &FatigueConfig,
    ) -> Option<(DecayFit, Prediction)> {
        let segment = self.points.iter().filter(|p| p.hour_start_ms >= from_ms);
        let pooled = pool_points(segment, config.min_fit_point_impressions);
        let clicks: u64 = pooled.iter().map(|p| p.clicks).sum();
        if pooled.len() < config.min_fit_points || clicks < config.min_fit_clicks {
            return None;
        }
        let fit = fit_poisson_decay(&pooled).ok()?;
        // var(β0 + β1·f) = var β0 + f²·var β1 + 2f·cov(β0, β1).
        let log_variance = fit.se_beta0.powi(2)
            + exposure * exposure * fit.se_beta1.powi(2)
            + 2.0 * exposure * fit.cov_beta0_beta1;
        let prediction = Prediction {
            ctr: finite((fit.beta0 + fit.beta1 * exposure).exp())?,
            log_se: finite(log_variance.max(0.0).sqrt())?,
        };
        let decay = DecayFit {
            ctr_at_zero: finite(fit.beta0.exp())?,
            lambda: -fit.beta1,
            lambda_std_error: fit.se_beta1,
            points: pooled.len(),
            from_exposure: pooled.first()?.exposure,
        };
        Some((decay, prediction))
    }

    /// Days until CTR reaches `target_ctr` on the fitted curve, anchored at the current fitted CTR:
    /// `Δf = ln(current / target) / λ` units of exposure, divided by exposure growth per day over the last
    /// `growth_window_hours`. The interval varies λ by ±1.96 standard errors.
    fn days_remaining(
        &self,
        fit: &DecayFit,
        current_ctr: f64,
        target_ctr: f64,
        last_end_ms: i64,
        config: &FatigueConfig,
    ) -> Option<DaysRemaining> {
        if !(fit.lambda > 0.0 && target_ctr > 0.0 && current_ctr > 0.0) {
            return None;
        }
        let cap = config.max_days_remaining;
        if current_ctr <= target_ctr {
            return Some(DaysRemaining {
                estimate: 0.0,
                low: 0.0,
                high: 0.0,
            });
        }
        let last = self.points.last()?;
        let window_start_ms =
            last_end_ms.saturating_sub(i64::from(config.growth_window_hours) * HOUR_MS);
        let reference = self
            .points
            .iter()
            .find(|p| p.hour_start_ms.saturating_add(HOUR_MS) >= window_start_ms)?;
        let elapsed_days = (last.hour_start_ms - reference.hour_start_ms) as f64 / DAY_MS;
        let growth_per_day = finite((last.exposure - reference.exposure) / elapsed_days)?;
        if growth_per_day <= 0.0 {
            return None;
        }
        let log_ratio = (current_ctr / target_ctr).ln();
        let days = |lambda: f64| -> f64 {
            if lambda <= 0.0 {
                return cap;
            }
            finite(log_ratio / lambda / growth_per_day).map_or(cap, |d| d.clamp(0.0, cap))
        };
        let spread = Z_95 * fit.lambda_std_error;
        Some(DaysRemaining {
            estimate: days(fit.lambda),
            low: days(fit.lambda + spread),
            high: days(fit.lambda - spread),
        })
    }
}

/// A fitted CTR at one exposure, with the standard error of its logarithm.
struct Prediction {
    ctr: f64,
    log_se: f64,
}

/// The Bernoulli CUSUM increment of one hour: the log-likelihood ratio of `k` clicks in `n` impressions under
/// CTR `p1 = (1 − d)·p0` against `p0`: `k·ln(p1/p0) + (n − k)·ln((1 − p1)/(1 − p0))`. Clicks without their
/// impression in the same hour (`k > n`) simply count as negative non-clicks, which keeps the sum unbiased over
/// neighbouring hours.
pub fn cusum_increment(p0: f64, design_decline: f64, impressions: u64, clicks: u64) -> f64 {
    let p0 = p0.clamp(f64::MIN_POSITIVE, MAX_CUSUM_CTR);
    let d = design_decline.clamp(1e-9, 1.0 - 1e-9);
    let p1 = (1.0 - d) * p0;
    let click_weight = (1.0 - d).ln();
    let non_click_weight = ((1.0 - p1) / (1.0 - p0)).ln();
    let (n, k) = (impressions as f64, clicks as f64);
    k * click_weight + (n - k) * non_click_weight
}

/// Pools consecutive points into fit points of at least `min_impressions` impressions each (the last, smaller
/// remainder joins the previous pool); a pool's exposure is its impression-weighted mean.
fn pool_points<'a>(
    points: impl Iterator<Item = &'a SeriesPoint>,
    min_impressions: u64,
) -> Vec<FitPoint> {
    let min_impressions = min_impressions.max(1);
    let mut pooled: Vec<FitPoint> = Vec::new();
    let (mut n, mut k, mut weighted_exposure) = (0u64, 0u64, 0.0f64);
    for p in points {
        n += p.impressions;
        k += p.clicks;
        weighted_exposure += p.impressions as f64 * p.exposure;
        if n >= min_impressions {
            pooled.push(FitPoint {
                exposure: weighted_exposure / n as f64,
                impressions: n,
                clicks: k,
            });
            (n, k, weighted_exposure) = (0, 0, 0.0);
        }
    }
    if n > 0 || k > 0 {
        match pooled.last_mut() {
            Some(last) => {
                let total = last.impressions + n;
                last.exposure =
                    (last.exposure * last.impressions as f64 + weighted_exposure) / total as f64;
                last.impressions = total;
                last.clicks += k;
            }
            None if n > 0 => pooled.push(FitPoint {
                exposure: weighted_exposure / n as f64,
                impressions: n,
                clicks: k,
            }),
            None => {}
        }
    }
    pooled
}

/// Start of the UTC hour containing `time_ms`.
pub fn hour_start(time_ms: i64) -> i64 {
    time_ms - time_ms.rem_euclid(HOUR_MS)
}

/// `numerator / denominator` if finite and the denominator is positive.
fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    if denominator > 0.0 {
        finite(numerator / denominator)
    } else {
        None
    }
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    const T0: i64 = 1_793_491_200_000; // 2026-11-01T00:00Z

    /// SplitMix64: a tiny seeded generator, so the noise tests are reproducible without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn uniform(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn close(a: f64, b: f64, relative: f64) -> bool {
        (a - b).abs() <= relative * b.abs().max(1e-300)
    }

    /// Records `impressions` (without users) and `clicks` in hour `hour` after T0 and closes it.
    fn feed_hour(
        series: &mut CreativeSeries,
        hour: i64,
        impressions: u64,
        clicks: u64,
        config: &FatigueConfig,
    ) {
        let start = T0 + hour * HOUR_MS;
        for _ in 0..impressions {
            assert_eq!(
                series.record_impression(start + 1, None, 1_000),
                Recorded::Counted
            );
        }
        for _ in 0..clicks {
            assert_eq!(series.record_click(start + 2, 500_000), Recorded::Counted);
        }
        assert!(series.advance(start + HOUR_MS, start + HOUR_MS, config));
    }

    #[test]
    fn cusum_increment_matches_hand_computation() {
        // p0 = 0.02, d = 0.25: p1 = 0.015, ln(p1/p0) = ln 0.75 = -0.2876820724517809,
        // ln((1-p1)/(1-p0)) = ln(0.985/0.98) = 0.005089069507471228.
        // 10 clicks in 1000: 10·(-0.28768) + 990·0.0050891 = 2.161358087878707.
        assert!(close(
            cusum_increment(0.02, 0.25, 1000, 10),
            2.161358087878707,
            1e-12
        ));
        // At the baseline rate the evidence points the other way.
        assert!(close(
            cusum_increment(0.02, 0.25, 1000, 20),
            20.0 * -0.2876820724517809 + 980.0 * 0.005089069507471228,
            1e-12
        ));
        // More clicks than impressions (clicks joined late) stays finite.
        assert!(cusum_increment(0.02, 0.25, 1, 5).is_finite());
        assert!(cusum_increment(1.5, 0.25, 10, 20).is_finite());
    }

    #[test]
    fn cusum_steps_reset_and_alarm_as_hand_computed() {
        let config = FatigueConfig {
            baseline_hours: 1,
            baseline_min_impressions: 1000,
            baseline_min_clicks: 20,
            baseline_margin: 0.0,
            design_decline: 0.25,
            cusum_threshold: 5.0,
            ..FatigueConfig::default()
        };
        let mut series = CreativeSeries::new("cr-1", "cmp-1");
        // Hour 0 is the baseline: p0 = 20 / 1000.
        feed_hour(&mut series, 0, 1000, 20, &config);
        assert_eq!(series.assessment().baseline_ctr, Some(0.02));
        assert_eq!(series.assessment().change_statistic, 0.0);
        // Hour 1: 10 clicks -> S = 2.161358087878707 (see cusum_increment_matches_hand_computation).
        feed_hour(&mut series, 1, 1000, 10, &config);
        let a = series.assessment();
        assert!(close(a.change_statistic, 2.161358087878707, 1e-12));
        assert_eq!(a.change_started_at_ms, Some(T0 + HOUR_MS));
        assert_eq!(a.change_detected_at_ms, None);
        // Hour 2: 30 clicks add 30·(-0.28768) + 970·0.0050891 = -3.6940647513063363: S floors at 0, run ends.
        feed_hour(&mut series, 2, 1000, 30, &config);
        let a = series.assessment();
        assert_eq!(a.change_statistic, 0.0);
        assert_eq!(a.change_started_at_ms, None);
        // Hours 3 and 4: 5 clicks each add 3.625213797674968: 3.625 (run starts at hour 3), then 7.250 > 5.
        feed_hour(&mut series, 3, 1000, 5, &config);
        let a = series.assessment();
        assert!(close(a.change_statistic, 3.625213797674968, 1e-12));
        assert_eq!(a.change_detected_at_ms, None);
        assert_ne!(a.status, FatigueStatus::Fatigued);
        feed_hour(&mut series, 4, 1000, 5, &config);
        let a = series.assessment();
        assert!(close(a.change_statistic, 2.0 * 3.625213797674968, 1e-12));
        assert_eq!(a.change_threshold, 5.0);
        assert_eq!(a.change_started_at_ms, Some(T0 + 3 * HOUR_MS));
        assert_eq!(a.change_detected_at_ms, Some(T0 + 5 * HOUR_MS));
        // Without users there is no exposure, so no fit: the current CTR is the window's, 70 / 5000 (the
        // window of 24 hours holds every point): a 30 % decline, score 0.6 at the default scale.
        assert!(a.decay.is_none());
        assert!(close(a.current_ctr.unwrap_or(0.0), 70.0 / 5000.0, 1e-12));
        assert!(close(a.score, 0.6, 1e-12));
        assert_eq!(a.status, FatigueStatus::Fatigued);
        assert_eq!(a.assessed_until_ms, T0 + 5 * HOUR_MS);
        assert_eq!((a.impressions, a.clicks), (5000, 70));
        // Spend: 1000 µ per impression, 500,000 µ per click; baseline CPC = (1,000,000 + 10,000,000) / 20.
        assert_eq!(a.spend_micros, 5000 * 1000 + 70 * 500_000);
        assert_eq!(a.baseline_cost_per_click_micros, Some(550_000.0));
    }

    #[test]
    fn poisson_fit_of_two_points_is_the_saturated_model() {
        // Two points determine both parameters exactly: CTR 10/100 at x = 0 and 5/100 at x = 1, so
        // β0 = ln 0.1 and β1 = ln 0.5; the inverse information gives var β0 = 1/10 and
        // var β1 = 1/10 + 1/5 (the variances of the two log counts).
        let points = [
            FitPoint {
                exposure: 0.0,
                impressions: 100,
                clicks: 10,
            },
            FitPoint {
                exposure: 1.0,
                impressions: 100,
                clicks: 5,
            },
        ];
        let fit = fit_poisson_decay(&points).expect("fits");
        assert!(close(fit.beta0, 0.1f64.ln(), 1e-10), "{fit:?}");
        assert!(close(fit.beta1, 0.5f64.ln(), 1e-10), "{fit:?}");
        assert!(close(fit.se_beta0, 0.1f64.sqrt(), 1e-9), "{fit:?}");
        assert!(close(fit.se_beta1, 0.3f64.sqrt(), 1e-9), "{fit:?}");
        assert_eq!(fit.points, 2);
    }

    #[test]
    fn first_newton_step_matches_hand_computation() {
        // Same two points, centre 0.5, start at the pooled CTR 15/200 with slope 0: μ = 7.5 at both points, so
        // the score is (Σ(k−μ), Σ(k−μ)(x−c)) = (0, 2.5·(−0.5) + (−2.5)·0.5) = (0, −2.5) and the information
        // diag(15, 2·7.5·0.25) = diag(15, 3.75): the step is (0, −2.5/3.75) = (0, −2/3).
        let points = [
            FitPoint {
                exposure: 0.0,
                impressions: 100,
                clicks: 10,
            },
            FitPoint {
                exposure: 1.0,
                impressions: 100,
                clicks: 5,
            },
        ];
        let (da, db) = newton_step(&points, 0.5, 0.075f64.ln(), 0.0).expect("regular");
        assert!(da.abs() < 1e-15, "{da}");
        assert!(close(db, -2.0 / 3.0, 1e-14), "{db}");
    }

    #[test]
    fn poisson_fit_recovers_known_coefficients_from_exact_expectations() {
        // Clicks equal to their expectation (rounded, on 10^10 impressions, so rounding is below 1e-8
        // relative): the maximum-likelihood estimate is the truth.
        let (beta0, beta1) = (-3.5, -0.4);
        let points: Vec<FitPoint> = (0..20)
            .map(|i| {
                let exposure = 1.0 + 0.25 * f64::from(i);
                let impressions = 10_000_000_000u64;
                FitPoint {
                    exposure,
                    impressions,
                    clicks: (impressions as f64 * (beta0 + beta1 * exposure).exp()).round() as u64,
                }
            })
            .collect();
        let fit = fit_poisson_decay(&points).expect("fits");
        assert!(close(fit.beta0, beta0, 1e-7), "{fit:?}");
        assert!(close(fit.beta1, beta1, 1e-7), "{fit:?}");
        assert!(fit.iterations < 20, "{fit:?}");
        assert!(fit.se_beta1 > 0.0 && fit.se_beta1 < 1e-3, "{fit:?}");
    }

    #[test]
    fn poisson_fit_rejects_data_that_cannot_be_fitted() {
        let p = |exposure: f64, impressions: u64, clicks: u64| FitPoint {
            exposure,
            impressions,
            clicks,
        };
        assert_eq!(
            fit_poisson_decay(&[p(1.0, 10, 1)]),
            Err(FitError::TooFewPoints(1))
        );
        assert_eq!(
            fit_poisson_decay(&[p(1.0, 10, 1), p(2.0, 0, 0)]),
            Err(FitError::InvalidPoint { index: 1 })
        );
        assert_eq!(
            fit_poisson_decay(&[p(f64::NAN, 10, 1), p(2.0, 10, 0)]),
            Err(FitError::InvalidPoint { index: 0 })
        );
        assert_eq!(
            fit_poisson_decay(&[p(1.0, 10, 0), p(2.0, 10, 0)]),
            Err(FitError::NoClicks)
        );
        assert_eq!(
            fit_poisson_decay(&[p(2.0, 10, 1), p(2.0, 20, 3)]),
            Err(FitError::NoExposureSpread)
        );
        // All clicks at the lowest exposure: the likelihood keeps rising as β1 → −∞.
        assert_eq!(
            fit_poisson_decay(&[p(1.0, 100, 5), p(2.0, 100, 0)]),
            Err(FitError::NotConverged)
        );
    }

    /// Runs `hours` hours of `per_hour` impressions with Bernoulli clicks at `ctr(hour)`; users are drawn from
    /// an audience of `audience` so exposure grows. Returns the first hour end at which the status was
    /// fatigued.
    fn simulate(
        series: &mut CreativeSeries,
        config: &FatigueConfig,
        rng: &mut Rng,
        hours: i64,
        per_hour: u64,
        audience: u64,
        mut ctr: impl FnMut(i64, f64) -> f64,
    ) -> Option<i64> {
        let mut user = String::new();
        let mut fatigued_at = None;
        for hour in 0..hours {
            let start = T0 + hour * HOUR_MS;
            let p = ctr(hour, series.assessment().exposure);
            for i in 0..per_hour {
                let time = start + (i * HOUR_MS as u64 / per_hour) as i64;
                user.clear();
                let _ = write!(user, "u-{}", rng.next_u64() % audience);
                assert_eq!(
                    series.record_impression(time, Some(&user), 2_000),
                    Recorded::Counted
                );
                if rng.uniform() < p {
                    assert_eq!(
                        series.record_click(time + 5_000, 400_000),
                        Recorded::Counted
                    );
                }
            }
            series.advance(start + HOUR_MS, start + HOUR_MS, config);
            if fatigued_at.is_none() && series.assessment().status == FatigueStatus::Fatigued {
                fatigued_at = Some(start + HOUR_MS);
            }
        }
        fatigued_at
    }

    #[test]
    fn a_stationary_ctr_raises_no_alarm() {
        let config = FatigueConfig::default();
        // Ten creatives, 60 days each at a constant 2 % CTR (240 clicks a day): no alarm, never fatigued.
        for seed in 0..10 {
            let mut series = CreativeSeries::new("cr", "cmp");
            let mut rng = Rng(seed);
            let fatigued = simulate(
                &mut series,
                &config,
                &mut rng,
                60 * 24,
                500,
                1_000_000,
                |_, _| 0.02,
            );
            let a = series.assessment();
            assert_eq!(fatigued, None, "seed {seed}: {a:?}");
            assert_eq!(a.change_detected_at_ms, None, "seed {seed}: {a:?}");
            assert!(a.change_statistic < config.cusum_threshold);
            assert!(a.baseline_ctr.is_some());
        }
    }

    #[test]
    fn a_planted_decay_is_detected_fitted_and_timed() {
        let config = FatigueConfig::default();
        // 3 % CTR until exposure 2, then 3 % · exp(−0.4 (f − 2)); 600 impressions an hour over an audience of
        // 20,000, so exposure reaches about 2 after 2.5 days and 5 after 7.
        let (f0, lambda) = (2.0, 0.4);
        let planted = |_: i64, f: f64| {
            if f > f0 {
                0.03 * (-lambda * (f - f0)).exp()
            } else {
                0.03
            }
        };
        let mut series = CreativeSeries::new("cr", "cmp");
        let fatigued_at = simulate(
            &mut series,
            &config,
            &mut Rng(42),
            8 * 24,
            600,
            20_000,
            planted,
        );
        let a = series.assessment().clone();
        assert!(fatigued_at.is_some(), "{a:?}");
        assert_eq!(a.status, FatigueStatus::Fatigued);
        assert!(a.score > 0.9, "{a:?}");
        let started = a.change_started_at_ms.expect("a change run");
        assert!(started <= a.change_detected_at_ms.expect("detected"));
        // The fitted decay rate is the planted one within three standard errors.
        let fit = a.decay.as_ref().expect("a decay fit");
        assert!(fit.lambda_std_error > 0.0);
        assert!(
            (fit.lambda - lambda).abs() < 3.0 * fit.lambda_std_error,
            "{fit:?}"
        );
        // CTR is already below half the baseline at exposure ~5 (0.03 · e^{-1.2} = 0.3 of it): zero days left.
        let days = a.days_remaining.expect("days remaining");
        assert_eq!(days.estimate, 0.0, "{a:?}");
        // Exposure from the sketch is close to the true impressions per reached user.
        assert!(a.exposure > 4.0 && a.exposure < 7.0, "{a:?}");
        assert_eq!(series.recent_points().len(), config.max_points);
    }

    /// The planted decline `1 − exp(−λ (f − f0))` at exposure `f`.
    fn planted_decline(f0: f64, lambda: f64, exposure: f64) -> f64 {
        if exposure > f0 {
            1.0 - (-lambda * (exposure - f0)).exp()
        } else {
            0.0
        }
    }

    /// Runs a creative with a planted decay and returns the exposures at which its decline was first confirmed
    /// (`change_detected_at_ms` set) and at which it was first `fatigued`.
    fn exposure_at_detection(
        config: &FatigueConfig,
        seed: u64,
        f0: f64,
        lambda: f64,
    ) -> (Option<f64>, Option<f64>) {
        let mut series = CreativeSeries::new("cr", "cmp");
        let mut rng = Rng(seed);
        let (mut user, mut confirmed, mut fatigued) = (String::new(), None, None);
        // 2,000 impressions an hour over an audience of 40,000 at 3 % CTR: exposure passes 2 after about 32
        // hours, after the baseline day, and grows by about 0.05 an hour then.
        for hour in 0..6 * 24 {
            let start = T0 + hour * HOUR_MS;
            let p = 0.03 * (1.0 - planted_decline(f0, lambda, series.assessment().exposure));
            for i in 0..2_000i64 {
                let time = start + i * 1_800;
                user.clear();
                let _ = write!(user, "u-{}", rng.next_u64() % 40_000);
                let _ = series.record_impression(time, Some(&user), 2_000);
                if rng.uniform() < p {
                    let _ = series.record_click(time + 5_000, 400_000);
                }
            }
            series.advance(start + HOUR_MS, start + HOUR_MS, config);
            let a = series.assessment();
            if confirmed.is_none() && a.change_detected_at_ms.is_some() {
                confirmed = Some(a.exposure);
            }
            if fatigued.is_none() && a.status == FatigueStatus::Fatigued {
                fatigued = Some(a.exposure);
            }
        }
        (confirmed, fatigued)
    }

    /// Regression test of the earlier detection: a busy creative whose CTR starts decaying at a known exposure
    /// has its decline confirmed before its CTR fell 25 %, earlier than by the CUSUM alone (what the detector
    /// had before the decay test), and is `fatigued` earlier too. (`fatigued` also needs the current CTR 20 %
    /// below the baseline, and the current CTR of a day's window lags a decline by about half a day.)
    #[test]
    fn a_planted_decay_is_confirmed_before_ctr_fell_a_quarter() {
        let (f0, lambda) = (2.0, 0.4);
        let config = FatigueConfig::default();
        // The CUSUM alone: the decay test's boundary out of reach.
        let cusum_only = FatigueConfig {
            decay_test_alpha: 1e-300,
            ..FatigueConfig::default()
        };
        for seed in 1..=3 {
            let (confirmed, fatigued) = exposure_at_detection(&config, seed, f0, lambda);
            let (confirmed, fatigued) =
                (confirmed.expect("confirmed"), fatigued.expect("fatigued"));
            let decline = planted_decline(f0, lambda, confirmed);
            assert!(decline > 0.0 && decline < 0.25, "seed {seed}: {decline}");
            let (late, late_fatigued) = exposure_at_detection(&cusum_only, seed, f0, lambda);
            let late = late.expect("the CUSUM confirms it too");
            assert!(
                late > confirmed,
                "seed {seed}: confirmed at {confirmed} with the decay test, {late} without"
            );
            assert!(fatigued <= late_fatigued.expect("fatigued without the decay test"));
        }
    }

    /// A creative whose CTR does not depend on exposure, with time-of-day swings of ±15 % and a noisy level
    /// from hour to hour, while exposure grows from 1 to about 9 over three weeks: never flagged, by either
    /// test, at high or low traffic.
    #[test]
    fn a_noisy_creative_that_does_not_fatigue_is_not_flagged() {
        let config = FatigueConfig::default();
        for (seed, per_hour, ctr) in [
            (11, 1_500, 0.02),
            (12, 1_500, 0.02),
            (13, 1_500, 0.01),
            (14, 150, 0.02),
            (15, 150, 0.01),
            (16, 150, 0.01),
        ] {
            let mut series = CreativeSeries::new("cr", "cmp");
            let mut rng = Rng(seed);
            let mut jitter = Rng(seed + 1_000);
            let audience = per_hour * 21 * 24 / 9;
            let fatigued = simulate(
                &mut series,
                &config,
                &mut rng,
                21 * 24,
                per_hour,
                audience,
                |hour, _| {
                    let diurnal = 0.15 * (std::f64::consts::TAU * hour as f64 / 24.0).sin();
                    ctr * (1.0 + diurnal + 0.1 * (jitter.uniform() - 0.5))
                },
            );
            let a = series.assessment();
            assert_eq!(fatigued, None, "seed {seed}: {a:?}");
            assert_eq!(a.change_detected_at_ms, None, "seed {seed}: {a:?}");
            assert!(a.exposure > 6.0, "seed {seed}: {a:?}");
            let (statistic, boundary) = (
                a.decay_statistic.expect("a statistic"),
                a.decay_boundary.expect("a boundary"),
            );
            assert!(statistic > boundary, "seed {seed}: {a:?}");
        }
    }

    /// The running sums equal the two-pass formulas over the same hours (an independent recomputation), the
    /// boundary is Robbins' normal-mixture boundary, and a state stored before the test existed rebuilds it
    /// from its points and goes on as if it had always had it.
    #[test]
    fn decay_test_matches_a_batch_recomputation_and_old_states_rebuild_it() {
        let hours = [
            (1_000u64, 30u64, 1.0),
            (0, 2, 1.0),
            (2_500, 70, 1.4),
            (800, 15, 2.1),
            (1_200, 20, 2.9),
        ];
        let mut test = DecayTest::default();
        for (n, k, f) in hours {
            test.add(n, k, f);
        }
        let n: f64 = hours.iter().map(|h| h.0 as f64).sum();
        let k: f64 = hours.iter().map(|h| h.1 as f64).sum();
        let mean = hours.iter().map(|h| h.0 as f64 * h.2).sum::<f64>() / n;
        let spread: f64 = hours
            .iter()
            .map(|h| h.0 as f64 * (h.2 - mean).powi(2))
            .sum();
        let score: f64 = hours.iter().map(|h| h.1 as f64 * (h.2 - mean)).sum();
        assert_eq!((test.impressions, test.clicks), (5_500, 137));
        assert!(close(test.mean_exposure, mean, 1e-12));
        assert!(close(test.exposure_spread, spread, 1e-12));
        assert!(close(test.score, score, 1e-9));
        let config = FatigueConfig::default();
        let (statistic, boundary) = test.evidence(&config).expect("evidence");
        let information = k / n * spread;
        let rho = config.decay_test_mixture;
        let b =
            ((information + rho) * (((information + rho) / rho).ln() + 2.0 * 20f64.ln())).sqrt();
        assert!(close(statistic, score / information.sqrt(), 1e-9));
        assert!(close(boundary, -b / information.sqrt(), 1e-12));
        // Clicks fall as exposure grows here: the statistic is negative.
        assert!(statistic < 0.0);
        assert_eq!(DecayTest::default().evidence(&config), None);

        // An old state: the same series without the test in its folds.
        let mut series = CreativeSeries::new("cr", "cmp");
        simulate(&mut series, &config, &mut Rng(5), 60, 400, 5_000, |_, _| {
            0.03
        });
        let mut json = serde_json::to_value(&series).expect("serializes");
        assert!(json["settled"]["decay_test"].is_object());
        json["settled"]
            .as_object_mut()
            .expect("an object")
            .remove("decay_test");
        let assessment = json["settled"]["assessment"]
            .as_object_mut()
            .expect("an object");
        assessment.remove("decay_statistic");
        assessment.remove("decay_boundary");
        let mut restored: CreativeSeries =
            serde_json::from_value(json).expect("an old state restores");
        assert_eq!(restored.settled.decay_test, None);
        // The series kept all its points, so the rebuilt test is the one it always had.
        let more = |s: &mut CreativeSeries| {
            let start = T0 + 60 * HOUR_MS;
            for i in 0..400 {
                let user = format!("u-{}", i * 7);
                assert_eq!(
                    s.record_impression(start + i * 9_000, Some(&user), 10),
                    Recorded::Counted
                );
                if i % 25 == 0 {
                    assert_eq!(s.record_click(start + i * 9_000 + 5, 10), Recorded::Counted);
                }
            }
            assert!(s.advance(start + HOUR_MS, start + HOUR_MS, &config));
        };
        more(&mut series);
        more(&mut restored);
        assert_eq!(restored.settled.decay_test, series.settled.decay_test);
        assert_eq!(restored.assessment(), series.assessment());
    }

    #[test]
    fn days_remaining_follow_the_fitted_curve_and_exposure_growth() {
        let config = FatigueConfig::default();
        let mut series = Fold::new();
        // Exposure grows by 0.5 a day: 1.0 at hour 0 up to 1.5 at hour 24.
        for hour in 0..=24 {
            series.points.push(SeriesPoint {
                hour_start_ms: T0 + hour * HOUR_MS,
                impressions: 100,
                clicks: 1,
                spend_micros: 0,
                exposure: 1.0 + 0.5 * hour as f64 / 24.0,
            });
        }
        let fit = DecayFit {
            ctr_at_zero: 0.05,
            lambda: 0.4,
            lambda_std_error: 0.1,
            points: 10,
            from_exposure: 1.0,
        };
        // From 0.8 of the baseline to 0.5 of it: Δf = ln(0.8/0.5)/λ, days = Δf / 0.5.
        let last_end = T0 + 25 * HOUR_MS;
        let days = series
            .days_remaining(&fit, 0.016, 0.010, last_end, &config)
            .expect("estimable");
        let delta = |l: f64| (0.8f64 / 0.5).ln() / l / 0.5;
        assert!(close(days.estimate, delta(0.4), 1e-12), "{days:?}");
        assert!(close(days.low, delta(0.4 + Z_95 * 0.1), 1e-12), "{days:?}");
        assert!(close(days.high, delta(0.4 - Z_95 * 0.1), 1e-12), "{days:?}");
        // A slow end that is no decay at all is capped.
        let uncertain = DecayFit {
            lambda_std_error: 0.5,
            ..fit.clone()
        };
        let days = series
            .days_remaining(&uncertain, 0.016, 0.010, last_end, &config)
            .expect("estimable");
        assert_eq!(days.high, config.max_days_remaining);
        // Not declining: not estimable.
        let rising = DecayFit {
            lambda: -0.1,
            ..fit
        };
        assert_eq!(
            series.days_remaining(&rising, 0.016, 0.010, last_end, &config),
            None
        );
    }

    #[test]
    fn late_events_correct_their_own_hour_until_it_settles_and_empty_hours_make_no_point() {
        let config = FatigueConfig::default();
        let mut series = CreativeSeries::new("cr", "cmp");
        let counted = Recorded::Counted;
        assert_eq!(series.record_impression(T0 + 10, Some("u-1"), 100), counted);
        // Hour 0 closes; nothing settles yet (retention of 3 hours).
        assert!(series.advance(T0 + HOUR_MS, T0 - 2 * HOUR_MS, &config));
        assert_eq!(series.recent_points().len(), 1);
        // Late events of the closed hour 0 still count in it, and reassess it at the next advance even though no
        // further hour closes.
        assert_eq!(series.record_impression(T0 + 20, Some("u-2"), 100), counted);
        assert_eq!(series.record_click(T0 + 30, 7), counted);
        assert_eq!(
            series.record_impression(T0 + 2 * HOUR_MS + 5, Some("u-3"), 100),
            counted
        );
        assert!(series.advance(T0 + 2 * HOUR_MS, T0 - HOUR_MS, &config));
        let points = series.recent_points();
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].hour_start_ms, T0);
        assert_eq!((points[0].impressions, points[0].clicks), (2, 1));
        assert_eq!(points[0].spend_micros, 207);
        // Two users, two impressions by the end of hour 0 (the impression of hour 2 is not counted there).
        assert_eq!(points[0].exposure, 1.0);
        assert_eq!(series.assessment().reach_estimate, 2);
        // Nothing new: no change, same assessment.
        let before = series.assessment().clone();
        assert!(!series.advance(T0 + 2 * HOUR_MS, T0 - HOUR_MS, &config));
        assert_eq!(series.assessment(), &before);
        // Hour 2 closes and hour 0 settles; hour 1 had no traffic and makes no point.
        assert!(series.advance(T0 + 3 * HOUR_MS, T0 + HOUR_MS, &config));
        assert_eq!(series.recent_points().len(), 2);
        // An event of the settled hour expires: not counted, nothing changes.
        assert_eq!(series.record_click(T0 + 40, 7), Recorded::Expired);
        assert!(!series.advance(T0 + 3 * HOUR_MS, T0 + HOUR_MS, &config));
        assert!(!series.advance(T0 + 20 * HOUR_MS, T0 + 20 * HOUR_MS, &config));
        assert!(!series.has_pending_hours());
        assert_eq!(series.assessment().assessed_until_ms, T0 + 3 * HOUR_MS);
        assert_eq!(series.assessment().impressions, 3);
        assert_eq!(series.assessment().clicks, 1);
    }

    /// One event of a shuffled stream: (time, impression with user or click).
    type Event = (i64, Option<String>);

    /// Records `events` in their order, advancing like the live job: watermark = largest time seen, hours close
    /// 10 minutes and settle 12 hours behind it, checked after every event.
    fn replay(events: &[Event], config: &FatigueConfig) -> CreativeSeries {
        let mut series = CreativeSeries::new("cr", "cmp");
        let mut watermark = i64::MIN;
        for (time, user) in events {
            let recorded = match user {
                Some(user) => series.record_impression(*time, Some(user), 1_500),
                None => series.record_click(*time, 300_000),
            };
            assert_eq!(recorded, Recorded::Counted);
            watermark = watermark.max(*time);
            series.advance(watermark - 600_000, watermark - 12 * HOUR_MS, config);
        }
        series.advance(i64::MAX, i64::MAX, config);
        series
    }

    #[test]
    fn points_and_assessment_do_not_depend_on_arrival_order() {
        let config = FatigueConfig {
            baseline_hours: 6,
            baseline_min_impressions: 500,
            baseline_min_clicks: 10,
            ..FatigueConfig::default()
        };
        // 60 hours of 150 impressions from an audience of 2,000 users, CTR falling from 3 % to 1 %.
        let mut rng = Rng(11);
        let mut in_order: Vec<Event> = Vec::new();
        for hour in 0..60 {
            let ctr = 0.03 - 0.02 * hour as f64 / 60.0;
            for i in 0..150 {
                let time = T0 + hour * HOUR_MS + i * (HOUR_MS / 150);
                in_order.push((time, Some(format!("u-{}", rng.next_u64() % 2_000))));
                if rng.uniform() < ctr {
                    in_order.push((time + 1_000, None));
                }
            }
        }
        // The same events with a tenth of them held back by up to 8 hours, and the rest a few minutes out of
        // order: a different interleaving, as another task's fetches would give.
        let mut shuffled: Vec<(i64, usize)> = in_order
            .iter()
            .enumerate()
            .map(|(index, (time, _))| {
                let delay = if rng.uniform() < 0.1 {
                    (rng.uniform() * 8.0 * HOUR_MS as f64) as i64
                } else {
                    (rng.uniform() * 300_000.0) as i64
                };
                (time + delay, index)
            })
            .collect();
        shuffled.sort();
        let shuffled: Vec<Event> = shuffled
            .into_iter()
            .map(|(_, index)| in_order[index].clone())
            .collect();
        let a = replay(&in_order, &config);
        let b = replay(&shuffled, &config);
        assert_eq!(a.recent_points(), b.recent_points());
        assert_eq!(a.assessment(), b.assessment());
        assert_eq!(a.recent_points().len(), 60);
        // The decline started a CUSUM run and a decay fit, so those are compared too.
        assert!(a.assessment().change_started_at_ms.is_some() && a.assessment().decay.is_some());
        // Each point's exposure counts exactly the impressions and users up to its hour's end.
        let mut sketch = ReachSketch::new();
        let (mut identified, mut events) = (0u64, in_order.iter().peekable());
        for point in a.recent_points() {
            let end = point.hour_start_ms + HOUR_MS;
            while let Some((_, user)) = events.next_if(|(time, _)| *time < end) {
                if let Some(user) = user {
                    identified += 1;
                    sketch.insert(hash_user(user));
                }
            }
            let expected = (identified as f64 / sketch.estimate()).max(1.0);
            assert_eq!(point.exposure, expected, "hour {}", point.hour_start_ms);
        }
    }

    #[test]
    fn pending_hours_stay_bounded_when_the_caller_never_advances() {
        let mut series = CreativeSeries::new("cr", "cmp");
        let hours = MAX_PENDING_HOURS as i64 + 100;
        for hour in 0..hours {
            assert_eq!(
                series.record_impression(T0 + hour * HOUR_MS, None, 1),
                Recorded::Counted
            );
        }
        assert_eq!(series.pending.len(), MAX_PENDING_HOURS);
        let counted: u64 = series.pending.iter().map(|h| h.impressions).sum();
        assert_eq!(counted, hours as u64);
    }

    #[test]
    fn reach_sketch_estimates_within_its_error() {
        let mut user = String::new();
        for (users, tolerance) in [(10u64, 0.0), (1_000, 0.05), (200_000, 0.1)] {
            let mut sketch = ReachSketch::new();
            for i in 0..users {
                user.clear();
                let _ = write!(user, "u-{i:08}");
                sketch.insert(hash_user(&user));
                // Repeats do not count.
                sketch.insert(hash_user(&user));
            }
            let estimate = sketch.estimate();
            assert!(
                (estimate - users as f64).abs() <= tolerance * users as f64 + 0.5,
                "{users}: {estimate}"
            );
        }
        assert_eq!(ReachSketch::new().estimate(), 0.0);
    }

    #[test]
    fn state_stays_small_after_millions_of_impressions() {
        let config = FatigueConfig::default();
        let mut series = CreativeSeries::new("meta-cmp-0001-cr-3", "meta-cmp-0001");
        let mut rng = Rng(7);
        simulate(
            &mut series,
            &config,
            &mut rng,
            400,
            5_000,
            3_000_000,
            |_, _| 0.01,
        );
        assert_eq!(series.assessment().impressions, 2_000_000);
        assert_eq!(series.recent_points().len(), config.max_points);
        let json = serde_json::to_string(&series).expect("serializes");
        // A week of points as tuples (~8 KB), the sketch (1,024 characters) and the assessment.
        assert!(json.len() < 12_000, "{} bytes", json.len());
        let reach = series.assessment().reach_estimate as f64;
        // 2 million draws from 3 million users reach 3M·(1 − e^{−2/3}) ≈ 1.46 million of them.
        let expected = 3_000_000.0 * (1.0 - (-2.0f64 / 3.0).exp());
        assert!(
            (reach - expected).abs() < 0.1 * expected,
            "{reach} vs {expected}"
        );
    }

    #[test]
    fn serde_round_trip_keeps_the_state() {
        let config = FatigueConfig::default();
        let mut series = CreativeSeries::new("cr-1", "cmp-1");
        simulate(
            &mut series,
            &config,
            &mut Rng(3),
            100,
            400,
            5_000,
            |h, _| {
                if h < 50 {
                    0.03
                } else {
                    0.015
                }
            },
        );
        // Closed hours that are not settled yet, one of them with a late event since, and an open hour: all
        // part of the state too.
        for hour in 100..104 {
            for user in 0..30 {
                let time = T0 + hour * HOUR_MS + user * 1_000;
                let user = format!("new-{hour}-{user}");
                assert_eq!(
                    series.record_impression(time, Some(&user), 10),
                    Recorded::Counted
                );
            }
        }
        assert!(series.advance(T0 + 103 * HOUR_MS, T0 + 100 * HOUR_MS, &config));
        assert_eq!(
            series.record_click(T0 + 101 * HOUR_MS + 9, 5),
            Recorded::Counted
        );
        let json = serde_json::to_string(&series).expect("serializes");
        let mut restored: CreativeSeries = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(restored.settled.reach, series.settled.reach);
        assert_eq!(restored.pending, series.pending);
        assert_eq!(restored.pending.len(), 4);
        assert!(restored.amended);
        assert_eq!(restored.creative_id(), "cr-1");
        assert_eq!(restored.campaign_id(), "cmp-1");
        let (a, b): (serde_json::Value, serde_json::Value) = (
            serde_json::to_value(&restored).expect("value"),
            serde_json::to_value(&series).expect("value"),
        );
        assert_eq!(a, b);
        // The assessment is not stored: the next advance recomputes the same one.
        for s in [&mut series, &mut restored] {
            assert!(s.advance(T0 + 104 * HOUR_MS, T0 + 100 * HOUR_MS, &config));
        }
        assert_eq!(restored.recent_points(), series.recent_points());
        assert_eq!(restored.assessment(), series.assessment());
        // The sketch is one character per register.
        let sketch = b["settled"]["reach"].as_str().expect("a string");
        assert_eq!(sketch.len(), REACH_REGISTERS);
        // A damaged sketch is rejected, not silently misread.
        let damaged = json.replacen(sketch, &sketch[1..], 1);
        assert!(serde_json::from_str::<CreativeSeries>(&damaged).is_err());
        let damaged = json.replacen(sketch, &format!("/{}", &sketch[1..]), 1);
        assert!(serde_json::from_str::<CreativeSeries>(&damaged).is_err());
        // So are an hour's register entries: three characters each, registers in order.
        let users = b["pending"]
            .as_array()
            .expect("an array")
            .iter()
            .filter_map(|hour| hour["u"].as_str())
            .max_by_key(|u| u.len())
            .expect("hours with users");
        // New users that raise a register of the settled sketch are kept, the others not: 30 new users an hour
        // after 5,000 seen leave a few entries.
        assert!(
            users.len() % 3 == 0 && (6..3 * 30).contains(&users.len()),
            "{users}"
        );
        let damaged = json.replacen(users, &users[1..], 1);
        assert!(serde_json::from_str::<CreativeSeries>(&damaged).is_err());
        let swapped = format!("{}{}{}", &users[3..6], &users[..3], &users[6..]);
        let damaged = json.replacen(users, &swapped, 1);
        assert!(serde_json::from_str::<CreativeSeries>(&damaged).is_err());
    }

    #[test]
    fn config_defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(FatigueConfig::default().validate(), Ok(()));
        let partial: FatigueConfig =
            serde_json::from_str(r#"{"cusum_threshold": 8}"#).expect("partial config");
        assert_eq!(partial.cusum_threshold, 8.0);
        assert_eq!(partial.max_points, 168);
        let bad = FatigueConfig {
            design_decline: 1.0,
            ..FatigueConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(FatigueError::InvalidConfig {
                field: "design_decline",
                ..
            })
        ));
        let bad = FatigueConfig {
            min_fit_points: 500,
            ..FatigueConfig::default()
        };
        assert_eq!(
            bad.validate().map_err(|e| e.to_string()),
            Err(
                "fatigue config: min_fit_points must be at least 2 and at most max_points, got 500"
                    .into()
            )
        );
        let bad = FatigueConfig {
            cusum_threshold: f64::NAN,
            ..FatigueConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
