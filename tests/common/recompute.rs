//! A batch recomputation of the campaign-metrics job's outputs from its raw input topics, written separately from
//! the job: it decodes the raw topics with apache-avro, places events in local hours and days with chrono-tz
//! directly, and sums. Shared by the campaign-metrics and exactly-once tests.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::time::Duration;

use adstream_kafka::read::{self, ReadOptions};
use adstream_producers::generator::{Counts, Generator, GeneratorConfig};
use adstream_producers::pipeline::{produce_generated, RunOptions};
use adstream_producers::producer::{EventProducer, EventTopics, ProducerSettings};
use adstream_schemas::events::{avsc, AdClick, AdImpression, Campaign};
use adstream_schemas::outputs::{self, CampaignMetrics};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::Schema;
use chrono::{DateTime, NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::BaseConsumer;
use rdkafka::{ClientConfig, Message};

use super::{bootstrap, unique};

const PARTITIONS: i32 = 4;

pub fn kafka() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap());
    config
}

pub struct Topics {
    pub events: EventTopics,
    pub hourly: String,
    pub daily: String,
    pub alerts: String,
    pub credits: String,
    pub attributed: String,
    pub fatigue: String,
    pub creative_alerts: String,
}

pub async fn create_topics(prefix: &str) -> Topics {
    let admin: AdminClient<DefaultClientContext> = kafka().create().expect("admin");
    let name = |kind: &str| format!("{prefix}.{kind}");
    let plain = ["impressions", "clicks", "conversions", "alerts", "credits"];
    let compacted = ["campaigns", "creatives", "hourly", "daily"];
    let mut topics: Vec<NewTopic<'_>> = Vec::new();
    let names: Vec<(String, bool)> = plain
        .iter()
        .map(|k| (name(k), false))
        .chain(compacted.iter().map(|k| (name(k), true)))
        .collect();
    for (topic, compact) in &names {
        let mut new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
        if *compact {
            new = new.set("cleanup.policy", "compact");
        }
        topics.push(new);
    }
    for result in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .expect("create topics")
    {
        result.expect("topic created");
    }
    let created: Vec<String> = names.iter().map(|(name, _)| name.clone()).collect();
    tokio::task::block_in_place(|| super::wait_for_topics(&created));
    Topics::under(prefix)
}

impl Topics {
    /// The job's topics named `<prefix>.<kind>`.
    pub fn under(prefix: &str) -> Topics {
        let name = |kind: &str| format!("{prefix}.{kind}");
        Topics {
            events: EventTopics {
                impressions: name("impressions"),
                clicks: name("clicks"),
                conversions: name("conversions"),
                campaigns: name("campaigns"),
                creatives: name("creatives"),
            },
            hourly: name("hourly"),
            daily: name("daily"),
            alerts: name("alerts"),
            credits: name("credits"),
            attributed: name("attributed"),
            fatigue: name("fatigue"),
            creative_alerts: name("creative_alerts"),
        }
    }
}

/// A record's key and value bytes.
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Every record of `topic` (read_committed, from the beginning to the end at call time).
pub fn read_committed_records(topic: &str) -> Vec<KeyValue> {
    read_committed_messages(topic)
        .into_iter()
        .map(|m| (m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)))
        .collect()
}

/// Every record of the changelog `topic` (read_committed, from the beginning to the end at call time) but the
/// runtime's checkpoints.
pub fn read_changelog_records(topic: &str) -> Vec<KeyValue> {
    read_committed_records(topic)
        .into_iter()
        .filter(|(key, _)| key.as_deref() != Some(adstream_processors::runtime::CHECKPOINT_KEY))
        .collect()
}

/// Every record of every partition of `topic` (read_committed, from the beginning to the end at call time), with
/// partitions, offsets, timestamps and headers.
pub fn read_committed_messages(topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: BaseConsumer = read::reader_config(&kafka(), &unique("read"), true)
        .create()
        .expect("consumer");
    let partitions =
        read::partition_count::<_, Infallible>(&consumer, topic, Duration::from_secs(10))
            .expect("metadata")
            .unwrap_or(0);
    assert!(partitions > 0, "{topic} does not exist");
    let options = ReadOptions {
        stall_timeout: Duration::from_secs(60),
        poll_interval: Duration::from_millis(500),
        ..ReadOptions::default()
    };
    let mut out = Vec::new();
    let all: Vec<i32> = (0..partitions).collect();
    read::read_to_end::<_, Infallible>(&consumer, topic, &all, &options, |m| {
        out.push(m.detach());
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{topic} not read to its end in time: {e}"));
    out
}

pub fn decode<T: serde::de::DeserializeOwned>(schema: &Schema, payload: &[u8]) -> T {
    let (_, mut datum) = adstream_schemas::wire::split(payload).expect("magic byte");
    let value = GenericDatumReader::builder(schema)
        .build()
        .expect("reader")
        .read_value(&mut datum)
        .expect("decodes");
    apache_avro::from_value(&value).expect("deserializes")
}

/// The recomputed row of one (campaign, granularity, window).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expected {
    pub window_end: i64,
    pub impressions: i64,
    pub clicks: i64,
    pub spend_micros: i64,
    /// Sums of LAST_TOUCH credits (compared with a tolerance: the job adds them in another order).
    pub conversions: f64,
    pub revenue_micros: f64,
}

/// Local hour containing `t`, computed from the local wall clock: the instant minus the minutes, seconds and
/// millis shown on the local clock.
fn local_hour(t: i64, tz: Tz) -> (i64, i64) {
    let local = DateTime::from_timestamp_millis(t)
        .expect("time")
        .with_timezone(&tz);
    let into_hour = i64::from(local.minute()) * 60_000
        + i64::from(local.second()) * 1000
        + i64::from(local.timestamp_subsec_millis());
    let start = t - into_hour;
    (start, start + 3_600_000)
}

/// Local calendar day containing `t`: midnight of its local date to midnight of the next.
fn local_day(t: i64, tz: Tz) -> (i64, i64) {
    let date = DateTime::from_timestamp_millis(t)
        .expect("time")
        .with_timezone(&tz)
        .date_naive();
    let midnight = |d: chrono::NaiveDate| {
        tz.from_local_datetime(&d.and_time(NaiveTime::MIN))
            .earliest()
            .expect("zones used by the generator have every midnight")
            .timestamp_millis()
    };
    (midnight(date), midnight(date.succ_opt().expect("next day")))
}

pub fn recompute(topics: &Topics) -> BTreeMap<String, Expected> {
    let campaign_schema = Schema::parse_str(avsc::CAMPAIGN).expect("schema");
    let mut zones: HashMap<String, Tz> = HashMap::new();
    let mut currencies: HashMap<String, String> = HashMap::new();
    for (_, value) in read_committed_records(&topics.events.campaigns) {
        let campaign: Campaign = decode(&campaign_schema, &value.expect("value"));
        zones.insert(
            campaign.campaign_id.clone(),
            campaign.time_zone.parse().expect("zone"),
        );
        currencies.insert(campaign.campaign_id, campaign.currency);
    }
    let mut rows: BTreeMap<String, Expected> = BTreeMap::new();
    // (campaign, time, cost, kind): kind 0 impression, 1 click, 2 credit with (conversions, revenue).
    let mut add = |campaign: &str, t: i64, cost: i64, kind: u8, credit: (f64, f64)| {
        let tz = zones[campaign];
        for (granularity, (start, end)) in
            [("hourly", local_hour(t, tz)), ("daily", local_day(t, tz))]
        {
            let start_text = DateTime::from_timestamp_millis(start)
                .expect("start")
                .format("%Y-%m-%dT%H:%M:%SZ");
            let row = rows
                .entry(format!("{campaign}|{granularity}|{start_text}"))
                .or_default();
            row.window_end = end;
            row.spend_micros += cost;
            match kind {
                0 => row.impressions += 1,
                1 => row.clicks += 1,
                _ => {
                    row.conversions += credit.0;
                    row.revenue_micros += credit.1;
                }
            }
        }
    };
    let impression_schema = Schema::parse_str(avsc::AD_IMPRESSION).expect("schema");
    for (_, value) in read_committed_records(&topics.events.impressions) {
        let i: AdImpression = decode(&impression_schema, &value.expect("value"));
        add(&i.campaign_id, i.event_time, i.cost_micros, 0, (0.0, 0.0));
    }
    let click_schema = Schema::parse_str(avsc::AD_CLICK).expect("schema");
    for (_, value) in read_committed_records(&topics.events.clicks) {
        let c: AdClick = decode(&click_schema, &value.expect("value"));
        add(&c.campaign_id, c.event_time, c.cost_micros, 1, (0.0, 0.0));
    }
    let credit_schema = Schema::parse_str(outputs::ATTRIBUTION_CREDIT_AVSC).expect("schema");
    // Records without a value are the attribution job's watermark markers.
    for value in read_committed_records(&topics.credits)
        .into_iter()
        .filter_map(|(_, value)| value)
    {
        let credit: outputs::AttributionCredit = decode(&credit_schema, &value);
        // Credits in another currency than their campaign's are not summed (no exchange rates).
        let same_currency = currencies.get(&credit.campaign_id) == Some(&credit.currency);
        if credit.model == outputs::AttributionModel::LastTouch && same_currency {
            add(
                &credit.campaign_id,
                credit.conversion_time,
                0,
                2,
                (credit.conversions, credit.revenue_micros),
            );
        }
    }
    rows
}

/// The latest row per key of the job's two outputs.
pub fn outputs(topics: &Topics) -> BTreeMap<String, CampaignMetrics> {
    let schema = Schema::parse_str(outputs::CAMPAIGN_METRICS_AVSC).expect("schema");
    let mut latest = BTreeMap::new();
    for topic in [&topics.hourly, &topics.daily] {
        for (key, value) in read_committed_records(topic) {
            let key = String::from_utf8(key.expect("key")).expect("utf-8");
            let row: CampaignMetrics = decode(&schema, &value.expect("value"));
            latest.insert(key, row);
        }
    }
    latest
}

pub fn differences(
    expected: &BTreeMap<String, Expected>,
    actual: &BTreeMap<String, CampaignMetrics>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, want) in expected {
        match actual.get(key) {
            None => problems.push(format!("{key}: missing")),
            Some(row) => {
                let got = Expected {
                    window_end: row.window_end,
                    impressions: row.impressions,
                    clicks: row.clicks,
                    spend_micros: row.spend_micros,
                    conversions: row.conversions,
                    revenue_micros: row.revenue_micros,
                };
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0);
                let same = (
                    got.window_end,
                    got.impressions,
                    got.clicks,
                    got.spend_micros,
                ) == (
                    want.window_end,
                    want.impressions,
                    want.clicks,
                    want.spend_micros,
                ) && close(got.conversions, want.conversions)
                    && close(got.revenue_micros, want.revenue_micros);
                if !same {
                    problems.push(format!("{key}: expected {want:?}, got {got:?}"));
                }
                let ctr = (row.impressions > 0).then(|| row.clicks as f64 / row.impressions as f64);
                if row.ctr != ctr {
                    problems.push(format!("{key}: ctr {:?} != {ctr:?}", row.ctr));
                }
                if row.clicks == 0 && row.cpc_micros.is_some() {
                    problems.push(format!("{key}: cpc defined without clicks"));
                }
                if (row.conversions > 0.0) != row.cpa_micros.is_some() {
                    problems.push(format!(
                        "{key}: cpa {:?} with {} conversions",
                        row.cpa_micros, row.conversions
                    ));
                }
                let roas =
                    (row.spend_micros > 0).then(|| row.revenue_micros / row.spend_micros as f64);
                if row.roas != roas {
                    problems.push(format!("{key}: roas {:?} != {roas:?}", row.roas));
                }
            }
        }
    }
    for key in actual.keys().filter(|k| !expected.contains_key(*k)) {
        problems.push(format!("{key}: unexpected row"));
    }
    problems
}

/// Every campaign of the campaigns topic with its currency.
pub fn campaigns(topics: &Topics) -> Vec<(String, String)> {
    let schema = Schema::parse_str(avsc::CAMPAIGN).expect("schema");
    read_committed_records(&topics.events.campaigns)
        .into_iter()
        .map(|(_, value)| {
            let campaign: Campaign = decode(&schema, &value.expect("value"));
            (campaign.campaign_id, campaign.currency)
        })
        .collect()
}

/// Produces `events` generator events (seed `seed`) into `topics` through the project's producer, registering the
/// schemas in the registry at `registry_url`; returns what the generator says it sent.
pub async fn produce_generated_events(
    registry_url: &str,
    topics: &EventTopics,
    seed: u64,
    events: u64,
) -> Counts {
    let config = GeneratorConfig {
        seed,
        events,
        ..GeneratorConfig::default()
    };
    produce_generator(registry_url, topics, config)
        .await
        .counts()
        .clone()
}

/// Produces everything a generator with `config` yields into `topics`; returns the drained generator (its
/// manifest holds the ground truth).
pub async fn produce_generator(
    registry_url: &str,
    topics: &EventTopics,
    config: GeneratorConfig,
) -> Generator {
    produce_generator_with(registry_url, topics, config, RunOptions::default()).await
}

/// [`produce_generator`] with `options` (a rate, for traffic that keeps flowing while a test works).
pub async fn produce_generator_with(
    registry_url: &str,
    topics: &EventTopics,
    config: GeneratorConfig,
    options: RunOptions,
) -> Generator {
    let producer = connect_producer(registry_url, topics).await;
    let mut generator = Generator::new(config);
    tokio::task::block_in_place(|| produce_generated(&producer, &mut generator, &options, |_| {}))
        .expect("all delivered");
    generator
}

/// The project's event producer for `topics`, registering the schemas in the registry at `registry_url`.
pub async fn connect_producer(registry_url: &str, topics: &EventTopics) -> EventProducer {
    EventProducer::connect(&ProducerSettings {
        kafka: kafka(),
        registry: registry_url.into(),
        topics: topics.clone(),
        source: "/adstream/test".into(),
        connect_timeout: Duration::from_secs(10),
    })
    .await
    .expect("connect")
}
