//! Runs a live operator over records held in memory, without Kafka: the foundation of backtests, which replay a
//! period of history through the same operator code as the live jobs.
//!
//! [`simulate`] drives the operator through the rules the live driver uses (the shared `tasks` module): per-task
//! watermarks with idle partitions, watermark markers read from marked inputs and written to marked outputs, dead
//! letters and late records with the live headers, table bootstrap before stream records, commits, and the end of
//! input of `--until-end`. What the live job would produce is captured in memory per topic; changelog records are
//! counted and dropped (the operator's stores hold the state).
//!
//! # Time
//!
//! A simulation replays history as if the job had run live while it happened: its clock is the latest timestamp of
//! the stream records processed so far (the wall clock of a live job that keeps up is about the event time of what
//! it reads). That clock drives idle partitions (a partition with no record for the idle timeout of event time
//! stops holding its task's watermark), commits, and [`Context::now_ms`](super::Context::now_ms), so a run is
//! deterministic. It starts at the first stream record's timestamp, when every task is assigned.
//!
//! # Commits
//!
//! [`SimulateOptions::commit_every_ms`] commits whenever the clock moved that far since the last commit, like the
//! live job's commit interval (1 s by default) while it keeps up with its input: this is the one that mimics the
//! live schedule. A record that moves the clock past one or more commit times is preceded by a commit at the first
//! of them (where a live job would emit what the records before had changed) and, if it passes more, one at the
//! last of them (where partitions that went quiet in between have gone idle); a live job would also commit at
//! each time between, which emits nothing but the rows the idle partitions' watermark made final, and those the
//! last commit emits. [`SimulateOptions::commit_every_records`] commits after that many records, like a live
//! job catching up on a backlog, whose commit interval spans however many records it read in it. Both may be
//! set. At the end the operator's end-of-input hook runs and a final commit follows, as with `--until-end`.
//!
//! # Input
//!
//! Records come in the order they are to be processed (a backtest merges each topic partition's records by
//! timestamp, keeping each partition's offset order; see [`interleave_by_timestamp`]). Records of table inputs
//! before the first stream record are the tables' contents: they are applied as the live bootstrap applies them,
//! then handed to the operator again as records (the live consumer reads the table partitions from the start
//! too, and dead-letters what does not decode). Table records after that are updates, processed where they come.

use adstream_kafka::partitioner::kafka_partition;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::driver::RuntimeError;
use super::emit::{Capture, CapturedRecord};
use super::tasks::{correlation_id, EventTimeRules, Tasks};
use super::{changelog_topic, InputKind, Operator, Record, RecordHeaders, SchemaCache};

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The options do not fit the operator.
    #[error("simulation options: {0}")]
    Options(String),
    /// A record names an input the operator does not have, or a partition outside the tasks.
    #[error("record {index}: {message}")]
    Record {
        /// Position of the record in the input.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The operator failed as it would fail a live job (for instance the registry was unavailable for a schema).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// One input record of a simulation, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedRecord {
    /// Index into the operator's inputs.
    pub input: usize,
    /// Partition (the task that processes it).
    pub partition: i32,
    /// Offset in its partition.
    pub offset: i64,
    /// Record timestamp (the event time for adstream events).
    pub timestamp_ms: Option<i64>,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes (Confluent wire-format Avro); None for a tombstone or a watermark marker.
    pub value: Option<Vec<u8>>,
    /// Headers in record order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The record's `correlation_id` header, or `<topic>/<partition>/<offset>` when it has none (as the live
    /// driver names it).
    pub correlation_id: String,
}

impl SimulatedRecord {
    /// `message`, read from `topic`, as input `input`: its headers (a header without value as an empty one) and
    /// its correlation id as the live driver names it.
    pub fn from_message(
        input: usize,
        topic: &str,
        message: &rdkafka::message::BorrowedMessage<'_>,
    ) -> SimulatedRecord {
        use rdkafka::message::Message;
        // A header key that is not UTF-8 is kept with its invalid bytes replaced (the live driver dead-letters such
        // a record as `bad-headers`; the simulation's in-memory headers are text-keyed).
        let headers: Vec<(String, Vec<u8>)> = super::headers::KafkaHeaders::of(message)
            .iter()
            .map(|(key, value)| {
                (
                    super::headers::key_text(key).into_owned(),
                    value.unwrap_or_default().to_vec(),
                )
            })
            .collect();
        let correlation_id = correlation_id(
            RecordHeaders::Owned(&headers),
            topic,
            message.partition(),
            message.offset(),
        )
        .into_owned();
        SimulatedRecord {
            input,
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
            correlation_id,
        }
    }
}

impl SimulatedRecord {
    /// The record as the runtime hands it to an operator.
    pub fn view(&self) -> Record<'_> {
        Record {
            input: self.input,
            partition: self.partition,
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: RecordHeaders::Owned(&self.headers),
            correlation_id: &self.correlation_id,
        }
    }
}

/// How a simulation runs.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Named on dead letters and late records (`redirected_by`), as the live job's application id.
    pub application_id: String,
    /// Partition count of the inputs: the number of tasks.
    pub partitions: i32,
    /// Schema ids of the operator's outputs (same order as its outputs), as the live job registers them.
    pub output_schema_ids: Vec<u32>,
    /// Partition counts of outputs with watermark markers (each partition gets a marker), by topic; an output not
    /// named here has its internal partition count, or else [`SimulateOptions::partitions`].
    pub output_partitions: BTreeMap<String, i32>,
    /// A partition without records for this long (of the simulation's event-time clock) no longer holds its task's
    /// watermark back.
    pub idle_timeout: Duration,
    /// Commit whenever the event-time clock moved this far since the last commit (see the module doc).
    pub commit_every_ms: Option<i64>,
    /// Commit after this many records since the last commit (see the module doc).
    pub commit_every_records: Option<u64>,
}

impl SimulateOptions {
    /// The live defaults: 30 s idle timeout, a commit per second of event time.
    pub fn new(application_id: &str, partitions: i32, output_schema_ids: Vec<u32>) -> Self {
        SimulateOptions {
            application_id: application_id.to_owned(),
            partitions,
            output_schema_ids,
            output_partitions: BTreeMap::new(),
            idle_timeout: super::DEFAULT_IDLE_TIMEOUT,
            commit_every_ms: Some(1000),
            commit_every_records: None,
        }
    }
}

/// What a simulation produced.
#[derive(Debug, Clone, Default)]
pub struct Simulation {
    /// Captured records per topic (outputs, `late.<topic>`, `dlq.<topic>`), in the order they were sent; watermark
    /// markers included.
    pub records: BTreeMap<String, Vec<CapturedRecord>>,
    /// Records handed to the operator (stream and table records, not markers or bootstrap reads).
    pub processed: u64,
    /// Table records applied at bootstrap.
    pub bootstrapped: u64,
    /// Watermark markers read from marked inputs.
    pub markers: u64,
    /// Commits, the final one included.
    pub commits: u64,
    /// Records sent per output topic (markers not included).
    pub outputs: BTreeMap<String, u64>,
    /// Dead letters per (source topic, class).
    pub dead_letters: BTreeMap<(String, String), u64>,
    /// Late records per source topic.
    pub late: BTreeMap<String, u64>,
    /// Changelog records the live job would have written, per store.
    pub changelog: BTreeMap<String, u64>,
    /// Each task's watermark after the final commit.
    pub task_watermarks: BTreeMap<i32, Option<i64>>,
    /// The operator's own counters at the end: (name, value).
    pub counters: Vec<(&'static str, u64)>,
}

impl Simulation {
    /// The records captured for `topic`, in send order (empty if none).
    pub fn topic(&self, topic: &str) -> &[CapturedRecord] {
        self.records.get(topic).map_or(&[], Vec::as_slice)
    }

    /// What compaction keeps of `topic`: the latest value per key, keys with a tombstone last left out, markers
    /// (no value, no key) ignored.
    pub fn compacted(&self, topic: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut table = BTreeMap::new();
        for record in self.topic(topic) {
            record.compact_into(&mut table);
        }
        table
    }

    /// The records of `topic` as they would be read back as input `input` of a next stage, from a topic of
    /// `partitions` partitions (see [`ReadBack`]).
    pub fn as_input(&self, topic: &str, input: usize, partitions: i32) -> Vec<SimulatedRecord> {
        let mut read_back = ReadBack::new(topic, input, partitions);
        self.topic(topic)
            .iter()
            .map(|record| read_back.read(record))
            .collect()
    }
}

/// How a next stage reads back the records a stage sent to one topic, one at a time in send order: keyed records
/// on the partition Kafka's partitioner gives their key, others (markers) where they were sent; offsets counted per
/// partition.
#[derive(Debug, Clone)]
pub struct ReadBack {
    topic: String,
    input: usize,
    partitions: i32,
    next_offsets: HashMap<i32, i64>,
}

impl ReadBack {
    /// Reading `topic`, of `partitions` partitions, as input `input`.
    pub fn new(topic: &str, input: usize, partitions: i32) -> ReadBack {
        ReadBack {
            topic: topic.to_owned(),
            input,
            partitions,
            next_offsets: HashMap::new(),
        }
    }

    /// The partition `record` lands on.
    pub fn partition_of(&self, record: &CapturedRecord) -> i32 {
        record
            .partition
            .unwrap_or_else(|| kafka_partition(&record.key, self.partitions))
    }

    /// `record`, the next one sent to the topic, as read back.
    pub fn read(&mut self, record: &CapturedRecord) -> SimulatedRecord {
        let partition = self.partition_of(record);
        let next = self.next_offsets.entry(partition).or_default();
        let offset = *next;
        *next += 1;
        let correlation_id = correlation_id(
            RecordHeaders::Owned(&record.headers),
            &self.topic,
            partition,
            offset,
        )
        .into_owned();
        SimulatedRecord {
            input: self.input,
            partition,
            offset,
            timestamp_ms: record.timestamp_ms,
            // What the producer sends for an empty key (markers) is read back as none.
            key: (!record.key.is_empty()).then(|| record.key.clone()),
            value: record.value.clone(),
            headers: record.headers.clone(),
            correlation_id,
        }
    }
}

/// Merges `records` by timestamp, keeping each (input, partition)'s own order: the order a backtest replays
/// history in. Among partitions whose next records have the same timestamp, the lower (input, partition) goes
/// first; a record without timestamp goes as soon as it is next in its partition.
pub fn interleave_by_timestamp(records: Vec<SimulatedRecord>) -> Vec<SimulatedRecord> {
    let total = records.len();
    let mut queues: BTreeMap<(usize, i32), std::collections::VecDeque<SimulatedRecord>> =
        BTreeMap::new();
    for record in records {
        queues
            .entry((record.input, record.partition))
            .or_default()
            .push_back(record);
    }
    let mut merged = Vec::with_capacity(total);
    loop {
        let next = queues
            .iter()
            .filter_map(|(source, queue)| {
                queue
                    .front()
                    .map(|r| (r.timestamp_ms.unwrap_or(i64::MIN), *source))
            })
            .min();
        let Some((_, source)) = next else {
            break;
        };
        if let Some(record) = queues.get_mut(&source).and_then(|q| q.pop_front()) {
            merged.push(record);
        }
    }
    merged
}

/// The simulation's clock and commit schedule.
struct Schedule {
    /// Latest stream-record timestamp so far; None before the first stream record.
    clock: Option<i64>,
    /// Clock at the last commit (the start before the first).
    last_commit: i64,
    /// Records since the last commit.
    since_commit: u64,
}

/// Runs `operator` over `records` (see the module doc), decoding with `schemas`, and returns what it produced.
pub fn simulate(
    operator: Box<dyn Operator>,
    schemas: SchemaCache,
    records: impl IntoIterator<Item = SimulatedRecord>,
    options: &SimulateOptions,
) -> Result<Simulation, SimulateError> {
    let mut simulator = Simulator::new(operator, schemas, options.clone())?;
    for record in records {
        simulator.push(record)?;
    }
    simulator.finish()
}

/// A simulation fed one record at a time, for callers whose next input depends on what the operator produced
/// so far (a backtest that pauses a creative once it is reported fatigued). [`simulate`] is this over a whole
/// input at once: push every record, then finish.
pub struct Simulator {
    tasks: Tasks<Capture>,
    options: SimulateOptions,
    schedule: Schedule,
    /// Table records before the first stream record: the tables' contents, applied when the tasks start.
    tables: Vec<SimulatedRecord>,
    summary: Simulation,
    /// Records pushed so far (the index errors name).
    pushed: usize,
}

impl Simulator {
    /// A simulation of `operator` decoding with `schemas`; nothing runs until the first record is pushed.
    pub fn new(
        mut operator: Box<dyn Operator>,
        schemas: SchemaCache,
        options: SimulateOptions,
    ) -> Result<Simulator, SimulateError> {
        if options.partitions < 1 {
            return Err(SimulateError::Options(format!(
                "partitions must be at least 1, got {}",
                options.partitions
            )));
        }
        if options.commit_every_ms.is_some_and(|ms| ms < 1)
            || options.commit_every_records == Some(0)
        {
            return Err(SimulateError::Options(
                "commit intervals must be positive".into(),
            ));
        }
        operator
            .set_output_schema_ids(&options.output_schema_ids)
            .map_err(|e| SimulateError::Options(e.to_string()))?;
        let marked_outputs = operator
            .outputs()
            .into_iter()
            .filter(|o| o.watermark_markers)
            .map(|o| {
                let count = options
                    .output_partitions
                    .get(&o.topic)
                    .copied()
                    .or(o.internal_partitions)
                    .unwrap_or(options.partitions);
                (o.topic, count)
            })
            .collect();
        let tasks = Tasks::new(
            operator,
            &options.application_id,
            Capture::default(),
            schemas,
            EventTimeRules {
                idle_timeout: options.idle_timeout,
                // The simulation's clock is event time: there is no wall clock for a record to be ahead of.
                max_event_time_ahead: None,
            },
            options.partitions,
            marked_outputs,
        );
        Ok(Simulator {
            tasks,
            options,
            schedule: Schedule {
                clock: None,
                last_commit: 0,
                since_commit: 0,
            },
            tables: Vec::new(),
            summary: Simulation::default(),
            pushed: 0,
        })
    }

    /// Processes the next record (committing first where the clock passes commit times, see the module doc).
    pub fn push(&mut self, record: SimulatedRecord) -> Result<(), SimulateError> {
        let index = self.pushed;
        self.pushed += 1;
        self.record(index, record)
    }

    /// Moves the clock to `ts` as the next stream record with that timestamp would, running the commits it
    /// passes, without processing a record: what the operator emits at those commits is then visible in
    /// [`Simulator::captured`] before the caller decides on the record. Does nothing before the first stream
    /// record or for a time not after the clock.
    pub fn advance_to(&mut self, ts: i64) -> Result<(), SimulateError> {
        match self.schedule.clock {
            Some(clock) if ts > clock => self.advance(ts),
            _ => Ok(()),
        }
    }

    /// Takes what was captured since the last call (outputs, late records, dead letters, markers), in send
    /// order: a caller that hands a stage's outputs on as they come keeps none of them in the simulation. What is
    /// taken is not in the [`Simulation`] that [`Simulator::finish`] returns (its counters still count it).
    pub fn take_captured(&mut self) -> Vec<CapturedRecord> {
        std::mem::take(&mut self.tasks.emitter.transport.records)
    }

    fn record(&mut self, index: usize, record: SimulatedRecord) -> Result<(), SimulateError> {
        let Some(spec) = self.tasks.inputs.get(record.input) else {
            return Err(SimulateError::Record {
                index,
                message: format!(
                    "input {} does not exist (the operator has {})",
                    record.input,
                    self.tasks.inputs.len()
                ),
            });
        };
        if !(0..self.options.partitions).contains(&record.partition) {
            return Err(SimulateError::Record {
                index,
                message: format!(
                    "partition {} is outside the {} tasks",
                    record.partition, self.options.partitions
                ),
            });
        }
        let stream = spec.kind == InputKind::Stream;
        let Some(clock) = self.schedule.clock else {
            if !stream {
                self.tables.push(record);
                return Ok(());
            }
            self.start(record.timestamp_ms.unwrap_or(0))?;
            return self.record(index, record);
        };
        if stream {
            if let Some(ts) = record.timestamp_ms.filter(|ts| *ts > clock) {
                self.advance(ts)?;
            }
        }
        let now = self.schedule.clock.unwrap_or(clock);
        self.handle(&record, now)?;
        self.schedule.since_commit += 1;
        if self
            .options
            .commit_every_records
            .is_some_and(|n| self.schedule.since_commit >= n)
        {
            self.commit(now)?;
        }
        Ok(())
    }

    /// The tasks start at `now`: tables are applied, then read as records.
    fn start(&mut self, now: i64) -> Result<(), SimulateError> {
        self.schedule.clock = Some(now);
        self.schedule.last_commit = now;
        let partitions: Vec<i32> = (0..self.options.partitions).collect();
        for partition in &partitions {
            self.tasks.assign(*partition, now);
        }
        let tables = std::mem::take(&mut self.tables);
        for record in &tables {
            self.tasks
                .bootstrap(
                    record.input,
                    record.partition,
                    record.offset,
                    record.key.as_deref(),
                    record.value.as_deref(),
                    now,
                )
                .map_err(|e| RuntimeError::Restore(format!("table record: {e}")))?;
        }
        self.summary.bootstrapped += tables.len() as u64;
        self.tasks.operator.on_restored(&partitions);
        for record in &tables {
            self.handle(record, now)?;
        }
        Ok(())
    }

    /// Moves the clock to `ts`, committing first at the first and the last commit times it passes.
    fn advance(&mut self, ts: i64) -> Result<(), SimulateError> {
        if let Some(every) = self.options.commit_every_ms {
            let elapsed = ts - self.schedule.last_commit;
            if elapsed >= every {
                let first = self.schedule.last_commit + every;
                let last = ts - elapsed % every;
                self.commit(first)?;
                if last > first {
                    self.commit(last)?;
                }
            }
        }
        self.schedule.clock = Some(ts);
        Ok(())
    }

    fn handle(&mut self, record: &SimulatedRecord, now: i64) -> Result<(), SimulateError> {
        let headers = RecordHeaders::Owned(&record.headers);
        if self
            .tasks
            .marker(record.input, record.partition, headers, now)
        {
            self.summary.markers += 1;
            return Ok(());
        }
        let view = record.view();
        self.tasks.process(&view, now)?;
        self.summary.processed += 1;
        Ok(())
    }

    fn commit(&mut self, now: i64) -> Result<(), SimulateError> {
        let application_id = &self.options.application_id;
        // The capture never fails to enqueue: nothing to abort.
        if let Some(e) = self
            .tasks
            .prepare_commit(now, |store| changelog_topic(application_id, store))
        {
            return Err(RuntimeError::Delivery(e.to_string()).into());
        }
        self.summary.commits += 1;
        self.schedule.last_commit = now;
        self.schedule.since_commit = 0;
        Ok(())
    }

    /// End of input: the operator's hook, then the final commit; returns what the simulation produced.
    pub fn finish(mut self) -> Result<Simulation, SimulateError> {
        if self.schedule.clock.is_none() {
            // Only tables (or nothing): the tasks still start, at the epoch, so the tables are read.
            self.start(0)?;
        }
        let now = self.schedule.clock.unwrap_or(0);
        self.tasks.end_of_input(now)?;
        self.commit(now)?;
        let mut summary = self.summary;
        let emitter = &mut self.tasks.emitter;
        for record in std::mem::take(&mut emitter.transport.records) {
            summary
                .records
                .entry(record.topic.clone())
                .or_default()
                .push(record);
        }
        summary.outputs = emitter
            .outputs
            .iter()
            .cloned()
            .zip(emitter.sent_outputs.iter().copied())
            .collect();
        summary.dead_letters = emitter.dead_letters.clone();
        summary.late = emitter.late.clone();
        summary.changelog = emitter.sent_changelog.clone();
        summary.task_watermarks = self.tasks.task_watermarks.clone();
        summary.counters = self
            .tasks
            .operator
            .counters()
            .into_iter()
            .map(|(name, _, value)| (name, value))
            .collect();
        Ok(summary)
    }
}

#[cfg(test)]
#[path = "simulate_tests.rs"]
mod tests;
