//! Late events on the real broker: on time within grace, a correction after grace but within retention, and
//! `late.<topic>` after retention, each with exact counts.
//!
//! One-partition topics and a zero idle timeout make the watermark the largest event time seen so far, so the
//! sequence below fixes every event's path:
//!
//! | event | time (UTC)   | watermark before | hour window path                                    |
//! |-------|--------------|------------------|-----------------------------------------------------|
//! | a     | day0 10:05   | –                | on time                                             |
//! | b     | day0 10:20   | 10:05            | on time                                             |
//! | c     | day0 12:00   | 10:20            | on time (moves the watermark past 10:00's grace)    |
//! | d     | day0 10:30   | 12:00            | correction of 10:00 (grace ended 11:10)             |
//! | e     | day0 11:50   | 12:00            | on time: 11:00 ends 12:00, grace runs to 12:10      |
//! | f     | day3 09:00   | 12:00            | on time                                             |
//! | g     | day0 10:40   | day3 09:00       | expired: 10:00's retention (1 day) ended day1 11:00 |

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adstream_processors::campaign_metrics::{CampaignMetricsConfig, CampaignMetricsJob, EmitMode};
use adstream_processors::runtime::{self, RuntimeConfig};
use adstream_processors::window::Lateness;
use adstream_producers::builders::{ClickBuilder, ImpressionBuilder, Serving};
use adstream_producers::producer::EventTopics;
use adstream_schemas::events::{AdImpression, Platform};
use adstream_schemas::outputs::{self, CampaignMetrics};
use apache_avro::Schema;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::Headers;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::Message;

use common::recompute::{connect_producer, decode, kafka, read_committed_messages};
use common::{start_registry, unique};

const HOUR: i64 = 3_600_000;
const DAY0: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z

/// Every record of `topic` with its headers.
fn read_with_headers(topic: &str) -> Vec<(Vec<u8>, BTreeMap<String, String>)> {
    read_committed_messages(topic)
        .into_iter()
        .map(|m| {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (m.payload().unwrap_or_default().to_vec(), headers)
        })
        .collect()
}

/// The job's topics under `prefix`, each with `partitions` partitions, ready for use.
async fn create_job_topics(prefix: &str, partitions: i32) -> EventTopics {
    let name = |kind: &str| format!("{prefix}.{kind}");
    let admin: AdminClient<DefaultClientContext> = kafka().create().expect("admin");
    let kinds = [
        "impressions",
        "clicks",
        "conversions",
        "campaigns",
        "creatives",
        "hourly",
        "daily",
        "alerts",
    ];
    let names: Vec<String> = kinds.iter().map(|k| name(k)).collect();
    let new_topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|topic| NewTopic::new(topic, partitions, TopicReplication::Fixed(1)))
        .collect();
    for result in admin
        .create_topics(&new_topics, &AdminOptions::new())
        .await
        .expect("create")
    {
        result.expect("created");
    }
    tokio::task::block_in_place(|| common::wait_for_topics(&names));
    EventTopics {
        impressions: name("impressions"),
        clicks: name("clicks"),
        conversions: name("conversions"),
        campaigns: name("campaigns"),
        creatives: name("creatives"),
    }
}

/// An impression of the campaign `meta-late` at `time`, costing 1,000 micros.
fn impression(id: &str, time: i64) -> AdImpression {
    let serving = Serving {
        platform: Platform::Meta,
        account_id: "act-1".into(),
        campaign_id: "meta-late".into(),
        ad_group_id: "g".into(),
        creative_id: "cr".into(),
    };
    ImpressionBuilder::new(id, time, serving)
        .cost(1_000, "USD")
        .build()
        .expect("valid")
}

/// campaign-metrics over `events` with 10 min grace and 1 day retention, writing `<prefix>.hourly` and `.daily`.
fn campaign_metrics(prefix: &str, events: &EventTopics) -> CampaignMetricsJob {
    CampaignMetricsJob::new(CampaignMetricsConfig {
        impressions: events.impressions.clone(),
        clicks: events.clicks.clone(),
        campaigns: events.campaigns.clone(),
        hourly: format!("{prefix}.hourly"),
        daily: format!("{prefix}.daily"),
        alerts: format!("{prefix}.alerts"),
        credits: None,
        attribution_model: adstream_schemas::outputs::AttributionModel::LastTouch,
        lateness: Lateness::new(Duration::from_secs(600), Duration::from_secs(86_400))
            .expect("lateness"),
        emit: EmitMode::Updating,
        pacing_check_ms: 15 * 60_000,
        alert_rules: Default::default(),
    })
    .expect("job")
}

/// Runs `job` as `<prefix>-job` over everything in its inputs (zero idle timeout); returns its summary and metrics.
async fn run_to_end(
    prefix: &str,
    registry: &str,
    job: CampaignMetricsJob,
) -> (runtime::RunSummary, Arc<runtime::JobMetrics>) {
    let mut config = RuntimeConfig::new(&format!("{prefix}-job"), kafka(), registry);
    config.exit_at_end_of_input = true;
    config.idle_timeout = Duration::ZERO;
    config.commit_interval = Duration::from_millis(100);
    let metrics = config.metrics.clone();
    let handle = tokio::runtime::Handle::current();
    let summary = tokio::task::spawn_blocking(move || {
        runtime::run(
            config,
            Box::new(job),
            Arc::new(AtomicBool::new(false)),
            handle,
        )
    })
    .await
    .expect("thread")
    .expect("job ran");
    (summary, metrics)
}

/// campaign-metrics as `<prefix>-job` over `events` in a thread, with `idle_timeout` and 100 ms commits, until
/// `stop` is set: (its metrics, stop, the thread).
fn spawn_campaign_metrics(
    prefix: &str,
    registry: &str,
    events: &EventTopics,
    idle_timeout: Duration,
) -> (
    Arc<runtime::JobMetrics>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<Result<runtime::RunSummary, runtime::RuntimeError>>,
) {
    let mut runtime_config = RuntimeConfig::new(&format!("{prefix}-job"), kafka(), registry);
    runtime_config.idle_timeout = idle_timeout;
    runtime_config.commit_interval = Duration::from_millis(100);
    let metrics = runtime_config.metrics.clone();
    let job = campaign_metrics(prefix, events);
    let stop = Arc::new(AtomicBool::new(false));
    let handle = tokio::runtime::Handle::current();
    let worker = {
        let stop = stop.clone();
        std::thread::spawn(move || runtime::run(runtime_config, Box::new(job), stop, handle))
    };
    (metrics, stop, worker)
}

/// The job counter `name` as last published (0 before the first commit).
fn job_counter(metrics: &runtime::JobMetrics, name: &str) -> u64 {
    metrics
        .snapshot()
        .job
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, v)| *v)
        .unwrap_or(0)
}

/// Regression: a task resumes at the watermark of its last commit. It used to start without one after a restart
/// or a hand-over, so an event its previous run had judged late (its window past retention and dropped from the
/// store) opened that window again from zero, and the output's final row for it was overwritten with a row of
/// that one event (seen in the chaos run as windows whose counts went back to zero).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_late_before_a_restart_is_late_after_it() {
    let registry = start_registry("late-restart").await;
    let prefix = unique("late-restart");
    let events = create_job_topics(&prefix, 1).await;
    let producer = connect_producer(&registry.url, &events).await;
    let encoders = producer.schemas.encoders().expect("encoders");
    let mut buffer = Vec::new();
    let mut send = |id: &str, time: i64| {
        producer
            .send(
                &encoders.impressions,
                &impression(id, time),
                id,
                &mut buffer,
            )
            .expect("enqueued");
        producer.flush(Duration::from_secs(30)).expect("delivered");
    };
    // 10:00 of day 0, then day 3: the watermark passes the 10:00 window's retention, which leaves the store.
    send("a", DAY0 + 10 * HOUR + 5 * 60_000);
    send("b", DAY0 + 3 * 24 * HOUR);
    let (first, _) = run_to_end(&prefix, &registry.url, campaign_metrics(&prefix, &events)).await;
    assert_eq!((first.records, first.late), (2, 0));
    let hourly = format!("{prefix}.hourly");
    let rows_before = tokio::task::block_in_place(|| read_with_headers(&hourly)).len();

    // After the restart, an event of that window: still past its retention.
    send("c", DAY0 + 10 * HOUR + 40 * 60_000);
    let (second, _) = run_to_end(&prefix, &registry.url, campaign_metrics(&prefix, &events)).await;
    assert_eq!(second.records, 1);
    assert_eq!(
        second.late, 1,
        "the restarted job judged the event by its resumed watermark"
    );
    let late =
        tokio::task::block_in_place(|| read_with_headers(&format!("late.{}", events.impressions)));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].1["correlation_id"], "c");
    let rows_after = tokio::task::block_in_place(|| read_with_headers(&hourly)).len();
    assert_eq!(
        rows_after, rows_before,
        "no row of a window reopened from zero"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lateness_takes_its_documented_path() {
    let registry = start_registry("lateness").await;
    let prefix = unique("late");
    let name = |kind: &str| format!("{prefix}.{kind}");
    let events = create_job_topics(&prefix, 1).await;
    let producer = connect_producer(&registry.url, &events).await;
    let minutes = |m: i64| m * 60_000;
    let times = [
        ("a", DAY0 + 10 * HOUR + minutes(5)),
        ("b", DAY0 + 10 * HOUR + minutes(20)),
        ("c", DAY0 + 12 * HOUR),
        ("d", DAY0 + 10 * HOUR + minutes(30)),
        ("e", DAY0 + 11 * HOUR + minutes(50)),
        ("f", DAY0 + 3 * 24 * HOUR + 9 * HOUR),
        ("g", DAY0 + 10 * HOUR + minutes(40)),
    ];
    let encoders = producer.schemas.encoders().expect("encoders");
    let mut buffer = Vec::new();
    for (id, time) in times {
        producer
            .send(
                &encoders.impressions,
                &impression(id, time),
                id,
                &mut buffer,
            )
            .expect("enqueued");
    }
    producer.flush(Duration::from_secs(30)).expect("delivered");

    let (summary, metrics) =
        run_to_end(&prefix, &registry.url, campaign_metrics(&prefix, &events)).await;
    assert_eq!(summary.records, 7);
    assert_eq!(summary.late, 1, "g is past retention");
    assert_eq!(summary.dead_letters, 0);
    let counters: BTreeMap<&str, u64> = metrics
        .snapshot()
        .job
        .iter()
        .map(|(n, _, v)| (*n, *v))
        .collect();
    assert_eq!(counters["corrections"], 1, "only d corrects a final row");
    assert_eq!(counters["expired_events"], 1);
    assert_eq!(counters["applied_events"], 6);

    let schema = Schema::parse_str(outputs::CAMPAIGN_METRICS_AVSC).expect("schema");
    let latest = |topic: &str| -> BTreeMap<i64, CampaignMetrics> {
        read_with_headers(topic)
            .into_iter()
            .map(|(value, _)| decode::<CampaignMetrics>(&schema, &value))
            .map(|row| (row.window_start, row))
            .collect()
    };
    let hourly = latest(&name("hourly"));
    let summary_of = |row: &CampaignMetrics| (row.impressions, row.corrections, row.spend_micros);
    assert_eq!(
        summary_of(&hourly[&(DAY0 + 10 * HOUR)]),
        (3, 1, 3_000),
        "a, b, d; d corrected"
    );
    assert_eq!(
        summary_of(&hourly[&(DAY0 + 11 * HOUR)]),
        (1, 0, 1_000),
        "e within grace"
    );
    assert_eq!(summary_of(&hourly[&(DAY0 + 12 * HOUR)]), (1, 0, 1_000), "c");
    assert_eq!(hourly.len(), 4, "10:00, 11:00, 12:00 and day3 09:00");
    let daily = latest(&name("daily"));
    assert_eq!(summary_of(&daily[&DAY0]), (5, 0, 5_000), "a..e; g expired");
    assert_eq!(daily[&(DAY0 + 3 * 24 * HOUR)].impressions, 1);

    let late = read_with_headers(&format!("late.{}", events.impressions));
    assert_eq!(late.len(), 1);
    let headers = &late[0].1;
    assert_eq!(headers["late_class"], "expired");
    assert_eq!(headers["source_topic"], events.impressions);
    assert_eq!(headers["source_offset"], "6");
    assert_eq!(headers["correlation_id"], "g");
    assert!(headers["late_reason"].contains("retention"), "{headers:?}");
}

/// Regression: watermarks are per task. A task far ahead in event time (partition 1, five days of events) must not
/// expire the windows of another task (partition 0) whose first events arrive later: with one watermark over all
/// owned partitions they went to `late.<topic>`. Seen when a restarted instance was assigned partitions that a
/// killed one had left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_ahead_does_not_expire_the_windows_of_a_task_behind() {
    let registry = start_registry("task-watermarks").await;
    let prefix = unique("taskwm");
    let events = create_job_topics(&prefix, 2).await;
    let producer = connect_producer(&registry.url, &events).await;
    let encoders = producer.schemas.encoders().expect("encoders");
    let mut config = kafka();
    config.set("enable.idempotence", "true");
    let raw: ThreadedProducer<DefaultProducerContext> = config.create().expect("producer");
    // Explicit partitions: which partition a key hashes to does not matter here.
    let send = |partition: i32, campaign: &str, id: &str, time: i64, buffer: &mut Vec<u8>| {
        let serving = Serving {
            platform: Platform::Meta,
            account_id: "act-1".into(),
            campaign_id: campaign.into(),
            ad_group_id: "g".into(),
            creative_id: "cr".into(),
        };
        let impression = ImpressionBuilder::new(id, time, serving)
            .cost(1_000, "USD")
            .build()
            .expect("valid");
        encoders
            .impressions
            .encode(&impression, buffer)
            .expect("encodes");
        raw.send(
            BaseRecord::to(&events.impressions)
                .partition(partition)
                .key(campaign)
                .payload(buffer.as_slice())
                .timestamp(time),
        )
        .map_err(|(e, _)| e)
        .expect("enqueued");
    };
    let mut buffer = Vec::new();
    for hour in 0..(5 * 24) {
        send(
            1,
            "ahead",
            &format!("ahead-{hour}"),
            DAY0 + hour * HOUR,
            &mut buffer,
        );
    }
    raw.flush(Duration::from_secs(30)).expect("delivered");

    let (metrics, stop, worker) =
        spawn_campaign_metrics(&prefix, &registry.url, &events, Duration::ZERO);
    let applied = |metrics: &runtime::JobMetrics| job_counter(metrics, "applied_events");
    // Partition 1 is processed (its task's watermark is day 5) before partition 0 sees anything.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while applied(&metrics) < 5 * 24 {
        assert!(
            std::time::Instant::now() < deadline,
            "partition 1 not processed in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for minute in 0..3 {
        send(
            0,
            "behind",
            &format!("behind-{minute}"),
            DAY0 + 10 * HOUR + minute * 60_000,
            &mut buffer,
        );
    }
    raw.flush(Duration::from_secs(30)).expect("delivered");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while applied(&metrics) < 5 * 24 + 3 {
        let expired = job_counter(&metrics, "expired_events");
        assert_eq!(
            expired, 0,
            "partition 0's events were expired by partition 1's progress"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "partition 0 not processed in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let summary = worker.join().expect("thread").expect("job ran");
    assert_eq!(summary.late, 0);
}

/// Regression: an input partition whose records sit in an open transaction has nothing readable, so it looked caught
/// up and went idle, and the task's other input moved the watermark past them: when the transaction committed, its
/// events were expired. A repartition topic whose writer died inside a transaction is unreadable until the
/// transaction times out (a minute, against a 30 s idle timeout). A partition whose end is held by an open
/// transaction has more to deliver and now holds the watermark like a lagging one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_held_by_an_open_transaction_is_not_idle() {
    let registry = start_registry("open-transaction").await;
    let prefix = unique("opentxn");
    let events = create_job_topics(&prefix, 1).await;
    let producer = connect_producer(&registry.url, &events).await;
    let encoders = producer.schemas.encoders().expect("encoders");
    let mut buffer = Vec::new();

    // The impression waits in a transaction that stays open while the job runs.
    let held: ThreadedProducer<DefaultProducerContext> = kafka()
        .set("transactional.id", format!("{prefix}-held"))
        .create()
        .expect("transactional producer");
    held.init_transactions(Duration::from_secs(30))
        .expect("init");
    held.begin_transaction().expect("begin");
    encoders
        .impressions
        .encode(&impression("held", DAY0 + 10 * HOUR), &mut buffer)
        .expect("encodes");
    held.send(
        BaseRecord::to(&events.impressions)
            .key("meta-late")
            .payload(buffer.as_slice())
            .timestamp(DAY0 + 10 * HOUR),
    )
    .map_err(|(e, _)| e)
    .expect("enqueued");
    held.flush(Duration::from_secs(30)).expect("written");

    // Clicks three days later, past the retention of the impression's windows, readable at once.
    let serving = Serving {
        platform: Platform::Meta,
        account_id: "act-1".into(),
        campaign_id: "meta-late".into(),
        ad_group_id: "g".into(),
        creative_id: "cr".into(),
    };
    for i in 0..3 {
        let time = DAY0 + 3 * 24 * HOUR + i * 60_000;
        let click = ClickBuilder::new(format!("click-{i}"), time, serving.clone())
            .build()
            .expect("valid");
        producer
            .send(&encoders.clicks, &click, "meta-late", &mut buffer)
            .expect("enqueued");
    }
    producer.flush(Duration::from_secs(30)).expect("delivered");

    // An idle timeout above the 5 s statistics interval (where the job learns of the open transaction).
    let (metrics, stop, worker) =
        spawn_campaign_metrics(&prefix, &registry.url, &events, Duration::from_secs(10));
    let counter = |name: &str| job_counter(&metrics, name);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while counter("applied_events") < 3 {
        assert!(std::time::Instant::now() < deadline, "clicks not processed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Well past the idle timeout with the transaction open.
    tokio::time::sleep(Duration::from_secs(16)).await;
    held.commit_transaction(Duration::from_secs(30))
        .expect("commit");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while counter("applied_events") + counter("expired_events") < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "impression not processed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let summary = worker.join().expect("thread").expect("job ran");
    assert_eq!(
        summary.late, 0,
        "the impression held by the open transaction was judged late"
    );
    assert_eq!(counter("applied_events"), 4);
}
