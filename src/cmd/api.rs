//! `adstream api serve`: the live GraphQL/SSE API and dashboard over the topology's compacted outputs
//! (`adstream_api`).
//!
//! The bearer token comes from a file (`--token-file`, one token per line) or `ADSTREAM_API_TOKEN`, never from a
//! flag, so it stays out of process listings. Once bound, the command prints `listening on ADDR` on stdout, one
//! line, so a script that asked for port 0 learns the port.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use adstream_api::server::Server;
use adstream_api::{ApiLimits, ApiSettings, Sources};
use adstream_topology::Topology;
use anyhow::Result;
use clap::Args;

use crate::config::Settings;

/// The environment variable holding the token when no `--token-file` is given.
pub const TOKEN_ENV: &str = "ADSTREAM_API_TOKEN";

/// Arguments of `api serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// File with the accepted bearer tokens, one per line (else the ADSTREAM_API_TOKEN environment variable).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// An origin browsers may call the API from (CORS), repeatable; `*` for any. None: same origin only.
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
    /// Deepest field nesting a GraphQL operation may have.
    #[arg(long, default_value_t = ApiLimits::default().max_depth)]
    max_query_depth: usize,
    /// Highest complexity (fields selected) a GraphQL operation may have.
    #[arg(long, default_value_t = ApiLimits::default().max_complexity)]
    max_query_complexity: usize,
    /// Subscriptions one WebSocket connection may hold.
    #[arg(long, default_value_t = ApiLimits::default().max_subscriptions_per_connection)]
    max_subscriptions_per_connection: usize,
    /// WebSockets and SSE streams served at once; more are refused with 503.
    #[arg(long, default_value_t = ApiLimits::default().max_streams)]
    max_streams: usize,
    /// Updates a subscriber may fall behind before it is dropped.
    #[arg(long, default_value_t = ApiLimits::default().client_buffer)]
    client_buffer: usize,
    /// Milliseconds a client's socket may take to accept one message before it is closed as too slow.
    #[arg(long, default_value_t = ApiLimits::default().send_timeout.as_millis() as u64)]
    send_timeout_ms: u64,
    /// Alert changes kept in memory for `alertHistory`.
    #[arg(long, default_value_t = ApiLimits::default().alert_history)]
    alert_history: usize,
}

impl ServeArgs {
    fn limits(&self) -> ApiLimits {
        ApiLimits {
            max_depth: self.max_query_depth,
            max_complexity: self.max_query_complexity,
            max_subscriptions_per_connection: self.max_subscriptions_per_connection,
            max_streams: self.max_streams,
            client_buffer: self.client_buffer,
            send_timeout: Duration::from_millis(self.send_timeout_ms),
            alert_history: self.alert_history,
            ..ApiLimits::default()
        }
    }
}

/// Serves the API until `shutdown` resolves.
pub async fn serve(
    settings: &Settings,
    topology: &Topology,
    args: ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let tokens = super::bearer_tokens(args.token_file.as_deref(), TOKEN_ENV)?;
    let sources = Sources::from_topology(topology);
    let api = ApiSettings {
        listen: args.listen,
        tokens,
        cors_origins: args.cors_origins.clone(),
        limits: args.limits(),
        sources,
        kafka: settings.kafka_config(),
        registry: settings.registry.clone(),
    };
    let server = Server::bind(api).await?;
    println!("listening on {}", server.local_addr());
    server.run(shutdown).await?;
    Ok(())
}
