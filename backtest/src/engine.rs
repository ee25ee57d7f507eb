//! Replays a period of history through the live operators once per strategy.
//!
//! # The dataflow
//!
//! [`Dataflow::resolve`] takes the jobs from the job registry and places them as the topology does: every processor
//! entry whose job is registered, wired through its ports. Each strategy builds every job's stages with its settings
//! for that job ([`Strategy::job_settings_yaml`]); a stage runs after the stages writing the topics it reads, and
//! reads what they captured. The topics no stage writes are the history.
//!
//! # History and warm-up
//!
//! [`History::read`] reads the source tables (the campaigns) whole, and the source streams (impressions, clicks,
//! conversions) with timestamps in `[from − warm-up, to)`. The warm-up (by default the longest attribution lookback
//! of the strategies) lets the jobs build the state the live jobs had at `from`: the touches a conversion early in
//! the period is credited to, the creatives' fatigue baselines, the campaigns' open days. Pause rules act only from
//! `from` on, and outcomes count only events and conversions in `[from, to)`; everything before is replayed as it
//! happened.
//!
//! # Memory
//!
//! The ad events (impressions and clicks, nearly all of the history) are never held. [`History::read`] fixes the
//! offsets each partition's replay covers and keeps a 32-byte [`EventInfo`] per event, for pause rules, outcomes
//! and journeys; each strategy reads the events again over the same offsets, one reader thread per partition a few
//! batches ahead of a k-way merge by timestamp. Stage outputs are handed to the stages reading them as they are
//! sent, and a run keeps of them only the latest row per key of the topology's topics and the credits
//! ([`StageRun`]). What stays in memory is the jobs' state, the conversions and the tables, and the events one
//! stage waits on for another's output (the merge below); not the period.
//!
//! # One strategy
//!
//! Impressions and clicks, merged by timestamp, are fed one by one to the stages that report creative fatigue (each
//! a [`Simulator`]). Before each record the simulations' clock moves to its time, so whatever they report at the
//! commits passed is seen first: a fatigue record meeting the strategy's pause rule pauses its creative from the
//! record's emission time on. A record of a paused creative, or of a campaign paused by the budget rule for its
//! local day, is removed; the rest is kept and pushed.
//!
//! Every other stage is fed in data order as its inputs come: its tables first, whole, then its streams — the kept
//! events in the order above, the other sources (conversions), and the outputs of the stages before it (today
//! attribution's repartition stage, its attribution stage with the conversions, and campaign-metrics with the
//! campaigns table and the credits) — merged by timestamp, each partition's order kept, the events ranking as
//! their lowest input among records of the same millisecond. A stream record goes in only once every stream that
//! may still bring an earlier one has its next record waiting, so the order is the one a merge of the whole inputs
//! gives; the watermark markers a stage sends to every partition at each commit keep those waits short. A
//! conversion whose touches were all removed gets no credit: it is lost (the naive counterfactual).
//!
//! # Outcomes
//!
//! Spend, impressions and clicks of the kept events in the period; conversions and revenue credited by the
//! strategy's model to conversions in the period: a rule model's credits as the attribution job writes them, a
//! data-driven model's (markov, shapley) from its attributed conversions and weights fitted on the history's
//! journeys. Both under the naive counterfactual and under the Markov one ([`crate::journeys`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use adstream_kafka::registry_client::RegistryClient;
use adstream_processors::attribution::models::{weighted_shares, TouchKind};
use adstream_processors::jobs::{JobEntry, JobRegistry, Stage, Wiring};
use adstream_processors::runtime::{
    CapturedRecord, InputKind, InputSpec, OutputSpec, ReadBack, SchemaCache, SimulateOptions,
    SimulatedRecord, Simulation, Simulator, TypedDecoder,
};
use adstream_processors::window::{calendar_window, Granularity};
use adstream_schemas::events::{avsc, AdClick, AdImpression, AvroRecord, Campaign, Conversion};
use adstream_schemas::outputs::{
    AttributedConversion, AttributionCredit, AttributionModel, CreativeFatigue,
    FatigueStatus as OutputStatus,
};
use adstream_topology::Topology;
use chrono_tz::Tz;
use rdkafka::Message;

use crate::journeys::{Journeys, NO_KEPT_TOUCH};
use crate::strategy::{PauseStatus, Strategy};
use crate::BacktestError;
use adstream_query::source::{KafkaSource, PartitionRange, TimestampOrder};

const HOUR_MS: i64 = 3_600_000;

/// The registry's jobs as the topology places them: one entry per processor entry whose job is registered, and the
/// topics that connect their stages. Built once per backtest; each strategy builds its own operators from it.
pub struct Dataflow {
    processors: Vec<PlacedJob>,
    /// Partition count of every topology topic.
    partitions: HashMap<String, i32>,
    /// The record (Avro full name) each topology topic carries.
    records: HashMap<String, String>,
    /// Topics some stage reads and no stage writes, in the order the stages read them: what the history holds.
    sources: Vec<(String, InputKind)>,
}

/// A processor entry and the registered job it runs.
struct PlacedJob {
    processor: String,
    job: &'static dyn JobEntry,
    wiring: Wiring,
}

/// One stage of one strategy's dataflow, with the topics its operator declared.
struct PlannedStage {
    stage: Stage,
    inputs: Vec<InputSpec>,
    outputs: Vec<OutputSpec>,
}

impl Dataflow {
    /// The processor entries of `topology` whose job `registry` has (only those named in `only`, unless it is
    /// empty), wired as `adstream process` wires them.
    pub fn resolve(
        topology: &Topology,
        registry: &JobRegistry,
        only: &[String],
    ) -> Result<Dataflow, BacktestError> {
        for name in only {
            let processor = topology.processor(name).ok_or_else(|| {
                BacktestError::Job(format!("{} has no processor {name}", topology.origin()))
            })?;
            if registry.job_of(processor).is_none() {
                return Err(BacktestError::Job(format!(
                    "processor {name} runs {}, which is not a job of this binary (adstream jobs)",
                    processor.job_name()
                )));
            }
        }
        let mut processors = Vec::new();
        for processor in topology.processors() {
            if !only.is_empty() && !only.contains(&processor.name) {
                continue;
            }
            // An entry whose job this binary does not have is some other program's processor.
            let Some(job) = registry.job_of(processor) else {
                continue;
            };
            let wiring = Wiring::resolve(topology, &processor.name, job.ports())
                .map_err(|e| BacktestError::Settings(e.into()))?;
            processors.push(PlacedJob {
                processor: processor.name.clone(),
                job,
                wiring,
            });
        }
        if processors.is_empty() {
            return Err(BacktestError::Job(format!(
                "no processor entry of {} runs a job of this binary (adstream jobs)",
                topology.origin()
            )));
        }
        let mut flow = Dataflow {
            processors,
            partitions: topology
                .topics()
                .iter()
                .map(|t| (t.name.clone(), t.partitions))
                .collect(),
            records: topology
                .topics()
                .iter()
                .filter_map(|t| {
                    t.value_schema
                        .clone()
                        .map(|record| (t.name.clone(), record))
                })
                .collect(),
            sources: Vec::new(),
        };
        // Settings change what a job computes, never which topics it reads: the defaults place the sources.
        let stages = flow.stages(&Strategy::default())?;
        let written: HashSet<&str> = stages
            .iter()
            .flat_map(|s| s.outputs.iter().map(|o| o.topic.as_str()))
            .collect();
        let mut sources: Vec<(String, InputKind)> = Vec::new();
        for input in stages.iter().flat_map(|s| &s.inputs) {
            if !written.contains(input.topic.as_str())
                && !sources.iter().any(|(t, _)| *t == input.topic)
            {
                sources.push((input.topic.clone(), input.kind));
            }
        }
        flow.sources = sources;
        Ok(flow)
    }

    /// The processors, with the job each runs, in the topology's order.
    pub fn processors(&self) -> impl Iterator<Item = (&str, &'static dyn JobEntry)> {
        self.processors
            .iter()
            .map(|p| (p.processor.as_str(), p.job))
    }

    /// The record `topic` carries, when the topology declares it.
    fn record(&self, topic: &str) -> Option<&str> {
        self.records.get(topic).map(String::as_str)
    }

    /// The partition count of a stage's input or output: the internal topic's, else the topology's.
    fn partitions_of(&self, topic: &str, internal: Option<i32>) -> Result<i32, BacktestError> {
        internal
            .or_else(|| self.partitions.get(topic).copied())
            .ok_or_else(|| BacktestError::Job(format!("no partition count for {topic}")))
    }

    /// Every stage of every processor, built with `strategy`'s settings, in an order where each stage comes after
    /// the stages writing the topics it reads (the topology's order among the others).
    fn stages(&self, strategy: &Strategy) -> Result<Vec<PlannedStage>, BacktestError> {
        if let Some(unknown) = strategy.jobs.keys().find(|name| {
            !self
                .processors
                .iter()
                .any(|p| p.job.name() == name.as_str())
        }) {
            return Err(BacktestError::Strategy {
                file: strategy.name().to_owned(),
                message: format!(
                    "jobs.{unknown}: no processor of the topology runs a job of that name"
                ),
            });
        }
        let mut pending = Vec::new();
        for placed in &self.processors {
            let yaml = strategy.job_settings_yaml(placed.job.name())?;
            for stage in placed.job.stages_from_yaml(&yaml, &placed.wiring)? {
                let (inputs, outputs) = (stage.operator.inputs(), stage.operator.outputs());
                pending.push(PlannedStage {
                    stage,
                    inputs,
                    outputs,
                });
            }
        }
        let mut ordered: Vec<PlannedStage> = Vec::with_capacity(pending.len());
        while !pending.is_empty() {
            let writes =
                |stage: &PlannedStage, topic: &str| stage.outputs.iter().any(|o| o.topic == topic);
            let ready = pending.iter().position(|stage| {
                stage.inputs.iter().all(|input| {
                    !pending
                        .iter()
                        .any(|other| !std::ptr::eq(other, stage) && writes(other, &input.topic))
                })
            });
            let Some(ready) = ready else {
                let names: Vec<&str> = pending
                    .iter()
                    .map(|s| s.stage.application_id.as_str())
                    .collect();
                return Err(BacktestError::Job(format!(
                    "the stages {names:?} read each other's outputs in a cycle: a backtest replays them in order"
                )));
            };
            ordered.push(pending.remove(ready));
        }
        Ok(ordered)
    }
}

/// The period a backtest counts outcomes in, and how much history before it is replayed.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    /// Start (inclusive), UTC epoch millis.
    pub from_ms: i64,
    /// End (exclusive).
    pub to_ms: i64,
    /// History replayed before `from_ms` to build state.
    pub warmup_ms: i64,
}

/// What an impression or click is, for pause rules, outcomes and journeys.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventInfo {
    pub time_ms: i64,
    /// Index in [`History::campaign_ids`].
    pub campaign: u32,
    creative: u32,
    cost_micros: i64,
    click: bool,
    /// The user's number plus one (see [`EventInfo::user`]): a niche that keeps the struct at 32 bytes, one per
    /// event of the history.
    user_plus_one: Option<NonZeroU32>,
}

impl EventInfo {
    /// The user, numbered as [`ConversionInfo::user`] numbers them; None when the event names none.
    pub fn user(&self) -> Option<u32> {
        self.user_plus_one.map(|n| n.get() - 1)
    }

    /// View or click, as a touch.
    pub fn kind(&self) -> TouchKind {
        if self.click {
            TouchKind::Click
        } else {
            TouchKind::View
        }
    }
}

/// A conversion of the history (the first record of each conversion id), for journeys.
#[derive(Debug, Clone)]
pub(crate) struct ConversionInfo {
    pub id: String,
    /// The user's number (see [`EventInfo::user`]).
    pub user: u32,
    pub time_ms: i64,
    pub value_micros: i64,
}

/// A campaign's settings from the campaigns table.
#[derive(Debug, Clone)]
pub struct CampaignInfo {
    /// Campaign id.
    pub id: String,
    /// Currency of its spend.
    pub currency: String,
    /// Daily budget, micros.
    pub daily_budget_micros: Option<i64>,
    /// Its time zone (UTC when unknown).
    pub time_zone: Tz,
}

/// The history a backtest replays, planned once and shared by every strategy: every source topic of the
/// [`Dataflow`]. The ad events are not held: each strategy reads them again from Kafka, over the same offsets, in
/// the same order (see [`History::replay_events`]); what the backtest keeps of each is an [`EventInfo`].
pub struct History {
    source: Arc<KafkaSource>,
    /// Source tables (read whole), by topic.
    tables: HashMap<String, Vec<SimulatedRecord>>,
    /// The source streams carrying impressions or clicks, with the offsets the history holds of each; a replayed
    /// record's `input` is its topic's index here.
    event_topics: Vec<EventTopic>,
    /// Timestamps of the ad events replayed: `[from − warm-up, to)`.
    event_window: (i64, i64),
    /// What each ad event is, in replay order; None for a record that does not decode (the jobs dead-letter it).
    infos: Vec<Option<EventInfo>>,
    /// The other source streams (conversions), by topic.
    streams: HashMap<String, Vec<SimulatedRecord>>,
    /// The conversions of the streams that carry them, decoded, in timestamp order.
    conversions: Vec<ConversionInfo>,
    /// Campaigns by index, as [`EventInfo::campaign`] numbers them.
    campaign_ids: Vec<String>,
    /// Creative id → the number [`EventInfo::creative`] gives it.
    creative_index: HashMap<String, u32>,
    campaign_info: HashMap<String, CampaignInfo>,
    registry: RegistryClient,
    runtime: tokio::runtime::Handle,
}

/// A source stream of ad events and the part of it the history holds.
struct EventTopic {
    name: String,
    /// Whether it carries clicks (else impressions).
    clicks: bool,
    /// The offsets read, per partition, fixed when the history is read: records written since are not replayed.
    ranges: Vec<PartitionRange>,
}

/// Records a reader thread hands to the merge at once.
const READ_BATCH: usize = 2048;
/// Batches a reader thread may read ahead of the merge: what bounds the events in memory (with the number of
/// partitions).
const READ_AHEAD: usize = 2;

/// One partition's records on their way to the merge.
struct PartitionFeed {
    /// (input, partition): among heads of the same timestamp, the lowest goes first.
    rank: (usize, i32),
    /// None once the reader is done.
    batches: Option<Receiver<Result<Vec<SimulatedRecord>, BacktestError>>>,
    head: VecDeque<SimulatedRecord>,
}

/// Reads `topics` over their ranges, keeping records with timestamps in `window`, and hands them to `each` merged
/// by timestamp, each partition's own order kept: the order of [`interleave_by_timestamp`](adstream_processors::runtime::simulate::interleave_by_timestamp) over all of them,
/// without holding them. One reader thread per partition reads at most [`READ_AHEAD`] batches ahead.
fn merge_events(
    source: &KafkaSource,
    topics: &[EventTopic],
    window: (i64, i64),
    mut each: impl FnMut(SimulatedRecord) -> Result<(), BacktestError>,
) -> Result<(), BacktestError> {
    std::thread::scope(|scope| {
        let mut feeds = Vec::new();
        for (input, topic) in topics.iter().enumerate() {
            for range in topic.ranges.iter().filter(|r| !r.is_empty()) {
                let (sender, receiver) = sync_channel(READ_AHEAD);
                let (name, range) = (topic.name.as_str(), *range);
                scope.spawn(move || {
                    let read = source.read_range(name, range, READ_BATCH, |batch| {
                        let records: Vec<SimulatedRecord> = batch
                            .iter()
                            .filter(|m| {
                                m.timestamp()
                                    .to_millis()
                                    .is_some_and(|ts| ts >= window.0 && ts < window.1)
                            })
                            .map(|m| SimulatedRecord::from_message(input, name, m))
                            .collect();
                        // Nobody receiving: the merge stopped, and so does the read.
                        Ok(records.is_empty() || sender.send(Ok(records)).is_ok())
                    });
                    if let Err(e) = read {
                        let _ = sender.send(Err(e.into()));
                    }
                });
                feeds.push(PartitionFeed {
                    rank: (input, range.partition),
                    batches: Some(receiver),
                    head: VecDeque::new(),
                });
            }
        }
        // On return the receivers are dropped, so that readers still running stop at their next batch.
        loop {
            for feed in &mut feeds {
                while feed.head.is_empty() {
                    let Some(batches) = &feed.batches else {
                        break;
                    };
                    match batches.recv() {
                        Ok(batch) => feed.head.extend(batch?),
                        Err(_) => feed.batches = None,
                    }
                }
            }
            let next = feeds
                .iter()
                .enumerate()
                .filter_map(|(index, feed)| {
                    feed.head
                        .front()
                        .map(|r| ((r.timestamp_ms.unwrap_or(i64::MIN), feed.rank), index))
                })
                .min();
            let Some((_, index)) = next else {
                return Ok(());
            };
            if let Some(record) = feeds[index].head.pop_front() {
                each(record)?;
            }
        }
    })
}

impl History {
    /// Reads the history of `period` for the sources of `flow` through `source`: tables whole, streams with
    /// timestamps in `[from − warm-up, to)`; `runtime` serves the rare registry fetches of the decoders. The ad
    /// events are read once here, for what each is, and again by every strategy. Blocks. `progress` is called
    /// with (records read, topic).
    pub fn read(
        source: &Arc<KafkaSource>,
        flow: &Dataflow,
        period: Period,
        runtime: tokio::runtime::Handle,
        progress: &mut dyn FnMut(u64, &str),
    ) -> Result<History, BacktestError> {
        let start = period.from_ms.saturating_sub(period.warmup_ms);
        // The backtest's inputs are event streams, written roughly in time order.
        let ranges = |topic: &str, bounded: bool| {
            let (from, to) = if bounded {
                (Some(start), Some(period.to_ms))
            } else {
                (None, None)
            };
            source.plan_ranges(topic, None, from, to, TimestampOrder::Roughly)
        };
        let mut read = |topic: &str, bounded: bool| {
            let mut records = Vec::new();
            for range in ranges(topic, bounded)? {
                source.read_range(topic, range, 4096, |batch| {
                    for message in batch {
                        let timestamp = message.timestamp().to_millis();
                        if bounded && !timestamp.is_some_and(|ts| ts >= start && ts < period.to_ms)
                        {
                            continue;
                        }
                        records.push(SimulatedRecord::from_message(0, topic, message));
                    }
                    progress(batch.len() as u64, topic);
                    Ok(true)
                })?;
            }
            Ok::<_, BacktestError>(records)
        };
        let (mut tables, mut streams) = (HashMap::new(), HashMap::new());
        let mut event_topics = Vec::new();
        let mut conversion_topics = Vec::new();
        for (topic, kind) in &flow.sources {
            let record = flow.record(topic);
            match kind {
                InputKind::Table => {
                    tables.insert(topic.clone(), read(topic, false)?);
                }
                InputKind::Stream
                    if matches!(record, Some(AdImpression::FULL_NAME | AdClick::FULL_NAME)) =>
                {
                    event_topics.push(EventTopic {
                        name: topic.clone(),
                        clicks: record == Some(AdClick::FULL_NAME),
                        ranges: ranges(topic, true)?,
                    });
                }
                InputKind::Stream => {
                    streams.insert(topic.clone(), read(topic, true)?);
                    if record == Some(Conversion::FULL_NAME) {
                        conversion_topics.push(topic.clone());
                    }
                }
            }
        }

        let mut cache = SchemaCache::new(source.registry().clone(), runtime.clone());
        let decoder = |name: &'static str, schema: &str| {
            TypedDecoder::new(name, schema).map_err(BacktestError::Schema)
        };
        let mut campaign_decoder = decoder(Campaign::FULL_NAME, avsc::CAMPAIGN)?;
        let mut campaign_info = HashMap::new();
        let campaign_tables = flow
            .sources
            .iter()
            .filter(|(topic, _)| flow.record(topic) == Some(Campaign::FULL_NAME))
            .filter_map(|(topic, _)| tables.get(topic));
        for record in campaign_tables.flatten() {
            // A tombstone removes the campaign; what does not decode the job dead-letters and the backtest skips.
            let Ok(campaign) =
                campaign_decoder.decode::<Campaign>(&mut cache, record.value.as_deref())
            else {
                if record.value.is_none() {
                    if let Some(key) = &record.key {
                        campaign_info.remove(&String::from_utf8_lossy(key).into_owned());
                    }
                }
                continue;
            };
            campaign_info.insert(
                campaign.campaign_id.clone(),
                CampaignInfo {
                    id: campaign.campaign_id,
                    currency: campaign.currency,
                    daily_budget_micros: campaign.daily_budget_micros,
                    time_zone: campaign.time_zone.parse().unwrap_or(Tz::UTC),
                },
            );
        }
        let mut impression_decoder = decoder(AdImpression::FULL_NAME, avsc::AD_IMPRESSION)?;
        let mut click_decoder = decoder(AdClick::FULL_NAME, avsc::AD_CLICK)?;
        let mut campaign_ids = Vec::new();
        let mut campaign_index: HashMap<String, u32> = HashMap::new();
        let mut creative_index: HashMap<String, u32> = HashMap::new();
        let mut user_index: HashMap<String, u32> = HashMap::new();
        let mut user = |id: String| {
            let next = user_index.len() as u32;
            *user_index.entry(id).or_insert(next)
        };
        let event_window = (start, period.to_ms);
        let mut infos = Vec::new();
        let mut unreported = 0u64;
        merge_events(source, &event_topics, event_window, |record| {
            let decoded = if !event_topics[record.input].clicks {
                impression_decoder
                    .decode::<AdImpression>(&mut cache, record.value.as_deref())
                    .ok()
                    .map(|i| {
                        (
                            i.event_time,
                            i.campaign_id,
                            i.creative_id,
                            i.cost_micros,
                            false,
                            i.user_id,
                        )
                    })
            } else {
                click_decoder
                    .decode::<AdClick>(&mut cache, record.value.as_deref())
                    .ok()
                    .map(|c| {
                        (
                            c.event_time,
                            c.campaign_id,
                            c.creative_id,
                            c.cost_micros,
                            true,
                            c.user_id,
                        )
                    })
            };
            infos.push(
                decoded.map(|(event_time, campaign, creative, cost, click, user_id)| {
                    EventInfo {
                        // Spend and pauses follow the record timestamp, which is what the jobs window by.
                        time_ms: record.timestamp_ms.unwrap_or(event_time),
                        campaign: *campaign_index.entry(campaign).or_insert_with_key(|id| {
                            campaign_ids.push(id.clone());
                            (campaign_ids.len() - 1) as u32
                        }),
                        creative: {
                            let next = creative_index.len() as u32;
                            *creative_index.entry(creative).or_insert(next)
                        },
                        cost_micros: cost,
                        click,
                        user_plus_one: user_id
                            .filter(|id| !id.is_empty())
                            .map(&mut user)
                            .and_then(|n| NonZeroU32::new(n.wrapping_add(1))),
                    }
                }),
            );
            unreported += 1;
            if unreported == READ_BATCH as u64 {
                progress(unreported, &event_topics[record.input].name);
                unreported = 0;
            }
            Ok(())
        })?;
        if let Some(topic) = event_topics.first() {
            progress(unreported, &topic.name);
        }
        infos.shrink_to_fit();
        // Conversions as the attribution job takes them: valid ones with a user, each id once.
        let mut conversion_decoder = decoder(Conversion::FULL_NAME, avsc::CONVERSION)?;
        let mut conversion_records: Vec<&SimulatedRecord> = conversion_topics
            .iter()
            .filter_map(|topic| streams.get(topic))
            .flatten()
            .collect();
        conversion_records.sort_by_key(|r| r.timestamp_ms);
        let mut seen = HashSet::new();
        let mut conversions = Vec::new();
        for record in conversion_records {
            let Ok(conversion) =
                conversion_decoder.decode::<Conversion>(&mut cache, record.value.as_deref())
            else {
                continue;
            };
            if conversion.user_id.is_empty()
                || conversion.value_micros < 0
                || !seen.insert(conversion.conversion_id.clone())
            {
                continue;
            }
            conversions.push(ConversionInfo {
                id: conversion.conversion_id,
                user: user(conversion.user_id),
                time_ms: conversion.event_time,
                value_micros: conversion.value_micros,
            });
        }
        Ok(History {
            source: Arc::clone(source),
            tables,
            event_topics,
            event_window,
            infos,
            streams,
            conversions,
            campaign_ids,
            creative_index,
            campaign_info,
            registry: source.registry().clone(),
            runtime,
        })
    }

    /// Reads the ad events again, as [`History::read`] read them: the same records in the same order, the `n`th
    /// the one [`History::infos`] describes at `n`.
    fn replay_events(
        &self,
        each: impl FnMut(SimulatedRecord) -> Result<(), BacktestError>,
    ) -> Result<(), BacktestError> {
        merge_events(&self.source, &self.event_topics, self.event_window, each)
    }

    /// Impressions and clicks replayed per strategy.
    pub fn event_count(&self) -> usize {
        self.infos.len()
    }

    /// Every record read (tables, impressions, clicks, other streams).
    pub fn record_count(&self) -> usize {
        self.tables.values().map(Vec::len).sum::<usize>()
            + self.infos.len()
            + self.streams.values().map(Vec::len).sum::<usize>()
    }

    /// What each replayed impression and click is (None: it does not decode).
    pub(crate) fn infos(&self) -> &[Option<EventInfo>] {
        &self.infos
    }

    /// The conversions of the history.
    pub(crate) fn conversions(&self) -> &[ConversionInfo] {
        &self.conversions
    }

    /// Campaign ids, as [`EventInfo::campaign`] numbers them.
    pub(crate) fn campaign_ids(&self) -> &[String] {
        &self.campaign_ids
    }

    /// The campaigns table's settings per campaign id.
    pub fn campaigns(&self) -> &HashMap<String, CampaignInfo> {
        &self.campaign_info
    }

    /// A schema cache for one simulation: the registry for input schemas, `outputs` (id, schema) known offline.
    fn schemas(&self, outputs: &OutputSchemas) -> Result<SchemaCache, BacktestError> {
        let mut cache = SchemaCache::new(self.registry.clone(), self.runtime.clone());
        for (id, schema) in outputs.values() {
            cache.insert(*id, schema).map_err(BacktestError::Schema)?;
        }
        Ok(cache)
    }

    /// A source of input `input`: a table or a stream other than the ad events.
    fn source(&self, topic: &str, input: usize) -> Option<Vec<SimulatedRecord>> {
        self.tables
            .get(topic)
            .or_else(|| self.streams.get(topic))
            .map(|records| {
                records
                    .iter()
                    .map(|r| SimulatedRecord { input, ..r.clone() })
                    .collect()
            })
    }
}

/// The schema id and schema every stage output is encoded with, by topic. The ids never reach Kafka or the
/// registry: outputs are decoded in memory, and a topic one stage writes and another reads is read back by a
/// simulation whose cache knows them. Far above the ids a registry hands out, so input schemas never collide.
type OutputSchemas = BTreeMap<String, (u32, &'static str)>;

/// The first id [`OutputSchemas`] hands out.
const FIRST_OUTPUT_ID: u32 = 0x7fff_0000;

fn output_schemas(stages: &[PlannedStage]) -> OutputSchemas {
    let mut topics: BTreeMap<String, &'static str> = BTreeMap::new();
    for output in stages.iter().flat_map(|s| &s.outputs) {
        topics.insert(output.topic.clone(), output.value_schema);
    }
    topics
        .into_iter()
        .zip(FIRST_OUTPUT_ID..)
        .map(|((topic, schema), id)| (topic, (id, schema)))
        .collect()
}

/// Something a strategy's rules did.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// When (UTC epoch millis): the fatigue record's emission, or the event that reached the budget limit.
    pub at_ms: i64,
    /// Until when, for a budget pause (the end of the campaign's local day); None for a creative pause.
    pub until_ms: Option<i64>,
    /// `pause-creative` or `pause-campaign`.
    pub kind: &'static str,
    /// The campaign.
    pub campaign_id: String,
    /// The creative, for a creative pause.
    pub creative_id: Option<String>,
    /// The fatigue score, for a creative pause.
    pub score: Option<f64>,
    /// Why, for people.
    pub reason: String,
}

/// Outcomes of one campaign (or the total) in the period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outcome {
    /// Impressions kept.
    pub impressions: u64,
    /// Clicks kept.
    pub clicks: u64,
    /// Spend of the kept impressions and clicks, micros.
    pub spend_micros: i64,
    /// Conversions credited by the strategy's model, naive counterfactual: a conversion is lost only when every
    /// one of its touches was removed.
    pub conversions: f64,
    /// Revenue credited by the strategy's model, micros, naive counterfactual.
    pub revenue_micros: f64,
    /// Expected conversions credited by the strategy's model under the Markov counterfactual (see
    /// [`crate::journeys`]): a conversion that lost campaigns from its journey survives with the probability the
    /// chain fitted on the history gives.
    pub markov_conversions: f64,
    /// Expected revenue, micros, under the Markov counterfactual.
    pub markov_revenue_micros: f64,
}

impl Outcome {
    /// Spend per conversion, micros; None without conversions.
    pub fn cpa_micros(&self) -> Option<f64> {
        (self.conversions > 0.0).then(|| self.spend_micros as f64 / self.conversions)
    }

    /// Revenue per spend; None without spend.
    pub fn roas(&self) -> Option<f64> {
        (self.spend_micros > 0).then(|| self.revenue_micros / self.spend_micros as f64)
    }

    /// Spend per expected conversion under the Markov counterfactual, micros; None without conversions.
    pub fn markov_cpa_micros(&self) -> Option<f64> {
        (self.markov_conversions > 0.0).then(|| self.spend_micros as f64 / self.markov_conversions)
    }

    /// Expected revenue under the Markov counterfactual per spend; None without spend.
    pub fn markov_roas(&self) -> Option<f64> {
        (self.spend_micros > 0).then(|| self.markov_revenue_micros / self.spend_micros as f64)
    }

    fn add(&mut self, other: &Outcome) {
        self.impressions += other.impressions;
        self.clicks += other.clicks;
        self.spend_micros += other.spend_micros;
        self.conversions += other.conversions;
        self.revenue_micros += other.revenue_micros;
        self.markov_conversions += other.markov_conversions;
        self.markov_revenue_micros += other.markov_revenue_micros;
    }
}

/// What one strategy produced.
pub struct StrategyRun {
    /// The strategy.
    pub strategy: Strategy,
    /// Outcomes per campaign id in the period.
    pub campaigns: BTreeMap<String, Outcome>,
    /// The sum over campaigns (money summed across currencies: compare campaigns of one currency).
    pub total: Outcome,
    /// Outcomes per UTC hour (start, UTC epoch millis) in the period.
    pub hourly: BTreeMap<i64, Outcome>,
    /// Pauses, in time order.
    pub actions: Vec<Action>,
    /// Impressions and clicks removed by pauses.
    pub removed: u64,
    /// What each stage produced, by application id, in the order they ran.
    pub simulations: Vec<(String, StageRun)>,
    /// Output topic → the index in `simulations` of the stage writing it.
    writers: HashMap<String, usize>,
}

impl StrategyRun {
    /// What the stage that writes `topic` produced.
    pub fn writer_of(&self, topic: &str) -> Option<&StageRun> {
        self.writers.get(topic).map(|i| &self.simulations[*i].1)
    }
}

/// What one stage of a strategy's run produced. A stage's records go on to the stages reading them as they are
/// sent, and only this much of them is kept, so that memory follows the state rather than the period: the latest
/// value per key of the topology's topics, and whole only the records the outcomes read (credits and attributed
/// conversions, one or a few per conversion).
#[derive(Default)]
pub struct StageRun {
    /// The stage's counters (records processed, sent per output, dead letters, late records, commits); its
    /// `records` hold the outcomes' topics only.
    pub simulation: Simulation,
    /// Latest value per key of each topology topic the stage wrote, keys whose last record is a tombstone left out.
    compacted: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl StageRun {
    /// What compaction keeps of `topic`, a topology topic the stage writes (empty for any other).
    pub fn compacted(&self, topic: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.compacted.get(topic).cloned().unwrap_or_default()
    }

    /// Records sent to output `topic` (watermark markers not counted).
    pub fn sent(&self, topic: &str) -> u64 {
        self.simulation.outputs.get(topic).copied().unwrap_or(0)
    }

    /// Keeps what the run keeps of `records`, sent by the stage in this order.
    fn keep(&mut self, records: Vec<CapturedRecord>, flow: &Dataflow) {
        for record in records {
            if flow.partitions.contains_key(&record.topic) {
                let table = match self.compacted.get_mut(&record.topic) {
                    Some(table) => table,
                    None => self.compacted.entry(record.topic.clone()).or_default(),
                };
                record.compact_into(table);
            }
            let outcome = matches!(
                flow.record(&record.topic),
                Some(AttributionCredit::FULL_NAME | AttributedConversion::FULL_NAME)
            );
            if outcome && record.value.is_some() {
                self.simulation
                    .records
                    .entry(record.topic.clone())
                    .or_default()
                    .push(record);
            }
        }
    }

    /// The stage's simulation ended with `summary`: its counters are kept, and the records it still held are
    /// returned for the stages reading them, after the run kept its part.
    fn finish(&mut self, mut summary: Simulation, flow: &Dataflow) -> Vec<CapturedRecord> {
        let tail: Vec<CapturedRecord> = std::mem::take(&mut summary.records)
            .into_values()
            .flatten()
            .collect();
        summary.records = std::mem::take(&mut self.simulation.records);
        self.simulation = summary;
        self.keep(tail.clone(), flow);
        tail
    }
}

/// Pause state of one strategy's run.
#[derive(Default)]
struct Pauses {
    /// Creative index → paused from.
    creatives: HashMap<u32, i64>,
    /// Campaign index → (paused from, until).
    campaigns: HashMap<u32, (i64, i64)>,
    /// Campaign index → (local day start, spend kept that day).
    day_spend: HashMap<u32, (i64, i64)>,
    actions: Vec<Action>,
}

impl Pauses {
    /// Pauses the report's creative from the report's emission on when the report meets the strategy's rule, is
    /// emitted in the period, and the creative was seen in the events and is not paused yet.
    fn consider_fatigue(
        &mut self,
        report: &CreativeFatigue,
        trigger: &[OutputStatus],
        strategy: &Strategy,
        period: Period,
        history: &History,
    ) {
        let meets = trigger.contains(&report.status)
            || strategy
                .fatigue
                .pause
                .min_score
                .is_some_and(|min| report.score >= min);
        let at = report.emitted_at;
        if !meets || at < period.from_ms || at >= period.to_ms {
            return;
        }
        // Creatives are numbered from the events; one never seen in them has nothing to pause.
        let Some(&creative) = history.creative_index.get(&report.creative_id) else {
            return;
        };
        if self.creatives.contains_key(&creative) {
            return;
        }
        self.creatives.insert(creative, at);
        self.actions.push(Action {
            at_ms: at,
            until_ms: None,
            kind: "pause-creative",
            campaign_id: report.campaign_id.clone(),
            creative_id: Some(report.creative_id.clone()),
            score: Some(report.score),
            reason: format!(
                "fatigue status {:?}, score {:.2}",
                report.status, report.score
            ),
        });
    }

    fn removes(&self, info: &EventInfo) -> bool {
        self.creatives
            .get(&info.creative)
            .is_some_and(|from| info.time_ms >= *from)
            || self
                .campaigns
                .get(&info.campaign)
                .is_some_and(|(from, until)| info.time_ms >= *from && info.time_ms < *until)
    }

    /// Adds a kept event's spend to its campaign's local day and pauses the campaign for the rest of the day once
    /// the day's spend reaches the limit (only from the period's start).
    fn track_budget(
        &mut self,
        id: &str,
        campaign: Option<&CampaignInfo>,
        info: &EventInfo,
        share: f64,
        period: Period,
    ) {
        let Some(campaign) = campaign else {
            return;
        };
        let Some(budget) = campaign.daily_budget_micros.filter(|b| *b > 0) else {
            return;
        };
        let day = calendar_window(Granularity::Day, info.time_ms, campaign.time_zone);
        let spend = self
            .day_spend
            .entry(info.campaign)
            .or_insert((day.start_ms, 0));
        if spend.0 != day.start_ms {
            // Events come in timestamp order, give or take out-of-order ones: a new day starts a new sum, and an
            // out-of-order event of the previous day is not counted against the new one.
            if day.start_ms < spend.0 {
                return;
            }
            *spend = (day.start_ms, 0);
        }
        spend.1 += info.cost_micros;
        let limit = share * budget as f64;
        if info.time_ms >= period.from_ms
            && spend.1 as f64 >= limit
            && self
                .campaigns
                .get(&info.campaign)
                .is_none_or(|(_, until)| *until <= info.time_ms)
        {
            // Delivery stops after this event: it was served and charged.
            self.campaigns
                .insert(info.campaign, (info.time_ms + 1, day.end_ms));
            self.actions.push(Action {
                at_ms: info.time_ms,
                until_ms: Some(day.end_ms),
                kind: "pause-campaign",
                campaign_id: id.to_owned(),
                creative_id: None,
                score: None,
                reason: format!(
                    "daily spend {:.2} reached {:.0} % of the daily budget {:.2} {}",
                    spend.1 as f64 / 1e6,
                    share * 100.0,
                    budget as f64 / 1e6,
                    campaign.currency
                ),
            });
        }
    }
}

/// A stage run in step with the events (see [`run_strategy`]).
struct InStep {
    name: String,
    outputs: Vec<String>,
    simulator: Simulator,
    /// [`event_inputs`] of the stage.
    routes: Vec<Option<usize>>,
    run: StageRun,
}

/// A stage fed as its inputs come (see [`run_strategy`]): tables whole first, then its streams merged by timestamp
/// as [`interleave_by_timestamp`](adstream_processors::runtime::simulate::interleave_by_timestamp) merges whole inputs. A stream record goes in once every stream that may still
/// bring one has its next record here, so the merge never has to take one back; an earlier stage's output is
/// finished when that stage is.
struct Chained {
    name: String,
    outputs: Vec<String>,
    simulator: Simulator,
    /// [`event_inputs`] of the stage.
    routes: Vec<Option<usize>>,
    /// The inputs earlier stages write.
    upstream: Vec<Upstream>,
    /// Table inputs, in input order; handed over whole, before any stream record, once all are finished.
    tables: Vec<Feed>,
    tables_fed: bool,
    /// Stream inputs: the kept events in the history's order (one feed), and per partition the history's other
    /// streams and earlier stages' outputs.
    streams: StreamMerge,
    /// Index in `streams.feeds` of the events' feed, when the stage reads ad events.
    events: Option<usize>,
    run: StageRun,
}

/// An input of a [`Chained`] stage that an earlier stage writes.
struct Upstream {
    topic: String,
    read_back: ReadBack,
    partitions: i32,
    /// A table's feed in [`Chained::tables`], else the feed of partition 0 in [`Chained::streams`]' feeds (the others
    /// follow it).
    first: usize,
    table: bool,
}

/// Records of one input (one partition of a stream) waiting for the merge.
struct Feed {
    /// Among heads of the same timestamp, the lowest rank goes first: (input, partition).
    rank: (usize, i32),
    records: VecDeque<SimulatedRecord>,
    /// Nothing more will come.
    finished: bool,
}

impl Feed {
    fn new(rank: (usize, i32), records: Vec<SimulatedRecord>, finished: bool) -> Feed {
        Feed {
            rank,
            records: records.into(),
            finished,
        }
    }
}

impl Chained {
    /// The stage's feeds: `written` names the topics earlier stages write; the others come from the history.
    fn new(
        stage: PlannedStage,
        flow: &Dataflow,
        history: &History,
        ids: &OutputSchemas,
        written: &HashSet<String>,
    ) -> Result<Chained, BacktestError> {
        let routes = event_inputs(history, &stage.inputs);
        let (mut tables, mut upstream) = (Vec::new(), Vec::new());
        let mut streams = Vec::new();
        for (input, spec) in stage.inputs.iter().enumerate() {
            if routes.contains(&Some(input)) {
                continue;
            }
            let table = spec.kind == InputKind::Table;
            if written.contains(&spec.topic) {
                let partitions = flow.partitions_of(&spec.topic, spec.internal_partitions)?;
                let first = if table { tables.len() } else { streams.len() };
                if table {
                    tables.push(Feed::new((input, 0), Vec::new(), false));
                } else {
                    streams
                        .extend((0..partitions).map(|p| Feed::new((input, p), Vec::new(), false)));
                }
                upstream.push(Upstream {
                    topic: spec.topic.clone(),
                    read_back: ReadBack::new(&spec.topic, input, partitions),
                    partitions,
                    first,
                    table,
                });
                continue;
            }
            let records = history.source(&spec.topic, input).ok_or_else(|| {
                BacktestError::Job(format!(
                    "nothing replays {} for {}",
                    spec.topic, stage.stage.application_id
                ))
            })?;
            if table {
                tables.push(Feed::new((input, 0), records, true));
            } else {
                let mut by_partition: BTreeMap<i32, Vec<SimulatedRecord>> = BTreeMap::new();
                for record in records {
                    by_partition
                        .entry(record.partition)
                        .or_default()
                        .push(record);
                }
                streams.extend(
                    by_partition
                        .into_iter()
                        .map(|(p, records)| Feed::new((input, p), records, true)),
                );
            }
        }
        let events = routes.iter().flatten().min().map(|input| {
            streams.push(Feed::new((*input, i32::MIN), Vec::new(), false));
            streams.len() - 1
        });
        let options = simulate_options(flow, &stage, ids)?;
        Ok(Chained {
            name: stage.stage.application_id.clone(),
            outputs: stage.outputs.iter().map(|o| o.topic.clone()).collect(),
            simulator: Simulator::new(stage.stage.operator, history.schemas(ids)?, options)?,
            routes,
            upstream,
            tables,
            tables_fed: false,
            streams: StreamMerge { feeds: streams },
            events,
            run: StageRun::default(),
        })
    }

    /// Takes `record`, an ad event the strategy kept, when the stage reads its topic.
    fn offer_event(&mut self, record: &SimulatedRecord) {
        if let (Some(input), Some(feed)) = (self.routes[record.input], self.events) {
            self.streams.feeds[feed].records.push_back(SimulatedRecord {
                input,
                ..record.clone()
            });
        }
    }

    /// Takes the records an earlier stage sent, those of the topics it reads.
    fn offer(&mut self, records: &[CapturedRecord]) -> Result<(), BacktestError> {
        for upstream in &mut self.upstream {
            for record in records.iter().filter(|r| r.topic == upstream.topic) {
                let read = upstream.read_back.read(record);
                let feed = if upstream.table {
                    &mut self.tables[upstream.first]
                } else if (0..upstream.partitions).contains(&read.partition) {
                    &mut self.streams.feeds[upstream.first + read.partition as usize]
                } else {
                    return Err(BacktestError::Job(format!(
                        "{} has {} partitions, but a record was sent to partition {}",
                        upstream.topic, upstream.partitions, read.partition
                    )));
                };
                feed.records.push_back(read);
            }
        }
        Ok(())
    }

    /// Nothing more comes of `topics` (their writer finished), nor of the ad events when `events`.
    fn close(&mut self, topics: &[String], events: bool) {
        for upstream in self.upstream.iter().filter(|u| topics.contains(&u.topic)) {
            if upstream.table {
                self.tables[upstream.first].finished = true;
            } else {
                for feed in
                    &mut self.streams.feeds[upstream.first..][..upstream.partitions as usize]
                {
                    feed.finished = true;
                }
            }
        }
        if let Some(feed) = self.events.filter(|_| events) {
            self.streams.feeds[feed].finished = true;
        }
    }
}

/// Stream feeds merged by timestamp as they fill (see [`Chained`]).
#[derive(Default)]
struct StreamMerge {
    feeds: Vec<Feed>,
}

impl StreamMerge {
    /// The next record of the merge; None while a feed that may still bring an earlier one has nothing waiting,
    /// or when every feed is done.
    fn next_record(&mut self) -> Option<SimulatedRecord> {
        // (timestamp, rank) of the earliest head, and its feed.
        let mut next = None;
        for (index, feed) in self.feeds.iter().enumerate() {
            match feed.records.front() {
                Some(record) => {
                    let key = (record.timestamp_ms.unwrap_or(i64::MIN), feed.rank);
                    if next.is_none_or(|(best, _)| key < best) {
                        next = Some((key, index));
                    }
                }
                None if !feed.finished => return None,
                None => {}
            }
        }
        next.and_then(|(_, index)| self.feeds[index].records.pop_front())
    }
}

/// Hands what stage `index` of `chain` can process to it, its outputs on to the stages after it, as far as their
/// inputs allow; then the same for each later stage.
fn pump(chain: &mut [Chained], flow: &Dataflow) -> Result<(), BacktestError> {
    for index in 0..chain.len() {
        let (head, later) = chain.split_at_mut(index + 1);
        let stage = &mut head[index];
        if !stage.tables_fed {
            if stage.tables.iter().any(|feed| !feed.finished) {
                continue;
            }
            for feed in &mut stage.tables {
                for record in feed.records.drain(..) {
                    stage.simulator.push(record)?;
                }
            }
            stage.tables_fed = true;
        }
        while let Some(record) = stage.streams.next_record() {
            stage.simulator.push(record)?;
            let sent = stage.simulator.take_captured();
            if !sent.is_empty() {
                for next in later.iter_mut() {
                    next.offer(&sent)?;
                }
                stage.run.keep(sent, flow);
            }
        }
    }
    Ok(())
}

/// The stages that finished, in the order they did.
#[derive(Default)]
struct Finished {
    simulations: Vec<(String, StageRun)>,
    /// Output topic → the index in `simulations` of the stage writing it.
    writers: HashMap<String, usize>,
}

impl Finished {
    /// Ends a stage's simulation: what it still held goes to the stages of `chain` reading it, whose inputs from
    /// `outputs` are then finished.
    fn add(
        &mut self,
        name: String,
        outputs: Vec<String>,
        simulator: Simulator,
        mut run: StageRun,
        chain: &mut [Chained],
        flow: &Dataflow,
    ) -> Result<(), BacktestError> {
        let sent = run.finish(simulator.finish()?, flow);
        for next in chain {
            next.offer(&sent)?;
            next.close(&outputs, false);
        }
        let index = self.simulations.len();
        self.writers
            .extend(outputs.into_iter().map(|topic| (topic, index)));
        self.simulations.push((name, run));
        Ok(())
    }
}

/// Where each of the history's event topics goes among a stage's inputs.
fn event_inputs(history: &History, inputs: &[InputSpec]) -> Vec<Option<usize>> {
    history
        .event_topics
        .iter()
        .map(|topic| inputs.iter().position(|i| i.topic == topic.name))
        .collect()
}

/// How a stage's simulation runs: its tasks are its inputs' partitions; outputs are encoded with their ids, and
/// their markers go to each partition of the topic.
fn simulate_options(
    flow: &Dataflow,
    stage: &PlannedStage,
    ids: &OutputSchemas,
) -> Result<SimulateOptions, BacktestError> {
    let mut tasks = 0;
    for input in &stage.inputs {
        tasks = tasks.max(flow.partitions_of(&input.topic, input.internal_partitions)?);
    }
    let output_ids = stage.outputs.iter().map(|o| ids[&o.topic].0).collect();
    let mut options = SimulateOptions::new(&stage.stage.application_id, tasks, output_ids);
    for output in &stage.outputs {
        if let Some(partitions) = flow.partitions.get(&output.topic) {
            options
                .output_partitions
                .insert(output.topic.clone(), *partitions);
        }
    }
    Ok(options)
}

/// Runs `strategy` over `history` (see the module doc); `progress` is called with (records replayed, total).
pub fn run_strategy(
    history: &History,
    flow: &Dataflow,
    strategy: &Strategy,
    period: Period,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<StrategyRun, BacktestError> {
    let stages = flow.stages(strategy)?;
    let ids = output_schemas(&stages);
    let reports_fatigue = |topic: &str| flow.record(topic) == Some(CreativeFatigue::FULL_NAME);
    // The stages whose reports a pause rule acts on run in step with the events (whether or not this strategy
    // pauses, so that pausing is the only difference between two strategies); the others run after, in order.
    let (in_step, after): (Vec<PlannedStage>, Vec<PlannedStage>) = stages
        .into_iter()
        .partition(|stage| stage.outputs.iter().any(|o| reports_fatigue(&o.topic)));
    if strategy.fatigue.pause.enabled && in_step.is_empty() {
        return Err(BacktestError::Job(
            "the strategy pauses fatigued creatives, but no processor reports creative fatigue"
                .to_owned(),
        ));
    }
    let mut lockstep = Vec::with_capacity(in_step.len());
    for stage in in_step {
        let routes = event_inputs(history, &stage.inputs);
        if routes.iter().flatten().count() != stage.inputs.len() {
            return Err(BacktestError::Job(format!(
                "{} reports creative fatigue from inputs other than impressions and clicks: a backtest cannot \
                 run it in step with the events it pauses",
                stage.stage.application_id
            )));
        }
        let options = simulate_options(flow, &stage, &ids)?;
        lockstep.push(InStep {
            name: stage.stage.application_id.clone(),
            outputs: stage.outputs.iter().map(|o| o.topic.clone()).collect(),
            simulator: Simulator::new(stage.stage.operator, history.schemas(&ids)?, options)?,
            routes,
            run: StageRun::default(),
        });
    }
    let mut fatigue_decoder =
        TypedDecoder::new(CreativeFatigue::FULL_NAME, CreativeFatigue::SCHEMA)
            .map_err(BacktestError::Schema)?;
    let mut output_cache = history.schemas(&ids)?;
    let trigger = match strategy.fatigue.pause.status {
        PauseStatus::Limited => [OutputStatus::Limited, OutputStatus::Fatigued].as_slice(),
        PauseStatus::Fatigued => [OutputStatus::Fatigued].as_slice(),
    };
    let budget_share = strategy
        .budget
        .pause_at
        .as_ref()
        .map(|l| l.daily_budget_share);
    // The other stages, fed as the events and the earlier stages' outputs come.
    let mut written: HashSet<String> = lockstep.iter().flat_map(|s| s.outputs.clone()).collect();
    let mut chain = Vec::with_capacity(after.len());
    for stage in after {
        let outputs: Vec<String> = stage.outputs.iter().map(|o| o.topic.clone()).collect();
        chain.push(Chained::new(stage, flow, history, &ids, &written)?);
        written.extend(outputs);
    }
    let total = history.infos.len() as u64;
    let mut pauses = Pauses::default();
    let mut kept = Vec::with_capacity(history.infos.len());
    let mut index = 0usize;
    history.replay_events(|record| {
        let info = history.infos.get(index).ok_or_else(|| {
            BacktestError::Job(
                "the ad events read again are more than the history read: a topic changed under the backtest"
                    .to_owned(),
            )
        })?;
        for stage in &mut lockstep {
            if let Some(ts) = record.timestamp_ms {
                stage.simulator.advance_to(ts)?;
            }
            let sent = stage.simulator.take_captured();
            if sent.is_empty() {
                continue;
            }
            if strategy.fatigue.pause.enabled {
                for captured in &sent {
                    if !reports_fatigue(&captured.topic) || captured.value.is_none() {
                        continue;
                    }
                    let Ok(report) = fatigue_decoder
                        .decode::<CreativeFatigue>(&mut output_cache, captured.value.as_deref())
                    else {
                        continue;
                    };
                    pauses.consider_fatigue(&report, trigger, strategy, period, history);
                }
            }
            for next in &mut chain {
                next.offer(&sent)?;
            }
            stage.run.keep(sent, flow);
        }
        let keep = match info {
            Some(info) if info.time_ms >= period.from_ms => !pauses.removes(info),
            _ => true,
        };
        if keep {
            for stage in &mut lockstep {
                if let Some(input) = stage.routes[record.input] {
                    stage.simulator.push(SimulatedRecord {
                        input,
                        ..record.clone()
                    })?;
                }
            }
            for stage in &mut chain {
                stage.offer_event(&record);
            }
            if let (Some(info), Some(share)) = (info, budget_share) {
                let id = &history.campaign_ids[info.campaign as usize];
                pauses.track_budget(id, history.campaign_info.get(id), info, share, period);
            }
        }
        kept.push(keep);
        pump(&mut chain, flow)?;
        if index.is_multiple_of(65_536) {
            progress(index as u64, total);
        }
        index += 1;
        Ok(())
    })?;
    if kept.len() != history.infos.len() {
        return Err(BacktestError::Job(format!(
            "{} ad events read again where the history read {}: a topic changed under the backtest",
            kept.len(),
            history.infos.len()
        )));
    }
    progress(total, total);
    let mut finished = Finished::default();
    for stage in lockstep {
        finished.add(
            stage.name,
            stage.outputs,
            stage.simulator,
            stage.run,
            &mut chain,
            flow,
        )?;
    }
    for stage in &mut chain {
        stage.close(&[], true);
    }
    pump(&mut chain, flow)?;
    while !chain.is_empty() {
        let stage = chain.remove(0);
        finished.add(
            stage.name,
            stage.outputs,
            stage.simulator,
            stage.run,
            &mut chain,
            flow,
        )?;
        pump(&mut chain, flow)?;
    }
    let Finished {
        simulations,
        writers,
    } = finished;
    let removed = kept.iter().filter(|keep| !**keep).count() as u64;

    // Outcomes in the period.
    let mut campaigns: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut hourly: BTreeMap<i64, Outcome> = BTreeMap::new();
    for (info, keep) in history.infos.iter().zip(&kept) {
        let Some(info) = info.filter(|i| *keep && i.time_ms >= period.from_ms) else {
            continue;
        };
        let delta = Outcome {
            impressions: u64::from(!info.click),
            clicks: u64::from(info.click),
            spend_micros: info.cost_micros,
            ..Outcome::default()
        };
        let campaign = &history.campaign_ids[info.campaign as usize];
        campaigns.entry(campaign.clone()).or_default().add(&delta);
        hourly
            .entry(info.time_ms.div_euclid(HOUR_MS) * HOUR_MS)
            .or_default()
            .add(&delta);
    }
    // Credits of the strategy's model in the period: a rule model's from the attribution job's credits, a
    // data-driven model's from its attributed conversions and the weights fitted on the journeys.
    let model = strategy.metrics.attribution_model;
    let journeys = Journeys::build(
        history,
        strategy.lookback_ms(),
        strategy.attribution.job.count_views,
    );
    let credits = match journeys.weights(model)? {
        None => rule_credits(flow, &ids, &writers, &simulations, &mut output_cache, model)?,
        Some(weights) => weighted_credits(
            flow,
            &ids,
            &writers,
            &simulations,
            &mut output_cache,
            &weights,
        )?,
    };
    // The Markov counterfactual: each credit of a conversion that lost a visit times its survival; a conversion
    // without a kept touch counts its survival in its own row.
    let survival = journeys.survival(history, &kept, period.from_ms, period.to_ms)?;
    let in_period = |time: i64| time >= period.from_ms && time < period.to_ms;
    for credit in credits.iter().filter(|c| in_period(c.conversion_time)) {
        let probability = survival
            .get(&credit.conversion_id)
            .map_or(1.0, |s| s.probability);
        let delta = Outcome {
            conversions: credit.conversions,
            revenue_micros: credit.revenue_micros,
            markov_conversions: credit.conversions * probability,
            markov_revenue_micros: credit.revenue_micros * probability,
            ..Outcome::default()
        };
        campaigns
            .entry(credit.campaign_id.clone())
            .or_default()
            .add(&delta);
        hourly
            .entry(credit.conversion_time.div_euclid(HOUR_MS) * HOUR_MS)
            .or_default()
            .add(&delta);
    }
    for lost in survival.values().filter(|s| !s.kept_touch) {
        let delta = Outcome {
            markov_conversions: lost.probability,
            markov_revenue_micros: lost.probability * lost.value_micros as f64,
            ..Outcome::default()
        };
        campaigns
            .entry(NO_KEPT_TOUCH.to_owned())
            .or_default()
            .add(&delta);
        hourly
            .entry(lost.time_ms.div_euclid(HOUR_MS) * HOUR_MS)
            .or_default()
            .add(&delta);
    }
    let mut total = Outcome::default();
    for outcome in campaigns.values() {
        total.add(outcome);
    }
    let mut actions = pauses.actions;
    actions.sort_by(|a, b| (a.at_ms, &a.campaign_id).cmp(&(b.at_ms, &b.campaign_id)));
    Ok(StrategyRun {
        strategy: strategy.clone(),
        campaigns,
        total,
        hourly,
        actions,
        removed,
        simulations,
        writers,
    })
}

/// One conversion's credit to one campaign under the strategy's model.
struct Credit {
    conversion_id: String,
    campaign_id: String,
    conversion_time: i64,
    conversions: f64,
    revenue_micros: f64,
}

/// The records of every output carrying `record`, as the stages that wrote them captured them.
fn outputs_of<'a>(
    flow: &'a Dataflow,
    ids: &'a OutputSchemas,
    writers: &'a HashMap<String, usize>,
    simulations: &'a [(String, StageRun)],
    record: &'a str,
) -> impl Iterator<Item = &'a CapturedRecord> + 'a {
    ids.keys()
        .filter(move |topic| flow.record(topic) == Some(record))
        .filter_map(move |topic| {
            writers
                .get(topic)
                .map(|writer| simulations[*writer].1.simulation.topic(topic))
        })
        .flatten()
        .filter(|r| r.value.is_some())
}

/// The attribution job's credits under the rule model `model`.
fn rule_credits(
    flow: &Dataflow,
    ids: &OutputSchemas,
    writers: &HashMap<String, usize>,
    simulations: &[(String, StageRun)],
    cache: &mut SchemaCache,
    model: AttributionModel,
) -> Result<Vec<Credit>, BacktestError> {
    let mut decoder = TypedDecoder::new(AttributionCredit::FULL_NAME, AttributionCredit::SCHEMA)
        .map_err(BacktestError::Schema)?;
    let mut credits = Vec::new();
    for record in outputs_of(
        flow,
        ids,
        writers,
        simulations,
        AttributionCredit::FULL_NAME,
    ) {
        let credit: AttributionCredit = decoder
            .decode(cache, record.value.as_deref())
            .map_err(|e| BacktestError::Job(format!("a credit does not decode: {e}")))?;
        if credit.model == model {
            credits.push(Credit {
                conversion_id: credit.conversion_id,
                campaign_id: credit.campaign_id,
                conversion_time: credit.conversion_time,
                conversions: credit.conversions,
                revenue_micros: credit.revenue_micros,
            });
        }
    }
    Ok(credits)
}

/// Credits of the attribution job's attributed conversions by per-campaign `weights` (see [`crate::journeys`]):
/// one per conversion and campaign, the campaign's touches' shares summed.
fn weighted_credits(
    flow: &Dataflow,
    ids: &OutputSchemas,
    writers: &HashMap<String, usize>,
    simulations: &[(String, StageRun)],
    cache: &mut SchemaCache,
    weights: &BTreeMap<String, f64>,
) -> Result<Vec<Credit>, BacktestError> {
    let mut decoder = TypedDecoder::new(
        AttributedConversion::FULL_NAME,
        AttributedConversion::SCHEMA,
    )
    .map_err(BacktestError::Schema)?;
    let mut credits = Vec::new();
    for record in outputs_of(
        flow,
        ids,
        writers,
        simulations,
        AttributedConversion::FULL_NAME,
    ) {
        let conversion: AttributedConversion = decoder
            .decode(cache, record.value.as_deref())
            .map_err(|e| {
                BacktestError::Job(format!("an attributed conversion does not decode: {e}"))
            })?;
        let channels: Vec<&str> = conversion
            .touchpoints
            .iter()
            .map(|t| t.campaign_id.as_str())
            .collect();
        let mut per_campaign: BTreeMap<&str, f64> = BTreeMap::new();
        for (campaign, share) in channels.iter().zip(weighted_shares(&channels, weights)) {
            *per_campaign.entry(campaign).or_default() += share;
        }
        for (campaign, share) in per_campaign.into_iter().filter(|(_, s)| *s > 0.0) {
            credits.push(Credit {
                conversion_id: conversion.conversion_id.clone(),
                campaign_id: campaign.to_owned(),
                conversion_time: conversion.conversion_time,
                conversions: share,
                revenue_micros: share * conversion.value_micros as f64,
            });
        }
    }
    Ok(credits)
}

/// Runs every strategy over `history`, reporting progress per strategy.
pub fn run_all(
    history: &History,
    flow: &Dataflow,
    strategies: &[Strategy],
    period: Period,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Vec<StrategyRun>, BacktestError> {
    strategies
        .iter()
        .map(|strategy| {
            let name = strategy.name().to_owned();
            run_strategy(history, flow, strategy, period, &mut |done, total| {
                progress(&name, done, total)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-07T05:00Z: midnight in New York (EST, UTC−5).
    const NY_MIDNIGHT: i64 = 1_794_027_600_000;

    fn spend(time_ms: i64, cost_micros: i64) -> EventInfo {
        EventInfo {
            time_ms,
            campaign: 0,
            creative: 0,
            cost_micros,
            click: false,
            user_plus_one: None,
        }
    }

    fn record(input: usize, partition: i32, offset: i64, timestamp_ms: i64) -> SimulatedRecord {
        SimulatedRecord {
            input,
            partition,
            offset,
            timestamp_ms: Some(timestamp_ms),
            key: None,
            value: None,
            headers: Vec::new(),
            correlation_id: format!("{input}/{partition}/{offset}"),
        }
    }

    #[test]
    fn an_event_is_kept_in_32_bytes() {
        // One per event of the history: 10 million for a week of the bench's traffic.
        assert_eq!(std::mem::size_of::<EventInfo>(), 32);
        assert_eq!(std::mem::size_of::<Option<EventInfo>>(), 32);
    }

    #[test]
    fn a_merge_fed_as_records_come_gives_the_order_of_the_whole_inputs() {
        // Two partitions of an earlier stage's output, out of timestamp order within each, and a finished stream.
        let upstream = [
            vec![(10, 0), (30, 1), (20, 2), (50, 3)],
            vec![(10, 0), (15, 1), (60, 2)],
        ];
        let conversions: Vec<SimulatedRecord> = [5, 10, 40, 55]
            .iter()
            .enumerate()
            .map(|(offset, ts)| record(0, 0, offset as i64, *ts))
            .collect();
        let mut whole = conversions.clone();
        for (partition, records) in upstream.iter().enumerate() {
            whole.extend(
                records
                    .iter()
                    .map(|(ts, offset)| record(1, partition as i32, *offset, *ts)),
            );
        }
        let expected = adstream_processors::runtime::simulate::interleave_by_timestamp(whole);

        let mut merge = StreamMerge {
            feeds: vec![
                Feed::new((0, 0), conversions, true),
                Feed::new((1, 0), Vec::new(), false),
                Feed::new((1, 1), Vec::new(), false),
            ],
        };
        let mut merged = Vec::new();
        // The earlier stage sends partition 0's records first: nothing may go before partition 1 has something
        // waiting, since it might bring an earlier record than any (the conversion at 5 included).
        for (ts, offset) in &upstream[0] {
            merge.feeds[1].records.push_back(record(1, 0, *offset, *ts));
            merged.extend(std::iter::from_fn(|| merge.next_record()));
        }
        assert!(merged.is_empty(), "{merged:?}");
        for (ts, offset) in &upstream[1] {
            merge.feeds[2].records.push_back(record(1, 1, *offset, *ts));
            merged.extend(std::iter::from_fn(|| merge.next_record()));
        }
        merge.feeds[1].finished = true;
        merge.feeds[2].finished = true;
        merged.extend(std::iter::from_fn(|| merge.next_record()));
        assert_eq!(merged, expected);
    }

    #[test]
    fn budget_rule_pauses_a_campaign_for_the_rest_of_its_local_day() {
        let campaign = CampaignInfo {
            id: "c1".into(),
            currency: "USD".into(),
            daily_budget_micros: Some(10_000_000),
            time_zone: "America/New_York".parse().expect("a zone"),
        };
        let period = Period {
            from_ms: NY_MIDNIGHT + 24 * HOUR_MS,
            to_ms: NY_MIDNIGHT + 4 * 24 * HOUR_MS,
            warmup_ms: 24 * HOUR_MS,
        };
        let mut pauses = Pauses::default();
        let track = |pauses: &mut Pauses, event: &EventInfo| {
            pauses.track_budget("c1", Some(&campaign), event, 0.5, period)
        };
        // Warm-up day: over the limit, but outcomes and pauses only count from the period's start.
        track(&mut pauses, &spend(NY_MIDNIGHT + HOUR_MS, 8_000_000));
        assert!(pauses.actions.is_empty());
        // First day of the period: 3 + 3 ≥ 5 (half the budget) pauses after the second event, until local midnight.
        let day = NY_MIDNIGHT + 24 * HOUR_MS;
        track(&mut pauses, &spend(day + 10 * HOUR_MS, 3_000_000));
        assert!(pauses.actions.is_empty());
        let crossing = spend(day + 11 * HOUR_MS, 3_000_000);
        track(&mut pauses, &crossing);
        assert_eq!(pauses.actions.len(), 1);
        let action = &pauses.actions[0];
        assert_eq!(
            (action.at_ms, action.until_ms, action.kind),
            (crossing.time_ms, Some(day + 24 * HOUR_MS), "pause-campaign")
        );
        assert!(action.reason.contains("6.00") && action.reason.contains("50 %"));
        // The crossing event was served; later ones that day are removed; the next local day delivers again.
        assert!(!pauses.removes(&crossing));
        assert!(pauses.removes(&spend(day + 23 * HOUR_MS, 1)));
        assert!(!pauses.removes(&spend(day + 24 * HOUR_MS, 1)));
        // A late event of the first day, seen after the second began, does not count against the second.
        track(&mut pauses, &spend(day + 24 * HOUR_MS + 1, 4_000_000));
        track(&mut pauses, &spend(day + 12 * HOUR_MS, 4_000_000));
        assert_eq!(pauses.actions.len(), 1);
        track(&mut pauses, &spend(day + 25 * HOUR_MS, 1_000_000));
        assert_eq!(pauses.actions.len(), 2);
        // A campaign without a budget, or unknown, is never paused.
        let unbudgeted = CampaignInfo {
            daily_budget_micros: None,
            ..campaign.clone()
        };
        let mut other = Pauses::default();
        other.track_budget(
            "c2",
            Some(&unbudgeted),
            &spend(day, i64::MAX / 2),
            0.5,
            period,
        );
        other.track_budget("c3", None, &spend(day, i64::MAX / 2), 0.5, period);
        assert!(other.actions.is_empty());
    }
}
