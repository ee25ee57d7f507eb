//! Creative fatigue: detecting that a creative's click-through rate declines as its audience sees it again and
//! again, scoring how far it has declined, and predicting when it will have lost a given share.
//!
//! # Layout
//!
//! - `detector` — per-creative state ([`detector::CreativeSeries`]) and all the maths: hourly series, reach
//!   sketch, baseline, CUSUM, Poisson decay fit, score, status, days remaining. Pure.
//! - `evaluate` — replays events through the detector the way the live job does and scores the detections
//!   against planted ground truth (recall, precision, detection delay). Pure.
//! - `points`   — fit points as text (`exposure,impressions,clicks`), read for the decay fit.
//! - `job`      — the job's settings, ports and constructor for the job registry.
//! - `operator` — the `creative-fatigue` job: one series per creative in a state store, records on status
//!   changes and at a bounded periodic rate.
//!
//! # Method
//!
//! **Series.** Events are counted per creative in UTC hours. An hour closes when the caller's watermark passes
//! its end; a closed hour with traffic becomes a point: impressions, clicks, spend and *exposure*, the creative's
//! impressions per reached user up to the hour's end. Reach comes from a 1,024-register HyperLogLog sketch of user
//! ids (about 3 % error, Ertl's improved estimator), so the state has a fixed size however many users a creative
//! reaches; each unsettled hour keeps the registers its own users set, merged in order as hours are folded. A
//! closed hour still takes late events until it settles (the caller's retention): the points from it on are then
//! recomputed from the settled state, so the series is a function of the events, not of their arrival order.
//! The last `max_points` points (a week by default) are kept.
//!
//! **Baseline.** The creative's own first `baseline_hours` (24) of closed hours, extended until they hold at
//! least `baseline_min_impressions` and `baseline_min_clicks`, give its baseline CTR `p0` and cost per click.
//! Comparing a creative with itself avoids judging a low-CTR format as fatigued. The click minimum (30) only
//! makes the baseline meaningful (about `1/sqrt(clicks)` relative noise, 18 %): the CUSUM absorbs that noise with
//! its margin below, and the decay test does not use the baseline at all. A higher minimum pushed the baseline
//! of low-traffic creatives past their fatigue onset (with 100, creatives with about a hundred clicks a week
//! were never assessed).
//!
//! **Change detection.** After the baseline, every closed hour feeds a one-sided Bernoulli CUSUM designed for a
//! drop of CTR from `p0` to `p1 = (1 − d)·p0` (`design_decline` d = 0.2):
//! `S ← max(0, S + k·ln(p1/p0) + (n − k)·ln((1 − p1)/(1 − p0)))` for `k` clicks in `n` impressions, with an
//! alarm when `S > h` (`cusum_threshold`, 10). It is the sequential log-likelihood-ratio test for exactly this
//! alternative, so it weighs every impression and click correctly whether an hour has ten impressions or ten
//! thousand.
//!
//! *Its false-alarm guarantee*: while the creative's CTR is the reference, the mean number of hours with traffic
//! before a false alarm (the in-control average run length) is at least `e^h` (22,026 hours, 2.5 years, at
//! `h` = 10). Why: an hour's increment is the log-likelihood ratio of that hour's clicks, so under the reference
//! `E[e^increment] = 1`; the Shiryaev–Roberts statistic `R_n = Σ_k Π_{i=k..n} e^{increment_i}` then makes
//! `R_n − n` a martingale, `e^S ≤ R_n`, and optional stopping at the first `R_n ≥ e^h` gives a mean of at least
//! `e^h` hours (Lorden 1971; Pollak 1987), whatever the hours' traffic. The bound holds for the true CTR; the
//! margin below puts the reference under the baseline, which only lengthens it.
//! Page–Hinkley was the alternative: it works on a stream of values with a fixed tolerance `δ` and threshold `λ`
//! in the values' units, so on hourly CTRs it would weigh a quiet night hour like a busy evening and need its
//! thresholds retuned per CTR level.
//!
//! The CUSUM's `p0` is not the baseline CTR itself but its lower confidence bound
//! `p0·(1 − z/sqrt(baseline clicks))` (`baseline_margin` z = 1): a CUSUM treats `p0` as exact, and a baseline
//! that came out a standard error high would otherwise put a steady creative near the CUSUM's reference value,
//! where over weeks a random excursion reaches any threshold. The start of the statistic's current run above
//! zero is the estimate of when the decline began; the alarm stays until `S` returns to zero.
//!
//! **Decay test.** The CUSUM compares hours with the first day, so a baseline's noise and a decline that is still
//! small both delay it. Fatigue is a decline *with exposure*, so the second test asks that directly, over every
//! hour of the creative's life: the score test of `λ = 0` against `λ > 0` in the Poisson model
//! `clicks ~ Poisson(impressions · exp(β0 − λ·exposure))`. Its score is `U = Σ k·(f − f̄)` (the clicks' exposure
//! minus what a constant CTR would give, `f̄` the impression-weighted mean exposure) with variance
//! `V = (K/N)·Σ n·(f − f̄)²`: given the hours' impressions and the total clicks, a constant CTR spreads the clicks
//! over the hours multinomially, so `U` has mean 0 and exactly that variance, and the baseline CTR is not needed.
//! Six running sums (Welford's form) hold it: an hour costs O(1) and the state does not grow (a state stored
//! before the test existed rebuilds it from the points it kept). Like the CUSUM, it is looked at only once the
//! baseline is complete (it needs no baseline CTR, but the score and status do). It confirms a decline when `U < −b(V)` with Robbins' normal-mixture boundary
//! `b = sqrt((V + ρ)·(ln((V + ρ)/ρ) + 2·ln(1/α)))` (`decay_test_alpha` α = 0.05, `decay_test_mixture` ρ = 30).
//!
//! *Its false-alarm guarantee*: for a martingale with variance process `V` (and near-normal increments, as sums
//! of many clicks are), the probability that it *ever* crosses `−b(V)` is at most `α`, by Ville's inequality
//! applied to the normal mixture of its exponential martingales: a time-uniform bound, so looking every hour,
//! for the creative's whole life, needs no correction. A creative whose CTR does not depend on exposure is
//! flagged by the test at most with probability about 5 % over its life (about, because `U` is centred on the
//! estimated mean exposure rather than a fixed one). Measured: 2 of 210 non-fatiguing creatives flagged over
//! eight generator seeds (see BENCHMARKS.md). ρ sets where the boundary is tightest: about a creative with a few
//! hundred clicks a day after its exposure began to grow.
//!
//! Either alarm confirms a decline; `change_detected_at_ms` is the earlier. On the generator's planted fatigue
//! (five seeds, BENCHMARKS.md) creatives are now flagged at a median decline of 34–38 % instead of 37–44 %, and
//! the creatives with about a hundred clicks a week are found too. Much earlier is not possible at this
//! false-alarm level: the likelihood-ratio test of each creative's true planted curve, which knows its CTR,
//! onset and λ as no detector can, fires at a median 25–30 % decline (`fatigue evaluate` prints it; see
//! [`evaluate`]).
//!
//! **Decay fit.** Over the points since the run started, pooled into points of at least
//! `min_fit_point_impressions`, `clicks ~ Poisson(impressions · exp(β0 + β1·exposure))` is fitted by maximum
//! likelihood (Newton's method, which for the log link equals IRLS; not least squares on log CTR, which is
//! biased and breaks on hours without clicks). `λ = −β1`, its standard error comes from the inverse Fisher
//! information, and `exp(β0)` is the CTR at exposure 0. The fit needs `min_fit_points` points and
//! `min_fit_clicks` clicks.
//!
//! **Current CTR, score and status.** The current CTR is the more precise of two estimates: the fit's prediction
//! at the current exposure (it follows the decline without a window's lag; its standard error comes from the
//! fit's covariance) or the pooled CTR of the last `current_window_hours` (relative standard error about
//! `1/sqrt(clicks)`); right after a run starts, or when exposure hardly moved, the window wins. The score is the
//! decline `1 − current/p0` (against the baseline CTR itself) divided by `score_full_decline`, clamped to [0, 1].
//! Status: `fatigued` when an alarm (CUSUM or decay test) is on and the score is at least `fatigued_score`; `limited`
//! when the alarm is on with a smaller score, or without alarm when the score is at least `limited_score`;
//! `healthy` otherwise (and always before the baseline is complete). Requiring the alarm for `fatigued` means a
//! noisy low hour or a noisy fit alone never fatigues a creative.
//!
//! **Days remaining.** Until the fitted CTR falls below `θ·p0` (`remaining_share` θ = 0.5): on the fitted curve
//! that happens `Δf = ln(fitted current / (θ·p0)) / λ` units of exposure after the current exposure (equivalently
//! `f* − f` with `f* = (β0 − ln(θ·p0))/λ`), and exposure grows by the growth of the last `growth_window_hours`
//! per day. The interval uses `λ ± 1.96·se`; the slow end is capped at `max_days_remaining` when it is not a
//! decay at all. Not estimable (`None`) without a fit, with `λ ≤ 0`, or when exposure does not grow.
//!
//! Every ratio and logarithm is guarded: outputs never hold NaN or infinity; what cannot be estimated is `None`.

pub mod detector;
pub mod evaluate;
pub mod job;
pub mod operator;
pub mod points;
