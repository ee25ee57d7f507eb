//! One module per subcommand group; each turns parsed arguments into library calls and prints results.

pub mod api;
pub mod attribution;
pub mod backtest;
pub mod connect;
pub mod dlq;
pub mod fatigue;
pub mod ingest;
pub mod inspect;
pub mod jobs;
pub mod process;
pub mod produce;
pub mod query;
pub mod replay;
pub mod report;
pub mod schemas;
pub mod sql;
pub mod state;
pub mod topology;

/// The bearer tokens a server accepts: one per line of `file`, else the value of the environment variable `env`
/// (never a flag, so a token stays out of process listings). Refuses an empty set: a server with no token would
/// be open to anyone.
pub fn bearer_tokens(file: Option<&std::path::Path>, env: &str) -> anyhow::Result<Vec<String>> {
    use anyhow::Context;
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?,
        None => match std::env::var(env) {
            Ok(token) => token,
            Err(_) => anyhow::bail!("no token: give --token-file FILE or set {env}"),
        },
    };
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if tokens.is_empty() {
        anyhow::bail!("the token is empty");
    }
    Ok(tokens)
}
