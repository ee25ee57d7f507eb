//! adstream's Kafka toolbox: the client plumbing every crate that talks to Kafka or to a schema registry shares,
//! each piece written once.
//!
//! Layout:
//! - `registry_client` — a small client of the Confluent Schema Registry REST API (reqwest), used by the CLI, the
//!   processors' decoders and the SQL tables; it works against adstream's registry, Confluent SR and Karapace.
//!
//! The Confluent wire framing itself (magic byte, schema id, datum) is part of the contract and lives in
//! `adstream_schemas::wire`, which has no client dependencies.

pub mod registry_client;
