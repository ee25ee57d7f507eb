//! Benchmark: the HTTP ingest endpoint (`adstream ingest serve`) against the raw produce rate of the same records.
//!
//! Run with the local broker up (`./dev/kafka up`):
//!
//! ```text
//! cargo bench --bench ingest                       # 200,000 events per phase
//! ADSTREAM_BENCH_EVENTS=1000000 cargo bench --bench ingest
//! ```
//!
//! One process, in one run: an in-process schema registry on a private `_schemas` topic, private topics, then
//! 1. the baseline: the same impressions, already encoded, produced with the endpoint's producer settings
//!    (idempotent, `acks=all`, 2 ms linger) by one producer, every acknowledgement awaited;
//! 2. the endpoint in batch mode (100 events per request, 8 requests in flight);
//! 3. the endpoint in binary mode (one event per request, 64 in flight): its maximum rate;
//! 4. binary mode paced at half that rate for 10 s: latency from request sent to `202` (p50/p95/p99/max).
//!
//! The HTTP client runs in the same process on the same two worker threads, so the endpoint's figures include
//! the load generator's cost: they are what this machine serves, not the server's ceiling. Not a test: nothing
//! is asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use adstream_ingest::settings::IngestTopics;
use adstream_ingest::{IngestLimits, IngestServer, IngestSettings};
use adstream_producers::producer::{
    cloudevent_headers, producer_config, CloudEventAttributes, SchemaRegistrar, WireEncoder,
};
use adstream_schemas::events::{AdImpression, AvroRecord, Device, Placement, Platform};
use anyhow::{bail, Result};
use futures::stream::{self, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const TOKEN: &str = "bench-token";
const BATCH: usize = 100;
const BATCH_IN_FLIGHT: usize = 8;
const SINGLE_IN_FLIGHT: usize = 64;
const PACED_SECONDS: u64 = 10;
/// 2026-11-01T00:00:00Z.
const START_MS: i64 = 1_793_491_200_000;

fn impression(run: &str, phase: &str, i: u64) -> AdImpression {
    AdImpression {
        event_id: format!("{run}-{phase}-{i}"),
        event_time: START_MS + i as i64,
        platform: Platform::Meta,
        account_id: "act-1".into(),
        campaign_id: format!("meta-c{}", i % 24),
        ad_group_id: "as-1".into(),
        creative_id: format!("cr-{}", i % 96),
        user_id: Some(format!("u-{}", i % 10_000)),
        placement: Placement::Feed,
        device: Device::Mobile,
        cost_micros: 2_000,
        currency: "USD".into(),
    }
}

/// A structured-mode CloudEvent of `record` as JSON.
fn structured(record: &AdImpression) -> serde_json::Value {
    serde_json::json!({
        "specversion": "1.0", "id": record.event_id, "source": "/bench", "type": AdImpression::CE_TYPE,
        "data": record,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let events: u64 = std::env::var("ADSTREAM_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(200_000);
    let bootstrap =
        std::env::var("ADSTREAM_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut kafka = ClientConfig::new();
    kafka.set("bootstrap.servers", &bootstrap);
    let run = format!(
        "bench-ingest-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let registry_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(adstream_registry::serve(
        listener,
        adstream_registry::RegistryConfig {
            kafka: kafka.clone(),
            topic: format!("_schemas-{run}"),
            kafka_timeout: Duration::from_secs(10),
        },
        std::future::pending(),
    ));
    let topics = IngestTopics {
        impressions: format!("{run}.impressions"),
        clicks: format!("{run}.clicks"),
        conversions: format!("{run}.conversions"),
    };
    let raw_topic = format!("{run}.raw");
    let admin: AdminClient<DefaultClientContext> = kafka.create()?;
    let new_topics: Vec<NewTopic> = [
        &topics.impressions,
        &topics.clicks,
        &topics.conversions,
        &raw_topic,
    ]
    .into_iter()
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
    println!("adstream ingest benchmark: {events} events per phase, broker {bootstrap}");

    // 1. Baseline: raw produce of the same records, encoded beforehand.
    let registrar = SchemaRegistrar::new(&registry_url.clone().into(), Duration::from_secs(10))?;
    let schema = registrar.topic_schema::<AdImpression>(&raw_topic).await?;
    let encoder = WireEncoder::new(&schema)?;
    let records: Vec<(AdImpression, Vec<u8>)> = (0..events)
        .map(|i| {
            let record = impression(&run, "raw", i);
            let mut payload = Vec::new();
            encoder
                .encode(&record, &mut payload)
                .map(|()| (record, payload))
        })
        .collect::<Result<_, _>>()?;
    let mut raw_config = producer_config(&kafka);
    raw_config.set("linger.ms", "2");
    let producer: FutureProducer = raw_config.create()?;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(records.len());
    for (record, payload) in &records {
        let headers = cloudevent_headers(&CloudEventAttributes {
            id: &record.event_id,
            ce_type: AdImpression::CE_TYPE,
            source: "/bench",
            time_ms: record.event_time,
            correlation_id: &record.event_id,
        });
        let future = producer.send_result(
            FutureRecord::to(&raw_topic)
                .key(record.key())
                .payload(payload)
                .timestamp(record.event_time)
                .headers(headers),
        );
        match future {
            Ok(delivery) => deliveries.push(delivery),
            Err((error, _)) => bail!("raw produce: {error}"),
        }
    }
    for delivery in deliveries {
        if !matches!(delivery.await, Ok(Ok(_))) {
            bail!("a raw record was not delivered");
        }
    }
    let raw_rate = events as f64 / started.elapsed().as_secs_f64();
    drop(producer);

    // The endpoint, in process.
    let server = IngestServer::bind(IngestSettings {
        listen: "127.0.0.1:0".parse()?,
        tokens: vec![TOKEN.into()],
        limits: IngestLimits::default(),
        topics,
        kafka: kafka.clone(),
        registry: registry_url.clone().into(),
    })
    .await?;
    let url = format!("http://{}/events", server.local_addr());
    tokio::spawn(server.run(std::future::pending()));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(SINGLE_IN_FLIGHT)
        .build()?;
    let client = Arc::new(client);

    // 2. Batch mode.
    let bodies: Vec<Vec<u8>> = (0..events)
        .collect::<Vec<u64>>()
        .chunks(BATCH)
        .map(|chunk| {
            let batch: Vec<serde_json::Value> = chunk
                .iter()
                .map(|i| structured(&impression(&run, "batch", *i)))
                .collect();
            serde_json::to_vec(&batch)
        })
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let failures = stream::iter(bodies)
        .map(|body| {
            let client = Arc::clone(&client);
            let url = url.clone();
            async move {
                client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/cloudevents-batch+json")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        })
        .buffer_unordered(BATCH_IN_FLIGHT)
        .filter(|status| futures::future::ready(!matches!(status, Ok(202))))
        .count()
        .await;
    let batch_rate = events as f64 / started.elapsed().as_secs_f64();
    if failures > 0 {
        bail!("{failures} batch requests were not accepted");
    }

    // 3. Binary mode, one event per request, as fast as it goes.
    let single = |phase: &'static str, i: u64| {
        let client = Arc::clone(&client);
        let url = url.clone();
        let record = impression(&run, phase, i);
        async move {
            let sent = Instant::now();
            let status = client
                .post(&url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .header("ce-specversion", "1.0")
                .header("ce-id", &record.event_id)
                .header("ce-source", "/bench")
                .header("ce-type", AdImpression::CE_TYPE)
                .json(&record)
                .send()
                .await
                .map(|r| r.status().as_u16());
            (status, sent.elapsed())
        }
    };
    let started = Instant::now();
    let failures = stream::iter(0..events)
        .map(|i| single("single", i))
        .buffer_unordered(SINGLE_IN_FLIGHT)
        .filter(|(status, _)| futures::future::ready(!matches!(status, Ok(202))))
        .count()
        .await;
    let single_rate = events as f64 / started.elapsed().as_secs_f64();
    if failures > 0 {
        bail!("{failures} single-event requests were not accepted");
    }

    // 4. Binary mode paced at half the maximum: latency per request.
    let paced_rate = (single_rate / 2.0).max(1.0);
    let paced_events = (paced_rate * PACED_SECONDS as f64) as u64;
    let interval = Duration::from_secs_f64(1.0 / paced_rate);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(paced_events as usize);
    for i in 0..paced_events {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        handles.push(tokio::spawn(single("paced", i)));
    }
    let mut latencies = Vec::with_capacity(handles.len());
    // An open-loop load may outrun the server for a moment: what it refuses (503 over its in-flight limit) is
    // counted and reported, not a reason to stop.
    let mut refused = std::collections::BTreeMap::<String, u64>::new();
    for handle in handles {
        let (status, latency) = handle.await?;
        match status {
            Ok(202) => latencies.push(latency),
            other => *refused.entry(format!("{other:?}")).or_default() += 1,
        }
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;

    println!();
    println!("| path | events/s | vs raw produce |");
    println!("|---|---:|---:|");
    println!("| raw produce (encoded records, acks=all, linger 2 ms) | {raw_rate:.0} | 1.00 |");
    println!(
        "| ingest, batch mode ({BATCH} events/request, {BATCH_IN_FLIGHT} in flight) | {batch_rate:.0} | {:.2} |",
        batch_rate / raw_rate
    );
    println!(
        "| ingest, binary mode (1 event/request, {SINGLE_IN_FLIGHT} in flight) | {single_rate:.0} | {:.2} |",
        single_rate / raw_rate
    );
    println!();
    println!(
        "binary mode paced at {paced_rate:.0} events/s for {PACED_SECONDS} s ({} accepted), request → 202: \
         p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.95)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    if !refused.is_empty() {
        println!("paced requests not accepted (not in the latencies): {refused:?}");
    }
    let stale: Vec<String> = vec![
        format!("_schemas-{run}"),
        format!("{run}.impressions"),
        format!("{run}.clicks"),
        format!("{run}.conversions"),
        raw_topic,
    ];
    let stale: Vec<&str> = stale.iter().map(String::as_str).collect();
    admin.delete_topics(&stale, &AdminOptions::new()).await?;
    Ok(())
}
