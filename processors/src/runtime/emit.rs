//! Where an operator's records go: outputs, dead letters, late records, watermark markers and changelogs.
//!
//! An [`Emitter`] names the records (output topics, the `dlq.`/`late.` redirects and their headers) and counts them;
//! its [`Transport`] delivers them. Live, the transport is the job's Kafka producer (in `driver`); in a simulation
//! it is a [`Capture`] that keeps them in memory. Both paths build the same records with the same headers, because
//! the naming is done here, once.

use std::collections::BTreeMap;

use rdkafka::error::KafkaError;

use super::dead_letter::{header, is_runtime_header, Class, DLQ_PREFIX, LATE_PREFIX};
use super::{Record, SchemaCache};

/// One record an operator sends, as the emitter hands it to its transport.
pub(crate) struct Outgoing<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Explicit partition; None lets the producer's partitioner choose from the key.
    pub partition: Option<i32>,
    /// Key bytes.
    pub key: &'a [u8],
    /// Value bytes; None for a tombstone or a marker.
    pub value: Option<&'a [u8]>,
    /// Record timestamp.
    pub timestamp_ms: Option<i64>,
    /// Headers in order as (key, value).
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

/// Delivers what an [`Emitter`] sends. Errors are enqueue errors of the live producer; a capture never fails.
pub(crate) trait Transport {
    /// Sends an output, dead letter, late record or watermark marker.
    fn send(&mut self, record: &Outgoing<'_>) -> Result<(), KafkaError>;
    /// Sends a changelog record of a state store (no headers, no timestamp).
    fn send_changelog(&mut self, record: &Outgoing<'_>) -> Result<(), KafkaError>;
    /// Whether changelog records go anywhere. A transport that drops them spares the stores serializing every
    /// changed value at each commit; they are still counted.
    fn keeps_changelog(&self) -> bool {
        true
    }
}

/// A record a simulation captured instead of producing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedRecord {
    /// Topic.
    pub topic: String,
    /// The partition the record was sent to explicitly (dead letters, late records, watermark markers); None for
    /// a keyed output, whose partition Kafka's partitioner would choose (see
    /// [`adstream_kafka::partitioner::kafka_partition`]).
    pub partition: Option<i32>,
    /// Key bytes (empty for a watermark marker).
    pub key: Vec<u8>,
    /// Value bytes; None for a watermark marker.
    pub value: Option<Vec<u8>>,
    /// Record timestamp.
    pub timestamp_ms: Option<i64>,
    /// Headers in order; a header with a null value is captured with an empty one.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl CapturedRecord {
    /// Applies the record to `table`, a topic's compacted view (latest value per key): a value replaces the key's,
    /// a tombstone removes the key, a watermark marker (no key, no value) changes nothing.
    pub fn compact_into(&self, table: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
        match &self.value {
            Some(value) => {
                table.insert(self.key.clone(), value.clone());
            }
            None if !self.key.is_empty() => {
                table.remove(&self.key);
            }
            None => {}
        }
    }
}

/// The simulation's transport: records in memory in the order they were sent; changelog records dropped (the
/// operator's stores hold the state, and nothing restores from a changelog in a simulation).
#[derive(Debug, Default)]
pub(crate) struct Capture {
    /// Everything sent but changelog records.
    pub records: Vec<CapturedRecord>,
}

impl Transport for Capture {
    fn send(&mut self, record: &Outgoing<'_>) -> Result<(), KafkaError> {
        self.records.push(CapturedRecord {
            topic: record.topic.to_owned(),
            partition: record.partition,
            key: record.key.to_vec(),
            value: record.value.map(<[u8]>::to_vec),
            timestamp_ms: record.timestamp_ms,
            headers: record
                .headers
                .iter()
                .map(|(key, value)| ((*key).to_owned(), value.unwrap_or_default().to_vec()))
                .collect(),
        });
        Ok(())
    }

    fn send_changelog(&mut self, _record: &Outgoing<'_>) -> Result<(), KafkaError> {
        Ok(())
    }

    fn keeps_changelog(&self) -> bool {
        false
    }
}

/// Where the operator's records go, with what they are named and counted by. The transport is the last field so
/// that a `&mut Emitter<KafkaTransport>` or `&mut Emitter<Capture>` can be handed to [`Context`] as
/// `&mut Emitter<dyn Transport>`.
pub(crate) struct Emitter<T: ?Sized> {
    /// The job's application id, named on the records it redirects.
    pub application_id: String,
    /// Output topics by output index.
    pub outputs: Vec<String>,
    /// Input topics by input index.
    pub input_topics: Vec<String>,
    /// Records sent per output index.
    pub sent_outputs: Vec<u64>,
    /// Changelog records sent per topic.
    pub sent_changelog: BTreeMap<String, u64>,
    /// Dead letters per (source topic, class).
    pub dead_letters: BTreeMap<(String, String), u64>,
    /// Late records per source topic.
    pub late: BTreeMap<String, u64>,
    /// Delivers the records.
    pub transport: T,
}

impl<T> Emitter<T> {
    /// An emitter with nothing sent yet.
    pub fn new(
        application_id: &str,
        outputs: Vec<String>,
        input_topics: Vec<String>,
        transport: T,
    ) -> Emitter<T> {
        Emitter {
            application_id: application_id.to_owned(),
            sent_outputs: vec![0; outputs.len()],
            outputs,
            input_topics,
            sent_changelog: BTreeMap::new(),
            dead_letters: BTreeMap::new(),
            late: BTreeMap::new(),
            transport,
        }
    }
}

impl<T: Transport + ?Sized> Emitter<T> {
    /// Counts `records` changelog records of the store whose changelog is `topic` that were not sent (the
    /// transport does not keep changelogs).
    pub fn count_changelog(&mut self, topic: &str, records: u64) {
        if records > 0 {
            *self.sent_changelog.entry(topic.to_owned()).or_default() += records;
        }
    }

    /// Sends one changelog record of the store whose changelog is `topic`, and counts it.
    pub fn send_changelog(
        &mut self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), KafkaError> {
        // Counted without allocating the topic name, but for a store's first record.
        match self.sent_changelog.get_mut(topic) {
            Some(sent) => *sent += 1,
            None => {
                self.sent_changelog.insert(topic.to_owned(), 1);
            }
        }
        self.transport.send_changelog(&Outgoing {
            topic,
            partition: Some(partition),
            key,
            value,
            timestamp_ms: None,
            headers: &[],
        })
    }
}

/// What an operator may do while handling a record or a commit.
pub struct Context<'a> {
    pub(crate) emitter: &'a mut Emitter<dyn Transport>,
    /// Writer-schema cache for decoding inputs.
    pub schemas: &'a mut SchemaCache,
    /// While handling a record: the event-time watermark of its task (partition number n of every stream input);
    /// None until one of them has seen an event. At a commit: None (see [`Context::watermark_of`]).
    pub watermark: Option<i64>,
    /// Watermark of every owned task at this call.
    pub(crate) task_watermarks: &'a BTreeMap<i32, Option<i64>>,
    /// Time of this call (epoch millis): the wall clock live, the simulation's event-time clock in a simulation.
    pub now_ms: i64,
    pub(crate) error: &'a mut Option<KafkaError>,
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
        let Some(topic) = self.emitter.outputs.get(output) else {
            return;
        };
        let sent = self.emitter.transport.send(&Outgoing {
            topic,
            partition: None,
            key,
            value: Some(value),
            timestamp_ms: Some(timestamp_ms),
            headers: &[("correlation_id", Some(correlation_id.as_bytes()))],
        });
        match sent {
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
        self.redirect(record, Redirect::Late, reason, "expired");
    }

    /// Sends `record` unchanged to `dlq.<topic>`: it failed with `error` (of class `class`).
    pub(crate) fn dead_letter(&mut self, record: &Record<'_>, error: &str, class: Class) {
        if let Some(source) = self.emitter.input_topics.get(record.input) {
            *self
                .emitter
                .dead_letters
                .entry((source.clone(), class.as_str().to_owned()))
                .or_default() += 1;
        }
        self.redirect(record, Redirect::DeadLetter, error, class.as_str());
    }

    fn redirect(&mut self, record: &Record<'_>, to: Redirect, message: &str, class: &str) {
        let Some(source) = self.emitter.input_topics.get(record.input) else {
            return;
        };
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        let now = self.now_ms.to_string();
        // Redirects are rare (bad or late records): one small vector of borrowed headers each is fine.
        let mut headers: Vec<(&str, Option<&[u8]>)> = vec![
            (to.headers().class, Some(class.as_bytes())),
            (to.headers().message, Some(message.as_bytes())),
            (header::SOURCE_TOPIC, Some(source.as_bytes())),
            (header::SOURCE_PARTITION, Some(partition.as_bytes())),
            (header::SOURCE_OFFSET, Some(offset.as_bytes())),
            (header::REDIRECTED_AT, Some(now.as_bytes())),
            // Several jobs read the same topics: each dead-letters a poison record it meets.
            (
                header::REDIRECTED_BY,
                Some(self.emitter.application_id.as_bytes()),
            ),
            (
                header::CORRELATION_ID,
                Some(record.correlation_id.as_bytes()),
            ),
        ];
        // The record's own headers (CloudEvents, content type, an earlier redrive's provenance) travel with it;
        // the ones set above are not repeated. A key that is not UTF-8 travels with its invalid bytes replaced.
        let carried: Vec<(std::borrow::Cow<'_, str>, Option<&[u8]>)> = record
            .headers
            .iter_raw()
            .map(|(key, value)| (super::headers::key_text(key), value))
            .filter(|(key, _)| !is_runtime_header(key))
            .collect();
        let mut key = record.key.unwrap_or_default();
        let mut value = record.value;
        let whole = key.len()
            + value.map_or(0, <[u8]>::len)
            + headers
                .iter()
                .map(|(k, v)| header_size(k, *v))
                .sum::<usize>()
            + carried
                .iter()
                .map(|(k, v)| header_size(k, *v))
                .sum::<usize>();
        let truncation = (whole > REDIRECT_MAX_BYTES).then(|| Truncation::of(record));
        match &truncation {
            None => headers.extend(carried.iter().map(|(k, v)| (k.as_ref(), *v))),
            Some(truncation) => {
                // The whole record cannot be written: its key and value are cut to fit and its own headers are left
                // out, with the original sizes and a SHA-256 of the value so the original can be found upstream.
                key = &key[..key.len().min(REDIRECT_KEPT_KEY_BYTES)];
                value = value.map(|v| &v[..v.len().min(REDIRECT_KEPT_VALUE_BYTES)]);
                headers.extend(truncation.headers(to));
            }
        }
        // A timestamp the broker would refuse on the redirect topic (Kafka 4 refuses records more than
        // `message.timestamp.after.max.ms`, one hour by default, ahead of its clock) would make the redirect fail
        // and stop the job: such a record is written with the producer's time and its own in a header.
        let original_timestamp;
        let timestamp_ms = match record.timestamp_ms {
            Some(t) if t < 0 || t > self.now_ms.saturating_add(REDIRECT_MAX_AHEAD_MS) => {
                original_timestamp = t.to_string();
                headers.push((
                    to.headers().original_timestamp,
                    Some(original_timestamp.as_bytes()),
                ));
                None
            }
            other => other,
        };
        let topic = format!("{}{source}", to.prefix());
        let sent = self.emitter.transport.send(&Outgoing {
            topic: &topic,
            partition: Some(record.partition),
            key,
            value,
            timestamp_ms,
            headers: &headers,
        });
        if let Err(e) = sent {
            self.error.get_or_insert(e);
        }
    }
}

/// Where a record the operator does not take goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Redirect {
    /// `dlq.<topic>`: it cannot be processed.
    DeadLetter,
    /// `late.<topic>`: it came after its window's retention.
    Late,
}

impl Redirect {
    fn prefix(self) -> &'static str {
        match self {
            Redirect::DeadLetter => DLQ_PREFIX,
            Redirect::Late => LATE_PREFIX,
        }
    }

    /// The names of the headers this redirect writes.
    fn headers(self) -> &'static RedirectHeaders {
        match self {
            Redirect::DeadLetter => &DEAD_LETTER_HEADERS,
            Redirect::Late => &LATE_HEADERS,
        }
    }
}

/// The header names of one kind of redirect.
struct RedirectHeaders {
    class: &'static str,
    message: &'static str,
    truncated: &'static str,
    original_timestamp: &'static str,
    original_key_bytes: &'static str,
    original_value_bytes: &'static str,
    original_value_sha256: &'static str,
}

const DEAD_LETTER_HEADERS: RedirectHeaders = RedirectHeaders {
    class: header::CLASS,
    message: header::MESSAGE,
    truncated: header::TRUNCATED,
    original_timestamp: header::ORIGINAL_TIMESTAMP,
    original_key_bytes: "dlq_original_key_bytes",
    original_value_bytes: "dlq_original_value_bytes",
    original_value_sha256: "dlq_original_value_sha256",
};

const LATE_HEADERS: RedirectHeaders = RedirectHeaders {
    class: header::LATE_CLASS,
    message: header::LATE_REASON,
    truncated: "late_truncated",
    original_timestamp: "late_original_timestamp",
    original_key_bytes: "late_original_key_bytes",
    original_value_bytes: "late_original_value_bytes",
    original_value_sha256: "late_original_value_sha256",
};

/// A dead letter or late record is written whole only below this size (key, value and headers): far enough below
/// every default size limit on the way (the producer's `message.max.bytes` of 1,000,000, a topic's
/// `max.message.bytes` of 1,048,588) that a record which fitted its own topic, plus the redirect headers, never
/// makes the redirect fail, which would stop the job on its own dead letter.
pub const REDIRECT_MAX_BYTES: usize = 512 * 1024;
/// How far ahead of the wall clock a redirected record may keep its own timestamp: below Kafka 4's default
/// `message.timestamp.after.max.ms` (one hour).
const REDIRECT_MAX_AHEAD_MS: i64 = 30 * 60 * 1000;

/// A header's share of a record's size: key, value and the record format's per-header varints.
fn header_size(key: &str, value: Option<&[u8]>) -> usize {
    key.len() + value.map_or(0, <[u8]>::len) + 8
}

/// What is kept of a too-large record's key.
const REDIRECT_KEPT_KEY_BYTES: usize = 1024;
/// What is kept of a too-large record's value: enough to see what it was.
const REDIRECT_KEPT_VALUE_BYTES: usize = 64 * 1024;

/// The original sizes and value hash of a record redirected truncated, as header values.
struct Truncation {
    key_bytes: String,
    value_bytes: String,
    value_sha256: String,
}

impl Truncation {
    fn of(record: &Record<'_>) -> Truncation {
        use sha2::Digest;
        let value = record.value.unwrap_or_default();
        let digest = sha2::Sha256::digest(value);
        let mut hex = String::with_capacity(64);
        for byte in digest.iter() {
            hex.push_str(&format!("{byte:02x}"));
        }
        Truncation {
            key_bytes: record.key.map_or(0, <[u8]>::len).to_string(),
            value_bytes: value.len().to_string(),
            value_sha256: hex,
        }
    }

    /// `<prefix>_truncated`, `<prefix>_original_key_bytes`, `<prefix>_original_value_bytes` and
    /// `<prefix>_original_value_sha256`.
    fn headers(&self, to: Redirect) -> [(&'static str, Option<&[u8]>); 4] {
        [
            (to.headers().truncated, Some(b"true".as_slice())),
            (
                to.headers().original_key_bytes,
                Some(self.key_bytes.as_bytes()),
            ),
            (
                to.headers().original_value_bytes,
                Some(self.value_bytes.as_bytes()),
            ),
            (
                to.headers().original_value_sha256,
                Some(self.value_sha256.as_bytes()),
            ),
        ]
    }
}
