//! Replays ad events through the fatigue detector and scores its detections against planted ground truth.
//!
//! # Replay
//!
//! Events arrive in emit order, which is slightly out of event-time order, as in the live job. Each event is
//! recorded in its creative's [`CreativeSeries`]; the watermark is the largest event time seen minus
//! [`EvaluationCriteria::watermark_lag_ms`], and whenever it passes an hour boundary every series closes its
//! hours up to it and settles those older than [`EvaluationCriteria::retention_ms`] (events of settled hours are
//! counted as expired, not recorded). At the end of the input every remaining hour is closed. A creative is *detected* the first
//! time its status is `fatigued` after a close; its detection time is the end of the last closed hour then (event
//! time, so the delay does not depend on how fast the replay runs).
//!
//! # Ground truth
//!
//! From the generator's planted parameters: a planted creative's CTR at the end of the data is
//! `exp(−λ (f_end − f0))` times its baseline, with `f_end` its final exposure (impressions / reach) and `f0` its
//! onset exposure (no decline if `f_end ≤ f0`). Then:
//!
//! - **positive**: planted, and the CTR at the end fell to at most `(1 − min_true_decline)` of the baseline;
//! - **negative**: not planted (its CTR never changes);
//! - **borderline**: planted but declined less than that by the end (including creatives whose exposure never
//!   reached the onset). Whether detecting them is right depends on how small a decline one cares about, so they
//!   count neither for nor against recall and precision; they are listed, with whether they were detected.
//!
//! Recall is TP / (TP + FN) over positives, precision TP / (TP + FP) over detections of positives and
//! negatives. The delay of a true positive is its detection time minus its planted onset time, in hours (negative
//! if the detector fired before the onset, which the report counts separately).
//!
//! # Oracle
//!
//! For scale, each positive is also run through a test no detector can have: the likelihood ratio of its
//! planted curve (true baseline CTR, onset and λ) against its true constant CTR, over the detector's hourly
//! points, with an alarm above `e^3` (a false alarm at most `e^-3`, 5 %, by Ville's inequality). By the
//! Neyman–Pearson lemma nothing detects that creative's decline earlier at that false-alarm level, so its
//! median decline at detection is a floor for any detector's.

use std::collections::HashMap;
use std::fmt;

use chrono::DateTime;
use serde::{Deserialize, Serialize};

use super::detector::{
    hour_start, CreativeSeries, FatigueConfig, FatigueStatus, Recorded, SeriesPoint, HOUR_MS,
};

/// The oracle's alarm threshold on its log-likelihood ratio (see the module documentation).
const ORACLE_THRESHOLD: f64 = 3.0;

/// One input event of a replay.
#[derive(Debug, Clone, PartialEq)]
pub enum FatigueEvent {
    /// An ad impression.
    Impression {
        /// The creative shown.
        creative_id: String,
        /// Its campaign.
        campaign_id: String,
        /// Event time, epoch milliseconds.
        time_ms: i64,
        /// The user it was shown to, if known.
        user_id: Option<String>,
        /// Its cost, micros.
        cost_micros: i64,
    },
    /// A click on an ad.
    Click {
        /// The creative clicked.
        creative_id: String,
        /// Event time, epoch milliseconds.
        time_ms: i64,
        /// Its cost, micros.
        cost_micros: i64,
    },
}

/// Planted ground truth of one creative (the generator's `CreativeTruth`, as plain values so this crate does not
/// depend on the generator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreativeTruthInput {
    /// Creative id.
    pub creative_id: String,
    /// Campaign id.
    pub campaign_id: String,
    /// Whether a fatigue curve was planted.
    pub planted: bool,
    /// Exposure `f0` at which the planted decay starts.
    pub onset_frequency: Option<f64>,
    /// Planted decay rate λ per unit of exposure.
    pub lambda: Option<f64>,
    /// Event time at which exposure crossed `f0`, if it did.
    pub onset_ms: Option<i64>,
    /// CTR before any fatigue.
    pub baseline_ctr: f64,
    /// Impressions emitted.
    pub impressions: u64,
    /// Distinct users reached.
    pub reach: u64,
}

/// How detections are judged, and the replay's watermark lag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvaluationCriteria {
    /// A planted creative is positive when its CTR at the end of the data fell by at least this share of its
    /// baseline; planted creatives that declined less are borderline. Default 0.3.
    pub min_true_decline: f64,
    /// Watermark = largest event time seen minus this (the live job's grace for out-of-order events). Default
    /// 10 minutes.
    pub watermark_lag_ms: i64,
    /// Hours are settled (a later event of theirs expires) this long behind the watermark (the live job's
    /// retention). Default 12 hours.
    pub retention_ms: i64,
}

impl Default for EvaluationCriteria {
    fn default() -> Self {
        Self {
            min_true_decline: 0.3,
            watermark_lag_ms: 600_000,
            retention_ms: 12 * HOUR_MS,
        }
    }
}

/// A creative's class in the ground truth (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TruthClass {
    /// Planted and declined by at least `min_true_decline`.
    Positive,
    /// Planted but declined less than `min_true_decline`; excluded from recall and precision.
    Borderline,
    /// Not planted.
    Negative,
}

/// The evaluation of one creative of the ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreativeEvaluation {
    /// Creative id.
    pub creative_id: String,
    /// Campaign id.
    pub campaign_id: String,
    /// Ground-truth class.
    pub truth: TruthClass,
    /// Planted CTR decline at the end of the data, as a share of the baseline (0 if none).
    pub true_decline: f64,
    /// Planted onset time, if the onset happened.
    pub onset_ms: Option<i64>,
    /// When the status first became `fatigued` (end of the last closed hour then).
    pub detected_at_ms: Option<i64>,
    /// `detected_at_ms − onset_ms` in hours, when both exist.
    pub delay_hours: Option<f64>,
    /// The planted decline at the detection, from the detector's exposure estimate then (so within the reach
    /// sketch's error): how far the creative had fatigued when it was flagged.
    pub decline_at_detection: Option<f64>,
    /// The planted decline at which the oracle test (see the module documentation) fires, for positives.
    pub oracle_decline: Option<f64>,
    /// Status after the last hour.
    pub final_status: FatigueStatus,
    /// Score after the last hour.
    pub final_score: f64,
    /// The detector's baseline CTR, if it completed one.
    pub baseline_ctr: Option<f64>,
    /// The detector's current CTR after the last hour.
    pub current_ctr: Option<f64>,
    /// The planted baseline CTR.
    pub planted_baseline_ctr: f64,
    /// Impressions the detector counted.
    pub impressions: u64,
    /// Clicks the detector counted.
    pub clicks: u64,
}

/// Recall, precision and detection delay of a replay, with one row per creative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    /// The criteria used.
    pub criteria: EvaluationCriteria,
    /// Events replayed.
    pub events: u64,
    /// Events of hours already settled, not recorded.
    #[serde(default)]
    pub expired_events: u64,
    /// Creatives that had events but no ground truth (not scored).
    pub creatives_without_truth: usize,
    /// Positives detected.
    pub true_positives: usize,
    /// Negatives detected.
    pub false_positives: usize,
    /// Positives not detected.
    pub false_negatives: usize,
    /// Negatives not detected.
    pub true_negatives: usize,
    /// Borderline creatives (not scored).
    pub borderline: usize,
    /// Borderline creatives that were detected.
    pub borderline_detected: usize,
    /// TP / (TP + FN); `None` without positives.
    pub recall: Option<f64>,
    /// TP / (TP + FP); `None` without detections.
    pub precision: Option<f64>,
    /// Median delay of the true positives, hours; `None` without any.
    pub median_delay_hours: Option<f64>,
    /// Median planted decline at detection over the true positives (see
    /// [`CreativeEvaluation::decline_at_detection`]).
    pub median_decline_at_detection: Option<f64>,
    /// Median planted decline at which the oracle test fires, over the positives it detects: a floor for
    /// [`EvaluationReport::median_decline_at_detection`].
    pub oracle_median_decline: Option<f64>,
    /// True positives detected before their planted onset.
    pub detected_before_onset: usize,
    /// Per creative: positives first, then borderline, then negatives, each by creative id.
    pub creatives: Vec<CreativeEvaluation>,
}

struct Tracked {
    series: CreativeSeries,
    detected_at_ms: Option<i64>,
    /// The detector's exposure estimate at the detection.
    detected_at_exposure: Option<f64>,
}

impl Tracked {
    fn note_detection(&mut self) {
        let assessment = self.series.assessment();
        if self.detected_at_ms.is_none() && assessment.status == FatigueStatus::Fatigued {
            self.detected_at_ms = Some(assessment.assessed_until_ms);
            self.detected_at_exposure = Some(assessment.exposure);
        }
    }
}

/// A replay in progress, for callers that only know the ground truth after the events (the generator writes
/// its manifest when drained): [`Replay::push`] every event, then [`Replay::finish`]. [`evaluate`] does both.
pub struct Replay {
    config: FatigueConfig,
    criteria: EvaluationCriteria,
    creatives: HashMap<String, Tracked>,
    max_time_ms: Option<i64>,
    /// Hours starting before this have been closed in every series.
    closed_boundary_ms: i64,
    events: u64,
    expired_events: u64,
}

impl Replay {
    /// An empty replay.
    pub fn new(config: &FatigueConfig, criteria: &EvaluationCriteria) -> Self {
        Self {
            config: config.clone(),
            criteria: criteria.clone(),
            creatives: HashMap::new(),
            max_time_ms: None,
            closed_boundary_ms: i64::MIN,
            events: 0,
            expired_events: 0,
        }
    }

    /// Records one event and closes hours if the watermark passed an hour boundary.
    pub fn push(&mut self, event: FatigueEvent) {
        self.events += 1;
        let (time_ms, recorded) = match event {
            FatigueEvent::Impression {
                creative_id,
                campaign_id,
                time_ms,
                user_id,
                cost_micros,
            } => {
                let recorded = self
                    .tracked(creative_id, &campaign_id)
                    .series
                    .record_impression(time_ms, user_id.as_deref(), cost_micros);
                (time_ms, recorded)
            }
            FatigueEvent::Click {
                creative_id,
                time_ms,
                cost_micros,
            } => {
                // A click before any impression of its creative is rare (clicks follow their impression); the
                // series then starts without a campaign id, which the report takes from the truth anyway.
                let recorded = self
                    .tracked(creative_id, "")
                    .series
                    .record_click(time_ms, cost_micros);
                (time_ms, recorded)
            }
        };
        if recorded == Recorded::Expired {
            self.expired_events += 1;
        }
        let max_time_ms = self.max_time_ms.map_or(time_ms, |t| t.max(time_ms));
        self.max_time_ms = Some(max_time_ms);
        let watermark_ms = max_time_ms.saturating_sub(self.criteria.watermark_lag_ms);
        if hour_start(watermark_ms) > self.closed_boundary_ms {
            self.close_all(watermark_ms);
        }
    }

    fn tracked(&mut self, creative_id: String, campaign_id: &str) -> &mut Tracked {
        self.creatives
            .entry(creative_id)
            .or_insert_with_key(|id| Tracked {
                series: CreativeSeries::new(id, campaign_id),
                detected_at_ms: None,
                detected_at_exposure: None,
            })
    }

    fn close_all(&mut self, until_ms: i64) {
        for tracked in self.creatives.values_mut() {
            let settle_until_ms = until_ms.saturating_sub(self.criteria.retention_ms);
            if tracked
                .series
                .advance(until_ms, settle_until_ms, &self.config)
            {
                tracked.note_detection();
            }
        }
        self.closed_boundary_ms = hour_start(until_ms);
    }

    /// Closes every remaining hour (the input is complete) and scores the detections against `truth`.
    pub fn finish(mut self, truth: &[CreativeTruthInput]) -> EvaluationReport {
        self.close_all(i64::MAX);
        let criteria = self.criteria;
        let mut rows: Vec<CreativeEvaluation> = truth
            .iter()
            .map(|t| {
                let (true_decline, class) = classify(t, &criteria);
                let tracked = self.creatives.get(&t.creative_id);
                let decline_at_detection = tracked
                    .and_then(|c| c.detected_at_exposure)
                    .map(|exposure| planted_decline(t, exposure));
                let detected_at_ms = tracked.and_then(|c| c.detected_at_ms);
                let oracle_decline = tracked
                    .filter(|_| class == TruthClass::Positive)
                    .and_then(|c| oracle_decline(t, c.series.recent_points()));
                let assessment = tracked.map(|c| c.series.assessment());
                CreativeEvaluation {
                    creative_id: t.creative_id.clone(),
                    campaign_id: t.campaign_id.clone(),
                    truth: class,
                    true_decline,
                    onset_ms: t.onset_ms,
                    detected_at_ms,
                    decline_at_detection,
                    oracle_decline,
                    delay_hours: detected_at_ms
                        .zip(t.onset_ms)
                        .map(|(detected, onset)| (detected - onset) as f64 / HOUR_MS as f64),
                    final_status: assessment.map_or(FatigueStatus::Healthy, |a| a.status),
                    final_score: assessment.map_or(0.0, |a| a.score),
                    baseline_ctr: assessment.and_then(|a| a.baseline_ctr),
                    current_ctr: assessment.and_then(|a| a.current_ctr),
                    planted_baseline_ctr: t.baseline_ctr,
                    impressions: assessment.map_or(0, |a| a.impressions),
                    clicks: assessment.map_or(0, |a| a.clicks),
                }
            })
            .collect();
        rows.sort_by(|a, b| (a.truth, &a.creative_id).cmp(&(b.truth, &b.creative_id)));
        let known: std::collections::HashSet<&str> =
            truth.iter().map(|t| t.creative_id.as_str()).collect();
        let creatives_without_truth = self
            .creatives
            .keys()
            .filter(|id| !known.contains(id.as_str()))
            .count();

        let count = |class: TruthClass, detected: bool| {
            rows.iter()
                .filter(|r| r.truth == class && r.detected_at_ms.is_some() == detected)
                .count()
        };
        let (tp, fn_) = (
            count(TruthClass::Positive, true),
            count(TruthClass::Positive, false),
        );
        let (fp, tn) = (
            count(TruthClass::Negative, true),
            count(TruthClass::Negative, false),
        );
        let borderline_detected = count(TruthClass::Borderline, true);
        let borderline = borderline_detected + count(TruthClass::Borderline, false);
        let mut delays: Vec<f64> = rows
            .iter()
            .filter(|r| r.truth == TruthClass::Positive)
            .filter_map(|r| r.delay_hours)
            .collect();
        delays.sort_by(f64::total_cmp);
        let detected_before_onset = delays.iter().filter(|d| **d < 0.0).count();
        let mut declines: Vec<f64> = rows
            .iter()
            .filter(|r| r.truth == TruthClass::Positive)
            .filter_map(|r| r.decline_at_detection)
            .collect();
        declines.sort_by(f64::total_cmp);
        let mut oracle: Vec<f64> = rows.iter().filter_map(|r| r.oracle_decline).collect();
        oracle.sort_by(f64::total_cmp);
        EvaluationReport {
            criteria,
            events: self.events,
            expired_events: self.expired_events,
            creatives_without_truth,
            true_positives: tp,
            false_positives: fp,
            false_negatives: fn_,
            true_negatives: tn,
            borderline,
            borderline_detected,
            recall: share(tp, tp + fn_),
            precision: share(tp, tp + fp),
            median_delay_hours: median(&delays),
            median_decline_at_detection: median(&declines),
            oracle_median_decline: median(&oracle),
            detected_before_onset,
            creatives: rows,
        }
    }
}

/// Replays `events` (in emit order) through one [`CreativeSeries`] per creative and scores the detections
/// against `truth`; see the module documentation for the rules.
pub fn evaluate(
    events: impl IntoIterator<Item = FatigueEvent>,
    truth: &[CreativeTruthInput],
    config: &FatigueConfig,
    criteria: &EvaluationCriteria,
) -> EvaluationReport {
    let mut replay = Replay::new(config, criteria);
    for event in events {
        replay.push(event);
    }
    replay.finish(truth)
}

/// The planted decline at the end of the data and the creative's class.
fn classify(truth: &CreativeTruthInput, criteria: &EvaluationCriteria) -> (f64, TruthClass) {
    if !truth.planted {
        return (0.0, TruthClass::Negative);
    }
    let final_exposure = if truth.reach > 0 {
        truth.impressions as f64 / truth.reach as f64
    } else {
        0.0
    };
    let decline = planted_decline(truth, final_exposure);
    let class = if decline >= criteria.min_true_decline {
        TruthClass::Positive
    } else {
        TruthClass::Borderline
    };
    (decline, class)
}

/// The planted decline at which the oracle test first exceeds [`ORACLE_THRESHOLD`] over `points`: the
/// log-likelihood ratio of an hour with `n` impressions and `k` clicks at exposure `f` is
/// `k·ln(c) − n·p·(c − 1)` with `c = exp(−λ (f − f0))` the planted factor and `p` the planted baseline CTR.
/// Points before the onset add nothing, so the detector's dropping its oldest points does not matter.
fn oracle_decline(truth: &CreativeTruthInput, points: &[SeriesPoint]) -> Option<f64> {
    let mut log_ratio = 0.0;
    for p in points {
        let decline = planted_decline(truth, p.exposure);
        let factor = 1.0 - decline;
        if factor <= 0.0 {
            return None;
        }
        log_ratio += p.clicks as f64 * factor.ln()
            - p.impressions as f64 * truth.baseline_ctr * (factor - 1.0);
        if log_ratio > ORACLE_THRESHOLD {
            return Some(decline);
        }
    }
    None
}

/// The planted CTR decline at `exposure`: `1 − exp(−λ (f − f0))` past the onset, else 0.
fn planted_decline(truth: &CreativeTruthInput, exposure: f64) -> f64 {
    let decline = match (truth.planted, truth.onset_frequency, truth.lambda) {
        (true, Some(f0), Some(lambda)) if exposure > f0 => 1.0 - (-lambda * (exposure - f0)).exp(),
        _ => 0.0,
    };
    if decline.is_finite() {
        decline
    } else {
        0.0
    }
}

fn share(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Median of sorted values; the mean of the middle two for an even count.
fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

fn format_time(time_ms: Option<i64>) -> String {
    time_ms
        .and_then(DateTime::from_timestamp_millis)
        .map_or_else(|| "-".to_string(), |t| t.format("%m-%d %H:%M").to_string())
}

fn format_share(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |d| format!("{:.1}%", d * 100.0))
}

fn format_option(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

impl fmt::Display for EvaluationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "fatigue evaluation: {} events, {} creatives ({} positive, {} negative, {} borderline: planted but \
             declined < {:.0}% by the end)",
            self.events,
            self.creatives.len(),
            self.true_positives + self.false_negatives,
            self.false_positives + self.true_negatives,
            self.borderline,
            self.criteria.min_true_decline * 100.0
        )?;
        writeln!(
            f,
            "  TP {}  FP {}  FN {}  TN {}  borderline detected {}/{}",
            self.true_positives,
            self.false_positives,
            self.false_negatives,
            self.true_negatives,
            self.borderline_detected,
            self.borderline
        )?;
        writeln!(
            f,
            "  recall {}  precision {}  median delay after onset {} h  median planted decline at detection {}  \
             (detected before onset: {})",
            format_option(self.recall, 3),
            format_option(self.precision, 3),
            format_option(self.median_delay_hours, 1),
            format_share(self.median_decline_at_detection),
            self.detected_before_onset
        )?;
        writeln!(
            f,
            "  an oracle knowing each planted curve (likelihood ratio > e^{ORACLE_THRESHOLD}) fires at a median decline of {}",
            format_share(self.oracle_median_decline)
        )?;
        if self.expired_events > 0 {
            writeln!(
                f,
                "  {} events came after their hour was settled (retention {} h) and were not recorded",
                self.expired_events,
                self.criteria.retention_ms / HOUR_MS
            )?;
        }
        if self.creatives_without_truth > 0 {
            writeln!(
                f,
                "  {} creatives had events but no ground truth",
                self.creatives_without_truth
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<24} {:<10} {:>8} {:>11} {:>11} {:>8} {:>8} {:>9} {:>6} {:>8} {:>8} {:>7}",
            "creative",
            "truth",
            "decline",
            "onset",
            "detected",
            "delay h",
            "at det.",
            "status",
            "score",
            "ctr0",
            "ctr now",
            "clicks"
        )?;
        for row in &self.creatives {
            let truth = match row.truth {
                TruthClass::Positive => "positive",
                TruthClass::Borderline => "borderline",
                TruthClass::Negative => "negative",
            };
            let status = match row.final_status {
                FatigueStatus::Healthy => "healthy",
                FatigueStatus::Limited => "limited",
                FatigueStatus::Fatigued => "fatigued",
            };
            writeln!(
                f,
                "{:<24} {:<10} {:>7.0}% {:>11} {:>11} {:>8} {:>8} {:>9} {:>6.2} {:>8} {:>8} {:>7}",
                row.creative_id,
                truth,
                row.true_decline * 100.0,
                format_time(row.onset_ms),
                format_time(row.detected_at_ms),
                format_option(row.delay_hours, 1),
                row.decline_at_detection
                    .map_or_else(|| "-".to_string(), |d| format!("{:.0}%", d * 100.0)),
                status,
                row.final_score,
                format_option(row.baseline_ctr, 4),
                format_option(row.current_ctr, 4),
                row.clicks
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_793_491_200_000; // 2026-11-01T00:00Z

    fn truth(
        id: &str,
        planted: bool,
        onset_ms: Option<i64>,
        final_exposure: f64,
    ) -> CreativeTruthInput {
        CreativeTruthInput {
            creative_id: id.to_string(),
            campaign_id: "cmp".to_string(),
            planted,
            onset_frequency: planted.then_some(2.0),
            lambda: planted.then_some(0.5),
            onset_ms,
            baseline_ctr: 0.02,
            impressions: (final_exposure * 1000.0) as u64,
            reach: 1000,
        }
    }

    /// 1,000 impressions an hour for each creative; every 50th is clicked (2 %), and for `falling` every 100th
    /// from hour 48 on (1 %). Emitted in time order except that clicks come 30 s after their impression.
    fn events(hours: i64) -> Vec<FatigueEvent> {
        let mut out = Vec::new();
        for hour in 0..hours {
            for i in 0..1000i64 {
                let time_ms = T0 + hour * HOUR_MS + i * 3_600;
                for (id, every) in [
                    ("falling", if hour < 48 { 50 } else { 100 }),
                    ("steady", 50),
                ] {
                    out.push(FatigueEvent::Impression {
                        creative_id: id.to_string(),
                        campaign_id: "cmp".to_string(),
                        time_ms,
                        user_id: None,
                        cost_micros: 1_000,
                    });
                    if i % every == 0 {
                        out.push(FatigueEvent::Click {
                            creative_id: id.to_string(),
                            time_ms: time_ms + 30_000,
                            cost_micros: 300_000,
                        });
                    }
                }
            }
        }
        out
    }

    #[test]
    fn scores_detections_against_the_truth() {
        let onset = T0 + 48 * HOUR_MS;
        let truth = [
            truth("falling", true, Some(onset), 5.0),
            truth("steady", false, None, 5.0),
            // Planted, but exposure ended at 2.2: CTR fell by 1 − e^{−0.1} ≈ 10 %, under the 30 % criterion.
            truth("barely", true, Some(onset), 2.2),
        ];
        let report = evaluate(
            events(96),
            &truth,
            &FatigueConfig::default(),
            &EvaluationCriteria::default(),
        );
        assert_eq!(
            (
                report.true_positives,
                report.false_positives,
                report.false_negatives,
                report.true_negatives
            ),
            (1, 0, 0, 1),
            "{report}"
        );
        assert_eq!((report.borderline, report.borderline_detected), (1, 0));
        assert_eq!(report.recall, Some(1.0));
        assert_eq!(report.precision, Some(1.0));
        assert_eq!(report.creatives_without_truth, 0);
        let falling = &report.creatives[0];
        assert_eq!(falling.creative_id, "falling");
        assert_eq!(falling.truth, TruthClass::Positive);
        let detected = falling.detected_at_ms.expect("detected");
        // Detection is at an hour end after the drop, within a day of it.
        assert_eq!(detected % HOUR_MS, 0);
        assert!(
            detected > onset && detected <= onset + 24 * HOUR_MS,
            "{report}"
        );
        let delay = (detected - onset) as f64 / HOUR_MS as f64;
        assert_eq!(falling.delay_hours, Some(delay));
        assert_eq!(report.median_delay_hours, Some(delay));
        assert_eq!(report.detected_before_onset, 0);
        assert_eq!(report.creatives[1].truth, TruthClass::Borderline);
        assert!((report.creatives[1].true_decline - (1.0 - (-0.1f64).exp())).abs() < 1e-12);
        assert_eq!(report.creatives[2].final_status, FatigueStatus::Healthy);
        assert_eq!(report.events, 2 * 96 * 1000 + 96 * 20 + 48 * 10 + 48 * 20);
        let table = report.to_string();
        assert!(table.contains("TP 1  FP 0  FN 0  TN 1"), "{table}");
        assert!(table.contains("falling"), "{table}");
    }

    #[test]
    fn truth_classes_follow_the_final_planted_decline() {
        let criteria = EvaluationCriteria::default();
        // Exposure 3 with f0 = 2, λ = 0.5: CTR at e^{−0.5} = 0.61 of baseline, a 39 % decline: positive.
        let (decline, class) = classify(&truth("a", true, Some(T0), 3.0), &criteria);
        assert!((decline - (1.0 - (-0.5f64).exp())).abs() < 1e-12);
        assert_eq!(class, TruthClass::Positive);
        // Exposure never reached the onset: no decline, borderline (planted).
        assert_eq!(
            classify(&truth("b", true, None, 1.5), &criteria),
            (0.0, TruthClass::Borderline)
        );
        assert_eq!(
            classify(&truth("c", false, None, 9.0), &criteria),
            (0.0, TruthClass::Negative)
        );
        // No reach recorded: exposure unknown, treated as no decline.
        let mut unknown = truth("d", true, Some(T0), 3.0);
        unknown.reach = 0;
        assert_eq!(classify(&unknown, &criteria).1, TruthClass::Borderline);
    }

    #[test]
    fn the_oracle_fires_when_its_likelihood_ratio_passes_e_cubed() {
        // f0 = 2, λ = 0.5, baseline 2 %: at exposure 3 the factor is e^{−0.5}, and an hour of 1,000 impressions
        // with 12 clicks adds 12·(−0.5) − 1000·0.02·(e^{−0.5} − 1) = 1.869; the second such hour passes 3.
        let t = truth("a", true, Some(T0), 3.0);
        let point = |hour: i64, exposure: f64| SeriesPoint {
            hour_start_ms: T0 + hour * HOUR_MS,
            impressions: 1_000,
            clicks: 12,
            spend_micros: 0,
            exposure,
        };
        let before_onset = point(0, 1.5);
        assert_eq!(
            oracle_decline(&t, &[before_onset.clone(), point(1, 3.0)]),
            None
        );
        let fired = oracle_decline(&t, &[before_onset, point(1, 3.0), point(2, 3.0)]);
        assert!((fired.expect("fires") - (1.0 - (-0.5f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[1.0, 2.0, 10.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 4.0, 10.0]), Some(3.0));
    }
}
