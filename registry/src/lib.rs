//! Confluent-compatible schema registry server.
//!
//! It speaks Confluent Schema Registry's REST API (Avro schemas only) so that any Confluent client — serializers,
//! `confluent-kafka`'s `SchemaRegistryClient`, `schema_registry_converter` — works against it unchanged, and it keeps
//! its state in a one-partition compacted Kafka topic (`_schemas` by default) in Confluent's record format, so the
//! topic can be shared with, or migrated to and from, Confluent Schema Registry and Karapace.
//!
//! How it works:
//! - At startup the topic is created if missing (1 partition, `cleanup.policy=compact`), or checked (exactly one
//!   partition, compacted), then read from the beginning to its high watermark to rebuild every schema, id,
//!   version, soft delete, compatibility level and mode. Only then does the listener answer.
//! - A write is decided under a writer lock, produced to the topic (acks=all, idempotent producer), and applied to
//!   memory only after the broker acknowledged it, with the same code that replays the topic. A restart therefore
//!   serves exactly what was acknowledged before.
//! - One instance is the writer. Leader election among several instances (Confluent's `schema-registry` group
//!   protocol) is not implemented, and a running instance does not follow writes made by another one: run a single
//!   registry per topic.
//! - Schema ids are the highest id in the topic plus one. An id whose versions were all hard-deleted and compacted
//!   away can therefore be handed out again after a restart, as in Confluent.
//! - Schemas are stored as their parsed form re-serialized (compact JSON, docs, defaults and aliases kept), and two
//!   schemas are "the same" (same id) when those forms and their references are equal.
//! - Schema references (Confluent's `references`) are resolved, transitively, whenever a schema is parsed or
//!   checked; a stored schema with references is resolved when used, not when replayed, because in a compacted
//!   topic a referenced version can come after its referrer. A referenced version cannot be hard-deleted.
//! - Compatibility checks run on the blocking pool on a copy of what they need, never under the state lock (see
//!   `http::register`); the limits in `limits` bound request bodies, record sizes, union fan-out and ids.
//!
//! Layout:
//! - `http`    — the REST routes (axum): request parsing, Confluent's content types, answers.
//! - `state`   — the in-memory registry (subjects, versions, ids, levels, modes, references) and its decisions.
//! - `store`   — the `_schemas` topic: open or create it, replay it, write one record and wait for the ack.
//! - `records` — Confluent's key/value record format of that topic.
//! - `limits`  — the bounds on bodies, records, union fan-out and ids.
//! - `errors`  — Confluent's JSON errors and codes.
//!
//! The Avro contract and the compatibility checker it applies come from `adstream-schemas`; the client side of
//! the REST API is `adstream_kafka::registry_client`.

mod errors;
mod http;
mod limits;
mod records;
mod state;
mod store;

use std::future::Future;
use std::time::Duration;

use rdkafka::error::KafkaError;

/// A submitted schema the registry refuses: the Confluent error code and message it answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SchemaRefused {
    /// Confluent error code (42201 for an invalid or oversized schema).
    pub code: u32,
    /// The message of the answer.
    pub message: String,
}

/// Parses `text` as the registry parses the schema of a registration or compatibility request without
/// references: Avro parsing and normalization, then the union fan-out bound. Returns the schema that compatibility
/// checks compare, or the refusal the registry would answer with. Public so that fuzzing and tests reach the same
/// path as the REST API.
pub fn parse_submitted_schema(text: &str) -> Result<apache_avro::Schema, SchemaRefused> {
    let refused = |e: errors::ApiError| SchemaRefused {
        code: e.code,
        message: e.message,
    };
    let candidate = state::Candidate::parse(text).map_err(refused)?;
    candidate
        .ensure_union_fanout_within_limit()
        .map_err(refused)?;
    Ok(candidate.parsed)
}

/// Where and how the registry keeps its state.
#[derive(Clone)]
pub struct RegistryConfig {
    /// Kafka client settings shared by the registry's producer, consumer and admin client: `bootstrap.servers` and
    /// any pass-through librdkafka property (SASL, TLS, ...). The registry adds what it needs on top (acks=all,
    /// idempotence, its reader's settings).
    pub kafka: rdkafka::ClientConfig,
    /// The compacted topic holding the registry's state, Confluent's `kafkastore.topic` (usually `_schemas`).
    pub topic: String,
    /// How long any Kafka operation may take (startup metadata, topic creation, each write) before the registry
    /// gives up with an error instead of waiting for an unreachable broker.
    pub kafka_timeout: Duration,
}

impl Default for RegistryConfig {
    /// `bootstrap.servers=127.0.0.1:9092`, topic `_schemas`, 10 s Kafka timeout.
    fn default() -> RegistryConfig {
        let mut kafka = rdkafka::ClientConfig::new();
        kafka.set("bootstrap.servers", "127.0.0.1:9092");
        RegistryConfig {
            kafka,
            topic: "_schemas".to_owned(),
            kafka_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the registry could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The Kafka client settings were refused by librdkafka.
    #[error("invalid Kafka client configuration for the schema registry: {0}")]
    KafkaConfig(#[source] KafkaError),
    /// No broker answered within the timeout.
    #[error(
        "cannot reach Kafka at {bootstrap} within {} to open the schema registry topic {topic}: {source}",
        store::seconds(*.timeout)
    )]
    Unreachable {
        /// The bootstrap servers tried.
        bootstrap: String,
        /// The registry topic.
        topic: String,
        /// The timeout that passed.
        timeout: Duration,
        /// The client's error (boxed: it is large and this variant is rare).
        #[source]
        source: Box<KafkaError>,
    },
    /// The topic was missing and could not be created.
    #[error("cannot create the schema registry topic {topic}: {reason}")]
    CreateTopic {
        /// The registry topic.
        topic: String,
        /// What the broker said.
        reason: String,
    },
    /// The topic has several partitions, so records would lose their order.
    #[error(
        "the schema registry topic {topic} has {partitions} partitions; it must have exactly 1 so that records keep \
         their order (use another --topic, or recreate it)"
    )]
    TooManyPartitions {
        /// The registry topic.
        topic: String,
        /// Its partition count.
        partitions: usize,
    },
    /// The topic is not compacted (or also deletes), so old schemas would disappear.
    #[error(
        "the schema registry topic {topic} has cleanup.policy={policy}; it must be compact so that no schema is ever \
         deleted by retention"
    )]
    NotCompacted {
        /// The registry topic.
        topic: String,
        /// Its cleanup policy.
        policy: String,
    },
    /// Reading the topic failed.
    #[error("cannot read the schema registry topic {topic}: {reason}")]
    Read {
        /// The registry topic.
        topic: String,
        /// What went wrong.
        reason: String,
    },
    /// A record of the topic is not in the registry format; starting would silently lose it.
    #[error(
        "the schema registry topic {topic} has an unreadable record at offset {offset}: {reason}"
    )]
    Corrupt {
        /// The registry topic.
        topic: String,
        /// The record's offset.
        offset: i64,
        /// Why it is unreadable.
        reason: String,
    },
    /// The HTTP server failed.
    #[error("the schema registry HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// A background task of the registry failed.
    #[error("schema registry internal error: {0}")]
    Internal(String),
}

/// Serves the registry on `listener` until `shutdown` resolves.
///
/// The topic is opened and replayed before the first request is answered (requests wait in the listener's
/// backlog meanwhile). Errors: an unreachable broker (within `config.kafka_timeout`), a topic that is not
/// one-partition and compacted, an unreadable record, or the HTTP server failing.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: RegistryConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RegistryError> {
    let (store, state) = store::open(&config).await?;
    let address = listener.local_addr().map_err(RegistryError::Serve)?;
    tracing::info!(topic = %config.topic, "schema registry listening on http://{address}");
    let app = http::router(http::Registry::new(state, store));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(RegistryError::Serve)
}
