//! Re-sending dead letters to the topic they came from (`adstream dlq redrive`): which letters a selection takes,
//! which of them are re-sent, that every target exists before anything is sent, and the sending itself with
//! every delivery confirmed.
//!
//! **The ledger.** Every re-sent letter is recorded in the compacted topic `redriven.<source topic>` (see
//! [`ledger_topic`]), keyed by the source record it holds ([`ledger_key`]), in the same Kafka transaction as the
//! re-sent records: either both are there for `read_committed` readers (the jobs, the next redrive) or neither. A
//! redrive reads the ledger first and leaves out what an earlier run re-sent, so running it twice re-sends each
//! record once. A re-sent record that fails again is dead-lettered as a new letter (it names the re-sent record as
//! its source) and can be re-sent again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

use super::scan::{partition_count, reader, reader_config, scan_blocking, ScanError};
use super::{
    header, keep_one_per_source, redrive_headers, DeadLetter, DeadLetterError, DLQ_PREFIX,
};

/// Prefix of the ledger topics: `redriven.<source topic>` lists what was re-sent from `dlq.<source topic>`.
pub const LEDGER_PREFIX: &str = "redriven.";

/// How long the transaction calls of a redrive may take.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The ledger topic of dead-letter topic `dlq_topic`.
pub fn ledger_topic(dlq_topic: &str) -> String {
    let source = dlq_topic.strip_prefix(DLQ_PREFIX).unwrap_or(dlq_topic);
    format!("{LEDGER_PREFIX}{source}")
}

/// The ledger key of `letter`: the source record it holds (`<topic>/<partition>/<offset>` from its provenance
/// headers), so that a record dead-lettered by several jobs counts as re-sent once whichever letter was sent; a
/// letter without those headers is known by its own place, `<dead-letter topic>/<partition>/<offset>`.
pub fn ledger_key(letter: &DeadLetter, dlq_topic: &str) -> String {
    match (
        letter.header(header::SOURCE_TOPIC),
        letter.header(header::SOURCE_PARTITION),
        letter.header(header::SOURCE_OFFSET),
    ) {
        (Some(topic), Some(partition), Some(offset)) => format!("{topic}/{partition}/{offset}"),
        _ => format!("{dlq_topic}/{}/{}", letter.partition, letter.offset),
    }
}

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
    /// The ledger topic could not be created.
    #[error("cannot create the redrive ledger '{topic}': {message}; nothing was sent")]
    Ledger {
        /// The ledger topic.
        topic: String,
        /// What the broker or client said.
        message: String,
    },
    /// The transaction holding the re-sent records and their ledger entries failed: nothing of it is visible to
    /// `read_committed` readers.
    #[error("the redrive transaction failed ({stage}): {error}; nothing was sent")]
    Transaction {
        /// Which call failed.
        stage: &'static str,
        /// librdkafka's error.
        #[source]
        error: KafkaError,
    },
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
    /// Letters dropped because an earlier redrive re-sent their source record (they are in the ledger).
    pub already_sent: usize,
}

/// Orders `selected` by partition and offset, keeps one letter per source record, drops truncated letters and
/// those whose [`ledger_key`] is in `sent` (re-sent by an earlier redrive; see [`read_ledger`]).
pub fn plan(mut selected: Vec<DeadLetter>, dlq_topic: &str, sent: &HashSet<String>) -> Plan {
    selected.sort_by_key(|l| (l.partition, l.offset));
    let duplicates = keep_one_per_source(&mut selected);
    // A letter cut to fit the dead-letter topic no longer holds the original record: it is never re-sent.
    let before = selected.len();
    selected.retain(|letter| letter.header(header::TRUNCATED).is_none());
    let truncated = before - selected.len();
    let before = selected.len();
    selected.retain(|letter| !sent.contains(&ledger_key(letter, dlq_topic)));
    Plan {
        truncated,
        already_sent: before - selected.len(),
        letters: selected,
        duplicates,
    }
}

/// The keys in the ledger of `dlq_topic` (none when it does not exist yet): what earlier redrives re-sent.
pub async fn read_ledger(
    base: &ClientConfig,
    bootstrap: &str,
    dlq_topic: &str,
) -> Result<HashSet<String>, RedriveError> {
    let ledger = ledger_topic(dlq_topic);
    let read = scan_blocking(
        base,
        bootstrap,
        &ledger,
        dlq_topic,
        HashSet::new(),
        |sent: &mut HashSet<String>, entry| {
            if let Some(key) = entry.key {
                sent.insert(String::from_utf8_lossy(&key).into_owned());
            }
        },
    )
    .await;
    match read {
        Ok((sent, _)) => Ok(sent),
        Err(ScanError::NoSuchTopic { .. }) => Ok(HashSet::new()),
        Err(e) => Err(e.into()),
    }
}

/// Creates the ledger topic of `dlq_topic` (compacted, one partition) unless it exists.
async fn create_ledger(base: &ClientConfig, dlq_topic: &str) -> Result<String, RedriveError> {
    let topic = ledger_topic(dlq_topic);
    let failed = |message: String| RedriveError::Ledger {
        topic: topic.clone(),
        message,
    };
    let admin: AdminClient<DefaultClientContext> =
        base.create().map_err(|e| failed(e.to_string()))?;
    // -1 asks the broker for its `default.replication.factor`.
    let request =
        NewTopic::new(&topic, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let results = admin
        .create_topics([&request], &AdminOptions::new())
        .await
        .map_err(|e| failed(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(failed(code.to_string())),
        }
    }
    Ok(topic)
}

/// Runs a blocking transaction call of `producer` off the async runtime.
async fn transaction_call(
    producer: &FutureProducer,
    stage: &'static str,
    call: impl FnOnce(&FutureProducer) -> Result<(), KafkaError> + Send + 'static,
) -> Result<(), RedriveError> {
    let producer = producer.clone();
    tokio::task::spawn_blocking(move || call(&producer))
        .await
        .map_err(RedriveError::Thread)?
        .map_err(|error| RedriveError::Transaction { stage, error })
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
/// dead-letter ones) plus `redriven_from`, and its entry to the ledger, in one Kafka transaction (a transactional
/// producer per dead-letter topic, so two redrives of one topic fence each other), and waits for every delivery;
/// any failure aborts the transaction and is an error.
pub async fn send(
    base: &ClientConfig,
    dlq_topic: &str,
    letters: &[DeadLetter],
    targets: &[Target],
) -> Result<(), RedriveError> {
    let ledger = create_ledger(base, dlq_topic).await?;
    let mut config = base.clone();
    if config.get("message.timeout.ms").is_none() {
        // As long as the transaction may last (librdkafka refuses a longer one: the transaction's 60 s default,
        // like the jobs'), so that a broker failover delays the records rather than failing them; a cluster that
        // stays away fails the run, and the ledger lets a second run send what the first did not.
        let transaction = config.get("transaction.timeout.ms").unwrap_or("60000");
        config.set("message.timeout.ms", transaction.to_owned());
    }
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "transactional.id",
            format!("adstream-dlq-redrive-{dlq_topic}"),
        );
    let producer: FutureProducer = config.create().map_err(RedriveError::Producer)?;
    transaction_call(&producer, "init", |p| {
        p.init_transactions(TRANSACTION_TIMEOUT)
    })
    .await?;
    transaction_call(&producer, "begin", |p| p.begin_transaction()).await?;
    let sent = send_in_transaction(&producer, dlq_topic, &ledger, letters, targets).await;
    if let Err(e) = sent {
        // The transaction's records stay invisible to read_committed readers; the abort only ends it sooner.
        if let Err(abort) = transaction_call(&producer, "abort", |p| {
            p.abort_transaction(TRANSACTION_TIMEOUT)
        })
        .await
        {
            tracing::warn!(error = %abort, "redrive transaction abort failed");
        }
        return Err(e);
    }
    transaction_call(&producer, "commit", |p| {
        p.commit_transaction(TRANSACTION_TIMEOUT)
    })
    .await
}

/// The sends of [`send`] inside its transaction: each letter to its target, then its ledger entry.
async fn send_in_transaction(
    producer: &FutureProducer,
    dlq_topic: &str,
    ledger: &str,
    letters: &[DeadLetter],
    targets: &[Target],
) -> Result<(), RedriveError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut pending: VecDeque<(String, DeliveryFuture)> = VecDeque::new();
    let mut failures: Vec<String> = Vec::new();
    for (enqueued, (letter, (topic, partition))) in letters.iter().zip(targets).enumerate() {
        let from = format!("{dlq_topic}/{}/{}", letter.partition, letter.offset);
        let key = ledger_key(letter, dlq_topic);
        let entry = serde_json::json!({
            "redriven_from": from,
            "target_topic": topic,
            "target_partition": partition,
            "redriven_at": now_ms,
        })
        .to_string();
        let ledger_record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(ledger)
            .key(key.as_bytes())
            .payload(entry.as_bytes())
            .timestamp(now_ms);
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
        let queued = match enqueue(producer, record, &from, &mut pending, &mut failures).await {
            Ok(()) => {
                let what = format!("{from} (ledger entry)");
                enqueue(producer, ledger_record, &what, &mut pending, &mut failures).await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = queued {
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

/// Hands `record` to the producer, waiting for earlier deliveries while its queue is full.
async fn enqueue(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, [u8], [u8]>,
    from: &str,
    pending: &mut VecDeque<(String, DeliveryFuture)>,
    failures: &mut Vec<String>,
) -> Result<(), KafkaError> {
    loop {
        match producer.send_result(record) {
            Ok(future) => {
                pending.push_back((from.to_owned(), future));
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                match pending.pop_front() {
                    Some((from, future)) => await_delivery(&from, future, failures).await,
                    None => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// Waits for one delivery report, noting a failure as `<from>: <error>`.
async fn await_delivery(from: &str, future: DeliveryFuture, failures: &mut Vec<String>) {
    match future.await {
        Ok(Ok(_)) => {}
        Ok(Err((error, _))) => failures.push(format!("{from}: {error}")),
        Err(_) => failures.push(format!("{from}: the producer dropped the delivery report")),
    }
}
