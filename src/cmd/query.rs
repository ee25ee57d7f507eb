//! `adstream query serve`: the topology's topics as SQL tables over the PostgreSQL wire protocol.
//!
//! The tables are those of `adstream sql` (`adstream_query::catalog`): `public."<topic>"`, a compacted topic's
//! latest value per key or a stream's history, and `history."<topic>"`, every record.
//!
//! The password comes from a file (`--password-file`) or `ADSTREAM_SQL_PASSWORD`, never from a flag, so it stays
//! out of process listings and shell history. Once bound, the command prints `listening on ADDR` on stdout, one
//! line, so a script that asked for port 0 learns the port.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use adstream_query::server::engine::ExecutionLimits;
use adstream_query::server::limits::TextLimits;
use adstream_query::server::{tls, ServeOptions, Server, ServerLimits};
use adstream_query::session::open_session;
use adstream_topology::Topology;
use anyhow::{bail, Context, Result};
use clap::Args;

use crate::config::Settings;
use crate::scan::ScanArgs;

/// The environment variable holding the password when no `--password-file` is given.
pub const PASSWORD_ENV: &str = "ADSTREAM_SQL_PASSWORD";

/// Arguments of `query serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:5433")]
    listen: SocketAddr,
    /// The user name clients log in as.
    #[arg(long, default_value = "adstream")]
    user: String,
    /// File whose first line is the password (else the ADSTREAM_SQL_PASSWORD environment variable).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Connections served at once; more are refused with SQLSTATE 53300 (too many connections).
    #[arg(long, default_value_t = 64)]
    max_connections: usize,
    /// Queries running at once (open cursors included); more are refused with SQLSTATE 53000.
    #[arg(long, default_value_t = 128)]
    max_running_queries: usize,
    /// Memory one query may use, in MiB; a query needing more fails with SQLSTATE 53200 (nothing spills to disk).
    #[arg(long, default_value_t = 512)]
    query_memory_mb: usize,
    /// Memory all running queries together may use, in MiB.
    #[arg(long, default_value_t = 2048)]
    server_memory_mb: usize,
    /// The longest a statement may run, in seconds; a session's `SET statement_timeout` can only shorten it.
    #[arg(long, default_value_t = 600)]
    statement_timeout_secs: u64,
    /// Longest query text accepted, in KiB.
    #[arg(long, default_value_t = 1024)]
    max_query_kb: usize,
    /// Bound on how deep a query may nest: parentheses nesting plus operators, set operations and joins.
    #[arg(long, default_value_t = 1000)]
    max_query_depth: usize,
    /// PEM file with the server's TLS certificate chain (leaf first); TLS is then offered to clients.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM file with the private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse clients that do not use TLS (needs --tls-cert and --tls-key).
    #[arg(long, requires = "tls_cert")]
    require_tls: bool,
    #[command(flatten)]
    scan: ScanArgs,
}

impl ServeArgs {
    fn limits(&self) -> ServerLimits {
        const MIB: usize = 1 << 20;
        ServerLimits {
            max_connections: self.max_connections,
            text: TextLimits {
                max_bytes: self.max_query_kb.saturating_mul(1 << 10),
                max_depth: self.max_query_depth,
            },
            execution: ExecutionLimits {
                query_memory: self.query_memory_mb.saturating_mul(MIB),
                server_memory: self.server_memory_mb.saturating_mul(MIB),
                statement_timeout: Duration::from_secs(self.statement_timeout_secs),
                max_running_queries: self.max_running_queries,
            },
        }
    }
}

/// Serves the SQL tables until `shutdown` resolves.
pub async fn serve(
    settings: &Settings,
    topology: &Topology,
    args: ServeArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    // Checked before Kafka is contacted: a missing password or a bad certificate is the likelier mistake and needs
    // no broker to report.
    let password = password(args.password_file.as_deref())?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let source = args.scan.open_source(settings)?;
    let ctx = Arc::new(open_session(&source, topology).await?);
    let options = ServeOptions {
        limits: args.limits(),
        tls,
        require_tls: args.require_tls,
        listen: args.listen,
        user: args.user,
        password,
    };
    let server = Server::bind(ctx, options).await?;
    println!("listening on {}", server.local_addr());
    server.run(shutdown).await;
    Ok(())
}

fn password(file: Option<&std::path::Path>) -> Result<String> {
    let password = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read password file {}", path.display()))?;
            // The first line: editors and `echo` end files with a newline that is no part of the password.
            text.lines().next().unwrap_or("").to_string()
        }
        None => std::env::var(PASSWORD_ENV).unwrap_or_default(),
    };
    if password.is_empty() {
        bail!("no password for the SQL server: give --password-file FILE or set {PASSWORD_ENV}");
    }
    Ok(password)
}
