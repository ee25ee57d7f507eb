//! Benchmark: generator + encoder + producer against the raw produce rate of the same records.
//!
//! Run with the local broker up (`./dev/kafka up`):
//!
//! ```text
//! cargo bench --bench produce            # 1,000,000 events
//! ADSTREAM_BENCH_EVENTS=5000000 cargo bench --bench produce
//! ```
//!
//! It starts an in-process schema registry on a private `_schemas` topic, creates private topics, and measures in
//! one run:
//! 1. generation alone (no Kafka),
//! 2. generation + Confluent wire encoding (no Kafka),
//! 3. the baseline: producing the same records already serialized (key, payload, timestamp, headers) with the
//!    same producer settings,
//! 4. the full path (`produce_generated`): generate, encode, produce, wait for every acknowledgement.
//!
//! Rates are printed side by side with the ratio to the baseline. Not a test: nothing is asserted.

use std::time::{Duration, Instant};

use adstream_producers::generator::{GeneratedEvent, Generator, GeneratorConfig};
use adstream_producers::pipeline::{produce_generated, RunOptions};
use adstream_producers::producer::{producer_config, EventProducer, EventTopics, ProducerSettings};
use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

struct RawRecord {
    topic: usize,
    key: String,
    payload: Vec<u8>,
    timestamp: i64,
    headers: Vec<(&'static str, String)>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let events: u64 = std::env::var("ADSTREAM_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let bootstrap =
        std::env::var("ADSTREAM_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut kafka = ClientConfig::new();
    kafka.set("bootstrap.servers", &bootstrap);
    let run = format!(
        "bench-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let registry_url = format!("http://{}", listener.local_addr()?);
    let registry_config = adstream_registry::RegistryConfig {
        kafka: kafka.clone(),
        topic: format!("_schemas-{run}"),
        kafka_timeout: Duration::from_secs(10),
    };
    tokio::spawn(adstream_registry::serve(
        listener,
        registry_config,
        std::future::pending(),
    ));

    let kinds = [
        "impressions",
        "clicks",
        "conversions",
        "campaigns",
        "creatives",
    ];
    let full_topics: Vec<String> = kinds.iter().map(|k| format!("{run}.full.{k}")).collect();
    let raw_topics: Vec<String> = kinds.iter().map(|k| format!("{run}.raw.{k}")).collect();
    let admin: AdminClient<DefaultClientContext> = kafka.create()?;
    let new_topics: Vec<NewTopic> = full_topics
        .iter()
        .chain(&raw_topics)
        // -1: the broker's `default.replication.factor` (KIP-464).
        .map(|t| NewTopic::new(t, 4, TopicReplication::Fixed(-1)))
        .collect();
    for result in admin
        .create_topics(&new_topics, &AdminOptions::new())
        .await?
    {
        if let Err((topic, code)) = result {
            bail!("cannot create {topic}: {code}");
        }
    }
    let topics_of = |names: &[String]| EventTopics {
        impressions: names[0].clone(),
        clicks: names[1].clone(),
        conversions: names[2].clone(),
        campaigns: names[3].clone(),
        creatives: names[4].clone(),
    };
    let settings = |topics: EventTopics| ProducerSettings {
        kafka: kafka.clone(),
        registry: registry_url.clone().into(),
        topics,
        source: "/adstream/bench".into(),
        connect_timeout: Duration::from_secs(10),
    };
    let config = GeneratorConfig {
        seed: 7,
        events,
        ..GeneratorConfig::default()
    };
    println!("adstream produce benchmark: {events} events, broker {bootstrap}, 1 producer thread");

    // 1. Generation alone.
    let started = Instant::now();
    let generated = Generator::new(config.clone()).count() as f64;
    let generate_rate = generated / started.elapsed().as_secs_f64();

    // 2. Generation + encoding, keeping the serialized records for the baseline.
    let raw_producer = EventProducer::connect(&settings(topics_of(&raw_topics))).await?;
    let started = Instant::now();
    let mut raw = Vec::with_capacity(generated as usize);
    {
        let encoders = raw_producer.schemas.encoders()?;
        let mut buffer = Vec::new();
        for g in Generator::new(config.clone()) {
            let (topic, key, timestamp, id, ce_type) = match &g.event {
                GeneratedEvent::Impression(e) => {
                    encoders.impressions.encode(e, &mut buffer)?;
                    (
                        0,
                        &e.campaign_id,
                        e.event_time,
                        &e.event_id,
                        "io.adstream.ad.impression.v1",
                    )
                }
                GeneratedEvent::Click(e) => {
                    encoders.clicks.encode(e, &mut buffer)?;
                    (
                        1,
                        &e.campaign_id,
                        e.event_time,
                        &e.event_id,
                        "io.adstream.ad.click.v1",
                    )
                }
                GeneratedEvent::Conversion(e) => {
                    encoders.conversions.encode(e, &mut buffer)?;
                    (
                        2,
                        &e.user_id,
                        e.event_time,
                        &e.conversion_id,
                        "io.adstream.conversion.v1",
                    )
                }
                GeneratedEvent::Campaign(e) => {
                    encoders.campaigns.encode(e, &mut buffer)?;
                    (
                        3,
                        &e.campaign_id,
                        e.updated_at,
                        &e.campaign_id,
                        "io.adstream.campaign.v1",
                    )
                }
                GeneratedEvent::Creative(e) => {
                    encoders.creatives.encode(e, &mut buffer)?;
                    (
                        4,
                        &e.creative_id,
                        e.created_at,
                        &e.creative_id,
                        "io.adstream.creative.v1",
                    )
                }
            };
            raw.push(RawRecord {
                topic,
                key: key.clone(),
                payload: buffer.clone(),
                timestamp,
                headers: vec![
                    ("ce_specversion", "1.0".into()),
                    ("ce_id", id.clone()),
                    ("ce_type", ce_type.into()),
                    ("ce_source", "/adstream/bench".into()),
                    ("ce_time", timestamp.to_string()),
                    ("content-type", "application/vnd.confluent.avro".into()),
                    ("correlation_id", g.correlation_id.clone()),
                ],
            });
        }
    }
    let encode_rate = raw.len() as f64 / started.elapsed().as_secs_f64();

    // 3. Baseline: produce the pre-serialized records with the same producer settings.
    let producer: ThreadedProducer<DefaultProducerContext> = producer_config(&kafka)
        .create()
        .context("baseline producer")?;
    let started = Instant::now();
    for record in &raw {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_str()),
            });
        }
        let mut pending = BaseRecord::to(&raw_topics[record.topic])
            .key(record.key.as_str())
            .payload(record.payload.as_slice())
            .timestamp(record.timestamp)
            .headers(headers);
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                Err((_, back)) => {
                    pending = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let raw_rate = raw.len() as f64 / started.elapsed().as_secs_f64();
    drop(raw);

    // 4. Full path.
    let full = EventProducer::connect(&settings(topics_of(&full_topics))).await?;
    let mut generator = Generator::new(config);
    let done = tokio::task::block_in_place(|| {
        produce_generated(&full, &mut generator, &RunOptions::default(), |_| {})
    })?;
    let full_rate = done.rate();

    println!("{:<52} {:>14} {:>10}", "path", "records/s", "vs raw");
    println!(
        "{:<52} {:>14.0} {:>10}",
        "generate only (no Kafka)", generate_rate, "-"
    );
    println!(
        "{:<52} {:>14.0} {:>10}",
        "generate + encode (no Kafka)", encode_rate, "-"
    );
    println!(
        "{:<52} {:>14.0} {:>9.2}x",
        "baseline: produce pre-serialized records", raw_rate, 1.0
    );
    println!(
        "{:<52} {:>14.0} {:>9.2}x",
        "generate + encode + produce (acknowledged)",
        full_rate,
        full_rate / raw_rate
    );
    let _ = admin
        .delete_topics(
            &full_topics
                .iter()
                .chain(&raw_topics)
                .map(String::as_str)
                .collect::<Vec<_>>(),
            &AdminOptions::new(),
        )
        .await;
    Ok(())
}
