//! The per-task rules every run of an operator follows, live ([`super::driver`]) or simulated
//! ([`super::simulate`]): per-task event-time watermarks, watermark markers read and written, dead letters, table
//! bootstrap, what happens at a commit before Kafka is asked to commit it, and the end of input.
//!
//! Time is always passed in (`now`): the wall clock live, the simulation's event-time clock in a simulation.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::error::KafkaError;

use super::dead_letter::Class;
use super::driver::RuntimeError;
use super::emit::{Context, Emitter, Outgoing, Transport};
use super::{DecodeError, InputKind, InputSpec, Operator, Record, RecordHeaders, SchemaCache};
use crate::watermark::PartitionWatermarks;

/// Header of a watermark marker on an internal topic: the writing stage's task watermark (decimal millis).
pub(crate) const WATERMARK_HEADER: &str = "adstream_watermark";
/// Header of a watermark marker: the writing stage's task number.
pub(crate) const WATERMARK_TASK_HEADER: &str = "adstream_watermark_task";
/// Header of a watermark marker: how many tasks the writing stage has.
pub(crate) const WATERMARK_TASKS_HEADER: &str = "adstream_watermark_tasks";

/// A watermark marker read from a marked input: (watermark, task, tasks).
fn watermark_marker(headers: RecordHeaders<'_>) -> Option<(i64, usize, usize)> {
    let watermark = headers.text(WATERMARK_HEADER)?.parse().ok()?;
    let task = headers.text(WATERMARK_TASK_HEADER)?.parse().ok()?;
    let tasks = headers.text(WATERMARK_TASKS_HEADER)?.parse().ok()?;
    // A marker from a writer with absurdly many tasks is not one of ours.
    (task < tasks && tasks <= 100_000).then_some((watermark, task, tasks))
}

/// The correlation id of the record at `offset` of `partition` of `topic`: its `correlation_id` header, or
/// `<topic>/<partition>/<offset>` when it has none.
pub(crate) fn correlation_id<'a>(
    headers: RecordHeaders<'a>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Cow<'a, str> {
    match headers.text("correlation_id") {
        Some(id) => Cow::Borrowed(id),
        None => Cow::Owned(format!("{topic}/{partition}/{offset}")),
    }
}

/// How the tasks judge event time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventTimeRules {
    /// A partition without records for this long no longer holds its task's watermark back.
    pub idle_timeout: Duration,
    /// How far ahead of `now` a stream record's timestamp may be; None where `now` is not a wall clock.
    pub max_event_time_ahead: Option<Duration>,
}

/// An operator with its emitter and the progress of the tasks it runs.
pub(crate) struct Tasks<T> {
    pub operator: Box<dyn Operator>,
    pub emitter: Emitter<T>,
    pub schemas: SchemaCache,
    pub inputs: Vec<InputSpec>,
    idle_timeout: Duration,
    /// How far ahead of `now` a stream record's timestamp may be (see
    /// [`super::RuntimeConfig::max_event_time_ahead`]);
    /// None where `now` is not a wall clock (simulations run on event time).
    max_event_time_ahead: Option<Duration>,
    /// Per task (partition number): the watermark over its stream inputs.
    pub watermarks: BTreeMap<i32, PartitionWatermarks<usize>>,
    /// The latest watermark of each task, handed to operators at commits.
    pub task_watermarks: BTreeMap<i32, Option<i64>>,
    /// Partition count of the inputs (the number of tasks of the job).
    partitions: i32,
    /// Outputs with watermark markers, with their partition counts: markers go to each partition.
    marked_outputs: Vec<(String, i32)>,
    /// Per task, the watermark last announced on the outputs with watermark markers.
    announced: BTreeMap<i32, i64>,
    /// Per (marked input, partition): the latest watermark announced by each task of the writing stage.
    upstream: HashMap<(usize, i32), Vec<Option<i64>>>,
}

impl<T: Transport + 'static> Tasks<T> {
    /// `operator` with no task assigned yet; its records go through `transport`.
    pub fn new(
        operator: Box<dyn Operator>,
        application_id: &str,
        transport: T,
        schemas: SchemaCache,
        time: EventTimeRules,
        partitions: i32,
        marked_outputs: Vec<(String, i32)>,
    ) -> Tasks<T> {
        let inputs = operator.inputs();
        let emitter = Emitter::new(
            application_id,
            operator.outputs().into_iter().map(|o| o.topic).collect(),
            inputs.iter().map(|i| i.topic.clone()).collect(),
            transport,
        );
        Tasks {
            operator,
            emitter,
            schemas,
            inputs,
            idle_timeout: time.idle_timeout,
            max_event_time_ahead: time.max_event_time_ahead,
            watermarks: BTreeMap::new(),
            task_watermarks: BTreeMap::new(),
            partitions,
            marked_outputs,
            announced: BTreeMap::new(),
            upstream: HashMap::new(),
        }
    }

    fn context<'a>(
        &'a mut self,
        watermark: Option<i64>,
        now: i64,
        error: &'a mut Option<KafkaError>,
    ) -> (&'a mut Box<dyn Operator>, Context<'a>) {
        let ctx = Context {
            emitter: &mut self.emitter,
            schemas: &mut self.schemas,
            watermark,
            task_watermarks: &self.task_watermarks,
            now_ms: now,
            error,
        };
        (&mut self.operator, ctx)
    }

    /// Task `partition` starts, at `now`: its stream inputs hold its watermark until they see events or go idle.
    pub fn assign(&mut self, partition: i32, now: i64) {
        let mut watermarks = PartitionWatermarks::new(self.idle_timeout);
        for (input, spec) in self.inputs.iter().enumerate() {
            if spec.kind == InputKind::Stream {
                watermarks.assign(input, now);
            }
        }
        self.watermarks.insert(partition, watermarks);
    }

    /// Task `partition` (assigned) resumes at the watermark its last commit had, which its watermark never goes
    /// below from now on.
    pub fn resume_watermark(&mut self, partition: i32, watermark: i64) {
        if let Some(task) = self.watermarks.get_mut(&partition) {
            task.resume_at(watermark);
        }
        let current = self.task_watermarks.entry(partition).or_default();
        *current = (*current).max(Some(watermark));
    }

    /// Task `partition` was handed over: it no longer has a watermark.
    pub fn revoke(&mut self, partition: i32) {
        self.watermarks.remove(&partition);
        self.task_watermarks.remove(&partition);
    }

    /// Forgets task `partition`'s state (stores, operator, markers), before a hand-over or a restore.
    pub fn drop_partition(&mut self, partition: i32) {
        for store in self.operator.stores() {
            store.drop_partition(partition);
        }
        // Announce again after a restore or hand-over; forget what the upstream stage said for this partition
        // (its markers are read again from the committed offset or by the next owner).
        self.announced.remove(&partition);
        self.upstream.retain(|(_, p), _| *p != partition);
        self.operator.on_revoked(partition);
    }

    /// If the record at `partition` of `input` with `headers` is a watermark marker of a marked input, takes note of
    /// it and returns true: it is not handed to the operator.
    pub fn marker(
        &mut self,
        input: usize,
        partition: i32,
        headers: RecordHeaders<'_>,
        now: i64,
    ) -> bool {
        if !self.inputs[input].watermark_markers {
            return false;
        }
        let Some((watermark, writer_task, writer_tasks)) = watermark_marker(headers) else {
            return false;
        };
        self.observe_marker(input, partition, watermark, writer_task, writer_tasks, now);
        true
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
        now: i64,
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
            task.observe(input, slowest, now);
        }
    }

    /// Why the runtime refuses `record` before any operator sees it, as (message, dead-letter class): headers it
    /// cannot trust, or an event time that would corrupt its task's watermark.
    fn refusal(&self, record: &Record<'_>, now: i64) -> Option<(String, Class)> {
        if let Some(problem) = record.headers.problem() {
            return Some((problem.to_string(), Class::BadHeaders));
        }
        if self.inputs[record.input].kind != InputKind::Stream {
            return None;
        }
        // Keys decide which task sees a record: a stream record without one landed on an arbitrary partition, and
        // would be counted by a task that does not own its key's state.
        if record.key.is_none() {
            return Some((
                "the record has no key (stream topics are keyed; the key decides its partition)"
                    .to_owned(),
                Class::MissingKey,
            ));
        }
        let timestamp = record.timestamp_ms?;
        if timestamp < 0 {
            return Some((
                format!("record timestamp {timestamp} is before 1970 (negative)"),
                Class::NegativeTimestamp,
            ));
        }
        // One record with a timestamp years ahead (microseconds written as milliseconds) would move its task's
        // watermark for good and make every later event "late". Only a live run has a wall clock to compare with.
        let ahead = self.max_event_time_ahead?;
        let limit_ms = i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX);
        (timestamp.saturating_sub(now) > limit_ms).then(|| {
            (
                format!(
                    "record timestamp {timestamp} is {} s ahead of the wall clock ({now}); at most {} s are accepted",
                    (timestamp - now) / 1000,
                    ahead.as_secs()
                ),
                Class::FutureTimestamp,
            )
        })
    }

    /// Hands `record` (not a marker) to the operator at `now`, after moving its task's watermark; a record that
    /// does not decode, or that the runtime refuses (see [`Tasks::refusal`]), goes to `dlq.<topic>`.
    pub fn process(&mut self, record: &Record<'_>, now: i64) -> Result<(), RuntimeError> {
        let input = record.input;
        let refusal = self.refusal(record, now);
        let watermark = match self.watermarks.get_mut(&record.partition) {
            // A refused record's time says nothing: it does not move the watermark.
            Some(task) if refusal.is_some() => task.current(now),
            Some(task) if self.inputs[input].kind == InputKind::Stream => {
                match record.timestamp_ms {
                    // An internal topic interleaves records of every task of the writing stage, each at its own
                    // pace: only the markers say how far all of them got.
                    _ if self.inputs[input].watermark_markers => task.mark_active(input, now),
                    Some(ts) => {
                        task.observe(input, ts, now);
                    }
                    None => {}
                }
                task.current(now)
            }
            Some(task) => task.current(now),
            None => None,
        };
        let mut error = None;
        let (operator, mut ctx) = self.context(watermark, now, &mut error);
        if let Some((message, class)) = refusal {
            tracing::debug!(
                error = %message,
                correlation_id = record.correlation_id,
                offset = record.offset,
                "dead-lettering record"
            );
            ctx.dead_letter(record, &message, class);
        } else {
            // No span per record (it costs about a fifth of the job's CPU at info level): the per-record log
            // events below name the record's correlation id themselves.
            match operator.process(record, &mut ctx) {
                Ok(()) => {}
                Err(e) if e.is_transient() => {
                    return Err(RuntimeError::Transient {
                        partition: record.partition,
                        input,
                        offset: record.offset,
                        message: e.to_string(),
                    })
                }
                Err(e) if e.is_fatal() => return Err(RuntimeError::RegistryRefused(e.to_string())),
                Err(e) => {
                    tracing::debug!(
                        error = %e,
                        correlation_id = record.correlation_id,
                        offset = record.offset,
                        "dead-lettering record"
                    );
                    ctx.dead_letter(record, &e.to_string(), e.class());
                }
            }
        }
        match error {
            Some(e) => Err(RuntimeError::Delivery(format!(
                "cannot enqueue output of record {}: {e}",
                record.correlation_id
            ))),
            None => Ok(()),
        }
    }

    /// Applies the record at `offset` of `partition` of table input `input` while its task is restored, before
    /// any stream record of the task. A record that does not decode is skipped here (it is dead-lettered when read
    /// as a record), so that bootstrap never writes outside a transaction. A record that could not be decoded
    /// because the registry is unavailable or refusing is not skipped: it is returned as an error, since skipping
    /// it would run the task without that table row (a campaign unknown to campaign-metrics, its events ignored).
    pub fn bootstrap(
        &mut self,
        input: usize,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        now: i64,
    ) -> Result<(), DecodeError> {
        let record = Record {
            input,
            partition,
            offset,
            timestamp_ms: None,
            key,
            value,
            headers: RecordHeaders::None,
            correlation_id: "table-bootstrap",
        };
        let mut error = None;
        let (operator, mut ctx) = self.context(None, now, &mut error);
        match operator.process(&record, &mut ctx) {
            Err(e) if e.is_transient() || e.is_fatal() => Err(e),
            _ => Ok(()),
        }
    }

    /// Everything a commit does before Kafka commits it, at `now`: each task's watermark, the operator's commit
    /// hook, the watermark markers, and the stores' changes to their changelogs (`changelog_topic` names a store's).
    /// Returns the first error enqueueing any of it.
    pub fn prepare_commit(
        &mut self,
        now: i64,
        changelog_topic: impl Fn(&str) -> String,
    ) -> Option<KafkaError> {
        for (partition, task) in &mut self.watermarks {
            self.task_watermarks.insert(*partition, task.current(now));
        }
        let mut error = None;
        {
            let (operator, mut ctx) = self.context(None, now, &mut error);
            operator.on_commit(&mut ctx);
        }
        if let Some(e) = self.announce_watermarks() {
            error.get_or_insert(e);
        }
        let emitter = &mut self.emitter;
        for store in self.operator.stores() {
            let topic = changelog_topic(store.name());
            if !emitter.transport.keeps_changelog() {
                emitter.count_changelog(&topic, store.discard_changes());
                continue;
            }
            store.flush(&mut |partition, key, value| {
                if let Err(e) = emitter.send_changelog(&topic, partition, key, value) {
                    error.get_or_insert(e);
                }
            });
        }
        error
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
            let headers = [
                (WATERMARK_HEADER, Some(text.as_bytes())),
                (WATERMARK_TASK_HEADER, Some(task_text.as_bytes())),
                (WATERMARK_TASKS_HEADER, Some(tasks.as_bytes())),
            ];
            for (topic, partitions) in &self.marked_outputs {
                for partition in 0..*partitions {
                    let sent = self.emitter.transport.send(&Outgoing {
                        topic,
                        partition: Some(partition),
                        key: b"",
                        value: None,
                        timestamp_ms: Some(watermark),
                        headers: &headers,
                    });
                    if let Err(e) = sent {
                        return Some(e);
                    }
                }
            }
            self.announced.insert(*task, watermark);
        }
        None
    }

    /// Lets the operator emit what waits for event time, before the last commit of a run that read all its input.
    pub fn end_of_input(&mut self, now: i64) -> Result<(), RuntimeError> {
        // Nothing more will come: each task's watermark moves to the latest event time it saw (a sparse input no
        // longer holds it back), here and at the final commit.
        for (partition, task) in &mut self.watermarks {
            self.task_watermarks.insert(*partition, task.finish());
        }
        let mut error = None;
        {
            let (operator, mut ctx) = self.context(None, now, &mut error);
            operator.on_end_of_input(&mut ctx);
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
}
