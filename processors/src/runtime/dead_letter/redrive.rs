//! Re-sending dead letters to the topic they came from (`adstream dlq redrive`): which letters a selection takes,
//! which of them are re-sent, that every target exists before anything is sent, and the sending itself with
//! every delivery confirmed.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use super::scan::{partition_count, reader, reader_config, scan_blocking, ScanError};
use super::{header, keep_one_per_source, redrive_headers, DeadLetter, DeadLetterError};

/// Where a re-sent record goes: its source topic and partition.
pub type Target = (String, i32);

/// Why dead letters could not be selected or re-sent.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// The dead-letter topic or a topic's metadata could not be read.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// A selected letter does not say where it goes back to.
    #[error(transparent)]
    Letter(#[from] DeadLetterError),
    /// The selection names a partition the dead-letter topic does not have.
    #[error("--partition {partition}: {dlq_topic} has partitions 0 to {}", .partitions - 1)]
    NoSuchPartition {
        /// The partition asked for.
        partition: i32,
        /// The dead-letter topic.
        dlq_topic: String,
        /// Its partition count.
        partitions: i32,
    },
    /// The selection names offsets that hold no dead letter.
    #[error(
        "no dead letter at offset(s) {} of {dlq_topic} partition {partition}; nothing was sent",
        .offsets.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
    )]
    NoSuchOffsets {
        /// The offsets without a letter.
        offsets: Vec<i64>,
        /// The dead-letter topic.
        dlq_topic: String,
        /// Its partition asked for.
        partition: i32,
    },
    /// A target topic does not exist.
    #[error("source topic '{topic}' does not exist; nothing was sent")]
    NoSourceTopic {
        /// The topic.
        topic: String,
    },
    /// A target topic has fewer partitions than a letter came from.
    #[error(
        "source topic '{topic}' has {count} partition(s), a dead letter came from partition {partition}; nothing \
         was sent"
    )]
    NoSourcePartition {
        /// The topic.
        topic: String,
        /// Its partition count.
        count: i32,
        /// The partition a letter names.
        partition: i32,
    },
    /// The thread checking the targets panicked or was cancelled.
    #[error("the metadata thread failed")]
    Thread(#[source] tokio::task::JoinError),
    /// librdkafka refused the producer configuration.
    #[error("invalid Kafka client configuration")]
    Producer(#[source] KafkaError),
    /// A record could not be handed to the producer; what was in flight before it has been waited for.
    #[error(transparent)]
    Send(Box<SendFailure>),
    /// Some re-sent records were not delivered.
    #[error("{} of {sent} re-sent record(s) not delivered; first: {}", .failures.len(), .failures.first().map(String::as_str).unwrap_or_default())]
    Undelivered {
        /// Records sent.
        sent: usize,
        /// `<letter>: <error>` of each record not delivered.
        failures: Vec<String>,
    },
}

/// A record the producer refused, and what became of those sent before it.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot send {from} to {topic} partition {partition}: {error}; of the {enqueued} record(s) sent before it, {} \
     were delivered and {} failed{}",
    .enqueued - .failures.len(),
    .failures.len(),
    .failures.first().map(|f| format!(" (first: {f})")).unwrap_or_default()
)]
pub struct SendFailure {
    /// `<dead-letter topic>/<partition>/<offset>` of the letter.
    pub from: String,
    /// Its target topic.
    pub topic: String,
    /// Its target partition.
    pub partition: i32,
    /// librdkafka's refusal.
    pub error: KafkaError,
    /// Records handed to the producer before it.
    pub enqueued: usize,
    /// `<letter>: <error>` of each of those that was not delivered.
    pub failures: Vec<String>,
}

/// Which dead letters a redrive takes: those matching both `class` and `offsets` (of `partition`) where given.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// Only letters of this class (`dlq_error_class`).
    pub class: Option<String>,
    /// Only letters at these offsets of `partition`.
    pub offsets: BTreeSet<i64>,
    /// The dead-letter topic's partition that `offsets` refer to.
    pub partition: Option<i32>,
}

/// The letters a selector took from a dead-letter topic.
#[derive(Debug, Default)]
pub struct Selection {
    /// The selected letters, in the order read.
    pub selected: Vec<DeadLetter>,
    /// Dead letters per class, all of them.
    pub counts: BTreeMap<String, u64>,
}

/// Reads `dlq_topic` to its end and selects with `selector`. Fails when `selector` names a partition the topic
/// does not have or offsets holding no letter (whatever the class).
pub async fn select(
    base: &ClientConfig,
    bootstrap: &str,
    dlq_topic: &str,
    source_topic: &str,
    selector: Selector,
) -> Result<Selection, RedriveError> {
    let Selector {
        class,
        offsets,
        partition,
    } = selector;
    let wanted = offsets.clone();
    let state = (Selection::default(), BTreeSet::<i64>::new());
    let ((selection, found_offsets), partitions) = scan_blocking(
        base,
        bootstrap,
        dlq_topic,
        source_topic,
        state,
        move |(selection, found_offsets), letter| {
            let letter_class = letter.class();
            *selection.counts.entry(letter_class.clone()).or_default() += 1;
            let class_ok = class.as_deref().is_none_or(|c| c == letter_class);
            let offset_ok = wanted.is_empty()
                || (Some(letter.partition) == partition && wanted.contains(&letter.offset));
            if offset_ok && !wanted.is_empty() {
                found_offsets.insert(letter.offset);
            }
            if class_ok && offset_ok {
                selection.selected.push(letter);
            }
        },
    )
    .await?;
    if let Some(partition) = partition {
        if partition < 0 || partition >= partitions {
            return Err(RedriveError::NoSuchPartition {
                partition,
                dlq_topic: dlq_topic.to_owned(),
                partitions,
            });
        }
        // Every requested offset must exist, whatever the class says.
        let missing: Vec<i64> = offsets.difference(&found_offsets).copied().collect();
        if !missing.is_empty() {
            return Err(RedriveError::NoSuchOffsets {
                offsets: missing,
                dlq_topic: dlq_topic.to_owned(),
                partition,
            });
        }
    }
    Ok(selection)
}

/// The selected letters that are re-sent, and why the others are not.
#[derive(Debug)]
pub struct Plan {
    /// The letters to re-send, in partition, offset order.
    pub letters: Vec<DeadLetter>,
    /// Letters dropped because an earlier one names the same source record.
    pub duplicates: usize,
    /// Letters dropped because they were cut to fit the dead-letter topic and no longer hold the record.
    pub truncated: usize,
}

/// Orders `selected` by partition and offset, keeps one letter per source record and drops truncated letters.
pub fn plan(mut selected: Vec<DeadLetter>) -> Plan {
    selected.sort_by_key(|l| (l.partition, l.offset));
    let duplicates = keep_one_per_source(&mut selected);
    // A letter cut to fit the dead-letter topic no longer holds the original record: it is never re-sent.
    let before = selected.len();
    selected.retain(|letter| letter.header(header::TRUNCATED).is_none());
    Plan {
        truncated: before - selected.len(),
        letters: selected,
        duplicates,
    }
}

/// Where each letter goes, so that every one says it before anything is sent.
pub fn targets(
    letters: &[DeadLetter],
    dlq_topic: &str,
    source_topic: &str,
) -> Result<Vec<Target>, DeadLetterError> {
    letters
        .iter()
        .map(|letter| letter.source(dlq_topic, source_topic))
        .collect()
}

/// `3 to ads.clicks, 1 to ads.impressions`.
pub fn per_topic(targets: &[Target]) -> String {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for (topic, _) in targets {
        *counts.entry(topic.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(topic, n)| format!("{n} to {topic}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fails unless every target topic exists with the target partition.
pub async fn check_targets(
    base: &ClientConfig,
    bootstrap: &str,
    targets: &[Target],
) -> Result<(), RedriveError> {
    let mut highest: HashMap<String, i32> = HashMap::new();
    for (topic, partition) in targets {
        let entry = highest.entry(topic.clone()).or_insert(*partition);
        *entry = (*entry).max(*partition);
    }
    let config = reader_config(base);
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || -> Result<(), RedriveError> {
        let consumer = reader(&config)?;
        for (topic, partition) in highest {
            match partition_count(&consumer, &bootstrap, &topic)? {
                None => return Err(RedriveError::NoSourceTopic { topic }),
                Some(count) if partition >= count => {
                    return Err(RedriveError::NoSourcePartition {
                        topic,
                        count,
                        partition,
                    })
                }
                Some(_) => {}
            }
        }
        Ok(())
    })
    .await
    .map_err(RedriveError::Thread)?
}

/// Produces every letter to its target with its original key, value, timestamp and headers (minus the
/// dead-letter ones) plus `redriven_from`, through an idempotent producer with `acks=all`, and waits for every
/// delivery; any failure is an error.
pub async fn send(
    base: &ClientConfig,
    dlq_topic: &str,
    letters: &[DeadLetter],
    targets: &[Target],
) -> Result<(), RedriveError> {
    let mut config = base.clone();
    if config.get("message.timeout.ms").is_none() {
        // Bounded so that an unreachable broker fails the deliveries within seconds, not the 5-minute default.
        config.set("message.timeout.ms", "30000");
    }
    config.set("enable.idempotence", "true").set("acks", "all");
    let producer: FutureProducer = config.create().map_err(RedriveError::Producer)?;
    let mut pending: VecDeque<(String, DeliveryFuture)> = VecDeque::new();
    let mut failures: Vec<String> = Vec::new();
    for (enqueued, (letter, (topic, partition))) in letters.iter().zip(targets).enumerate() {
        let from = format!("{dlq_topic}/{}/{}", letter.partition, letter.offset);
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(*partition)
            .headers(redrive_headers(letter, &from));
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &letter.value {
            record = record.payload(value.as_slice());
        }
        if let Some(ts) = letter.timestamp_ms {
            record = record.timestamp(ts);
        }
        loop {
            match producer.send_result(record) {
                Ok(future) => {
                    pending.push_back((from, future));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    match pending.pop_front() {
                        Some((from, future)) => await_delivery(&from, future, &mut failures).await,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((error, _)) => {
                    // Wait for what is in flight, so the error says exactly what was delivered.
                    while let Some((from, future)) = pending.pop_front() {
                        await_delivery(&from, future, &mut failures).await;
                    }
                    return Err(RedriveError::Send(Box::new(SendFailure {
                        from,
                        topic: topic.clone(),
                        partition: *partition,
                        error,
                        enqueued,
                        failures,
                    })));
                }
            }
        }
    }
    while let Some((from, future)) = pending.pop_front() {
        await_delivery(&from, future, &mut failures).await;
    }
    if !failures.is_empty() {
        return Err(RedriveError::Undelivered {
            sent: letters.len(),
            failures,
        });
    }
    Ok(())
}

/// Waits for one delivery report, noting a failure as `<from>: <error>`.
async fn await_delivery(from: &str, future: DeliveryFuture, failures: &mut Vec<String>) {
    match future.await {
        Ok(Ok(_)) => {}
        Ok(Err((error, _))) => failures.push(format!("{from}: {error}")),
        Err(_) => failures.push(format!("{from}: the producer dropped the delivery report")),
    }
}
