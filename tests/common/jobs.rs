//! Running `adstream process <job>` as a process over private topics: a topology file naming them, and the
//! command lines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::bootstrap;
use super::recompute::Topics;

/// A topology with the jobs' topics under `prefix`: the campaign-metrics processor is called `processor`, the
/// attribution processor `<processor>-attribution` and the creative-fatigue processor `<processor>-fatigue`.
pub fn topology_yaml(prefix: &str, processor: &str) -> String {
    format!(
        "defaults:\n  partitions: 4\n  replication_factor: 1\ntopics:\n\
         \x20 - {{ name: {prefix}.impressions, key: campaign_id, value_schema: io.adstream.ads.AdImpression }}\n\
         \x20 - {{ name: {prefix}.clicks, key: campaign_id, value_schema: io.adstream.ads.AdClick }}\n\
         \x20 - {{ name: {prefix}.conversions, key: user_id, value_schema: io.adstream.ads.Conversion }}\n\
         \x20 - {{ name: {prefix}.campaigns, key: campaign_id, value_schema: io.adstream.ads.Campaign, cleanup_policy: compact }}\n\
         \x20 - {{ name: {prefix}.creatives, key: creative_id, value_schema: io.adstream.ads.Creative, cleanup_policy: compact }}\n\
         \x20 - {{ name: {prefix}.hourly, key: campaign_window, value_schema: io.adstream.metrics.CampaignMetrics, cleanup_policy: compact }}\n\
         \x20 - {{ name: {prefix}.daily, key: campaign_window, value_schema: io.adstream.metrics.CampaignMetrics, cleanup_policy: compact }}\n\
         \x20 - {{ name: {prefix}.alerts, key: campaign_id, value_schema: io.adstream.alerts.CampaignAlert }}\n\
         \x20 - {{ name: {prefix}.credits, key: campaign_id, value_schema: io.adstream.attribution.AttributionCredit }}\n\
         \x20 - {{ name: {prefix}.attributed, key: conversion_id, value_schema: io.adstream.attribution.AttributedConversion, cleanup_policy: compact }}\n\
         \x20 - {{ name: {prefix}.fatigue, key: creative_id, value_schema: io.adstream.fatigue.CreativeFatigue, cleanup_policy: compact }}\n\
         \x20 - {{ name: {prefix}.creative_alerts, key: creative_id, value_schema: io.adstream.alerts.CreativeAlert }}\n\
         processors:\n\
         \x20 - name: {processor}\n\
         \x20   job: campaign-metrics\n\
         \x20   inputs: [{prefix}.impressions, {prefix}.clicks, {prefix}.campaigns, {prefix}.credits]\n\
         \x20   outputs: [{prefix}.hourly, {prefix}.daily, {prefix}.alerts]\n\
         \x20   key: campaign_id\n\
         \x20 - name: {processor}-attribution\n\
         \x20   job: attribution\n\
         \x20   repartition: [{prefix}.impressions, {prefix}.clicks]\n\
         \x20   inputs: [{prefix}.conversions]\n\
         \x20   outputs: [{prefix}.attributed, {prefix}.credits]\n\
         \x20   key: user_id\n\
         \x20 - name: {processor}-fatigue\n\
         \x20   job: creative-fatigue\n\
         \x20   inputs: [{prefix}.impressions, {prefix}.clicks]\n\
         \x20   outputs: [{prefix}.fatigue, {prefix}.creative_alerts]\n\
         \x20   key: campaign_id\n"
    )
}

/// `yaml` (a [`topology_yaml`]) with three replicas and `min.insync.replicas` 2, for the three-node cluster.
pub fn replicated(yaml: &str) -> String {
    yaml.replace(
        "  replication_factor: 1\n",
        "  replication_factor: 3\n  min_insync_replicas: 2\n",
    )
}

pub fn adstream(registry: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_adstream"));
    command
        .args(args)
        .env("ADSTREAM_BOOTSTRAP_SERVERS", bootstrap())
        .env("ADSTREAM_REGISTRY_URL", registry)
        .env("ADSTREAM_LOG", "warn");
    command
}

/// A spawned job that is killed and reaped when dropped: a test that fails midway (a panic unwinds through it)
/// leaves no job running to starve the test binaries after it. Derefs to the [`Child`].
pub struct RunningJob(Option<Child>);

impl RunningJob {
    /// The child itself, no longer killed on drop (for `wait_with_output`, which takes it).
    pub fn into_child(mut self) -> Child {
        self.0
            .take()
            .expect("the child is present until the job is dropped")
    }
}

impl From<Child> for RunningJob {
    fn from(child: Child) -> RunningJob {
        RunningJob(Some(child))
    }
}

impl std::ops::Deref for RunningJob {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0
            .as_ref()
            .expect("the child is present until the job is dropped")
    }
}

impl std::ops::DerefMut for RunningJob {
    fn deref_mut(&mut self) -> &mut Child {
        self.0
            .as_mut()
            .expect("the child is present until the job is dropped")
    }
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        // Already reaped (terminate, wait_for_end, exit_within): try_wait answers at once and this does nothing.
        if let Some(child) = &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Starts `adstream process campaign-metrics`.
pub fn start_job(
    registry: &str,
    topology: &str,
    processor: &str,
    metrics_listen: &str,
    until_end: bool,
) -> RunningJob {
    start_process(
        "campaign-metrics",
        registry,
        topology,
        processor,
        metrics_listen,
        until_end,
    )
}

/// Starts `adstream process <job>` with application id `processor` and a 200 ms commit interval.
pub fn start_process(
    job: &str,
    registry: &str,
    topology: &str,
    processor: &str,
    metrics_listen: &str,
    until_end: bool,
) -> RunningJob {
    let child = process_command(
        job,
        registry,
        topology,
        processor,
        metrics_listen,
        until_end,
        &[],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .expect("start the job");
    RunningJob::from(child)
}

/// `adstream process <job>` as `processor` of `topology` (200 ms commits, metrics on `metrics_listen`), with
/// `--until-end` when asked and the `extra` flags.
pub fn process_command(
    job: &str,
    registry: &str,
    topology: &str,
    processor: &str,
    metrics_listen: &str,
    until_end: bool,
    extra: &[&str],
) -> Command {
    let mut args = vec![
        "process",
        job,
        "--topology",
        topology,
        "--application-id",
        processor,
        "--commit-interval-ms",
        "200",
        "--metrics-listen",
        metrics_listen,
    ];
    if until_end {
        args.push("--until-end");
    }
    args.extend_from_slice(extra);
    adstream(registry, &args)
}

/// Writes [`topology_yaml`] into `dir` and applies it with the binary; returns the file and the topic names.
pub fn apply_private_topology(
    registry: &str,
    dir: &Path,
    prefix: &str,
    processor: &str,
) -> (PathBuf, Topics) {
    std::fs::create_dir_all(dir).expect("scratch dir");
    let path = dir.join("topology.yaml");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(topology_yaml(prefix, processor).as_bytes()))
        .expect("write topology");
    apply_topology(registry, &path, &[]);
    let topics = Topics::under(prefix);
    (path, topics)
}

/// Applies the topology file at `path` with the binary (`extra`: more flags, e.g. `--bootstrap-servers`); panics
/// with the command's stderr if it fails.
pub fn apply_topology(registry: &str, path: &Path, extra: &[&str]) {
    let mut args = vec![
        "topology",
        "apply",
        "--topology",
        path.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let applied = adstream(registry, &args).output().expect("apply");
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
}

/// Waits up to `limit` for `child` to exit; SIGKILLs and reaps it, and returns None, if it is still running then.
pub fn exit_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends SIGTERM to `child` (a job commits what it processed and exits) and reaps it; returns how it exited.
/// Panics, after a SIGKILL, if it is still running five minutes later: a stuck shutdown fails the test instead of
/// hanging it (a commit gives up on a stuck client call after 40 s, see the runtime's `bounded`).
pub fn terminate(child: impl Into<RunningJob>) -> std::process::ExitStatus {
    let mut child = child.into();
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(sent.success());
    exit_within(&mut child, Duration::from_secs(300))
        .unwrap_or_else(|| panic!("process {} still running 300 s after SIGTERM", child.id()))
}

/// Waits for a `--until-end` run to exit by itself; panics if it fails or takes over five minutes.
pub fn wait_for_end(child: impl Into<RunningJob>, what: &str) {
    let mut child = child.into();
    let status = exit_within(&mut child, Duration::from_secs(300))
        .unwrap_or_else(|| panic!("{what} did not reach the end of its input within 300 s"));
    assert!(status.success(), "{what} failed: {status}");
}
