//! `adstream query serve`: the topology's topics as SQL tables over the PostgreSQL wire protocol.
//!
//! The password comes from a file (`--password-file`) or `ADSTREAM_SQL_PASSWORD`, never from a flag, so it stays
//! out of process listings and shell history. Once bound, the command prints `listening on ADDR` on stdout, one
//! line, so a script that asked for port 0 learns the port.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use adstream_query::server::{ServeOptions, Server};
use anyhow::{bail, Context, Result};
use clap::Args;
use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

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
}

/// Serves the SQL tables until `shutdown` resolves.
pub async fn serve(args: ServeArgs, shutdown: impl Future<Output = ()>) -> Result<()> {
    let password = password(args.password_file.as_deref())?;
    let ctx = Arc::new(session_context()?);
    let options = ServeOptions {
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

/// A small in-memory table until the topic catalog is wired in.
fn session_context() -> Result<SessionContext> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("campaign_id", DataType::Utf8, false),
        Field::new("impressions", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["c1", "c2"])),
            Arc::new(Int64Array::from(vec![10, 20])),
        ],
    )?;
    let ctx = SessionContext::new();
    ctx.register_table(
        "campaigns_sample",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
    )?;
    Ok(ctx)
}
