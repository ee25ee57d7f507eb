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
//! # One strategy
//!
//! Impressions and clicks, merged by timestamp, are fed one by one to the stages that report creative fatigue (each
//! a [`Simulator`]). Before each record the simulations' clock moves to its time, so whatever they report at the
//! commits passed is seen first: a fatigue record meeting the strategy's pause rule pauses its creative from the
//! record's emission time on. A record of a paused creative, or of a campaign paused by the budget rule for its
//! local day, is removed; the rest is kept and pushed. Every other stage then runs in data order over its inputs:
//! the kept events, the other sources, and the outputs of the stages before it (today attribution's repartition
//! stage, its attribution stage with the conversions, and campaign-metrics with the campaigns table and the
//! credits). A conversion whose touches were all removed gets no credit: it is lost (the naive counterfactual).
//!
//! # Outcomes
//!
//! Spend, impressions and clicks of the kept events in the period; conversions and revenue credited by the
//! strategy's model to conversions in the period: a rule model's credits as the attribution job writes them, a
//! data-driven model's (markov, shapley) from its attributed conversions and weights fitted on the history's
//! journeys. Both under the naive counterfactual and under the Markov one ([`crate::journeys`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use adstream_kafka::registry_client::RegistryClient;
use adstream_processors::attribution::models::{weighted_shares, TouchKind};
use adstream_processors::jobs::{JobEntry, JobRegistry, Stage, Wiring};
use adstream_processors::runtime::simulate::interleave_by_timestamp;
use adstream_processors::runtime::{
    simulate, CapturedRecord, InputKind, InputSpec, OutputSpec, SchemaCache, SimulateOptions,
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
use adstream_query::source::{KafkaSource, TimestampOrder};

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
    /// The user, numbered as [`ConversionInfo::user`] numbers them; None when the event names none.
    pub user: Option<u32>,
}

impl EventInfo {
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

/// The history a backtest replays, read once and shared by every strategy: every source topic of the
/// [`Dataflow`].
pub struct History {
    /// Source tables (read whole), by topic.
    tables: HashMap<String, Vec<SimulatedRecord>>,
    /// The ad events (the source streams carrying impressions or clicks) merged by timestamp; a record's `input`
    /// is its topic's index in `event_topics`.
    events: Vec<SimulatedRecord>,
    /// The topics of `events`, and whether each carries clicks.
    event_topics: Vec<(String, bool)>,
    /// What each of `events` is; None for a record that does not decode (the jobs dead-letter it).
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

impl History {
    /// Reads the history of `period` for the sources of `flow` through `source`: tables whole, streams with
    /// timestamps in `[from − warm-up, to)`; `runtime` serves the rare registry fetches of the decoders. Blocks.
    /// `progress` is called with (records read, topic).
    pub fn read(
        source: &KafkaSource,
        flow: &Dataflow,
        period: Period,
        runtime: tokio::runtime::Handle,
        progress: &mut dyn FnMut(u64, &str),
    ) -> Result<History, BacktestError> {
        let start = period.from_ms.saturating_sub(period.warmup_ms);
        let mut read = |topic: &str, input: usize, bounded: bool| {
            let (from, to) = if bounded {
                (Some(start), Some(period.to_ms))
            } else {
                (None, None)
            };
            let mut records = Vec::new();
            // The backtest's inputs are event streams, written roughly in time order.
            for range in source.plan_ranges(topic, None, from, to, TimestampOrder::Roughly)? {
                source.read_range(topic, range, 4096, |batch| {
                    for message in batch {
                        let timestamp = message.timestamp().to_millis();
                        if bounded && !timestamp.is_some_and(|ts| ts >= start && ts < period.to_ms)
                        {
                            continue;
                        }
                        records.push(SimulatedRecord::from_message(input, topic, message));
                    }
                    progress(batch.len() as u64, topic);
                    Ok(true)
                })?;
            }
            Ok::<_, BacktestError>(records)
        };
        let (mut tables, mut streams) = (HashMap::new(), HashMap::new());
        let (mut events, mut event_topics) = (Vec::new(), Vec::new());
        let mut conversion_topics = Vec::new();
        for (topic, kind) in &flow.sources {
            let record = flow.record(topic);
            match kind {
                InputKind::Table => {
                    tables.insert(topic.clone(), read(topic, 0, false)?);
                }
                InputKind::Stream
                    if matches!(record, Some(AdImpression::FULL_NAME | AdClick::FULL_NAME)) =>
                {
                    events.extend(read(topic, event_topics.len(), true)?);
                    event_topics.push((topic.clone(), record == Some(AdClick::FULL_NAME)));
                }
                InputKind::Stream => {
                    streams.insert(topic.clone(), read(topic, 0, true)?);
                    if record == Some(Conversion::FULL_NAME) {
                        conversion_topics.push(topic.clone());
                    }
                }
            }
        }
        let events = interleave_by_timestamp(events);

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
        let mut infos = Vec::with_capacity(events.len());
        for record in &events {
            let decoded = if !event_topics[record.input].1 {
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
                        user: user_id.filter(|id| !id.is_empty()).map(&mut user),
                    }
                }),
            );
        }
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
            tables,
            events,
            event_topics,
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

    /// Impressions and clicks replayed per strategy.
    pub fn event_count(&self) -> usize {
        self.events.len()
    }

    /// Every record read (tables, impressions, clicks, other streams).
    pub fn record_count(&self) -> usize {
        self.tables.values().map(Vec::len).sum::<usize>()
            + self.events.len()
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
            .map(|records| as_input(records, input).collect())
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
    /// The simulation of each stage, by application id, in the order they ran.
    pub simulations: Vec<(String, Simulation)>,
    /// Output topic → the index in `simulations` of the stage writing it.
    writers: HashMap<String, usize>,
}

impl StrategyRun {
    /// The simulation of the stage that writes `topic`.
    pub fn writer_of(&self, topic: &str) -> Option<&Simulation> {
        self.writers.get(topic).map(|i| &self.simulations[*i].1)
    }
}

/// `records` as input `input`.
fn as_input(
    records: &[SimulatedRecord],
    input: usize,
) -> impl Iterator<Item = SimulatedRecord> + '_ {
    records
        .iter()
        .map(move |r| SimulatedRecord { input, ..r.clone() })
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
    /// Captured records already looked at.
    seen: usize,
}

/// Where each of the history's event topics goes among a stage's inputs.
fn event_inputs(history: &History, inputs: &[InputSpec]) -> Vec<Option<usize>> {
    history
        .event_topics
        .iter()
        .map(|(topic, _)| inputs.iter().position(|i| i.topic == *topic))
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
            seen: 0,
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
    let total = history.events.len() as u64;
    let mut pauses = Pauses::default();
    let mut kept = Vec::with_capacity(history.events.len());
    for (index, (record, info)) in history.events.iter().zip(&history.infos).enumerate() {
        for InStep {
            simulator, seen, ..
        } in &mut lockstep
        {
            if let Some(ts) = record.timestamp_ms {
                simulator.advance_to(ts)?;
            }
            if strategy.fatigue.pause.enabled {
                for captured in &simulator.captured()[*seen..] {
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
            *seen = simulator.captured().len();
        }
        let keep = match info {
            Some(info) if info.time_ms >= period.from_ms => !pauses.removes(info),
            _ => true,
        };
        if keep {
            for InStep {
                simulator, routes, ..
            } in &mut lockstep
            {
                if let Some(input) = routes[record.input] {
                    simulator.push(SimulatedRecord {
                        input,
                        ..record.clone()
                    })?;
                }
            }
            if let (Some(info), Some(share)) = (info, budget_share) {
                let id = &history.campaign_ids[info.campaign as usize];
                pauses.track_budget(id, history.campaign_info.get(id), info, share, period);
            }
        }
        kept.push(keep);
        if index % 65_536 == 0 {
            progress(index as u64, total);
        }
    }
    progress(total, total);
    let mut simulations = Vec::new();
    let mut writers = HashMap::new();
    for stage in lockstep {
        writers.extend(
            stage
                .outputs
                .into_iter()
                .map(|topic| (topic, simulations.len())),
        );
        simulations.push((stage.name, stage.simulator.finish()?));
    }

    let kept_events: Vec<&SimulatedRecord> = history
        .events
        .iter()
        .zip(&kept)
        .filter(|(_, keep)| **keep)
        .map(|(r, _)| r)
        .collect();
    let removed = (history.events.len() - kept_events.len()) as u64;

    // Each other stage over its inputs: tables first (a live job bootstraps them before any stream record), then
    // the kept events as replayed, or, when it also reads other streams or earlier stages' outputs, all of its
    // streams merged by timestamp.
    for stage in after {
        let routes = event_inputs(history, &stage.inputs);
        let (mut tables, mut streams) = (Vec::new(), Vec::new());
        for (input, spec) in stage.inputs.iter().enumerate() {
            if routes.contains(&Some(input)) {
                continue;
            }
            let records = match writers.get(&spec.topic) {
                Some(writer) => simulations[*writer].1.as_input(
                    &spec.topic,
                    input,
                    flow.partitions_of(&spec.topic, spec.internal_partitions)?,
                ),
                None => history.source(&spec.topic, input).ok_or_else(|| {
                    BacktestError::Job(format!(
                        "nothing replays {} for {}",
                        spec.topic, stage.stage.application_id
                    ))
                })?,
            };
            match spec.kind {
                InputKind::Table => tables.extend(records),
                InputKind::Stream => streams.extend(records),
            }
        }
        let events = kept_events.iter().filter_map(|record| {
            routes[record.input].map(|input| SimulatedRecord {
                input,
                ..(*record).clone()
            })
        });
        let mut input = tables;
        if streams.is_empty() {
            input.extend(events);
        } else {
            streams.extend(events);
            input.extend(interleave_by_timestamp(streams));
        }
        let options = simulate_options(flow, &stage, &ids)?;
        let name = stage.stage.application_id.clone();
        let simulation = simulate(
            stage.stage.operator,
            history.schemas(&ids)?,
            input,
            &options,
        )?;
        writers.extend(
            stage
                .outputs
                .iter()
                .map(|o| (o.topic.clone(), simulations.len())),
        );
        simulations.push((name, simulation));
    }

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
    simulations: &'a [(String, Simulation)],
    record: &'a str,
) -> impl Iterator<Item = &'a CapturedRecord> + 'a {
    ids.keys()
        .filter(move |topic| flow.record(topic) == Some(record))
        .filter_map(move |topic| {
            writers
                .get(topic)
                .map(|writer| simulations[*writer].1.topic(topic))
        })
        .flatten()
        .filter(|r| r.value.is_some())
}

/// The attribution job's credits under the rule model `model`.
fn rule_credits(
    flow: &Dataflow,
    ids: &OutputSchemas,
    writers: &HashMap<String, usize>,
    simulations: &[(String, Simulation)],
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
    simulations: &[(String, Simulation)],
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
            user: None,
        }
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
