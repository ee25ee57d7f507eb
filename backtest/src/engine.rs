//! Replays a period of history through the live operators once per strategy.
//!
//! # History and warm-up
//!
//! [`History::read`] reads the campaigns table whole, and the impressions, clicks and conversions with timestamps
//! in `[from − warm-up, to)`. The warm-up (by default the longest attribution lookback of the strategies) lets
//! the jobs build the state the live jobs had at `from`: the touches a conversion early in the period is credited
//! to, the creatives' fatigue baselines, the campaigns' open days. Pause rules act only from `from` on, and
//! outcomes count only events and conversions in `[from, to)`; everything before is replayed as it happened.
//!
//! # One strategy
//!
//! Impressions and clicks, merged by timestamp, are fed one by one to the creative-fatigue operator (a
//! [`Simulator`]). Before each record the simulation's clock moves to its time, so whatever the operator reports at
//! the commits passed is seen first: a fatigue record meeting the strategy's pause rule pauses its creative from
//! the record's emission time on. A record of a paused creative, or of a campaign paused by the budget rule for its
//! local day, is removed; the rest is kept and pushed. The kept impressions and clicks then run through the
//! attribution job's two stages (repartition, then attribution with the conversions, chained through the captured
//! repartition topic) and the campaign-metrics job (with the campaigns table and the captured credits). A
//! conversion whose touches were all removed gets no credit: it is lost.

use std::collections::{BTreeMap, HashMap};

use adstream_kafka::registry_client::RegistryClient;
use adstream_processors::attribution::job::AttributionDefinition as Attribution;
use adstream_processors::campaign_metrics::job::CampaignMetricsDefinition as MetricsJob;
use adstream_processors::fatigue::job::CreativeFatigueDefinition as FatigueJob;
use adstream_processors::jobs::{Job, Wiring};
use adstream_processors::runtime::simulate::interleave_by_timestamp;
use adstream_processors::runtime::{
    simulate, Operator, SchemaCache, SimulateOptions, SimulatedRecord, Simulation, Simulator,
    TypedDecoder,
};
use adstream_processors::window::{calendar_window, Granularity};
use adstream_schemas::events::{avsc, AdClick, AdImpression, AvroRecord, Campaign};
use adstream_schemas::outputs::{
    AttributedConversion, AttributionCredit, AttributionTouch, CampaignAlert, CampaignMetrics,
    CreativeFatigue, FatigueStatus as OutputStatus,
};
use chrono_tz::Tz;
use rdkafka::Message;

use crate::strategy::{PauseStatus, Strategy};
use crate::BacktestError;
use adstream_query::source::KafkaSource;

const HOUR_MS: i64 = 3_600_000;

/// The topics and application ids of the live jobs, resolved from the topology by the caller.
#[derive(Debug, Clone)]
pub struct JobTopics {
    /// Impressions (stream).
    pub impressions: String,
    /// Clicks (stream).
    pub clicks: String,
    /// Conversions (stream, keyed by user).
    pub conversions: String,
    /// Campaigns (compacted table).
    pub campaigns: String,
    /// Hourly campaign metrics (output).
    pub hourly: String,
    /// Daily campaign metrics (output).
    pub daily: String,
    /// Campaign alerts (output).
    pub alerts: String,
    /// Attribution credits (attribution output, campaign-metrics input).
    pub credits: String,
    /// Attributed conversions (output).
    pub attributed: String,
    /// Creative fatigue (output).
    pub fatigue: String,
    /// Application id of campaign-metrics.
    pub metrics_app: String,
    /// Application id of creative-fatigue.
    pub fatigue_app: String,
    /// Application id of attribution; its repartition stage is `<id>-repartition`, writing the same-named topic.
    pub attribution_app: String,
    /// Partitions of the campaign-keyed topics (impressions, clicks, campaigns, credits).
    pub partitions: i32,
    /// Partitions of the conversions topic (the attribution stage's tasks and the repartition topic).
    pub conversion_partitions: i32,
}

impl JobTopics {
    /// The topics of the three jobs' processor entries (`metrics`, `fatigue` and `attribution` name them) in
    /// `topology`, connected as `adstream process` connects them.
    pub fn resolve(
        topology: &adstream_topology::Topology,
        metrics: &str,
        fatigue: &str,
        attribution: &str,
    ) -> Result<JobTopics, BacktestError> {
        let wiring = |name: &str, ports| {
            Wiring::resolve(topology, name, ports).map_err(|e| BacktestError::Settings(e.into()))
        };
        let m = wiring(metrics, MetricsJob::PORTS)?;
        let f = wiring(fatigue, FatigueJob::PORTS)?;
        let a = wiring(attribution, Attribution::PORTS)?;
        let topic = |w: &Wiring, role| w.topic(role).map_err(|e| BacktestError::Settings(e.into()));
        let partitions = |w: &Wiring, role| {
            w.partitions(role)
                .map_err(|e| BacktestError::Settings(e.into()))
        };
        Ok(JobTopics {
            impressions: topic(&m, "impressions")?,
            clicks: topic(&m, "clicks")?,
            conversions: topic(&a, "conversions")?,
            campaigns: topic(&m, "campaigns")?,
            hourly: topic(&m, "hourly")?,
            daily: topic(&m, "daily")?,
            alerts: topic(&m, "alerts")?,
            credits: topic(&a, "credits")?,
            attributed: topic(&a, "attributed")?,
            fatigue: topic(&f, "fatigue")?,
            metrics_app: metrics.to_owned(),
            fatigue_app: fatigue.to_owned(),
            attribution_app: attribution.to_owned(),
            partitions: partitions(&m, "impressions")?,
            conversion_partitions: partitions(&a, "conversions")?,
        })
    }

    /// campaign-metrics' ports (it reads the captured credits).
    fn metrics_wiring(&self) -> Wiring {
        let p = self.partitions;
        Wiring::from_topics(
            &self.metrics_app,
            &[
                ("impressions", &self.impressions, p),
                ("clicks", &self.clicks, p),
                ("campaigns", &self.campaigns, p),
                ("credits", &self.credits, p),
                ("hourly", &self.hourly, p),
                ("daily", &self.daily, p),
                ("alerts", &self.alerts, p),
            ],
        )
    }

    /// creative-fatigue's ports.
    fn fatigue_wiring(&self) -> Wiring {
        let p = self.partitions;
        Wiring::from_topics(
            &self.fatigue_app,
            &[
                ("impressions", &self.impressions, p),
                ("clicks", &self.clicks, p),
                ("fatigue", &self.fatigue, p),
            ],
        )
    }

    /// attribution's ports.
    fn attribution_wiring(&self) -> Wiring {
        let (p, c) = (self.partitions, self.conversion_partitions);
        Wiring::from_topics(
            &self.attribution_app,
            &[
                ("impressions", &self.impressions, p),
                ("clicks", &self.clicks, p),
                ("conversions", &self.conversions, c),
                ("attributed", &self.attributed, c),
                ("credits", &self.credits, p),
            ],
        )
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

/// What an impression or click is, for pause rules and outcomes.
#[derive(Debug, Clone, Copy)]
struct EventInfo {
    time_ms: i64,
    campaign: u32,
    creative: u32,
    cost_micros: i64,
    click: bool,
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

/// The history a backtest replays, read once and shared by every strategy.
pub struct History {
    campaigns: Vec<SimulatedRecord>,
    /// Impressions (input 0) and clicks (input 1) merged by timestamp.
    events: Vec<SimulatedRecord>,
    /// What each of `events` is; None for a record that does not decode (the jobs dead-letter it).
    infos: Vec<Option<EventInfo>>,
    conversions: Vec<SimulatedRecord>,
    /// Campaigns by index, as [`EventInfo::campaign`] numbers them.
    campaign_ids: Vec<String>,
    /// Creative id → the number [`EventInfo::creative`] gives it.
    creative_index: HashMap<String, u32>,
    campaign_info: HashMap<String, CampaignInfo>,
    registry: RegistryClient,
    runtime: tokio::runtime::Handle,
}

impl History {
    /// Reads the history of `period` through `source`; `runtime` serves the rare registry fetches of the
    /// decoders. Blocks. `progress` is called with (records read, topic).
    pub fn read(
        source: &KafkaSource,
        topics: &JobTopics,
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
            for range in source.plan_ranges(topic, None, from, to)? {
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
        let campaigns = read(&topics.campaigns, 0, false)?;
        let mut events = read(&topics.impressions, 0, true)?;
        events.extend(read(&topics.clicks, 1, true)?);
        let events = interleave_by_timestamp(events);
        let conversions = read(&topics.conversions, 0, true)?;

        let mut cache = SchemaCache::new(source.registry().clone(), runtime.clone());
        let decoder = |name: &'static str, schema: &str| {
            TypedDecoder::new(name, schema).map_err(BacktestError::Schema)
        };
        let mut campaign_decoder = decoder(Campaign::FULL_NAME, avsc::CAMPAIGN)?;
        let mut campaign_info = HashMap::new();
        for record in &campaigns {
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
        let mut infos = Vec::with_capacity(events.len());
        for record in &events {
            let decoded = if record.input == 0 {
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
                        )
                    })
            };
            infos.push(
                decoded.map(|(event_time, campaign, creative, cost, click)| {
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
                    }
                }),
            );
        }
        Ok(History {
            campaigns,
            events,
            infos,
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

    /// Every record read (campaigns, impressions, clicks, conversions).
    pub fn record_count(&self) -> usize {
        self.campaigns.len() + self.events.len() + self.conversions.len()
    }

    /// The campaigns table's settings per campaign id.
    pub fn campaigns(&self) -> &HashMap<String, CampaignInfo> {
        &self.campaign_info
    }

    /// A schema cache for one simulation: the registry for input schemas, `outputs` (id, schema) known offline.
    fn schemas(&self, outputs: &[(u32, &str)]) -> Result<SchemaCache, BacktestError> {
        let mut cache = SchemaCache::new(self.registry.clone(), self.runtime.clone());
        for (id, schema) in outputs {
            cache.insert(*id, schema).map_err(BacktestError::Schema)?;
        }
        Ok(cache)
    }
}

/// Ids the simulations encode their outputs with. They never reach Kafka or the registry: outputs are decoded
/// in memory, and the repartition topic is read back by the next simulation, whose cache knows them. Far above
/// the ids a registry hands out, so input schemas never collide with them.
const HOURLY_ID: u32 = 0x7fff_ff01;
const DAILY_ID: u32 = 0x7fff_ff02;
const ALERT_ID: u32 = 0x7fff_ff03;
const TOUCH_ID: u32 = 0x7fff_ff04;
const ATTRIBUTED_ID: u32 = 0x7fff_ff05;
const CREDIT_ID: u32 = 0x7fff_ff06;
const FATIGUE_ID: u32 = 0x7fff_ff07;

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
    /// Conversions credited by the strategy's model.
    pub conversions: f64,
    /// Revenue credited by the strategy's model, micros.
    pub revenue_micros: f64,
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

    fn add(&mut self, other: &Outcome) {
        self.impressions += other.impressions;
        self.clicks += other.clicks;
        self.spend_micros += other.spend_micros;
        self.conversions += other.conversions;
        self.revenue_micros += other.revenue_micros;
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
    /// The simulations of the jobs, by output topic: campaign-metrics (hourly, daily, alerts), attribution
    /// (attributed conversions, credits), creative-fatigue.
    pub simulations: JobSimulations,
}

/// The simulations of one strategy.
pub struct JobSimulations {
    /// creative-fatigue.
    pub fatigue: Simulation,
    /// The attribution stage.
    pub attribution: Simulation,
    /// campaign-metrics.
    pub metrics: Simulation,
}

/// The index of `topic` among `operator`'s inputs.
fn input_of(operator: &dyn Operator, topic: &str) -> Result<usize, BacktestError> {
    operator
        .inputs()
        .iter()
        .position(|i| i.topic == topic)
        .ok_or_else(|| BacktestError::Job(format!("the job does not read {topic}")))
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

/// Where a merged impression (input 0) or click (input 1) goes in an operator reading both.
fn remap(record: &SimulatedRecord, impressions: usize, clicks: usize) -> SimulatedRecord {
    SimulatedRecord {
        input: if record.input == 0 {
            impressions
        } else {
            clicks
        },
        ..record.clone()
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

/// Runs `strategy` over `history` (see the module doc); `progress` is called with (records replayed, total).
pub fn run_strategy(
    history: &History,
    topics: &JobTopics,
    strategy: &Strategy,
    period: Period,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<StrategyRun, BacktestError> {
    let fatigue_job = FatigueJob::operator(&topics.fatigue_wiring(), &strategy.fatigue.job)?;
    let (f_impressions, f_clicks) = (
        input_of(&fatigue_job, &topics.impressions)?,
        input_of(&fatigue_job, &topics.clicks)?,
    );
    let mut fatigue = Simulator::new(
        Box::new(fatigue_job),
        history.schemas(&[(FATIGUE_ID, CreativeFatigue::SCHEMA)])?,
        SimulateOptions::new(&topics.fatigue_app, topics.partitions, vec![FATIGUE_ID]),
    )?;
    let mut fatigue_decoder =
        TypedDecoder::new(CreativeFatigue::FULL_NAME, CreativeFatigue::SCHEMA)
            .map_err(BacktestError::Schema)?;
    let mut output_cache = history.schemas(&[
        (FATIGUE_ID, CreativeFatigue::SCHEMA),
        (CREDIT_ID, AttributionCredit::SCHEMA),
    ])?;
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
    let mut seen = 0;
    for (index, (record, info)) in history.events.iter().zip(&history.infos).enumerate() {
        if let Some(ts) = record.timestamp_ms {
            fatigue.advance_to(ts)?;
        }
        if strategy.fatigue.pause.enabled {
            for captured in &fatigue.captured()[seen..] {
                if captured.topic != topics.fatigue || captured.value.is_none() {
                    continue;
                }
                let Ok(report) = fatigue_decoder
                    .decode::<CreativeFatigue>(&mut output_cache, captured.value.as_deref())
                else {
                    continue;
                };
                let meets = trigger.contains(&report.status)
                    || strategy
                        .fatigue
                        .pause
                        .min_score
                        .is_some_and(|min| report.score >= min);
                let at = report.emitted_at;
                if !meets || at < period.from_ms || at >= period.to_ms {
                    continue;
                }
                // Creatives are numbered from the events; one never seen in them has nothing to pause.
                let Some(&creative) = history.creative_index.get(&report.creative_id) else {
                    continue;
                };
                if pauses.creatives.contains_key(&creative) {
                    continue;
                }
                pauses.creatives.insert(creative, at);
                pauses.actions.push(Action {
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
        }
        seen = fatigue.captured().len();
        let keep = match info {
            Some(info) if info.time_ms >= period.from_ms => !pauses.removes(info),
            _ => true,
        };
        if keep {
            fatigue.push(remap(record, f_impressions, f_clicks))?;
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
    let fatigue = fatigue.finish()?;

    let kept_events: Vec<&SimulatedRecord> = history
        .events
        .iter()
        .zip(&kept)
        .filter(|(_, keep)| **keep)
        .map(|(r, _)| r)
        .collect();
    let removed = (history.events.len() - kept_events.len()) as u64;

    // Attribution, stage 1: touches re-keyed by user.
    let touches_topic = Attribution::repartition_topic(&topics.attribution_app);
    let attribution_wiring = topics.attribution_wiring();
    let repartition = Attribution::repartition(&attribution_wiring)?;
    let (r_impressions, r_clicks) = (
        input_of(&repartition, &topics.impressions)?,
        input_of(&repartition, &topics.clicks)?,
    );
    let stage1 = simulate(
        Box::new(repartition),
        history.schemas(&[(TOUCH_ID, AttributionTouch::SCHEMA)])?,
        kept_events
            .iter()
            .map(|r| remap(r, r_impressions, r_clicks)),
        &SimulateOptions::new(&touches_topic, topics.partitions, vec![TOUCH_ID]),
    )?;

    // Stage 2: attribution of the conversions to the touches.
    let attribution = Attribution::operator(&attribution_wiring, &strategy.attribution.job)?;
    let touches_input = input_of(&attribution, &touches_topic)?;
    let conversions_input = input_of(&attribution, &topics.conversions)?;
    let mut input = stage1.as_input(&touches_topic, touches_input, topics.conversion_partitions);
    drop(stage1);
    input.extend(as_input(&history.conversions, conversions_input));
    let mut options = SimulateOptions::new(
        &topics.attribution_app,
        topics.conversion_partitions,
        vec![ATTRIBUTED_ID, CREDIT_ID],
    );
    options
        .output_partitions
        .insert(topics.credits.clone(), topics.partitions);
    let attribution = simulate(
        Box::new(attribution),
        history.schemas(&[
            (TOUCH_ID, AttributionTouch::SCHEMA),
            (ATTRIBUTED_ID, AttributedConversion::SCHEMA),
            (CREDIT_ID, AttributionCredit::SCHEMA),
        ])?,
        interleave_by_timestamp(input),
        &options,
    )?;

    // campaign-metrics: the campaigns table first (the live job bootstraps it before any stream record), then the
    // kept events and the credits by timestamp.
    let metrics = MetricsJob::operator(&topics.metrics_wiring(), &strategy.metrics)?;
    let (m_impressions, m_clicks) = (
        input_of(&metrics, &topics.impressions)?,
        input_of(&metrics, &topics.clicks)?,
    );
    let m_campaigns = input_of(&metrics, &topics.campaigns)?;
    let m_credits = input_of(&metrics, &topics.credits)?;
    let mut streams: Vec<SimulatedRecord> = kept_events
        .iter()
        .map(|r| remap(r, m_impressions, m_clicks))
        .collect();
    let credits = attribution.as_input(&topics.credits, m_credits, topics.partitions);
    streams.extend(credits.iter().cloned());
    let mut input: Vec<SimulatedRecord> = as_input(&history.campaigns, m_campaigns).collect();
    input.extend(interleave_by_timestamp(streams));
    let metrics = simulate(
        Box::new(metrics),
        history.schemas(&[
            (HOURLY_ID, CampaignMetrics::SCHEMA),
            (DAILY_ID, CampaignMetrics::SCHEMA),
            (ALERT_ID, CampaignAlert::SCHEMA),
            (CREDIT_ID, AttributionCredit::SCHEMA),
        ])?,
        input,
        &SimulateOptions::new(
            &topics.metrics_app,
            topics.partitions,
            vec![HOURLY_ID, DAILY_ID, ALERT_ID],
        ),
    )?;

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
    let mut credit_decoder =
        TypedDecoder::new(AttributionCredit::FULL_NAME, AttributionCredit::SCHEMA)
            .map_err(BacktestError::Schema)?;
    for record in credits.iter().filter(|r| r.value.is_some()) {
        let credit: AttributionCredit = credit_decoder
            .decode(&mut output_cache, record.value.as_deref())
            .map_err(|e| BacktestError::Job(format!("a credit does not decode: {e}")))?;
        if credit.model != strategy.metrics.attribution_model
            || credit.conversion_time < period.from_ms
            || credit.conversion_time >= period.to_ms
        {
            continue;
        }
        let delta = Outcome {
            conversions: credit.conversions,
            revenue_micros: credit.revenue_micros,
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
        simulations: JobSimulations {
            fatigue,
            attribution,
            metrics,
        },
    })
}

/// Runs every strategy over `history`, reporting progress per strategy.
pub fn run_all(
    history: &History,
    topics: &JobTopics,
    strategies: &[Strategy],
    period: Period,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Vec<StrategyRun>, BacktestError> {
    strategies
        .iter()
        .map(|strategy| {
            let name = strategy.name().to_owned();
            run_strategy(history, topics, strategy, period, &mut |done, total| {
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
