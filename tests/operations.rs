//! The job's operations surface, through the binary: `/healthz`, `/readyz` once partitions are restored,
//! Prometheus `/metrics` with per-topic counts, lag and latency (and every metric the Helm chart's alert rules and
//! dashboard query), and a clean exit on SIGTERM.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::jobs::{adstream, apply_private_topology, start_job, RunningJob};
use common::recompute::produce_generated_events;
use common::{free_port, get, sample, start_registry, unique};

/// The metric names (`adstream_…` words) in the chart's alert rules and Grafana dashboard.
fn chart_metric_names() -> BTreeSet<String> {
    let files = Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/adstream/files");
    let mut names = BTreeSet::new();
    for file in ["alerts.yaml", "dashboard.json"] {
        let text = std::fs::read_to_string(files.join(file)).expect("chart file");
        for (start, _) in text.match_indices("adstream_") {
            let name: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

/// Whether `name` is in the exposition `text`: a sample of it, or its family's `# TYPE` line (a counter that has not
/// counted yet, such as the dead letters of a clean run, is declared without samples).
fn exported(text: &str, name: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            || line
                .strip_prefix("# TYPE ")
                .and_then(|rest| rest.strip_prefix(name))
                .is_some_and(|rest| rest.starts_with(' '))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_readiness_and_sigterm() {
    let registry = start_registry("ops").await;
    let prefix = unique("ops");
    let processor = format!("{prefix}-job");
    let dir = std::env::temp_dir().join(unique("ops-topology"));
    let (topology_path, topics) = apply_private_topology(&registry.url, &dir, &prefix, &processor);
    let counts = produce_generated_events(&registry.url, &topics.events, 5, 5_000).await;

    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let job = start_job(
        &registry.url,
        topology_path.to_str().expect("utf-8"),
        &processor,
        &listen,
        false,
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ready = false;
    let mut text = String::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if get(&format!("{base}/healthz")).await.map(|r| r.0) != Some(200) {
            continue;
        }
        ready = ready || get(&format!("{base}/readyz")).await.map(|r| r.0) == Some(200);
        let Some((200, body)) = get(&format!("{base}/metrics")).await else {
            continue;
        };
        let impressions = sample(
            &body,
            "adstream_records_in_total",
            &format!("topic=\"{}\"", topics.events.impressions),
        );
        let lag_reported = body.contains("adstream_consumer_lag{");
        text = body;
        if ready && impressions == Some(counts.impressions as f64) && lag_reported {
            break;
        }
    }
    assert!(ready, "/readyz never answered 200");
    assert_eq!(
        sample(
            &text,
            "adstream_records_in_total",
            &format!("topic=\"{}\"", topics.events.clicks)
        ),
        Some(counts.clicks as f64),
        "{text}"
    );
    assert!(
        sample(&text, "adstream_transactions_total", "outcome=\"commit\"").unwrap_or(0.0) >= 1.0
    );
    assert!(sample(&text, "adstream_event_time_latency_seconds_count", "").unwrap_or(0.0) > 0.0);
    assert!(text.contains("# TYPE adstream_processing_latency_seconds histogram"));
    assert!(
        sample(&text, "adstream_commit_duration_seconds_count", "").unwrap_or(0.0)
            >= sample(&text, "adstream_transactions_total", "outcome=\"commit\"").unwrap_or(0.0),
        "every commit's duration observed: {text}"
    );
    assert!(sample(&text, "adstream_job_applied_events_total", "").unwrap_or(0.0) > 0.0);
    // Every metric the chart's alert rules and dashboard query is one this job exports.
    let names = chart_metric_names();
    assert!(names.len() >= 10, "too few names found: {names:?}");
    let missing: Vec<&String> = names.iter().filter(|n| !exported(&text, n)).collect();
    assert!(
        missing.is_empty(),
        "the chart uses {missing:?}, not in\n{text}"
    );

    // SIGTERM: the job commits, leaves the group and exits 0 with its summary.
    let pid = job.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let output = tokio::task::block_in_place(|| job.into_child().wait_with_output()).expect("wait");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}: {stdout}",
        output.status
    );
    assert!(
        stdout.contains(&format!("{processor} stopped: ")),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Polls `/readyz` at `base` until it answers 200; returns how long that took, None after `limit`.
async fn time_to_ready(base: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if get(&format!("{base}/readyz")).await.map(|r| r.0) == Some(200) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Starts campaign-metrics as static member `cm-0` of `processor`, with the `extra` flags.
fn start_static_member(
    registry: &str,
    topology: &Path,
    processor: &str,
    metrics_listen: &str,
    extra: &[&str],
) -> std::process::Child {
    let mut args = vec![
        "process",
        "campaign-metrics",
        "--topology",
        topology.to_str().expect("utf-8"),
        "--application-id",
        processor,
        "--instance-id",
        "cm-0",
        "--static-membership",
        "--metrics-listen",
        metrics_listen,
    ];
    args.extend_from_slice(extra);
    adstream(registry, &args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the job")
}

/// Issue 12: a job killed with SIGKILL and restarted at once got its partitions back only after the broker's
/// session timeout (49-50 s measured), the dead incarnation still holding them. As a static member the restarted
/// instance takes them back at once: here well within half the session timeout it runs with, which the old
/// behaviour could not beat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_static_member_gets_its_partitions_back_at_once() {
    let registry = start_registry("static").await;
    let prefix = unique("static");
    let processor = format!("{prefix}-job");
    let dir = std::env::temp_dir().join(unique("static-topology"));
    let (topology_path, topics) = apply_private_topology(&registry.url, &dir, &prefix, &processor);
    produce_generated_events(&registry.url, &topics.events, 2, 1_000).await;
    let session_timeout = Duration::from_secs(60);
    let session_ms = session_timeout.as_millis().to_string();
    let start = |listen: &str| {
        start_static_member(
            &registry.url,
            &topology_path,
            &processor,
            listen,
            &["--session-timeout-ms", &session_ms],
        )
    };
    let first_listen = format!("127.0.0.1:{}", free_port());
    let mut first = start(&first_listen);
    let joined = time_to_ready(&format!("http://{first_listen}"), Duration::from_secs(120)).await;
    assert!(joined.is_some(), "the first incarnation never became ready");
    first.kill().expect("SIGKILL");
    let _ = first.wait();

    let second_listen = format!("127.0.0.1:{}", free_port());
    let mut second = start(&second_listen);
    let back = time_to_ready(&format!("http://{second_listen}"), session_timeout).await;
    let _ = second.kill();
    let _ = second.wait();
    let back = back.expect("the restarted instance got no partitions within the session timeout");
    println!("restarted static member assigned and restored after {back:?}");
    assert!(
        back < session_timeout / 2,
        "partitions came back after {back:?}: the dead incarnation's session was waited out"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A job whose Kafka clients became unusable (here its consumer fenced: another process joined the group with the
/// same static instance id) started again in the same process with new clients, instead of exiting and leaving
/// its partitions idle until an orchestrator restarted it. The intruder runs with `--max-restarts 0`, so when the
/// first instance comes back and fences it in turn, it exits with the error as every instance did before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_job_starts_again_in_process_with_new_clients() {
    let registry = start_registry("restart").await;
    let prefix = unique("restart");
    let processor = format!("{prefix}-job");
    let dir = std::env::temp_dir().join(unique("restart-topology"));
    let (topology_path, topics) = apply_private_topology(&registry.url, &dir, &prefix, &processor);
    produce_generated_events(&registry.url, &topics.events, 3, 1_000).await;
    let start = |listen: &str, extra: &[&str]| {
        start_static_member(&registry.url, &topology_path, &processor, listen, extra)
    };
    let first_listen = format!("127.0.0.1:{}", free_port());
    let first_base = format!("http://{first_listen}");
    let mut first = start(&first_listen, &[]);
    assert!(
        time_to_ready(&first_base, Duration::from_secs(120))
            .await
            .is_some(),
        "the first instance never became ready"
    );

    let intruder_listen = format!("127.0.0.1:{}", free_port());
    let mut intruder = start(&intruder_listen, &["--max-restarts", "0"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let intruder_exit = loop {
        if let Some(status) = intruder.try_wait().expect("intruder status") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = intruder.kill();
    let first_exit = first.try_wait().expect("first instance status");
    let restarted = get(&format!("{first_base}/metrics"))
        .await
        .and_then(|(_, text)| sample(&text, "adstream_job_restarts_total", &processor));
    let ready_again = time_to_ready(&first_base, Duration::from_secs(60)).await;
    let _ = first.kill();
    let _ = first.wait();
    let _ = std::fs::remove_dir_all(dir);

    assert_eq!(
        first_exit, None,
        "the fenced instance exited instead of starting again"
    );
    assert!(
        restarted.is_some_and(|n| n >= 1.0),
        "adstream_job_restarts_total: {restarted:?}"
    );
    let intruder_exit = intruder_exit
        .expect("the intruder was never fenced: the first instance did not come back in the group");
    assert!(
        !intruder_exit.success(),
        "the intruder, fenced with --max-restarts 0, exited with {intruder_exit}"
    );
    assert!(
        ready_again.is_some(),
        "the first instance did not become ready again"
    );
}

/// A test that panics with a job running must not leave it running: the next test binaries would share the two
/// cores with it (an earlier chaos failure left nine instances that starved the CLI tests after it).
#[test]
fn a_job_dropped_midway_is_killed_and_reaped() {
    let child = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("sleep");
    let pid = child.id();
    drop(RunningJob::from(child));
    // Killed and reaped: no process with that id is left, not even a zombie.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}
