//! `adstream ingest serve`: first-party events as CloudEvents over HTTP into the topology's event topics
//! (`adstream_ingest`).
//!
//! The bearer token comes from a file (`--token-file`, one token per line) or `ADSTREAM_INGEST_TOKEN`, never
//! from a flag. Once bound, the command prints `listening on ADDR` on stdout, one line, so a script that asked
//! for port 0 learns the port.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use adstream_ingest::settings::IngestTopics;
use adstream_ingest::{IngestLimits, IngestServer, IngestSettings};
use adstream_schemas::events::{AdClick, AdImpression, AvroRecord, Conversion};
use adstream_topology::Topology;
use anyhow::Result;
use clap::Args;

use crate::config::Settings;

/// The environment variable holding the token when no `--token-file` is given.
pub const TOKEN_ENV: &str = "ADSTREAM_INGEST_TOKEN";

/// Arguments of `ingest serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// File with the accepted bearer tokens, one per line (else the ADSTREAM_INGEST_TOKEN environment variable).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Largest request body in bytes (413 above it).
    #[arg(long, default_value_t = IngestLimits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Most events in one batch-mode request (413 above it).
    #[arg(long, default_value_t = IngestLimits::default().max_batch_events)]
    max_batch_events: usize,
    /// Requests served at once; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = IngestLimits::default().max_concurrent_requests)]
    max_concurrent_requests: usize,
    /// Seconds a request may take from its first byte to its answer (408 after).
    #[arg(long, default_value_t = IngestLimits::default().request_timeout.as_secs())]
    request_timeout_secs: u64,
    /// Milliseconds to wait for the broker's acknowledgement before answering 503 (retry with the same ids).
    #[arg(long, default_value_t = IngestLimits::default().ack_timeout.as_millis() as u64)]
    ack_timeout_ms: u64,
    /// Seconds an accepted (source, id) is remembered: the same event again within it is not produced twice.
    #[arg(long, default_value_t = IngestLimits::default().idempotency_window.as_secs())]
    idempotency_window_secs: u64,
    /// Most ids remembered at once (the oldest are forgotten early past it).
    #[arg(long, default_value_t = IngestLimits::default().idempotency_capacity)]
    idempotency_capacity: usize,
}

impl ServeArgs {
    fn limits(&self) -> IngestLimits {
        IngestLimits {
            max_body_bytes: self.max_body_bytes,
            max_batch_events: self.max_batch_events,
            max_concurrent_requests: self.max_concurrent_requests,
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            ack_timeout: Duration::from_millis(self.ack_timeout_ms),
            idempotency_window: Duration::from_secs(self.idempotency_window_secs),
            idempotency_capacity: self.idempotency_capacity,
        }
    }
}

/// Serves the endpoint until `shutdown` resolves.
pub async fn serve(
    settings: &Settings,
    topology: &Topology,
    args: ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let tokens = super::bearer_tokens(args.token_file.as_deref(), TOKEN_ENV)?;
    let topic_of = |name| super::produce::topic_of(topology, name);
    let ingest = IngestSettings {
        listen: args.listen,
        tokens,
        limits: args.limits(),
        topics: IngestTopics {
            impressions: topic_of(AdImpression::FULL_NAME)?,
            clicks: topic_of(AdClick::FULL_NAME)?,
            conversions: topic_of(Conversion::FULL_NAME)?,
        },
        kafka: settings.kafka_config(),
        registry: settings.registry.clone(),
    };
    let server = IngestServer::bind(ingest).await?;
    println!("listening on {}", server.local_addr());
    server.run(shutdown).await?;
    Ok(())
}
