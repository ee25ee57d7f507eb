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

use adstream_kafka::produce::{self, send_waiting_for_room};
use adstream_kafka::read::{self, ReadError, ReadOptions};
use adstream_kafka::registry_client::{FailureKind, RegistryClient, DEFAULT_TIMEOUT};
use adstream_kafka::{is_end_of_partition, QuietEof};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tracing::{debug, info, info_span, warn};

use super::bounded::{self, Abandoned};
use super::checkpoint::{self, TaskCommit, CHECKPOINT_KEY};
use super::emit::{Outgoing, Transport};
use super::headers::KafkaHeaders;
use super::metrics::{Counters, InputLag, JobMetrics};
use super::standby::Standby;
use super::tasks::{correlation_id, EventTimeRules, Tasks};
use super::{
    DecodeError, DeliveryGuarantee, GroupMembership, InputKind, InternalReplication, Operator,
    OutputSpec, Record, RecordHeaders, RuntimeConfig, SchemaCache,
};

/// How long a transactional or admin call may take before it counts as timed out.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the job waits for a transactional call given [`CALL_TIMEOUT`] before it stops waiting: librdkafka
/// does not always keep to the timeout (see [`super::bounded`]).
const CALL_LIMIT: Duration = Duration::from_secs(40);
/// How often a retriable transactional error is retried before the job gives up.
const RETRIES: u32 = 5;
/// The default `transaction.timeout.ms` of the job's producer: how long an instance that died inside a transaction
/// holds back the last stable offset of the partitions it wrote to and the offsets of the partitions it consumed,
/// so how long the next owner of its tasks may have to wait (only when it died inside a commit: the last commit's
/// records come before its open transaction). librdkafka also caps `message.timeout.ms` to it, and a transaction
/// whose records time out cannot always be aborted (the coordinator has given up on it first): the producer fails
/// for good and the job stops. So it must outlast a partition leader's failover under load: with Kafka Streams' 10 s,
/// and with 30 s, the chaos run's cluster (a broker killed while nine debug-build jobs share two cores) timed
/// records out. The client config's `transaction.timeout.ms` (`-X`) overrides it.
const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The job's transaction timeout: the client config's `transaction.timeout.ms`, or the default.
fn transaction_timeout(config: &RuntimeConfig) -> Duration {
    config
        .kafka
        .get("transaction.timeout.ms")
        .and_then(|ms| ms.parse().ok())
        .map_or(DEFAULT_TRANSACTION_TIMEOUT, Duration::from_millis)
}

/// How long a restore may wait for a commit it knows of (see [`checkpoint`]), or for the offsets a dead instance's
/// transaction holds: until that transaction times out, and a call's time on top.
fn restore_timeout(config: &RuntimeConfig) -> Duration {
    transaction_timeout(config) + CALL_TIMEOUT
}
/// How long a task taken over waits for its standby copy to reach the task's last commit before it restores from
/// the changelogs instead (a copy still catching up reads the same records a restore would).
const STANDBY_WAIT: Duration = Duration::from_secs(5);

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
    /// The registry was unavailable for a record's schema; the record was not processed. The live loop pauses and
    /// retries the record; it never leaves the loop with this error.
    #[error("{message}")]
    Transient {
        /// Input index of the record.
        input: usize,
        /// Its partition.
        partition: i32,
        /// Its offset: where the partition resumes.
        offset: i64,
        /// What failed.
        message: String,
    },
    /// The group fenced this instance's consumer, which librdkafka then closes for good: another live instance uses
    /// the same instance id, or a static member whose session timed out while its group coordinator was
    /// unreachable (a broker down) rejoined and was fenced by its own new membership (librdkafka #3437). Nothing
    /// uncommitted is kept; a restart (the orchestrator's) resumes from what was committed.
    #[error("the consumer group fenced this instance, restart it: {0}")]
    Fenced(String),
    /// The schema registry refused the job's requests (credentials, a URL that is not a registry): nothing was
    /// dead-lettered; the job stops until its configuration is fixed.
    #[error("the schema registry refused the request, fix the registry settings: {0}")]
    RegistryRefused(String),
    /// A Kafka client call did not return in time despite its own timeout (see [`super::bounded`]): the client
    /// is stuck and its transaction's outcome unknown; a new run with new clients fences it.
    #[error("a Kafka client stopped responding, starting over with new clients: {0}")]
    Unresponsive(String),
}

impl RuntimeError {
    /// Whether running the job again with new clients can clear the error: the clients are unusable (a fenced
    /// producer or consumer, a transaction in a fatal state after a broker outage) or a commit's or restore's
    /// outcome is unknown, and a new run resumes from what Kafka committed. Not the configuration errors
    /// ([`RuntimeError::Setup`], [`RuntimeError::RegistryRefused`]), which a new run would meet again.
    pub fn clears_on_restart(&self) -> bool {
        match self {
            RuntimeError::Fatal(_)
            | RuntimeError::CommitUnknown(_)
            | RuntimeError::Restore(_)
            | RuntimeError::Delivery(_)
            | RuntimeError::Fenced(_)
            | RuntimeError::Unresponsive(_)
            | RuntimeError::Transient { .. } => true,
            RuntimeError::Setup(_) | RuntimeError::RegistryRefused(_) => false,
        }
    }
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
    /// Wall-clock seconds spent restoring state and tables, over all the run's restores.
    pub restore_seconds: f64,
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

/// The live transport: one producer for outputs, dead letters, late records, markers and changelogs.
pub(crate) struct KafkaTransport {
    /// Threaded: librdkafka's transactional calls (abort in particular) need delivery reports served while they
    /// wait, which a producer polled only from this loop's thread cannot do.
    producer: ThreadedProducer<DeliveryContext>,
    exactly_once: bool,
    transaction_open: bool,
}

impl KafkaTransport {
    fn ensure_transaction(&mut self) -> Result<(), KafkaError> {
        if self.exactly_once && !self.transaction_open {
            self.producer.begin_transaction()?;
            self.transaction_open = true;
        }
        Ok(())
    }
}

impl Transport for KafkaTransport {
    /// Sends one record, waiting out a full local queue. Errors here are enqueue errors (unknown topic, record too
    /// large); delivery errors surface at commit.
    fn send(&mut self, outgoing: &Outgoing<'_>) -> Result<(), KafkaError> {
        self.ensure_transaction()?;
        let mut headers = OwnedHeaders::new_with_capacity(outgoing.headers.len());
        for (key, value) in outgoing.headers {
            headers = headers.insert(Header { key, value: *value });
        }
        let mut record = BaseRecord::to(outgoing.topic)
            .key(outgoing.key)
            .headers(headers);
        if let Some(value) = outgoing.value {
            record = record.payload(value);
        }
        if let Some(partition) = outgoing.partition {
            record = record.partition(partition);
        }
        if let Some(ts) = outgoing.timestamp_ms {
            record = record.timestamp(ts);
        }
        send_waiting_for_room(&self.producer, record).map_err(|refused| refused.0)
    }

    fn send_changelog(&mut self, outgoing: &Outgoing<'_>) -> Result<(), KafkaError> {
        self.send(outgoing)
    }
}

/// Everything the loop and the rebalance callbacks share.
struct Task {
    config: RuntimeConfig,
    /// The operator, its emitter and its tasks' watermarks.
    tasks: Tasks<KafkaTransport>,
    /// The changelog topics of the operator's stores.
    changelogs: Vec<String>,
    /// Warm copies of the state of the tasks this instance does not own, when asked for.
    standby: Option<Standby>,
    /// Next offset to commit per (input index, partition), for partitions with progress since the last commit.
    positions: HashMap<(usize, i32), i64, foldhash::fast::RandomState>,
    /// Partition numbers this member owns.
    owned: BTreeSet<i32>,
    /// Exactly-once with state: the last commit of each owned task, numbered (see [`checkpoint`]).
    task_commits: HashMap<i32, TaskCommit>,
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
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The wall clock in epoch milliseconds, derived from the monotonic instant the poll loop reads anyway, so that a
/// record costs no clock read of its own. Read again from the system every second, so it follows clock steps.
struct WallClock {
    base: Instant,
    base_ms: i64,
}

impl WallClock {
    fn new() -> WallClock {
        WallClock {
            base: Instant::now(),
            base_ms: now_ms(),
        }
    }

    /// Epoch milliseconds at `now`.
    fn at(&mut self, now: Instant) -> i64 {
        let since = now.saturating_duration_since(self.base);
        if since >= Duration::from_secs(1) {
            *self = WallClock::new();
            return self.base_ms;
        }
        self.base_ms + since.as_millis() as i64
    }
}

impl Task {
    /// Processes `message`, read at `now` (epoch milliseconds).
    fn handle(&mut self, message: &BorrowedMessage<'_>, now: i64) -> Result<(), RuntimeError> {
        let Some(input) = self
            .tasks
            .inputs
            .iter()
            .position(|i| i.topic == message.topic())
        else {
            return Ok(());
        };
        let headers = RecordHeaders::Kafka(KafkaHeaders::of(message));
        if self.tasks.marker(input, message.partition(), headers, now) {
            self.positions
                .insert((input, message.partition()), message.offset() + 1);
            return Ok(());
        }
        // The input's name is the message's topic, without reading it from librdkafka again.
        let correlation_id = correlation_id(
            headers,
            &self.tasks.inputs[input].topic,
            message.partition(),
            message.offset(),
        );
        let record = Record {
            input,
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key(),
            value: message.payload(),
            headers,
            correlation_id: &correlation_id,
        };
        self.records_in[input] += 1;
        let append_time = match message.timestamp() {
            rdkafka::Timestamp::LogAppendTime(t) => Some(t),
            _ => None,
        };
        if self.tasks.inputs[input].kind == InputKind::Stream {
            self.uncommitted
                .push((record.timestamp_ms, append_time, now));
        }
        self.tasks.process(&record, now)?;
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
        // Idleness is for partitions that have nothing to deliver: one that still lags behind its end, or whose
        // end is held back by an open transaction, is kept active however long its records take to arrive. The
        // second matters for a repartition topic whose writer died inside a transaction: nothing is readable
        // until the transaction times out (a minute), and idleness after 30 s would let the other inputs move the
        // watermark past the records still in it, which then arrive late.
        for (partition, task) in &mut self.tasks.watermarks {
            for (input, spec) in self.tasks.inputs.iter().enumerate() {
                if spec.kind == InputKind::Stream
                    && self
                        .metrics
                        .lag(&spec.topic, *partition)
                        .is_some_and(|lag| lag.has_more())
                {
                    task.mark_active(input, now);
                }
            }
        }
        let config = &self.config;
        let error = self
            .tasks
            .prepare_commit(now, |store| config.changelog_topic(store));
        if let Some(e) = error {
            return self.abort_and_rewind(consumer, &format!("enqueue failed: {e}"));
        }
        if self.positions.is_empty() && !self.tasks.emitter.transport.transaction_open {
            return Ok(());
        }
        let numbered = self.number_task_commits();
        if let Some(e) = self.send_checkpoints(&numbered) {
            return self.abort_and_rewind(consumer, &format!("enqueue failed: {e}"));
        }
        let mut offsets = TopicPartitionList::new();
        for ((input, partition), (offset, number)) in self.offsets_to_commit(&numbered) {
            let mut element = offsets.add_partition(&self.tasks.inputs[input].topic, partition);
            element
                .set_offset(Offset::Offset(offset))
                .map_err(|e| RuntimeError::Fatal(format!("offset list: {e}")))?;
            if let Some(number) = number {
                let watermark = self.task_commits.get(&partition).and_then(|c| c.watermark);
                element.set_metadata(checkpoint::offset_metadata(number, watermark));
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

    /// Exactly-once with state: numbers the commit being prepared for every owned task with a known input position
    /// (see [`checkpoint`]) and takes this interval's progress into the tasks' offsets. Returns the tasks numbered.
    fn number_task_commits(&mut self) -> BTreeMap<i32, u64> {
        let mut numbered = BTreeMap::new();
        for (partition, commit) in &mut self.task_commits {
            // Just computed by the commit's preparation.
            commit.watermark = commit
                .watermark
                .max(self.tasks.task_watermarks.get(partition).copied().flatten());
            for ((input, position_partition), offset) in &self.positions {
                if position_partition == partition {
                    commit.offsets.insert(*input, *offset);
                }
            }
            // A task that read nothing yet and has no committed offsets has nothing to carry the number: its
            // restore has nothing to wait for either.
            if commit.offsets.is_empty() {
                continue;
            }
            commit.number += 1;
            numbered.insert(*partition, commit.number);
        }
        numbered
    }

    /// Writes the checkpoint of each numbered task into every changelog partition of the task, in the open
    /// transaction. Returns the first enqueue error.
    fn send_checkpoints(&mut self, numbered: &BTreeMap<i32, u64>) -> Option<KafkaError> {
        let transport = &mut self.tasks.emitter.transport;
        for (partition, number) in numbered {
            let value = checkpoint::checkpoint_value(*number);
            for topic in &self.changelogs {
                let sent = transport.send_changelog(&Outgoing {
                    topic,
                    partition: Some(*partition),
                    key: CHECKPOINT_KEY,
                    value: Some(value.as_bytes()),
                    timestamp_ms: None,
                    headers: &[],
                });
                if let Err(e) = sent {
                    return Some(e);
                }
            }
        }
        None
    }

    /// Offset (and commit number, for a numbered task) to commit per (input index, partition): this interval's
    /// progress, and every known input offset of a numbered task, so that the number is committed with each of
    /// the task's inputs whichever of them moved.
    fn offsets_to_commit(
        &self,
        numbered: &BTreeMap<i32, u64>,
    ) -> BTreeMap<(usize, i32), (i64, Option<u64>)> {
        let mut offsets: BTreeMap<(usize, i32), (i64, Option<u64>)> = self
            .positions
            .iter()
            .map(|(key, offset)| (*key, (*offset, None)))
            .collect();
        for (partition, number) in numbered {
            if let Some(commit) = self.task_commits.get(partition) {
                for (input, offset) in &commit.offsets {
                    offsets.insert((*input, *partition), (*offset, Some(*number)));
                }
            }
        }
        offsets
    }

    /// At-least-once between commits ([`RuntimeConfig::flush_interval`]): emits what is due and writes the
    /// changelogs, as a commit does, and leaves them to the producer (sent within its `linger.ms`) without
    /// committing offsets, so readers see outputs every few milliseconds while offsets commit at the commit
    /// interval. A crash repeats the records since the last commit, as at-least-once says.
    fn flush<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), RuntimeError> {
        let config = &self.config;
        match self
            .tasks
            .prepare_commit(now_ms(), |store| config.changelog_topic(store))
        {
            Some(e) => self.abort_and_rewind(consumer, &format!("enqueue failed: {e}")),
            None => Ok(()),
        }
    }

    /// After a successful commit: its duration, latencies of the records it covered, and a fresh copy of the
    /// counters for the metrics endpoint.
    fn record_commit(&mut self) {
        // `commit` set `last_commit` as it started.
        self.counters
            .commit_duration
            .observe(self.last_commit.elapsed().as_secs_f64());
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
        for (input, n) in self.tasks.inputs.iter().zip(&self.records_in) {
            c.records_in.insert(input.topic.clone(), *n);
        }
        let emitter = &self.tasks.emitter;
        for (topic, n) in emitter.outputs.iter().zip(&emitter.sent_outputs) {
            c.records_out.insert(topic.clone(), *n);
        }
        for (topic, n) in &emitter.sent_changelog {
            c.records_out.insert(topic.clone(), *n);
        }
        let mut dead_letters_per_topic: BTreeMap<String, u64> = BTreeMap::new();
        for ((topic, class), n) in &emitter.dead_letters {
            *dead_letters_per_topic
                .entry(format!("dlq.{topic}"))
                .or_default() += n;
            c.dead_letters.insert((topic.clone(), class.clone()), *n);
        }
        c.records_out.extend(dead_letters_per_topic);
        for (topic, n) in &emitter.late {
            c.records_out.insert(format!("late.{topic}"), *n);
            c.late.insert(topic.clone(), *n);
        }
        c.commits = self.summary.commits;
        c.aborts = self.summary.aborts;
        c.restored = self.summary.restored;
        c.restore_seconds = self.summary.restore_seconds;
        c.watermarks = self
            .tasks
            .task_watermarks
            .iter()
            .filter_map(|(p, w)| w.map(|w| (*p, w)))
            .collect();
        c.job = self.tasks.operator.counters();
        self.metrics.publish(c);
    }

    fn commit_transaction<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
    ) -> Result<(), RuntimeError> {
        let transport = &mut self.tasks.emitter.transport;
        let producer = &transport.producer;
        if !transport.transaction_open {
            retry("begin transaction", || Ok(producer.begin_transaction()?))
                .map_err(|e| classify(e, "begin"))?;
            transport.transaction_open = true;
        }
        let group = consumer
            .group_metadata()
            .ok_or_else(|| RuntimeError::Fatal("consumer has no group metadata".into()))?;
        let group = Arc::new(group);
        let outcome = retry("send offsets", || {
            send_offsets(producer, offsets, &group, CALL_TIMEOUT, CALL_LIMIT)
        })
        .and_then(|()| {
            // rdkafka's commit_transaction flushes first, polling for up to 100 ms at a time while the producer's
            // own thread takes the delivery events that would end the poll: a commit with records in flight took
            // about 100 ms more, and exactly-once readers waited with it. Flushed here in 1 ms steps, its flush
            // finds nothing in flight. The outcome is the commit's: it flushes again and reports what failed, as
            // the transaction API classifies it.
            let _ = produce::flush(producer, CALL_TIMEOUT);
            retry("commit", || Ok(producer.commit_transaction(CALL_TIMEOUT)?))
        });
        match outcome {
            Ok(()) => {
                transport.transaction_open = false;
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
        produce::flush(&self.tasks.emitter.transport.producer, CALL_TIMEOUT)
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
        let transport = &mut self.tasks.emitter.transport;
        if transport.transaction_open {
            retry("abort", || {
                Ok(transport.producer.abort_transaction(CALL_TIMEOUT)?)
            })
            .map_err(|e| classify(e, "abort"))?;
            transport.transaction_open = false;
        }
        self.summary.aborts += 1;
        self.positions.clear();
        // Aborted work is reprocessed; its latencies count when it commits.
        self.uncommitted.clear();
        let owned: Vec<i32> = self.owned.iter().copied().collect();
        for partition in &owned {
            self.tasks.drop_partition(*partition);
        }
        self.task_commits.clear();
        self.restore(consumer, &owned)?;
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

    /// The last commit of each task of `partitions` as the group has it: its number (the highest in its input
    /// offsets' metadata, 0 when none has one) and its input offsets. The group coordinator answers only once no
    /// transaction holding offsets of these partitions is pending (`read_committed` asks for stable offsets), so
    /// this can wait out a dead instance's transaction.
    fn committed_task_commits<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, TaskCommit>, RuntimeError> {
        let mut list = TopicPartitionList::new();
        for input in &self.tasks.inputs {
            for partition in partitions {
                list.add_partition(&input.topic, *partition);
            }
        }
        let committed = consumer
            .committed_offsets(list, restore_timeout(&self.config))
            .map_err(|e| RuntimeError::Restore(format!("committed offsets: {e}")))?;
        let mut commits: BTreeMap<i32, TaskCommit> = partitions
            .iter()
            .map(|partition| (*partition, TaskCommit::default()))
            .collect();
        for element in committed.elements() {
            let Some(input) = self
                .tasks
                .inputs
                .iter()
                .position(|i| i.topic == element.topic())
            else {
                continue;
            };
            let Some(commit) = commits.get_mut(&element.partition()) else {
                continue;
            };
            if let Offset::Offset(offset) = element.offset() {
                commit.offsets.insert(input, offset);
            }
            if let Some((number, watermark)) = checkpoint::parse_offset_metadata(element.metadata())
            {
                commit.number = commit.number.max(number);
                commit.watermark = commit.watermark.max(watermark);
            }
        }
        Ok(commits)
    }

    /// Restores the stores of `partitions` from their changelogs and reads their tables to the end. Under
    /// exactly-once each changelog partition is read until it holds the task's last commit (see [`checkpoint`]).
    fn restore<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &[i32],
    ) -> Result<(), RuntimeError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        self.metrics.set_restoring(true);
        let mut commits = if self.config.guarantee == DeliveryGuarantee::ExactlyOnce
            && !self.changelogs.is_empty()
        {
            self.committed_task_commits(consumer, partitions)?
        } else {
            BTreeMap::new()
        };
        // Tasks whose standby copy holds their last commit take it; the others read their changelogs.
        let mut from_changelogs: Vec<i32> = partitions.to_vec();
        if let Some(standby) = &self.standby {
            let operator = &mut self.tasks.operator;
            // One wait for all the tasks: a follower still catching up is behind on every one of them.
            let deadline = Instant::now() + STANDBY_WAIT;
            from_changelogs.retain(|partition| {
                let number = commits.get(partition).map_or(0, |c| c.number);
                let wait = deadline.saturating_duration_since(Instant::now());
                let promoted = standby.promote(*partition, number, operator.stores(), wait);
                if !promoted {
                    standby.activate(*partition);
                }
                !promoted
            });
            let promoted = partitions.len() - from_changelogs.len();
            self.counters.standby_promotions += promoted as u64;
            info!(
                promoted,
                from_changelogs = from_changelogs.len(),
                standby_records = standby.applied(),
                "standby copies taken over"
            );
        }
        let mut restored = 0u64;
        let config = &self.config;
        // One reader for every topic of the restore: a consumer per topic cost a connection, its metadata and its
        // teardown each time, about 0.1 s per topic before the first record.
        let reader = restore_reader(config)?;
        for store in self.tasks.operator.stores() {
            if from_changelogs.is_empty() {
                break;
            }
            let topic = config.changelog_topic(store.name());
            // The newest checkpoint read per partition; shared by the record callback and the end test.
            let checkpoints = std::cell::RefCell::new(BTreeMap::<i32, u64>::new());
            restored += read_for_restore(
                &reader,
                config,
                &topic,
                &from_changelogs,
                |partition, _, key, value| {
                    if key == Some(CHECKPOINT_KEY) {
                        let number = checkpoint::parse_checkpoint(value).ok_or_else(|| {
                            format!(
                                "partition {partition}: a checkpoint record that is not a number"
                            )
                        })?;
                        checkpoints.borrow_mut().insert(partition, number);
                        return Ok(());
                    }
                    store
                        .restore(partition, key.unwrap_or_default(), value)
                        .map_err(|e| e.to_string())
                },
                |partition| {
                    let needed = commits.get(&partition).map_or(0, |c| c.number);
                    checkpoints.borrow().get(&partition).copied().unwrap_or(0) >= needed
                },
            )?;
            // A checkpoint beyond the group's number cannot come from a commit the group has not seen (both are in
            // one transaction); the maximum keeps the numbering increasing whatever the offsets' metadata says.
            for (partition, number) in checkpoints.into_inner() {
                if let Some(commit) = commits.get_mut(&partition) {
                    commit.number = commit.number.max(number);
                }
            }
        }
        let tables: Vec<(usize, String)> = self
            .tasks
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, i)| i.kind == InputKind::Table)
            .map(|(n, i)| (n, i.topic.clone()))
            .collect();
        for (input, topic) in tables {
            let now = now_ms();
            let tasks = &mut self.tasks;
            restored += read_for_restore(
                &reader,
                &self.config,
                &topic,
                partitions,
                |partition, offset, key, value| {
                    // A table row the registry cannot be asked about now is waited for (about two minutes at
                    // most, inside the rebalance: well within the consumer's max.poll.interval.ms), never skipped.
                    let mut pause = Backoff::default();
                    loop {
                        match tasks.bootstrap(input, partition, offset, key, value, now) {
                            Ok(()) => return Ok(()),
                            Err(e) if e.is_transient() && pause.failures < BOOTSTRAP_RETRIES => {
                                let wait = pause.next();
                                warn!(error = %e, topic = %topic, partition, offset, retry_in_ms = wait.as_millis() as u64, "table record waits for the schema registry");
                                std::thread::sleep(wait);
                            }
                            Err(source) => {
                                return Err(TableRowError {
                                    topic: topic.clone(),
                                    partition,
                                    offset,
                                    source,
                                })
                            }
                        }
                    }
                },
                |_| true,
            )?;
        }
        self.tasks.operator.on_restored(partitions);
        self.task_commits.extend(commits);
        self.summary.restored += restored;
        self.summary.restore_seconds += started.elapsed().as_secs_f64();
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

/// A table row that could not be bootstrapped while restoring.
#[derive(Debug, thiserror::Error)]
#[error("{topic}/{partition}/{offset}: {source}")]
struct TableRowError {
    topic: String,
    partition: i32,
    offset: i64,
    source: DecodeError,
}

/// The consumer a restore reads its changelogs and tables with (`read_committed`, assigned, never subscribed).
fn restore_reader(config: &RuntimeConfig) -> Result<BaseConsumer<QuietEof>, RuntimeError> {
    read::reader_config(
        &config.kafka,
        &format!("{}-restore", config.application_id),
        true,
    )
    .create_with_context(QuietEof)
    .map_err(|e| RuntimeError::Restore(format!("consumer: {e}")))
}

/// Reads partitions `partitions` of `topic` with `consumer` (its assignment is replaced) from the beginning to
/// their end and on until `finished(partition)`, handing each record to `apply`. Logs progress every 100,000
/// records. Returns the number of records read.
fn read_for_restore<E: std::fmt::Display>(
    consumer: &BaseConsumer<QuietEof>,
    config: &RuntimeConfig,
    topic: &str,
    partitions: &[i32],
    mut apply: impl FnMut(i32, i64, Option<&[u8]>, Option<&[u8]>) -> Result<(), E>,
    finished: impl FnMut(i32) -> bool,
) -> Result<u64, RuntimeError> {
    let options = ReadOptions {
        stall_timeout: restore_timeout(config),
        ..ReadOptions::default()
    };
    let started = Instant::now();
    let mut count = 0u64;
    let on_record = |message: &BorrowedMessage<'_>| {
        apply(
            message.partition(),
            message.offset(),
            message.key(),
            message.payload(),
        )?;
        count += 1;
        if count.is_multiple_of(100_000) {
            info!(
                topic,
                records = count,
                rate = count as f64 / started.elapsed().as_secs_f64().max(1e-9),
                "restoring"
            );
        }
        Ok(())
    };
    read::read_until(consumer, topic, partitions, &options, on_record, finished).map_err(
        |e: ReadError<E>| match e {
            ReadError::Record(error) => RuntimeError::Restore(format!("{topic}: {error}")),
            other => RuntimeError::Restore(other.to_string()),
        },
    )
}

/// How long a job keeps asking for its producer id while the broker answers that it is not ready: a broker
/// restarted with thousands of partitions answers "not coordinator" until it has loaded its transaction state, a
/// minute or more after it accepts connections.
const INIT_TRANSACTIONS_LIMIT: Duration = Duration::from_secs(300);

/// Initialises the transactional producer, which also fences and aborts whatever a previous incarnation with the
/// same transactional id left open. A retriable failure (the coordinator not ready or moving, the call's `timeout`
/// passed) is retried until `limit`: the broker answered, it is not ready yet, and a job must wait for it rather
/// than exit; `waiting` is called before each wait.
fn init_transactions<C: ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    timeout: Duration,
    limit: Duration,
    shutdown: &AtomicBool,
    mut waiting: impl FnMut(),
) -> Result<(), RuntimeError> {
    let started = Instant::now();
    loop {
        match producer.init_transactions(timeout) {
            Ok(()) => return Ok(()),
            Err(KafkaError::Transaction(e))
                if e.is_retriable()
                    && started.elapsed() < limit
                    && !shutdown.load(Ordering::Relaxed) =>
            {
                warn!(
                    error = %e,
                    waited_secs = started.elapsed().as_secs(),
                    "the transaction coordinator is not ready: retrying"
                );
                waiting();
                sleep_unless_shutdown(Duration::from_secs(1), shutdown);
            }
            Err(e) => return Err(RuntimeError::Setup(format!("init transactions: {e}"))),
        }
    }
}

/// Why a transactional call failed.
#[derive(Debug)]
enum CallFailure {
    /// librdkafka returned an error.
    Kafka(KafkaError),
    /// librdkafka did not return in time.
    Abandoned(Abandoned),
}

impl From<KafkaError> for CallFailure {
    fn from(error: KafkaError) -> Self {
        CallFailure::Kafka(error)
    }
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallFailure::Kafka(e) => e.fmt(f),
            CallFailure::Abandoned(e) => e.fmt(f),
        }
    }
}

/// Adds the consumed `offsets` to the producer's open transaction, giving up after `limit` if librdkafka does not
/// return from the call it was given `timeout` for (see [`super::bounded`]).
fn send_offsets<C: ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    offsets: &TopicPartitionList,
    group: &Arc<ConsumerGroupMetadata>,
    timeout: Duration,
    limit: Duration,
) -> Result<(), CallFailure> {
    let (producer, offsets, group) = (producer.clone(), offsets.clone(), Arc::clone(group));
    bounded::within("send_offsets_to_transaction", limit, move || {
        producer.send_offsets_to_transaction(&offsets, &group, timeout)
    })
    .map_err(CallFailure::Abandoned)?
    .map_err(CallFailure::Kafka)
}

/// Retries `call` while librdkafka says the error is retriable.
fn retry(what: &str, mut call: impl FnMut() -> Result<(), CallFailure>) -> Result<(), CallFailure> {
    let mut attempt = 0;
    loop {
        match call() {
            Err(CallFailure::Kafka(KafkaError::Transaction(e)))
                if e.is_retriable() && attempt < RETRIES =>
            {
                attempt += 1;
                warn!(what, attempt, error = %e, "retrying");
                std::thread::sleep(Duration::from_millis(100 << attempt.min(4)));
            }
            other => return other,
        }
    }
}

fn requires_abort(error: &CallFailure) -> bool {
    matches!(error, CallFailure::Kafka(KafkaError::Transaction(e)) if e.txn_requires_abort())
}

/// Maps a transactional error that was neither retried away nor abortable.
fn classify(error: CallFailure, what: &str) -> RuntimeError {
    match &error {
        CallFailure::Abandoned(_) => RuntimeError::Unresponsive(format!("{what}: {error}")),
        CallFailure::Kafka(KafkaError::Transaction(e)) if e.is_fatal() => {
            RuntimeError::Fatal(format!("{what}: {error}"))
        }
        CallFailure::Kafka(_) => RuntimeError::CommitUnknown(format!("{what}: {error}")),
    }
}

/// The lag of a partition this member consumes, from its statistics: the last stable offset minus the position of
/// what the application received (or the committed/low offset before it received anything). None for a partition
/// it does not consume: librdkafka reports every partition of a subscribed topic, and counting the others' (from
/// their low offset) showed another instance's whole partitions as this one's lag.
fn partition_lag(p: &rdkafka::statistics::Partition) -> Option<InputLag> {
    // "none", "stopping", "stopped": not assigned (any more); the other states fetch or are about to.
    if p.ls_offset < 0 || matches!(p.fetch_state.as_str(), "none" | "stopping" | "stopped") {
        return None;
    }
    let from = [p.app_offset, p.committed_offset, p.lo_offset]
        .into_iter()
        .find(|offset| *offset >= 0)?;
    Some(InputLag {
        records: (p.ls_offset - from).max(0),
        // The position moves past commit markers (it is the high watermark once everything committed is read),
        // so a high watermark beyond the last stable offset means a transaction still open.
        open_transaction: p.hi_offset > p.ls_offset,
    })
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
        // Each snapshot lists every partition, so it replaces the lags whole: a snapshot taken before a revocation
        // and delivered after it set the revoked partitions' lag again, and nothing ever removed it (an instance
        // that handed two partitions back reported their lag from before the hand-over for good).
        self.metrics.replace_lag(consumed_lags(&statistics));
    }
}

/// The lag of every partition this member consumes in `statistics` (see [`partition_lag`]).
fn consumed_lags(statistics: &rdkafka::Statistics) -> BTreeMap<(String, i32), InputLag> {
    let mut lags = BTreeMap::new();
    for (topic, stats) in &statistics.topics {
        for (partition, p) in &stats.partitions {
            // Partition -1 is librdkafka's internal queue. librdkafka's own consumer_lag is measured from the
            // consumer's committed offset, which it does not learn when offsets are committed through the
            // producer's transactions; so the lag is the last stable offset minus the position of what the
            // application received (or the committed/low offset before it received anything).
            if *partition < 0 {
                continue;
            }
            if let Some(lag) = partition_lag(p) {
                lags.insert((topic.clone(), *partition), lag);
            }
        }
    }
    lags
}

impl ConsumerContext for RebalanceHook {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let revoked = match rebalance {
            Rebalance::Revoke(list) => partitions_of(list),
            _ => return,
        };
        // The consumer closing while the job thread unwinds from a panic (an operator bug) revokes everything:
        // committing would run the operator that just panicked, and a second panic there left the consumer's close
        // waiting forever — the job hung instead of stopping. Whatever was not committed is not committed; the
        // next owner starts from the last commit.
        if std::thread::panicking() {
            return;
        }
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
                // Committed just above: the state is the task's last commit, a copy to keep warm.
                let task = &mut *task;
                if let Some(standby) = &task.standby {
                    standby.demote(partition, task.tasks.operator.stores());
                }
                task.tasks.drop_partition(partition);
            }
            task.task_commits.remove(&partition);
            task.tasks.revoke(partition);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let assigned = match rebalance {
            Rebalance::Assign(list) => partitions_of(list),
            _ => return,
        };
        if std::thread::panicking() {
            return;
        }
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
        // What the owned tasks did since the last commit commits first: a restore can outlast the transaction
        // timeout, which would abort it (and rewind every task) at the next commit.
        if let Err(e) = task.commit(consumer) {
            task.failed = Some(e);
            return;
        }
        if let Err(e) = task.restore(consumer, &new) {
            task.failed = Some(e);
            return;
        }
        task.metrics.set_ready(true);
        let now = now_ms();
        for partition in new {
            task.owned.insert(partition);
            task.tasks.assign(partition, now);
            if let Some(watermark) = task.task_commits.get(&partition).and_then(|c| c.watermark) {
                task.tasks.resume_watermark(partition, watermark);
            }
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
    shutdown: &AtomicBool,
) -> Result<Prepared, RuntimeError> {
    let setup = |m: String| RuntimeError::Setup(m);
    let min_insync = config
        .internal_topics
        .min_insync_replicas
        .map(|n| n.to_string());
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
        let repartitions: Vec<InternalTopic<'_>> = internal
            .iter()
            .map(|(name, count)| InternalTopic {
                name: name.clone(),
                partitions: *count,
                configs: vec![("retention.ms", "-1")],
            })
            .collect();
        let topics = internal_topic_requests(&repartitions, config.internal_topics, &min_insync);
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
    let wanted: Vec<InternalTopic<'_>> = wanted
        .into_iter()
        .filter(|(name, _)| partition_count(name).is_none())
        .map(|(name, configs)| InternalTopic {
            name,
            partitions,
            configs,
        })
        .collect();
    let missing = internal_topic_requests(&wanted, config.internal_topics, &min_insync);
    create_topics(&admin, &missing, runtime)?;
    let registry = RegistryClient::connect(&config.registry, DEFAULT_TIMEOUT)
        .map_err(|e| setup(e.to_string()))?;
    let mut ids = Vec::new();
    for OutputSpec {
        topic,
        value_schema,
        ..
    } in operator.outputs()
    {
        let subject = format!("{topic}-value");
        // A registry that is restarting (or a gateway saying so) is waited for, like one that is down while
        // records are processed; a refusal (credentials, an incompatible schema) stops the job.
        let mut pause = Backoff::default();
        let id = loop {
            match runtime.block_on(registry.register(&subject, value_schema)) {
                Ok(id) => break id,
                Err(e)
                    if e.kind() == FailureKind::Retriable && !shutdown.load(Ordering::Relaxed) =>
                {
                    let wait = pause.next();
                    warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "schema registry unavailable at start-up: waiting");
                    sleep_unless_shutdown(wait, shutdown);
                }
                Err(e) => return Err(setup(format!("register {subject}: {e}"))),
            }
        };
        ids.push(id);
    }
    operator
        .set_output_schema_ids(&ids)
        .map_err(|e| setup(e.to_string()))?;
    Ok(Prepared {
        partitions,
        marked_outputs,
    })
}

/// Runs `operator` until `shutdown` is set, then commits and leaves the group. Blocking: call it from a thread
/// (or `spawn_blocking`); `runtime` serves the registry and admin calls.
pub fn run(
    config: RuntimeConfig,
    operator: Box<dyn Operator>,
    shutdown: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
) -> Result<RunSummary, RuntimeError> {
    run_with_standby(config, operator, None, shutdown, runtime)
}

/// [`run`], keeping standby copies (see [`standby`](super::standby)) of the state of every task this instance
/// does not own in the stores of `standby`, a second instance of the same operator (built with the same settings),
/// when it is given and the job is exactly-once with state.
pub fn run_with_standby(
    config: RuntimeConfig,
    mut operator: Box<dyn Operator>,
    standby: Option<Box<dyn Operator>>,
    shutdown: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
) -> Result<RunSummary, RuntimeError> {
    let span =
        info_span!("job", application_id = %config.application_id, instance = %config.instance_id);
    let _entered = span.enter();
    let Prepared {
        partitions,
        marked_outputs,
    } = prepare(&config, operator.as_mut(), &runtime, &shutdown)?;
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
            .set(
                "transaction.timeout.ms",
                transaction_timeout(&config).as_millis().to_string(),
            );
    }
    let producer: ThreadedProducer<DeliveryContext> = producer_config
        .create_with_context(DeliveryContext(delivery.clone()))
        .map_err(|e| RuntimeError::Setup(format!("producer: {e}")))?;
    let inputs = operator.inputs();
    let transport = KafkaTransport {
        producer,
        exactly_once,
        transaction_open: false,
    };
    let registry = RegistryClient::connect(&config.registry, DEFAULT_TIMEOUT)
        .map_err(|e| RuntimeError::Setup(e.to_string()))?;
    let mut tasks = Tasks::new(
        operator,
        &config.application_id,
        transport,
        SchemaCache::new(registry, runtime.clone()),
        EventTimeRules {
            idle_timeout: config.idle_timeout,
            max_event_time_ahead: Some(config.max_event_time_ahead),
        },
        partitions,
        marked_outputs,
    );
    let changelogs: Vec<String> = tasks
        .operator
        .stores()
        .iter()
        .map(|store| config.changelog_topic(store.name()))
        .collect();
    // Copies are only as good as the checkpoints that say how far they are, which exactly-once commits write.
    let standby = match standby {
        Some(copies) if exactly_once && !changelogs.is_empty() => Some(
            Standby::start(&config, copies, changelogs.clone(), partitions)
                .map_err(|e| RuntimeError::Setup(e.to_string()))?,
        ),
        Some(_) => {
            warn!("standby copies need exactly-once and state: none kept");
            None
        }
        None => None,
    };
    let task = Arc::new(Mutex::new(Task {
        config: config.clone(),
        tasks,
        changelogs,
        standby,
        positions: HashMap::default(),
        owned: BTreeSet::new(),
        task_commits: HashMap::new(),
        delivery,
        summary: RunSummary::default(),
        metrics: config.metrics.clone(),
        counters: Counters::default(),
        records_in: vec![0; inputs.len()],
        uncommitted: Vec::new(),
        last_commit: Instant::now(),
        failed: None,
    }));
    let topics: Vec<&str> = inputs.iter().map(|i| i.topic.as_str()).collect();
    let consumer: BaseConsumer<RebalanceHook> = consumer_config(&config)
        .create_with_context(RebalanceHook {
            task: task.clone(),
            metrics: config.metrics.clone(),
        })
        .map_err(|e| RuntimeError::Setup(format!("consumer: {e}")))?;
    let subscribe = || {
        consumer
            .subscribe(&topics)
            .map_err(|e| RuntimeError::Setup(format!("subscribe: {e}")))
    };
    // The group join goes on in librdkafka's threads while the producer gets its id (half a second of an
    // exactly-once start): no partition is processed before the first poll, which comes after both. If the
    // coordinator is not ready, the job leaves the group while it waits, so that the others keep its partitions.
    subscribe()?;
    if exactly_once {
        let guard = task.lock().unwrap_or_else(|p| p.into_inner());
        let mut left = false;
        init_transactions(
            &guard.tasks.emitter.transport.producer,
            CALL_TIMEOUT,
            INIT_TRANSACTIONS_LIMIT,
            &shutdown,
            || {
                if !left {
                    consumer.unsubscribe();
                    left = true;
                }
            },
        )?;
        drop(guard);
        if left {
            subscribe()?;
        }
    }
    info!(topics = ?topics, guarantee = ?config.guarantee, "job started");
    let result = poll_loop(&consumer, &task, &config, partitions, &shutdown);
    let mut guard = task.lock().unwrap_or_else(|p| p.into_inner());
    let result = result.and_then(|stop| {
        if stop == Stop::EndOfInput {
            guard.tasks.end_of_input(now_ms())?;
        }
        guard.commit(&consumer)
    });
    let transport = &guard.tasks.emitter.transport;
    if result.is_err() && transport.transaction_open {
        // Leave nothing open: whatever was not committed is invisible to read_committed readers either way.
        let _ = transport.producer.abort_transaction(CALL_TIMEOUT);
    }
    let mut summary = guard.summary.clone();
    summary.dead_letters = guard.tasks.emitter.dead_letters.values().sum();
    summary.late = guard.tasks.emitter.late.values().sum();
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

/// The consumer's settings: the user's client config, the group membership, and what exactly-once reading needs.
fn consumer_config(config: &RuntimeConfig) -> ClientConfig {
    let mut consumer_config = config.kafka.clone();
    consumer_config.set("group.id", &config.application_id);
    // Range assignment keeps partition n of every co-partitioned input on one instance.
    match config.membership {
        GroupMembership::Dynamic => consumer_config
            .set("group.protocol", "consumer")
            .set("group.remote.assignor", "range"),
        GroupMembership::Static { session_timeout } => consumer_config
            .set("group.protocol", "classic")
            .set("partition.assignment.strategy", "range")
            .set(
                "group.instance.id",
                format!("{}-{}", config.application_id, config.instance_id),
            )
            .set(
                "session.timeout.ms",
                session_timeout.as_millis().to_string(),
            ),
    };
    consumer_config
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000");
    // On a backlog the job drains its queue faster than librdkafka's default 1 s pause allows.
    read::without_fetch_queue_backoff(&mut consumer_config);
    if config.exit_at_end_of_input {
        consumer_config.set("enable.partition.eof", "true");
    }
    consumer_config
}

/// How long one consumer poll waits for a record.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

fn poll_loop(
    consumer: &BaseConsumer<RebalanceHook>,
    task: &Arc<Mutex<Task>>,
    config: &RuntimeConfig,
    partitions: i32,
    shutdown: &AtomicBool,
) -> Result<Stop, RuntimeError> {
    let lock = || task.lock().unwrap_or_else(|p| p.into_inner());
    let mut pause = Backoff::default();
    let mut last_end_check = Instant::now();
    let mut ends = HashMap::new();
    // At-least-once flushes between commits; a poll must not wait longer than a flush interval.
    let flush_interval = config
        .flush_interval
        .filter(|_| config.guarantee == DeliveryGuarantee::AtLeastOnce);
    let poll_timeout = flush_interval.map_or(POLL_TIMEOUT, |f| f.min(POLL_TIMEOUT));
    let mut last_flush = Instant::now();
    let mut wall_clock = WallClock::new();
    let metrics = lock().metrics.clone();
    let _leaves = LeavesLoop(&metrics);
    while !shutdown.load(Ordering::Relaxed) {
        let polled = consumer.poll(poll_timeout);
        let now = Instant::now();
        metrics.turned(now);
        let mut task = lock();
        if let Some(error) = task.failed.take() {
            return Err(error);
        }
        let mut check_end = false;
        match polled {
            None => check_end = last_end_check.elapsed() >= Duration::from_secs(1),
            Some(Ok(message)) => match task.handle(&message, wall_clock.at(now)) {
                Err(RuntimeError::Transient {
                    input,
                    partition,
                    offset,
                    message: reason,
                }) => {
                    drop(message);
                    task.commit(consumer)?;
                    let topic = task.tasks.inputs[input].topic.clone();
                    consumer
                        .seek(&topic, partition, Offset::Offset(offset), CALL_TIMEOUT)
                        .map_err(|e| {
                            RuntimeError::Fatal(format!(
                                "seek {topic}/{partition} to {offset}: {e}"
                            ))
                        })?;
                    drop(task);
                    let wait = pause.next();
                    warn!(
                        error = %reason,
                        topic = %topic,
                        partition,
                        offset,
                        retry_in_ms = wait.as_millis() as u64,
                        "a dependency is unavailable: progress committed, pausing before retrying the record"
                    );
                    sleep_unless_shutdown(wait, shutdown);
                    continue;
                }
                Err(other) => return Err(other),
                Ok(()) => pause.reset(),
            },
            Some(Err(KafkaError::PartitionEOF(_))) => {
                check_end = last_end_check.elapsed() >= Duration::from_secs(1)
            }
            // A fatal consumer error leaves the consumer unusable: polling on would process nothing while the
            // job looks alive.
            Some(Err(KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::FencedInstanceId))) => {
                return Err(RuntimeError::Fenced(
                    consumer
                        .client()
                        .fatal_error()
                        .map(|(_, reason)| reason)
                        .unwrap_or_else(|| "fenced instance id".to_owned()),
                ))
            }
            Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                return Err(RuntimeError::Fatal(format!("consumer: {code}")))
            }
            Some(Err(e)) => warn!(error = %e, "consumer error"),
        }
        if now.saturating_duration_since(task.last_commit) >= config.commit_interval {
            // `commit` marks its start in `last_commit`.
            task.commit(consumer)?;
            let ended = Instant::now();
            task.last_commit = commit_timer_base(task.last_commit, ended, config.commit_interval);
            last_flush = ended;
        } else if flush_interval.is_some_and(|f| last_flush.elapsed() >= f) {
            task.flush(consumer)?;
            last_flush = Instant::now();
        }
        if config.exit_at_end_of_input && check_end {
            last_end_check = Instant::now();
            let every_partition =
                task.tasks.inputs.len() * usize::try_from(partitions).unwrap_or(0);
            if read_to_the_end(consumer, every_partition, &mut ends)? {
                info!("every input partition read to its end: stopping");
                return Ok(Stop::EndOfInput);
            }
        }
    }
    Ok(Stop::Shutdown)
}

/// The instant the next commit's interval counts from, for a commit that ran from `started` to `ended`.
///
/// From the start, so that a commit's own time (two broker round trips and the markers) does not stretch the
/// interval: records wait for the next commit to be visible to `read_committed` readers, and at 100 ms commits a
/// 40 ms commit made every cycle 140 ms. But the next commit comes at least half an interval after this one ended:
/// commits slower than the interval must leave time to process between them (timed from the start alone, a job
/// at 100 ms committed back to back, about one record per transaction).
fn commit_timer_base(started: Instant, ended: Instant, interval: Duration) -> Instant {
    ended
        .checked_sub(interval / 2)
        .map_or(started, |half_before_end| half_before_end.max(started))
}

/// Marks the job out of its poll loop however the loop ends, so that a stage stopped or starting again does not
/// count as stalled.
struct LeavesLoop<'a>(&'a JobMetrics);

impl Drop for LeavesLoop<'_> {
    fn drop(&mut self) {
        self.0.left_loop();
    }
}

/// How long to pause before retrying a record whose dependency (the schema registry) was unavailable: doubling
/// from 200 ms up to 10 s, back to the start after a record goes through.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(10);

    fn next(&mut self) -> Duration {
        let wait = Self::FIRST
            .saturating_mul(1 << self.failures.min(16))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        wait
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A topic a job creates for itself.
struct InternalTopic<'a> {
    name: String,
    partitions: i32,
    /// Topic configs beyond replication.
    configs: Vec<(&'a str, &'a str)>,
}

/// The creation requests of the internal topics `wanted` with the replication `replication` (`min_insync` is its
/// `min.insync.replicas` as text, borrowed by the requests).
fn internal_topic_requests<'a>(
    wanted: &'a [InternalTopic<'a>],
    replication: InternalReplication,
    min_insync: &'a Option<String>,
) -> Vec<NewTopic<'a>> {
    // -1 asks the broker for its `default.replication.factor` (CreateTopics v4, KIP-464).
    let factor = replication.replication_factor.unwrap_or(-1);
    wanted
        .iter()
        .map(|wanted| {
            let topic = wanted.configs.iter().fold(
                NewTopic::new(
                    &wanted.name,
                    wanted.partitions,
                    TopicReplication::Fixed(factor),
                ),
                |t, (k, v)| t.set(k, v),
            );
            match min_insync {
                Some(n) => topic.set("min.insync.replicas", n),
                None => topic,
            }
        })
        .collect()
}

/// How many pauses a table record being restored waits for the registry: 200 ms doubling to 10 s, about two minutes
/// in all.
const BOOTSTRAP_RETRIES: u32 = 16;

/// Sleeps `wait`, waking early when shutdown is requested.
fn sleep_unless_shutdown(wait: Duration, shutdown: &AtomicBool) {
    let until = Instant::now() + wait;
    while !shutdown.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_follows_the_instants_and_reads_the_system_clock_again_each_second() {
        let mut clock = WallClock {
            base: Instant::now(),
            base_ms: 1_000_000,
        };
        let base = clock.base;
        assert_eq!(clock.at(base), 1_000_000);
        assert_eq!(clock.at(base + Duration::from_millis(250)), 1_000_250);
        // An instant before the base (read before the clock was made) is the base.
        assert_eq!(clock.at(base - Duration::from_millis(5)), 1_000_000);
        // A second on, the system clock again: the made-up base is gone.
        let later = clock.at(base + Duration::from_secs(2));
        assert!((later - now_ms()).abs() < 1_000, "{later}");
    }

    /// Regression: a job started right after its broker restarted exited with "init transactions: Failed to
    /// initialize Producer ID: Broker: Not coordinator" while the broker was still loading its transaction state
    /// (CI's exactly-once test, its broker holding thousands of partitions). Retriable failures are now retried.
    #[test]
    fn a_transaction_coordinator_that_is_not_ready_yet_is_waited_for() {
        use rdkafka::mocking::{MockCluster, MockCoordinator};
        use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster
            .coordinator(MockCoordinator::Transaction("txn".into()), 1)
            .expect("transaction coordinator");
        // librdkafka retries these itself every half second: about 5 s of "not coordinator", well past the
        // 1 s each call is given below.
        cluster.request_errors(
            RDKafkaApiKey::InitProducerId,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR; 10],
        );
        let producer: ThreadedProducer<DeliveryContext> = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("transactional.id", "txn")
            .create_with_context(DeliveryContext(Arc::default()))
            .expect("producer");
        let mut waits = 0;
        init_transactions(
            &producer,
            Duration::from_secs(1),
            Duration::from_secs(60),
            &AtomicBool::new(false),
            || waits += 1,
        )
        .expect("initialised once the coordinator is ready");
        // Each wait is announced first: the job leaves its group for it.
        assert!(waits > 0);
        producer.begin_transaction().expect("a usable producer");
    }

    /// Regression (librdkafka #5456): with the group coordinator down, `send_offsets_to_transaction` waited past
    /// its timeout for as long as no broker connection changed state, ten minutes in the chaos run. The job now
    /// stops waiting at its limit and the call is classified as a stuck client, which a restart clears.
    #[test]
    fn sending_offsets_to_a_dead_group_coordinator_gives_up_at_the_limit() {
        use rdkafka::mocking::{MockCluster, MockCoordinator};

        let cluster = MockCluster::new(3).expect("mock cluster");
        cluster.create_topic("out", 1, 1).expect("topic");
        cluster.partition_leader("out", 0, Some(1)).expect("leader");
        cluster
            .coordinator(MockCoordinator::Transaction("txn".into()), 1)
            .expect("transaction coordinator");
        cluster
            .coordinator(MockCoordinator::Group("group".into()), 2)
            .expect("group coordinator");
        let bootstrap = cluster.bootstrap_servers();
        let producer: ThreadedProducer<DeliveryContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("transactional.id", "txn")
            .create_with_context(DeliveryContext(Arc::default()))
            .expect("producer");
        producer
            .init_transactions(Duration::from_secs(10))
            .expect("init");
        producer.begin_transaction().expect("begin");
        producer
            .send(BaseRecord::to("out").key("k").payload("v"))
            .map_err(|(e, _)| e)
            .expect("enqueued");
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "group")
            .create()
            .expect("consumer");
        let group = Arc::new(consumer.group_metadata().expect("group metadata"));
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("in", 0, Offset::Offset(1))
            .expect("offset");
        cluster.broker_down(2).expect("group coordinator down");

        // On a thread of its own: unbounded, the call under test would hang this test instead of failing it.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let outcome = send_offsets(
                &producer,
                &offsets,
                &group,
                Duration::from_secs(1),
                Duration::from_secs(3),
            );
            let _ = sender.send(outcome);
        });
        let outcome = receiver
            .recv_timeout(Duration::from_secs(60))
            .expect("send_offsets did not return within 60 s");
        let Err(failure) = outcome else {
            panic!("offsets reached a coordinator that is down");
        };
        let error = classify(failure, "send offsets");
        assert!(
            matches!(error, RuntimeError::Unresponsive(_)) && error.clears_on_restart(),
            "{error}"
        );
    }

    #[test]
    fn the_commit_interval_counts_from_the_start_unless_the_commit_was_slow() {
        let interval = Duration::from_millis(100);
        let started = Instant::now();
        // A 40 ms commit: the next is due 100 ms after this one started, 60 ms after it ended.
        let ended = started + Duration::from_millis(40);
        assert_eq!(commit_timer_base(started, ended, interval), started);
        // A 150 ms commit: the next is due 50 ms after it ended, not at once.
        let ended = started + Duration::from_millis(150);
        let base = commit_timer_base(started, ended, interval);
        assert_eq!(base + interval, ended + Duration::from_millis(50));
    }

    /// Regression: every partition of a subscribed topic is in the statistics, and one another instance consumes
    /// (here "none") counted from its low offset: its whole length showed as this instance's lag.
    #[test]
    fn lag_counts_only_the_partitions_this_member_consumes() {
        let stats = |fetch_state: &str, app_offset: i64| rdkafka::statistics::Partition {
            fetch_state: fetch_state.to_owned(),
            app_offset,
            committed_offset: -1001,
            lo_offset: 0,
            ls_offset: 500,
            hi_offset: 500,
            ..Default::default()
        };
        let lag = |records| {
            Some(InputLag {
                records,
                open_transaction: false,
            })
        };
        assert_eq!(partition_lag(&stats("active", 480)), lag(20));
        assert_eq!(
            partition_lag(&stats("offset-query", -1001)),
            lag(500),
            "assigned, nothing received yet: from the low offset"
        );
        // Everything committed read, a transaction open past it (offsets as librdkafka reported them for a
        // topic with an open transaction): nothing to read now, but more to come.
        let held = rdkafka::statistics::Partition {
            hi_offset: 5,
            ls_offset: 4,
            ..stats("active", 4)
        };
        assert_eq!(
            partition_lag(&held),
            Some(InputLag {
                records: 0,
                open_transaction: true
            })
        );
        assert!(partition_lag(&held).is_some_and(|l| l.has_more()));
        assert!(!partition_lag(&stats("active", 500)).is_some_and(|l| l.has_more()));
        for not_consumed in ["none", "stopping", "stopped"] {
            assert_eq!(
                partition_lag(&stats(not_consumed, -1001)),
                None,
                "{not_consumed}"
            );
        }
        let unknown_end = rdkafka::statistics::Partition {
            ls_offset: -1,
            ..stats("active", 10)
        };
        assert_eq!(partition_lag(&unknown_end), None);
    }

    #[test]
    fn consumer_config_follows_the_membership_and_keeps_the_users_fetch_backoff() {
        let mut config = RuntimeConfig::new("cm", ClientConfig::new(), "http://127.0.0.1:0");
        let dynamic = consumer_config(&config);
        assert_eq!(dynamic.get("group.protocol"), Some("consumer"));
        assert_eq!(dynamic.get("group.instance.id"), None);
        assert_eq!(
            dynamic.get("fetch.queue.backoff.ms"),
            Some(read::FETCH_QUEUE_BACKOFF_MS)
        );

        config.instance_id = "cm-2".to_owned();
        config.membership = GroupMembership::Static {
            session_timeout: Duration::from_secs(20),
        };
        config.kafka.set("fetch.queue.backoff.ms", "250");
        let fixed = consumer_config(&config);
        assert_eq!(fixed.get("group.protocol"), Some("classic"));
        assert_eq!(fixed.get("group.instance.id"), Some("cm-cm-2"));
        assert_eq!(fixed.get("session.timeout.ms"), Some("20000"));
        assert_eq!(fixed.get("partition.assignment.strategy"), Some("range"));
        assert_eq!(fixed.get("fetch.queue.backoff.ms"), Some("250"));
    }

    // Issue 11, item 6: internal topics were created with a constant replication factor of 1 whatever the
    // topology said, so exactly-once state lived on one replica.
    #[test]
    fn internal_topics_are_requested_with_the_topologys_replication() {
        let wanted = vec![
            InternalTopic {
                name: "job-store-changelog".to_owned(),
                partitions: 4,
                configs: vec![("cleanup.policy", "compact")],
            },
            InternalTopic {
                name: "job-repartition".to_owned(),
                partitions: 8,
                configs: vec![("retention.ms", "-1")],
            },
        ];
        let replication = InternalReplication {
            replication_factor: Some(3),
            min_insync_replicas: Some(2),
        };
        let min_insync = Some("2".to_owned());
        let requests = internal_topic_requests(&wanted, replication, &min_insync);
        assert_eq!(requests.len(), 2);
        for (request, wanted) in requests.iter().zip(&wanted) {
            assert_eq!(request.name, wanted.name);
            assert_eq!(request.num_partitions, wanted.partitions);
            assert!(
                matches!(request.replication, TopicReplication::Fixed(3)),
                "{:?}",
                request.replication
            );
            assert!(request.config.contains(&("min.insync.replicas", "2")));
        }
        assert!(requests[0].config.contains(&("cleanup.policy", "compact")));

        // Without topology defaults the broker's own defaults apply (-1), never a constant.
        let requests = internal_topic_requests(&wanted, InternalReplication::default(), &None);
        assert!(matches!(
            requests[0].replication,
            TopicReplication::Fixed(-1)
        ));
        assert!(!requests[0]
            .config
            .iter()
            .any(|(key, _)| *key == "min.insync.replicas"));
    }
}
