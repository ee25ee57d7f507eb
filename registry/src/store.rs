//! The Kafka topic behind the registry: creating or validating it, replaying it into a [`State`], and writing
//! records to it durably (acks=all, idempotent producer, delivery awaited before the state changes).

use std::time::{Duration, Instant};

use adstream_kafka::read::{self, ReadError, ReadOptions};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use super::errors::ApiError;
use super::records::{Key, Record, RecordError, Value};
use super::state::State;
use super::{RegistryConfig, RegistryError};

/// Confluent's default replication factor for `_schemas`, capped by the number of brokers so that a single-node
/// development cluster works.
const MAX_REPLICATION_FACTOR: usize = 3;

/// The writer side of the registry topic.
pub(crate) struct Store {
    producer: FutureProducer,
    topic: String,
    bootstrap: String,
    timeout: Duration,
}

/// Opens the registry topic: creates it if missing, refuses a topic that would break ordering or lose state, and
/// replays it from the beginning to its high watermark.
pub(crate) async fn open(config: &RegistryConfig) -> Result<(Store, State), RegistryError> {
    let bootstrap = config
        .kafka
        .get("bootstrap.servers")
        .unwrap_or("(bootstrap.servers not set)")
        .to_owned();
    let topic = config.topic.clone();
    let timeout = config.kafka_timeout;
    let unreachable = |source: KafkaError| RegistryError::Unreachable {
        bootstrap: bootstrap.clone(),
        topic: topic.clone(),
        timeout,
        source: Box::new(source),
    };

    let consumer = reader(&config.kafka)?;
    let (consumer, metadata) = blocking(move || {
        let metadata = consumer.fetch_metadata(None, timeout);
        (consumer, metadata)
    })
    .await?;
    let metadata = metadata.map_err(unreachable)?;
    let brokers = metadata.brokers().len();
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len());

    let admin: AdminClient<DefaultClientContext> =
        config.kafka.create().map_err(RegistryError::KafkaConfig)?;
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let mut state = State::default();
    match partitions {
        None | Some(0) => create_topic(&admin, &options, &topic, brokers, timeout).await?,
        Some(1) => {
            check_cleanup_policy(&admin, &options, &topic, timeout).await?;
            let (consumer, replayed) = blocking(move || {
                let replayed = replay(&consumer, &topic, timeout);
                (consumer, replayed)
            })
            .await?;
            state = replayed?;
            drop(consumer);
        }
        Some(partitions) => {
            return Err(RegistryError::TooManyPartitions {
                topic: config.topic.clone(),
                partitions,
            })
        }
    }

    let mut producer_config = config.kafka.clone();
    producer_config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", timeout.as_millis().max(1).to_string());
    let producer: FutureProducer = producer_config
        .create()
        .map_err(RegistryError::KafkaConfig)?;
    Ok((
        Store {
            producer,
            topic: config.topic.clone(),
            bootstrap,
            timeout,
        },
        state,
    ))
}

/// A consumer for the replay; it never joins a group nor commits, it only reads the one partition it is assigned.
fn reader(base: &ClientConfig) -> Result<BaseConsumer, RegistryError> {
    read::reader_config(base, "adstream-registry-reader", false)
        .create()
        .map_err(RegistryError::KafkaConfig)
}

/// Runs librdkafka's blocking calls off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::Internal(format!("Kafka client task failed: {e}")))
}

async fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    topic: &str,
    brokers: usize,
    timeout: Duration,
) -> Result<(), RegistryError> {
    let replication = brokers.clamp(1, MAX_REPLICATION_FACTOR) as i32;
    let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(replication))
        .set("cleanup.policy", "compact");
    let failed = |reason: String| RegistryError::CreateTopic {
        topic: topic.to_owned(),
        reason,
    };
    // The admin request has its own timeouts; the outer one guards against a broker that never answers at all.
    let results = tokio::time::timeout(
        timeout + Duration::from_secs(1),
        admin.create_topics([&new_topic], options),
    )
    .await
    .map_err(|_| failed(format!("no answer within {}", seconds(timeout))))?
    .map_err(|e| failed(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(failed(code.to_string())),
        }
    }
    tracing::info!(
        topic,
        replication,
        "created the registry topic (1 partition, cleanup.policy=compact)"
    );
    Ok(())
}

/// A topic that deletes old records would lose schemas; Confluent refuses it too.
async fn check_cleanup_policy(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    topic: &str,
    timeout: Duration,
) -> Result<(), RegistryError> {
    let failed = |reason: String| RegistryError::Read {
        topic: topic.to_owned(),
        reason,
    };
    let resources = tokio::time::timeout(
        timeout + Duration::from_secs(1),
        admin.describe_configs([&ResourceSpecifier::Topic(topic)], options),
    )
    .await
    .map_err(|_| {
        failed(format!(
            "no answer to describe its configuration within {}",
            seconds(timeout)
        ))
    })?
    .map_err(|e| failed(format!("cannot describe its configuration: {e}")))?;
    for resource in resources {
        let resource =
            resource.map_err(|e| failed(format!("cannot describe its configuration: {e}")))?;
        let policy = resource
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .unwrap_or_default();
        if !policy.split(',').any(|p| p.trim() == "compact") || policy.contains("delete") {
            return Err(RegistryError::NotCompacted {
                topic: topic.to_owned(),
                policy,
            });
        }
    }
    Ok(())
}

/// Reads the one partition from the beginning to the high watermark taken at the start, applying every record.
/// Progress must be made at least every `timeout`, so a broker that vanishes mid-replay is reported, not waited on.
fn replay(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> Result<State, RegistryError> {
    let failed = |reason: String| RegistryError::Read {
        topic: topic.to_owned(),
        reason,
    };
    let mut state = State::default();
    let options = ReadOptions {
        stall_timeout: timeout,
        stop_at_high_watermark: true,
        tolerate_errors: true,
        ..ReadOptions::default()
    };
    let started = Instant::now();
    let records = read::read_to_end(consumer, topic, &[0], &options, |message| {
        let offset = message.offset();
        let corrupt = |reason: RecordError| RegistryError::Corrupt {
            topic: topic.to_owned(),
            offset,
            reason: reason.to_string(),
        };
        let key = Key::parse(message.key().unwrap_or_default()).map_err(corrupt)?;
        let value = match message.payload() {
            None => None,
            Some(bytes) => Value::parse(&key, bytes).map_err(corrupt)?,
        };
        if value.is_none() && message.payload().is_some() {
            tracing::debug!(
                topic,
                offset,
                ?key,
                "skipped a record of a key type this registry does not use"
            );
        } else {
            state.apply(&Record { key, value });
        }
        Ok(())
    })
    .map_err(|e| match e {
        ReadError::Record(corrupt) => corrupt,
        ReadError::Watermarks { source, .. } => {
            failed(format!("cannot read its offsets: {source}"))
        }
        ReadError::Assign { source, .. } => failed(format!("cannot assign partition 0: {source}")),
        ReadError::Stalled { read, .. } => failed(format!(
            "no progress for {} while replaying (reached {read} records)",
            seconds(timeout)
        )),
        other => failed(other.to_string()),
    })?;
    let (subjects, schemas) = state.summary();
    tracing::info!(
        topic,
        records,
        subjects,
        schemas,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "replayed the registry topic"
    );
    Ok(state)
}

/// `5s`, `1.5s`: durations in messages.
pub(crate) fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

impl Store {
    /// Writes one record and waits until the broker has it (acks=all); the state may only change after this.
    pub async fn write(&self, record: &Record) -> Result<(), ApiError> {
        let key = record.key.to_bytes();
        let payload = record.value.as_ref().map(Value::to_bytes);
        let mut message: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).partition(0).key(&key);
        if let Some(payload) = payload.as_deref() {
            message = message.payload(payload);
        }
        match self
            .producer
            .send(message, Timeout::After(self.timeout))
            .await
        {
            Ok(_) => Ok(()),
            Err((error, _)) => {
                // The answer names the topic, not where the brokers are: clients need not learn the network.
                let message = format!("cannot write to the registry topic {}: {error}", self.topic);
                let timed_out = matches!(
                    error.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::OperationTimedOut)
                );
                tracing::error!(%message, bootstrap = %self.bootstrap, "registry write failed");
                Err(if timed_out {
                    ApiError::store_timeout(message)
                } else {
                    ApiError::store(message)
                })
            }
        }
    }
}
