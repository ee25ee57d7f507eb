//! The adstream Avro contract: what every producer, processor and reader of adstream's topics agrees on. This crate
//! has no Kafka, HTTP or async runtime dependency, so anything that needs `AdClick` can link it cheaply.
//!
//! Layout:
//! - the `.avsc` files next to this crate — the contract itself, one Avro schema per record type.
//! - `events`  — Rust types that serialize to exactly the `.avsc` contract of the input events.
//! - `outputs` — Rust types of the processors' output records (campaign metrics, alerts, attribution, fatigue).
//! - `platform` — Rust types of the platform connectors' report rows and cursors.
//! - `reconciliation` — the reconciliation job's rows (platform-reported against event-derived numbers).
//! - `compat`  — Avro reader/writer compatibility with Confluent's seven levels and per-field explanations.
//! - `wire`    — Confluent's wire framing (magic byte 0, big-endian schema id, Avro datum), pure.
//! - `binary`  — the Avro binary datum read in place (numbers, borrowed strings, skipping), for decoders that
//!   build no `apache_avro::types::Value`.
//!
//! The schema registry server is the `adstream-registry` crate; the registry client and the rest of the Kafka
//! plumbing are in `adstream-kafka`.

pub mod binary;
pub mod compat;
pub mod events;
pub mod outputs;
pub mod platform;
pub mod reconciliation;
pub mod wire;
