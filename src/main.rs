//! `adstream`: one command line for the whole stack.
//!
//! Subcommands map to the workspace crates: `registry` and `schemas` to `adstream-schemas`, `produce` to
//! `adstream-producers`, `topology` to `adstream-topology`. This file only parses arguments, resolves settings
//! (see [`config`]) and wires the libraries together; logic lives in the crates.

mod config;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::Settings;

#[derive(Parser)]
#[command(name = "adstream", version, about = "Stream processing for advertising events on Apache Kafka")]
struct Cli {
    /// Kafka bootstrap servers [default: 127.0.0.1:9092].
    #[arg(long, global = true, env = "ADSTREAM_BOOTSTRAP_SERVERS")]
    bootstrap_servers: Option<String>,
    /// Schema registry URL [default: http://127.0.0.1:8081].
    #[arg(long, global = true, env = "ADSTREAM_REGISTRY_URL")]
    registry_url: Option<String>,
    /// YAML config file with `bootstrap_servers`, `registry_url` and a `kafka:` map of librdkafka properties.
    #[arg(long, global = true, env = "ADSTREAM_CONFIG")]
    config: Option<PathBuf>,
    /// Extra librdkafka property `key=value` for every Kafka client (repeatable), e.g. -X security.protocol=SSL.
    #[arg(short = 'X', global = true, value_name = "KEY=VALUE")]
    kafka_property: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The Confluent-compatible schema registry.
    #[command(subcommand)]
    Registry(RegistryCommand),
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Serve the registry REST API; state lives in a compacted Kafka topic.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// The compacted topic holding the registry's state (Confluent's `kafkastore.topic`).
        #[arg(long, default_value = "_schemas")]
        topic: String,
    },
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ADSTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(error) = run(Cli::parse()).await {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let settings = Settings::resolve(
        cli.bootstrap_servers,
        cli.registry_url,
        cli.config.as_deref(),
        &cli.kafka_property,
    )?;
    match cli.command {
        Command::Registry(RegistryCommand::Serve { listen, topic }) => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let config = adstream_schemas::registry::RegistryConfig {
                kafka: settings.kafka_config(),
                topic,
                kafka_timeout: Duration::from_secs(10),
            };
            adstream_schemas::registry::serve(listener, config, shutdown_signal()).await?;
            Ok(())
        }
    }
}

/// Resolves on SIGINT or SIGTERM so servers drain and exit cleanly.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
