//! The reconciliation job's second stage: per campaign, event counts per UTC hour and the platform's latest row per
//! ad and window, compared window by window.
//!
//! Inputs, co-partitioned by adstream campaign id: impressions, clicks and the repartitioned report rows. State:
//! the `campaigns` store (key campaign id, a [`CampaignBook`]), written to its changelog at the commits where the
//! campaign changed.
//!
//! - An event adds to its campaign's UTC hour, once: a second event with the same `event_id` (a resend) is
//!   counted in `reconciliation_duplicates` and skipped ([`SeenIds`], kept as long as its hour is).
//! - The event side of a window is the sum of the hours inside it, so a window must start and end on UTC hours
//!   (every account time zone with a whole-hour offset); a report row whose window does not is counted in
//!   `reconciliation_unaligned_windows` and left out.
//! - A report row replaces the campaign's row for the same ad, granularity and window unless it is older (by
//!   `reported_at`) than the one held: a restatement overwrites, a redelivered old row does not.
//! - At each commit, every window of a changed or still-pending campaign is judged ([`judge`]); a row is written
//!   when its status or numbers differ from the last row written for the window, an alert row when the status
//!   turns MISMATCHED or stops being it. Rows are never written per event.
//! - Time: a window is PENDING until the task's watermark passes `window_end + restatement`; then final. It is
//!   kept `retention` longer (late events and restatements still correct it), then dropped with the hours no
//!   window can need any more; an event or a report row older than what was dropped is late (`late.<topic>`).
//!   At the end of a bounded run every window is judged final.

use std::collections::{BTreeMap, HashMap, HashSet};

use adstream_schemas::events::{avsc, AdClick, AdImpression, Platform};
use adstream_schemas::outputs::Granularity;
use adstream_schemas::platform::PlatformReport;
use adstream_schemas::reconciliation::{CampaignReconciliation, ReconciliationStatus};
use serde::{Deserialize, Serialize};

use super::repartition::{campaign_key, invalid_report};
use crate::runtime::{
    ChangelogStore, CodecError, Context, DecodeError, InputSpec, JobError, KeyedStore, Operator,
    OutputSpec, Record, SeenIds, TypedDecoder, WireEncoder,
};

const HOUR_MS: i64 = 3_600_000;
/// The longest report window (a day; 25 hours on the day a time zone leaves summer time).
const LONGEST_WINDOW_MS: i64 = 25 * HOUR_MS;

const IMPRESSIONS: usize = 0;
const CLICKS: usize = 1;

const ROWS: usize = 0;
const ALERTS: usize = 1;

/// Topics and rules of the job.
#[derive(Debug, Clone)]
pub struct ReconciliationConfig {
    /// Impressions topic (keyed by campaign).
    pub impressions: String,
    /// Clicks topic (keyed by campaign).
    pub clicks: String,
    /// The repartitioned report rows (keyed by campaign), written by the first stage.
    pub reports: String,
    /// Partition count of the inputs.
    pub partitions: i32,
    /// Output: one row per campaign and window (compacted).
    pub rows: String,
    /// Output: a row each time a window's status turns MISMATCHED or stops being it.
    pub alerts: String,
    /// Share of difference above which a final window is MISMATCHED.
    pub threshold: f64,
    /// Fewest impressions (on the larger side) for a final window to be judged at all.
    pub min_impressions: i64,
    /// How long after a window's end the platform may still restate it: PENDING until then.
    pub restatement_ms: i64,
    /// How long a final window is kept for corrections before it is dropped.
    pub retention_ms: i64,
}

/// Impressions, clicks and spend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Impressions.
    pub impressions: i64,
    /// Clicks.
    pub clicks: i64,
    /// Spend in micros.
    pub spend_micros: i64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.impressions = self.impressions.saturating_add(other.impressions);
        self.clicks = self.clicks.saturating_add(other.clicks);
        self.spend_micros = self.spend_micros.saturating_add(other.spend_micros);
    }
}

/// One ad's row of a report window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdRow {
    /// Its numbers.
    pub counts: Counts,
    /// When the connector read them.
    pub reported_at: i64,
}

/// What was last written for a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Written {
    /// Its status.
    pub status: ReconciliationStatus,
    /// The events' numbers.
    pub events: Counts,
    /// The platform's numbers.
    pub platform: Counts,
}

/// One window the platform reported for the campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportWindow {
    /// Window length.
    pub granularity: Granularity,
    /// Start, inclusive (UTC epoch millis).
    pub start: i64,
    /// End, exclusive.
    pub end: i64,
    /// Latest row per ad id.
    pub ads: BTreeMap<String, AdRow>,
    /// The last row written for it.
    pub written: Option<Written>,
}

/// One campaign's state in the store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CampaignBook {
    /// Platform of the campaign (from its report rows).
    pub platform: Option<Platform>,
    /// Its ad account.
    pub account_id: String,
    /// Event counts per UTC hour start.
    pub hours: BTreeMap<i64, Counts>,
    /// The platform's windows, ordered by (start, granularity).
    pub windows: Vec<ReportWindow>,
    /// Hours before this were dropped: events and report windows before it are late.
    pub dropped_before: i64,
    /// Correlation id of the last input that changed the campaign.
    pub correlation_id: String,
}

impl CampaignBook {
    fn events_in(&self, start: i64, end: i64) -> Counts {
        let mut total = Counts::default();
        for counts in self.hours.range(start..end).map(|(_, c)| c) {
            total.add(counts);
        }
        total
    }

    fn has_pending(&self, final_before: i64) -> bool {
        self.windows.iter().any(|w| w.end > final_before)
    }
}

/// Counters of the job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconciliationCounters {
    /// Impressions and clicks counted.
    pub events: u64,
    /// Impressions and clicks whose `event_id` was counted already, skipped.
    pub duplicates: u64,
    /// Report rows taken (new, or a restatement).
    pub report_rows: u64,
    /// Report rows older than the row held for their ad and window.
    pub stale_report_rows: u64,
    /// Report rows whose window is not on UTC hours.
    pub unaligned_windows: u64,
    /// Events and report rows older than what was dropped, sent to late topics.
    pub late: u64,
    /// Comparison rows written.
    pub rows: u64,
    /// Alert rows written.
    pub alerts: u64,
}

/// The operator; see the module doc.
pub struct ReconciliationJob {
    config: ReconciliationConfig,
    campaigns: KeyedStore<String, CampaignBook>,
    /// Event ids counted, per partition.
    seen: SeenIds,
    impression_decoder: TypedDecoder,
    click_decoder: TypedDecoder,
    report_decoder: TypedDecoder,
    row_encoder: Option<WireEncoder>,
    alert_encoder: Option<WireEncoder>,
    /// Per partition, campaigns changed since the last commit or with windows still pending.
    open: HashMap<i32, HashSet<String>>,
    counters: ReconciliationCounters,
    key_buffer: String,
    value_buffer: Vec<u8>,
}

/// The judgement of one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// Status.
    pub status: ReconciliationStatus,
    /// Relative differences of impressions, clicks and spend.
    pub differences: [f64; 3],
}

/// `|a - b| / max(a, b)`: 0 when equal (both zero included), 1 when one side is zero.
pub fn relative_difference(a: i64, b: i64) -> f64 {
    let larger = a.max(b);
    if larger <= 0 {
        return 0.0;
    }
    (a - b).unsigned_abs() as f64 / larger as f64
}

/// Judges a window: PENDING unless `is_final`; then INSUFFICIENT_VOLUME under `min_impressions` on both sides,
/// MISMATCHED when a difference is above `threshold`, MATCHED otherwise.
pub fn judge(
    events: &Counts,
    platform: &Counts,
    is_final: bool,
    threshold: f64,
    min_impressions: i64,
) -> Judgement {
    let differences = [
        relative_difference(events.impressions, platform.impressions),
        relative_difference(events.clicks, platform.clicks),
        relative_difference(events.spend_micros, platform.spend_micros),
    ];
    let status = if !is_final {
        ReconciliationStatus::Pending
    } else if events.impressions.max(platform.impressions) < min_impressions {
        ReconciliationStatus::InsufficientVolume
    } else if differences.iter().any(|d| *d > threshold) {
        ReconciliationStatus::Mismatched
    } else {
        ReconciliationStatus::Matched
    };
    Judgement {
        status,
        differences,
    }
}

impl ReconciliationJob {
    /// The operator for `config`.
    pub fn new(config: ReconciliationConfig) -> Result<ReconciliationJob, JobError> {
        if !(config.threshold.is_finite() && config.threshold >= 0.0 && config.threshold < 1.0) {
            return Err(JobError::Settings(format!(
                "threshold must be a share in [0, 1), got {}",
                config.threshold
            )));
        }
        if config.restatement_ms < 0 || config.retention_ms < 0 {
            return Err(JobError::Settings(
                "restatement and retention must not be negative".into(),
            ));
        }
        // An event can be counted as long as its hour is held: the restatement look-back, the retention and the
        // longest window after it.
        let seen = SeenIds::new(
            "event_ids",
            config
                .restatement_ms
                .saturating_add(config.retention_ms)
                .saturating_add(LONGEST_WINDOW_MS),
        );
        Ok(ReconciliationJob {
            config,
            campaigns: KeyedStore::new("campaigns"),
            seen,
            impression_decoder: TypedDecoder::new(
                "io.adstream.ads.AdImpression",
                avsc::AD_IMPRESSION,
            )?,
            click_decoder: TypedDecoder::new("io.adstream.ads.AdClick", avsc::AD_CLICK)?,
            report_decoder: TypedDecoder::new(PlatformReport::FULL_NAME, PlatformReport::SCHEMA)?,
            row_encoder: None,
            alert_encoder: None,
            open: HashMap::new(),
            counters: ReconciliationCounters::default(),
            key_buffer: String::new(),
            value_buffer: Vec::new(),
        })
    }

    /// Counters so far.
    pub fn counters(&self) -> ReconciliationCounters {
        self.counters
    }

    fn touch(&mut self, partition: i32, campaign_id: &str) {
        let open = self.open.entry(partition).or_default();
        if !open.contains(campaign_id) {
            open.insert(campaign_id.to_owned());
        }
    }

    /// Adds an event to its campaign's hour unless it was counted already; false when the hour was already
    /// dropped (late).
    fn count_event(
        &mut self,
        partition: i32,
        event: (&str, &str),
        campaign_id: &str,
        event_time: i64,
        counts: Counts,
        correlation_id: &str,
    ) -> bool {
        let hour = event_time.div_euclid(HOUR_MS) * HOUR_MS;
        if self
            .campaigns
            .get(partition, campaign_id)
            .is_some_and(|book| hour < book.dropped_before)
        {
            return false;
        }
        // Lateness first, so that a copy of a late event is late like the first one.
        let (kind, event_id) = event;
        if !self
            .seen
            .insert(partition, event_time, &[kind, campaign_id], event_id)
        {
            self.counters.duplicates += 1;
            return true;
        }
        self.key_buffer.clear();
        self.key_buffer.push_str(campaign_id);
        let book =
            self.campaigns
                .get_or_insert_with(partition, &self.key_buffer, CampaignBook::default);
        book.hours.entry(hour).or_default().add(&counts);
        book.correlation_id.clear();
        book.correlation_id.push_str(correlation_id);
        self.counters.events += 1;
        self.touch(partition, campaign_id);
        true
    }

    /// Takes a report row; false when its window was already dropped (late).
    fn take_report(
        &mut self,
        partition: i32,
        report: PlatformReport,
        correlation_id: &str,
    ) -> bool {
        if report.window_start % HOUR_MS != 0 || report.window_end % HOUR_MS != 0 {
            self.counters.unaligned_windows += 1;
            return true;
        }
        campaign_key(&report, &mut self.key_buffer);
        let campaign_id = self.key_buffer.clone();
        if self
            .campaigns
            .get(partition, &campaign_id)
            .is_some_and(|book| report.window_start < book.dropped_before)
        {
            return false;
        }
        let book =
            self.campaigns
                .get_or_insert_with(partition, &campaign_id, CampaignBook::default);
        book.platform = Some(report.platform);
        if book.account_id != report.account_id {
            book.account_id = report.account_id.clone();
        }
        let position = book.windows.binary_search_by(|w| {
            (w.start, w.granularity, w.end).cmp(&(
                report.window_start,
                report.granularity,
                report.window_end,
            ))
        });
        let window = match position {
            Ok(index) => &mut book.windows[index],
            Err(index) => {
                book.windows.insert(
                    index,
                    ReportWindow {
                        granularity: report.granularity,
                        start: report.window_start,
                        end: report.window_end,
                        ads: BTreeMap::new(),
                        written: None,
                    },
                );
                &mut book.windows[index]
            }
        };
        let row = AdRow {
            counts: Counts {
                impressions: report.impressions,
                clicks: report.clicks,
                spend_micros: report.spend_micros,
            },
            reported_at: report.reported_at,
        };
        match window.ads.get(&report.ad_id) {
            Some(held) if held.reported_at > row.reported_at => {
                self.counters.stale_report_rows += 1;
            }
            _ => {
                window.ads.insert(report.ad_id, row);
                self.counters.report_rows += 1;
            }
        }
        book.correlation_id.clear();
        book.correlation_id.push_str(correlation_id);
        self.touch(partition, &campaign_id);
        true
    }

    /// Judges the open campaigns of `partition` with windows final before `final_before`, writes what changed,
    /// and drops what is older than `drop_before`.
    fn judge_partition(
        &mut self,
        partition: i32,
        final_before: i64,
        drop_before: i64,
        ctx: &mut Context<'_>,
    ) {
        let Some(open) = self.open.remove(&partition) else {
            return;
        };
        let mut still_open = HashSet::new();
        for campaign_id in open {
            self.judge_campaign(partition, &campaign_id, final_before, ctx);
            let Some(book) = self.campaigns.get(partition, campaign_id.as_str()) else {
                continue;
            };
            let droppable = book.windows.iter().any(|w| w.end <= drop_before)
                || book
                    .hours
                    .keys()
                    .next()
                    .is_some_and(|h| *h < drop_before.saturating_sub(LONGEST_WINDOW_MS));
            let pending = book.has_pending(final_before);
            if droppable {
                if let Some(book) = self.campaigns.get_mut(partition, campaign_id.as_str()) {
                    book.windows.retain(|w| w.end > drop_before);
                    // No window still held, nor any a report could still bring, starts before this.
                    let keep_from = drop_before
                        .saturating_sub(LONGEST_WINDOW_MS)
                        .div_euclid(HOUR_MS)
                        .saturating_mul(HOUR_MS);
                    book.hours = book.hours.split_off(&keep_from);
                    book.dropped_before = book.dropped_before.max(keep_from);
                }
            }
            if pending || droppable {
                still_open.insert(campaign_id);
            }
        }
        if !still_open.is_empty() {
            self.open.insert(partition, still_open);
        }
    }

    fn judge_campaign(
        &mut self,
        partition: i32,
        campaign_id: &str,
        final_before: i64,
        ctx: &mut Context<'_>,
    ) {
        let Some(book) = self.campaigns.get(partition, campaign_id) else {
            return;
        };
        let mut changed = Vec::new();
        for (index, window) in book.windows.iter().enumerate() {
            let events = book.events_in(window.start, window.end);
            let mut platform = Counts::default();
            for row in window.ads.values() {
                platform.add(&row.counts);
            }
            let judgement = judge(
                &events,
                &platform,
                window.end <= final_before,
                self.config.threshold,
                self.config.min_impressions,
            );
            let written = Written {
                status: judgement.status,
                events,
                platform,
            };
            if window.written != Some(written) {
                let was_mismatched = window
                    .written
                    .is_some_and(|w| w.status == ReconciliationStatus::Mismatched);
                let is_mismatched = judgement.status == ReconciliationStatus::Mismatched;
                changed.push((index, written, judgement, was_mismatched != is_mismatched));
            }
        }
        if changed.is_empty() {
            return;
        }
        let mut rows = Vec::with_capacity(changed.len());
        for (index, written, judgement, alert) in &changed {
            let window = &book.windows[*index];
            rows.push((
                CampaignReconciliation {
                    campaign_id: campaign_id.to_owned(),
                    platform: book.platform.unwrap_or(Platform::Unknown),
                    account_id: book.account_id.clone(),
                    granularity: window.granularity,
                    window_start: window.start,
                    window_end: window.end,
                    event_impressions: written.events.impressions,
                    event_clicks: written.events.clicks,
                    event_spend_micros: written.events.spend_micros,
                    platform_impressions: written.platform.impressions,
                    platform_clicks: written.platform.clicks,
                    platform_spend_micros: written.platform.spend_micros,
                    ads_reported: i32::try_from(window.ads.len()).unwrap_or(i32::MAX),
                    impressions_difference: judgement.differences[0],
                    clicks_difference: judgement.differences[1],
                    spend_difference: judgement.differences[2],
                    threshold: self.config.threshold,
                    status: judgement.status,
                    reported_at: window
                        .ads
                        .values()
                        .map(|r| r.reported_at)
                        .max()
                        .unwrap_or(0),
                    emitted_at: ctx.now_ms,
                    correlation_id: book.correlation_id.clone(),
                },
                *alert,
            ));
        }
        if let Some(book) = self.campaigns.get_mut(partition, campaign_id) {
            for (index, written, _, _) in &changed {
                book.windows[*index].written = Some(*written);
            }
        }
        for (row, alert) in rows {
            self.write(ROWS, &row, ctx);
            if alert {
                self.write(ALERTS, &row, ctx);
            }
        }
    }

    fn write(&mut self, output: usize, row: &CampaignReconciliation, ctx: &mut Context<'_>) {
        let encoder = if output == ROWS {
            &self.row_encoder
        } else {
            &self.alert_encoder
        };
        let Some(encoder) = encoder else {
            return;
        };
        self.value_buffer.clear();
        if let Err(e) = encoder.encode(row, &mut self.value_buffer) {
            // Built here from counted numbers; a failure is a bug, not input to skip.
            tracing::error!(error = %e, campaign_id = %row.campaign_id, "reconciliation row does not encode");
            return;
        }
        let key = if output == ROWS {
            row.key()
        } else {
            row.campaign_id.clone()
        };
        ctx.emit(
            output,
            key.as_bytes(),
            &self.value_buffer,
            row.window_end,
            &row.correlation_id,
        );
        if output == ROWS {
            self.counters.rows += 1;
        } else {
            self.counters.alerts += 1;
        }
    }

    fn horizons(&self, watermark: Option<i64>) -> Option<(i64, i64)> {
        let watermark = watermark?;
        let final_before = watermark.saturating_sub(self.config.restatement_ms);
        Some((
            final_before,
            final_before.saturating_sub(self.config.retention_ms),
        ))
    }
}

/// Rules every impression and click must meet.
fn validate(campaign_id: &str, cost_micros: i64) -> Result<(), DecodeError> {
    if campaign_id.is_empty() {
        return Err(DecodeError::Invalid("campaign_id is empty".into()));
    }
    if cost_micros < 0 {
        return Err(DecodeError::Invalid(format!(
            "cost_micros is negative ({cost_micros})"
        )));
    }
    Ok(())
}

impl Operator for ReconciliationJob {
    fn inputs(&self) -> Vec<InputSpec> {
        vec![
            InputSpec::stream(&self.config.impressions),
            InputSpec::stream(&self.config.clicks),
            InputSpec {
                internal_partitions: Some(self.config.partitions),
                watermark_markers: true,
                ..InputSpec::stream(&self.config.reports)
            },
        ]
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        vec![
            OutputSpec::topology(&self.config.rows, CampaignReconciliation::SCHEMA),
            OutputSpec::topology(&self.config.alerts, CampaignReconciliation::SCHEMA),
        ]
    }

    fn stores(&mut self) -> Vec<&mut dyn ChangelogStore> {
        vec![&mut self.campaigns, &mut self.seen]
    }

    fn set_output_schema_ids(&mut self, ids: &[u32]) -> Result<(), CodecError> {
        let [rows, alerts] = ids else {
            return Err(CodecError::OutputIds {
                expected: 2,
                got: ids.len(),
            });
        };
        self.row_encoder = Some(WireEncoder::new(CampaignReconciliation::SCHEMA, *rows)?);
        self.alert_encoder = Some(WireEncoder::new(CampaignReconciliation::SCHEMA, *alerts)?);
        Ok(())
    }

    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), DecodeError> {
        let taken = match record.input {
            IMPRESSIONS => {
                let i: AdImpression = self.impression_decoder.decode(ctx.schemas, record.value)?;
                validate(&i.campaign_id, i.cost_micros)?;
                let counts = Counts {
                    impressions: 1,
                    clicks: 0,
                    spend_micros: i.cost_micros,
                };
                self.count_event(
                    record.partition,
                    ("impression", &i.event_id),
                    &i.campaign_id,
                    i.event_time,
                    counts,
                    record.correlation_id,
                )
            }
            CLICKS => {
                let c: AdClick = self.click_decoder.decode(ctx.schemas, record.value)?;
                validate(&c.campaign_id, c.cost_micros)?;
                let counts = Counts {
                    impressions: 0,
                    clicks: 1,
                    spend_micros: c.cost_micros,
                };
                self.count_event(
                    record.partition,
                    ("click", &c.event_id),
                    &c.campaign_id,
                    c.event_time,
                    counts,
                    record.correlation_id,
                )
            }
            _ => {
                let report: PlatformReport =
                    self.report_decoder.decode(ctx.schemas, record.value)?;
                if let Some(reason) = invalid_report(&report) {
                    return Err(DecodeError::Invalid(reason));
                }
                self.take_report(record.partition, report, record.correlation_id)
            }
        };
        if !taken {
            self.counters.late += 1;
            ctx.late(
                record,
                "older than the hours reconciliation still holds (past the restatement look-back and retention)",
            );
        }
        Ok(())
    }

    fn on_commit(&mut self, ctx: &mut Context<'_>) {
        self.seen.expire(|partition| ctx.watermark_of(partition));
        let partitions: Vec<i32> = self.open.keys().copied().collect();
        for partition in partitions {
            // Without a watermark yet nothing is final and nothing is dropped, but changed windows are written
            // (as PENDING) all the same.
            let (final_before, drop_before) = self
                .horizons(ctx.watermark_of(partition))
                .unwrap_or((i64::MIN, i64::MIN));
            self.judge_partition(partition, final_before, drop_before, ctx);
        }
    }

    fn on_end_of_input(&mut self, ctx: &mut Context<'_>) {
        // Nothing more will come: every window is as final as it will get. Nothing is dropped.
        let partitions: Vec<i32> = self.campaigns.iter().map(|(p, _, _)| p).collect();
        let campaigns: Vec<(i32, String)> = self
            .campaigns
            .iter()
            .map(|(partition, campaign_id, _)| (partition, campaign_id.clone()))
            .collect();
        for (partition, campaign_id) in campaigns {
            self.touch(partition, &campaign_id);
        }
        let partitions: HashSet<i32> = partitions.into_iter().collect();
        for partition in partitions {
            self.judge_partition(partition, i64::MAX, i64::MIN, ctx);
        }
    }

    fn on_revoked(&mut self, partition: i32) {
        self.open.remove(&partition);
    }

    fn on_restored(&mut self, partitions: &[i32]) {
        for partition in partitions {
            self.open.remove(partition);
        }
        // Every restored campaign is judged at the next commit: its pending windows may have become final while
        // the partition was elsewhere, and what is written only when it changed compares against the stored row.
        let restored: Vec<(i32, String)> = self
            .campaigns
            .iter()
            .filter(|(partition, _, _)| partitions.contains(partition))
            .map(|(partition, campaign_id, _)| (partition, campaign_id.clone()))
            .collect();
        for (partition, campaign_id) in restored {
            self.touch(partition, &campaign_id);
        }
    }

    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let c = self.counters;
        vec![
            (
                "reconciliation_events",
                "Impressions and clicks counted into campaign hours.",
                c.events,
            ),
            (
                "reconciliation_duplicates",
                "Impressions and clicks whose event_id was counted already, skipped.",
                c.duplicates,
            ),
            (
                "reconciliation_report_rows",
                "Platform report rows taken (new, or restating a held row).",
                c.report_rows,
            ),
            (
                "reconciliation_stale_report_rows",
                "Platform report rows older than the row held for their ad and window, ignored.",
                c.stale_report_rows,
            ),
            (
                "reconciliation_unaligned_windows",
                "Platform report rows whose window is not on UTC hours, left out.",
                c.unaligned_windows,
            ),
            (
                "reconciliation_late",
                "Events and report rows older than the hours still held, sent to late topics.",
                c.late,
            ),
            ("reconciliation_rows", "Comparison rows written.", c.rows),
            (
                "reconciliation_alerts",
                "Alert rows written (a window turned MISMATCHED or stopped being it).",
                c.alerts,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(impressions: i64, clicks: i64, spend_micros: i64) -> Counts {
        Counts {
            impressions,
            clicks,
            spend_micros,
        }
    }

    #[test]
    fn relative_difference_is_symmetric_bounded_and_zero_when_equal() {
        assert_eq!(relative_difference(0, 0), 0.0);
        assert_eq!(relative_difference(100, 100), 0.0);
        assert_eq!(relative_difference(0, 7), 1.0);
        assert_eq!(relative_difference(100, 105), relative_difference(105, 100));
        assert!((relative_difference(100, 105) - 5.0 / 105.0).abs() < 1e-12);
    }

    #[test]
    fn a_window_is_pending_until_final_then_judged_by_threshold_and_volume() {
        let events = counts(1_000, 20, 5_000_000);
        let planted = counts(1_000, 20, 5_250_000);
        let judged = |platform: &Counts, is_final: bool| {
            judge(&events, platform, is_final, 0.02, 100).status
        };
        assert_eq!(judged(&planted, false), ReconciliationStatus::Pending);
        assert_eq!(judged(&planted, true), ReconciliationStatus::Mismatched);
        assert_eq!(judged(&events, true), ReconciliationStatus::Matched);
        let within = counts(1_000, 20, 5_050_000);
        assert_eq!(judged(&within, true), ReconciliationStatus::Matched);
        let small = judge(&counts(10, 1, 50), &counts(20, 1, 50), true, 0.02, 100);
        assert_eq!(small.status, ReconciliationStatus::InsufficientVolume);
    }
}
