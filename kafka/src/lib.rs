//! adstream's Kafka toolbox: the client plumbing every crate that talks to Kafka or to a schema registry shares,
//! each piece written once.
//!
//! Layout:
//! - `registry_client` — a small client of the Confluent Schema Registry REST API (reqwest), used by the CLI, the
//!   processors' decoders and the SQL tables; it works against adstream's registry, Confluent SR and Karapace.
//! - `partitioner`     — Kafka's default (murmur2) partitioner, to find a key's partition without a broker.
//! - `read`            — read a topic (some or all partitions) to its end; partition counts and watermarks.
//! - `produce`         — enqueue a record on a producer, waiting while its local queue is full.
//! - [`QuietEof`]      — the client context of consumers that read to the end (end of partition is not an error).
//!
//! The Confluent wire framing itself (magic byte, schema id, datum) is part of the contract and lives in
//! `adstream_schemas::wire`, which has no client dependencies.

mod context;
pub mod partitioner;
pub mod produce;
pub mod read;
pub mod registry_client;

pub use context::{is_end_of_partition, is_transient_consumer_error, QuietEof};
