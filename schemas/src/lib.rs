//! The adstream Avro contract and everything around it.
//!
//! Layout:
//! - `events`   — Rust types that serialize to exactly the `.avsc` contract next to this crate.
//! - `outputs`  — Rust types of the processors' output records (campaign metrics, alerts).
//! - `compat`   — Avro reader/writer compatibility with Confluent's seven levels.
//! - `registry` — a Confluent-compatible schema registry server storing its state in `_schemas`.

pub mod client;
pub mod compat;
pub mod events;
pub mod outputs;
pub mod registry;
