//! Bad input at the command line: unreachable broker or registry, bad config. Each must fail fast with one clear
//! line that says what and where, never hang.

mod common;

use std::time::{Duration, Instant};

use common::{adstream, unique};

fn assert_fails_fast_with(args: &[&str], needle: &str, limit: Duration) {
    let started = Instant::now();
    let run = adstream(args);
    let took = started.elapsed();
    assert!(!run.status.success(), "{args:?} should fail");
    let stderr = run.stderr_text();
    assert!(
        stderr.contains(needle),
        "{args:?}: expected '{needle}' in stderr:\n{stderr}"
    );
    assert!(took < limit, "{args:?} took {took:?}");
}

#[test]
fn unreachable_broker_is_reported_within_seconds() {
    assert_fails_fast_with(
        &[
            "produce",
            "generate",
            "--events",
            "10",
            "--bootstrap-servers",
            "127.0.0.1:1",
        ],
        "cannot reach Kafka at 127.0.0.1:1",
        Duration::from_secs(20),
    );
    assert_fails_fast_with(
        &["topics", "--bootstrap-servers", "127.0.0.1:1"],
        "127.0.0.1:1",
        Duration::from_secs(20),
    );
}

#[test]
fn unreachable_registry_is_reported_within_seconds() {
    let apply = adstream(&["topology", "apply"]);
    assert!(apply.status.success(), "{}", apply.stderr_text());
    assert_fails_fast_with(
        &[
            "produce",
            "generate",
            "--events",
            "10",
            "--registry-url",
            "http://127.0.0.1:1",
        ],
        "http://127.0.0.1:1",
        Duration::from_secs(20),
    );
    assert_fails_fast_with(
        &["schemas", "check", "--registry-url", "http://127.0.0.1:1"],
        "127.0.0.1:1",
        Duration::from_secs(20),
    );
}

#[test]
fn bad_config_names_the_field_and_the_file() {
    let path = std::env::temp_dir().join(format!("{}.yaml", unique("bad-config")));
    std::fs::write(
        &path,
        "bootstrap_servers: 127.0.0.1:9092\nregistry_ulr: http://x\n",
    )
    .expect("write");
    let run = adstream(&["--config", path.to_str().expect("utf-8"), "topics"]);
    assert!(!run.status.success());
    let stderr = run.stderr_text();
    assert!(stderr.contains("registry_ulr"), "{stderr}");
    assert!(stderr.contains(path.to_str().expect("utf-8")), "{stderr}");
}

#[test]
fn missing_topology_file_is_named() {
    let run = adstream(&[
        "topology",
        "describe",
        "--topology",
        "no/such/topology.yaml",
    ]);
    assert!(!run.status.success());
    assert!(
        run.stderr_text().contains("no/such/topology.yaml"),
        "{}",
        run.stderr_text()
    );
}

#[test]
fn invalid_start_time_is_named() {
    let run = adstream(&["produce", "generate", "--start", "yesterday"]);
    assert!(!run.status.success());
    assert!(
        run.stderr_text().contains("--start 'yesterday'"),
        "{}",
        run.stderr_text()
    );
}

#[test]
fn flush_interval_needs_at_least_once_and_the_servers_need_a_token() {
    assert_fails_fast_with(
        &["process", "campaign-metrics", "--flush-interval-ms", "10"],
        "--flush-interval-ms needs --guarantee at-least-once",
        Duration::from_secs(20),
    );
    for (server, variable) in [
        ("api", "ADSTREAM_API_TOKEN"),
        ("ingest", "ADSTREAM_INGEST_TOKEN"),
    ] {
        let run = common::adstream(&[server, "serve", "--listen", "127.0.0.1:0"]);
        assert!(
            !run.status.success(),
            "{server} serve without a token should fail"
        );
        let stderr = run.stderr_text();
        assert!(
            stderr.contains("no token") && stderr.contains(variable),
            "{server}: {stderr}"
        );
    }
}
