//! Benchmark: the campaign-metrics job against the raw consume rate of its own input, the restore of its state, and
//! its end-to-end latency at a fixed offered rate.
//!
//! Run with the local broker up (`./dev/kafka up`):
//!
//! ```text
//! cargo bench --bench campaign_metrics                                   # 10,000,000 events
//! ADSTREAM_BENCH_EVENTS=1000000 cargo bench --bench campaign_metrics
//! ```
//!
//! Environment (all optional):
//! - `ADSTREAM_BENCH_EVENTS` (10,000,000) and `ADSTREAM_BENCH_SEED` (42): what the generator writes;
//! - `ADSTREAM_BENCH_LATENCY_RATE` (20,000 events/s), `ADSTREAM_BENCH_LATENCY_SECS` (20) and
//!   `ADSTREAM_BENCH_LATENCY_COMMIT_MS` (`100,1000`: one latency run per commit interval listed);
//! - `ADSTREAM_BOOTSTRAP_SERVERS` (127.0.0.1:9092); `RUST_LOG` (warn) for the runtime's own logs.
//!
//! In one run it:
//! 1. fills private input topics `bench-cm-s<seed>-n<events>.*` (4 partitions) with the generator's events and an
//!    in-process schema registry on `_schemas-bench-cm-s<seed>-n<events>`. Both are kept: a later run with the same
//!    seed and count reuses them when a marker topic written after a complete fill says how many impressions and
//!    clicks there are and the topics hold exactly that many (otherwise they are deleted and filled again);
//! 2. measures the baseline: a plain `BaseConsumer` reading every impression and click to the end, no decoding;
//!    Then SQL (`adstream_query` topic tables): a full-history aggregate over impressions and clicks (rows/s beside
//!    the raw rate, peak memory of the phase) and a one-day `_timestamp` range (records fetched of the total); and a
//!    backtest with the live configuration over the generator's whole period, 7 days (`adstream_backtest`: seconds
//!    per million events to read the history and to replay it through the four operators, peak memory).
//!    `ADSTREAM_BENCH_QUERY_ONLY=1` stops there;
//! 3. runs the job under exactly-once, then at-least-once (fresh application id each, so each starts from the
//!    beginning), with `exit_at_end_of_input`, the default 1 s commit interval and the test's lateness (10 min grace,
//!    3 days retention), and times it from `runtime::run` to its return (start-up and the final commit included) and,
//!    separately, from the moment the job reports ready (assigned and restored) to its return;
//!    Then the Kafka Streams peer (`benches/kstreams`, built with Maven from Maven Central; skipped with
//!    `ADSTREAM_BENCH_KSTREAMS=0` or without `java`/`mvn`): the same windowed shape in Kafka Streams 4.1,
//!    exactly_once_v2, one stream thread, over the same topics, timed start to stop (JVM CPU, every thread);
//! 4. measures restore of the exactly-once run's `windows` changelog: a raw read of the changelog (baseline), the
//!    same read applied to a fresh `KeyedStore` through `ChangelogStore::restore`, `ChangelogStore::restore` alone
//!    (the same records from memory; its per-core column is left empty: too short for 10 ms CPU ticks), and a
//!    restart of the job with the same application id over its fully committed input, timed from `runtime::run`
//!    until the job reports ready (start-up, group join, restore of both stores, table bootstrap; the job is then
//!    shut down);
//!    Then restore at scale (`ADSTREAM_BENCH_RESTORE_KEYS`, 1,000,000): the `windows` changelog of a fresh
//!    application id filled with that many distinct keys, read raw with the runtime's reader settings (baseline),
//!    then the job started under that id until ready: keys/s of its restore by its own clock, beside the raw read.
//!    `ADSTREAM_BENCH_RESTORE_ONLY=1` runs only this after the fill;
//! 5. measures end-to-end latency: a live producer writes impressions (and one click in 30) for 24 campaigns with
//!    event time = wall clock at send, at a fixed rate, into fresh topics, while the job runs exactly-once, once per
//!    commit interval listed; a `read_committed` consumer on the hourly output matches rows to sends (see
//!    [`latency`] for why the matching is exact) and prints percentiles, and says so when the job fell behind.
//!
//! "per core" is records per CPU-second of this whole process (user + system time of every thread, from
//! `/proc/self/stat`): the job's own threads and librdkafka's. The broker's CPU is not included. Not a test: nothing
//! is asserted.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adstream_kafka::read::{self, ReadError, ReadOptions};
use adstream_processors::attribution::models::RuleSettings;
use adstream_processors::attribution::operator::{AttributionConfig, AttributionJob};
use adstream_processors::attribution::repartition::{RepartitionConfig, TouchRepartition};
use adstream_processors::campaign_metrics::operator::WindowRow;
use adstream_processors::campaign_metrics::window_codec::CompactWindowRows;
use adstream_processors::campaign_metrics::{CampaignMetricsConfig, CampaignMetricsJob, EmitMode};
use adstream_processors::fatigue::detector::FatigueConfig;
use adstream_processors::fatigue::operator::{CreativeFatigueConfig, CreativeFatigueJob};
use adstream_processors::runtime::{
    self, ChangelogStore, DeliveryGuarantee, KeyedStore, Operator, RunSummary, RuntimeConfig,
    ValueCodec, CHECKPOINT_KEY,
};
use adstream_processors::window::Lateness;
use adstream_producers::builders::{ClickBuilder, ImpressionBuilder, Serving};
use adstream_producers::generator::{Generator, GeneratorConfig};
use adstream_producers::pipeline::{produce_generated, RunOptions};
use adstream_producers::producer::{EventProducer, EventTopics, ProducerSettings};
use adstream_schemas::events::Platform;
use adstream_schemas::outputs::{CampaignMetrics, CAMPAIGN_METRICS_AVSC};
use anyhow::{anyhow, bail, Context as _, Result};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::Schema;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// A topic to create: name, partitions, configs.
type TopicSpec = (String, i32, Vec<(&'static str, &'static str)>);
const PARTITIONS: i32 = 4;
const HOUR_MS: i64 = 3_600_000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------------------------
// CPU time of this process.

/// Clock ticks per second of `/proc/self/stat` (`getconf CLK_TCK`; 100 on every common Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU seconds of every thread of this process so far.
fn cpu_seconds(ticks: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = fields
        .get(11)
        .and_then(|f| f.parse().ok())
        .unwrap_or(f64::NAN);
    let stime: f64 = fields
        .get(12)
        .and_then(|f| f.parse().ok())
        .unwrap_or(f64::NAN);
    (utime + stime) / ticks
}

/// Wall and CPU time of one measured section.
#[derive(Clone, Copy)]
struct Meter {
    ticks: f64,
    wall: Instant,
    cpu: f64,
}

#[derive(Clone, Copy, Debug)]
struct Measured {
    wall_s: f64,
    cpu_s: f64,
}

impl Meter {
    fn start(ticks: f64) -> Meter {
        Meter {
            ticks,
            wall: Instant::now(),
            cpu: cpu_seconds(ticks),
        }
    }
    fn stop(&self) -> Measured {
        Measured {
            wall_s: self.wall.elapsed().as_secs_f64(),
            cpu_s: cpu_seconds(self.ticks) - self.cpu,
        }
    }
}

impl Measured {
    fn rate(&self, records: u64) -> f64 {
        records as f64 / self.wall_s.max(1e-9)
    }
    fn per_core(&self, records: u64) -> f64 {
        records as f64 / self.cpu_s.max(1e-9)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Kafka helpers.

struct Kafka {
    config: ClientConfig,
    admin: AdminClient<DefaultClientContext>,
    /// Topics and consumer groups this run created for itself, deleted at the end whether the run succeeds or not.
    scratch: Mutex<(Vec<String>, Vec<String>)>,
}

impl Kafka {
    /// Deletes `topics` and `groups` at the end of the run.
    fn scratch(
        &self,
        topics: impl IntoIterator<Item = String>,
        groups: impl IntoIterator<Item = String>,
    ) {
        if let Ok(mut scratch) = self.scratch.lock() {
            scratch.0.extend(topics);
            scratch.1.extend(groups);
        }
    }

    /// Deletes what [`Kafka::scratch`] collected.
    async fn clean_up(&self) -> Result<()> {
        let (topics, groups) = self
            .scratch
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .map_err(|_| anyhow!("scratch list poisoned"))?;
        let names: Vec<&str> = groups.iter().map(String::as_str).collect();
        if !names.is_empty() {
            let _ = self.admin.delete_groups(&names, &AdminOptions::new()).await;
        }
        self.delete(&topics).await
    }

    fn consumer(&self, group: &str) -> Result<BaseConsumer> {
        let mut config = self.config.clone();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest");
        config.create().context("consumer")
    }

    /// Partition count of every existing topic whose name is in `names`.
    fn existing(&self, names: &[&str]) -> Result<HashMap<String, usize>> {
        let metadata = self
            .admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .context("cannot reach Kafka")?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && names.contains(&t.name()))
            .map(|t| (t.name().to_owned(), t.partitions().len()))
            .collect())
    }

    /// Records in `topics` (high minus low watermark over every partition).
    fn record_count(&self, topics: &[&str]) -> Result<u64> {
        let consumer = self.consumer("bench-cm-watermarks")?;
        let mut total = 0u64;
        for topic in topics {
            for partition in 0..PARTITIONS {
                let (low, high) = read::watermarks::<_, Infallible>(
                    &consumer,
                    topic,
                    partition,
                    Duration::from_secs(10),
                )?;
                total += u64::try_from(high - low).unwrap_or(0);
            }
        }
        Ok(total)
    }

    /// Creates `topics` (name, partitions, configs); existing ones are an error.
    async fn create(&self, topics: &[TopicSpec]) -> Result<()> {
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(name, partitions, configs)| {
                configs.iter().fold(
                    // -1: the broker's `default.replication.factor` (KIP-464), as on any cluster the bench runs against.
                    NewTopic::new(name, *partitions, TopicReplication::Fixed(-1)),
                    |t, (k, v)| t.set(k, v),
                )
            })
            .collect();
        for result in self.admin.create_topics(&new, &AdminOptions::new()).await? {
            if let Err((topic, code)) = result {
                bail!("cannot create {topic}: {code}");
            }
        }
        // The runtime checks its topics in metadata at start: wait until the broker lists them.
        let names: Vec<&str> = topics.iter().map(|(n, _, _)| n.as_str()).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.existing(&names)?.len() < names.len() {
            if Instant::now() > deadline {
                bail!("topics {names:?} not in metadata 30 s after creation");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Deletes whichever of `topics` exist and waits until the broker no longer lists them.
    async fn delete(&self, topics: &[String]) -> Result<()> {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let present: Vec<&str> = {
            let existing = self.existing(&names)?;
            names
                .iter()
                .copied()
                .filter(|n| existing.contains_key(*n))
                .collect()
        };
        if present.is_empty() {
            return Ok(());
        }
        let _ = self
            .admin
            .delete_topics(&present, &AdminOptions::new())
            .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.existing(&present)?.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("topics {present:?} still exist 60 s after deletion")
    }
}

/// Reads `topics` (all partitions, from the beginning, `read_committed`) until `expected` records were read, handing
/// each to `apply`. Returns the number read.
fn read_all(
    consumer: &BaseConsumer,
    topics: &[&str],
    expected: u64,
    mut apply: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> Result<()>,
) -> Result<u64> {
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        for partition in 0..PARTITIONS {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let mut count = 0u64;
    let mut last_progress = Instant::now();
    while count < expected {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => {
                apply(&message)?;
                count += 1;
                last_progress = Instant::now();
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {
                if last_progress.elapsed() > Duration::from_secs(30) {
                    bail!("{topics:?}: read {count} of {expected} records, then nothing for 30 s");
                }
            }
            Some(Err(e)) => bail!("{topics:?}: {e}"),
        }
    }
    Ok(count)
}

/// Reads `topics` to their end as it stands now (all partitions, `read_committed`), handing each record to `apply`.
/// Ends on the end-of-partition events, so it also works for transactional topics (whose offsets include markers).
fn read_to_end(
    consumer: &BaseConsumer,
    topic: &str,
    apply: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> Result<()>,
) -> Result<u64> {
    let options = ReadOptions {
        poll_interval: Duration::from_millis(500),
        ..ReadOptions::default()
    };
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    read::read_to_end(consumer, topic, &partitions, &options, apply).map_err(|e| match e {
        ReadError::Record(error) => error,
        other => anyhow::Error::new(other),
    })
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Input topics.

struct Inputs {
    prefix: String,
    topics: EventTopics,
    /// Impressions + clicks in the topics.
    events: u64,
}

fn event_topics(prefix: &str) -> EventTopics {
    EventTopics {
        impressions: format!("{prefix}.impressions"),
        clicks: format!("{prefix}.clicks"),
        conversions: format!("{prefix}.conversions"),
        campaigns: format!("{prefix}.campaigns"),
        creatives: format!("{prefix}.creatives"),
    }
}

fn event_topic_specs(topics: &EventTopics) -> Vec<TopicSpec> {
    let plain = vec![("retention.ms", "-1")];
    let compact = vec![("cleanup.policy", "compact")];
    vec![
        (topics.impressions.clone(), PARTITIONS, plain.clone()),
        (topics.clicks.clone(), PARTITIONS, plain.clone()),
        (topics.conversions.clone(), PARTITIONS, plain),
        (topics.campaigns.clone(), PARTITIONS, compact.clone()),
        (topics.creatives.clone(), PARTITIONS, compact),
    ]
}

/// The impressions + clicks count that the marker topic says a complete fill wrote, if any.
fn read_marker(kafka: &Kafka, marker: &str) -> Result<Option<u64>> {
    let consumer = kafka.consumer("bench-cm-marker")?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(marker, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                last = m
                    .payload()
                    .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                    .and_then(|v| v.get("impressions_clicks").and_then(|n| n.as_u64()));
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(last),
            Some(Err(e)) => bail!("{marker}: {e}"),
            None => {}
        }
    }
    Ok(last)
}

async fn prepare_inputs(
    kafka: &Kafka,
    registry_url: &str,
    seed: u64,
    events: u64,
) -> Result<Inputs> {
    let prefix = format!("bench-cm-s{seed}-n{events}");
    let topics = event_topics(&prefix);
    let marker = format!("{prefix}.filled");
    let mut all: Vec<String> = event_topic_specs(&topics)
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    all.push(marker.clone());
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    let existing = kafka.existing(&names)?;
    if existing.len() == all.len() {
        let have = kafka.record_count(&[&topics.impressions, &topics.clicks])?;
        let want = tokio::task::block_in_place(|| read_marker(kafka, &marker))?;
        if want == Some(have) && have > 0 {
            println!(
                "fill: reusing {prefix}.* ({have} impressions + clicks, written by an earlier run)"
            );
            return Ok(Inputs {
                prefix,
                topics,
                events: have,
            });
        }
        println!(
            "fill: {prefix}.* holds {have} impressions + clicks, the marker says {want:?}: filling again"
        );
    }
    kafka.delete(&all).await?;
    let mut specs = event_topic_specs(&topics);
    specs.push((marker.clone(), 1, vec![("cleanup.policy", "compact")]));
    kafka.create(&specs).await?;

    let producer = EventProducer::connect(&ProducerSettings {
        kafka: kafka.config.clone(),
        registry: registry_url.into(),
        topics: topics.clone(),
        source: "/adstream/bench".into(),
        connect_timeout: Duration::from_secs(10),
    })
    .await?;
    let mut generator = Generator::new(GeneratorConfig {
        seed,
        events,
        ..GeneratorConfig::default()
    });
    println!("fill: writing {events} generator events (seed {seed}) into {prefix}.*");
    let options = RunOptions {
        rate: None,
        progress_every: Duration::from_secs(5),
        flush_timeout: Duration::from_secs(300),
    };
    let done = tokio::task::block_in_place(|| {
        produce_generated(&producer, &mut generator, &options, |p| {
            println!(
                "fill: {:>10} sent ({:>5.1}%), {:>10} acknowledged, {:>8.0} records/s",
                p.sent,
                100.0 * p.sent as f64 / events.max(1) as f64,
                p.delivered,
                p.rate()
            );
        })
    })?;
    let counts = generator.counts().clone();
    let impressions_clicks = counts.impressions + counts.clicks;
    println!(
        "fill: done, {} records in {:.1} s ({:.0}/s): {} impressions, {} clicks, {} conversions, {} campaigns, {} creatives",
        done.sent,
        done.elapsed.as_secs_f64(),
        done.rate(),
        counts.impressions,
        counts.clicks,
        counts.conversions,
        counts.campaigns,
        counts.creatives
    );
    let have = kafka.record_count(&[&topics.impressions, &topics.clicks])?;
    if have != impressions_clicks {
        bail!("{prefix}: {have} impressions + clicks in the topics, the generator wrote {impressions_clicks}");
    }
    // The marker says the fill completed; a later run reuses the topics only if it is there and matches.
    let marker_producer: BaseProducer = kafka.config.create()?;
    let value = serde_json::json!({
        "impressions_clicks": impressions_clicks,
        "impressions": counts.impressions,
        "clicks": counts.clicks,
        "conversions": counts.conversions,
        "seed": seed,
        "events": events,
    })
    .to_string();
    marker_producer
        .send(BaseRecord::to(&marker).key("fill").payload(&value))
        .map_err(|(e, _)| anyhow!("marker: {e}"))?;
    marker_producer.flush(Duration::from_secs(30))?;
    Ok(Inputs {
        prefix,
        topics,
        events: impressions_clicks,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// 3. The job.

struct JobRun {
    summary: RunSummary,
    /// From `runtime::run` to its return.
    measured: Measured,
    /// From `runtime::run` until the job reported ready (assigned, restored); the rest is processing.
    ready: Option<Measured>,
    /// CPU seconds of the job's own thread (the poll loop: decoding, operator, commits), librdkafka's excluded.
    job_thread_cpu_s: f64,
}

impl JobRun {
    /// Wall and CPU time from ready to the return: processing, end detection and the final commit.
    fn after_ready(&self) -> Option<Measured> {
        self.ready.map(|r| Measured {
            wall_s: self.measured.wall_s - r.wall_s,
            cpu_s: self.measured.cpu_s - r.cpu_s,
        })
    }
}

/// The job over `inputs`, writing to `<outputs>.hourly`, `.daily` and `.alerts`.
fn job_config(inputs: &EventTopics, outputs: &str) -> Result<CampaignMetricsJob> {
    CampaignMetricsJob::new(CampaignMetricsConfig {
        impressions: inputs.impressions.clone(),
        clicks: inputs.clicks.clone(),
        campaigns: inputs.campaigns.clone(),
        hourly: format!("{outputs}.hourly"),
        daily: format!("{outputs}.daily"),
        alerts: format!("{outputs}.alerts"),
        credits: None,
        attribution_model: adstream_schemas::outputs::AttributionModel::LastTouch,
        lateness: Lateness::new(Duration::from_secs(600), Duration::from_secs(3 * 86_400))
            .map_err(|e| anyhow!("lateness: {e}"))?,
        emit: EmitMode::Updating,
        pacing_check_ms: 15 * 60_000,
        alert_rules: Default::default(),
    })
    .map_err(|e| anyhow!("job: {e}"))
}

/// Creates the output topics of a job run under application id `app`, `<app>.hourly`, `.daily` (compacted) and
/// `.alerts`, and lists them, its changelogs and its group for deletion at the end of the bench.
async fn create_outputs(kafka: &Kafka, app: &str) -> Result<()> {
    let compact = vec![("cleanup.policy", "compact")];
    let specs = vec![
        (format!("{app}.hourly"), PARTITIONS, compact.clone()),
        (format!("{app}.daily"), PARTITIONS, compact),
        (format!("{app}.alerts"), PARTITIONS, vec![]),
    ];
    let changelogs = ["windows", "campaigns", "event_ids", "timers"]
        .iter()
        .map(|store| format!("{app}-{store}-changelog"));
    kafka.scratch(
        specs.iter().map(|(n, _, _)| n.clone()).chain(changelogs),
        [app.to_owned(), format!("{app}-restore")],
    );
    kafka.create(&specs).await
}

/// User + system CPU seconds of the calling thread so far (`/proc/thread-self/stat`, same fields as
/// [`cpu_seconds`]).
fn thread_cpu_seconds(ticks: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return f64::NAN;
    };
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (field(11) + field(12)) / ticks
}

/// Lists the dead-letter and late topics the runtime creates for the job's inputs for deletion at the end.
fn scratch_redirects(kafka: &Kafka, inputs: &EventTopics) {
    let topics = [&inputs.impressions, &inputs.clicks, &inputs.campaigns]
        .into_iter()
        .flat_map(|t| [format!("dlq.{t}"), format!("late.{t}")]);
    kafka.scratch(topics, []);
}

/// Runs the job to the end of its input, printing committed progress every 5 s.
fn run_to_end(
    kafka: &Kafka,
    config: RuntimeConfig,
    job: Box<dyn Operator>,
    label: &str,
    progress_topics: &[&str],
    ticks: f64,
) -> Result<JobRun> {
    let handle = tokio::runtime::Handle::current();
    let shutdown = Arc::new(AtomicBool::new(false));
    let stop = shutdown.clone();
    let group = config.application_id.clone();
    let metrics = config.metrics.clone();
    let mut ready = None;
    let meter = Meter::start(ticks);
    let worker = std::thread::spawn(move || {
        let before = thread_cpu_seconds(ticks);
        let result = runtime::run(config, job, stop, handle);
        (result, thread_cpu_seconds(ticks) - before)
    });
    // Progress: the group's committed offsets, as a separate client that never joins the group sees them.
    let progress = {
        let mut config = kafka.config.clone();
        config
            .set("group.id", &group)
            .set("enable.auto.commit", "false");
        config.create::<BaseConsumer>().ok()
    };
    let mut partitions = TopicPartitionList::new();
    for topic in progress_topics {
        for partition in 0..PARTITIONS {
            partitions.add_partition(topic, partition);
        }
    }
    let mut last_report = Instant::now();
    while !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
        if ready.is_none() && metrics.is_ready() {
            let at = meter.stop();
            println!(
                "{label}: ready (assigned, restored) after {:.2} s",
                at.wall_s
            );
            ready = Some(at);
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let so_far = meter.stop();
            let committed = progress.as_ref().and_then(|c| {
                c.committed_offsets(partitions.clone(), Duration::from_secs(2))
                    .ok()
                    .map(|list| {
                        list.elements()
                            .iter()
                            .map(|e| match e.offset() {
                                Offset::Offset(o) => o.max(0) as u64,
                                _ => 0,
                            })
                            .sum::<u64>()
                    })
            });
            match committed {
                Some(c) => println!(
                    "{label}: {:>6.1} s, {c:>10} input records committed ({:.0}/s), {:.1} CPU-s",
                    so_far.wall_s,
                    so_far.rate(c),
                    so_far.cpu_s
                ),
                None => println!(
                    "{label}: {:>6.1} s, {:.1} CPU-s",
                    so_far.wall_s, so_far.cpu_s
                ),
            }
        }
    }
    let (result, job_thread_cpu_s) = worker
        .join()
        .map_err(|_| anyhow!("{label}: job thread panicked"))?;
    let measured = meter.stop();
    let summary = result.with_context(|| format!("{label}: job failed"))?;
    Ok(JobRun {
        summary,
        measured,
        ready,
        job_thread_cpu_s,
    })
}

/// Starts the job and stops it once it reports ready (partitions assigned, stores restored, tables read), or when
/// it stops by itself. The measured time is from `runtime::run` to ready: start-up, group join and restore.
fn restart_until_ready(
    config: RuntimeConfig,
    job: CampaignMetricsJob,
    ticks: f64,
) -> Result<JobRun> {
    let handle = tokio::runtime::Handle::current();
    let shutdown = Arc::new(AtomicBool::new(false));
    let stop = shutdown.clone();
    let metrics = config.metrics.clone();
    let meter = Meter::start(ticks);
    let worker = std::thread::spawn(move || {
        let before = thread_cpu_seconds(ticks);
        let result = runtime::run(config, Box::new(job), stop, handle);
        (result, thread_cpu_seconds(ticks) - before)
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while !worker.is_finished() && !metrics.is_ready() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let measured = meter.stop();
    let ready = metrics.is_ready();
    shutdown.store(true, Ordering::Relaxed);
    let (result, job_thread_cpu_s) = worker
        .join()
        .map_err(|_| anyhow!("restart: job thread panicked"))?;
    let summary = result.context("restart: job failed")?;
    if !ready {
        bail!("restart: the job was not ready within 120 s");
    }
    Ok(JobRun {
        summary,
        measured,
        ready: Some(measured),
        job_thread_cpu_s,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// 4b. Restore at scale.

/// What [`restore_at_scale`] measured.
struct ScaleRestore {
    /// Distinct keys written to the changelog.
    keys: u64,
    /// Bytes of their values.
    bytes: usize,
    /// The baseline: a read of the changelog to its end with the runtime's reader settings, nothing applied.
    raw: Measured,
    /// The job from `runtime::run` until ready: its summary has the records restored and the restore's seconds.
    restart: JobRun,
}

/// Restore of a changelog of `keys` keys, as the runtime does it: fills the `windows` changelog of a fresh
/// application id with `keys` final hourly rows (distinct keys, 5,000 campaigns, the job's compact encoding, spread
/// over the partitions, no transaction), reads it once to its end with the runtime's reader settings (the
/// baseline), then starts the job under that application id over the bench's inputs and stops it once ready (group
/// join; restore of its four changelogs, three of them empty, and of the campaigns table).
async fn restore_at_scale(
    kafka: &Kafka,
    registry_url: &str,
    inputs: &Inputs,
    keys: u64,
    ticks: f64,
) -> Result<ScaleRestore> {
    let app = format!(
        "{}-restore{keys}-{}-{}",
        inputs.prefix,
        std::process::id(),
        chrono::Utc::now().timestamp()
    );
    create_outputs(kafka, &app).await?;
    let changelog =
        RuntimeConfig::new(&app, kafka.config.clone(), registry_url).changelog_topic("windows");
    kafka
        .create(&[(
            changelog.clone(),
            PARTITIONS,
            vec![("cleanup.policy", "compact")],
        )])
        .await?;
    tokio::task::block_in_place(|| -> Result<ScaleRestore> {
        let started = Instant::now();
        let bytes = fill_windows_changelog(kafka, &changelog, keys)?;
        println!(
            "restore at scale: wrote {keys} rows ({:.1} MB of values) to {changelog} in {:.1} s",
            bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        let consumer: BaseConsumer =
            read::reader_config(&kafka.config, &format!("{app}-bench-raw"), true).create()?;
        let meter = Meter::start(ticks);
        let read = read_to_end(&consumer, &changelog, |_| Ok(()))?;
        let raw = meter.stop();
        drop(consumer);
        if read != keys {
            bail!("restore at scale: read {read} records of the {keys} written");
        }
        let mut config = RuntimeConfig::new(&app, kafka.config.clone(), registry_url);
        config.exit_at_end_of_input = true;
        let job = job_config(&inputs.topics, &app)?;
        let restart = restart_until_ready(config, job, ticks)?;
        Ok(ScaleRestore {
            keys,
            bytes,
            raw,
            restart,
        })
    })
}

/// Prints [`restore_at_scale`]'s rates: the raw read, the job's restore (from its summary) and its start to ready.
fn print_scale_restore(scale: &ScaleRestore) {
    let summary = &scale.restart.summary;
    let raw_rate = scale.raw.rate(scale.keys);
    let restore_rate = summary.restored as f64 / summary.restore_seconds.max(1e-9);
    println!();
    println!(
        "restore at scale: a windows changelog of {} keys ({:.1} MB of values)",
        scale.keys,
        scale.bytes as f64 / 1e6
    );
    println!(
        "{:<66} {:>12} {:>12} {:>8}",
        "path", "records/s", "per core", "vs raw"
    );
    println!(
        "{:<66} {:>12.0} {:>12.0} {:>7.2}x",
        "baseline: read of the changelog to its end (runtime's reader)",
        raw_rate,
        scale.raw.per_core(scale.keys),
        1.0
    );
    println!(
        "{:<66} {:>12.0} {:>12} {:>7.2}x",
        "the job's restore (4 changelogs + campaigns table, its own clock)",
        restore_rate,
        "-",
        restore_rate / raw_rate.max(1e-9)
    );
    println!(
        "restore at scale: {} keys/s; {} records restored in {:.2} s; the job was ready {:.2} s after its start \
         ({:.1} CPU-s of the process)",
        (scale.keys as f64 / summary.restore_seconds.max(1e-9)).round(),
        summary.restored,
        summary.restore_seconds,
        scale.restart.measured.wall_s,
        scale.restart.measured.cpu_s
    );
}

/// Writes `keys` window rows with distinct keys to `topic`; returns the bytes of their values.
fn fill_windows_changelog(kafka: &Kafka, topic: &str, keys: u64) -> Result<usize> {
    const CAMPAIGNS: u64 = 5_000;
    // 2026-12-01T00:00:00Z: the hours follow one another from there.
    const FIRST_HOUR_MS: i64 = 1_764_547_200_000;
    let producer: BaseProducer = kafka
        .config
        .clone()
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut key = String::new();
    let mut value = Vec::new();
    let mut bytes = 0usize;
    for n in 0..keys {
        let campaign = format!("bench-restore-{:04}", n % CAMPAIGNS);
        let start_ms = FIRST_HOUR_MS + (n / CAMPAIGNS) as i64 * 3_600_000;
        let row = WindowRow {
            campaign_id: campaign,
            daily: false,
            start_ms,
            end_ms: start_ms + 3_600_000,
            time_zone: "America/New_York".into(),
            platform: Platform::Meta,
            account_id: "act-1001".into(),
            currency: "USD".into(),
            impressions: 1_000 + n % 997,
            clicks: 10 + n % 89,
            spend_micros: 2_500_000 + (n % 10_007) as i64,
            conversions: 0.0,
            revenue_micros: 0.0,
            is_final: true,
            corrections: 0,
            revision: 3,
            correlation_id: format!("imp-{n:012}"),
        };
        key.clear();
        adstream_schemas::outputs::write_metrics_key(
            &row.campaign_id,
            adstream_schemas::outputs::Granularity::Hourly,
            row.start_ms,
            &mut key,
        );
        value.clear();
        CompactWindowRows::encode(&row, &mut value);
        bytes += value.len();
        let partition = (n % PARTITIONS as u64) as i32;
        loop {
            match producer.send(
                BaseRecord::to(topic)
                    .partition(partition)
                    .key(key.as_bytes())
                    .payload(&value),
            ) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => bail!("restore at scale: cannot send: {e}"),
            }
        }
        if n % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .context("restore at scale: flush")?;
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------------------------
// 5. Latency.

/// End-to-end latency: from the moment an input record is handed to the producer to the moment a `read_committed`
/// consumer of the hourly output first receives a row whose counts include it.
///
/// Why the matching is exact: every input record of one campaign goes to one partition (keyed by campaign id), one
/// producer thread sends them in order and the idempotent producer keeps that order in the partition; the job reads
/// each topic-partition in order and counts each impression (click) once in the row of its (campaign, UTC hour) —
/// UTC because the latency topics hold no campaign records, so the job knows no time zones. So the row of
/// (campaign, hour) with `impressions = k` includes exactly the first k impressions sent for that campaign and hour
/// (likewise clicks, counted separately because impressions and clicks are different topics whose relative order
/// the job does not see). The consumer keeps, per (campaign, hour, kind), the send instants of records not yet
/// matched and pops them as the counts grow. Under exactly-once a row is visible to `read_committed` only after the
/// transaction that wrote it committed, so this is latency to a committed result. Both instants come from the same
/// monotonic clock in this process. Records of the warm-up (one per campaign, sent before the job is known to run)
/// are matched but not measured.
mod latency {
    use super::*;

    #[derive(Default)]
    struct Pending {
        sent: VecDeque<(Instant, bool)>,
        matched: u64,
    }

    #[derive(Default)]
    pub struct Tracker {
        keys: HashMap<(String, i64, bool), Pending>,
        pub sent: u64,
        pub matched: u64,
        pub latencies_ms: Vec<f64>,
        /// Rows whose counts exceed what was sent for their key (would mean the matching is wrong).
        pub overcounted: u64,
    }

    impl Tracker {
        pub fn sent(&mut self, campaign: &str, hour: i64, click: bool, measured: bool) {
            self.keys
                .entry((campaign.to_owned(), hour, click))
                .or_default()
                .sent
                .push_back((Instant::now(), measured));
            self.sent += 1;
        }

        pub fn row(&mut self, row: &CampaignMetrics, now: Instant) {
            for (click, count) in [(false, row.impressions), (true, row.clicks)] {
                let count = u64::try_from(count).unwrap_or(0);
                let Some(pending) =
                    self.keys
                        .get_mut(&(row.campaign_id.clone(), row.window_start, click))
                else {
                    if count > 0 {
                        self.overcounted += 1;
                    }
                    continue;
                };
                while pending.matched < count {
                    let Some((sent, measured)) = pending.sent.pop_front() else {
                        self.overcounted += 1;
                        break;
                    };
                    pending.matched += 1;
                    self.matched += 1;
                    if measured {
                        self.latencies_ms
                            .push(now.duration_since(sent).as_secs_f64() * 1000.0);
                    }
                }
            }
        }
    }

    pub struct Report {
        pub offered: f64,
        pub achieved: f64,
        pub seconds: f64,
        pub commit_ms: u64,
        pub sent: u64,
        pub unmatched: u64,
        pub overcounted: u64,
        pub latencies_ms: Vec<f64>,
        pub cores: f64,
        pub summary: RunSummary,
    }

    fn percentile(sorted: &[f64], p: f64) -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    impl Report {
        pub fn print(&mut self) {
            self.latencies_ms.sort_by(f64::total_cmp);
            let l = &self.latencies_ms;
            println!(
                "e2e latency, send -> first committed hourly row that counts the record (exactly-once, {} ms commit \
                 interval, producer linger.ms {}):",
                self.commit_ms,
                adstream_producers::producer::PRODUCER_DEFAULTS
                    .iter()
                    .find(|(k, _)| *k == "linger.ms")
                    .map_or("?", |(_, v)| *v)
            );
            println!(
                "  offered {:.0} events/s for {:.1} s, achieved {:.0}/s; {} sent, {} measured, {} unmatched, {} \
                 over-counted; this process used {:.2} cores",
                self.offered,
                self.seconds,
                self.achieved,
                self.sent,
                l.len(),
                self.unmatched,
                self.overcounted,
                self.cores
            );
            if self.unmatched > 0 {
                println!(
                    "  THE JOB FELL BEHIND: {} of {} records were in no committed row 60 s after the producer \
                     stopped; the percentiles cover only the records that were, so they understate the latency",
                    self.unmatched,
                    self.sent + 24
                );
            }
            println!(
                "  p50 {:.1} ms   p90 {:.1} ms   p99 {:.1} ms   p99.9 {:.1} ms   max {:.1} ms   (job: {} records, {} \
                 commits, {} aborts)",
                percentile(l, 50.0),
                percentile(l, 90.0),
                percentile(l, 99.0),
                percentile(l, 99.9),
                l.last().copied().unwrap_or(f64::NAN),
                self.summary.records,
                self.summary.commits,
                self.summary.aborts
            );
        }
    }

    /// Reads the hourly output (`read_committed`) and feeds every row to the tracker until `stop`.
    fn observe(
        consumer: BaseConsumer,
        topic: String,
        tracker: Arc<Mutex<Tracker>>,
        stop: Arc<AtomicBool>,
    ) -> Result<()> {
        let schema = Schema::parse_str(CAMPAIGN_METRICS_AVSC)?;
        let reader = GenericDatumReader::builder(&schema).build()?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        while !stop.load(Ordering::Relaxed) {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    let now = Instant::now();
                    let Some((_, mut datum)) = m
                        .payload()
                        .and_then(|p| adstream_schemas::wire::split(p).ok())
                    else {
                        continue;
                    };
                    let value = reader.read_value(&mut datum)?;
                    let row: CampaignMetrics = apache_avro::from_value(&value)?;
                    tracker
                        .lock()
                        .map_err(|_| anyhow!("tracker poisoned"))?
                        .row(&row, now);
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => bail!("{topic}: {e}"),
            }
        }
        Ok(())
    }

    pub async fn run(
        kafka: &Kafka,
        registry_url: &str,
        prefix: &str,
        commit_ms: u64,
        ticks: f64,
    ) -> Result<Report> {
        let rate: f64 = env_or("ADSTREAM_BENCH_LATENCY_RATE", 20_000.0);
        let seconds: f64 = env_or("ADSTREAM_BENCH_LATENCY_SECS", 20.0);
        let run = format!(
            "{prefix}-lat{commit_ms}-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp()
        );
        let topics = event_topics(&run);
        let app = format!("{run}-job");
        let hourly = format!("{app}.hourly");
        let specs = event_topic_specs(&topics);
        kafka.scratch(
            specs.iter().map(|(n, _, _)| n.clone()),
            [format!("{run}-observer")],
        );
        scratch_redirects(kafka, &topics);
        kafka.create(&specs).await?;
        create_outputs(kafka, &app).await?;
        let producer = EventProducer::connect(&ProducerSettings {
            kafka: kafka.config.clone(),
            registry: registry_url.into(),
            topics: topics.clone(),
            source: "/adstream/bench-latency".into(),
            connect_timeout: Duration::from_secs(10),
        })
        .await?;

        let mut config = RuntimeConfig::new(&app, kafka.config.clone(), registry_url);
        config.commit_interval = Duration::from_millis(commit_ms);
        let job = job_config(&topics, &app)?;
        let shutdown = Arc::new(AtomicBool::new(false));
        let stop_job = shutdown.clone();
        let handle = tokio::runtime::Handle::current();
        let worker =
            std::thread::spawn(move || runtime::run(config, Box::new(job), stop_job, handle));

        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let stop_observer = Arc::new(AtomicBool::new(false));
        let observer = {
            let mut config = kafka.config.clone();
            config
                .set("group.id", format!("{run}-observer"))
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed")
                .set("fetch.wait.max.ms", "10");
            let consumer: BaseConsumer = config.create()?;
            let (tracker, stop, topic) = (tracker.clone(), stop_observer.clone(), hourly.clone());
            std::thread::spawn(move || observe(consumer, topic, tracker, stop))
        };

        let result = tokio::task::block_in_place(|| -> Result<(f64, f64, u64)> {
            let encoders = producer.schemas.encoders()?;
            let mut buffer = Vec::with_capacity(512);
            let campaigns: Vec<(Serving, String)> = (0..24)
                .map(|i| {
                    let platform = Platform::ALL[i % Platform::ALL.len()];
                    let campaign_id = format!("lat-{}-cmp-{i:02}", platform.slug());
                    (
                        Serving {
                            platform,
                            account_id: format!("lat-acct-{}", i % 4),
                            campaign_id: campaign_id.clone(),
                            ad_group_id: format!("lat-ag-{i:02}"),
                            creative_id: format!("lat-cr-{i:02}"),
                        },
                        campaign_id,
                    )
                })
                .collect();
            let mut send = |n: u64, measured: bool| -> Result<()> {
                let (serving, campaign_id) = &campaigns[(n % 24) as usize];
                let id = format!("{run}-{n}");
                let now_ms = chrono::Utc::now().timestamp_millis();
                let hour = now_ms - now_ms.rem_euclid(HOUR_MS);
                let click = n % 30 == 29;
                let lock = || tracker.lock().map_err(|_| anyhow!("tracker poisoned"));
                if click {
                    let event = ClickBuilder::new(&id, now_ms, serving.clone())
                        .cost(250_000, "USD")
                        .build()?;
                    lock()?.sent(campaign_id, hour, true, measured);
                    producer.send(&encoders.clicks, &event, &id, &mut buffer)?;
                } else {
                    let event = ImpressionBuilder::new(&id, now_ms, serving.clone())
                        .cost(2_000, "USD")
                        .build()?;
                    lock()?.sent(campaign_id, hour, false, measured);
                    producer.send(&encoders.impressions, &event, &id, &mut buffer)?;
                }
                Ok(())
            };
            let matched = || tracker.lock().map(|t| t.matched).unwrap_or(0);

            // Warm-up: one impression per campaign, until the job has assigned, restored and committed them.
            for n in 0..24 {
                send(n, false)?;
            }
            producer.flush(Duration::from_secs(30))?;
            let deadline = Instant::now() + Duration::from_secs(120);
            while matched() < 24 {
                if worker.is_finished() || Instant::now() > deadline {
                    bail!("latency: the job did not emit the warm-up rows within 120 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }

            // Measured phase: a fixed offered rate, paced every millisecond.
            let meter = Meter::start(ticks);
            let started = Instant::now();
            let mut n = 0u64;
            while started.elapsed().as_secs_f64() < seconds {
                let due = (started.elapsed().as_secs_f64() * rate) as u64;
                while n < due {
                    send(24 + n, true)?;
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let produce_s = started.elapsed().as_secs_f64();
            producer.flush(Duration::from_secs(60))?;
            let total = 24 + n;
            let deadline = Instant::now() + Duration::from_secs(60);
            while matched() < total && Instant::now() < deadline && !worker.is_finished() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let measured = meter.stop();
            Ok((n as f64 / produce_s, measured.cpu_s / measured.wall_s, n))
        });
        stop_observer.store(true, Ordering::Relaxed);
        shutdown.store(true, Ordering::Relaxed);
        let observed = observer.join().map_err(|_| anyhow!("observer panicked"))?;
        let summary = worker
            .join()
            .map_err(|_| anyhow!("latency job panicked"))?
            .context("latency job failed")?;
        let (achieved, cores, sent) = result?;
        observed?;
        let tracker = std::mem::take(&mut *tracker.lock().map_err(|_| anyhow!("poisoned"))?);
        Ok(Report {
            offered: rate,
            achieved,
            seconds,
            commit_ms,
            sent,
            unmatched: tracker.sent - tracker.matched,
            overcounted: tracker.overcounted,
            latencies_ms: tracker.latencies_ms,
            cores,
            summary,
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // rdkafka's default client context logs every end-of-partition event of a consumer with
                // enable.partition.eof (the runtime's included) as an ERROR "Global error: PartitionEOF".
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rdkafka::client=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let events: u64 = env_or("ADSTREAM_BENCH_EVENTS", 10_000_000);
    let seed: u64 = env_or("ADSTREAM_BENCH_SEED", 42);
    let bootstrap =
        std::env::var("ADSTREAM_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &bootstrap);
    let kafka = Kafka {
        admin: config.create()?,
        config,
        scratch: Mutex::new((Vec::new(), Vec::new())),
    };
    let result = bench(&kafka, events, seed, &bootstrap).await;
    // Keep the inputs, the marker and the registry topic for the next run; drop what the runs created.
    let cleaned = kafka.clean_up().await;
    result.and(cleaned)
}

async fn bench(kafka: &Kafka, events: u64, seed: u64, bootstrap: &str) -> Result<()> {
    let ticks = clock_ticks();
    let bench_started = Instant::now();
    println!(
        "adstream campaign-metrics benchmark: {events} events (seed {seed}), broker {bootstrap}, {PARTITIONS} partitions, \
         {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // The registry keeps its state on a topic named like the inputs, so ids in reused records stay valid.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let registry_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(adstream_registry::serve(
        listener,
        adstream_registry::RegistryConfig {
            kafka: kafka.config.clone(),
            topic: format!("_schemas-bench-cm-s{seed}-n{events}"),
            kafka_timeout: Duration::from_secs(10),
        },
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let mut up = false;
    // Up to 60 s: after a broker restart the registry waits for its topic's coordinator to load.
    for _ in 0..1200 {
        if http
            .get(&registry_url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !up {
        bail!("registry on {registry_url} did not come up within 60 s");
    }

    // 1. Inputs.
    let started = Instant::now();
    let inputs = prepare_inputs(kafka, &registry_url, seed, events).await?;
    let input_topics = [
        inputs.topics.impressions.as_str(),
        inputs.topics.clicks.as_str(),
    ];
    println!("fill: ready after {:.1} s", started.elapsed().as_secs_f64());
    let scale_keys: u64 = env_or("ADSTREAM_BENCH_RESTORE_KEYS", 1_000_000);
    if std::env::var("ADSTREAM_BENCH_RESTORE_ONLY").is_ok() {
        let scale = restore_at_scale(kafka, &registry_url, &inputs, scale_keys, ticks).await?;
        print_scale_restore(&scale);
        return Ok(());
    }

    // 2. Baseline: raw consume of impressions + clicks.
    let (raw, raw_records) = tokio::task::block_in_place(|| -> Result<(Measured, u64)> {
        let consumer = kafka.consumer(&format!("bench-cm-raw-{}", std::process::id()))?;
        let meter = Meter::start(ticks);
        let mut bytes = 0usize;
        let records = read_all(&consumer, &input_topics, inputs.events, |m| {
            bytes += m.payload_len() + m.key().map_or(0, <[u8]>::len);
            Ok(())
        })?;
        let measured = meter.stop();
        println!(
            "raw consume: {records} records, {:.1} MB, {:.1} s, {:.1} CPU-s",
            bytes as f64 / 1e6,
            measured.wall_s,
            measured.cpu_s
        );
        Ok((measured, records))
    })?;

    // 2b. SQL over the same topics (the query crate's topic tables), against the raw rate just measured.
    let raw_per_s = raw_records as f64 / raw.wall_s.max(1e-9);
    tokio::task::block_in_place(|| sql_scan(kafka, &registry_url, &inputs, raw_per_s, ticks))?;
    tokio::task::block_in_place(|| backtest(kafka, &registry_url, &inputs, raw_per_s, ticks))?;
    if std::env::var("ADSTREAM_BENCH_QUERY_ONLY").is_ok() {
        return Ok(());
    }

    // 3. The job, exactly-once then at-least-once, each from the beginning.
    let run = format!(
        "{}-{}-{}",
        inputs.prefix,
        std::process::id(),
        chrono::Utc::now().timestamp()
    );
    scratch_redirects(kafka, &inputs.topics);
    let mut runs: Vec<(DeliveryGuarantee, String, JobRun)> = Vec::new();
    for (guarantee, tag) in [
        (DeliveryGuarantee::ExactlyOnce, "eos"),
        (DeliveryGuarantee::AtLeastOnce, "alos"),
    ] {
        let app = format!("{run}-{tag}");
        create_outputs(kafka, &app).await?;
        let mut config = RuntimeConfig::new(&app, kafka.config.clone(), &registry_url);
        config.guarantee = guarantee;
        config.exit_at_end_of_input = true;
        let job = job_config(&inputs.topics, &app)?;
        println!("{tag}: running the job ({guarantee:?}, application id {app})");
        let done = tokio::task::block_in_place(|| {
            run_to_end(kafka, config, Box::new(job), tag, &input_topics, ticks)
        })?;
        let s = &done.summary;
        println!(
            "{tag}: {} records in {:.1} s, {:.1} CPU-s; {} commits, {} aborts, {} dead letters, {} late, {} restored",
            s.records, done.measured.wall_s, done.measured.cpu_s, s.commits, s.aborts, s.dead_letters, s.late, s.restored
        );
        // The job thread's busy share while the backlog lasts: below 1 it waits on its input (or on commits).
        println!(
            "{tag}: job thread busy {:.2} of a core ({:.1} CPU-s of the job thread over {:.1} s, start to stop)",
            done.job_thread_cpu_s / done.measured.wall_s,
            done.job_thread_cpu_s,
            done.measured.wall_s
        );
        runs.push((guarantee, app, done));
    }

    // 3b. The Kafka Streams peer over the same topics.
    let peer = tokio::task::block_in_place(|| kafka_streams_peer(kafka, &inputs, &run))?;

    // 4. Restore of the exactly-once run's windows changelog.
    let eos_app = runs[0].1.clone();
    let changelog = RuntimeConfig::new(&eos_app, kafka.config.clone(), &registry_url)
        .changelog_topic("windows");
    let (changelog_raw, changelog_records, restore, apply, keys) =
        tokio::task::block_in_place(|| -> Result<(Measured, u64, Measured, Measured, usize)> {
            let consumer = kafka.consumer(&format!("{eos_app}-bench-raw"))?;
            let meter = Meter::start(ticks);
            let mut bytes = 0usize;
            let raw_count = read_to_end(&consumer, &changelog, |m| {
                bytes += m.payload_len();
                Ok(())
            })?;
            let raw = meter.stop();
            drop(consumer);
            let consumer = kafka.consumer(&format!("{eos_app}-bench-restore"))?;
            let mut store: KeyedStore<String, WindowRow, CompactWindowRows> =
                KeyedStore::new("windows");
            let meter = Meter::start(ticks);
            // Each commit also writes a checkpoint record per task into the changelog; the runtime's restore
            // reads it for the commit number and skips it, as here.
            let applied = read_to_end(&consumer, &changelog, |m| {
                if m.key() == Some(CHECKPOINT_KEY) {
                    return Ok(());
                }
                store
                    .restore(m.partition(), m.key().unwrap_or_default(), m.payload())
                    .map_err(anyhow::Error::from)
            })?;
            let restore = meter.stop();
            if applied != raw_count {
                println!("restore: note: read {applied} records, the raw read saw {raw_count}");
            }
            // The store's share alone: the same records from memory into another fresh store.
            let consumer = kafka.consumer(&format!("{eos_app}-bench-copy"))?;
            let mut records: Vec<(i32, Vec<u8>, Option<Vec<u8>>)> = Vec::new();
            read_to_end(&consumer, &changelog, |m| {
                if m.key() == Some(CHECKPOINT_KEY) {
                    return Ok(());
                }
                records.push((
                    m.partition(),
                    m.key().unwrap_or_default().to_vec(),
                    m.payload().map(<[u8]>::to_vec),
                ));
                Ok(())
            })?;
            let mut fresh: KeyedStore<String, WindowRow, CompactWindowRows> =
                KeyedStore::new("windows");
            let meter = Meter::start(ticks);
            let started = Instant::now();
            for (partition, key, value) in &records {
                fresh.restore(*partition, key, value.as_deref())?;
            }
            let mut apply = meter.stop();
            // /proc/self/stat counts CPU in 10 ms ticks: too coarse for a short loop on one thread.
            apply.cpu_s = started.elapsed().as_secs_f64();
            println!(
                "restore: {changelog} holds {raw_count} records ({:.1} MB) -> {} keys",
                bytes as f64 / 1e6,
                store.len()
            );
            Ok((raw, raw_count, restore, apply, store.len()))
        })?;
    // The same, as the runtime does it: restart the job with the same application id over its committed input and
    // time it until it is ready (assigned, both stores restored, table read).
    let restart = {
        let mut config = RuntimeConfig::new(&eos_app, kafka.config.clone(), &registry_url);
        config.exit_at_end_of_input = true;
        let job = job_config(&inputs.topics, &eos_app)?;
        tokio::task::block_in_place(|| restart_until_ready(config, job, ticks))?
    };

    let scale = restore_at_scale(kafka, &registry_url, &inputs, scale_keys, ticks).await?;

    // 5. End-to-end latency, at each commit interval asked for.
    let intervals =
        std::env::var("ADSTREAM_BENCH_LATENCY_COMMIT_MS").unwrap_or_else(|_| "100,1000".into());
    let mut latencies = Vec::new();
    for commit_ms in intervals
        .split(',')
        .filter_map(|v| v.trim().parse::<u64>().ok())
    {
        println!("latency: {commit_ms} ms commit interval");
        latencies.push(latency::run(kafka, &registry_url, &inputs.prefix, commit_ms, ticks).await?);
    }

    // 6. The attribution job (both stages) and the creative-fatigue job, exactly-once, from the beginning.
    let other_jobs = other_jobs(kafka, &registry_url, &inputs, &run, ticks).await?;

    // The table.
    let raw_rate = raw.rate(raw_records);
    let changelog_rate = changelog_raw.rate(changelog_records);
    println!();
    println!(
        "{:<66} {:>12} {:>12} {:>8}",
        "path", "records/s", "per core", "vs raw"
    );
    println!(
        "{:<66} {:>12.0} {:>12.0} {:>7.2}x",
        "baseline: raw consume impressions+clicks (BaseConsumer, no decoding)",
        raw_rate,
        raw.per_core(raw_records),
        1.0
    );
    for (guarantee, _, done) in &runs {
        let name = match guarantee {
            DeliveryGuarantee::ExactlyOnce => "campaign-metrics exactly-once",
            DeliveryGuarantee::AtLeastOnce => "campaign-metrics at-least-once",
        };
        let records = done.summary.records;
        let rate = done.measured.rate(records);
        println!(
            "{:<66} {:>12.0} {:>12.0} {:>7.2}x",
            format!("{name}, start to stop (1 s commits)"),
            rate,
            done.measured.per_core(records),
            rate / raw_rate
        );
        if let Some(after) = done.after_ready() {
            let rate = after.rate(records);
            println!(
                "{:<66} {:>12.0} {:>12.0} {:>7.2}x",
                format!("{name}, ready to stop (processing only)"),
                rate,
                after.per_core(records),
                rate / raw_rate
            );
        }
    }
    if let Some(peer) = &peer {
        let rate = peer.rate(inputs.events);
        println!(
            "{:<66} {:>12.0} {:>12.0} {:>7.2}x",
            "Kafka Streams 4.1 peer, exactly_once_v2, 1 thread, start to stop",
            rate,
            peer.per_core(inputs.events),
            rate / raw_rate
        );
    }
    for (name, records, measured) in &other_jobs.rows {
        let rate = measured.rate(*records);
        println!(
            "{:<66} {:>12.0} {:>12.0} {:>7.2}x",
            name,
            rate,
            measured.per_core(*records),
            rate / raw_rate
        );
    }
    println!(
        "{:<66} {:>12.0} {:>12.0} {:>7.2}x",
        "baseline: raw consume of the EOS run's windows changelog",
        changelog_rate,
        changelog_raw.per_core(changelog_records),
        1.0
    );
    let restore_rate = restore.rate(changelog_records);
    println!(
        "{:<66} {:>12.0} {:>12.0} {:>7.2}x",
        "restore windows changelog into KeyedStore (ChangelogStore::restore)",
        restore_rate,
        restore.per_core(changelog_records),
        restore_rate / changelog_rate
    );
    let apply_rate = apply.rate(changelog_records);
    println!(
        "{:<66} {:>12.0} {:>12} {:>8}",
        "  of which ChangelogStore::restore alone (records from memory)", apply_rate, "-", "-"
    );
    let restarted = restart.summary.restored;
    let restart_rate = restart.measured.rate(restarted);
    println!(
        "{:<66} {:>12.0} {:>12.0} {:>7.2}x",
        "restart EOS job, same app id: start -> ready (join + restore)",
        restart_rate,
        restart.measured.per_core(restarted),
        restart_rate / changelog_rate
    );
    println!();
    println!(
        "input: {} impressions+clicks; changelog: {changelog_records} records -> {keys} keys, restored in {:.3} s = \
         {:.0} keys/s (apply alone {:.3} s); restart: {restarted} records restored (2 changelogs + campaigns table), ready after {:.2} s",
        inputs.events,
        restore.wall_s,
        keys as f64 / restore.wall_s.max(1e-9),
        apply.wall_s,
        restart.measured.wall_s
    );
    for (guarantee, _, done) in &runs {
        println!(
            "{guarantee:?}: {} records in {:.1} s wall (ready after {:.2} s), {:.1} CPU-s ({:.2} cores), {} commits",
            done.summary.records,
            done.measured.wall_s,
            done.ready.map_or(f64::NAN, |r| r.wall_s),
            done.measured.cpu_s,
            done.measured.cpu_s / done.measured.wall_s.max(1e-9),
            done.summary.commits
        );
    }
    if let (Some(peer), Some((_, _, eos))) = (&peer, runs.first()) {
        let records = eos.summary.records;
        println!(
            "campaign-metrics exactly-once against the Kafka Streams peer: {:.2}x its wall-clock rate, {:.2}x its \
             records per CPU-second ({:.1} s / {:.1} CPU-s against {:.1} s / {:.1} CPU-s)",
            eos.measured.rate(records) / peer.rate(inputs.events).max(1e-9),
            eos.measured.per_core(records) / peer.per_core(inputs.events).max(1e-9),
            eos.measured.wall_s,
            eos.measured.cpu_s,
            peer.wall_s,
            peer.cpu_s
        );
    }
    for line in &other_jobs.notes {
        println!("{line}");
    }
    print_scale_restore(&scale);
    for latency in &mut latencies {
        latency.print();
    }
    println!(
        "total bench time {:.1} s",
        bench_started.elapsed().as_secs_f64()
    );

    Ok(())
}

/// Runs the Kafka Streams peer (`benches/kstreams`: the job's windowed shape in Kafka Streams 4.1, exactly_once_v2,
/// one stream thread) over the bench's impressions and clicks until it has processed and committed all of them, and
/// returns its wall and CPU seconds (the whole JVM, start-up included). Maven builds it from Maven Central on first
/// use. None when `ADSTREAM_BENCH_KSTREAMS=0`, or when `java` or `mvn` is missing (said on stdout).
fn kafka_streams_peer(kafka: &Kafka, inputs: &Inputs, run: &str) -> Result<Option<Measured>> {
    if std::env::var("ADSTREAM_BENCH_KSTREAMS").as_deref() == Ok("0") {
        return Ok(None);
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = root.join("benches/kstreams");
    let build = std::process::Command::new("mvn")
        .args(["-B", "-q", "-Dstyle.color=never", "-f"])
        .arg(project.join("pom.xml"))
        .args([
            "clean",
            "package",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
        ])
        .output();
    let build = match build {
        Ok(output) => output,
        Err(e) => {
            println!("kstreams: skipped, mvn cannot run: {e}");
            return Ok(None);
        }
    };
    if !build.status.success() {
        bail!(
            "kstreams: Maven could not build {}:\n{}{}",
            project.display(),
            String::from_utf8_lossy(&build.stdout),
            String::from_utf8_lossy(&build.stderr)
        );
    }
    let target = project.join("target");
    let classpath = format!(
        "{}:{}/*",
        target.join("classes").display(),
        target.join("dependency").display()
    );
    let app = format!("{run}-kstreams");
    let bootstrap = kafka
        .config
        .get("bootstrap.servers")
        .ok_or_else(|| anyhow!("kstreams: no bootstrap.servers"))?
        .to_owned();
    println!(
        "kstreams: running the Kafka Streams peer over {} records (application id {app})",
        inputs.events
    );
    let output = std::process::Command::new("java")
        .args(["-cp", &classpath, "io.adstream.bench.CampaignWindows"])
        .arg(&bootstrap)
        .args([
            &inputs.topics.impressions,
            &inputs.topics.clicks,
            &app,
            &app,
        ])
        .arg(root.join("schemas/ad_impression.avsc"))
        .arg(root.join("schemas/ad_click.avsc"))
        .arg(inputs.events.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("kstreams: java cannot run")?;
    // Its outputs, changelogs and group go when the bench ends, like the adstream runs'.
    let metadata = kafka
        .consumer(&format!("{app}-metadata"))?
        .fetch_metadata(None, Duration::from_secs(10))?;
    kafka.scratch(
        metadata
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|name| name.starts_with(&app)),
        [app.clone()],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("kstreams: the peer failed ({}):\n{stdout}", output.status);
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow!("kstreams: no result line in:\n{stdout}"))?;
    let result: serde_json::Value = serde_json::from_str(line)?;
    let seconds = |name: &str| {
        result[name]
            .as_f64()
            .ok_or_else(|| anyhow!("kstreams: no {name} in {line}"))
    };
    let measured = Measured {
        wall_s: seconds("wall_s")?,
        cpu_s: seconds("cpu_s")?,
    };
    println!(
        "kstreams: {} records in {:.1} s, {:.1} CPU-s ({:.2} cores)",
        inputs.events,
        measured.wall_s,
        measured.cpu_s,
        measured.cpu_s / measured.wall_s.max(1e-9)
    );
    Ok(Some(measured))
}

/// Rows (name, input records, time) and notes of the attribution and creative-fatigue runs.
struct OtherJobs {
    rows: Vec<(String, u64, Measured)>,
    notes: Vec<String>,
}

/// The latest value per key of a changelog: (keys, bytes of their values).
fn changelog_state(kafka: &Kafka, changelog: &str, group: &str) -> Result<(usize, usize)> {
    let consumer = kafka.consumer(group)?;
    let mut latest: HashMap<(i32, Vec<u8>), usize> = HashMap::new();
    read_to_end(&consumer, changelog, |m| {
        if m.key() == Some(CHECKPOINT_KEY) {
            return Ok(());
        }
        let key = (m.partition(), m.key().unwrap_or_default().to_vec());
        match m.payload() {
            Some(value) => latest.insert(key, value.len()),
            None => latest.remove(&key),
        };
        Ok(())
    })?;
    Ok((latest.len(), latest.values().sum()))
}

/// Peak resident memory of this process since [`reset_peak_memory`] (`VmHWM`), in bytes.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak resident memory to the current one (Linux `clear_refs` 5), so a phase's peak is its own.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A full-history aggregate over impressions and clicks with `adstream_query`'s topic tables (read_committed,
/// Avro decoded to Arrow), then a one-day time range to show what offsets for times save; prints rows/s beside the
/// raw consume rate of the same topics and the phase's peak memory.
fn sql_scan(
    kafka: &Kafka,
    registry_url: &str,
    inputs: &Inputs,
    raw_per_s: f64,
    ticks: f64,
) -> Result<()> {
    use adstream_query::source::KafkaSource;
    use adstream_query::table::{TableMode, TopicTable};
    let source = Arc::new(KafkaSource::new(kafka.config.clone(), registry_url)?);
    let ctx = datafusion::prelude::SessionContext::new();
    for (name, topic) in [
        ("impressions", &inputs.topics.impressions),
        ("clicks", &inputs.topics.clicks),
    ] {
        let table = TopicTable::from_registry(source.clone(), topic, TableMode::History)?;
        ctx.register_table(name, Arc::new(table))?;
    }
    let handle = tokio::runtime::Handle::current();
    let query = |sql: &str| -> Result<(Vec<datafusion::arrow::array::RecordBatch>, Measured, u64)> {
        let before = source.progress().snapshot().0;
        let meter = Meter::start(ticks);
        let batches = handle.block_on(async { ctx.sql(sql).await?.collect().await })?;
        let measured = meter.stop();
        Ok((batches, measured, source.progress().snapshot().0 - before))
    };
    reset_peak_memory();
    let base = peak_memory().unwrap_or(0);
    let (batches, measured, fetched) = query(
        "SELECT campaign_id, count(*) AS events, sum(cost_micros) AS spend FROM \
         (SELECT campaign_id, cost_micros FROM impressions UNION ALL SELECT campaign_id, cost_micros FROM clicks) \
         GROUP BY campaign_id",
    )?;
    let peak = peak_memory().unwrap_or(0);
    let groups: usize = batches.iter().map(|b| b.num_rows()).sum();
    let rate = fetched as f64 / measured.wall_s.max(1e-9);
    println!(
        "sql full-history aggregate: {fetched} events -> {groups} campaigns in {:.1} s, {:.1} CPU-s: {:.0} rows/s \
         ({:.0} rows/CPU-s), {:.2}x the raw consume rate ({:.0} records/s); peak memory {:.0} MB (+{:.0} MB over \
         the process before the query)",
        measured.wall_s,
        measured.cpu_s,
        rate,
        fetched as f64 / measured.cpu_s.max(1e-9),
        rate / raw_per_s.max(1e-9),
        raw_per_s,
        peak as f64 / 1e6,
        peak.saturating_sub(base) as f64 / 1e6
    );
    // The generator's second day: offsets for times read that day plus the allowed lateness (one day).
    let day = 86_400_000_i64;
    let start = GeneratorConfig::default().start_ms + day;
    let (batches, measured, fetched) = query(&format!(
        "SELECT count(*) FROM impressions WHERE _timestamp >= to_timestamp_millis({start}) \
         AND _timestamp < to_timestamp_millis({})",
        start + day
    ))?;
    let rows = batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0);
    println!(
        "sql one-day range: {rows} impressions counted, {fetched} records fetched of {} ({:.1} %), {:.1} s",
        inputs.events,
        100.0 * fetched as f64 / inputs.events.max(1) as f64,
        measured.wall_s
    );
    Ok(())
}

/// A backtest with the live configuration over the generator's whole period (7 days): reading the history, then
/// replaying it through the four operators; prints seconds per million impressions and clicks beside the raw
/// consume rate, and the peak memory of the process (the events are streamed, not held).
fn backtest(
    kafka: &Kafka,
    registry_url: &str,
    inputs: &Inputs,
    raw_per_s: f64,
    ticks: f64,
) -> Result<()> {
    use adstream_backtest::{run_strategy, Dataflow, History, Period, Strategy};
    use adstream_processors::jobs::JobRegistry;
    use adstream_query::source::KafkaSource;
    let source = Arc::new(KafkaSource::new(kafka.config.clone(), registry_url)?);
    // The jobs as the project's topology places them, over the bench's input topics; the outputs stay in memory.
    let t = &inputs.topics;
    let topic = |name: &str, key: &str, record: &str| {
        format!("  - {{ name: {name}, key: {key}, value_schema: io.adstream.{record} }}\n")
    };
    let topology = format!(
        "defaults: {{ partitions: {PARTITIONS}, replication_factor: 1 }}\ntopics:\n{}{}{}{}{}{}{}{}{}{}\
         processors:\n\
         \x20 - {{ name: bench-backtest-metrics, job: campaign-metrics, key: campaign_id, inputs: [{i}, {c}, {k}, \
         bench-backtest.credits], outputs: [bench-backtest.hourly, bench-backtest.daily, bench-backtest.alerts] }}\n\
         \x20 - {{ name: bench-backtest-fatigue, job: creative-fatigue, key: campaign_id, inputs: [{i}, {c}], \
         outputs: [bench-backtest.fatigue] }}\n\
         \x20 - {{ name: bench-backtest-attribution, job: attribution, key: user_id, repartition: [{i}, {c}], \
         inputs: [{v}], outputs: [bench-backtest.attributed, bench-backtest.credits] }}\n",
        topic(&t.impressions, "campaign_id", "ads.AdImpression"),
        topic(&t.clicks, "campaign_id", "ads.AdClick"),
        topic(&t.conversions, "user_id", "ads.Conversion"),
        topic(&t.campaigns, "campaign_id", "ads.Campaign"),
        topic("bench-backtest.hourly", "campaign_window", "metrics.CampaignMetrics"),
        topic("bench-backtest.daily", "campaign_window", "metrics.CampaignMetrics"),
        topic("bench-backtest.alerts", "campaign_id", "alerts.CampaignAlert"),
        topic("bench-backtest.credits", "campaign_id", "attribution.AttributionCredit"),
        topic("bench-backtest.attributed", "conversion_id", "attribution.AttributedConversion"),
        topic("bench-backtest.fatigue", "creative_id", "fatigue.CreativeFatigue"),
        i = t.impressions,
        c = t.clicks,
        k = t.campaigns,
        v = t.conversions,
    );
    let topology = adstream_topology::Topology::parse(&topology, "bench-backtest.yaml")?;
    let flow = Dataflow::resolve(&topology, &JobRegistry::builtin(), &[])?;
    let generated = GeneratorConfig::default();
    let period = Period {
        from_ms: generated.start_ms,
        to_ms: generated.start_ms + i64::from(generated.days) * 86_400_000,
        warmup_ms: 0,
    };
    let strategy = Strategy::parse("", "live.yaml", "live")?;
    reset_peak_memory();
    // What the process held before (the SQL phase's allocator pages among it): the backtest's own is the rest.
    let base = peak_memory().unwrap_or(0);
    let meter = Meter::start(ticks);
    let history = History::read(
        &source,
        &flow,
        period,
        tokio::runtime::Handle::current(),
        &mut |_, _| {},
    )?;
    let read = meter.stop();
    let events = history.event_count() as f64;
    let meter = Meter::start(ticks);
    let run = run_strategy(&history, &flow, &strategy, period, &mut |_, _| {})?;
    let replay = meter.stop();
    let per_million = |m: &Measured| m.wall_s / (events / 1e6).max(1e-9);
    println!(
        "backtest (live configuration, {} days): {} impressions and clicks, {} records in all; read {:.1} s \
         ({:.1} s per million events), replay through 4 operators {:.1} s, {:.1} CPU-s ({:.1} s per million \
         events, {:.0} events/s = {:.3}x the raw consume rate of {:.0} records/s); {} campaigns, spend {:.2}; peak \
         memory {:.0} MB (+{:.0} MB over the process before the backtest)",
        generated.days,
        events,
        history.record_count(),
        read.wall_s,
        per_million(&read),
        replay.wall_s,
        replay.cpu_s,
        per_million(&replay),
        events / replay.wall_s.max(1e-9),
        events / replay.wall_s.max(1e-9) / raw_per_s.max(1e-9),
        raw_per_s,
        run.campaigns.len(),
        run.total.spend_micros as f64 / 1e6,
        peak_memory().unwrap_or(0) as f64 / 1e6,
        peak_memory().unwrap_or(0).saturating_sub(base) as f64 / 1e6
    );
    Ok(())
}

/// Runs the attribution job (repartition stage, then attribution stage) and the creative-fatigue job over the
/// bench's inputs, exactly-once, each to the end of its input; measures their state from their changelogs.
async fn other_jobs(
    kafka: &Kafka,
    registry_url: &str,
    inputs: &Inputs,
    run: &str,
    ticks: f64,
) -> Result<OtherJobs> {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let topics = &inputs.topics;
    let eos = |app: &str| {
        let mut config = RuntimeConfig::new(app, kafka.config.clone(), registry_url);
        config.exit_at_end_of_input = true;
        config
    };

    // Attribution: the repartition stage writes `<app>-repartition`, the attribution stage reads it with the
    // conversions.
    let app = format!("{run}-attribution");
    let touches = format!("{app}-repartition");
    let specs = vec![
        (
            format!("{app}.attributed"),
            PARTITIONS,
            vec![("cleanup.policy", "compact")],
        ),
        (format!("{app}.credits"), PARTITIONS, vec![]),
    ];
    kafka.scratch(
        specs.iter().map(|(n, _, _)| n.clone()).chain([
            touches.clone(),
            format!("{app}-touches-changelog"),
            format!("{app}-pending-changelog"),
            format!("dlq.{touches}"),
            format!("late.{touches}"),
            format!("dlq.{}", topics.conversions),
            format!("late.{}", topics.conversions),
        ]),
        [
            app.clone(),
            format!("{app}-repartition"),
            format!("{app}-state"),
        ],
    );
    kafka.create(&specs).await?;
    let stage_one = TouchRepartition::new(RepartitionConfig {
        impressions: topics.impressions.clone(),
        clicks: topics.clicks.clone(),
        touches: touches.clone(),
        partitions: PARTITIONS,
    })
    .map_err(|e| anyhow!("repartition: {e}"))?;
    println!("attribution: repartition stage");
    let input_topics = [topics.impressions.as_str(), topics.clicks.as_str()];
    let one = tokio::task::block_in_place(|| {
        run_to_end(
            kafka,
            eos(&format!("{app}-repartition")),
            Box::new(stage_one),
            "attribution/repartition",
            &input_topics,
            ticks,
        )
    })?;
    let stage_two = AttributionJob::new(AttributionConfig {
        touches: touches.clone(),
        conversions: topics.conversions.clone(),
        partitions: PARTITIONS,
        attributed: format!("{app}.attributed"),
        credits: format!("{app}.credits"),
        journeys: None,
        model_weights: None,
        lookback_ms: 30 * 86_400_000,
        grace_ms: 600_000,
        retention_ms: 86_400_000,
        settings: RuleSettings::default(),
    })
    .map_err(|e| anyhow!("attribution: {e}"))?;
    println!("attribution: attribution stage");
    let stage_two_topics = [touches.as_str(), topics.conversions.as_str()];
    let two = tokio::task::block_in_place(|| {
        run_to_end(
            kafka,
            eos(&app),
            Box::new(stage_two),
            "attribution/attribute",
            &stage_two_topics,
            ticks,
        )
    })?;
    let conversions = two.summary.records.saturating_sub(one.summary.records);
    let input = one.summary.records + conversions;
    let both = Measured {
        wall_s: one.measured.wall_s + two.measured.wall_s,
        cpu_s: one.measured.cpu_s + two.measured.cpu_s,
    };
    rows.push((
        "attribution exactly-once, both stages (impressions+clicks+conversions)".to_owned(),
        input,
        both,
    ));
    rows.push((
        "  stage 1: re-key impressions+clicks by user".to_owned(),
        one.summary.records,
        one.measured,
    ));
    rows.push((
        "  stage 2: touches (+markers) and conversions into credits".to_owned(),
        two.summary.records,
        two.measured,
    ));
    let (users, bytes) = tokio::task::block_in_place(|| {
        changelog_state(
            kafka,
            &format!("{app}-touches-changelog"),
            &format!("{app}-state"),
        )
    })?;
    notes.push(format!(
        "attribution: {} input records ({conversions} conversions); touch state {users} users, {:.1} MB of changelog \
         values = {:.0} bytes per user (compact binary, every touch of the week kept: the 30-day lookback has not passed)",
        input,
        bytes as f64 / 1e6,
        bytes as f64 / users.max(1) as f64
    ));

    // Creative fatigue.
    let app = format!("{run}-fatigue");
    let specs = vec![(
        format!("{app}.fatigue"),
        PARTITIONS,
        vec![("cleanup.policy", "compact")],
    )];
    kafka.scratch(
        specs.iter().map(|(n, _, _)| n.clone()).chain([
            format!("{app}-creatives-changelog"),
            format!("{app}-event_ids-changelog"),
        ]),
        [app.clone(), format!("{app}-state")],
    );
    kafka.create(&specs).await?;
    let job = CreativeFatigueJob::new(CreativeFatigueConfig {
        impressions: topics.impressions.clone(),
        clicks: topics.clicks.clone(),
        output: format!("{app}.fatigue"),
        alerts: None,
        detector: FatigueConfig::default(),
        lateness: Lateness::new(Duration::from_secs(600), Duration::from_secs(12 * 3_600))
            .map_err(|e| anyhow!("creative-fatigue lateness: {e}"))?,
        report_interval_ms: 6 * HOUR_MS,
    })
    .map_err(|e| anyhow!("creative-fatigue: {e}"))?;
    println!("creative-fatigue: running");
    let done = tokio::task::block_in_place(|| {
        run_to_end(
            kafka,
            eos(&app),
            Box::new(job),
            "creative-fatigue",
            &input_topics,
            ticks,
        )
    })?;
    rows.push((
        "creative-fatigue exactly-once (impressions+clicks)".to_owned(),
        done.summary.records,
        done.measured,
    ));
    let (creatives, bytes) = tokio::task::block_in_place(|| {
        changelog_state(
            kafka,
            &format!("{app}-creatives-changelog"),
            &format!("{app}-state"),
        )
    })?;
    notes.push(format!(
        "creative-fatigue: {} records, {} commits; state {creatives} creatives, {:.0} bytes per creative (JSON)",
        done.summary.records,
        done.summary.commits,
        bytes as f64 / creatives.max(1) as f64
    ));
    Ok(OtherJobs { rows, notes })
}
