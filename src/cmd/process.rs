//! `adstream process <job>`: runs a job of the registry ([`JobRegistry::builtin`]) with its HTTP operations
//! endpoint. Each job is a subcommand, its flags are the job's settings type flattened beside the runtime's
//! ([`RunArgs`]); its topics come from its processor entry in the topology, found by the records they carry (see
//! `adstream_processors::jobs`).
//!
//! The endpoint serves `/metrics` (Prometheus text), `/healthz` (the process is up and no stage's poll loop is
//! stuck, see `--stall-timeout-secs`) and `/readyz` (200 once the job owns partitions and has restored them).
//! SIGTERM or SIGINT commits what was processed and leaves the group.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adstream_processors::jobs::{JobEntry, JobRegistry, Stage as JobStage, Wiring};
use adstream_processors::runtime::{
    self, merge_expositions, DeliveryGuarantee, GroupMembership, InternalReplication, JobMetrics,
    Operator, RuntimeConfig,
};
use adstream_topology::Topology;
use anyhow::{anyhow, bail, Context, Result};
use axum::http::StatusCode;
use axum::routing::get;
use clap::{ArgMatches, Args, FromArgMatches, ValueEnum};
use tracing::{info, warn};

use crate::config::Settings;
use crate::TopologyArg;

/// Delivery guarantee flag values.
#[derive(Clone, Copy, ValueEnum)]
pub enum Guarantee {
    /// Kafka transactions: outputs, state and offsets commit together.
    ExactlyOnce,
    /// Outputs flushed before offsets are committed; a crash may repeat the effects of uncommitted records.
    AtLeastOnce,
}

/// Settings every job takes: identity, delivery guarantee, commits, the operations endpoint.
#[derive(Args)]
pub struct RunArgs {
    /// This replica's id: unique per replica, stable across its restarts (e.g. a StatefulSet pod name).
    #[arg(long, env = "ADSTREAM_INSTANCE_ID", default_value = "0")]
    instance_id: String,
    /// Delivery guarantee.
    #[arg(long, value_enum, default_value = "exactly-once")]
    guarantee: Guarantee,
    /// How often outputs, state and offsets are committed, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    commit_interval_ms: u64,
    /// With `--guarantee at-least-once`: emit outputs every this many milliseconds between commits, so readers
    /// see changes within milliseconds (offsets still commit every --commit-interval-ms).
    #[arg(long)]
    flush_interval_ms: Option<u64>,
    /// Address of the /metrics, /healthz and /readyz endpoint.
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_listen: SocketAddr,
    /// Stop once every input partition has been read to its end (replays, batch catch-up).
    #[arg(long)]
    until_end: bool,
    /// An input record whose timestamp is more than this many seconds ahead of the wall clock goes to the DLQ
    /// (class `future-timestamp`) instead of moving event time.
    #[arg(long, default_value_t = adstream_processors::runtime::DEFAULT_MAX_EVENT_TIME_AHEAD.as_secs())]
    max_event_time_ahead_secs: u64,
    /// Join the consumer group as a static member (`group.instance.id` from the application and instance ids,
    /// classic protocol): a restarted instance gets its partitions back at once instead of after the session
    /// timeout. Give every replica a stable `--instance-id` (a StatefulSet's pod name).
    #[arg(long)]
    static_membership: bool,
    /// With `--static-membership`: how long an absent instance keeps its partitions, in milliseconds.
    #[arg(long, default_value_t = adstream_processors::runtime::DEFAULT_STATIC_SESSION_TIMEOUT.as_millis() as u64)]
    session_timeout_ms: u64,
    /// How long an input partition without records (an upstream stage or producer that stopped) holds its task's
    /// event time back before it counts as idle, in seconds. Longer than any outage the job should ride out
    /// (instance restarts, leader moves), or events of the silent partition arrive late when it resumes.
    #[arg(long, default_value_t = adstream_processors::runtime::DEFAULT_IDLE_TIMEOUT.as_secs())]
    idle_timeout_secs: u64,
    /// Keep warm copies of the state of every task this instance does not own, following their changelogs (Kafka
    /// Streams' standby replicas), so that taking a task over (a dead instance's, or after scaling in) restores only
    /// what was committed since, not the whole changelog. Costs the memory of the copies and one changelog reader.
    /// Exactly-once only.
    #[arg(long, env = "ADSTREAM_STANDBY")]
    standby: bool,
    /// How many times in a row a job stage is started again in this process, with new Kafka clients, after an
    /// error they clear (a fenced or fatal producer or consumer, say after a broker outage; a commit whose outcome
    /// is unknown) before the process gives up and exits with the error. A stage that ran for 5 minutes starts
    /// the count again. 0 exits on the first such error (leaving restarts to the orchestrator).
    #[arg(long, default_value_t = 10)]
    max_restarts: u32,
    /// `/healthz` answers 503 once a stage's poll loop has not come round for this many seconds (outside restores):
    /// a thread stuck in a client call or an operator, which an orchestrator's liveness probe should restart. Longer
    /// than a commit can take through its retries during a broker outage.
    #[arg(long, default_value_t = 300)]
    stall_timeout_secs: u64,
}

impl RunArgs {
    /// The runtime settings of the job (or stage) `application_id`.
    fn runtime_config(
        &self,
        settings: &Settings,
        topology: &Topology,
        application_id: &str,
    ) -> RuntimeConfig {
        let mut config = RuntimeConfig::new(
            application_id,
            settings.kafka_config(),
            settings.registry.clone(),
        );
        config.instance_id = self.instance_id.clone();
        if self.static_membership {
            config.membership = GroupMembership::Static {
                session_timeout: Duration::from_millis(self.session_timeout_ms),
            };
        }
        config.guarantee = match self.guarantee {
            Guarantee::ExactlyOnce => DeliveryGuarantee::ExactlyOnce,
            Guarantee::AtLeastOnce => DeliveryGuarantee::AtLeastOnce,
        };
        config.commit_interval = Duration::from_millis(self.commit_interval_ms.max(1));
        config.flush_interval = self
            .flush_interval_ms
            .map(|ms| Duration::from_millis(ms.max(1)));
        config.exit_at_end_of_input = self.until_end;
        config.max_event_time_ahead = Duration::from_secs(self.max_event_time_ahead_secs);
        config.idle_timeout = Duration::from_secs(self.idle_timeout_secs);
        let internal = topology.internal_topics();
        config.internal_topics = InternalReplication {
            replication_factor: internal.replication_factor,
            min_insync_replicas: internal.min_insync_replicas,
        };
        config
    }
}

/// Id of the `--application-id` flag every job subcommand has.
const APPLICATION_ID: &str = "application_id";

/// `adstream process <job> [flags]`: the job, its runtime flags, its topology and its own settings' flags.
pub struct ProcessCommand {
    job: &'static dyn JobEntry,
    application_id: String,
    run: RunArgs,
    topology: TopologyArg,
    /// The subcommand's parsed flags, read into the job's settings type by the job itself.
    matches: ArgMatches,
}

/// The subcommand of `job`: `--application-id`, the runtime's flags, `--topology` and the job's settings.
fn job_command(job: &'static dyn JobEntry) -> clap::Command {
    let command = clap::Command::new(job.name()).arg(
        clap::Arg::new(APPLICATION_ID)
            .long("application-id")
            .default_value(job.name())
            .help(
                "Processor name in the topology; also the consumer group, the changelog prefix and the \
                 transactional id prefix (stages other than the main one append a suffix)",
            ),
    );
    // After the settings: their type's doc comment would otherwise become the subcommand's about.
    job.augment_args(TopologyArg::augment_args(RunArgs::augment_args(command)))
        .about(job.about())
        .long_about(None)
}

impl FromArgMatches for ProcessCommand {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let (name, sub) = matches.subcommand().ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::MissingSubcommand,
                "process: name a job",
            )
        })?;
        let job = JobRegistry::builtin().get(name).ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidSubcommand,
                format!("process: no job named '{name}'"),
            )
        })?;
        Ok(ProcessCommand {
            job,
            application_id: sub
                .get_one::<String>(APPLICATION_ID)
                .cloned()
                .unwrap_or_else(|| job.name().to_owned()),
            run: RunArgs::from_arg_matches(sub)?,
            topology: TopologyArg::from_arg_matches(sub)?,
            matches: sub.clone(),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = ProcessCommand::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Subcommand for ProcessCommand {
    fn augment_subcommands(command: clap::Command) -> clap::Command {
        JobRegistry::builtin()
            .jobs()
            .iter()
            .fold(command, |command, job| {
                command.subcommand(job_command(*job))
            })
    }

    fn augment_subcommands_for_update(command: clap::Command) -> clap::Command {
        ProcessCommand::augment_subcommands(command)
    }

    fn has_subcommand(name: &str) -> bool {
        JobRegistry::builtin().get(name).is_some()
    }
}

/// Runs the job of `command` until `shutdown` resolves (or, with `--until-end`, until its inputs are read): its
/// stages side by side (with `--until-end`, one after the other, so a later stage reads everything an earlier one
/// wrote).
pub async fn run(
    settings: &Settings,
    command: ProcessCommand,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    if command.run.flush_interval_ms.is_some()
        && matches!(command.run.guarantee, Guarantee::ExactlyOnce)
    {
        bail!(
            "--flush-interval-ms needs --guarantee at-least-once: exactly-once outputs appear when their \
             transaction commits (shorten --commit-interval-ms instead)"
        );
    }
    let topology = command.topology.load()?;
    let job = command.job;
    let wiring = Wiring::resolve(&topology, &command.application_id, job.ports())?;
    let build = || {
        job.stages_from_args(&command.matches, &wiring)
            .map_err(|e| anyhow!("invalid {} settings: {e}", job.name()))
    };
    let stages = build()?;
    // The standby copies live in the stores of a second instance of each stage's operator.
    let standbys: Vec<Option<Box<dyn Operator>>> = if command.run.standby {
        build()?
            .into_iter()
            .map(|stage| Some(stage.operator))
            .collect()
    } else {
        stages.iter().map(|_| None).collect()
    };
    let stages = stages
        .into_iter()
        .zip(standbys)
        .map(|(stage, standby)| Stage {
            config: command
                .run
                .runtime_config(settings, &topology, &stage.application_id),
            name: stage.application_id,
            operator: stage.operator,
            standby,
        })
        .collect();
    // A stage started again gets new operators (its state is restored from Kafka, like a new process's) and keeps
    // its runtime settings and metrics.
    let rebuild = |name: &str, config: RuntimeConfig| -> Result<Stage> {
        let fresh = |stages: Vec<JobStage>| {
            stages
                .into_iter()
                .find(|stage| stage.application_id == name)
                .map(|stage| stage.operator)
                .ok_or_else(|| anyhow!("{name}: no such stage"))
        };
        let operator = fresh(build()?)?;
        let standby = if command.run.standby {
            Some(fresh(build()?)?)
        } else {
            None
        };
        Ok(Stage {
            name: name.to_owned(),
            config,
            operator,
            standby,
        })
    };
    run_stages(stages, &command.run, &rebuild, shutdown).await
}

/// One consume–process–produce loop of a job.
struct Stage {
    /// Application id of the stage (metrics label, consumer group).
    name: String,
    config: RuntimeConfig,
    operator: Box<dyn Operator>,
    /// With `--standby`: a second instance of the operator whose stores hold the standby copies.
    standby: Option<Box<dyn Operator>>,
}

/// A stage that ran this long before failing starts its count of restarts in a row again.
const RESTART_COUNT_RESET: Duration = Duration::from_secs(300);
/// Pause before the first restart of a stage in a row; it doubles with each, up to [`MAX_RESTART_PAUSE`].
const FIRST_RESTART_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause before a restart.
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(30);

/// The pause before restart number `in_a_row` (1 for the first) of a stage.
fn restart_pause(in_a_row: u32) -> Duration {
    FIRST_RESTART_PAUSE
        .saturating_mul(1 << in_a_row.saturating_sub(1).min(8))
        .min(MAX_RESTART_PAUSE)
}

/// Runs `stages` with one operations endpoint until `shutdown` resolves: all at once, or, with `--until-end`, one
/// after the other. A stage that stops with an error new clients clear is started again (`rebuild` makes its
/// operators) up to `--max-restarts` times in a row; any other failure stops the others.
async fn run_stages(
    stages: Vec<Stage>,
    run: &RunArgs,
    rebuild: &dyn Fn(&str, RuntimeConfig) -> Result<Stage>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(run.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--metrics-listen)", run.metrics_listen))?;
    info!(address = %run.metrics_listen, "serving /metrics, /healthz, /readyz");
    let server = tokio::spawn(serve_operations(
        listener,
        stages
            .iter()
            .map(|s| (s.name.clone(), s.config.metrics.clone()))
            .collect(),
        Duration::from_secs(run.stall_timeout_secs),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let handle = tokio::runtime::Handle::current();
    // Starts a stage after `pause` (cut short by a shutdown); hands back its name, settings, run time and outcome.
    let start = |stage: Stage, pause: Duration| {
        let stop = stop.clone();
        let handle = handle.clone();
        let name = stage.name;
        let config = stage.config.clone();
        tokio::task::spawn_blocking(move || {
            let resume_at = Instant::now() + pause;
            while Instant::now() < resume_at && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let started = Instant::now();
            let outcome = runtime::run_with_standby(
                stage.config,
                stage.operator,
                stage.standby,
                stop,
                handle,
            );
            (name, config, started.elapsed(), outcome)
        })
    };
    let mut restarts_in_a_row: HashMap<String, u32> = HashMap::new();
    let mut waiting: std::collections::VecDeque<Stage> = stages.into();
    let mut running = tokio::task::JoinSet::new();
    let start_next = |running: &mut tokio::task::JoinSet<_>,
                      waiting: &mut std::collections::VecDeque<Stage>| {
        let count = if run.until_end { 1 } else { waiting.len() };
        for stage in waiting.drain(..count.min(waiting.len())) {
            running.spawn(start(stage, Duration::ZERO));
        }
    };
    start_next(&mut running, &mut waiting);
    tokio::pin!(shutdown);
    let mut failure = None;
    let mut shutting_down = false;
    while !running.is_empty() {
        tokio::select! {
            joined = running.join_next() => {
                let Some(joined) = joined else { break };
                let (name, config, ran_for, outcome) =
                    joined.context("a job thread failed")?.context("a job thread panicked")?;
                match outcome {
                    Ok(summary) => println!(
                        "{name} stopped: {} records, {} commits, {} aborts, {} dead letters, {} late, {} restored in {:.2} s",
                        summary.records,
                        summary.commits,
                        summary.aborts,
                        summary.dead_letters,
                        summary.late,
                        summary.restored,
                        summary.restore_seconds
                    ),
                    Err(e) if e.clears_on_restart() && !shutting_down && failure.is_none() => {
                        let in_a_row = restarts_in_a_row.entry(name.clone()).or_default();
                        if ran_for >= RESTART_COUNT_RESET {
                            *in_a_row = 0;
                        }
                        if *in_a_row >= run.max_restarts {
                            stop.store(true, Ordering::Relaxed);
                            failure.get_or_insert(anyhow::Error::new(e).context(format!(
                                "{name} stopped with an error ({} restarts in a row, --max-restarts)", *in_a_row
                            )));
                        } else {
                            *in_a_row += 1;
                            let pause = restart_pause(*in_a_row);
                            warn!(job = %name, error = %e, restart = *in_a_row, pause_ms = pause.as_millis() as u64,
                                "the job stopped with an error that new clients clear: starting it again");
                            config.metrics.record_restart();
                            match rebuild(&name, config) {
                                Ok(stage) => {
                                    running.spawn(start(stage, pause));
                                }
                                Err(rebuilt) => {
                                    stop.store(true, Ordering::Relaxed);
                                    failure.get_or_insert(rebuilt.context(format!("{name}: cannot start it again")));
                                }
                            }
                        }
                    }
                    // Fenced (or its producer failed) while leaving: the group has its partitions already and its
                    // last commit stands, so the shutdown it was asked for is done. Seen in the chaos run: a broker
                    // kill expired the session just as the rolling restart's SIGTERM came, and the exit status 1
                    // read as a failed shutdown.
                    Err(e) if e.clears_on_restart() && shutting_down => {
                        warn!(job = %name, error = %e, "stopped while shutting down with an error new clients would clear");
                    }
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        failure.get_or_insert(anyhow::Error::new(e).context(format!("{name} stopped with an error")));
                    }
                }
                if failure.is_none() && !shutting_down {
                    start_next(&mut running, &mut waiting);
                }
            }
            () = &mut shutdown, if !shutting_down => {
                info!("shutting down: committing and leaving the group");
                shutting_down = true;
                stop.store(true, Ordering::Relaxed);
            }
        }
    }
    server.abort();
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn serve_operations(
    listener: tokio::net::TcpListener,
    jobs: Vec<(String, Arc<JobMetrics>)>,
    stall_timeout: Duration,
) {
    let jobs = Arc::new(jobs);
    let for_metrics = jobs.clone();
    let for_health = jobs.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = merge_expositions(
                    for_metrics
                        .iter()
                        .map(|(name, metrics)| metrics.render(name)),
                );
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        text,
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let stalled: Vec<String> = for_health
                    .iter()
                    .filter_map(|(name, metrics)| {
                        let age = metrics.stalled(stall_timeout)?;
                        warn!(job = %name, stalled_secs = age.as_secs(), "the job's poll loop is stuck: failing /healthz");
                        Some(format!("{name}: poll loop stuck for {} s", age.as_secs()))
                    })
                    .collect();
                async move {
                    if stalled.is_empty() {
                        (StatusCode::OK, "ok\n".to_owned())
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", stalled.join("\n")))
                    }
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = jobs.iter().all(|(_, metrics)| metrics.is_ready());
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "restoring or not assigned yet\n",
                        )
                    }
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "operations endpoint stopped");
    }
}
