//! What `adstream ingest serve` listens on, where events go, and the limits it holds every client to.

use std::net::SocketAddr;
use std::time::Duration;

use adstream_kafka::registry_client::RegistrySettings;
use rdkafka::ClientConfig;

/// Limits on what one request may make the server hold or wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Largest request body in bytes; a longer one is answered `413` before it is read to its end. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Most events one batch-mode request may carry; more are answered `413`. Default 1000.
    pub max_batch_events: usize,
    /// Requests served at once; one more is answered `503` with `Retry-After` rather than queued, so a flood
    /// cannot grow memory. Default 256.
    pub max_concurrent_requests: usize,
    /// How long a request may take from its first byte to its answer (a slow client is cut off with `408`).
    /// Default 30 s.
    pub request_timeout: Duration,
    /// How long the server waits for the broker to acknowledge a request's records before it answers `503`
    /// (outcome unknown: the client retries with the same ids, which the idempotency window makes safe).
    /// Default 10 s.
    pub ack_timeout: Duration,
    /// How long an accepted event's (source, id) is remembered: a second event with the same pair within it is
    /// acknowledged and not produced again. Default 10 minutes.
    pub idempotency_window: Duration,
    /// Most ids remembered at once; past it the oldest are forgotten early (counted in
    /// `adstream_ingest_idempotency_evictions_total`). Default 1,000,000 (about 60 MB).
    pub idempotency_capacity: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_body_bytes: 1 << 20,
            max_batch_events: 1000,
            max_concurrent_requests: 256,
            request_timeout: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(10),
            idempotency_window: Duration::from_secs(600),
            idempotency_capacity: 1_000_000,
        }
    }
}

/// The topics each accepted kind of event goes to (the binary takes them from the topology's `value_schema`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestTopics {
    /// Topic of `io.adstream.ads.AdImpression`.
    pub impressions: String,
    /// Topic of `io.adstream.ads.AdClick`.
    pub clicks: String,
    /// Topic of `io.adstream.ads.Conversion`.
    pub conversions: String,
}

/// Everything the server needs.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Address to listen on; port 0 picks a free one ([`crate::IngestServer::local_addr`] tells which).
    pub listen: SocketAddr,
    /// Bearer tokens accepted on `POST /events`; compared in constant time.
    pub tokens: Vec<String>,
    /// Per-client limits.
    pub limits: IngestLimits,
    /// Where each kind of event goes.
    pub topics: IngestTopics,
    /// Base Kafka client config (bootstrap servers and pass-through properties); the producers' defaults
    /// (idempotent, `acks=all`) are added where it is silent, with a short linger for latency.
    pub kafka: ClientConfig,
    /// The schema registry the contract's schemas are registered in.
    pub registry: RegistrySettings,
}
