//! The campaign-metrics operator: impressions and clicks into hourly and daily rows per campaign.
//!
//! Inputs: `ads.impressions` and `ads.clicks` (streams), `ads.campaigns` (a table) and optionally
//! `attribution.credits` (a stream), all keyed by campaign id and co-partitioned. Credits of the configured
//! attribution model add conversions and revenue to the windows of their conversion time (CPA and ROAS follow);
//! credits of other models, and credits in a currency other than their campaign's (no exchange rates), are skipped
//! and counted; with no credits, conversions and revenue stay 0 and CPA/ROAS null. Each impression or click updates two windows of its campaign: the local clock hour and the local
//! day in the campaign's time zone (UTC while the campaign is unknown). Window rows live in the `windows` store.
//!
//! Lateness (see [`crate::window::Lateness`]): an event whose hourly window's retention has passed (watermark ≥
//! hour end + retention) is expired: it touches no window and goes to `late.<topic>`. Otherwise it updates both
//! windows; updating a row that is already final (watermark passed end + grace) is a correction, counted in the
//! row's `corrections` and re-emitted under the same key.
//!
//! Emission ([`EmitMode`]): `Updating` emits every row changed since the last commit, at each commit; `Final` emits
//! a row once when it becomes final, and again for each commit in which corrections changed it. Rows leave the
//! store (tombstone in the changelog, not in the output) once their retention has passed.
//!
//! Alerts (see [`super::alerts`]): at each commit, every campaign that received events since the last commit is
//! evaluated at the watermark against its budgets and targets from the campaigns table, using its current local
//! day's row and its lifetime spend; changes of alert state go to the alerts topic keyed by campaign id. A
//! campaign's alert state and lifetime spend live in the `campaigns` store.
//!
//! A campaign that stops delivering gets no events to trigger its evaluation, yet is the one that most needs a
//! `PACING_UNDER`: every `ACTIVE` campaign of the table therefore has a stream-time timer (the `timers` store,
//! [`crate::runtime::timers`]) that evaluates it at least every `pacing_check` of its task's event time, whatever
//! its own traffic; a campaign that is paused, removed or deleted from the table loses its timer.
//!
//! Duplicates: an impression, click or credit whose id (`event_id`, `credit_id`) was counted already for its
//! campaign is skipped and counted (`duplicate_events`); the ids live in the `event_ids` store
//! ([`crate::runtime::dedup`]) for the retention plus an hour, as long as an event of their time can be counted.
//!
//! Records that do not decode, or that break a rule (negative cost, a currency different from the row's), go to
//! `dlq.<topic>`.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};

use adstream_schemas::events::{
    avsc, AdClick, AdImpression, AvroRecord, Campaign, CampaignStatus, Platform,
};
use adstream_schemas::outputs::{
    write_metrics_key, AlertSeverity, AttributionCredit, AttributionModel, CampaignAlert,
    CampaignMetrics, Granularity as OutputGranularity,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::alerts::{AlertChange, AlertRules, AlertState, CampaignSettings, Observation, Severity};
use super::kpi::{Kpis, Totals};
use super::window_codec::CompactWindowRows;
use crate::runtime::{
    cell_long, cell_text, ChangelogStore, CodecError, Context, DecodeError, InputSpec, JobError,
    KeyedStore, Operator, OutputSpec, ProjectedDecoder, Record, SchemaCache, SeenIds, TimeDomain,
    Timers, TypedDecoder, WireEncoder,
};
use crate::window::{calendar_window, Arrival, CalendarWindows, Granularity, Lateness, Window};
use adstream_schemas::binary::Cell;

/// When rows are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EmitMode {
    /// Every changed row at every commit (BI dashboards see the current hour fill up).
    #[default]
    Updating,
    /// Each row once when final, then only corrections.
    Final,
}

/// Topic names and rules of the job.
#[derive(Debug, Clone)]
pub struct CampaignMetricsConfig {
    /// Impressions topic.
    pub impressions: String,
    /// Clicks topic.
    pub clicks: String,
    /// Campaigns table topic.
    pub campaigns: String,
    /// Hourly output topic.
    pub hourly: String,
    /// Daily output topic.
    pub daily: String,
    /// Alerts output topic.
    pub alerts: String,
    /// Attribution credits topic, if the job reads one.
    pub credits: Option<String>,
    /// Whose credits count as the campaign's conversions and revenue.
    pub attribution_model: AttributionModel,
    /// Grace period and retention of windows.
    pub lateness: Lateness,
    /// When rows are emitted.
    pub emit: EmitMode,
    /// Every active campaign is evaluated at least this often in event time (milliseconds, > 0), with or without
    /// events of its own.
    pub pacing_check_ms: i64,
    /// Tier levels and severities of the alert rules.
    pub alert_rules: AlertRules,
}

/// One window row as kept in the store and its changelog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRow {
    /// Campaign.
    pub campaign_id: String,
    /// true = daily, false = hourly.
    pub daily: bool,
    /// Window start (UTC epoch millis).
    pub start_ms: i64,
    /// Window end (UTC epoch millis).
    pub end_ms: i64,
    /// Time zone of the boundaries.
    pub time_zone: String,
    /// Platform of the events.
    pub platform: Platform,
    /// Account of the events.
    pub account_id: String,
    /// Currency of spend.
    pub currency: String,
    /// Impressions.
    pub impressions: u64,
    /// Clicks.
    pub clicks: u64,
    /// Spend in micros.
    pub spend_micros: i64,
    /// Credited conversions.
    pub conversions: f64,
    /// Credited revenue in micros.
    pub revenue_micros: f64,
    /// Whether the final row was emitted (or, in updating mode, the row was marked final).
    pub is_final: bool,
    /// Corrections after final.
    pub corrections: u64,
    /// Rows emitted for this key.
    pub revision: u64,
    /// Correlation id of the last record that changed the row.
    pub correlation_id: String,
}

impl WindowRow {
    fn totals(&self) -> Totals {
        Totals {
            impressions: self.impressions,
            clicks: self.clicks,
            spend_micros: self.spend_micros,
            conversions: self.conversions,
            revenue_micros: self.revenue_micros,
        }
    }
}

/// What the job needs of a campaign from the table.
struct CampaignInfo {
    time_zone: Tz,
    time_zone_name: String,
    /// Currency of the campaign's spend: credits in another currency are not added to its rows.
    currency: String,
    settings: CampaignSettings,
    /// The campaign's last hourly and daily windows: its events mostly come in time order, so most records skip
    /// the time-zone lookups.
    hours: CalendarWindows,
    days: CalendarWindows,
}

/// The key of a campaign's pacing timer.
const PACING_TIMER: &str = "pacing";

/// Per-campaign state kept in the `campaigns` store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CampaignState {
    /// Spend of every applied event of the campaign, in micros.
    pub lifetime_spend_micros: i64,
    /// Which alerts are active.
    pub alerts: AlertState,
    /// Start of the local day the alerts were last evaluated in, or before the first evaluation the day of the
    /// campaign's first event (None in state written before this field existed). When the watermark has left
    /// that day, the days it passed are judged at their ends before today is.
    #[serde(default)]
    pub alerts_day_start_ms: Option<i64>,
}

/// At most this many ended days are judged at one evaluation: a watermark that jumps further (a backlog of months,
/// or an event time far in the future) judges only the last of them rather than stalling the commit.
const MAX_ENDED_DAYS_JUDGED: usize = 62;

/// Counters of the job, for the summary and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CampaignMetricsCounters {
    /// Events applied to windows.
    pub applied: u64,
    /// Events that corrected a final row.
    pub corrections: u64,
    /// Events past retention, sent to late topics.
    pub expired: u64,
    /// Rows emitted.
    pub rows_emitted: u64,
    /// Alert changes emitted.
    pub alerts_emitted: u64,
    /// Credits of attribution models other than the configured one, skipped.
    pub other_model_credits: u64,
    /// Credits in a currency other than their campaign's, skipped (no exchange rates here).
    pub other_currency_credits: u64,
    /// Impressions, clicks and credits whose id was counted already, skipped.
    pub duplicates: u64,
    /// Campaign evaluations raised by a pacing timer.
    pub pacing_checks: u64,
}

/// The operator; see the module doc.
pub struct CampaignMetricsJob {
    config: CampaignMetricsConfig,
    windows: KeyedStore<String, WindowRow, CompactWindowRows>,
    campaign_states: KeyedStore<String, CampaignState>,
    /// Ids of the events counted, to skip a second copy.
    seen: SeenIds,
    /// The pacing timer of every active campaign, keyed `pacing|<campaign id>`.
    timers: Timers,
    campaigns: HashMap<String, CampaignInfo>,
    /// Hourly and daily windows of campaigns not in the table yet (UTC).
    utc_windows: [CalendarWindows; 2],
    /// Campaigns with events since the last commit (their alerts are evaluated at the commit), with the
    /// correlation id of the last such event.
    touched: HashMap<i32, HashMap<String, String>>,
    alert_changes: Vec<AlertChange>,
    events: EventDecoders,
    campaign_decoder: TypedDecoder,
    encoders: Vec<WireEncoder>,
    /// Keys changed since the last commit, per partition.
    changed: HashMap<i32, HashSet<String>>,
    /// Reused for the two window keys of each record.
    key_buffers: [String; 2],
    /// Rows not final yet, by (end, key): the first ones become final first.
    open: HashMap<i32, BTreeSet<(i64, String)>>,
    /// Every row held, by (end, key): the first ones expire first.
    held: HashMap<i32, BTreeSet<(i64, String)>>,
    /// `open`/`held` must be rebuilt from the store (after a restore).
    indexes_stale: bool,
    counters: CampaignMetricsCounters,
    value_buffer: Vec<u8>,
}

const IMPRESSIONS: usize = 0;
const CAMPAIGNS: usize = 2;
const HOURLY: usize = 0;
const DAILY: usize = 1;
const ALERTS: usize = 2;
const CREDITS: usize = 3;

/// An impression, a click or a credit, reduced to what the windows need; strings borrowed from the record when
/// it was read by projection.
struct AdEvent<'a> {
    /// `event_id`, or `credit_id` for credits.
    id: Cow<'a, str>,
    campaign_id: Cow<'a, str>,
    event_time: i64,
    /// Unknown for credits.
    platform: Platform,
    /// Empty for credits.
    account_id: Cow<'a, str>,
    cost_micros: i64,
    currency: Cow<'a, str>,
    kind: EventKind,
}

/// The fields of impressions and clicks the windows read, in cell order.
const AD_EVENT_FIELDS: [&str; 7] = [
    "event_id",
    "event_time",
    "platform",
    "account_id",
    "campaign_id",
    "cost_micros",
    "currency",
];

/// The decoders of the event inputs: impressions and clicks by projection (the hot path: 7 of their 12 fields,
/// borrowed), with the full decoders for writer schemas the projection does not cover; credits whole.
struct EventDecoders {
    impressions: ProjectedDecoder,
    clicks: ProjectedDecoder,
    impression_decoder: TypedDecoder,
    click_decoder: TypedDecoder,
    credit_decoder: TypedDecoder,
}

impl EventDecoders {
    fn new() -> Result<EventDecoders, CodecError> {
        Ok(EventDecoders {
            impressions: ProjectedDecoder::new(
                AdImpression::FULL_NAME,
                avsc::AD_IMPRESSION,
                &AD_EVENT_FIELDS,
            )?,
            clicks: ProjectedDecoder::new(AdClick::FULL_NAME, avsc::AD_CLICK, &AD_EVENT_FIELDS)?,
            impression_decoder: TypedDecoder::new(AdImpression::FULL_NAME, avsc::AD_IMPRESSION)?,
            click_decoder: TypedDecoder::new(AdClick::FULL_NAME, avsc::AD_CLICK)?,
            credit_decoder: TypedDecoder::new(
                AttributionCredit::FULL_NAME,
                AttributionCredit::SCHEMA,
            )?,
        })
    }

    /// The record as a window contribution; None for a credit of another attribution model than `model`.
    fn decode<'a>(
        &mut self,
        record: &Record<'a>,
        schemas: &mut SchemaCache,
        model: AttributionModel,
    ) -> Result<Option<AdEvent<'a>>, DecodeError> {
        let event = if record.input == CREDITS {
            let credit: AttributionCredit = self.credit_decoder.decode(schemas, record.value)?;
            if credit.model != model {
                return Ok(None);
            }
            if !(credit.conversions.is_finite() && credit.revenue_micros.is_finite()) {
                return Err(DecodeError::Invalid(format!(
                    "credit {} is not finite",
                    credit.credit_id
                )));
            }
            AdEvent {
                id: Cow::Owned(credit.credit_id),
                campaign_id: Cow::Owned(credit.campaign_id),
                event_time: credit.conversion_time,
                platform: Platform::Unknown,
                account_id: Cow::Borrowed(""),
                cost_micros: 0,
                currency: Cow::Owned(credit.currency),
                kind: EventKind::Credit {
                    conversions: credit.conversions,
                    revenue_micros: credit.revenue_micros,
                },
            }
        } else {
            let (projected, full, kind) = if record.input == IMPRESSIONS {
                (
                    &mut self.impressions,
                    &mut self.impression_decoder,
                    EventKind::Impression,
                )
            } else {
                (&mut self.clicks, &mut self.click_decoder, EventKind::Click)
            };
            // The cells borrow the record's value (and enum symbols from the writer schema, which lives on).
            let mut cells: [Cell<'a>; AD_EVENT_FIELDS.len()] = [Cell::Null; AD_EVENT_FIELDS.len()];
            if projected.decode(schemas, record.value, &mut cells)? {
                ad_event(&cells, kind)?
            } else if record.input == IMPRESSIONS {
                let i: AdImpression = full.decode(schemas, record.value)?;
                AdEvent {
                    id: Cow::Owned(i.event_id),
                    campaign_id: Cow::Owned(i.campaign_id),
                    event_time: i.event_time,
                    platform: i.platform,
                    account_id: Cow::Owned(i.account_id),
                    cost_micros: i.cost_micros,
                    currency: Cow::Owned(i.currency),
                    kind,
                }
            } else {
                let c: AdClick = full.decode(schemas, record.value)?;
                AdEvent {
                    id: Cow::Owned(c.event_id),
                    campaign_id: Cow::Owned(c.campaign_id),
                    event_time: c.event_time,
                    platform: c.platform,
                    account_id: Cow::Owned(c.account_id),
                    cost_micros: c.cost_micros,
                    currency: Cow::Owned(c.currency),
                    kind,
                }
            }
        };
        if event.campaign_id.is_empty() {
            return Err(DecodeError::Invalid("campaign_id is empty".into()));
        }
        if event.cost_micros < 0 {
            return Err(DecodeError::Invalid(format!(
                "cost_micros is negative ({})",
                event.cost_micros
            )));
        }
        if event.currency.len() != 3 || !event.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(DecodeError::Invalid(format!(
                "currency '{}' is not an ISO 4217 code",
                event.currency
            )));
        }
        Ok(Some(event))
    }
}

/// An impression or click from the cells of [`AD_EVENT_FIELDS`].
fn ad_event<'a>(cells: &[Cell<'a>], kind: EventKind) -> Result<AdEvent<'a>, DecodeError> {
    let text = |index| cell_text(cells, &AD_EVENT_FIELDS, index).map(Cow::Borrowed);
    let long = |index| cell_long(cells, &AD_EVENT_FIELDS, index);
    Ok(AdEvent {
        id: text(0)?,
        event_time: long(1)?,
        // The projection reads an enum only when writer and reader list the same symbols.
        platform: Platform::from_symbol(&text(2)?).unwrap_or(Platform::Unknown),
        account_id: text(3)?,
        campaign_id: text(4)?,
        cost_micros: long(5)?,
        currency: text(6)?,
        kind,
    })
}

/// What an input record adds to a window.
#[derive(Clone, Copy)]
enum EventKind {
    Impression,
    Click,
    Credit {
        conversions: f64,
        revenue_micros: f64,
    },
}

impl CampaignMetricsJob {
    /// The operator for `config`.
    pub fn new(config: CampaignMetricsConfig) -> Result<CampaignMetricsJob, JobError> {
        if config.pacing_check_ms <= 0 {
            return Err(JobError::Settings(format!(
                "pacing check interval must be positive, got {} ms",
                config.pacing_check_ms
            )));
        }
        // An event counts while its hourly window (at most an hour past the event) is within retention.
        let horizon_ms = config.lateness.retention_ms.saturating_add(3_600_000);
        Ok(CampaignMetricsJob {
            config,
            windows: KeyedStore::new("windows"),
            campaign_states: KeyedStore::new("campaigns"),
            seen: SeenIds::new("event_ids", horizon_ms),
            timers: Timers::new("timers"),
            campaigns: HashMap::new(),
            utc_windows: [
                CalendarWindows::new(Granularity::Hour, Tz::UTC),
                CalendarWindows::new(Granularity::Day, Tz::UTC),
            ],
            touched: HashMap::new(),
            alert_changes: Vec::new(),
            events: EventDecoders::new()?,
            campaign_decoder: TypedDecoder::new("io.adstream.ads.Campaign", avsc::CAMPAIGN)?,
            encoders: Vec::new(),
            changed: HashMap::new(),
            key_buffers: [String::new(), String::new()],
            open: HashMap::new(),
            held: HashMap::new(),
            indexes_stale: true,
            counters: CampaignMetricsCounters::default(),
            value_buffer: Vec::new(),
        })
    }

    /// Counters so far.
    pub fn counters(&self) -> CampaignMetricsCounters {
        self.counters
    }

    fn apply_campaign(
        &mut self,
        record: &Record<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), DecodeError> {
        if record.value.is_none() {
            // A tombstone deletes the campaign from the table.
            if let Some(key) = record.key.and_then(|k| std::str::from_utf8(k).ok()) {
                self.campaigns.remove(key);
                self.timers
                    .cancel(record.partition, TimeDomain::StreamTime, &timer_key(key));
            }
            return Ok(());
        }
        let campaign: Campaign = self.campaign_decoder.decode(ctx.schemas, record.value)?;
        let time_zone: Tz = campaign.time_zone.parse().map_err(|_| {
            DecodeError::Invalid(format!(
                "campaign {}: time_zone '{}' is not an IANA zone",
                campaign.campaign_id, campaign.time_zone
            ))
        })?;
        let settings = CampaignSettings {
            daily_budget_micros: campaign.daily_budget_micros,
            lifetime_budget_micros: campaign.lifetime_budget_micros,
            min_ctr: campaign.targets.min_ctr,
            max_cpc_micros: campaign.targets.max_cpc_micros,
            target_cpm_micros: campaign.targets.target_cpm_micros,
            min_roas: campaign.targets.min_roas,
            target_cpa_micros: campaign.targets.target_cpa_micros,
        };
        let timer = timer_key(&campaign.campaign_id);
        if campaign.status == CampaignStatus::Active {
            // A timer already set (restored, or an earlier version of the row) keeps its time; a new one fires one
            // interval from now, or at the first watermark of a task that has none yet.
            if self
                .timers
                .get(record.partition, TimeDomain::StreamTime, &timer)
                .is_none()
            {
                let due = ctx
                    .watermark
                    .map_or(i64::MIN, |w| w.saturating_add(self.config.pacing_check_ms));
                self.timers
                    .schedule(record.partition, TimeDomain::StreamTime, &timer, due);
            }
        } else {
            self.timers
                .cancel(record.partition, TimeDomain::StreamTime, &timer);
        }
        self.campaigns.insert(
            campaign.campaign_id,
            CampaignInfo {
                time_zone,
                time_zone_name: campaign.time_zone,
                currency: campaign.currency,
                settings,
                hours: CalendarWindows::new(Granularity::Hour, time_zone),
                days: CalendarWindows::new(Granularity::Day, time_zone),
            },
        );
        Ok(())
    }

    fn rebuild_indexes(&mut self) {
        self.open.clear();
        self.held.clear();
        for (partition, key, row) in self.windows.iter() {
            self.held
                .entry(partition)
                .or_default()
                .insert((row.end_ms, key.clone()));
            if !row.is_final {
                self.open
                    .entry(partition)
                    .or_default()
                    .insert((row.end_ms, key.clone()));
            }
        }
        self.indexes_stale = false;
    }

    fn emit_row(&mut self, partition: i32, key: &str, ctx: &mut Context<'_>) {
        let Some(row) = self.windows.get(partition, key) else {
            return;
        };
        let kpis = Kpis::of(&row.totals());
        let granularity = if row.daily {
            OutputGranularity::Daily
        } else {
            OutputGranularity::Hourly
        };
        let output = CampaignMetrics {
            campaign_id: row.campaign_id.clone(),
            granularity,
            window_start: row.start_ms,
            window_end: row.end_ms,
            time_zone: row.time_zone.clone(),
            platform: row.platform,
            account_id: row.account_id.clone(),
            currency: row.currency.clone(),
            impressions: i64::try_from(row.impressions).unwrap_or(i64::MAX),
            clicks: i64::try_from(row.clicks).unwrap_or(i64::MAX),
            spend_micros: row.spend_micros,
            conversions: row.conversions,
            revenue_micros: row.revenue_micros,
            ctr: kpis.ctr,
            cpc_micros: kpis.cpc_micros,
            cpm_micros: kpis.cpm_micros,
            cpa_micros: kpis.cpa_micros,
            roas: kpis.roas,
            is_final: row.is_final,
            corrections: i64::try_from(row.corrections).unwrap_or(i64::MAX),
            revision: i64::try_from(row.revision + 1).unwrap_or(i64::MAX),
            emitted_at: ctx.now_ms,
            correlation_id: row.correlation_id.clone(),
        };
        let index = if row.daily { DAILY } else { HOURLY };
        let start = row.start_ms;
        if let Err(e) = self.encoders[index].encode(&output, &mut self.value_buffer) {
            tracing::error!(error = %e, key, "output row does not match its schema");
            return;
        }
        ctx.emit(
            index,
            key.as_bytes(),
            &self.value_buffer,
            start,
            &output.correlation_id,
        );
        if let Some(row) = self.windows.get_mut(partition, key) {
            row.revision += 1;
        }
        self.counters.rows_emitted += 1;
    }
}

/// The key of `campaign_id`'s pacing timer.
fn timer_key(campaign_id: &str) -> String {
    format!("{PACING_TIMER}|{campaign_id}")
}

impl CampaignMetricsJob {
    /// Takes the pacing timers that came due: each campaign still in the table is evaluated at this commit as if
    /// it had events, and its timer set one interval past its task's watermark.
    fn check_pacing_timers(&mut self, ctx: &Context<'_>) {
        for fired in self.timers.due(|p| ctx.watermark_of(p), ctx.now_ms) {
            let Some(campaign_id) = fired
                .key
                .strip_prefix(PACING_TIMER)
                .and_then(|k| k.strip_prefix('|'))
            else {
                continue;
            };
            // Stream-time timers fire only at a watermark.
            let Some(watermark) = ctx.watermark_of(fired.partition) else {
                continue;
            };
            if !self.campaigns.contains_key(campaign_id) {
                continue;
            }
            self.timers.schedule(
                fired.partition,
                TimeDomain::StreamTime,
                &fired.key,
                watermark.saturating_add(self.config.pacing_check_ms),
            );
            // A campaign that never delivered has no state yet: zero delivery is what pacing must see.
            self.campaign_states.get_or_insert_with(
                fired.partition,
                &campaign_id.to_owned(),
                CampaignState::default,
            );
            self.touched
                .entry(fired.partition)
                .or_default()
                .entry(campaign_id.to_owned())
                .or_insert_with(|| format!("pacing-check/{campaign_id}/{}", fired.due_ms));
            self.counters.pacing_checks += 1;
        }
    }

    /// Evaluates the alert rules of every campaign touched since the last commit, at the watermark, and emits the
    /// changes.
    ///
    /// Rules judge one local day. When the watermark has left the day a campaign was last evaluated in (a commit
    /// interval spanning midnight, or a backlog of days between two commits), each day it passed is judged first,
    /// at its last millisecond on its final totals: a breach inside a backlog fires (and resolves on the next day)
    /// as it would have live, instead of being skipped.
    fn evaluate_alerts(&mut self, ctx: &mut Context<'_>) {
        let touched: Vec<(i32, String, String)> = self
            .touched
            .drain()
            .flat_map(|(partition, campaigns)| {
                campaigns
                    .into_iter()
                    .map(move |(campaign_id, correlation_id)| {
                        (partition, campaign_id, correlation_id)
                    })
            })
            .collect();
        let mut key = String::new();
        for (partition, campaign_id, correlation_id) in touched {
            let Some(now) = ctx.watermark_of(partition) else {
                // Without a watermark there is no "now" in event time to pace against; evaluate at a later commit.
                self.touched
                    .entry(partition)
                    .or_default()
                    .insert(campaign_id, correlation_id);
                continue;
            };
            let Some(info) = self.campaigns.get(&campaign_id) else {
                continue;
            };
            let Some(state) = self.campaign_states.get(partition, campaign_id.as_str()) else {
                continue;
            };
            let today = calendar_window(Granularity::Day, now, info.time_zone);
            // (day, moment judged, totals): the ended days first, then today at the watermark.
            let mut judged: Vec<(Window, i64, Totals)> = Vec::new();
            if let Some(last) = state.alerts_day_start_ms {
                // Local days last 23 to 25 hours: starting this far back bounds the walk, the drain below the count.
                let earliest = today
                    .start_ms
                    .saturating_sub(MAX_ENDED_DAYS_JUDGED as i64 * 25 * 3_600_000);
                let mut day = calendar_window(Granularity::Day, last.max(earliest), info.time_zone);
                while day.end_ms <= today.start_ms {
                    judged.push((day, day.end_ms - 1, Totals::default()));
                    day = calendar_window(Granularity::Day, day.end_ms, info.time_zone);
                }
                let skipped = judged.len().saturating_sub(MAX_ENDED_DAYS_JUDGED);
                judged.drain(..skipped);
            }
            judged.push((today, now, Totals::default()));
            for (day, _, totals) in &mut judged {
                key.clear();
                write_metrics_key(
                    &campaign_id,
                    OutputGranularity::Daily,
                    day.start_ms,
                    &mut key,
                );
                *totals = self
                    .windows
                    .get(partition, &key)
                    .map(WindowRow::totals)
                    .unwrap_or_default();
            }
            let settings = info.settings;
            let Some(state) = self
                .campaign_states
                .get_mut(partition, campaign_id.as_str())
            else {
                continue;
            };
            // The lifetime spend at the end of an ended day: today's and the later days' spend taken off.
            let mut lifetime_spend_micros = state.lifetime_spend_micros;
            let mut lifetime_at: Vec<i64> = vec![0; judged.len()];
            for (i, (_, _, totals)) in judged.iter().enumerate().rev() {
                lifetime_at[i] = lifetime_spend_micros;
                lifetime_spend_micros = lifetime_spend_micros.saturating_sub(totals.spend_micros);
            }
            state.alerts_day_start_ms = Some(today.start_ms);
            for ((day, at, totals), lifetime_spend_micros) in judged.into_iter().zip(lifetime_at) {
                let observation = Observation {
                    now_ms: at,
                    day_start_ms: day.start_ms,
                    day_end_ms: day.end_ms,
                    day: totals,
                    lifetime_spend_micros,
                };
                self.alert_changes.clear();
                state.alerts.evaluate(
                    &self.config.alert_rules,
                    &settings,
                    &observation,
                    &mut self.alert_changes,
                );
                for change in &self.alert_changes {
                    let alert = CampaignAlert {
                        alert_id: format!("{campaign_id}|{}|{at}", change.kind.as_str()),
                        campaign_id: campaign_id.clone(),
                        kind: change.kind,
                        severity: output_severity(change.severity),
                        previous_severity: change.previous,
                        observed: change.observed,
                        threshold: change.threshold,
                        rule: change.rule(),
                        rule_level: change.rule_level,
                        message: change.message.clone(),
                        day_start: day.start_ms,
                        event_time: at,
                        correlation_id: correlation_id.clone(),
                    };
                    if let Err(e) = self.encoders[ALERTS].encode(&alert, &mut self.value_buffer) {
                        tracing::error!(error = %e, "alert does not match its schema");
                        continue;
                    }
                    ctx.emit(
                        ALERTS,
                        campaign_id.as_bytes(),
                        &self.value_buffer,
                        at,
                        &correlation_id,
                    );
                    self.counters.alerts_emitted += 1;
                }
            }
        }
    }
}

/// The alert record's severity of a rule state: `Resolved` when the alert is no longer active.
fn output_severity(severity: Option<Severity>) -> AlertSeverity {
    severity.unwrap_or(AlertSeverity::Resolved)
}

impl Operator for CampaignMetricsJob {
    fn inputs(&self) -> Vec<InputSpec> {
        vec![
            InputSpec::stream(&self.config.impressions),
            InputSpec::stream(&self.config.clicks),
            InputSpec::table(&self.config.campaigns),
        ]
        .into_iter()
        // Credits are written by the attribution job's tasks, each at its own pace: their progress comes from its
        // watermark markers.
        .chain(self.config.credits.iter().map(|topic| InputSpec {
            watermark_markers: true,
            ..InputSpec::stream(topic)
        }))
        .collect()
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        vec![
            OutputSpec::topology(&self.config.hourly, CampaignMetrics::SCHEMA),
            OutputSpec::topology(&self.config.daily, CampaignMetrics::SCHEMA),
            OutputSpec::topology(&self.config.alerts, CampaignAlert::SCHEMA),
        ]
    }

    fn stores(&mut self) -> Vec<&mut dyn ChangelogStore> {
        vec![
            &mut self.windows,
            &mut self.campaign_states,
            &mut self.seen,
            &mut self.timers,
        ]
    }

    fn set_output_schema_ids(&mut self, ids: &[u32]) -> Result<(), CodecError> {
        let [hourly, daily, alerts] = ids else {
            return Err(CodecError::OutputIds {
                expected: 3,
                got: ids.len(),
            });
        };
        self.encoders = vec![
            WireEncoder::new(CampaignMetrics::SCHEMA, *hourly)?,
            WireEncoder::new(CampaignMetrics::SCHEMA, *daily)?,
            WireEncoder::new(CampaignAlert::SCHEMA, *alerts)?,
        ];
        Ok(())
    }

    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), DecodeError> {
        if record.input == CAMPAIGNS {
            return self.apply_campaign(record, ctx);
        }
        let Some(event) = self
            .events
            .decode(record, ctx.schemas, self.config.attribution_model)?
        else {
            self.counters.other_model_credits += 1;
            return Ok(());
        };
        if matches!(event.kind, EventKind::Credit { .. })
            && self
                .campaigns
                .get(event.campaign_id.as_ref())
                .is_some_and(|info| info.currency != event.currency)
        {
            // A conversion caused by another campaign's ad can be valued in another currency: its credit is valid
            // but cannot be summed with this campaign's spend without exchange rates.
            self.counters.other_currency_credits += 1;
            return Ok(());
        }
        let (tz_name, hour, day) = match self.campaigns.get_mut(event.campaign_id.as_ref()) {
            Some(info) => (
                info.time_zone_name.as_str(),
                info.hours.window(event.event_time),
                info.days.window(event.event_time),
            ),
            None => (
                "UTC",
                self.utc_windows[0].window(event.event_time),
                self.utc_windows[1].window(event.event_time),
            ),
        };
        if self.config.lateness.classify(hour, ctx.watermark) == Arrival::Expired {
            self.counters.expired += 1;
            ctx.late(
                record,
                &format!(
                    "event time {} is past the retention of its hourly window (ends {}, retention {} ms)",
                    event.event_time, hour.end_ms, self.config.lateness.retention_ms
                ),
            );
            return Ok(());
        }
        // Validate both rows before changing either, so a rejected record changes nothing.
        let mut keys = std::mem::take(&mut self.key_buffers);
        for (slot, (window, daily)) in keys.iter_mut().zip([(hour, false), (day, true)]) {
            let granularity = if daily {
                OutputGranularity::Daily
            } else {
                OutputGranularity::Hourly
            };
            slot.clear();
            write_metrics_key(&event.campaign_id, granularity, window.start_ms, slot);
            if let Some(row) = self.windows.get(record.partition, slot) {
                if row.currency != event.currency {
                    return Err(DecodeError::Invalid(format!(
                        "currency {} differs from the campaign's {} in window {slot}",
                        event.currency, row.currency
                    )));
                }
            }
        }
        // Last of the checks: a copy of a record refused above is refused again rather than called a duplicate.
        let scope = match event.kind {
            EventKind::Impression => "impression",
            EventKind::Click => "click",
            EventKind::Credit { .. } => "credit",
        };
        if !self.seen.insert(
            record.partition,
            event.event_time,
            &[scope, &event.campaign_id],
            &event.id,
        ) {
            self.key_buffers = keys;
            self.counters.duplicates += 1;
            return Ok(());
        }
        let mut corrected = false;
        for (key, (window, daily)) in keys.iter().zip([(hour, false), (day, true)]) {
            let mut created = false;
            let row = self.windows.get_or_insert_with(record.partition, key, || {
                created = true;
                WindowRow {
                    campaign_id: event.campaign_id.clone().into_owned(),
                    daily,
                    start_ms: window.start_ms,
                    end_ms: window.end_ms,
                    time_zone: tz_name.to_owned(),
                    platform: event.platform,
                    account_id: event.account_id.clone().into_owned(),
                    currency: event.currency.clone().into_owned(),
                    impressions: 0,
                    clicks: 0,
                    spend_micros: 0,
                    conversions: 0.0,
                    revenue_micros: 0.0,
                    is_final: false,
                    corrections: 0,
                    revision: 0,
                    correlation_id: String::new(),
                }
            });
            match event.kind {
                EventKind::Impression => row.impressions += 1,
                EventKind::Click => row.clicks += 1,
                EventKind::Credit {
                    conversions,
                    revenue_micros,
                } => {
                    row.conversions += conversions;
                    row.revenue_micros += revenue_micros;
                }
            }
            // A row opened by a credit learns its platform and account from the first ad event.
            if row.platform == Platform::Unknown && event.platform != Platform::Unknown {
                row.platform = event.platform;
                row.account_id.clear();
                row.account_id.push_str(&event.account_id);
            }
            row.spend_micros = row.spend_micros.saturating_add(event.cost_micros);
            row.correlation_id.clear();
            row.correlation_id.push_str(record.correlation_id);
            // A correction: the row was emitted as final, or its grace has passed at this watermark even if the
            // commit that marks it final has not run yet (so the count does not depend on commit timing).
            if row.is_final
                || self.config.lateness.classify(window, ctx.watermark) == Arrival::Correction
            {
                row.corrections += 1;
                corrected = true;
            }
            if created && !self.indexes_stale {
                self.open
                    .entry(record.partition)
                    .or_default()
                    .insert((window.end_ms, key.clone()));
                self.held
                    .entry(record.partition)
                    .or_default()
                    .insert((window.end_ms, key.clone()));
            }
            let changed = self.changed.entry(record.partition).or_default();
            if !changed.contains(key.as_str()) {
                changed.insert(key.clone());
            }
        }
        self.key_buffers = keys;
        let state = self.campaign_states.get_or_insert_with(
            record.partition,
            event.campaign_id.as_ref(),
            CampaignState::default,
        );
        state.lifetime_spend_micros = state
            .lifetime_spend_micros
            .saturating_add(event.cost_micros);
        // The campaign's first day to judge, until its first evaluation (a backlog's first commit may come days
        // later).
        state.alerts_day_start_ms.get_or_insert(day.start_ms);
        let touched = self.touched.entry(record.partition).or_default();
        match touched.get_mut(event.campaign_id.as_ref()) {
            Some(correlation_id) => {
                correlation_id.clear();
                correlation_id.push_str(record.correlation_id);
            }
            None => {
                touched.insert(
                    event.campaign_id.into_owned(),
                    record.correlation_id.to_owned(),
                );
            }
        }
        self.counters.applied += 1;
        if corrected {
            self.counters.corrections += 1;
        }
        Ok(())
    }

    fn on_commit(&mut self, ctx: &mut Context<'_>) {
        if self.indexes_stale {
            self.rebuild_indexes();
        }
        // Rows whose grace has passed (by their own task's watermark) become final.
        let mut became_final = Vec::new();
        for (partition, open) in &mut self.open {
            let watermark = ctx.watermark_of(*partition);
            while let Some((end, key)) = open.first().cloned() {
                let window = Window {
                    start_ms: end,
                    end_ms: end,
                };
                if !self.config.lateness.is_final(window, watermark) {
                    break;
                }
                open.pop_first();
                if let Some(row) = self.windows.get_mut(*partition, key.as_str()) {
                    if !row.is_final {
                        row.is_final = true;
                        became_final.push((*partition, key));
                    }
                }
            }
        }
        let mut due: Vec<(i32, String)> = match self.config.emit {
            EmitMode::Updating => self
                .changed
                .drain()
                .flat_map(|(p, keys)| keys.into_iter().map(move |k| (p, k)))
                .collect(),
            EmitMode::Final => {
                let changed: Vec<(i32, String)> = self
                    .changed
                    .drain()
                    .flat_map(|(p, keys)| keys.into_iter().map(move |k| (p, k)))
                    .collect();
                // Only rows already final: corrections. Open rows wait for their final emission.
                changed
                    .into_iter()
                    .filter(|(p, k)| self.windows.get(*p, k).is_some_and(|r| r.is_final))
                    .collect()
            }
        };
        due.extend(became_final);
        due.sort();
        due.dedup();
        for (partition, key) in due {
            self.emit_row(partition, &key, ctx);
        }
        self.check_pacing_timers(ctx);
        self.evaluate_alerts(ctx);
        self.seen.expire(|partition| ctx.watermark_of(partition));
        // Rows past retention (by their own task's watermark) leave the store.
        for (partition, held) in &mut self.held {
            let watermark = ctx.watermark_of(*partition);
            while let Some((end, key)) = held.first().cloned() {
                let window = Window {
                    start_ms: end,
                    end_ms: end,
                };
                if !self.config.lateness.is_expired(window, watermark) {
                    break;
                }
                held.pop_first();
                if let Some(open) = self.open.get_mut(partition) {
                    open.remove(&(end, key.clone()));
                }
                self.windows.delete(*partition, &key);
            }
        }
    }

    fn on_revoked(&mut self, partition: i32) {
        self.changed.remove(&partition);
        self.touched.remove(&partition);
        self.open.remove(&partition);
        self.held.remove(&partition);
        self.indexes_stale = true;
    }

    fn on_restored(&mut self, _partitions: &[i32]) {
        self.indexes_stale = true;
    }

    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let c = self.counters;
        vec![
            (
                "applied_events",
                "Impressions and clicks applied to windows.",
                c.applied,
            ),
            (
                "corrections",
                "Events that updated a window row after it was final.",
                c.corrections,
            ),
            (
                "expired_events",
                "Events past their window's retention, sent to late.<topic>.",
                c.expired,
            ),
            (
                "rows_emitted",
                "Window rows emitted to the metrics topics.",
                c.rows_emitted,
            ),
            (
                "alerts_emitted",
                "Alert state changes emitted.",
                c.alerts_emitted,
            ),
            (
                "other_model_credits",
                "Attribution credits of models other than the configured one, skipped.",
                c.other_model_credits,
            ),
            (
                "other_currency_credits",
                "Attribution credits in a currency other than their campaign's, skipped.",
                c.other_currency_credits,
            ),
            (
                "duplicate_events",
                "Impressions, clicks and credits whose id was counted already, skipped.",
                c.duplicates,
            ),
            (
                "pacing_checks",
                "Campaign evaluations raised by a pacing timer (active campaigns, with or without events).",
                c.pacing_checks,
            ),
        ]
    }
}
