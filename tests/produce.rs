//! The producer against the real broker: what it writes (keys, timestamps, headers, wire format, counts) and
//! that a failed delivery is reported, not swallowed.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use adstream_producers::generator::{Generator, GeneratorConfig};
use adstream_producers::pipeline::{produce_generated, RunOptions};
use adstream_producers::producer::{EventProducer, EventTopics, ProduceError, ProducerSettings};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message};

use common::recompute::read_committed_messages;
use common::{bootstrap, start_registry, unique};

const KINDS: [&str; 5] = [
    "impressions",
    "clicks",
    "conversions",
    "campaigns",
    "creatives",
];

fn kafka() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap());
    config
}

/// Creates the five event topics under `prefix`; `configs` applies to the impressions topic only.
async fn create_topics(prefix: &str, impression_configs: &[(&str, &str)]) -> EventTopics {
    let admin: AdminClient<DefaultClientContext> = kafka().create().expect("admin");
    let names: Vec<String> = KINDS.iter().map(|k| format!("{prefix}.{k}")).collect();
    let mut impressions = NewTopic::new(&names[0], 3, TopicReplication::Fixed(1));
    for (key, value) in impression_configs {
        impressions = impressions.set(key, value);
    }
    let mut topics = vec![impressions];
    topics.extend(
        names[1..]
            .iter()
            .map(|n| NewTopic::new(n, 3, TopicReplication::Fixed(1))),
    );
    for result in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .expect("create topics")
    {
        result.expect("topic created");
    }
    EventTopics {
        impressions: names[0].clone(),
        clicks: names[1].clone(),
        conversions: names[2].clone(),
        campaigns: names[3].clone(),
        creatives: names[4].clone(),
    }
}

fn settings(topics: EventTopics, registry_url: &str) -> ProducerSettings {
    ProducerSettings {
        kafka: kafka(),
        registry: registry_url.into(),
        topics,
        source: "/adstream/test".into(),
        connect_timeout: Duration::from_secs(10),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_events_land_keyed_timestamped_with_headers() {
    let registry = start_registry("produce").await;
    let topics = create_topics(&unique("produce"), &[]).await;
    let producer = EventProducer::connect(&settings(topics.clone(), &registry.url))
        .await
        .expect("connect");
    let mut generator = Generator::new(GeneratorConfig {
        seed: 17,
        events: 5_000,
        ..GeneratorConfig::default()
    });
    let done = tokio::task::block_in_place(|| {
        produce_generated(&producer, &mut generator, &RunOptions::default(), |_| {})
    })
    .expect("all delivered");
    let counts = generator.counts().clone();
    assert_eq!(done.delivered, 5_000 + counts.campaigns + counts.creatives);

    let clicks = read_committed_messages(&topics.clicks);
    assert_eq!(clicks.len() as u64, counts.clicks);
    let click_schema_id = producer.schemas.clicks.id.to_be_bytes();
    let mut keys_per_partition: HashMap<String, i32> = HashMap::new();
    for message in &clicks {
        let payload = message.payload().expect("payload");
        assert_eq!(payload[0], 0, "magic byte");
        assert_eq!(&payload[1..5], &click_schema_id, "schema id");
        let value = apache_avro::reader::datum::GenericDatumReader::builder(
            &producer.schemas.clicks.schema,
        )
        .build()
        .expect("reader")
        .read_value(&mut &payload[5..])
        .expect("decodes");
        let click: adstream_schemas::events::AdClick =
            apache_avro::from_value(&value).expect("AdClick");
        let key = std::str::from_utf8(message.key().expect("key")).expect("utf-8");
        assert_eq!(key, click.campaign_id);
        assert_eq!(message.timestamp().to_millis(), Some(click.event_time));
        // One key, one partition: co-partitioning rests on it.
        let partition = *keys_per_partition
            .entry(key.to_string())
            .or_insert(message.partition());
        assert_eq!(
            partition,
            message.partition(),
            "campaign {key} spread over partitions"
        );
        let headers: HashMap<&str, &[u8]> = message
            .headers()
            .expect("headers")
            .iter()
            .map(|h| (h.key, h.value.unwrap_or_default()))
            .collect();
        assert_eq!(headers["ce_id"], click.event_id.as_bytes());
        assert_eq!(headers["ce_type"], b"io.adstream.ad.click.v1");
        assert_eq!(headers["ce_specversion"], b"1.0");
        assert_eq!(headers["ce_source"], b"/adstream/test");
        assert!(headers["ce_time"].starts_with(b"2026-11-"));
        assert_eq!(
            headers["correlation_id"],
            click
                .impression_id
                .expect("generated clicks know their impression")
                .as_bytes()
        );
    }
    let conversions = read_committed_messages(&topics.conversions);
    assert_eq!(conversions.len() as u64, counts.conversions);
    assert!(
        conversions
            .iter()
            .all(|m| m.key().is_some_and(|k| k.starts_with(b"u-"))),
        "conversions keyed by user"
    );
}

/// Regression guard for "delivery failures are never swallowed": the broker refuses records larger than the
/// topic's `max.message.bytes`; the run must end in an error that counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_deliveries_fail_the_run() {
    let registry = start_registry("produce-fail").await;
    let topics = create_topics(&unique("produce-fail"), &[("max.message.bytes", "64")]).await;
    let mut settings = settings(topics, &registry.url);
    // Send records one by one so that each one is judged alone against the limit.
    settings
        .kafka
        .set("batch.num.messages", "1")
        .set("compression.type", "none");
    let producer = EventProducer::connect(&settings).await.expect("connect");
    let mut generator = Generator::new(GeneratorConfig {
        seed: 3,
        events: 500,
        ..GeneratorConfig::default()
    });
    let outcome = tokio::task::block_in_place(|| {
        produce_generated(&producer, &mut generator, &RunOptions::default(), |_| {})
    });
    match outcome {
        Err(ProduceError::Delivery { failed, first, .. }) => {
            assert!(
                failed >= generator.counts().impressions,
                "every impression failed: {failed}"
            );
            assert!(first.contains("impressions"), "{first}");
        }
        other => panic!("expected a delivery error, got {other:?}"),
    }
}
