//! The poll loop: consume, hand records to the operator, commit state, outputs and offsets together.
//!
//! One thread owns the consumer. The group's rebalance callbacks run inside `poll` on that same thread, so the
//! task state they need sits behind a mutex that the loop never holds across `poll`:
//! - before partitions are revoked, everything processed so far is committed (so the next owner starts exactly
//!   where this one stopped), then their state is dropped;
//! - after partitions are assigned, their stores are restored from the changelogs and their tables read to the
//!   end, before `poll` returns any of their records.
//!
//! Co-partitioning: partition n of every input holds the same keys, so partition n of all inputs must be owned by
//! one member. The group uses Kafka's consumer protocol (KIP-848) with the broker-side `range` assignor, which
//! assigns equal partition numbers of equally partitioned topics together and rebalances incrementally.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use adstream_schemas::client::RegistryClient;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, DeliveryResult, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{debug, info, info_span, warn};

use super::metrics::{Counters, JobMetrics};
use super::{
    DeliveryGuarantee, InputKind, InputSpec, Operator, OutputSpec, Record, RuntimeConfig,
    SchemaCache,
};
use crate::watermark::PartitionWatermarks;

/// How long a transactional or admin call may take before it counts as timed out.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a retriable transactional error is retried before the job gives up.
const RETRIES: u32 = 5;

/// Why a job stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The job could not be set up (topics, schemas, clients).
    #[error("cannot start: {0}")]
    Setup(String),
    /// A fatal Kafka error: the producer was fenced by a newer instance with the same transactional id, or the
    /// broker lost its state. The job must be restarted.
    #[error("fatal Kafka error: {0}")]
    Fatal(String),
    /// A commit's outcome is unknown after its retries. Nothing is reported as committed; a restart resumes from
    /// what Kafka committed.
    #[error("commit outcome unknown after {RETRIES} attempts: {0}")]
    CommitUnknown(String),
    /// A changelog could not be restored.
    #[error("restore failed: {0}")]
    Restore(String),
    /// Records could not be delivered under at-least-once.
    #[error("delivery failed: {0}")]
    Delivery(String),
    /// The registry was unavailable for a record's schema; the record was not processed.
    #[error("{0}")]
    Transient(String),
}

/// What a run did, returned at a clean shutdown.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Records handed to the operator.
    pub records: u64,
    /// Records sent to dead-letter topics.
    pub dead_letters: u64,
    /// Records sent to late topics.
    pub late: u64,
    /// Transactions (or at-least-once commits) committed.
    pub commits: u64,
    /// Transactions aborted (state restored and input rewound each time).
    pub aborts: u64,
    /// Changelog and table records restored.
    pub restored: u64,
}

/// Delivery outcome counters of the producer, read at commit time.
#[derive(Default)]
struct DeliveryCounters {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

struct DeliveryContext(Arc<DeliveryCounters>);

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.0.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.0.first_error.lock() {
                first.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

/// Where the operator's records go: outputs, dead letters and late records, all through one producer.
pub struct Emitter {
    /// Threaded: librdkafka's transactional calls (abort in particular) need delivery reports served while they
    /// wait, which a producer polled only from this loop's thread cannot do.
    producer: ThreadedProducer<DeliveryContext>,
    exactly_once: bool,
    transaction_open: bool,
    /// The job's application id, named on the records it redirects.
    application_id: String,
    outputs: Vec<String>,
    input_topics: Vec<String>,
    /// Records sent per output index.
    sent_outputs: Vec<u64>,
    /// Changelog records sent per topic.
    sent_changelog: BTreeMap<String, u64>,
    /// Dead letters per (source topic, class).
    dead_letters: BTreeMap<(String, String), u64>,
    /// Late records per source topic.
    late: BTreeMap<String, u64>,
}

impl Emitter {
    fn ensure_transaction(&mut self) -> Result<(), KafkaError> {
        if self.exactly_once && !self.transaction_open {
            self.producer.begin_transaction()?;
            self.transaction_open = true;
        }
        Ok(())
    }

    /// Sends one record, waiting out a full local queue. Errors here are enqueue errors (unknown topic, record too
    /// large); delivery errors surface at commit.
    fn send(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp_ms: Option<i64>,
        headers: OwnedHeaders,
    ) -> Result<(), KafkaError> {
        self.ensure_transaction()?;
        let mut record = BaseRecord::to(topic).key(key).headers(headers);
        if let Some(value) = value {
            record = record.payload(value);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(ts) = timestamp_ms {
            record = record.timestamp(ts);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    // The producer's own thread serves deliveries; give it a moment to make room.
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((error, _)) => return Err(error),
            }
        }
    }
}

/// What an operator may do while handling a record or a commit.
pub struct Context<'a> {
    emitter: &'a mut Emitter,
    /// Writer-schema cache for decoding inputs.
    pub schemas: &'a mut SchemaCache,
    /// While handling a record: the event-time watermark of its task (partition number n of every stream input);
    /// None until one of them has seen an event. At a commit: None (see [`Context::watermark_of`]).
    pub watermark: Option<i64>,
    /// Watermark of every owned task at this call.
    task_watermarks: &'a BTreeMap<i32, Option<i64>>,
    /// Wall-clock time of this call (epoch millis).
    pub now_ms: i64,
    error: &'a mut Option<KafkaError>,
}

impl Context<'_> {
    /// The watermark of task `partition` (partition number `partition` of every stream input).
    ///
    /// Watermarks are per task, like Kafka Streams' stream time: a task's windows are judged by the progress of its
    /// own partitions only, so a task that is far ahead never expires the windows of a task that was just assigned
    /// and is behind.
    pub fn watermark_of(&self, partition: i32) -> Option<i64> {
        self.task_watermarks.get(&partition).copied().flatten()
    }

    /// Sends a value to output `output` (index into the operator's outputs), partitioned by key.
    pub fn emit(
        &mut self,
        output: usize,
        key: &[u8],
        value: &[u8],
        timestamp_ms: i64,
        correlation_id: &str,
    ) {
        let Some(topic) = self.emitter.outputs.get(output).cloned() else {
            return;
        };
        let headers = OwnedHeaders::new().insert(Header {
            key: "correlation_id",
            value: Some(correlation_id),
        });
        match self
            .emitter
            .send(&topic, None, key, Some(value), Some(timestamp_ms), headers)
        {
            Ok(()) => self.emitter.sent_outputs[output] += 1,
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }

    /// Sends `record` unchanged to `late.<topic>` with a reason: it arrived after its window's retention.
    pub fn late(&mut self, record: &Record<'_>, reason: &str) {
        if let Some(topic) = self.emitter.input_topics.get(record.input) {
            *self.emitter.late.entry(topic.clone()).or_default() += 1;
        }
        self.redirect(record, "late", reason, "expired");
    }

    fn redirect(&mut self, record: &Record<'_>, prefix: &str, message: &str, class: &str) {
        let Some(source) = self.emitter.input_topics.get(record.input).cloned() else {
            return;
        };
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        let now = self.now_ms.to_string();
        let reason_key = if prefix == "dlq" {
            "dlq_error_message"
        } else {
            "late_reason"
        };
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: if prefix == "dlq" {
                    "dlq_error_class"
                } else {
                    "late_class"
                },
                value: Some(class),
            })
            .insert(Header {
                key: reason_key,
                value: Some(message),
            })
            .insert(Header {
                key: "source_topic",
                value: Some(source.as_str()),
            })
            .insert(Header {
                key: "source_partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "source_offset",
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: "redirected_at",
                value: Some(now.as_str()),
            })
            // Several jobs read the same topics: each dead-letters a poison record it meets.
            .insert(Header {
                key: "redirected_by",
                value: Some(self.emitter.application_id.as_str()),
            })
            .insert(Header {
                key: "correlation_id",
                value: Some(record.correlation_id),
            });
        // The record's own headers (CloudEvents, content type, an earlier redrive's provenance) travel with it;
        // the ones set above are not repeated.
        let mut headers = headers;
        if let Some(original) = record.headers {
            for header in original.iter() {
                let ours = header.key == "correlation_id"
                    || header.key == "redirected_at"
                    || header.key == "redirected_by"
                    || header.key.starts_with("dlq_")
                    || header.key.starts_with("late_")
                    || header.key.starts_with("source_");
                if !ours {
                    headers = headers.insert(header);
                }
            }
        }
        let topic = format!("{prefix}.{source}");
        if let Err(e) = self.emitter.send(
            &topic,
            Some(record.partition),
            record.key.unwrap_or_default(),
            record.value,
            record.timestamp_ms,
            headers,
        ) {
            self.error.get_or_insert(e);
        }
    }
}

/// Everything the loop and the rebalance callbacks share.
struct Task {
    config: RuntimeConfig,
    operator: Box<dyn Operator>,
    emitter: Emitter,
    schemas: SchemaCache,
    inputs: Vec<InputSpec>,
    /// Next offset to commit per (input index, partition), for partitions with progress since the last commit.
    positions: HashMap<(usize, i32), i64>,
    /// Partition numbers this member owns.
    owned: BTreeSet<i32>,
    /// Per task (partition number): the watermark over its stream inputs.
    watermarks: BTreeMap<i32, PartitionWatermarks<usize>>,
    /// The latest watermark of each task, handed to operators at commits.
    task_watermarks: BTreeMap<i32, Option<i64>>,
    delivery: Arc<DeliveryCounters>,
    summary: RunSummary,
    metrics: Arc<JobMetrics>,
    counters: Counters,
    /// Records consumed per input index.
    records_in: Vec<u64>,
    /// (event time, append time when the topic has LogAppendTime, poll time) of records since the last commit,
    /// for the latency histograms.
    uncommitted: Vec<(Option<i64>, Option<i64>, i64)>,
    last_commit: Instant,
    /// An error raised inside a rebalance callback, handed to the loop.
    failed: Option<RuntimeError>,
    /// Partition count of the inputs (the number of tasks of the job).
    partitions: i32,
    /// Outputs with watermark markers, with their partition counts: markers go to each partition.
    marked_outputs: Vec<(String, i32)>,
    /// Per task, the watermark last announced on the outputs with watermark markers.
    announced: BTreeMap<i32, i64>,
    /// Per (marked input, partition): the latest watermark announced by each task of the writing stage.
    upstream: HashMap<(usize, i32), Vec<Option<i64>>>,
}

/// Header of a watermark marker on an internal topic: the writing stage's task watermark (decimal millis).
const WATERMARK_HEADER: &str = "adstream_watermark";
/// Header of a watermark marker: the writing stage's task number.
const WATERMARK_TASK_HEADER: &str = "adstream_watermark_task";
/// Header of a watermark marker: how many tasks the writing stage has.
const WATERMARK_TASKS_HEADER: &str = "adstream_watermark_tasks";

/// The first header of `message` named `key`, if it is UTF-8 text.
fn header_text<'m>(message: &'m BorrowedMessage<'_>, key: &str) -> Option<&'m str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// A watermark marker read from a marked input: (watermark, task, tasks).
fn watermark_marker(message: &BorrowedMessage<'_>) -> Option<(i64, usize, usize)> {
    let watermark = header_text(message, WATERMARK_HEADER)?.parse().ok()?;
    let task = header_text(message, WATERMARK_TASK_HEADER)?.parse().ok()?;
    let tasks = header_text(message, WATERMARK_TASKS_HEADER)?.parse().ok()?;
    // A marker from a writer with absurdly many tasks is not one of ours.
    (task < tasks && tasks <= 100_000).then_some((watermark, task, tasks))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Task {
    fn handle(&mut self, message: &BorrowedMessage<'_>) -> Result<(), RuntimeError> {
        let Some(input) = self.inputs.iter().position(|i| i.topic == message.topic()) else {
            return Ok(());
        };
        // Record timestamps of a marked input do not say how far its writer got.
        let marked = self.inputs[input].watermark_markers;
        if marked {
            if let Some((watermark, writer_task, writer_tasks)) = watermark_marker(message) {
                self.observe_marker(
                    input,
                    message.partition(),
                    watermark,
                    writer_task,
                    writer_tasks,
                );
                self.positions
                    .insert((input, message.partition()), message.offset() + 1);
                return Ok(());
            }
        }
        let fallback;
        let correlation_id = match header_text(message, "correlation_id") {
            Some(id) => id,
            None => {
                fallback = format!(
                    "{}/{}/{}",
                    message.topic(),
                    message.partition(),
                    message.offset()
                );
                fallback.as_str()
            }
        };
        let record = Record {
            input,
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key(),
            value: message.payload(),
            headers: message.headers(),
            correlation_id,
        };
        let now = now_ms();
        self.records_in[input] += 1;
        let append_time = match message.timestamp() {
            rdkafka::Timestamp::LogAppendTime(t) => Some(t),
            _ => None,
        };
        if self.inputs[input].kind == InputKind::Stream {
            self.uncommitted
                .push((record.timestamp_ms, append_time, now));
            if let Some(task) = self.watermarks.get_mut(&record.partition) {
                match record.timestamp_ms {
                    // An internal topic interleaves records of every task of the writing stage, each at its own
                    // pace: only the markers say how far all of them got.
                    _ if marked => task.mark_active(input, now),
                    Some(ts) => {
                        task.observe(input, ts, now);
                    }
                    None => {}
                }
            }
        }
        let mut error = None;
        let mut ctx = Context {
            emitter: &mut self.emitter,
            schemas: &mut self.schemas,
            watermark: self
                .watermarks
                .get_mut(&record.partition)
                .and_then(|task| task.current(now)),
            task_watermarks: &self.task_watermarks,
            now_ms: now,
            error: &mut error,
        };
        // No span per record (it costs about a fifth of the job's CPU at info level): the per-record log events
        // below name the record's correlation id themselves.
        match self.operator.process(&record, &mut ctx) {
            Ok(()) => {}
            Err(e) if e.is_transient() => return Err(RuntimeError::Transient(e.to_string())),
            Err(e) => {
                debug!(
                    error = %e,
                    correlation_id = record.correlation_id,
                    offset = record.offset,
                    "dead-lettering record"
                );
                let source = ctx.emitter.input_topics[record.input].clone();
                *ctx.emitter
                    .dead_letters
                    .entry((source, e.class().to_owned()))
                    .or_default() += 1;
                ctx.redirect(&record, "dlq", &e.to_string(), e.class());
            }
        }
        if let Some(e) = error {
            return Err(RuntimeError::Delivery(format!(
                "cannot enqueue output of record {}: {e}",
                record.correlation_id
            )));
        }
        self.summary.records += 1;
        self.positions
            .insert((input, record.partition), record.offset + 1);
        Ok(())
    }

    /// Emits what is due, writes changelogs and commits them with the offsets. On an abortable failure the
    /// transaction is aborted and the task rewound to the last commit (state restored, consumer seeked).
    fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), RuntimeError> {
        self.last_commit = Instant::now();
        let now = now_ms();
        let mut error = None;
        // Idleness is for partitions that have nothing to deliver: one that still lags behind its end is kept
        // active however long its records take to arrive.
        for (partition, task) in &mut self.watermarks {
            for (input, spec) in self.inputs.iter().enumerate() {
                if spec.kind == InputKind::Stream
                    && self
                        .metrics
                        .lag(&spec.topic, *partition)
                        .is_some_and(|lag| lag > 0)
                {
                    task.mark_active(input, now);
                }
            }
        }
        for (partition, task) in &mut self.watermarks {
            self.task_watermarks.insert(*partition, task.current(now));
        }
        {
            let mut ctx = Context {
                emitter: &mut self.emitter,
                schemas: &mut self.schemas,
                watermark: None,
                task_watermarks: &self.task_watermarks,
                now_ms: now,
                error: &mut error,
            };
            self.operator.on_commit(&mut ctx);
        }
        if let Some(e) = self.announce_watermarks() {
            error.get_or_insert(e);
        }
        let emitter = &mut self.emitter;
        let config = &self.config;
        for store in self.operator.stores() {
            let topic = config.changelog_topic(store.name());
            let mut sent = 0u64;
            store.flush(&mut |partition, key, value| {
                sent += 1;
                if let Err(e) = emitter.send(
                    &topic,
                    Some(partition),
                    key,
                    value,
                    None,
                    OwnedHeaders::new(),
                ) {
                    error.get_or_insert(e);
                }
            });
            *emitter.sent_changelog.entry(topic).or_default() += sent;
        }
        if let Some(e) = error {
            return self.abort_and_rewind(consumer, &format!("enqueue failed: {e}"));
        }
        if self.positions.is_empty() && !self.emitter.transaction_open {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for ((input, partition), offset) in &self.positions {
            let topic = &self.inputs[*input].topic;
            if let Err(e) = offsets.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            {
                return Err(RuntimeError::Fatal(format!("offset list: {e}")));
            }
        }
        match self.config.guarantee {
            DeliveryGuarantee::ExactlyOnce => self.commit_transaction(consumer, &offsets)?,
            DeliveryGuarantee::AtLeastOnce => self.commit_at_least_once(consumer, &offsets)?,
        }
        self.positions.clear();
        self.summary.commits += 1;
        self.record_commit();
        Ok(())
    }

    /// A watermark marker of task `writer_task` (of `writer_tasks`) of the stage writing internal input `input`:
    /// the partition's event time is the minimum over the writer's tasks, once each has announced one.
    fn observe_marker(
        &mut self,
        input: usize,
        partition: i32,
        watermark: i64,
        writer_task: usize,
        writer_tasks: usize,
    ) {
        let announced = self
            .upstream
            .entry((input, partition))
            .or_insert_with(|| vec![None; writer_tasks]);
        if announced.len() != writer_tasks {
            // The writing stage was repartitioned: start over with its new task count.
            *announced = vec![None; writer_tasks];
        }
        announced[writer_task] =
            Some(announced[writer_task].map_or(watermark, |w| w.max(watermark)));
        let slowest = announced.iter().copied().min().flatten();
        if let (Some(slowest), Some(task)) = (slowest, self.watermarks.get_mut(&partition)) {
            task.observe(input, slowest, now_ms());
        }
    }

    /// Announces each task's watermark on every partition of the outputs with watermark markers, when it moved: a
    /// reader cannot derive it from the records, which interleave all tasks.
    fn announce_watermarks(&mut self) -> Option<KafkaError> {
        if self.marked_outputs.is_empty() {
            return None;
        }
        let tasks = self.partitions.to_string();
        for (task, watermark) in &self.task_watermarks {
            let Some(watermark) = watermark.map(|w| self.operator.announced_watermark(w)) else {
                continue;
            };
            if self.announced.get(task) == Some(&watermark) {
                continue;
            }
            let (text, task_text) = (watermark.to_string(), task.to_string());
            for (topic, partitions) in &self.marked_outputs {
                for partition in 0..*partitions {
                    let headers = OwnedHeaders::new()
                        .insert(Header {
                            key: WATERMARK_HEADER,
                            value: Some(text.as_str()),
                        })
                        .insert(Header {
                            key: WATERMARK_TASK_HEADER,
                            value: Some(task_text.as_str()),
                        })
                        .insert(Header {
                            key: WATERMARK_TASKS_HEADER,
                            value: Some(tasks.as_str()),
                        });
                    if let Err(e) = self.emitter.send(
                        topic,
                        Some(partition),
                        b"",
                        None,
                        Some(watermark),
                        headers,
                    ) {
                        return Some(e);
                    }
                }
            }
            self.announced.insert(*task, watermark);
        }
        None
    }

    /// Lets the operator emit what waits for event time, before the last commit of a run that read all its input.
    fn end_of_input(&mut self) -> Result<(), RuntimeError> {
        // Nothing more will come: each task's watermark moves to the latest event time it saw (a sparse input no
        // longer holds it back), here and at the final commit.
        for (partition, task) in &mut self.watermarks {
            self.task_watermarks.insert(*partition, task.finish());
        }
        let mut error = None;
        {
            let mut ctx = Context {
                emitter: &mut self.emitter,
                schemas: &mut self.schemas,
                watermark: None,
                task_watermarks: &self.task_watermarks,
                now_ms: now_ms(),
                error: &mut error,
            };
            self.operator.on_end_of_input(&mut ctx);
        }
        // Committing without what failed to enqueue would lose it: stop instead, and leave the transaction to be
        // aborted (a restart processes the end of input again).
        match error {
            Some(e) => Err(RuntimeError::Delivery(format!(
                "emitting at the end of input: {e}"
            ))),
            None => Ok(()),
        }
    }

    /// After a successful commit: latencies of the records it covered, and a fresh copy of the counters for the
    /// metrics endpoint.
    fn record_commit(&mut self) {
        let now = now_ms();
        for (event, append, polled) in self.uncommitted.drain(..) {
            if let Some(event) = event {
                self.counters
                    .event_time_latency
                    .observe((now - event) as f64 / 1000.0);
            }
            if let Some(append) = append {
                self.counters
                    .append_time_latency
                    .observe((now - append) as f64 / 1000.0);
            }
            self.counters
                .processing_latency
                .observe((now - polled) as f64 / 1000.0);
        }
        self.publish();
    }

    fn publish(&mut self) {
        let c = &mut self.counters;
        for (input, n) in self.inputs.iter().zip(&self.records_in) {
            c.records_in.insert(input.topic.clone(), *n);
        }
        for (topic, n) in self.emitter.outputs.iter().zip(&self.emitter.sent_outputs) {
            c.records_out.insert(topic.clone(), *n);
        }
        for (topic, n) in &self.emitter.sent_changelog {
            c.records_out.insert(topic.clone(), *n);
        }
        let mut dead_letters_per_topic: BTreeMap<String, u64> = BTreeMap::new();
        for ((topic, class), n) in &self.emitter.dead_letters {
            *dead_letters_per_topic
                .entry(format!("dlq.{topic}"))
                .or_default() += n;
            c.dead_letters.insert((topic.clone(), class.clone()), *n);
        }
        c.records_out.extend(dead_letters_per_topic);
        for (topic, n) in &self.emitter.late {
            c.records_out.insert(format!("late.{topic}"), *n);
            c.late.insert(topic.clone(), *n);
        }
        c.commits = self.summary.commits;
        c.aborts = self.summary.aborts;
        c.restored = self.summary.restored;
        c.watermarks = self
            .task_watermarks
            .iter()
            .filter_map(|(p, w)| w.map(|w| (*p, w)))
            .collect();
        c.job = self.operator.counters();
        self.metrics.publish(c);
    }

    fn commit_transaction<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
    ) -> Result<(), RuntimeError> {
        let producer = &self.emitter.producer;
        if !self.emitter.transaction_open {
            retry("begin transaction", || producer.begin_transaction())
                .map_err(|e| classify(e, "begin"))?;
            self.emitter.transaction_open = true;
        }
        let group = consumer
            .group_metadata()
            .ok_or_else(|| RuntimeError::Fatal("consumer has no group metadata".into()))?;
        let outcome = retry("send offsets", || {
            producer.send_offsets_to_transaction(offsets, &group, CALL_TIMEOUT)
        })
        .and_then(|()| retry("commit", || producer.commit_transaction(CALL_TIMEOUT)));
        match outcome {
            Ok(()) => {
                self.emitter.transaction_open = false;
                Ok(())
            }
            Err(e) if requires_abort(&e) => {
                warn!(error = %e, "transaction must be aborted");
                self.abort_and_rewind(consumer, &e.to_string())
            }
            Err(e) => Err(classify(e, "commit")),
        }
    }

    fn commit_at_least_once<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
    ) -> Result<(), RuntimeError> {
        // Outputs first: only offsets of records whose effects Kafka acknowledged are committed.
        self.emitter
            .producer
            .flush(CALL_TIMEOUT)
            .map_err(|e| RuntimeError::Delivery(format!("flush: {e}")))?;
        let failed = self.delivery.failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let first = self
                .delivery
                .first_error
                .lock()
                .ok()
                .and_then(|mut f| f.take())
                .unwrap_or_default();
            return Err(RuntimeError::Delivery(format!(
                "{failed} record(s) not delivered; first: {first}"
            )));
        }
        consumer
            .commit(offsets, rdkafka::consumer::CommitMode::Sync)
            .map_err(|e| RuntimeError::CommitUnknown(e.to_string()))
    }

    /// Aborts the open transaction and puts the task back where the last commit left it.
    fn abort_and_rewind<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        reason: &str,
    ) -> Result<(), RuntimeError> {
        if self.config.guarantee == DeliveryGuarantee::AtLeastOnce {
            return Err(RuntimeError::Delivery(reason.to_owned()));
        }
        warn!(
            reason,
            "aborting transaction and rewinding to the last commit"
        );
        if self.emitter.transaction_open {
            retry("abort", || {
                self.emitter.producer.abort_transaction(CALL_TIMEOUT)
            })
            .map_err(|e| classify(e, "abort"))?;
            self.emitter.transaction_open = false;
        }
        self.summary.aborts += 1;
        self.positions.clear();
        // Aborted work is reprocessed; its latencies count when it commits.
        self.uncommitted.clear();
        let owned: Vec<i32> = self.owned.iter().copied().collect();
        for partition in &owned {
            self.drop_partition(*partition);
        }
        self.restore(&owned)?;
        let assignment = consumer
            .assignment()
            .map_err(|e| RuntimeError::Fatal(format!("assignment: {e}")))?;
        let committed = consumer
            .committed_offsets(assignment, CALL_TIMEOUT)
            .map_err(|e| RuntimeError::CommitUnknown(format!("committed offsets: {e}")))?;
        for element in committed.elements() {
            let offset = match element.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            consumer
                .seek(element.topic(), element.partition(), offset, CALL_TIMEOUT)
                .map_err(|e| RuntimeError::Fatal(format!("seek: {e}")))?;
        }
        Ok(())
    }

    fn drop_partition(&mut self, partition: i32) {
        for store in self.operator.stores() {
            store.drop_partition(partition);
        }
        // Announce again after a restore or hand-over; forget what the upstream stage said for this partition
        // (its markers are read again from the committed offset or by the next owner).
        self.announced.remove(&partition);
        self.upstream.retain(|(_, p), _| *p != partition);
        self.operator.on_revoked(partition);
    }

    /// Restores the stores of `partitions` from their changelogs and reads their tables to the end.
    fn restore(&mut self, partitions: &[i32]) -> Result<(), RuntimeError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        self.metrics.set_restoring(true);
        let mut restored = 0u64;
        let config = &self.config;
        for store in self.operator.stores() {
            let topic = config.changelog_topic(store.name());
            restored += read_to_end(config, &topic, partitions, |partition, _, key, value| {
                store
                    .restore(partition, key.unwrap_or_default(), value)
                    .map_err(|e| e.to_string())
            })?;
        }
        let tables: Vec<(usize, String)> = self
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, i)| i.kind == InputKind::Table)
            .map(|(n, i)| (n, i.topic.clone()))
            .collect();
        for (input, topic) in tables {
            let now = now_ms();
            let operator = &mut self.operator;
            let emitter = &mut self.emitter;
            let schemas = &mut self.schemas;
            let task_watermarks = &self.task_watermarks;
            restored += read_to_end(
                &self.config,
                &topic,
                partitions,
                |partition, offset, key, value| {
                    let record = Record {
                        input,
                        partition,
                        offset,
                        timestamp_ms: None,
                        key,
                        value,
                        headers: None,
                        correlation_id: "table-bootstrap",
                    };
                    let mut error = None;
                    let mut ctx = Context {
                        emitter: &mut *emitter,
                        schemas: &mut *schemas,
                        watermark: None,
                        task_watermarks,
                        now_ms: now,
                        error: &mut error,
                    };
                    // A table record that does not decode is dead-lettered when the consumer reaches it; here it is
                    // skipped so that bootstrap never writes outside a transaction.
                    let _ = operator.process(&record, &mut ctx);
                    Ok(())
                },
            )?;
        }
        self.operator.on_restored(partitions);
        self.summary.restored += restored;
        self.metrics.set_restoring(false);
        self.publish();
        info!(
            partitions = ?partitions,
            records = restored,
            seconds = started.elapsed().as_secs_f64(),
            "restored state and tables"
        );
        Ok(())
    }
}

/// Reads partitions `partitions` of `topic` from the beginning to their end (`read_committed`), handing each record
/// to `apply`. Logs progress every 100,000 records. Returns the number of records read.
fn read_to_end(
    config: &RuntimeConfig,
    topic: &str,
    partitions: &[i32],
    mut apply: impl FnMut(i32, i64, Option<&[u8]>, Option<&[u8]>) -> Result<(), String>,
) -> Result<u64, RuntimeError> {
    let mut client = config.kafka.clone();
    client
        .set("group.id", format!("{}-restore", config.application_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer<QuietEof> = client
        .create_with_context(QuietEof)
        .map_err(|e| RuntimeError::Restore(format!("{topic}: consumer: {e}")))?;
    let mut list = TopicPartitionList::new();
    for partition in partitions {
        list.add_partition_offset(topic, *partition, Offset::Beginning)
            .map_err(|e| RuntimeError::Restore(format!("{topic}: {e}")))?;
    }
    consumer
        .assign(&list)
        .map_err(|e| RuntimeError::Restore(format!("{topic}: assign: {e}")))?;
    let mut open: BTreeSet<i32> = partitions.iter().copied().collect();
    let mut count = 0u64;
    let started = Instant::now();
    let mut last_message = Instant::now();
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                if last_message.elapsed() > CALL_TIMEOUT {
                    return Err(RuntimeError::Restore(format!(
                        "{topic}: no progress for {}s (partitions {open:?} not at their end)",
                        CALL_TIMEOUT.as_secs()
                    )));
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                open.remove(&partition);
                last_message = Instant::now();
            }
            Some(Err(e)) => return Err(RuntimeError::Restore(format!("{topic}: {e}"))),
            Some(Ok(message)) => {
                last_message = Instant::now();
                apply(
                    message.partition(),
                    message.offset(),
                    message.key(),
                    message.payload(),
                )
                .map_err(RuntimeError::Restore)?;
                count += 1;
                if count.is_multiple_of(100_000) {
                    info!(
                        topic,
                        records = count,
                        rate = count as f64 / started.elapsed().as_secs_f64().max(1e-9),
                        "restoring"
                    );
                }
            }
        }
    }
    Ok(count)
}

/// Whether `error` is librdkafka's end-of-partition event, which arrives both as a consumer error and as a
/// client-wide ("global") error.
fn is_end_of_partition(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    )
}

/// A client context for consumers that read to the end (`enable.partition.eof`): it does not log the
/// end-of-partition events they asked for as errors, and logs every other client error as a warning.
pub struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        if !is_end_of_partition(&error) {
            warn!(%error, reason, "restore consumer error");
        }
    }
}

impl ConsumerContext for QuietEof {}

/// Retries `call` while librdkafka says the error is retriable.
fn retry(what: &str, mut call: impl FnMut() -> Result<(), KafkaError>) -> Result<(), KafkaError> {
    let mut attempt = 0;
    loop {
        match call() {
            Err(KafkaError::Transaction(e)) if e.is_retriable() && attempt < RETRIES => {
                attempt += 1;
                warn!(what, attempt, error = %e, "retrying");
                std::thread::sleep(Duration::from_millis(100 << attempt.min(4)));
            }
            other => return other,
        }
    }
}

fn requires_abort(error: &KafkaError) -> bool {
    matches!(error, KafkaError::Transaction(e) if e.txn_requires_abort())
}

/// Maps a transactional error that was neither retried away nor abortable.
fn classify(error: KafkaError, what: &str) -> RuntimeError {
    match &error {
        KafkaError::Transaction(e) if e.is_fatal() => {
            RuntimeError::Fatal(format!("{what}: {error}"))
        }
        KafkaError::Transaction(e) if e.is_retriable() => {
            RuntimeError::CommitUnknown(format!("{what}: {error}"))
        }
        _ => RuntimeError::CommitUnknown(format!("{what}: {error}")),
    }
}

/// Consumer context: commits before revocation, restores after assignment.
struct RebalanceHook {
    task: Arc<Mutex<Task>>,
    /// Held apart from the task so the statistics callback never waits for the task lock.
    metrics: Arc<JobMetrics>,
}

impl RebalanceHook {
    fn lock(&self) -> MutexGuard<'_, Task> {
        // A poisoned lock means a panic in the operator; the state is still the last consistent one the panic
        // left, and the loop will stop on the panic anyway.
        self.task.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientContext for RebalanceHook {
    fn error(&self, error: KafkaError, reason: &str) {
        // End-of-partition events are requested with exit_at_end_of_input and are not errors.
        if !is_end_of_partition(&error) {
            warn!(%error, reason, "Kafka client error");
        }
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let metrics = &self.metrics;
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // Partition -1 is librdkafka's internal queue. librdkafka's own consumer_lag is measured from the
                // consumer's committed offset, which it does not learn when offsets are committed through the
                // producer's transactions; so the lag is the last stable offset minus the position of what the
                // application received (or the committed/low offset before it received anything).
                if *partition < 0 || p.ls_offset < 0 {
                    continue;
                }
                let from = [p.app_offset, p.committed_offset, p.lo_offset]
                    .into_iter()
                    .find(|offset| *offset >= 0);
                if let Some(from) = from {
                    metrics.set_lag(topic, *partition, (p.ls_offset - from).max(0));
                }
            }
        }
    }
}

impl ConsumerContext for RebalanceHook {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let revoked = match rebalance {
            Rebalance::Revoke(list) => partitions_of(list),
            _ => return,
        };
        let mut task = self.lock();
        if task.failed.is_some() {
            return;
        }
        info!(partitions = ?revoked, "partitions revoked: committing before handing them over");
        task.metrics.clear_lag();
        if let Err(e) = task.commit(consumer) {
            task.failed = Some(e);
            return;
        }
        for partition in revoked {
            if task.owned.remove(&partition) {
                task.drop_partition(partition);
            }
            task.watermarks.remove(&partition);
            task.task_watermarks.remove(&partition);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let assigned = match rebalance {
            Rebalance::Assign(list) => partitions_of(list),
            _ => return,
        };
        let mut task = self.lock();
        if task.failed.is_some() {
            return;
        }
        let new: Vec<i32> = assigned
            .into_iter()
            .filter(|p| !task.owned.contains(p))
            .collect();
        if new.is_empty() {
            return;
        }
        info!(partitions = ?new, "partitions assigned: restoring before processing");
        if let Err(e) = task.restore(&new) {
            task.failed = Some(e);
            return;
        }
        task.metrics.set_ready(true);
        let now = now_ms();
        for partition in new {
            task.owned.insert(partition);
            let mut watermarks = PartitionWatermarks::new(task.config.idle_timeout);
            for input in 0..task.inputs.len() {
                if task.inputs[input].kind == InputKind::Stream {
                    watermarks.assign(input, now);
                }
            }
            task.watermarks.insert(partition, watermarks);
        }
    }
}

fn partitions_of(list: &TopicPartitionList) -> BTreeSet<i32> {
    list.elements().iter().map(|e| e.partition()).collect()
}

/// Creates `topics`; one that exists already (another instance or stage was first) is fine.
fn create_topics(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[NewTopic<'_>],
    runtime: &tokio::runtime::Handle,
) -> Result<(), RuntimeError> {
    if topics.is_empty() {
        return Ok(());
    }
    let results = runtime
        .block_on(admin.create_topics(topics, &AdminOptions::new()))
        .map_err(|e| RuntimeError::Setup(format!("create topics: {e}")))?;
    for result in results {
        match result {
            Ok(topic) => info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(RuntimeError::Setup(format!("create topic {topic}: {code}")))
            }
        }
    }
    Ok(())
}

/// What [`prepare`] found out.
struct Prepared {
    /// Partition count of the inputs.
    partitions: i32,
    /// Outputs with watermark markers and their partition counts.
    marked_outputs: Vec<(String, i32)>,
}

/// Creates missing internal, changelog, dead-letter and late topics, checks inputs and outputs, and registers the
/// output schemas.
fn prepare(
    config: &RuntimeConfig,
    operator: &mut dyn Operator,
    runtime: &tokio::runtime::Handle,
) -> Result<Prepared, RuntimeError> {
    let setup = |m: String| RuntimeError::Setup(m);
    let admin: AdminClient<DefaultClientContext> = config
        .kafka
        .clone()
        .create()
        .map_err(|e| setup(format!("admin client: {e}")))?;
    let fetch = || {
        admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(|e| setup(format!("cannot reach Kafka: {e}")))
    };
    let mut metadata = fetch()?;
    // Internal topics (repartition topics) first: a stage that reads one may start before the stage that writes
    // it, and whichever comes first creates it.
    let internal: Vec<(String, i32)> = operator
        .inputs()
        .into_iter()
        .filter_map(|i| i.internal_partitions.map(|n| (i.topic, n)))
        .chain(
            operator
                .outputs()
                .into_iter()
                .filter_map(|o| o.internal_partitions.map(|n| (o.topic, n))),
        )
        .filter(|(topic, _)| {
            !metadata
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none())
        })
        .collect();
    if !internal.is_empty() {
        // Repartition topics are the job's own: kept until Kafka Streams-style purging exists, because the
        // records' timestamps are event times that time retention would judge by.
        let topics: Vec<NewTopic<'_>> = internal
            .iter()
            .map(|(name, count)| {
                NewTopic::new(name, *count, TopicReplication::Fixed(1)).set("retention.ms", "-1")
            })
            .collect();
        create_topics(&admin, &topics, runtime)?;
        // A topic just created (here, or by the other stage a moment ago) takes a moment to show in metadata.
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            metadata = fetch()?;
            let visible = internal.iter().all(|(topic, _)| {
                metadata
                    .topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            });
            if visible {
                break;
            }
            if Instant::now() > deadline {
                return Err(setup(format!(
                    "internal topics {:?} were created but do not show in the metadata",
                    internal.iter().map(|(t, _)| t).collect::<Vec<_>>()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let partition_count = |topic: &str| {
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
    };
    let mut partitions = 0;
    for input in operator.inputs() {
        let count = partition_count(&input.topic).ok_or_else(|| {
            setup(format!(
                "input topic '{}' does not exist (run `adstream topology apply`)",
                input.topic
            ))
        })?;
        if partitions != 0 && count != partitions {
            return Err(setup(format!(
                "inputs are not co-partitioned: '{}' has {count} partitions, others {partitions}",
                input.topic
            )));
        }
        partitions = count;
    }
    let mut wanted: Vec<(String, Vec<(&str, &str)>)> = Vec::new();
    let mut marked_outputs = Vec::new();
    for output in operator.outputs() {
        let Some(count) = partition_count(&output.topic) else {
            return Err(setup(format!(
                "output topic '{}' does not exist (run `adstream topology apply`)",
                output.topic
            )));
        };
        if output.watermark_markers {
            marked_outputs.push((output.topic.clone(), count));
        }
    }
    for store in operator.stores() {
        wanted.push((
            config.changelog_topic(store.name()),
            vec![
                ("cleanup.policy", "compact"),
                ("min.cleanable.dirty.ratio", "0.1"),
            ],
        ));
    }
    for input in operator.inputs() {
        for prefix in ["dlq", "late"] {
            wanted.push((
                format!("{prefix}.{}", input.topic),
                vec![("retention.ms", "-1")],
            ));
        }
    }
    let missing: Vec<NewTopic<'_>> = wanted
        .iter()
        .filter(|(name, _)| partition_count(name).is_none())
        .map(|(name, configs)| {
            configs.iter().fold(
                NewTopic::new(name, partitions, TopicReplication::Fixed(1)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    create_topics(&admin, &missing, runtime)?;
    let registry = RegistryClient::new(&config.registry_url).map_err(|e| setup(e.to_string()))?;
    let mut ids = Vec::new();
    for OutputSpec {
        topic,
        value_schema,
        ..
    } in operator.outputs()
    {
        let subject = format!("{topic}-value");
        let id = runtime
            .block_on(registry.register(&subject, value_schema))
            .map_err(|e| setup(format!("register {subject}: {e}")))?;
        ids.push(id);
    }
    operator.set_output_schema_ids(&ids).map_err(setup)?;
    Ok(Prepared {
        partitions,
        marked_outputs,
    })
}

/// Runs `operator` until `shutdown` is set, then commits and leaves the group. Blocking: call it from a thread
/// (or `spawn_blocking`); `runtime` serves the registry and admin calls.
pub fn run(
    config: RuntimeConfig,
    mut operator: Box<dyn Operator>,
    shutdown: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
) -> Result<RunSummary, RuntimeError> {
    let span =
        info_span!("job", application_id = %config.application_id, instance = %config.instance_id);
    let _entered = span.enter();
    let Prepared {
        partitions,
        marked_outputs,
    } = prepare(&config, operator.as_mut(), &runtime)?;
    let exactly_once = config.guarantee == DeliveryGuarantee::ExactlyOnce;
    let delivery = Arc::new(DeliveryCounters::default());
    let mut producer_config = config.kafka.clone();
    producer_config
        .set("enable.idempotence", "true")
        // Java's partitioner: outputs keyed like Kafka Streams' land on the same partitions.
        .set("partitioner", "murmur2_random")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5");
    if exactly_once {
        producer_config
            .set(
                "transactional.id",
                format!("{}-{}", config.application_id, config.instance_id),
            )
            .set("transaction.timeout.ms", "60000");
    }
    let producer: ThreadedProducer<DeliveryContext> = producer_config
        .create_with_context(DeliveryContext(delivery.clone()))
        .map_err(|e| RuntimeError::Setup(format!("producer: {e}")))?;
    if exactly_once {
        // Also fences and aborts whatever a previous incarnation with the same transactional id left open.
        producer
            .init_transactions(CALL_TIMEOUT)
            .map_err(|e| RuntimeError::Setup(format!("init transactions: {e}")))?;
    }
    let inputs = operator.inputs();
    let emitter = Emitter {
        producer,
        exactly_once,
        transaction_open: false,
        application_id: config.application_id.clone(),
        outputs: operator.outputs().into_iter().map(|o| o.topic).collect(),
        input_topics: inputs.iter().map(|i| i.topic.clone()).collect(),
        sent_outputs: vec![0; operator.outputs().len()],
        sent_changelog: BTreeMap::new(),
        dead_letters: BTreeMap::new(),
        late: BTreeMap::new(),
    };
    let registry = RegistryClient::new(&config.registry_url)
        .map_err(|e| RuntimeError::Setup(e.to_string()))?;
    let task = Arc::new(Mutex::new(Task {
        config: config.clone(),
        operator,
        emitter,
        schemas: SchemaCache::new(registry, runtime.clone()),
        inputs: inputs.clone(),
        positions: HashMap::new(),
        owned: BTreeSet::new(),
        watermarks: BTreeMap::new(),
        task_watermarks: BTreeMap::new(),
        delivery,
        summary: RunSummary::default(),
        metrics: config.metrics.clone(),
        counters: Counters::default(),
        records_in: vec![0; inputs.len()],
        uncommitted: Vec::new(),
        last_commit: Instant::now(),
        failed: None,
        partitions,
        marked_outputs,
        announced: BTreeMap::new(),
        upstream: HashMap::new(),
    }));
    let mut consumer_config = config.kafka.clone();
    consumer_config
        .set("group.id", &config.application_id)
        .set("group.protocol", "consumer")
        .set("group.remote.assignor", "range")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000");
    if config.exit_at_end_of_input {
        consumer_config.set("enable.partition.eof", "true");
    }
    let consumer: BaseConsumer<RebalanceHook> = consumer_config
        .create_with_context(RebalanceHook {
            task: task.clone(),
            metrics: config.metrics.clone(),
        })
        .map_err(|e| RuntimeError::Setup(format!("consumer: {e}")))?;
    let topics: Vec<&str> = inputs.iter().map(|i| i.topic.as_str()).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| RuntimeError::Setup(format!("subscribe: {e}")))?;
    info!(topics = ?topics, guarantee = ?config.guarantee, "job started");

    let result = poll_loop(&consumer, &task, &config, partitions, &shutdown);
    let mut guard = task.lock().unwrap_or_else(|p| p.into_inner());
    let result = result.and_then(|stop| {
        if stop == Stop::EndOfInput {
            guard.end_of_input()?;
        }
        guard.commit(&consumer)
    });
    if result.is_err() && guard.emitter.transaction_open {
        // Leave nothing open: whatever was not committed is invisible to read_committed readers either way.
        let _ = guard.emitter.producer.abort_transaction(CALL_TIMEOUT);
    }
    let mut summary = guard.summary.clone();
    summary.dead_letters = guard.emitter.dead_letters.values().sum();
    summary.late = guard.emitter.late.values().sum();
    guard.publish();
    drop(guard);
    consumer.unsubscribe();
    result.map(|()| {
        info!(?summary, "job stopped");
        summary
    })
}

/// Why the poll loop returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Shutdown was requested.
    Shutdown,
    /// Every input partition was read to its end (with `exit_at_end_of_input`).
    EndOfInput,
}

fn poll_loop(
    consumer: &BaseConsumer<RebalanceHook>,
    task: &Arc<Mutex<Task>>,
    config: &RuntimeConfig,
    partitions: i32,
    shutdown: &AtomicBool,
) -> Result<Stop, RuntimeError> {
    let lock = || task.lock().unwrap_or_else(|p| p.into_inner());
    let mut last_end_check = Instant::now();
    let mut ends = HashMap::new();
    while !shutdown.load(Ordering::Relaxed) {
        let polled = consumer.poll(Duration::from_millis(100));
        let mut task = lock();
        if let Some(error) = task.failed.take() {
            return Err(error);
        }
        let mut check_end = false;
        match polled {
            None => check_end = last_end_check.elapsed() >= Duration::from_secs(1),
            Some(Ok(message)) => task.handle(&message)?,
            Some(Err(KafkaError::PartitionEOF(_))) => {
                check_end = last_end_check.elapsed() >= Duration::from_secs(1)
            }
            Some(Err(e)) => warn!(error = %e, "consumer error"),
        }
        if task.last_commit.elapsed() >= config.commit_interval {
            task.commit(consumer)?;
            // Measured from the end of the commit: a commit slower than the interval (two broker round trips
            // and the markers) must still leave a full interval of processing before the next one.
            task.last_commit = Instant::now();
        }
        if config.exit_at_end_of_input && check_end {
            last_end_check = Instant::now();
            let every_partition = task.inputs.len() * usize::try_from(partitions).unwrap_or(0);
            if read_to_the_end(consumer, every_partition, &mut ends)? {
                info!("every input partition read to its end: stopping");
                return Ok(Stop::EndOfInput);
            }
        }
    }
    Ok(Stop::Shutdown)
}

/// Whether the consumer owns all `every_partition` input partitions and its position in each has reached the
/// partition's end. (librdkafka's end-of-partition event does not name the topic, so the end is confirmed here.)
///
/// A partition's end is its high watermark when first asked (cached in `ends`): the run reads what the inputs held
/// when it got there, not what arrives afterwards, and later checks compare positions locally. Asking the broker at
/// every check costs a round trip per partition that waits behind the consumer's own long-polling fetches; done once
/// a second, that starved the poll loop.
fn read_to_the_end(
    consumer: &BaseConsumer<RebalanceHook>,
    every_partition: usize,
    ends: &mut HashMap<(String, i32), i64>,
) -> Result<bool, RuntimeError> {
    let Ok(positions) = consumer.position() else {
        return Ok(false);
    };
    if positions.count() < every_partition {
        return Ok(false);
    }
    let mut committed: Option<Option<TopicPartitionList>> = None;
    for element in positions.elements() {
        let key = (element.topic().to_owned(), element.partition());
        let end = match ends.get(&key) {
            Some(end) => *end,
            None => {
                // A broker that does not answer now (restarting, leader moving) means "not known to be at the end
                // yet".
                let Ok((_, high)) =
                    consumer.fetch_watermarks(element.topic(), element.partition(), CALL_TIMEOUT)
                else {
                    return Ok(false);
                };
                ends.insert(key, high);
                high
            }
        };
        let position = match element.offset() {
            Offset::Offset(o) => Some(o),
            // A partition with nothing consumed since its assignment has no position yet: it is where the group's
            // committed offset says.
            _ => committed
                .get_or_insert_with(|| {
                    consumer
                        .committed_offsets(positions.clone(), CALL_TIMEOUT)
                        .ok()
                })
                .as_ref()
                .and_then(|c| c.find_partition(element.topic(), element.partition()))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                }),
        };
        if position.unwrap_or(0) < end {
            debug!(
                topic = element.topic(),
                partition = element.partition(),
                ?position,
                end,
                "not at the end yet"
            );
            return Ok(false);
        }
    }
    Ok(true)
}
