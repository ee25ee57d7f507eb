//! The creative-fatigue job: one [`CreativeSeries`] per creative, fed by impressions and clicks, assessed as the
//! watermark closes hours, and an assessment record in `fatigue.creatives` when a creative's status changes or a
//! report interval of event time has passed since its last record.
//!
//! Inputs: impressions and clicks, keyed by campaign and co-partitioned; a creative belongs to one campaign, so all
//! its events meet in one task without a repartition. State: the `creatives` store (key creative id), written to
//! its changelog at the commits where the creative changed.
//!
//! Lateness follows the windows' rule ([`Lateness`]): an hour closes (becomes a point and is assessed) when the
//! task's watermark passes its end plus the grace period, and settles when it passes its end plus the retention.
//! An event of a closed hour that is not settled still counts in its own hour, and the creative is reassessed at
//! the next hour boundary (a correction); an event of a settled hour is expired: it goes to `late.<topic>` and
//! is not counted. So, as long as nothing expires, the series and its assessment depend only on the events, not
//! on how the task's partitions interleaved (what a backtest relies on to reproduce the live output).
//!
//! Duplicates: an impression or click whose `event_id` was recorded already for its creative is skipped and
//! counted (`fatigue_duplicates`); the ids live in the `event_ids` store ([`crate::runtime::dedup`]) until their
//! hour settles.
//!
//! Transitions: when the job connects an alerts output (`alerts.creative`, not compacted), each change of a
//! creative's status is also written there once, as a `CreativeAlert` keyed by creative id, at the commit where the
//! status changed: the history that the compacted `fatigue.creatives` keeps only the latest of. A creative's first
//! assessment is a transition only when it is not `HEALTHY`.
//!
//! Output records are keyed by creative id and never emitted per event: at most one per creative and commit,
//! and only on a status change or after `report_interval` of event time; at the end of a bounded run, every
//! creative whose latest assessment was not emitted yet gets a record (reason `end_of_input`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use adstream_schemas::binary::Cell;
use adstream_schemas::events::{avsc, AdClick, AdImpression, AvroRecord};
use adstream_schemas::outputs::{
    CreativeAlert, CreativeFatigue, DecayCurve, FatiguePoint, FatigueStatus as OutputStatus,
};
use serde::{Deserialize, Serialize};

use super::detector::{
    hour_start, Assessment, CreativeSeries, FatigueConfig, FatigueStatus, Recorded,
};
use crate::runtime::{
    cell_long, cell_optional_text, cell_text, ChangelogStore, CodecError, Context, DecodeError,
    InputSpec, JobError, KeyedStore, Operator, OutputSpec, ProjectedDecoder, Record, SeenIds,
    TypedDecoder, WireEncoder,
};
use crate::window::Lateness;

/// Recent points carried in each output record.
const POINTS_IN_OUTPUT: usize = 24;

/// Topics and rules of the job.
#[derive(Debug, Clone)]
pub struct CreativeFatigueConfig {
    /// Impressions topic.
    pub impressions: String,
    /// Clicks topic.
    pub clicks: String,
    /// Output topic (key creative id).
    pub output: String,
    /// Status transitions topic (key creative id), if the job writes one.
    pub alerts: Option<String>,
    /// The detector's tuning.
    pub detector: FatigueConfig,
    /// How far behind the watermark an hour closes (the wait for out-of-order events) and settles (how long a
    /// closed hour still takes late events).
    pub lateness: Lateness,
    /// A creative whose status did not change gets a new record after this much event time.
    pub report_interval_ms: i64,
}

/// One creative's state in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreativeState {
    /// The detector's series.
    pub series: CreativeSeries,
    /// Status of the last record emitted; None before the first.
    pub emitted_status: Option<FatigueStatus>,
    /// `assessed_until_ms` of the last record emitted.
    pub emitted_until_ms: Option<i64>,
    /// Correlation id of the last event recorded.
    pub correlation_id: String,
    /// The series was assessed since the last record, which did not report it (no status change, report interval
    /// not passed): reported at the end of a bounded run.
    #[serde(default)]
    pub unreported: bool,
}

/// Counters of the job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FatigueCounters {
    /// Impressions and clicks recorded.
    pub events: u64,
    /// Records emitted because the status changed.
    pub status_changes: u64,
    /// Records emitted because the report interval passed.
    pub periodic: u64,
    /// Records emitted at the end of a bounded run.
    pub end_of_input: u64,
    /// Events of settled hours, sent to late topics.
    pub expired: u64,
    /// Impressions and clicks whose id was recorded already, skipped.
    pub duplicates: u64,
    /// Status transitions written to the alerts output.
    pub transitions: u64,
}

/// The operator; see the module doc.
pub struct CreativeFatigueJob {
    config: CreativeFatigueConfig,
    creatives: KeyedStore<String, CreativeState>,
    /// Ids of the events recorded, to skip a second copy.
    seen: SeenIds,
    /// Impressions and clicks by projection (the fields of [`EVENT_FIELDS`], borrowed), with the full decoders for
    /// writer schemas the projection does not cover.
    impressions: ProjectedDecoder,
    clicks: ProjectedDecoder,
    impression_decoder: TypedDecoder,
    click_decoder: TypedDecoder,
    encoder: Option<WireEncoder>,
    /// Encoder of the alerts output, when the job has one.
    alert_encoder: Option<WireEncoder>,
    /// Per partition, creatives with hours not settled yet.
    open: HashMap<i32, HashSet<String>>,
    /// Per partition, the hour boundaries up to which hours were closed and settled.
    advanced_until: HashMap<i32, (i64, i64)>,
    counters: FatigueCounters,
    value_buffer: Vec<u8>,
}

const IMPRESSIONS: usize = 0;
/// Index of the alerts output, when there is one.
const ALERTS: usize = 1;

impl CreativeFatigueJob {
    /// The operator for `config`.
    pub fn new(config: CreativeFatigueConfig) -> Result<CreativeFatigueJob, JobError> {
        config
            .detector
            .validate()
            .map_err(|e| JobError::Settings(e.to_string()))?;
        if config.report_interval_ms <= 0 {
            return Err(JobError::Settings(format!(
                "need a report interval > 0, got {} ms",
                config.report_interval_ms
            )));
        }
        // An event counts until its hour (at most an hour past the event) settles.
        let seen = SeenIds::new(
            "event_ids",
            config.lateness.retention_ms.saturating_add(3_600_000),
        );
        Ok(CreativeFatigueJob {
            config,
            creatives: KeyedStore::new("creatives"),
            seen,
            impressions: ProjectedDecoder::new(
                AdImpression::FULL_NAME,
                avsc::AD_IMPRESSION,
                &EVENT_FIELDS,
            )?,
            clicks: ProjectedDecoder::new(AdClick::FULL_NAME, avsc::AD_CLICK, &EVENT_FIELDS)?,
            impression_decoder: TypedDecoder::new(AdImpression::FULL_NAME, avsc::AD_IMPRESSION)?,
            click_decoder: TypedDecoder::new(AdClick::FULL_NAME, avsc::AD_CLICK)?,
            encoder: None,
            alert_encoder: None,
            open: HashMap::new(),
            advanced_until: HashMap::new(),
            counters: FatigueCounters::default(),
            value_buffer: Vec::new(),
        })
    }

    /// Counters so far.
    pub fn counters(&self) -> FatigueCounters {
        self.counters
    }

    /// Records event `event` (its kind, id and time) of a creative into its series unless its hour is settled
    /// (expired) or it was recorded already (a duplicate).
    fn record(
        &mut self,
        partition: i32,
        creative_id: &str,
        campaign_id: &str,
        correlation_id: &str,
        event: (&str, &str, i64),
        apply: impl FnOnce(&mut CreativeSeries) -> Recorded,
    ) -> Outcome {
        // Two lookups instead of an owned key per event: the hot path allocates nothing.
        if self.creatives.get(partition, creative_id).is_none() {
            self.creatives.put(
                partition,
                creative_id.to_owned(),
                CreativeState {
                    series: CreativeSeries::new(creative_id, campaign_id),
                    emitted_status: None,
                    emitted_until_ms: None,
                    correlation_id: String::new(),
                    unreported: false,
                },
            );
        }
        let (kind, event_id, event_time) = event;
        // Lateness first: a copy of an expired event goes to the late topic like the first one did. Read-only, so
        // that a duplicate does not mark the creative changed.
        let accepts = self
            .creatives
            .get(partition, creative_id)
            .is_some_and(|state| state.series.accepts(event_time));
        if accepts
            && !self
                .seen
                .insert(partition, event_time, &[kind, creative_id], event_id)
        {
            self.counters.duplicates += 1;
            return Outcome::Duplicate;
        }
        let Some(state) = self.creatives.get_mut(partition, creative_id) else {
            return Outcome::Counted;
        };
        if apply(&mut state.series) == Recorded::Expired {
            self.counters.expired += 1;
            return Outcome::Expired;
        }
        state.correlation_id.clear();
        state.correlation_id.push_str(correlation_id);
        let open = self.open.entry(partition).or_default();
        if !open.contains(creative_id) {
            open.insert(creative_id.to_owned());
        }
        self.counters.events += 1;
        Outcome::Counted
    }

    /// Closes and settles hours as soon as the watermark passes an hour boundary (plus grace, plus retention), not
    /// only at commits: hours closed together share the assessment that follows them, so advancing hour by hour
    /// keeps the records independent of how often the job commits.
    fn advance_as_time_passes(
        &mut self,
        partition: i32,
        watermark: Option<i64>,
        ctx: &mut Context<'_>,
    ) {
        let Some(watermark) = watermark else {
            return;
        };
        let close_until = watermark.saturating_sub(self.config.lateness.grace_ms);
        let settle_until = watermark.saturating_sub(self.config.lateness.retention_ms);
        let boundaries = (hour_start(close_until), hour_start(settle_until));
        if self
            .advanced_until
            .get(&partition)
            .is_some_and(|advanced| *advanced >= boundaries)
        {
            return;
        }
        self.advanced_until.insert(partition, boundaries);
        self.advance(partition, close_until, settle_until, ctx);
    }

    /// Advances the series of `partition`'s creatives (see [`CreativeSeries::advance`]) and emits what is due.
    fn advance(
        &mut self,
        partition: i32,
        close_until: i64,
        settle_until: i64,
        ctx: &mut Context<'_>,
    ) {
        let Some(open) = self.open.get_mut(&partition) else {
            return;
        };
        let mut due = Vec::new();
        open.retain(|creative_id| {
            let Some(state) = self.creatives.get_mut(partition, creative_id.as_str()) else {
                return false;
            };
            if state
                .series
                .advance(close_until, settle_until, &self.config.detector)
            {
                let assessment = state.series.assessment();
                let changed = state.emitted_status != Some(assessment.status);
                let interval_passed = state.emitted_until_ms.is_none_or(|last| {
                    assessment.assessed_until_ms.saturating_sub(last)
                        >= self.config.report_interval_ms
                });
                if changed || interval_passed {
                    due.push((creative_id.clone(), Reason::of(changed)));
                } else {
                    state.unreported = true;
                }
            }
            state.series.has_pending_hours()
        });
        for (creative_id, reason) in due {
            self.emit(partition, &creative_id, reason, ctx);
        }
    }

    fn emit(&mut self, partition: i32, creative_id: &str, reason: Reason, ctx: &mut Context<'_>) {
        let Some(state) = self.creatives.get_mut(partition, creative_id) else {
            return;
        };
        let assessment = state.series.assessment();
        let record = output_record(
            &state.series,
            assessment,
            state.emitted_status,
            reason,
            ctx.now_ms,
            &state.correlation_id,
        );
        state.emitted_status = Some(assessment.status);
        state.emitted_until_ms = Some(assessment.assessed_until_ms);
        state.unreported = false;
        let timestamp = assessment.assessed_until_ms;
        let previous = record.previous_status;
        let transition = reason == Reason::StatusChange
            && (previous.is_some() || record.status != OutputStatus::Healthy);
        match reason {
            Reason::StatusChange => self.counters.status_changes += 1,
            Reason::Periodic => self.counters.periodic += 1,
            Reason::EndOfInput => self.counters.end_of_input += 1,
        }
        let Some(encoder) = &self.encoder else {
            return;
        };
        self.value_buffer.clear();
        match encoder.encode(&record, &mut self.value_buffer) {
            Ok(()) => ctx.emit(
                0,
                creative_id.as_bytes(),
                &self.value_buffer,
                timestamp,
                &record.correlation_id,
            ),
            // Built here from the detector's guarded numbers; a failure is a bug, not input to skip.
            Err(e) => tracing::error!(error = %e, creative_id, "fatigue record does not encode"),
        }
        if let (true, Some(encoder)) = (transition, &self.alert_encoder) {
            let alert = CreativeAlert {
                alert_id: format!("{creative_id}|{timestamp}"),
                creative_id: record.creative_id,
                campaign_id: record.campaign_id,
                status: record.status,
                previous_status: previous,
                score: record.score,
                baseline_ctr: record.baseline_ctr,
                current_ctr: record.current_ctr,
                change_started_at: record.change_started_at,
                event_time: timestamp,
                emitted_at: record.emitted_at,
                correlation_id: record.correlation_id,
            };
            self.value_buffer.clear();
            match encoder.encode(&alert, &mut self.value_buffer) {
                Ok(()) => {
                    ctx.emit(
                        ALERTS,
                        creative_id.as_bytes(),
                        &self.value_buffer,
                        timestamp,
                        &alert.correlation_id,
                    );
                    self.counters.transitions += 1;
                }
                Err(e) => {
                    tracing::error!(error = %e, creative_id, "creative alert does not encode")
                }
            }
        }
    }
}

/// What became of an impression or click.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Recorded in its creative's series.
    Counted,
    /// Its hour was settled: not recorded, sent to the late topic.
    Expired,
    /// Its id was recorded already: skipped.
    Duplicate,
}

/// Why a record is emitted (the output's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    StatusChange,
    Periodic,
    EndOfInput,
}

impl Reason {
    fn of(status_changed: bool) -> Reason {
        if status_changed {
            Reason::StatusChange
        } else {
            Reason::Periodic
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Reason::StatusChange => "status_change",
            Reason::Periodic => "periodic",
            Reason::EndOfInput => "end_of_input",
        }
    }
}

fn output_status(status: FatigueStatus) -> OutputStatus {
    match status {
        FatigueStatus::Healthy => OutputStatus::Healthy,
        FatigueStatus::Limited => OutputStatus::Limited,
        FatigueStatus::Fatigued => OutputStatus::Fatigued,
    }
}

fn output_record(
    series: &CreativeSeries,
    a: &Assessment,
    previous: Option<FatigueStatus>,
    reason: Reason,
    now_ms: i64,
    correlation_id: &str,
) -> CreativeFatigue {
    let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let points = series.recent_points();
    CreativeFatigue {
        creative_id: series.creative_id().to_owned(),
        campaign_id: series.campaign_id().to_owned(),
        status: output_status(a.status),
        previous_status: previous.map(output_status),
        score: a.score,
        baseline_ctr: a.baseline_ctr,
        current_ctr: a.current_ctr,
        baseline_cost_per_click_micros: a.baseline_cost_per_click_micros,
        current_cost_per_click_micros: a.current_cost_per_click_micros,
        change_statistic: a.change_statistic,
        change_threshold: a.change_threshold,
        change_detected_at: a.change_detected_at_ms,
        change_started_at: a.change_started_at_ms,
        exposure: a.exposure,
        reach_estimate: to_i64(a.reach_estimate),
        impressions: to_i64(a.impressions),
        clicks: to_i64(a.clicks),
        spend_micros: a.spend_micros,
        decay: a.decay.as_ref().map(|d| DecayCurve {
            ctr_at_zero: d.ctr_at_zero,
            lambda: d.lambda,
            lambda_std_error: d.lambda_std_error,
            points: i32::try_from(d.points).unwrap_or(i32::MAX),
            from_exposure: d.from_exposure,
        }),
        days_remaining: a.days_remaining.map(|d| d.estimate),
        days_remaining_low: a.days_remaining.map(|d| d.low),
        days_remaining_high: a.days_remaining.map(|d| d.high),
        recent_points: points[points.len().saturating_sub(POINTS_IN_OUTPUT)..]
            .iter()
            .map(|p| FatiguePoint {
                hour_start: p.hour_start_ms,
                impressions: to_i64(p.impressions),
                clicks: to_i64(p.clicks),
                spend_micros: p.spend_micros,
                exposure: p.exposure,
            })
            .collect(),
        assessed_until: a.assessed_until_ms,
        reason: reason.as_str().to_owned(),
        emitted_at: now_ms,
        correlation_id: correlation_id.to_owned(),
    }
}

impl Operator for CreativeFatigueJob {
    fn inputs(&self) -> Vec<InputSpec> {
        vec![
            InputSpec::stream(&self.config.impressions),
            InputSpec::stream(&self.config.clicks),
        ]
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        let mut outputs = vec![OutputSpec::topology(
            &self.config.output,
            CreativeFatigue::SCHEMA,
        )];
        if let Some(alerts) = &self.config.alerts {
            outputs.push(OutputSpec::topology(alerts, CreativeAlert::SCHEMA));
        }
        outputs
    }

    fn stores(&mut self) -> Vec<&mut dyn ChangelogStore> {
        vec![&mut self.creatives, &mut self.seen]
    }

    fn set_output_schema_ids(&mut self, ids: &[u32]) -> Result<(), CodecError> {
        let expected = 1 + usize::from(self.config.alerts.is_some());
        let (Some(output), true) = (ids.first(), ids.len() == expected) else {
            return Err(CodecError::OutputIds {
                expected,
                got: ids.len(),
            });
        };
        self.encoder = Some(WireEncoder::new(CreativeFatigue::SCHEMA, *output)?);
        self.alert_encoder = match ids.get(ALERTS) {
            Some(id) => Some(WireEncoder::new(CreativeAlert::SCHEMA, *id)?),
            None => None,
        };
        Ok(())
    }

    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), DecodeError> {
        let impression = record.input == IMPRESSIONS;
        let mut cells = [Cell::Null; EVENT_FIELDS.len()];
        let projected = if impression {
            self.impressions
                .decode(ctx.schemas, record.value, &mut cells)?
        } else {
            self.clicks.decode(ctx.schemas, record.value, &mut cells)?
        };
        let e = if projected {
            AdEvent::from_cells(&cells)?
        } else if impression {
            let i: AdImpression = self.impression_decoder.decode(ctx.schemas, record.value)?;
            AdEvent {
                event_id: Cow::Owned(i.event_id),
                event_time: i.event_time,
                campaign_id: Cow::Owned(i.campaign_id),
                creative_id: Cow::Owned(i.creative_id),
                cost_micros: i.cost_micros,
                user_id: i.user_id.map(Cow::Owned),
            }
        } else {
            let c: AdClick = self.click_decoder.decode(ctx.schemas, record.value)?;
            AdEvent {
                event_id: Cow::Owned(c.event_id),
                event_time: c.event_time,
                campaign_id: Cow::Owned(c.campaign_id),
                creative_id: Cow::Owned(c.creative_id),
                cost_micros: c.cost_micros,
                user_id: c.user_id.map(Cow::Owned),
            }
        };
        validate(&e.creative_id, &e.campaign_id, e.cost_micros)?;
        let recorded = if impression {
            self.record(
                record.partition,
                &e.creative_id,
                &e.campaign_id,
                record.correlation_id,
                ("impression", &e.event_id, e.event_time),
                |s| s.record_impression(e.event_time, e.user_id.as_deref(), e.cost_micros),
            )
        } else {
            self.record(
                record.partition,
                &e.creative_id,
                &e.campaign_id,
                record.correlation_id,
                ("click", &e.event_id, e.event_time),
                |s| s.record_click(e.event_time, e.cost_micros),
            )
        };
        let event_time = e.event_time;
        if recorded == Outcome::Expired {
            ctx.late(
                record,
                &format!(
                    "event time {event_time} is in an hour already settled: past the retention of {} ms",
                    self.config.lateness.retention_ms
                ),
            );
        }
        self.advance_as_time_passes(record.partition, ctx.watermark, ctx);
        Ok(())
    }

    fn on_commit(&mut self, ctx: &mut Context<'_>) {
        let partitions: Vec<i32> = self.open.keys().copied().collect();
        for partition in partitions {
            let watermark = ctx.watermark_of(partition);
            self.advance_as_time_passes(partition, watermark, ctx);
        }
        self.seen.expire(|partition| ctx.watermark_of(partition));
    }

    fn on_end_of_input(&mut self, ctx: &mut Context<'_>) {
        // Nothing more will come: the hours still open are complete, and the output gets every creative's final
        // assessment, however the emissions before fell.
        let partitions: Vec<i32> = self.open.keys().copied().collect();
        for partition in partitions {
            self.advance(partition, i64::MAX, i64::MAX, ctx);
        }
        let unreported: Vec<(i32, String)> = self
            .creatives
            .iter()
            .filter(|(_, _, state)| state.unreported)
            .map(|(partition, creative_id, _)| (partition, creative_id.clone()))
            .collect();
        for (partition, creative_id) in unreported {
            self.emit(partition, &creative_id, Reason::EndOfInput, ctx);
        }
    }

    fn on_revoked(&mut self, partition: i32) {
        self.open.remove(&partition);
        self.advanced_until.remove(&partition);
    }

    fn on_restored(&mut self, partitions: &[i32]) {
        for partition in partitions {
            self.open.remove(partition);
        }
        for (partition, creative_id, state) in self.creatives.iter() {
            if partitions.contains(&partition) && state.series.has_pending_hours() {
                self.open
                    .entry(partition)
                    .or_default()
                    .insert(creative_id.clone());
            }
        }
    }

    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let c = self.counters;
        vec![
            (
                "fatigue_events",
                "Impressions and clicks recorded into creative series.",
                c.events,
            ),
            (
                "fatigue_status_changes",
                "Fatigue records emitted because a creative's status changed.",
                c.status_changes,
            ),
            (
                "fatigue_periodic_reports",
                "Fatigue records emitted because the report interval passed.",
                c.periodic,
            ),
            (
                "fatigue_end_of_input_reports",
                "Fatigue records emitted with the final assessment at the end of a bounded run.",
                c.end_of_input,
            ),
            (
                "fatigue_expired",
                "Impressions and clicks of hours already settled, sent to late topics.",
                c.expired,
            ),
            (
                "fatigue_transitions",
                "Creative status transitions written to the alerts topic.",
                c.transitions,
            ),
            (
                "fatigue_duplicates",
                "Impressions and clicks whose event id was recorded already, skipped.",
                c.duplicates,
            ),
        ]
    }
}

/// The fields of impressions and clicks the job reads, in cell order.
const EVENT_FIELDS: [&str; 6] = [
    "event_id",
    "event_time",
    "campaign_id",
    "creative_id",
    "cost_micros",
    "user_id",
];

/// An impression or a click as the job reads it; strings borrowed from the record when read by projection.
struct AdEvent<'a> {
    event_id: Cow<'a, str>,
    event_time: i64,
    campaign_id: Cow<'a, str>,
    creative_id: Cow<'a, str>,
    cost_micros: i64,
    /// Impressions only: clicks carry it but the series do not use it.
    user_id: Option<Cow<'a, str>>,
}

impl<'a> AdEvent<'a> {
    /// The event from the cells of [`EVENT_FIELDS`].
    fn from_cells(cells: &[Cell<'a>]) -> Result<AdEvent<'a>, DecodeError> {
        let text = |index| cell_text(cells, &EVENT_FIELDS, index).map(Cow::Borrowed);
        let long = |index| cell_long(cells, &EVENT_FIELDS, index);
        Ok(AdEvent {
            event_id: text(0)?,
            event_time: long(1)?,
            campaign_id: text(2)?,
            creative_id: text(3)?,
            cost_micros: long(4)?,
            user_id: cell_optional_text(cells, &EVENT_FIELDS, 5)?.map(Cow::Borrowed),
        })
    }
}

/// Rules every impression and click must meet.
fn validate(creative_id: &str, campaign_id: &str, cost_micros: i64) -> Result<(), DecodeError> {
    if creative_id.is_empty() || campaign_id.is_empty() {
        return Err(DecodeError::Invalid(
            "creative_id or campaign_id is empty".into(),
        ));
    }
    if cost_micros < 0 {
        return Err(DecodeError::Invalid(format!(
            "cost_micros is negative ({cost_micros})"
        )));
    }
    Ok(())
}
