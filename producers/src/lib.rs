//! Producing adstream events into Kafka.
//!
//! Layout:
//! - [`builders`]  — typed event builders that refuse values the schema cannot express.
//! - [`generator`] — a deterministic, realistic traffic generator (pure: no Kafka, no clock).
//! - [`pipeline`]  — drains the generator into the producer with rate limiting and progress.
//! - [`producer`]  — the Kafka producer: idempotent, batched, lz4-compressed, keyed, Confluent wire format,
//!   CloudEvents headers, delivery failures reported.

pub mod builders;
pub mod generator;
pub mod pipeline;
pub mod producer;
