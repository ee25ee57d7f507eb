//! `adstream`: one command line for the whole stack.
//!
//! Subcommands map to the workspace crates: `registry` to `adstream-registry`, `schemas` to `adstream-schemas` (and
//! `adstream-kafka`'s registry client), `produce` to `adstream-producers`, `topology` to `adstream-topology`. This file only parses arguments, resolves settings
//! (see [`config`]) and wires the libraries together; logic lives in the crates.

mod cmd;
mod config;
mod scan;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::{RegistryFlags, Settings};

#[derive(Parser)]
#[command(
    name = "adstream",
    version,
    about = "Stream processing for advertising events on Apache Kafka"
)]
struct Cli {
    /// Kafka bootstrap servers [default: 127.0.0.1:9092].
    #[arg(long, global = true, env = "ADSTREAM_BOOTSTRAP_SERVERS")]
    bootstrap_servers: Option<String>,
    /// Schema registry URL [default: http://127.0.0.1:8081].
    #[arg(long, global = true, env = "ADSTREAM_REGISTRY_URL")]
    registry_url: Option<String>,
    /// Schema registry basic auth `USER:PASSWORD` (Confluent's `basic.auth.user.info`; on Confluent Cloud
    /// `API_KEY:API_SECRET`). Prefer the environment variable: a flag shows in process listings.
    #[arg(
        long,
        global = true,
        env = "ADSTREAM_REGISTRY_BASIC_AUTH_USER_INFO",
        hide_env_values = true,
        value_name = "USER:PASSWORD"
    )]
    registry_basic_auth_user_info: Option<String>,
    /// Schema registry bearer token (Confluent's `bearer.auth.token`), instead of basic auth.
    #[arg(
        long,
        global = true,
        env = "ADSTREAM_REGISTRY_BEARER_AUTH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    registry_bearer_auth_token: Option<String>,
    /// PEM file of CA certificates trusted for the registry's HTTPS besides the system's roots.
    #[arg(long, global = true, env = "ADSTREAM_REGISTRY_SSL_CA_LOCATION")]
    registry_ca_location: Option<PathBuf>,
    /// YAML config file with `bootstrap_servers`, `registry_url`, a `kafka:` map of librdkafka properties and a
    /// `registry:` map (`basic.auth.user.info`, `bearer.auth.token`, `ssl.ca.location`).
    #[arg(long, global = true, env = "ADSTREAM_CONFIG")]
    config: Option<PathBuf>,
    /// Extra librdkafka property `key=value` for every Kafka client (repeatable), e.g. -X security.protocol=SSL;
    /// `ADSTREAM_KAFKA_SASL_PASSWORD`-style variables set properties too (below -X, above the config file).
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
    /// Register local schemas and check their compatibility with the registry.
    #[command(subcommand)]
    Schemas(SchemasCommand),
    /// Produce events.
    #[command(subcommand)]
    Produce(ProduceCommand),
    /// Topics and processors declared in the topology file.
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// Platform connectors: Google Ads, Meta, TikTok and LinkedIn reports into Kafka.
    #[command(subcommand)]
    Connect(cmd::connect::ConnectCommand),
    /// Run a stream processor until SIGTERM/SIGINT.
    #[command(subcommand)]
    Process(cmd::process::ProcessCommand),
    /// The jobs `process` runs: their ports (which topics of their processor entry they read and write) and
    /// their settings with defaults.
    Jobs {
        /// Print only the job names, one per line.
        #[arg(long)]
        names: bool,
    },
    /// Summaries of the processors' compacted outputs.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Dead-letter topics (`dlq.<topic>`): list what landed there and why, re-send selected records.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Multi-touch attribution models.
    #[command(subcommand)]
    Attribution(AttributionCommand),
    /// Creative fatigue offline (no Kafka): evaluate the detector on generated traffic, fit a decay curve.
    #[command(subcommand)]
    Fatigue(cmd::fatigue::FatigueCommand),
    /// SQL over the topics.
    #[command(subcommand)]
    Query(QueryCommand),
    /// The live API: GraphQL queries and subscriptions, Server-Sent Events and a dashboard over the outputs.
    #[command(subcommand)]
    Api(ApiCommand),
    /// First-party events in over HTTP: CloudEvents checked against the contract, acknowledged once in Kafka.
    #[command(subcommand)]
    Ingest(IngestCommand),
    /// Run one SQL query over the topology's topics (DataFusion): `"<topic>"` is a compacted topic's latest value
    /// per key or a stream's history, `history."<topic>"` every record.
    Sql {
        #[command(flatten)]
        args: cmd::sql::SqlArgs,
        #[command(flatten)]
        topology: TopologyArg,
    },
    /// Replay a period of history through the live jobs once per strategy (attribution model, fatigue and budget
    /// pauses) and compare the outcomes: a table on stdout, Parquet files and an HTML report with `--out`.
    Backtest {
        #[command(flatten)]
        args: cmd::backtest::BacktestArgs,
        #[command(flatten)]
        topology: TopologyArg,
    },
    /// Re-produce (to another topic, with provenance headers) or write out (Parquet, CSV, JSON lines) a time
    /// range of a topic's events, optionally of one event type or one key.
    Replay {
        #[command(flatten)]
        args: cmd::replay::ReplayArgs,
    },
    /// One campaign's metrics as of a moment, rebuilt from history by re-running the campaign-metrics job.
    State {
        #[command(flatten)]
        args: cmd::state::StateArgs,
        #[command(flatten)]
        topology: TopologyArg,
    },
    /// Record counts of every topology topic.
    Topics {
        #[command(flatten)]
        topology: TopologyArg,
    },
    /// Print the first records of a topic, decoded, with headers (JSON lines).
    Consume {
        /// Topic to read.
        topic: String,
        /// How many records to print.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum SchemasCommand {
    /// Register every topic's value schema (`<topic>-value`) from the schema folder.
    Register {
        #[command(flatten)]
        args: cmd::schemas::SchemaArgs,
        #[command(flatten)]
        topology: TopologyArg,
    },
    /// Check local schemas against the registry under each subject's compatibility level; non-zero exit if any
    /// is incompatible.
    Check {
        #[command(flatten)]
        args: cmd::schemas::SchemaArgs,
        #[command(flatten)]
        topology: TopologyArg,
    },
}

#[derive(Subcommand)]
enum ProduceCommand {
    /// Generate realistic, deterministic ad traffic and write a ground-truth manifest.
    Generate {
        #[command(flatten)]
        args: cmd::produce::GenerateArgs,
        #[command(flatten)]
        topology: TopologyArg,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Top campaigns by spend with their KPIs, summed over the metrics windows, and the alerts firing now.
    Campaigns {
        #[command(flatten)]
        args: cmd::report::CampaignsArgs,
        #[command(flatten)]
        topology: TopologyArg,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List dead letters of a topic readably: why, where from, when, and the record.
    Inspect {
        #[command(flatten)]
        args: cmd::dlq::InspectArgs,
    },
    /// Re-send selected dead letters to the topic they came from.
    Redrive {
        #[command(flatten)]
        args: cmd::dlq::RedriveArgs,
    },
}

#[derive(Subcommand)]
enum AttributionCommand {
    /// Credit a path dataset under every model.
    Models {
        #[command(flatten)]
        args: cmd::attribution::ModelsArgs,
    },
    /// Fit Markov removal effects and Shapley values per campaign over a sliding period of the attribution job's
    /// journeys and write them to its model-weights topic (every partition), once or every --interval-secs.
    Fit {
        #[command(flatten)]
        args: cmd::attribution::FitArgs,
        #[command(flatten)]
        topology: TopologyArg,
    },
    /// A period's journeys as ChannelAttribution path data (what `fit` fits), to a file or stdout.
    Journeys {
        #[command(flatten)]
        args: cmd::attribution::JourneysArgs,
        #[command(flatten)]
        topology: TopologyArg,
    },
}

#[derive(Subcommand)]
enum ApiCommand {
    /// Serve GraphQL (`/graphql`, subscriptions at `/graphql/ws`), SSE (`/events/...`) and the live dashboard
    /// (`/`) over the topology's campaign metrics, alerts, fatigue, attribution credits and campaigns, with a bearer
    /// token; ready (`/readyz`) once every source topic was read to its end.
    Serve {
        #[command(flatten)]
        args: cmd::api::ServeArgs,
        #[command(flatten)]
        topology: TopologyArg,
    },
}

#[derive(Subcommand)]
enum IngestCommand {
    /// Serve `POST /events`: impressions, clicks and conversions as CloudEvents (binary, structured or batch
    /// mode) with a bearer token; each checked against its Avro record, produced to the topology's topic, and
    /// answered 202 once the broker acknowledged it; the same (source, id) again within the idempotency window
    /// is acknowledged without a second record.
    Serve {
        #[command(flatten)]
        args: cmd::ingest::ServeArgs,
        #[command(flatten)]
        topology: TopologyArg,
    },
}

#[derive(Subcommand)]
enum QueryCommand {
    /// Serve the tables over the PostgreSQL wire protocol (psql, psycopg, BI tools), read-only, with a password.
    Serve {
        #[command(flatten)]
        args: cmd::query::ServeArgs,
        #[command(flatten)]
        topology: TopologyArg,
    },
}

#[derive(Subcommand)]
enum TopologyCommand {
    /// Create or alter topics so the cluster matches the topology file.
    Apply {
        /// Print what would change without changing anything.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        topology: TopologyArg,
    },
    /// Print the topics and processors of the topology file.
    Describe {
        #[command(flatten)]
        topology: TopologyArg,
    },
}

#[derive(clap::Args)]
pub(crate) struct TopologyArg {
    /// The topology file.
    #[arg(
        long = "topology",
        env = "ADSTREAM_TOPOLOGY",
        default_value = "topology/adstream.yaml"
    )]
    path: PathBuf,
}

impl TopologyArg {
    pub(crate) fn load(&self) -> Result<adstream_topology::Topology> {
        Ok(adstream_topology::Topology::load(&self.path)?)
    }
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

fn main() {
    // The SQL server plans and checks statements recursively: its worker threads get the stack it asks for.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(adstream_query::server::WORKER_STACK_BYTES)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(async_main()),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            std::process::exit(1);
        }
    }
}

async fn async_main() {
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
    let config_path = cli.config.clone();
    let settings = Settings::resolve(
        cli.bootstrap_servers,
        cli.registry_url,
        RegistryFlags {
            basic_auth_user_info: cli.registry_basic_auth_user_info,
            bearer_auth_token: cli.registry_bearer_auth_token,
            ca_location: cli.registry_ca_location,
        },
        cli.config.as_deref(),
        &cli.kafka_property,
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    )?;
    match cli.command {
        Command::Registry(RegistryCommand::Serve { listen, topic }) => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let config = adstream_registry::RegistryConfig {
                kafka: settings.kafka_config(),
                topic,
                kafka_timeout: Duration::from_secs(10),
            };
            adstream_registry::serve(listener, config, shutdown_signal()).await?;
            Ok(())
        }
        Command::Schemas(SchemasCommand::Register { args, topology }) => {
            cmd::schemas::register(&settings, &topology.load()?, args).await
        }
        Command::Schemas(SchemasCommand::Check { args, topology }) => {
            cmd::schemas::check(&settings, &topology.load()?, args).await
        }
        Command::Produce(ProduceCommand::Generate { args, topology }) => {
            cmd::produce::generate(&settings, &topology.load()?, args).await
        }
        Command::Topology(TopologyCommand::Apply { dry_run, topology }) => {
            cmd::topology::apply(&settings, &topology.load()?, dry_run).await
        }
        Command::Jobs { names } => {
            cmd::jobs::list(names);
            Ok(())
        }
        Command::Connect(command) => {
            cmd::connect::run(
                &settings,
                config_path.as_deref(),
                command,
                shutdown_signal(),
            )
            .await
        }
        Command::Process(command) => cmd::process::run(&settings, command, shutdown_signal()).await,
        Command::Report(ReportCommand::Campaigns { args, topology }) => {
            cmd::report::campaigns(&settings, &topology.load()?, args).await
        }
        Command::Dlq(DlqCommand::Inspect { args }) => cmd::dlq::inspect(&settings, args).await,
        Command::Dlq(DlqCommand::Redrive { args }) => cmd::dlq::redrive(&settings, args).await,
        Command::Attribution(AttributionCommand::Models { args }) => cmd::attribution::models(args),
        Command::Attribution(AttributionCommand::Fit { args, topology }) => {
            cmd::attribution::fit(&settings, &topology.load()?, args, shutdown_signal()).await
        }
        Command::Attribution(AttributionCommand::Journeys { args, topology }) => {
            cmd::attribution::journeys(&settings, &topology.load()?, args).await
        }
        Command::Query(QueryCommand::Serve { args, topology }) => {
            cmd::query::serve(&settings, &topology.load()?, args, shutdown_signal()).await
        }
        Command::Api(ApiCommand::Serve { args, topology }) => {
            cmd::api::serve(&settings, &topology.load()?, args, shutdown_signal()).await
        }
        Command::Ingest(IngestCommand::Serve { args, topology }) => {
            cmd::ingest::serve(&settings, &topology.load()?, args, shutdown_signal()).await
        }
        Command::Fatigue(command) => tokio::task::block_in_place(|| cmd::fatigue::run(command)),
        Command::Sql { args, topology } => cmd::sql::run(&settings, &topology.load()?, args).await,
        Command::Backtest { args, topology } => {
            cmd::backtest::run(&settings, &topology.load()?, args).await
        }
        Command::Replay { args } => cmd::replay::run(&settings, args).await,
        Command::State { args, topology } => {
            cmd::state::run(&settings, &topology.load()?, args).await
        }
        Command::Topics { topology } => cmd::inspect::topics(&settings, &topology.load()?),
        Command::Consume { topic, limit } => cmd::inspect::consume(&settings, &topic, limit).await,
        Command::Topology(TopologyCommand::Describe { topology }) => {
            cmd::topology::describe(&topology.load()?);
            Ok(())
        }
    }
}

/// Resolves on SIGINT or SIGTERM so servers drain and exit cleanly.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
