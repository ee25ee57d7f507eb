//! Dead letters end to end on the real broker: poison records of every kind mixed into valid generator data, the
//! campaign-metrics job run in-process until its inputs are read, then `adstream dlq inspect` and `adstream dlq
//! redrive` run as a user would.
//!
//! Needs the local broker (`./dev/kafka up`); the registry runs in-process on a private `_schemas` topic.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adstream_kafka::registry_client::RegistryClient;
use adstream_processors::campaign_metrics::{CampaignMetricsConfig, CampaignMetricsJob, EmitMode};
use adstream_processors::runtime::{self, RunSummary, RuntimeConfig, WireEncoder};
use adstream_processors::window::Lateness;
use adstream_schemas::events::{AdClick, AdImpression, AvroRecord, Device, Placement, Platform};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

use common::recompute::{
    create_topics, differences, kafka, outputs, produce_generated_events, read_committed_messages,
    recompute, Topics,
};
use common::{adstream, start_registry, unique};

const PARTITIONS: i32 = 4;
/// Start of the generator's simulated period (its default); poison records carry it as their timestamp so they
/// never move a watermark.
const START_MS: i64 = 1_793_491_200_000;

/// One record as read back, with everything the dead-letter contract talks about.
#[derive(Debug, Clone)]
struct Stored {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<String>)>,
}

impl Stored {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Every record of `topic` (read_committed, from the beginning to the end at call time).
fn read_all(topic: &str) -> Vec<Stored> {
    read_committed_messages(topic)
        .into_iter()
        .map(|m| Stored {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                h.value.map(|v| String::from_utf8_lossy(v).into_owned()),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Confluent wire format: magic byte, big-endian id, body.
fn wire(id: u32, body: &[u8]) -> Vec<u8> {
    adstream_schemas::wire::encode(id, body)
}

fn click(cost_micros: i64, currency: &str) -> AdClick {
    AdClick {
        event_id: "poison-click".into(),
        event_time: START_MS,
        platform: Platform::Tiktok,
        account_id: "tiktok-acct-00".into(),
        campaign_id: "tiktok-cmp-0002".into(),
        ad_group_id: "tiktok-cmp-0002-ag-0".into(),
        creative_id: "tiktok-cmp-0002-cr-1".into(),
        user_id: Some("u-00000042".into()),
        impression_id: None,
        device: Device::Mobile,
        cost_micros,
        currency: currency.into(),
    }
}

fn impression(cost_micros: i64, currency: &str) -> AdImpression {
    AdImpression {
        event_id: "poison-impression".into(),
        event_time: START_MS,
        platform: Platform::Meta,
        account_id: "meta-acct-00".into(),
        campaign_id: "meta-cmp-0001".into(),
        ad_group_id: "meta-cmp-0001-ag-0".into(),
        creative_id: "meta-cmp-0001-cr-0".into(),
        user_id: None,
        placement: Placement::Feed,
        device: Device::Desktop,
        cost_micros,
        currency: currency.into(),
    }
}

/// One poison record as produced, and the class the runtime must give it.
#[derive(Debug, Clone)]
struct Poison {
    topic: String,
    kind: &'static str,
    class: &'static str,
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

/// The poison values of one topic: (kind, class, value). `valid` encodes a contract-valid datum of the topic's
/// type; `cheap` and `lower` encode ones that break a rule (negative cost, lower-case currency).
fn poison_values(
    valid: &[u8],
    cheap: Vec<u8>,
    lower: Vec<u8>,
    own_id: u32,
    other_id: u32,
) -> Vec<(&'static str, &'static str, Option<Vec<u8>>)> {
    let datum = &valid[5..];
    let mut trailing = valid.to_vec();
    trailing.extend_from_slice(&[0x02, 0x04, 0x06]);
    vec![
        (
            "json instead of Avro",
            "bad-magic-byte",
            Some(br#"{"campaign_id":"x"}"#.to_vec()),
        ),
        ("three bytes", "truncated-header", Some(vec![0, 0, 0])),
        (
            "unknown schema id",
            "unknown-schema-id",
            Some(wire(999_999, datum)),
        ),
        (
            "another record type's schema",
            "incompatible-schema",
            Some(wire(other_id, &[0x54])),
        ),
        (
            "datum cut in half",
            "undecodable-avro",
            Some(wire(own_id, &datum[..datum.len() / 2])),
        ),
        (
            "garbage after a valid header",
            "undecodable-avro",
            Some(wire(own_id, &[0xff; 12])),
        ),
        ("trailing bytes", "undecodable-avro", Some(trailing)),
        ("tombstone on a stream", "missing-value", None),
        ("negative cost", "invalid-value", Some(cheap)),
        ("lower-case currency", "invalid-value", Some(lower)),
    ]
}

/// Produces the poison records of both event topics and returns where each landed.
async fn produce_poison(registry_url: &str, topics: &Topics) -> Vec<Poison> {
    let registry = RegistryClient::new(registry_url).expect("registry client");
    let click_id = registry
        .register(&format!("{}-value", topics.events.clicks), AdClick::SCHEMA)
        .await
        .expect("click schema id");
    let impression_id = registry
        .register(
            &format!("{}-value", topics.events.impressions),
            AdImpression::SCHEMA,
        )
        .await
        .expect("impression schema id");
    let other_id = registry
        .register(
            &format!("{}.other-value", unique("dead-letters")),
            r#"{"type":"record","name":"Other","namespace":"io.adstream.test","fields":[{"name":"x","type":"long"}]}"#,
        )
        .await
        .expect("other schema id");
    assert!(
        other_id != click_id && other_id != impression_id,
        "a distinct schema"
    );
    let clicks = WireEncoder::new(AdClick::SCHEMA, click_id).expect("encoder");
    let impressions = WireEncoder::new(AdImpression::SCHEMA, impression_id).expect("encoder");
    let encode_click = |c: AdClick| {
        let mut out = Vec::new();
        clicks.encode(&c, &mut out).expect("encodes");
        out
    };
    let encode_impression = |i: AdImpression| {
        let mut out = Vec::new();
        impressions.encode(&i, &mut out).expect("encodes");
        out
    };
    let plan = [
        (
            topics.events.clicks.clone(),
            poison_values(
                &encode_click(click(250_000, "USD")),
                encode_click(click(-5, "USD")),
                encode_click(click(250_000, "usd")),
                click_id,
                other_id,
            ),
        ),
        (
            topics.events.impressions.clone(),
            poison_values(
                &encode_impression(impression(1_500, "EUR")),
                encode_impression(impression(-1, "EUR")),
                encode_impression(impression(1_500, "eur")),
                impression_id,
                other_id,
            ),
        ),
    ];
    let mut config = kafka();
    config.set("enable.idempotence", "true").set("acks", "all");
    let producer: FutureProducer = config.create().expect("producer");
    let mut produced = Vec::new();
    for (topic, values) in plan {
        for (n, (kind, class, value)) in values.into_iter().enumerate() {
            let key = format!("poison-{n}").into_bytes();
            let correlation = format!("poison-{n}-{class}");
            let partition = n as i32 % PARTITIONS;
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "correlation_id",
                    value: Some(correlation.as_str()),
                })
                .insert(Header {
                    key: "ce_id",
                    value: Some(correlation.as_str()),
                });
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic)
                .key(key.as_slice())
                .partition(partition)
                .timestamp(START_MS)
                .headers(headers);
            if let Some(value) = &value {
                record = record.payload(value.as_slice());
            }
            let delivery = producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)
                .expect("poison record delivered");
            produced.push(Poison {
                topic: topic.clone(),
                kind,
                class,
                partition: delivery.partition,
                offset: delivery.offset,
                key,
                value,
            });
        }
    }
    produced
}

/// A private set of topics with valid generator data, then the poison records, and the batch recomputation of
/// the job's outputs over the valid data alone.
struct Setup {
    prefix: String,
    registry_url: String,
    topics: Topics,
    poison: Vec<Poison>,
    expected: BTreeMap<String, common::recompute::Expected>,
    valid_impressions: i64,
    _registry: common::TestRegistry,
}

async fn setup(name: &str) -> Setup {
    let registry = start_registry(name).await;
    let prefix = unique(name);
    let topics = create_topics(&prefix).await;
    produce_generated_events(&registry.url, &topics.events, 7, 6_000).await;
    // Over the valid data only: the recomputation decodes every record and would reject the poison.
    let expected = tokio::task::block_in_place(|| recompute(&topics));
    assert!(expected.len() > 50, "the run covers many windows");
    let valid_impressions = expected
        .iter()
        .filter(|(key, _)| key.contains("|daily|"))
        .map(|(_, row)| row.impressions)
        .sum();
    let impressions_in_topic =
        tokio::task::block_in_place(|| read_all(&topics.events.impressions)).len() as i64;
    assert_eq!(
        valid_impressions, impressions_in_topic,
        "the recomputation counts every produced impression once"
    );
    let poison = produce_poison(&registry.url, &topics).await;
    Setup {
        prefix,
        registry_url: registry.url.clone(),
        topics,
        poison,
        expected,
        valid_impressions,
        _registry: registry,
    }
}

/// Runs the campaign-metrics job over everything in the inputs; it stops by itself at their end.
async fn run_job(setup: &Setup) -> RunSummary {
    run_job_against(setup, &setup.registry_url, false).await
}

/// [`run_job`] with the job asking the registry at `registry_url`, and reading the attribution credits topic too
/// with `with_credits`.
async fn run_job_against(setup: &Setup, registry_url: &str, with_credits: bool) -> RunSummary {
    let mut config = RuntimeConfig::new(&format!("{}-job", setup.prefix), kafka(), registry_url);
    config.commit_interval = Duration::from_millis(300);
    config.exit_at_end_of_input = true;
    let topics = &setup.topics;
    let job = CampaignMetricsJob::new(CampaignMetricsConfig {
        impressions: topics.events.impressions.clone(),
        clicks: topics.events.clicks.clone(),
        campaigns: topics.events.campaigns.clone(),
        hourly: topics.hourly.clone(),
        daily: topics.daily.clone(),
        alerts: topics.alerts.clone(),
        credits: with_credits.then(|| topics.credits.clone()),
        attribution_model: adstream_schemas::outputs::AttributionModel::LastTouch,
        lateness: Lateness::new(Duration::from_secs(600), Duration::from_secs(3 * 86_400))
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
    let deadline = Instant::now() + Duration::from_secs(180);
    while !worker.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stopped_by_itself = worker.is_finished();
    shutdown.store(true, Ordering::Relaxed);
    let result = worker.join().expect("job thread");
    assert!(
        stopped_by_itself,
        "the job did not stop at the end of its input within 180 s"
    );
    result.expect("the job ran without error")
}

/// Reads the job's outputs and checks every row equals the batch recomputation over the valid data; returns them.
fn outputs_equal_the_recomputation(
    setup: &Setup,
) -> BTreeMap<String, adstream_schemas::outputs::CampaignMetrics> {
    let actual = tokio::task::block_in_place(|| outputs(&setup.topics));
    let problems = differences(&setup.expected, &actual);
    assert!(
        problems.is_empty(),
        "{} difference(s), first: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    actual
}

/// Per-class counts of the poison records of `topic`.
fn expected_classes(poison: &[Poison], topic: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for p in poison.iter().filter(|p| p.topic == topic) {
        *counts.entry(p.class.to_owned()).or_default() += 1;
    }
    counts
}

/// Checks every poison record of `topic` is in `dlq.<topic>` exactly once with its class, source headers and
/// original partition, key, value and timestamp; and that nothing else is.
fn check_dead_letters(poison: &[Poison], topic: &str, job: &str) -> Vec<Stored> {
    let dlq = format!("dlq.{topic}");
    let letters = read_all(&dlq);
    let mut by_source: HashMap<(i32, i64), Vec<&Stored>> = HashMap::new();
    for letter in &letters {
        assert_eq!(
            letter.header("source_topic"),
            Some(topic),
            "{dlq}: {letter:?}"
        );
        let partition: i32 = letter
            .header("source_partition")
            .and_then(|p| p.parse().ok())
            .expect("source_partition is a number");
        let offset: i64 = letter
            .header("source_offset")
            .and_then(|o| o.parse().ok())
            .expect("source_offset is a number");
        by_source
            .entry((partition, offset))
            .or_default()
            .push(letter);
    }
    let ours: Vec<&Poison> = poison.iter().filter(|p| p.topic == topic).collect();
    for p in &ours {
        let found = by_source
            .get(&(p.partition, p.offset))
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert_eq!(
            found.len(),
            1,
            "{} ({}) at {topic}/{}/{} must be dead-lettered exactly once",
            p.kind,
            p.class,
            p.partition,
            p.offset
        );
        let letter = found[0];
        assert_eq!(
            letter.header("dlq_error_class"),
            Some(p.class),
            "class of {}: message {:?}",
            p.kind,
            letter.header("dlq_error_message")
        );
        assert!(
            letter
                .header("dlq_error_message")
                .is_some_and(|m| !m.is_empty()),
            "{}: a message",
            p.kind
        );
        assert_eq!(letter.partition, p.partition, "{}: same partition", p.kind);
        assert_eq!(
            letter.key.as_deref(),
            Some(p.key.as_slice()),
            "{}: key",
            p.kind
        );
        assert_eq!(letter.value, p.value, "{}: value bytes", p.kind);
        assert_eq!(letter.timestamp_ms, Some(START_MS), "{}: timestamp", p.kind);
        let redirected: i64 = letter
            .header("redirected_at")
            .and_then(|t| t.parse().ok())
            .expect("redirected_at is epoch millis");
        let now = chrono::Utc::now().timestamp_millis();
        assert!(
            redirected > now - 3_600_000 && redirected <= now,
            "{}: redirected_at {redirected} is recent",
            p.kind
        );
        assert_eq!(
            letter.header("redirected_by"),
            Some(job),
            "{}: names the job",
            p.kind
        );
        let correlation = format!("poison-{}-{}", ours_index(&ours, p), p.class);
        assert_eq!(
            letter.header("correlation_id"),
            Some(correlation.as_str()),
            "{}: correlation id propagated",
            p.kind
        );
    }
    assert_eq!(
        letters.len(),
        ours.len(),
        "{dlq} holds the poison records and nothing else"
    );
    letters
}

/// Position of `p` among the poison records of its topic (the `n` of its key and correlation id).
fn ours_index(ours: &[&Poison], p: &Poison) -> usize {
    ours.iter()
        .position(|o| o.partition == p.partition && o.offset == p.offset)
        .expect("listed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_once_with_their_class_and_valid_data_still_counts() {
    let setup = setup("dead-letters").await;
    let summary = run_job(&setup).await;
    let topics = &setup.topics;
    assert_eq!(
        summary.dead_letters,
        setup.poison.len() as u64,
        "{summary:?}"
    );
    assert!(summary.commits > 0);

    let classes: std::collections::BTreeSet<&str> = setup.poison.iter().map(|p| p.class).collect();
    assert!(
        classes.len() >= 6,
        "at least six kinds of poison: {classes:?}"
    );
    for topic in [&topics.events.clicks, &topics.events.impressions] {
        tokio::task::block_in_place(|| {
            check_dead_letters(&setup.poison, topic, &format!("{}-job", setup.prefix))
        });
    }

    // The valid data went through untouched: every output row equals the recomputation over the valid data.
    let actual = outputs_equal_the_recomputation(&setup);
    let daily_impressions: i64 = actual
        .iter()
        .filter(|(key, _)| key.contains("|daily|"))
        .map(|(_, row)| row.impressions)
        .sum();
    assert_eq!(daily_impressions, setup.valid_impressions);
    assert_eq!(summary.late, 0, "no valid event was past retention");
}

/// The per-class counts of the summary `dlq inspect` prints (lines after the `class  count` header).
fn summary_counts(stdout: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let mut in_summary = false;
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words == ["class", "count"] {
            in_summary = true;
            continue;
        }
        if in_summary {
            if let [class, count] = words.as_slice() {
                counts.insert(
                    (*class).to_owned(),
                    count.parse().expect("count is a number"),
                );
            }
        }
    }
    counts
}

fn success(args: &[&str]) -> String {
    let run = adstream(args);
    assert!(
        run.status.success(),
        "{args:?} failed:\n{}",
        run.stderr_text()
    );
    run.stdout_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_inspect_and_redrive_show_and_resend_the_jobs_dead_letters() {
    let setup = setup("dlq-cli").await;
    run_job(&setup).await;
    let clicks = setup.topics.events.clicks.clone();
    let impressions = setup.topics.events.impressions.clone();
    let dlq_clicks = format!("dlq.{clicks}");

    // inspect: the summary counts every class; blocks say where from and why.
    let stdout = tokio::task::block_in_place(|| success(&["dlq", "inspect", &clicks]));
    assert_eq!(
        summary_counts(&stdout),
        expected_classes(&setup.poison, &clicks),
        "summary of:\n{stdout}"
    );
    let blocks = stdout
        .lines()
        .filter(|l| l.starts_with(&format!("{dlq_clicks}  partition")))
        .count();
    assert_eq!(blocks, 10, "one block per dead letter:\n{stdout}");
    assert!(
        stdout.contains(&format!("source          {clicks}  partition")),
        "{stdout}"
    );
    assert!(
        stdout.contains("redirected at   20"),
        "RFC 3339 time:\n{stdout}"
    );
    assert!(
        stdout.contains("(none: tombstone)"),
        "the tombstone is shown:\n{stdout}"
    );

    // --limit shows fewer; the summary still counts all; the dlq.-name is accepted too.
    let limited =
        tokio::task::block_in_place(|| success(&["dlq", "inspect", &dlq_clicks, "--limit", "3"]));
    assert_eq!(
        limited
            .lines()
            .filter(|l| l.starts_with(&format!("{dlq_clicks}  partition")))
            .count(),
        3
    );
    assert!(limited.contains("10 dead letter(s), 3 shown"), "{limited}");

    // JSON lines with a class filter: every header, the exact value bytes.
    let run = tokio::task::block_in_place(|| {
        adstream(&[
            "dlq",
            "inspect",
            &impressions,
            "--format",
            "json",
            "--class",
            "invalid-value",
        ])
    });
    assert!(run.status.success(), "{}", run.stderr_text());
    let lines: Vec<serde_json::Value> = run
        .stdout_text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let invalid: Vec<&Poison> = setup
        .poison
        .iter()
        .filter(|p| p.topic == impressions && p.class == "invalid-value")
        .collect();
    assert_eq!(lines.len(), invalid.len(), "{}", run.stdout_text());
    for line in &lines {
        assert_eq!(line["class"], "invalid-value");
        assert_eq!(line["headers"]["dlq_error_class"], "invalid-value");
        assert_eq!(line["headers"]["source_topic"], impressions.as_str());
        let source_offset: i64 = line["headers"]["source_offset"]
            .as_str()
            .and_then(|o| o.parse().ok())
            .expect("source_offset");
        let poison = invalid
            .iter()
            .find(|p| p.offset == source_offset && i64::from(p.partition) == line["partition"])
            .expect("a dead letter of a poison record");
        let value = poison.value.as_deref().expect("has a value");
        assert_eq!(line["value_hex"], hex(value));
        assert_eq!(line["value_size"], value.len());
    }
    assert!(
        run.stderr_text().contains("invalid-value"),
        "summary on stderr"
    );

    // redrive refuses to run without a selection.
    let run = tokio::task::block_in_place(|| adstream(&["dlq", "redrive", &clicks]));
    assert!(!run.status.success());
    assert!(
        run.stderr_text().contains("nothing selected"),
        "{}",
        run.stderr_text()
    );

    // A dry run lists the selection and sends nothing.
    let before = tokio::task::block_in_place(|| read_all(&clicks)).len();
    let stdout = tokio::task::block_in_place(|| {
        success(&[
            "dlq",
            "redrive",
            &clicks,
            "--class",
            "invalid-value",
            "--dry-run",
        ])
    });
    let listed = stdout
        .lines()
        .filter(|l| l.contains(&format!("-> {clicks} partition")))
        .count();
    assert_eq!(listed, 2, "{stdout}");
    assert!(stdout.contains("nothing was sent"), "{stdout}");
    assert_eq!(
        tokio::task::block_in_place(|| read_all(&clicks)).len(),
        before,
        "a dry run sends nothing"
    );

    // Offsets that are not in the dead-letter topic are refused.
    let run = tokio::task::block_in_place(|| {
        adstream(&[
            "dlq",
            "redrive",
            &clicks,
            "--offsets",
            "0,99999",
            "--partition",
            "0",
        ])
    });
    assert!(!run.status.success());
    assert!(run.stderr_text().contains("99999"), "{}", run.stderr_text());

    // A real redrive of one class: the records reappear in the source topic as they were, marked.
    let letters = tokio::task::block_in_place(|| read_all(&dlq_clicks));
    let stdout = tokio::task::block_in_place(|| {
        success(&["dlq", "redrive", &clicks, "--class", "invalid-value"])
    });
    assert!(stdout.contains("re-sent 2 dead letter(s)"), "{stdout}");
    let after = tokio::task::block_in_place(|| read_all(&clicks));
    assert_eq!(after.len(), before + 2);
    let redriven: Vec<&Stored> = after
        .iter()
        .filter(|r| r.header("redriven_from").is_some())
        .collect();
    assert_eq!(redriven.len(), 2);
    for record in redriven {
        let from = record.header("redriven_from").expect("header");
        let letter = letters
            .iter()
            .find(|l| format!("{dlq_clicks}/{}/{}", l.partition, l.offset) == from)
            .unwrap_or_else(|| panic!("redriven_from {from} names a dead letter"));
        assert_eq!(letter.header("dlq_error_class"), Some("invalid-value"));
        let source_partition: i32 = letter
            .header("source_partition")
            .and_then(|p| p.parse().ok())
            .expect("source_partition");
        assert_eq!(record.partition, source_partition, "back to its partition");
        assert_eq!(record.key, letter.key);
        assert_eq!(record.value, letter.value);
        assert_eq!(record.timestamp_ms, letter.timestamp_ms);
        assert_eq!(
            record.header("correlation_id"),
            letter.header("correlation_id")
        );
        for (name, _) in &record.headers {
            assert!(
                !name.starts_with("dlq_")
                    && ![
                        "source_topic",
                        "source_partition",
                        "source_offset",
                        "redirected_at",
                        "redirected_by"
                    ]
                    .contains(&name.as_str()),
                "dead-letter header {name} copied"
            );
        }
    }

    // The same redrive again re-sends nothing: the ledger lists what the first one re-sent.
    let ledger = format!("redriven.{clicks}");
    let entries = tokio::task::block_in_place(|| read_all(&ledger));
    assert_eq!(entries.len(), 2, "one ledger entry per re-sent record");
    let stdout = tokio::task::block_in_place(|| {
        success(&["dlq", "redrive", &clicks, "--class", "invalid-value"])
    });
    assert!(
        stdout.contains("2 dead letter(s) were re-sent by an earlier redrive"),
        "{stdout}"
    );
    assert!(stdout.contains("nothing to redrive"), "{stdout}");
    let again = tokio::task::block_in_place(|| read_all(&clicks));
    assert_eq!(again.len(), before + 2, "each record re-sent once");
    // --all takes the other letters only.
    let stdout =
        tokio::task::block_in_place(|| success(&["dlq", "redrive", &clicks, "--all", "--dry-run"]));
    assert!(
        stdout.contains("2 dead letter(s) were re-sent by an earlier redrive"),
        "{stdout}"
    );

    // --offsets with --partition selects exactly that dead letter.
    let bad_magic = letters
        .iter()
        .find(|l| l.header("dlq_error_class") == Some("bad-magic-byte"))
        .expect("a bad-magic dead letter");
    let (partition, offset) = (
        bad_magic.partition.to_string(),
        bad_magic.offset.to_string(),
    );
    let stdout = tokio::task::block_in_place(|| {
        success(&[
            "dlq",
            "redrive",
            &dlq_clicks,
            "--offsets",
            &offset,
            "--partition",
            &partition,
            "--dry-run",
        ])
    });
    assert!(
        stdout.contains(&format!(
            "{dlq_clicks}/{partition}/{offset}  bad-magic-byte"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("would re-send 1 dead letter(s)"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_commands_name_missing_topics_and_say_when_a_dlq_is_empty() {
    let missing = unique("no-such-topic");
    let run = tokio::task::block_in_place(|| adstream(&["dlq", "inspect", &missing]));
    assert!(!run.status.success(), "a missing dead-letter topic fails");
    assert!(
        run.stderr_text().contains(&format!("dlq.{missing}")),
        "{}",
        run.stderr_text()
    );

    let source = unique("empty");
    let admin: AdminClient<DefaultClientContext> = kafka().create().expect("admin");
    for result in admin
        .create_topics(
            &[NewTopic::new(
                &format!("dlq.{source}"),
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic")
    {
        result.expect("topic created");
    }
    let dlq = format!("dlq.{source}");
    tokio::task::block_in_place(|| common::wait_for_topics(std::slice::from_ref(&dlq)));
    let stdout = tokio::task::block_in_place(|| success(&["dlq", "inspect", &source]));
    assert!(
        stdout.contains(&format!("dlq.{source} is empty")),
        "{stdout}"
    );
    let stdout = tokio::task::block_in_place(|| success(&["dlq", "redrive", &source, "--all"]));
    assert!(stdout.contains("nothing to redrive"), "{stdout}");

    // A dead letter whose source topic (the one its dead-letter topic's name implies; only the dlq. topic was
    // created) is gone: the dry run lists it, the real redrive fails naming the topic.
    let gone = source.clone();
    let producer: FutureProducer = kafka().create().expect("producer");
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "dlq_error_class",
            value: Some("invalid-value"),
        })
        .insert(Header {
            key: "source_topic",
            value: Some(gone.as_str()),
        })
        .insert(Header {
            key: "source_partition",
            value: Some("0"),
        });
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&dlq)
                .partition(0)
                .key(b"k".as_slice())
                .payload(b"v".as_slice())
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("delivered");
    let stdout =
        tokio::task::block_in_place(|| success(&["dlq", "redrive", &source, "--all", "--dry-run"]));
    assert!(
        stdout.contains(&format!("-> {gone} partition 0")),
        "{stdout}"
    );
    let run = tokio::task::block_in_place(|| adstream(&["dlq", "redrive", &source, "--all"]));
    assert!(!run.status.success(), "a missing source topic fails");
    assert!(
        run.stderr_text()
            .contains(&format!("source topic '{gone}' does not exist")),
        "{}",
        run.stderr_text()
    );
}

/// Headers with one header whose key is the raw bytes `key` (not necessarily UTF-8), which rdkafka's safe API
/// cannot write (it takes keys as `&str`), as a misbehaving producer in another language can.
fn headers_with_raw_key(key: &[u8], value: &[u8]) -> OwnedHeaders {
    let headers = OwnedHeaders::new();
    // SAFETY: `as_borrowed` hands out librdkafka's header list itself (rdkafka's `BorrowedHeaders` is a
    // zero-sized view of the native pointer, which is how rdkafka reads it too); librdkafka copies key and value.
    let code = unsafe {
        let list = headers.as_borrowed() as *const rdkafka::message::BorrowedHeaders
            as *mut rdkafka::bindings::rd_kafka_headers_t;
        rdkafka::bindings::rd_kafka_header_add(
            list,
            key.as_ptr().cast(),
            key.len() as isize,
            value.as_ptr().cast(),
            value.len() as isize,
        )
    };
    assert_eq!(
        code,
        rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
    );
    headers
}

/// One hostile record produced into the clicks topic, with the class it must be dead-lettered with.
struct Hostile {
    kind: &'static str,
    class: &'static str,
    partition: i32,
    offset: i64,
    value: Vec<u8>,
}

impl Stored {
    /// (`source_partition`, `source_offset`) of a dead letter.
    fn offset_in_source(&self) -> (i32, i64) {
        let number = |name: &str| self.header(name).and_then(|v| v.parse::<i64>().ok());
        (
            number("source_partition").unwrap_or(-1) as i32,
            number("source_offset").unwrap_or(-1),
        )
    }
}

/// Produces an attribution credit with NaN revenue (money that is not a number) into `credits`; returns its
/// (partition, offset).
async fn produce_nan_credit(registry_url: &str, credits: &str) -> (i32, i64) {
    use adstream_schemas::outputs::{AttributionCredit, AttributionModel};
    let registry = RegistryClient::new(registry_url).expect("registry client");
    let id = registry
        .register(&format!("{credits}-value"), AttributionCredit::SCHEMA)
        .await
        .expect("credit schema id");
    let credit = AttributionCredit {
        credit_id: "conv-nan|meta-cmp-0001|last_touch".into(),
        conversion_id: "conv-nan".into(),
        campaign_id: "meta-cmp-0001".into(),
        model: AttributionModel::LastTouch,
        conversions: 1.0,
        revenue_micros: f64::NAN,
        currency: "EUR".into(),
        conversion_time: START_MS,
    };
    let mut value = Vec::new();
    WireEncoder::new(AttributionCredit::SCHEMA, id)
        .expect("encoder")
        .encode(&credit, &mut value)
        .expect("encodes");
    let producer: FutureProducer = kafka().create().expect("producer");
    let delivery = producer
        .send(
            FutureRecord::<[u8], [u8]>::to(credits)
                .key(b"meta-cmp-0001".as_slice())
                .payload(value.as_slice())
                .timestamp(START_MS),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("credit delivered");
    (delivery.partition, delivery.offset)
}

/// (kind, class, key, value, timestamp, headers) of a hostile record to produce.
type HostilePlan<'a> = (
    &'static str,
    &'static str,
    Option<&'a [u8]>,
    Vec<u8>,
    i64,
    OwnedHeaders,
);

/// Records that are hostile by their envelope rather than their value (headers, key, timestamp, size).
async fn produce_hostile(registry_url: &str, clicks_topic: &str) -> Vec<Hostile> {
    let registry = RegistryClient::new(registry_url).expect("registry client");
    let click_id = registry
        .register(&format!("{clicks_topic}-value"), AdClick::SCHEMA)
        .await
        .expect("click schema id");
    let encoder = WireEncoder::new(AdClick::SCHEMA, click_id).expect("encoder");
    let mut valid = Vec::new();
    encoder
        .encode(&click(250_000, "USD"), &mut valid)
        .expect("encodes");
    let oversize = wire(click_id, &vec![0xff; 900_000]);
    let text = |key: &str, value: &str| {
        OwnedHeaders::new().insert(Header {
            key,
            value: Some(value),
        })
    };
    let plan: Vec<HostilePlan<'_>> = vec![
        (
            "header key not UTF-8",
            "bad-headers",
            Some(b"hostile-0"),
            valid.clone(),
            START_MS,
            headers_with_raw_key(b"\xff\xfe-key", b"1"),
        ),
        (
            "ce_type value not UTF-8",
            "bad-headers",
            Some(b"hostile-1"),
            valid.clone(),
            START_MS,
            headers_with_raw_key(b"ce_type", b"\xc3\x28"),
        ),
        (
            "no key",
            "missing-key",
            None,
            valid.clone(),
            START_MS,
            text("ce_id", "hostile-2"),
        ),
        (
            "timestamp in microseconds",
            "future-timestamp",
            Some(b"hostile-3"),
            valid.clone(),
            START_MS * 1000,
            text("ce_id", "hostile-3"),
        ),
        (
            "negative timestamp",
            "negative-timestamp",
            Some(b"hostile-4"),
            valid.clone(),
            -5_000,
            text("ce_id", "hostile-4"),
        ),
        (
            "900 kB value",
            "undecodable-avro",
            Some(b"hostile-5"),
            oversize,
            START_MS,
            text("ce_id", "hostile-5"),
        ),
    ];
    // A topic that takes any timestamp, as topics did by default before Kafka 4.0 (and do wherever
    // `message.timestamp.after.max.ms` was raised): the far-future record reaches the job.
    let admin: AdminClient<DefaultClientContext> = kafka().create().expect("admin");
    let any_time = AlterConfig::new(ResourceSpecifier::Topic(clicks_topic))
        .set("message.timestamp.after.max.ms", "9223372036854775807");
    for result in admin
        .alter_configs(&[any_time], &AdminOptions::new())
        .await
        .expect("alter configs")
    {
        result.expect("topic config altered");
    }
    let mut config = kafka();
    config.set("enable.idempotence", "true").set("acks", "all");
    let producer: FutureProducer = config.create().expect("producer");
    let mut produced = Vec::new();
    for (n, (kind, class, key, value, timestamp, headers)) in plan.into_iter().enumerate() {
        let record = || {
            let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(clicks_topic)
                .partition(n as i32 % PARTITIONS)
                .payload(value.as_slice())
                .timestamp(timestamp)
                .headers(headers.clone());
            match key {
                Some(key) => record.key(key),
                None => record,
            }
        };
        // The altered config reaches the partition leaders within moments.
        let mut attempts = 0;
        let delivery = loop {
            match producer.send(record(), Duration::from_secs(30)).await {
                Ok(delivery) => break delivery,
                Err((e, _)) if attempts < 20 && e.to_string().contains("InvalidTimestamp") => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err((e, _)) => panic!("{kind}: the broker refused the record: {e}"),
            }
        };
        produced.push(Hostile {
            kind,
            class,
            partition: delivery.partition,
            offset: delivery.offset,
            value,
        });
    }
    produced
}

// The poison-pill test of issue 18: seventeen kinds of bad records (the ten value-level kinds above on both event
// topics, six envelope-level kinds on the clicks topic, and a credit with NaN revenue) between valid records of a
// live job. On the code before
// the fix, the non-UTF-8 header key panicked the job, the far-future timestamp moved its partition's watermark, and
// the 900 kB record's dead letter was refused by the producer for its size, which stopped the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_of_seventeen_kinds_are_dead_lettered_and_never_stop_the_job() {
    let setup = setup("hostile").await;
    let clicks = setup.topics.events.clicks.clone();
    let hostile = produce_hostile(&setup.registry_url, &clicks).await;
    let nan_credit = produce_nan_credit(&setup.registry_url, &setup.topics.credits).await;
    let summary = run_job_against(&setup, &setup.registry_url, true).await;
    assert_eq!(
        summary.dead_letters,
        (setup.poison.len() + hostile.len() + 1) as u64,
        "{summary:?}"
    );
    let kinds: std::collections::BTreeSet<&str> = setup
        .poison
        .iter()
        .map(|p| p.kind)
        .chain(hostile.iter().map(|h| h.kind))
        .chain(["NaN revenue"])
        .collect();
    assert!(kinds.len() >= 17, "{kinds:?}");
    let credit_letters =
        tokio::task::block_in_place(|| read_all(&format!("dlq.{}", setup.topics.credits)));
    assert_eq!(credit_letters.len(), 1, "the NaN credit is dead-lettered");
    assert_eq!(credit_letters[0].offset_in_source(), nan_credit);
    assert_eq!(
        credit_letters[0].header("dlq_error_class"),
        Some("invalid-value")
    );

    let letters = tokio::task::block_in_place(|| read_all(&format!("dlq.{clicks}")));
    let poison_on_clicks = setup.poison.iter().filter(|p| p.topic == clicks).count();
    assert_eq!(letters.len(), poison_on_clicks + hostile.len());
    for h in &hostile {
        let found: Vec<&Stored> = letters
            .iter()
            .filter(|l| {
                l.header("source_partition") == Some(h.partition.to_string().as_str())
                    && l.header("source_offset") == Some(h.offset.to_string().as_str())
            })
            .collect();
        assert_eq!(found.len(), 1, "{} is dead-lettered once", h.kind);
        let letter = found[0];
        assert_eq!(
            letter.header("dlq_error_class"),
            Some(h.class),
            "{}: {:?}",
            h.kind,
            letter.header("dlq_error_message")
        );
        if h.value.len() > 512 * 1024 {
            use sha2::Digest;
            assert_eq!(letter.header("dlq_truncated"), Some("true"), "{}", h.kind);
            assert_eq!(
                letter.header("dlq_original_value_bytes"),
                Some(h.value.len().to_string().as_str())
            );
            assert_eq!(
                letter.header("dlq_original_value_sha256"),
                Some(hex(sha2::Sha256::digest(&h.value).as_slice()).as_str())
            );
            assert!(letter
                .value
                .as_ref()
                .is_some_and(|v| v.len() < h.value.len()));
        } else {
            assert_eq!(
                letter.value.as_deref(),
                Some(h.value.as_slice()),
                "{}",
                h.kind
            );
        }
    }
    tokio::task::block_in_place(|| {
        check_dead_letters(
            &setup.poison,
            &setup.topics.events.impressions,
            &format!("{}-job", setup.prefix),
        )
    });

    // Every valid record counted exactly once: the outputs equal the recomputation over the valid data, and the
    // far-future record made nothing late.
    outputs_equal_the_recomputation(&setup);
    assert_eq!(summary.late, 0, "no valid event was past retention");
}

/// A gateway in front of the registry: while `down` it answers schema lookups 503 with an HTML page (what a load
/// balancer says for a registry that is restarting); otherwise it forwards the connection. Counts its 503s.
async fn gateway(
    registry_url: &str,
    down: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    spared: Option<u32>,
) -> String {
    let spared = spared.map(|id| format!("GET /schemas/ids/{id} "));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = registry_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (down, refused, upstream, spared) = (
                down.clone(),
                refused.clone(),
                upstream.clone(),
                spared.clone(),
            );
            tokio::spawn(async move {
                let mut request = vec![0u8; 64 * 1024];
                let Ok(read) = client.read(&mut request).await else {
                    return;
                };
                request.truncate(read);
                // Down for schema lookups only: the job registers its output schemas at start-up, then meets the
                // outage when it first needs a writer schema, in the middle of processing.
                let is_spared = spared
                    .as_ref()
                    .is_some_and(|line| request.starts_with(line.as_bytes()));
                let lookup_while_down =
                    down.load(Ordering::SeqCst) && request.starts_with(b"GET /schemas/ids/");
                if lookup_while_down && is_spared {
                    // Answered on its own and closed, so the client's next lookup opens a new connection that
                    // meets the outage instead of riding this one.
                    let path = String::from_utf8_lossy(&request)
                        .split(' ')
                        .nth(1)
                        .unwrap_or("/")
                        .to_owned();
                    let Ok(answer) = reqwest::get(format!("http://{upstream}{path}")).await else {
                        return;
                    };
                    let status = answer.status().as_u16();
                    let body = answer.bytes().await.unwrap_or_default();
                    let head = format!(
                        "HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = client.write_all(head.as_bytes()).await;
                    let _ = client.write_all(&body).await;
                    return;
                }
                if lookup_while_down {
                    refused.fetch_add(1, Ordering::SeqCst);
                    let body = "<html><body>503 Service Unavailable</body></html>";
                    let answer = format!(
                        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = client.write_all(answer.as_bytes()).await;
                    return;
                }
                if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                    if server.write_all(&request).await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }
            });
        }
    });
    format!("http://{address}")
}

// Regression (issue 18, item 5): a registry behind a gateway answering 503 had the job dead-letter valid records as
// `unknown-schema-id` (and an unreachable registry stopped the job). Now the job commits what it has, pauses, and
// retries the record until the registry answers: nothing valid is dead-lettered, every valid record counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_while_processing_pauses_the_job_and_dead_letters_nothing_valid() {
    registry_outage("outage-streams", true).await;
}

// The same outage met while the campaigns table is restored: its rows used to be skipped silently (the job then ran
// without them and produced no campaign rows at all); now the restore waits for the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_while_restoring_a_table_waits_and_loses_no_row() {
    registry_outage("outage-tables", false).await;
}

/// Runs the job behind a [`gateway`] that is down for schema lookups until the job was refused three times;
/// with `spare_tables` the campaigns' schema is still served, so the outage hits the event records.
async fn registry_outage(name: &str, spare_tables: bool) {
    let setup = setup(name).await;
    let spared = if spare_tables {
        let registry = RegistryClient::new(&setup.registry_url).expect("registry client");
        let campaigns = registry
            .latest(&format!("{}-value", setup.topics.events.campaigns))
            .await
            .expect("registry answers")
            .expect("campaign schema registered");
        Some(campaigns.id)
    } else {
        None
    };
    let down = Arc::new(AtomicBool::new(true));
    let refused = Arc::new(AtomicU64::new(0));
    let url = gateway(&setup.registry_url, down.clone(), refused.clone(), spared).await;
    // Back up once the job has been refused three times (it retried), or after a minute whatever happened.
    let reopen = {
        let (down, refused) = (down.clone(), refused.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while refused.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            down.store(false, Ordering::SeqCst);
        })
    };
    let summary = run_job_against(&setup, &url, false).await;
    eprintln!(
        "DEBUG {summary:?} refused {}",
        refused.load(Ordering::SeqCst)
    );
    reopen.await.expect("reopened");
    assert!(
        refused.load(Ordering::SeqCst) >= 3,
        "the job asked the registry while it was down, and retried"
    );
    assert_eq!(
        summary.dead_letters,
        setup.poison.len() as u64,
        "only the poison records are dead letters: {summary:?}"
    );
    for topic in [
        &setup.topics.events.clicks,
        &setup.topics.events.impressions,
    ] {
        tokio::task::block_in_place(|| {
            check_dead_letters(&setup.poison, topic, &format!("{}-job", setup.prefix))
        });
    }
    outputs_equal_the_recomputation(&setup);
}
