//! The attribution job's second stage: each user's touches in a store, every conversion credited under every rule
//! model once its touches are known (and under MARKOV and SHAPLEY with the latest fitted weights), and each closed
//! journey written for the model fit.
//!
//! Inputs, both keyed by user id and co-partitioned: the repartition topic of touches (see [`super::repartition`])
//! and the conversions topic. State, in two stores with changelogs:
//! - `touches`: per user, the touches of the last `lookback` (plus `retention`, below), oldest first (written to
//!   the changelog compactly, see [`super::touch_codec`]);
//! - `pending`: conversions waiting for their touches.
//!
//! **When a conversion is attributed.** Touches and conversions travel different paths (the touches through the
//! repartition stage), so a conversion can arrive before the touches that preceded it. A conversion therefore waits
//! until its task's event-time watermark (the minimum over both inputs' partitions) has passed its time plus
//! `grace`; then every in-order touch before it has arrived. It is attributed at that commit: the touches within
//! `[time − lookback, time]` get each model's share ([`super::models::rule_shares`]), written to
//! `attribution.conversions` (key conversion id) and summed per campaign into `attribution.credits` (key campaign
//! id, one record per conversion, campaign and model). At the end of the input (replays, backtests) every pending
//! conversion is attributed at once.
//!
//! **Late data.** A conversion that arrives after its grace is attributed at the next commit; its touches are still
//! there as long as it is within `retention` of the watermark. Touches are kept until the watermark passes their time
//! plus `lookback` plus `retention`; then they leave the store, and a user without touches leaves it with a tombstone in
//! the changelog, so state stays bounded by the users active in the lookback. A conversion older than the watermark
//! minus `retention`, or a touch older than the watermark minus `lookback` minus `retention`, could no longer be
//! attributed completely: it goes to `late.<topic>` with the reason. A touch that arrives after a conversion it
//! preceded was already attributed (more than `grace` late) is kept for later conversions and counted.
//!
//! **Journeys** (`attribution.journeys`, when the processor wires an output carrying `Journey`; key user id). Each
//! touch is in at most one journey, so that the journeys are the disjoint paths a path-based model (Markov, Shapley,
//! ChannelAttribution) expects: one path per journey, ending in a conversion or in nothing. A user's *open journey*
//! is their eligible touches (views only when `count_views`) after the last journey closed for them
//! ([`UserTouches::closed_until_ms`]). It closes:
//! - **converted**, when a conversion of the user is attributed: the open touches within its lookback, up to the
//!   conversion, are the converted journey (`journey_id` = `conversion_id`, `ended_at` = conversion time). Open
//!   touches older than the lookback close first, as a journey that did not convert (they led nowhere in time).
//!   Touches after the conversion stay open: with a second conversion later, a touch that fed the first is in the
//!   first journey only, even if the second's touchpoints (which the rule models credit) include it; and a
//!   conversion whose lookback holds no open touch writes no journey;
//! - **not converted**, when the lookback has passed since its last touch with no conversion: at the first commit
//!   where the watermark minus grace is past the last touch plus the lookback (conversions up to there are
//!   attributed first, so none could still claim it); `ended_at` is the last touch plus the lookback;
//! - **cut**, when touches of an open journey leave the store (a journey longer than lookback plus retention): the
//!   leaving touches are written as a journey that did not convert.
//!
//! A touch that arrives after the journey it belonged to closed (more than `grace` late) joins no journey; a
//! conversion attributed after its grace finds the touches that an earlier close took and claims only those still
//! open (possibly none: then it writes no journey, though it is credited as usual). The end
//! of the input closes nothing: journeys still open then are written by a later run. Journeys are written in the
//! commit that closes them, with the job's other outputs.
//!
//! **Data-driven credit** (MARKOV and SHAPLEY). When the processor wires an input carrying `ModelWeight`
//! (`attribution.model_weights`, written by `adstream attribution fit` to every partition, read as a table: task `n`
//! reads partition `n` to its end before any of its records), every conversion is also credited under each model
//! with a fit, by [`super::weights::LatestWeights::shares`]: the newest fit of the model as a whole, a campaign's
//! weight split evenly over its touches, normalised over the conversion's touchpoints. Before the first fit, and
//! for a conversion whose campaigns all weigh nothing, the model is left out of that conversion (counted in
//! `data_driven_skipped`), never made up; otherwise its shares sum to 1 like the rule models'. Their shares go to
//! `attribution.conversions` and their per-campaign sums to `attribution.credits`, as the rule models' do.
//!
//! Conversions are attributed exactly once under exactly-once processing: a pending conversion leaves the store in
//! the same transaction as its outputs. Duplicates in the input itself are dropped and counted: a conversion whose
//! `conversion_id` was taken already for its user (the `conversion_ids` store, [`crate::runtime::dedup`], keeps the
//! ids for the retention, as long as a conversion of their time is accepted), and a touch already among its user's
//! touches (same id and time).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use adstream_schemas::events::{avsc, Conversion};
use adstream_schemas::outputs::{
    AttributedConversion, AttributionCredit, AttributionModel, AttributionTouch, Journey,
    JourneyTouch, ModelShares, ModelWeight, TouchKind as OutputTouchKind, Touchpoint,
};
use serde::{Deserialize, Serialize};

use super::models::{rule_shares, RuleModel, RuleSettings, Touch, TouchKind};
use super::touch_codec::CompactTouches;
use super::weights::LatestWeights;
use crate::runtime::{
    ChangelogStore, CodecError, Context, DecodeError, InputSpec, JobError, KeyedStore, Operator,
    OutputSpec, Record, SeenIds, TypedDecoder, WireEncoder,
};

/// Topics and rules of the job.
#[derive(Debug, Clone)]
pub struct AttributionConfig {
    /// The repartition topic of touches (keyed by user id).
    pub touches: String,
    /// Conversions topic (keyed by user id).
    pub conversions: String,
    /// Partition count of the conversions topic, which the touches topic shares (created with it if missing).
    pub partitions: i32,
    /// Output: attributed conversions (key conversion id).
    pub attributed: String,
    /// Output: credits per campaign and model (key campaign id).
    pub credits: String,
    /// Output: closed journeys (key user id); None writes none.
    pub journeys: Option<String>,
    /// Input table: the data-driven models' weights, every weight in every partition (see the module doc); None
    /// credits no conversion under MARKOV or SHAPLEY.
    pub model_weights: Option<String>,
    /// Touches older than this before a conversion do not count.
    pub lookback_ms: i64,
    /// How far behind the watermark a conversion may be before it is attributed: the wait for its touches.
    pub grace_ms: i64,
    /// How long after the watermark passed a conversion's time it can still be attributed completely (touches are
    /// kept this much longer than the lookback).
    pub retention_ms: i64,
    /// The rule models' settings.
    pub settings: RuleSettings,
}

impl AttributionConfig {
    /// Checks that the durations make sense together.
    pub fn validate(&self) -> Result<(), JobError> {
        if self.lookback_ms <= 0 {
            return Err(JobError::Settings(format!(
                "lookback must be positive, got {} ms",
                self.lookback_ms
            )));
        }
        if self.grace_ms < 0 || self.retention_ms < self.grace_ms {
            return Err(JobError::Settings(format!(
                "need 0 <= grace <= retention, got grace {} ms and retention {} ms",
                self.grace_ms, self.retention_ms
            )));
        }
        if self.settings.half_life_ms <= 0 {
            return Err(JobError::Settings(format!(
                "time-decay half-life must be positive, got {} ms",
                self.settings.half_life_ms
            )));
        }
        if !(self.settings.view_weight.is_finite() && self.settings.view_weight >= 0.0) {
            return Err(JobError::Settings(format!(
                "view weight must be a finite number >= 0, got {}",
                self.settings.view_weight
            )));
        }
        Ok(())
    }
}

/// One touch as kept in the store: most of attribution's memory (every touch of every user within the lookback),
/// so the campaign and creative names are shared between the touches that name them ([`Names`]) rather than
/// copied into each: 64 bytes and the id, where three `String`s took about 180.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredTouch {
    /// Impression or click id.
    pub id: Box<str>,
    /// View or click.
    pub kind: TouchKind,
    /// Event time.
    pub t: i64,
    /// Campaign.
    #[serde(with = "shared_text")]
    pub campaign: Arc<str>,
    /// Creative.
    #[serde(with = "shared_text")]
    pub creative: Arc<str>,
}

/// Serde for a shared name, as the plain string the JSON of older changelogs holds.
mod shared_text {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(text: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(deserializer).map(Arc::from)
    }
}

/// The campaign and creative names of the touches held, one allocation per name. Bounded: names come from input,
/// so past [`Names::LIMIT`] the table starts over (the touches keep theirs; only later touches stop sharing them).
#[derive(Debug, Default)]
pub(crate) struct Names {
    shared: HashSet<Arc<str>, foldhash::fast::RandomState>,
}

impl Names {
    /// Names held at most: far more campaigns and creatives than an advertiser runs at once.
    pub(crate) const LIMIT: usize = 100_000;

    /// `name`, shared.
    pub(crate) fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.shared.get(name) {
            return Arc::clone(shared);
        }
        if self.shared.len() >= Self::LIMIT {
            self.shared.clear();
        }
        let shared: Arc<str> = Arc::from(name);
        self.shared.insert(Arc::clone(&shared));
        shared
    }
}

/// A user's touches, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserTouches {
    /// Touches within lookback + retention of the watermark, by (time, id).
    pub touches: Vec<StoredTouch>,
    /// Time of the latest conversion of the user attributed so far: a touch before it arrived too late for it.
    pub attributed_until_ms: Option<i64>,
    /// Touches at or before this time are in a closed journey (or came too late for the one they belonged to);
    /// the later eligible ones are the user's open journey.
    #[serde(default)]
    pub closed_until_ms: Option<i64>,
}

impl UserTouches {
    /// The touches of the open journey: eligible (`count_views`), after [`UserTouches::closed_until_ms`].
    fn open(&self, count_views: bool) -> impl Iterator<Item = &StoredTouch> {
        let closed_until = self.closed_until_ms;
        self.touches.iter().filter(move |t| {
            closed_until.is_none_or(|until| t.t > until)
                && (count_views || t.kind == TouchKind::Click)
        })
    }

    /// Time of the open journey's last touch.
    fn open_until(&self, count_views: bool) -> Option<i64> {
        self.open(count_views).last().map(|t| t.t)
    }
}

/// A conversion waiting for its touches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingConversion {
    /// The converting user.
    pub user_id: String,
    /// Conversion time.
    pub time_ms: i64,
    /// Value in micros.
    pub value_micros: i64,
    /// Currency of the value.
    pub currency: String,
    /// Correlation id of the conversion record.
    pub correlation_id: String,
}

/// Counters of the job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttributionCounters {
    /// Touches stored.
    pub touches: u64,
    /// Conversions attributed to at least one touch.
    pub attributed: u64,
    /// Conversions without any eligible touch in the lookback.
    pub unattributed: u64,
    /// Credit records emitted.
    pub credits: u64,
    /// Touches that arrived after a later conversion of their user was attributed.
    pub touches_after_attribution: u64,
    /// Touches that left the store past lookback + retention.
    pub touches_expired: u64,
    /// Records sent to late topics.
    pub late: u64,
    /// Conversions whose id was taken already, dropped.
    pub duplicate_conversions: u64,
    /// Touches already stored, dropped.
    pub duplicate_touches: u64,
    /// Converted journeys written.
    pub journeys_converted: u64,
    /// Journeys written that ended without a conversion.
    pub journeys_not_converted: u64,
    /// Weight records of the data-driven models taken in.
    pub weights_read: u64,
    /// (Attributed conversion, fitted data-driven model) pairs the model could not credit: none of the
    /// conversion's campaigns has weight.
    pub data_driven_skipped: u64,
}

const TOUCHES: usize = 0;
const CONVERSIONS: usize = 1;
const ATTRIBUTED: usize = 0;
const CREDITS: usize = 1;
const JOURNEYS: usize = 2;

/// The operator; see the module doc.
pub struct AttributionJob {
    config: AttributionConfig,
    touches: KeyedStore<String, UserTouches, CompactTouches>,
    /// The touches' campaign and creative names.
    names: Names,
    pending: KeyedStore<String, PendingConversion>,
    /// Ids of the conversions taken, to drop a second copy.
    conversion_ids: SeenIds,
    touch_decoder: TypedDecoder,
    conversion_decoder: TypedDecoder,
    weight_decoder: TypedDecoder,
    encoders: Vec<WireEncoder>,
    /// Per partition, (oldest touch time, user): the users whose oldest touch expires first come first.
    expiry: HashMap<i32, BTreeSet<(i64, String)>>,
    /// Per partition, (last open touch time + lookback, user): when each open journey closes unconverted.
    open_journeys: HashMap<i32, BTreeSet<(i64, String)>>,
    /// The newest fit of each data-driven model (the same in every task).
    weights: LatestWeights,
    /// Per partition, (conversion time, conversion id) of pending conversions.
    waiting: HashMap<i32, BTreeSet<(i64, String)>>,
    counters: AttributionCounters,
    value_buffer: Vec<u8>,
    /// Reused per attribution.
    journey: Vec<Touch>,
}

impl AttributionJob {
    /// The operator for `config`.
    pub fn new(config: AttributionConfig) -> Result<AttributionJob, JobError> {
        config.validate()?;
        // A conversion is accepted while within retention of the watermark: its id is kept that long.
        let conversion_ids = SeenIds::new("conversion_ids", config.retention_ms);
        Ok(AttributionJob {
            config,
            touches: KeyedStore::new("touches"),
            names: Names::default(),
            pending: KeyedStore::new("pending"),
            conversion_ids,
            touch_decoder: TypedDecoder::new(
                AttributionTouch::FULL_NAME,
                AttributionTouch::SCHEMA,
            )?,
            conversion_decoder: TypedDecoder::new("io.adstream.ads.Conversion", avsc::CONVERSION)?,
            weight_decoder: TypedDecoder::new(ModelWeight::FULL_NAME, ModelWeight::SCHEMA)?,
            encoders: Vec::new(),
            expiry: HashMap::new(),
            open_journeys: HashMap::new(),
            weights: LatestWeights::default(),
            waiting: HashMap::new(),
            counters: AttributionCounters::default(),
            value_buffer: Vec::new(),
            journey: Vec::new(),
        })
    }

    /// Counters so far.
    pub fn counters(&self) -> AttributionCounters {
        self.counters
    }

    /// Touches older than this (event time) have left or may leave the store; None before the first watermark.
    fn touch_horizon(&self, watermark: Option<i64>) -> Option<i64> {
        watermark.map(|w| {
            w.saturating_sub(self.config.retention_ms)
                .saturating_sub(self.config.lookback_ms)
        })
    }

    fn add_touch(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), DecodeError> {
        let touch: AttributionTouch = self.touch_decoder.decode(ctx.schemas, record.value)?;
        let kind = match touch.kind {
            OutputTouchKind::View => TouchKind::View,
            OutputTouchKind::Click => TouchKind::Click,
            OutputTouchKind::Unknown => {
                return Err(DecodeError::Invalid(format!(
                    "touch {} has an unknown kind",
                    touch.event_id
                )))
            }
        };
        if touch.user_id.is_empty() || touch.campaign_id.is_empty() {
            return Err(DecodeError::Invalid(format!(
                "touch {} has no user or campaign",
                touch.event_id
            )));
        }
        if self
            .touch_horizon(ctx.watermark)
            .is_some_and(|horizon| touch.event_time < horizon)
        {
            self.counters.late += 1;
            ctx.late(
                record,
                &format!(
                    "touch at {} is older than the watermark minus lookback ({} ms) and retention ({} ms)",
                    touch.event_time, self.config.lookback_ms, self.config.retention_ms
                ),
            );
            return Ok(());
        }
        let partition = record.partition;
        let count_views = self.config.settings.count_views;
        let user = self
            .touches
            .get_or_insert_with(partition, &touch.user_id, UserTouches::default);
        let old_oldest = user.touches.first().map(|t| t.t);
        let old_open_until = user.open_until(count_views);
        let at = user
            .touches
            .partition_point(|t| (t.t, &*t.id) < (touch.event_time, touch.event_id.as_str()));
        if user
            .touches
            .get(at)
            .is_some_and(|t| *t.id == *touch.event_id)
        {
            // The same touch again (resent, or a re-driven record): already counted.
            self.counters.duplicate_touches += 1;
            return Ok(());
        }
        if user
            .attributed_until_ms
            .is_some_and(|until| touch.event_time <= until)
        {
            self.counters.touches_after_attribution += 1;
        }
        user.touches.insert(
            at,
            StoredTouch {
                id: touch.event_id.into_boxed_str(),
                kind,
                t: touch.event_time,
                campaign: self.names.get(&touch.campaign_id),
                creative: self.names.get(&touch.creative_id),
            },
        );
        self.counters.touches += 1;
        let new_open_until = user.open_until(count_views);
        if new_open_until != old_open_until {
            let lookback = self.config.lookback_ms;
            let index = self.open_journeys.entry(partition).or_default();
            if let Some(until) = old_open_until {
                index.remove(&(until.saturating_add(lookback), touch.user_id.clone()));
            }
            if let Some(until) = new_open_until {
                index.insert((until.saturating_add(lookback), touch.user_id.clone()));
            }
        }
        if old_oldest.is_none_or(|oldest| touch.event_time < oldest) {
            let index = self.expiry.entry(partition).or_default();
            if let Some(oldest) = old_oldest {
                index.remove(&(oldest, touch.user_id.clone()));
            }
            index.insert((touch.event_time, touch.user_id));
        }
        Ok(())
    }

    /// Takes in a weight record of the model-weights table (a tombstone changes nothing: a fit replaces its model's
    /// weights as a whole).
    fn add_weight(
        &mut self,
        record: &Record<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), DecodeError> {
        if record.value.is_none() {
            return Ok(());
        }
        let weight: ModelWeight = self.weight_decoder.decode(ctx.schemas, record.value)?;
        if self.weights.apply(&weight) {
            self.counters.weights_read += 1;
        }
        Ok(())
    }

    fn add_conversion(
        &mut self,
        record: &Record<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), DecodeError> {
        let conversion: Conversion = self.conversion_decoder.decode(ctx.schemas, record.value)?;
        if conversion.user_id.is_empty() || conversion.conversion_id.is_empty() {
            return Err(DecodeError::Invalid(
                "conversion has no user_id or no conversion_id".into(),
            ));
        }
        if conversion.value_micros < 0 {
            return Err(DecodeError::Invalid(format!(
                "value_micros is negative ({})",
                conversion.value_micros
            )));
        }
        if conversion.currency.len() != 3
            || !conversion.currency.bytes().all(|b| b.is_ascii_uppercase())
        {
            return Err(DecodeError::Invalid(format!(
                "currency '{}' is not an ISO 4217 code",
                conversion.currency
            )));
        }
        if ctx
            .watermark
            .is_some_and(|w| conversion.event_time < w.saturating_sub(self.config.retention_ms))
        {
            self.counters.late += 1;
            ctx.late(
                record,
                &format!(
                    "conversion at {} is older than the watermark minus retention ({} ms): its touches may be gone",
                    conversion.event_time, self.config.retention_ms
                ),
            );
            return Ok(());
        }
        if !self.conversion_ids.insert(
            record.partition,
            conversion.event_time,
            &[&conversion.user_id],
            &conversion.conversion_id,
        ) {
            self.counters.duplicate_conversions += 1;
            return Ok(());
        }
        self.waiting
            .entry(record.partition)
            .or_default()
            .insert((conversion.event_time, conversion.conversion_id.clone()));
        self.pending.put(
            record.partition,
            conversion.conversion_id,
            PendingConversion {
                user_id: conversion.user_id,
                time_ms: conversion.event_time,
                value_micros: conversion.value_micros,
                currency: conversion.currency,
                correlation_id: record.correlation_id.to_owned(),
            },
        );
        Ok(())
    }

    /// Attributes the pending conversions of `partition` whose time is at or before `until` (all with None).
    fn attribute_due(&mut self, partition: i32, until: Option<i64>, ctx: &mut Context<'_>) {
        loop {
            let Some(index) = self.waiting.get_mut(&partition) else {
                return;
            };
            let Some((time, _)) = index.first() else {
                return;
            };
            if until.is_some_and(|until| *time > until) {
                return;
            }
            let Some((_, conversion_id)) = index.pop_first() else {
                return;
            };
            if let Some(conversion) = self.pending.delete(partition, &conversion_id) {
                self.attribute(partition, &conversion_id, &conversion, ctx);
            }
        }
    }

    fn attribute(
        &mut self,
        partition: i32,
        conversion_id: &str,
        conversion: &PendingConversion,
        ctx: &mut Context<'_>,
    ) {
        let from = conversion.time_ms.saturating_sub(self.config.lookback_ms);
        let settings = &self.config.settings;
        let eligible: Vec<StoredTouch> = self
            .touches
            .get(partition, conversion.user_id.as_str())
            .map(|user| {
                user.touches
                    .iter()
                    .filter(|t| t.t >= from && t.t <= conversion.time_ms)
                    .filter(|t| settings.count_views || t.kind == TouchKind::Click)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        self.journey.clear();
        self.journey.extend(eligible.iter().map(|t| Touch {
            time_ms: t.t,
            kind: t.kind,
        }));
        let mut shares: Vec<(AttributionModel, Vec<f64>)> = RuleModel::ALL
            .iter()
            .map(|model| {
                (
                    AttributionModel::from(*model),
                    rule_shares(*model, &self.journey, conversion.time_ms, settings),
                )
            })
            .collect();
        if !eligible.is_empty() {
            let channels: Vec<&str> = eligible.iter().map(|t| &*t.campaign).collect();
            for model in self.weights.models() {
                match self.weights.shares(model, &channels) {
                    Some(model_shares) => shares.push((model.into(), model_shares)),
                    None => self.counters.data_driven_skipped += 1,
                }
            }
        }
        if eligible.is_empty() {
            self.counters.unattributed += 1;
        } else {
            self.counters.attributed += 1;
        }
        let output = AttributedConversion {
            conversion_id: conversion_id.to_owned(),
            user_id: conversion.user_id.clone(),
            conversion_time: conversion.time_ms,
            value_micros: conversion.value_micros,
            currency: conversion.currency.clone(),
            lookback_ms: self.config.lookback_ms,
            touchpoints: eligible
                .iter()
                .map(|t| Touchpoint {
                    event_id: t.id.to_string(),
                    kind: output_kind(t.kind),
                    event_time: t.t,
                    campaign_id: t.campaign.to_string(),
                    creative_id: t.creative.to_string(),
                })
                .collect(),
            credits: shares
                .iter()
                .map(|(model, shares)| ModelShares {
                    model: *model,
                    shares: shares.clone(),
                })
                .collect(),
            attributed_at: ctx.now_ms,
            correlation_id: conversion.correlation_id.clone(),
        };
        self.send(
            ATTRIBUTED,
            conversion_id,
            &output,
            conversion.time_ms,
            &conversion.correlation_id,
            ctx,
        );
        for (model, shares) in &shares {
            // One credit per campaign: a campaign touched several times gets the sum of its touches' shares.
            let mut per_campaign: Vec<(&str, f64)> = Vec::new();
            for (touch, share) in eligible.iter().zip(shares) {
                match per_campaign
                    .iter_mut()
                    .find(|(c, _)| *c == &*touch.campaign)
                {
                    Some((_, total)) => *total += share,
                    None => per_campaign.push((&*touch.campaign, *share)),
                }
            }
            // A campaign a model gives nothing (last touch: every campaign but one) gets no record.
            for (campaign, share) in per_campaign.into_iter().filter(|(_, share)| *share > 0.0) {
                let credit = AttributionCredit {
                    credit_id: format!("{conversion_id}|{campaign}|{}", model.symbol()),
                    conversion_id: conversion_id.to_owned(),
                    campaign_id: campaign.to_owned(),
                    model: *model,
                    conversions: share,
                    revenue_micros: share * conversion.value_micros as f64,
                    currency: conversion.currency.clone(),
                    conversion_time: conversion.time_ms,
                };
                self.send(
                    CREDITS,
                    campaign,
                    &credit,
                    conversion.time_ms,
                    &conversion.correlation_id,
                    ctx,
                );
                self.counters.credits += 1;
            }
        }
        if let Some(user) = self.touches.get_mut(partition, conversion.user_id.as_str()) {
            user.attributed_until_ms = Some(
                user.attributed_until_ms
                    .map_or(conversion.time_ms, |t| t.max(conversion.time_ms)),
            );
        }
        self.close_converted_journey(partition, conversion_id, conversion, ctx);
    }

    /// Closes the open journey of the user of `conversion` (just attributed): its touches before the lookback
    /// first, as a journey without conversion; those within the lookback, up to the conversion, as the converted
    /// journey. Later touches stay open.
    fn close_converted_journey(
        &mut self,
        partition: i32,
        conversion_id: &str,
        conversion: &PendingConversion,
        ctx: &mut Context<'_>,
    ) {
        let count_views = self.config.settings.count_views;
        let lookback = self.config.lookback_ms;
        let from = conversion.time_ms.saturating_sub(lookback);
        let Some(user) = self.touches.get_mut(partition, conversion.user_id.as_str()) else {
            return;
        };
        let old_open_until = user.open_until(count_views);
        let (before, within): (Vec<StoredTouch>, Vec<StoredTouch>) = user
            .open(count_views)
            .filter(|t| t.t <= conversion.time_ms)
            .cloned()
            .partition(|t| t.t < from);
        if before.is_empty() && within.is_empty() {
            return;
        }
        user.closed_until_ms = Some(
            user.closed_until_ms
                .map_or(conversion.time_ms, |t| t.max(conversion.time_ms)),
        );
        let new_open_until = user.open_until(count_views);
        let index = self.open_journeys.entry(partition).or_default();
        if let Some(until) = old_open_until {
            index.remove(&(until.saturating_add(lookback), conversion.user_id.clone()));
        }
        if let Some(until) = new_open_until {
            index.insert((until.saturating_add(lookback), conversion.user_id.clone()));
        }
        if !before.is_empty() {
            self.write_unconverted(&conversion.user_id, &before, ctx);
        }
        if !within.is_empty() {
            let journey = Journey {
                journey_id: conversion_id.to_owned(),
                user_id: conversion.user_id.clone(),
                converted: true,
                conversion_id: Some(conversion_id.to_owned()),
                value_micros: conversion.value_micros,
                currency: conversion.currency.clone(),
                ended_at: conversion.time_ms,
                path: journey_path(&within),
                touches: within.iter().map(journey_touch).collect(),
                closed_at: ctx.now_ms,
                correlation_id: conversion.correlation_id.clone(),
            };
            self.counters.journeys_converted += 1;
            self.send(
                JOURNEYS,
                &conversion.user_id,
                &journey,
                conversion.time_ms,
                &conversion.correlation_id,
                ctx,
            );
        }
    }

    /// Writes `touches` (not empty, oldest first) of `user_id` as a journey that ended without a conversion, at its
    /// last touch plus the lookback.
    fn write_unconverted(&mut self, user_id: &str, touches: &[StoredTouch], ctx: &mut Context<'_>) {
        let (Some(first), Some(last)) = (touches.first(), touches.last()) else {
            return;
        };
        let journey_id = format!("{user_id}|{}|{}", first.id, last.id);
        let ended_at = last.t.saturating_add(self.config.lookback_ms);
        let journey = Journey {
            journey_id: journey_id.clone(),
            user_id: user_id.to_owned(),
            converted: false,
            conversion_id: None,
            value_micros: 0,
            currency: String::new(),
            ended_at,
            path: journey_path(touches),
            touches: touches.iter().map(journey_touch).collect(),
            closed_at: ctx.now_ms,
            correlation_id: journey_id.clone(),
        };
        self.counters.journeys_not_converted += 1;
        self.send(JOURNEYS, user_id, &journey, ended_at, &journey_id, ctx);
    }

    /// Closes, without conversion, the open journeys of `partition` whose last touch is more than the lookback
    /// before `until` (the watermark minus grace: conversions up to it are attributed, so none can claim them).
    fn close_expired_journeys(&mut self, partition: i32, until: i64, ctx: &mut Context<'_>) {
        let count_views = self.config.settings.count_views;
        loop {
            let Some(index) = self.open_journeys.get_mut(&partition) else {
                return;
            };
            if index.first().is_none_or(|(close_at, _)| *close_at >= until) {
                return;
            }
            let Some((_, user_id)) = index.pop_first() else {
                return;
            };
            let Some(user) = self.touches.get_mut(partition, user_id.as_str()) else {
                continue;
            };
            let open: Vec<StoredTouch> = user.open(count_views).cloned().collect();
            let Some(last) = open.last() else {
                continue;
            };
            let close_at = last.t.saturating_add(self.config.lookback_ms);
            if close_at >= until {
                // The index is kept in step with the open journeys; should it lag, the journey waits for its time.
                index.insert((close_at, user_id));
                continue;
            }
            user.closed_until_ms = Some(last.t);
            self.write_unconverted(&user_id, &open, ctx);
        }
    }
    fn send<T: Serialize>(
        &mut self,
        output: usize,
        key: &str,
        value: &T,
        timestamp_ms: i64,
        correlation_id: &str,
        ctx: &mut Context<'_>,
    ) {
        let Some(encoder) = self.encoders.get(output) else {
            return;
        };
        self.value_buffer.clear();
        match encoder.encode(value, &mut self.value_buffer) {
            Ok(()) => ctx.emit(
                output,
                key.as_bytes(),
                &self.value_buffer,
                timestamp_ms,
                correlation_id,
            ),
            // The output types are built here from validated values; a failure is a bug, not input to skip.
            Err(e) => tracing::error!(error = %e, key, "attribution output does not encode"),
        }
    }

    /// Drops touches of `partition` older than `horizon`; users left without touches leave the store. Touches of
    /// an open journey that are dropped (a journey longer than lookback plus retention) are first written as a
    /// journey without conversion.
    fn expire(&mut self, partition: i32, horizon: i64, ctx: &mut Context<'_>) {
        let count_views = self.config.settings.count_views;
        let lookback = self.config.lookback_ms;
        let mut cut: Vec<(String, Vec<StoredTouch>)> = Vec::new();
        let Some(index) = self.expiry.get_mut(&partition) else {
            return;
        };
        while index.first().is_some_and(|(oldest, _)| *oldest < horizon) {
            let Some((_, user_id)) = index.pop_first() else {
                break;
            };
            let Some(user) = self.touches.get_mut(partition, user_id.as_str()) else {
                continue;
            };
            let old_open_until = user.open_until(count_views);
            let keep_from = user.touches.partition_point(|t| t.t < horizon);
            let closed_until = user.closed_until_ms;
            let dropped_open: Vec<StoredTouch> = user.touches[..keep_from]
                .iter()
                .filter(|t| {
                    closed_until.is_none_or(|until| t.t > until)
                        && (count_views || t.kind == TouchKind::Click)
                })
                .cloned()
                .collect();
            if let Some(last) = dropped_open.last() {
                user.closed_until_ms = Some(closed_until.map_or(last.t, |t| t.max(last.t)));
            }
            self.counters.touches_expired += keep_from as u64;
            user.touches.drain(..keep_from);
            let new_open_until = user.open_until(count_views);
            if new_open_until != old_open_until {
                let journeys = self.open_journeys.entry(partition).or_default();
                if let Some(until) = old_open_until {
                    journeys.remove(&(until.saturating_add(lookback), user_id.clone()));
                }
                if let Some(until) = new_open_until {
                    journeys.insert((until.saturating_add(lookback), user_id.clone()));
                }
            }
            if !dropped_open.is_empty() {
                cut.push((user_id.clone(), dropped_open));
            }
            match user.touches.first() {
                Some(next) => {
                    index.insert((next.t, user_id));
                }
                None => {
                    self.touches.delete(partition, user_id.as_str());
                }
            }
        }
        for (user_id, touches) in cut {
            self.write_unconverted(&user_id, &touches, ctx);
        }
    }

    fn rebuild_indexes(&mut self, partitions: &[i32]) {
        for partition in partitions {
            self.expiry.remove(partition);
            self.waiting.remove(partition);
            self.open_journeys.remove(partition);
        }
        let count_views = self.config.settings.count_views;
        for (partition, user_id, user) in self.touches.iter() {
            if !partitions.contains(&partition) {
                continue;
            }
            if let Some(oldest) = user.touches.first() {
                self.expiry
                    .entry(partition)
                    .or_default()
                    .insert((oldest.t, user_id.clone()));
            }
            if let Some(until) = user.open_until(count_views) {
                self.open_journeys.entry(partition).or_default().insert((
                    until.saturating_add(self.config.lookback_ms),
                    user_id.clone(),
                ));
            }
        }
        for (partition, conversion_id, conversion) in self.pending.iter() {
            if partitions.contains(&partition) {
                self.waiting
                    .entry(partition)
                    .or_default()
                    .insert((conversion.time_ms, conversion_id.clone()));
            }
        }
    }
}

impl Operator for AttributionJob {
    fn inputs(&self) -> Vec<InputSpec> {
        let mut inputs = vec![
            InputSpec {
                internal_partitions: Some(self.config.partitions),
                watermark_markers: true,
                ..InputSpec::stream(&self.config.touches)
            },
            InputSpec::stream(&self.config.conversions),
        ];
        inputs.extend(self.config.model_weights.iter().map(InputSpec::table));
        inputs
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        vec![
            OutputSpec::topology(&self.config.attributed, AttributedConversion::SCHEMA),
            // campaign-metrics reads the credits by campaign: each of its partitions mixes credits of all of this
            // job's tasks, so it needs the markers to know how far they all got.
            OutputSpec {
                watermark_markers: true,
                ..OutputSpec::topology(&self.config.credits, AttributionCredit::SCHEMA)
            },
        ]
        .into_iter()
        .chain(
            self.config
                .journeys
                .iter()
                .map(|topic| OutputSpec::topology(topic, Journey::SCHEMA)),
        )
        .collect()
    }

    fn stores(&mut self) -> Vec<&mut dyn ChangelogStore> {
        vec![
            &mut self.touches,
            &mut self.pending,
            &mut self.conversion_ids,
        ]
    }

    fn set_output_schema_ids(&mut self, ids: &[u32]) -> Result<(), CodecError> {
        let expected = 2 + usize::from(self.config.journeys.is_some());
        let (true, [attributed, credits, journeys @ ..]) = (ids.len() == expected, ids) else {
            return Err(CodecError::OutputIds {
                expected,
                got: ids.len(),
            });
        };
        self.encoders = vec![
            WireEncoder::new(AttributedConversion::SCHEMA, *attributed)?,
            WireEncoder::new(AttributionCredit::SCHEMA, *credits)?,
        ];
        for id in journeys {
            self.encoders.push(WireEncoder::new(Journey::SCHEMA, *id)?);
        }
        Ok(())
    }

    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), DecodeError> {
        match record.input {
            TOUCHES => self.add_touch(record, ctx),
            CONVERSIONS => self.add_conversion(record, ctx),
            _ => self.add_weight(record, ctx),
        }
    }

    fn on_commit(&mut self, ctx: &mut Context<'_>) {
        let partitions: Vec<i32> = self
            .waiting
            .keys()
            .chain(self.expiry.keys())
            .chain(self.open_journeys.keys())
            .copied()
            .collect::<BTreeSet<i32>>()
            .into_iter()
            .collect();
        for partition in partitions {
            let Some(watermark) = ctx.watermark_of(partition) else {
                continue;
            };
            let due = watermark.saturating_sub(self.config.grace_ms);
            self.attribute_due(partition, Some(due), ctx);
            // After the conversions up to `due`: a journey they did not claim cannot be claimed any more.
            self.close_expired_journeys(partition, due, ctx);
            if let Some(horizon) = self.touch_horizon(Some(watermark)) {
                self.expire(partition, horizon, ctx);
            }
        }
        self.conversion_ids
            .expire(|partition| ctx.watermark_of(partition));
    }

    fn on_end_of_input(&mut self, ctx: &mut Context<'_>) {
        let partitions: Vec<i32> = self.waiting.keys().copied().collect();
        for partition in partitions {
            self.attribute_due(partition, None, ctx);
        }
    }

    fn announced_watermark(&self, task_watermark: i64) -> i64 {
        // A conversion is attributed once the watermark passed its time plus grace: credits of later conversions
        // can still come for times down to the watermark minus grace.
        task_watermark.saturating_sub(self.config.grace_ms)
    }

    fn on_revoked(&mut self, partition: i32) {
        self.expiry.remove(&partition);
        self.waiting.remove(&partition);
        self.open_journeys.remove(&partition);
    }

    fn on_restored(&mut self, partitions: &[i32]) {
        self.rebuild_indexes(partitions);
    }

    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let c = self.counters;
        vec![
            (
                "touches_stored",
                "Touches added to users' journeys.",
                c.touches,
            ),
            (
                "conversions_attributed",
                "Conversions credited to at least one touch.",
                c.attributed,
            ),
            (
                "conversions_unattributed",
                "Conversions without an eligible touch in the lookback window.",
                c.unattributed,
            ),
            (
                "credits_emitted",
                "Credit records (conversion, campaign, model) emitted.",
                c.credits,
            ),
            (
                "touches_after_attribution",
                "Touches that arrived after a later conversion of their user had been attributed.",
                c.touches_after_attribution,
            ),
            (
                "touches_expired",
                "Touches removed from the store past lookback plus retention.",
                c.touches_expired,
            ),
            (
                "late_records",
                "Touches and conversions too old to attribute completely, sent to late topics.",
                c.late,
            ),
            (
                "duplicate_conversions",
                "Conversions whose conversion id was taken already, dropped.",
                c.duplicate_conversions,
            ),
            (
                "duplicate_touches",
                "Touches already in their user's journey, dropped.",
                c.duplicate_touches,
            ),
            (
                "journeys_converted",
                "Journeys written that ended in a conversion.",
                c.journeys_converted,
            ),
            (
                "journeys_not_converted",
                "Journeys written that ended without a conversion within the lookback.",
                c.journeys_not_converted,
            ),
            (
                "model_weights_read",
                "Weight records of the data-driven models taken in.",
                c.weights_read,
            ),
            (
                "data_driven_skipped",
                "Attributed conversions left out by a fitted data-driven model (their campaigns weigh nothing), per model.",
                c.data_driven_skipped,
            ),
        ]
    }
}

/// The contract's touch kind.
fn output_kind(kind: TouchKind) -> OutputTouchKind {
    match kind {
        TouchKind::View => OutputTouchKind::View,
        TouchKind::Click => OutputTouchKind::Click,
    }
}

/// A stored touch as a journey's touch.
fn journey_touch(touch: &StoredTouch) -> JourneyTouch {
    JourneyTouch {
        event_id: touch.id.to_string(),
        kind: output_kind(touch.kind),
        event_time: touch.t,
        campaign_id: touch.campaign.to_string(),
        creative_id: touch.creative.to_string(),
    }
}

/// The touches' campaigns joined by [`Journey::PATH_SEPARATOR`].
fn journey_path(touches: &[StoredTouch]) -> String {
    touches
        .iter()
        .map(|t| &*t.campaign)
        .collect::<Vec<_>>()
        .join(Journey::PATH_SEPARATOR)
}
