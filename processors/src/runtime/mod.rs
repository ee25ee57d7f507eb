//! The consume–process–produce runtime that every adstream job runs on.
//!
//! A job is an [`Operator`]: it declares its inputs (streams and co-partitioned tables), outputs and state stores,
//! and handles one record at a time plus a hook at every commit. The runtime owns everything Kafka:
//!
//! - one consumer-group member (cooperative rebalancing, `read_committed`, no auto-commit);
//! - with [`DeliveryGuarantee::ExactlyOnce`] (the default) a transactional producer: outputs, dead letters, late
//!   records, changelog records and the consumed offsets (`send_offsets_to_transaction` with the consumer's group
//!   metadata) all commit in one transaction per commit interval, the pattern of Kafka Streams' exactly_once_v2;
//! - state restore from changelogs and table bootstrap before a newly assigned partition is processed;
//! - per-partition event-time watermarks;
//! - dead letters (`dlq.<topic>`) for records that do not decode, with headers saying why and where from.
//!
//! Failure rules (see [`driver`]): a retriable error is retried; an error that requires an abort aborts the
//! transaction, drops all state and restores it from the changelogs, and rewinds the consumer to the committed
//! offsets; a fatal error (fenced, unknown producer id) stops the job with an error. A commit whose outcome is not
//! known after its retries is never reported as a success: the job stops with an error and a restart recovers from
//! what Kafka committed.
//!
//! - `codec`    — Confluent wire-format Avro decoding/encoding.
//! - `dead_letter` — the dead-letter format (topics, headers, classes) written here, and its reading side
//!   (`dead_letter::read`: records, redrive targets and headers) used by `adstream dlq`.
//! - `headers`  — Kafka record headers read as bytes, never trusted to be UTF-8.
//! - `store`    — keyed state stores with changelogs.
//! - `checkpoint` — numbered commits per task, so a restore knows when it has read a task's last commit.
//! - `standby`  — warm copies of the state of the tasks an instance does not own (Kafka Streams' standby replicas).
//! - `dedup`    — the store of seen event ids that lets counting jobs skip duplicates.
//! - `timers`   — callbacks on stream time and wall-clock time (punctuators), persisted like state.
//! - `emit`     — where an operator's records go: Kafka's producer live, memory in a simulation.
//! - `tasks`    — per-task watermarks, markers, dead letters and commits: the rules live and simulated runs share.
//! - `driver`   — the poll loop, transactions, rebalances, restore.
//! - `bounded`  — a limit on client calls librdkafka does not always return from in time.
//! - `simulate` — the same operator and rules over records in memory, without Kafka (backtests).

pub(crate) mod binary;
mod bounded;
mod checkpoint;
pub mod codec;
pub mod dead_letter;
pub mod dedup;
pub mod driver;
pub mod emit;
pub mod headers;
pub mod metrics;
pub mod simulate;
mod standby;
pub mod store;
mod tasks;
pub mod timers;

use std::sync::Arc;
use std::time::Duration;

use adstream_kafka::registry_client::RegistrySettings;
use rdkafka::ClientConfig;

pub use checkpoint::CHECKPOINT_KEY;
pub use codec::{
    cell_long, cell_optional_text, cell_text, CodecError, DecodeError, ProjectedDecoder,
    SchemaCache, TypedDecoder, WireEncoder,
};
pub use dedup::SeenIds;
pub use driver::{run, run_with_standby, RunSummary, RuntimeError};
pub use emit::{CapturedRecord, Context};
pub use metrics::{merge_expositions, InputLag, JobMetrics};
pub use simulate::{
    simulate, ReadBack, SimulateError, SimulateOptions, SimulatedRecord, Simulation, Simulator,
};
pub use store::{
    ChangelogStore, JsonValues, KeyedStore, PartitionData, StoreError, StoreKey, ValueCodec,
};
pub use timers::{Fired, TimeDomain, Timers};

/// Delivery guarantee of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryGuarantee {
    /// Kafka transactions: each input record affects outputs and state exactly once, as seen by `read_committed`
    /// readers.
    #[default]
    ExactlyOnce,
    /// Idempotent producer, outputs flushed before offsets are committed: nothing is lost, but after a crash the
    /// records since the last commit are processed again and their effects may appear twice.
    AtLeastOnce,
}

/// Runtime settings shared by all jobs.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Consumer group id, prefix of changelog topics and of the transactional id.
    pub application_id: String,
    /// Identifies this instance among the job's replicas; part of the transactional id, so it must be unique per
    /// replica and stable across its restarts (a restart then fences its previous incarnation's open transaction).
    pub instance_id: String,
    /// Exactly-once (default) or at-least-once.
    pub guarantee: DeliveryGuarantee,
    /// How often state, outputs and offsets are committed (one transaction each under exactly-once).
    pub commit_interval: Duration,
    /// At-least-once only: how often outputs are emitted and handed to the producer between commits (None: at
    /// commits only). Offsets still commit every `commit_interval`; exactly-once outputs appear at commits.
    pub flush_interval: Option<Duration>,
    /// A partition without records for this long no longer holds the watermark back.
    pub idle_timeout: Duration,
    /// Base client config: bootstrap servers and pass-through properties (SASL/TLS); the runtime adds its own.
    pub kafka: ClientConfig,
    /// The schema registry: URL, credentials, CA bundle.
    pub registry: RegistrySettings,
    /// Stop (with a final commit) once every partition of every input has been read to its end (its high
    /// watermark when the job first looked, once it had caught up): for replays, benchmarks and tests. A live job
    /// leaves it false and runs until shut down.
    pub exit_at_end_of_input: bool,
    /// Where the job publishes its metrics, readiness and lag (served by the binary's HTTP endpoint).
    pub metrics: Arc<JobMetrics>,
    /// A stream record whose timestamp is further ahead of the wall clock than this goes to `dlq.<topic>` (class
    /// `future-timestamp`) instead of moving its task's watermark, where one such record (microseconds written as
    /// milliseconds, a skewed clock) would make every later event late. Default one hour, Kafka 4's default
    /// `message.timestamp.after.max.ms`.
    pub max_event_time_ahead: Duration,
    /// Replication of the topics the job creates for itself (changelogs, repartitions, `dlq.*`, `late.*`): the
    /// topology's defaults, so exactly-once state is as durable as the declared topics. The default leaves both to
    /// the broker (`default.replication.factor`, `min.insync.replicas`).
    pub internal_topics: InternalReplication,
    /// How the job's instances join their consumer group.
    pub membership: GroupMembership,
}

/// How a job's instances join their consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupMembership {
    /// Kafka's consumer group protocol (KIP-848; the broker assigns the partitions, by range so that co-partitioned
    /// inputs stay together). An instance that stops (SIGTERM) hands its partitions over at once; one that dies
    /// (SIGKILL) keeps them until the broker's `group.consumer.session.timeout.ms` (45 s by default) expires, also
    /// when it restarts at once.
    #[default]
    Dynamic,
    /// Static membership (KIP-345) on the classic protocol, with `<application id>-<instance id>` as
    /// `group.instance.id`: an instance that restarts under the same instance id gets its partitions back at once,
    /// whether it stopped or died. One that is gone for good keeps its partitions until `session_timeout` expires,
    /// and a stopped one does not leave the group (static members never do), so scaling in waits that long too.
    /// Not on the consumer protocol: librdkafka sends the instance id there as well, but the broker turns a
    /// restarted static member away until its dead incarnation's session expires, which gains nothing.
    Static {
        /// How long the group waits for an absent instance before its partitions move (`session.timeout.ms`).
        session_timeout: Duration,
    },
}

/// The default [`RuntimeConfig::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The default session timeout of [`GroupMembership::Static`].
pub const DEFAULT_STATIC_SESSION_TIMEOUT: Duration = Duration::from_secs(15);

/// Replication factor and `min.insync.replicas` of the topics a job creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InternalReplication {
    /// Replicas per partition; None asks for the broker's `default.replication.factor`.
    pub replication_factor: Option<i32>,
    /// `min.insync.replicas`; None keeps the broker's default.
    pub min_insync_replicas: Option<i32>,
}

/// Why a job's operator could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A decoder or encoder of the job's contract types could not be built.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The settings break a rule of the job (each job documents its rules on its settings).
    #[error("{0}")]
    Settings(String),
    /// The job's ports cannot be connected to the topology.
    #[error(transparent)]
    Wiring(#[from] crate::jobs::WiringError),
}

/// The default of [`RuntimeConfig::max_event_time_ahead`].
pub const DEFAULT_MAX_EVENT_TIME_AHEAD: Duration = Duration::from_secs(3600);

impl RuntimeConfig {
    /// Settings with the defaults: exactly-once, 1 s commit interval, no flushes between commits, 30 s
    /// idle timeout, run until shut down.
    pub fn new(
        application_id: &str,
        kafka: ClientConfig,
        registry: impl Into<RegistrySettings>,
    ) -> RuntimeConfig {
        RuntimeConfig {
            application_id: application_id.to_owned(),
            instance_id: "0".to_owned(),
            guarantee: DeliveryGuarantee::ExactlyOnce,
            commit_interval: Duration::from_secs(1),
            flush_interval: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            kafka,
            registry: registry.into(),
            exit_at_end_of_input: false,
            metrics: Arc::new(JobMetrics::default()),
            max_event_time_ahead: DEFAULT_MAX_EVENT_TIME_AHEAD,
            internal_topics: InternalReplication::default(),
            membership: GroupMembership::default(),
        }
    }

    /// The changelog topic of store `store`.
    pub fn changelog_topic(&self, store: &str) -> String {
        changelog_topic(&self.application_id, store)
    }
}

/// The changelog topic of store `store` of the job `application_id`.
pub fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}

/// How an input topic is consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Events: every record is processed once and drives the watermark.
    Stream,
    /// A compacted table co-partitioned with the streams (latest value per key), or broadcast (every record in
    /// every partition, as `attribution.model_weights`): on assignment the partition is read to its end before any
    /// stream record of the same partition is processed.
    Table,
}

/// One input topic of a job.
#[derive(Debug, Clone)]
pub struct InputSpec {
    /// Topic name.
    pub topic: String,
    /// Stream or table.
    pub kind: InputKind,
    /// An internal topic (a repartition topic another stage writes) that the runtime creates with this many
    /// partitions when it does not exist yet; None for a topology topic, which must exist.
    pub internal_partitions: Option<i32>,
    /// The topic's writer announces its progress with watermark markers (see [`OutputSpec::watermark_markers`]):
    /// the partition's event time comes from them only, never from record timestamps, because the records
    /// interleave the writer's tasks (one fast task's records would move the partition past a slow task's next
    /// ones). A partition whose writer announces nothing holds the watermark until the idle timeout, like a
    /// partition without records.
    pub watermark_markers: bool,
}

impl InputSpec {
    /// A stream topic of the topology.
    pub fn stream(topic: impl Into<String>) -> InputSpec {
        InputSpec {
            topic: topic.into(),
            kind: InputKind::Stream,
            internal_partitions: None,
            watermark_markers: false,
        }
    }

    /// A table topic of the topology.
    pub fn table(topic: impl Into<String>) -> InputSpec {
        InputSpec {
            kind: InputKind::Table,
            ..InputSpec::stream(topic)
        }
    }
}

/// One output topic of a job.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    /// Topic name.
    pub topic: String,
    /// Avro schema of its values, registered under `<topic>-value` at start.
    pub value_schema: &'static str,
    /// An internal topic (a repartition topic) that the runtime creates with this many partitions when it does
    /// not exist; None for a topology topic, which must exist.
    pub internal_partitions: Option<i32>,
    /// At each commit, each task whose watermark moved writes a marker to every partition of the topic (no key,
    /// no value; headers `adstream_watermark`, `adstream_watermark_task`, `adstream_watermark_tasks`), so that a
    /// reader whose partitions mix the records of several tasks knows how far all of them got. The value
    /// announced is [`Operator::announced_watermark`] of the task's watermark.
    pub watermark_markers: bool,
}

impl OutputSpec {
    /// A topic of the topology (it must exist when the job starts).
    pub fn topology(topic: impl Into<String>, value_schema: &'static str) -> OutputSpec {
        OutputSpec {
            topic: topic.into(),
            value_schema,
            internal_partitions: None,
            watermark_markers: false,
        }
    }
}

/// One consumed record as an operator sees it.
pub struct Record<'a> {
    /// Index into the operator's inputs.
    pub input: usize,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Record timestamp (the event time for adstream events).
    pub timestamp_ms: Option<i64>,
    /// Key bytes.
    pub key: Option<&'a [u8]>,
    /// Value bytes (Confluent wire format).
    pub value: Option<&'a [u8]>,
    /// The record's headers.
    pub headers: RecordHeaders<'a>,
    /// The record's `correlation_id` header, or `<topic>/<partition>/<offset>` when it has none.
    pub correlation_id: &'a str,
}

impl std::fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("input", &self.input)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("correlation_id", &self.correlation_id)
            .finish_non_exhaustive()
    }
}

/// The headers of a [`Record`], wherever it was read from: a Kafka message, or memory in a simulation.
#[derive(Clone, Copy)]
pub enum RecordHeaders<'a> {
    /// The record has no headers.
    None,
    /// The headers of a consumed Kafka message.
    Kafka(headers::KafkaHeaders<'a>),
    /// Headers held in memory: (key, value) in record order.
    Owned(&'a [(String, Vec<u8>)]),
}

impl<'a> RecordHeaders<'a> {
    /// Every header in record order as (key bytes, value); a Kafka header with a null value gives None.
    pub fn iter_raw(self) -> impl Iterator<Item = headers::RawHeader<'a>> {
        let (kafka, owned) = match self {
            RecordHeaders::None => (None, None),
            RecordHeaders::Kafka(headers) => (Some(headers), None),
            RecordHeaders::Owned(headers) => (None, Some(headers)),
        };
        let kafka = kafka.into_iter().flat_map(|headers| headers.iter());
        let owned = owned
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.as_bytes(), Some(value.as_slice())));
        kafka.chain(owned)
    }

    /// Every header whose key is UTF-8, in record order, as (key, value). The runtime dead-letters records with
    /// any other key before an operator sees them (see [`RecordHeaders::problem`]).
    pub fn iter(self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> {
        self.iter_raw()
            .filter_map(|(key, value)| std::str::from_utf8(key).ok().map(|key| (key, value)))
    }

    /// The first header named `key`, if its value is UTF-8 text.
    pub fn text(self, key: &str) -> Option<&'a str> {
        self.iter_raw()
            .find(|(k, _)| *k == key.as_bytes())
            .and_then(|(_, value)| value)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// Why these headers are refused (unreadable, a key that is not UTF-8, a text header that is not), if they are.
    pub fn problem(self) -> Option<headers::HeaderProblem> {
        if let RecordHeaders::Kafka(kafka) = self {
            if let Some(reason) = kafka.unreadable() {
                return Some(headers::HeaderProblem::Unreadable(reason));
            }
        }
        headers::check(self.iter_raw()).err()
    }
}

impl std::fmt::Debug for RecordHeaders<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values can be binary: the keys say what the record carries.
        f.debug_list()
            .entries(self.iter_raw().map(|(key, _)| headers::key_text(key)))
            .finish()
    }
}

/// A job: what it reads and writes and how it handles records. Called from one thread.
pub trait Operator: Send {
    /// Input topics in a fixed order; [`Record::input`] indexes it.
    fn inputs(&self) -> Vec<InputSpec>;
    /// Output topics in a fixed order; [`Context::emit`] indexes it.
    fn outputs(&self) -> Vec<OutputSpec>;
    /// The operator's state stores (for restore, flush and partition drops).
    fn stores(&mut self) -> Vec<&mut dyn ChangelogStore>;
    /// Output schemas were registered under these ids (same order as [`Operator::outputs`]).
    fn set_output_schema_ids(&mut self, ids: &[u32]) -> Result<(), CodecError>;
    /// Handles one record. A [`DecodeError`] sends the record to `dlq.<topic>` and processing continues.
    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), DecodeError>;
    /// Called before every commit: emit what the emit mode says is due, expire state.
    fn on_commit(&mut self, ctx: &mut Context<'_>);
    /// Every input partition was read to its end and the job is about to make its last commit and stop (only with
    /// [`RuntimeConfig::exit_at_end_of_input`]): emit what is waiting for event time to pass, since nothing more
    /// will come.
    fn on_end_of_input(&mut self, _ctx: &mut Context<'_>) {}
    /// A partition was revoked (after its state was committed), or is about to be restored again after an abort;
    /// drop whatever non-store state the operator keeps for it.
    fn on_revoked(&mut self, _partition: i32) {}
    /// The stores of `partitions` were restored and their tables read; rebuild indexes over store contents.
    fn on_restored(&mut self, _partitions: &[i32]) {}
    /// What a task with watermark `task_watermark` announces on outputs with watermark markers: a time before which
    /// it will write no more records (except late-data corrections). By default the watermark itself.
    fn announced_watermark(&self, task_watermark: i64) -> i64 {
        task_watermark
    }
    /// The operator's own counters for the metrics endpoint: (name, help, value); exported as
    /// `adstream_job_<name>_total`.
    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        Vec::new()
    }
}
