//! SQL over Kafka with DataFusion.
//!
//! Layout:
//! - `source`     — Kafka and the registry for queries: metadata, offsets for times, offset-range reads.
//! - `avro_arrow` — Avro schemas to Arrow schemas, decoded Avro values to Arrow columns in batches.
//! - `avro_direct` — Confluent-framed Avro straight into Arrow columns for flat projections (the fast path).
//! - `pushdown`   — which predicates become partition and offset bounds (time, partition, offset, key).
//! - `table`      — a topic as a table: its history, or its latest value per key (what compaction keeps).
//! - `catalog`    — every topology topic registered in a DataFusion session.
//! - `session`    — a source and a session from client settings; the read-only statement options.
//! - `output`     — query results written as a table, CSV, JSON lines or Parquet.
//! - `instant`    — moments given as RFC 3339, dates or epoch milliseconds.
//! - `report`     — the campaign report (`adstream report campaigns`) as SQL over topic tables.
//! - `journeys`   — a period's attribution journeys grouped into a path dataset (`adstream attribution fit`).
//! - `replay`     — a time range of a topic re-produced to another topic with provenance, or written to a file.
//! - `server`     — a session over the PostgreSQL wire protocol (`adstream query serve`).
//!
//! The crate reads; it never writes to Kafka except where a command says so (replay to a topic). Backtests,
//! which replay history through the jobs, are the `adstream-backtest` crate beside the runtime.

pub mod avro_arrow;
mod avro_direct;
pub mod catalog;
pub mod instant;
pub mod journeys;
pub mod output;
pub mod pushdown;
pub mod replay;
pub mod report;
pub mod server;
pub mod session;
pub mod source;
pub mod table;

/// What can go wrong reading topics as tables.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The topic does not exist on the cluster.
    #[error("topic {0} does not exist (run `adstream topology apply`)")]
    NoSuchTopic(String),
    /// Kafka refused or failed a request.
    #[error("Kafka, topic {topic}: {message}")]
    Kafka {
        /// The topic concerned.
        topic: String,
        /// librdkafka's message.
        message: String,
    },
    /// The schema registry could not answer.
    #[error("schema registry, {subject}: {message}")]
    Registry {
        /// The subject or schema id asked for.
        subject: String,
        /// What went wrong.
        message: String,
    },
    /// A schema has no table form, or values do not fit it.
    #[error("topic {topic}: {message}")]
    Schema {
        /// The topic concerned.
        topic: String,
        /// What went wrong.
        message: String,
    },
}
