//! The campaign-metrics job on the real broker, checked against a batch recomputation from the raw input topics
//! (`common/recompute.rs`, written separately from the job): every key of the job's compacted outputs must hold
//! exactly the recomputed row, and every recomputed row must be there.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adstream_kafka::registry_client::RegistryClient;
use adstream_processors::campaign_metrics::{CampaignMetricsConfig, CampaignMetricsJob, EmitMode};
use adstream_processors::runtime::WireEncoder;
use adstream_processors::runtime::{self, RuntimeConfig};
use adstream_processors::window::Lateness;
use adstream_schemas::outputs::{AttributionCredit, AttributionModel};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use common::recompute::{
    campaigns, create_topics, differences, kafka, outputs, produce_generated_events,
    read_committed_messages, recompute, Topics,
};
use common::{start_registry, unique};

/// Attribution credits over the generated period: LAST_TOUCH ones (counted by the job) and LINEAR ones for the
/// same conversions (skipped: the job counts one model).
async fn produce_credits(registry_url: &str, topics: &Topics) {
    let subject = format!("{}-value", topics.credits);
    let id = RegistryClient::new(registry_url)
        .expect("client")
        .register(&subject, AttributionCredit::SCHEMA)
        .await
        .expect("register");
    let encoder = WireEncoder::new(AttributionCredit::SCHEMA, id).expect("encoder");
    let mut config = kafka();
    config
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true");
    let producer: ThreadedProducer<DefaultProducerContext> = config.create().expect("producer");
    let campaigns = tokio::task::block_in_place(|| campaigns(topics));
    let start = 1_793_491_200_000_i64; // the generator's default start, 2026-11-01
    let mut value = Vec::new();
    for i in 0..400_i64 {
        let (campaign_id, currency) = &campaigns[i as usize % campaigns.len()];
        for (model, share) in [
            (AttributionModel::LastTouch, 1.0),
            (AttributionModel::Linear, 0.5),
        ] {
            let credit = AttributionCredit {
                credit_id: format!("cv-{i}|{campaign_id}|{model:?}"),
                conversion_id: format!("cv-{i}"),
                campaign_id: campaign_id.clone(),
                model,
                conversions: share,
                revenue_micros: share * (i as f64 + 1.0) * 1_234_567.0,
                currency: currency.clone(),
                conversion_time: start + i * 1_500_000,
            };
            encoder.encode(&credit, &mut value).expect("encodes");
            producer
                .send(
                    BaseRecord::to(&topics.credits)
                        .key(campaign_id.as_str())
                        .payload(&value)
                        .timestamp(credit.conversion_time),
                )
                .map_err(|(e, _)| e)
                .expect("enqueued");
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("credits delivered");
}

/// Runs campaign-metrics with a retention of `retention_days` over `topics` until its outputs equal `expected` (or
/// three minutes pass), stops it, and returns its summary, the differences left and its `/metrics` text.
async fn run_until_equal(
    prefix: &str,
    registry_url: &str,
    topics: &Topics,
    expected: &std::collections::BTreeMap<String, common::recompute::Expected>,
    retention_days: u64,
) -> (runtime::RunSummary, Vec<String>, String) {
    let mut config = RuntimeConfig::new(&format!("{prefix}-job"), kafka(), registry_url);
    config.commit_interval = Duration::from_millis(300);
    let metrics = config.metrics.clone();
    let job = CampaignMetricsJob::new(CampaignMetricsConfig {
        impressions: topics.events.impressions.clone(),
        clicks: topics.events.clicks.clone(),
        campaigns: topics.events.campaigns.clone(),
        hourly: topics.hourly.clone(),
        daily: topics.daily.clone(),
        alerts: topics.alerts.clone(),
        credits: Some(topics.credits.clone()),
        attribution_model: AttributionModel::LastTouch,
        lateness: Lateness::new(
            Duration::from_secs(600),
            Duration::from_secs(retention_days * 86_400),
        )
        .expect("lateness"),
        emit: EmitMode::Updating,
        pacing_check_ms: 15 * 60_000,
        alert_rules: Default::default(),
    })
    .expect("job");
    let shutdown = Arc::new(AtomicBool::new(false));
    let handle = tokio::runtime::Handle::current();
    let stop = shutdown.clone();
    let worker = std::thread::spawn(move || runtime::run(config, Box::new(job), stop, handle));

    // The outputs converge on the recomputation; then the job stops cleanly.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut problems = vec!["not checked yet".to_string()];
    while Instant::now() < deadline && !worker.is_finished() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let actual = tokio::task::block_in_place(|| outputs(topics));
        problems = differences(expected, &actual);
        if problems.is_empty() {
            break;
        }
    }
    shutdown.store(true, Ordering::Relaxed);
    let summary = worker
        .join()
        .expect("job thread")
        .expect("job ran without error");
    (summary, problems, metrics.render(&format!("{prefix}-job")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_equal_a_batch_recomputation_of_the_input() {
    let registry = start_registry("metrics").await;
    let prefix = unique("metrics");
    let topics = create_topics(&prefix).await;
    produce_generated_events(&registry.url, &topics.events, 23, 30_000).await;
    produce_credits(&registry.url, &topics).await;
    let expected = recompute(&topics);
    assert!(expected.len() > 100, "the run covers many windows");
    assert!(
        expected.values().any(|row| row.conversions > 0.0),
        "credits reach the recomputation"
    );
    let (summary, problems, _) =
        run_until_equal(&prefix, &registry.url, &topics, &expected, 3).await;
    assert!(
        problems.is_empty(),
        "{} difference(s), first: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    assert_eq!(summary.dead_letters, 0);
    assert!(summary.commits > 0);
}

/// Produces every record of `topic` again, to its partition, with its key, value, timestamp and headers: what a
/// platform or pixel resending its events does.
fn produce_again(topic: &str) -> usize {
    let records = read_committed_messages(topic);
    let producer: ThreadedProducer<DefaultProducerContext> = kafka().create().expect("producer");
    let mut copies = 0;
    for message in records.iter().filter(|m| m.payload().is_some()) {
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).partition(message.partition());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(value) = message.payload() {
            record = record.payload(value);
        }
        if let Some(ts) = message.timestamp().to_millis() {
            record = record.timestamp(ts);
        }
        if let Some(headers) = message.headers() {
            record = record.headers(headers.clone());
        }
        producer.send(record).map_err(|(e, _)| e).expect("enqueued");
        copies += 1;
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("copies delivered");
    copies
}

/// Seed 002: handlers are idempotent. Every impression, click and credit produced a second time (after all the
/// first copies, so many seconds of event time later in the partition) leaves every output row as the single-copy
/// recomputation has it, and `/metrics` counts the copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_produced_twice_gives_the_single_copy_outputs() {
    let registry = start_registry("metrics-twice").await;
    let prefix = unique("metrics-twice");
    let topics = create_topics(&prefix).await;
    produce_generated_events(&registry.url, &topics.events, 29, 8_000).await;
    produce_credits(&registry.url, &topics).await;
    let expected = recompute(&topics);
    let copies: usize = tokio::task::block_in_place(|| {
        [
            &topics.events.impressions,
            &topics.events.clicks,
            &topics.credits,
        ]
        .into_iter()
        .map(|topic| produce_again(topic))
        .sum()
    });
    assert!(copies > 8_000, "{copies} copies");
    // A retention longer than the generated week: a copy is never too late to count, so every copy must be
    // recognised.
    let (summary, problems, metrics) =
        run_until_equal(&prefix, &registry.url, &topics, &expected, 8).await;
    assert!(
        problems.is_empty(),
        "{} difference(s) from the single-copy recomputation, first: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    assert_eq!(summary.dead_letters, 0);
    assert_eq!(summary.late, 0);
    let duplicates = common::sample(&metrics, "adstream_job_duplicate_events_total", "");
    // LINEAR credits are skipped before the check (another model): their copies are not counted as duplicates.
    let skipped_models = 400.0;
    assert_eq!(
        duplicates,
        Some(copies as f64 - skipped_models),
        "every copy of a counted record is a duplicate:\n{metrics}"
    );
}
