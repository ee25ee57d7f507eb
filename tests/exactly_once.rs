//! Exactly-once under faults: the `adstream process campaign-metrics` process is killed with SIGKILL at random
//! points at least five times, and the broker is restarted once, while it works through generator data. After a
//! final run to the end of the input:
//! - the compacted outputs equal a batch recomputation of the input (shared with `campaign_metrics.rs`);
//! - a `read_committed` reader sees, per output key, revisions 1, 2, 3, … with no repeats or gaps — a repeat
//!   would be the effect of aborted work leaking, a gap a lost commit;
//! - in the `windows` changelog, counts never go backwards per key (a leaked aborted update followed by a restore
//!   of the older committed state would show as a decrease).
//!
//! This file holds one test because it restarts the broker: other tests in the same binary would see it go away.

mod common;

use std::process::Command;
use std::time::Duration;

use rand::{Rng, SeedableRng};

use common::jobs::{apply_private_topology, start_job, wait_for_end};
use common::recompute::produce_generated_events;
use common::{start_registry, unique, verdict};

/// Restarts the broker through the project script, if the script manages it. Returns whether it did.
fn restart_broker() -> bool {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/dev/kafka");
    let down = Command::new(script)
        .arg("down")
        .output()
        .expect("dev/kafka down");
    let said = String::from_utf8_lossy(&down.stdout).to_string();
    if !said.contains("stopped") {
        eprintln!("broker not managed by dev/kafka ({said}): skipping the broker restart");
        return false;
    }
    let up = Command::new(script)
        .arg("up")
        .output()
        .expect("dev/kafka up");
    assert!(
        up.status.success(),
        "broker restart failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_stay_exact_when_the_job_is_killed_and_the_broker_restarts() {
    let registry = start_registry("eos").await;
    let prefix = unique("eos");
    let processor = format!("{prefix}-job");
    let dir = std::env::temp_dir().join(unique("eos-topology"));
    let (topology_path, topics) = apply_private_topology(&registry.url, &dir, &prefix, &processor);
    let topology = topology_path.to_str().expect("utf-8 path");
    produce_generated_events(&registry.url, &topics.events, 31, 150_000).await;

    // Kill the job at random points; restart the broker once in the middle.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut kills = 0;
    let mut broker_restarted = false;
    while kills < 6 {
        let mut job = start_job(&registry.url, topology, &processor, "127.0.0.1:0", false);
        let run_for = Duration::from_millis(rng.gen_range(1500..5000));
        std::thread::sleep(run_for);
        if kills == 3 && !broker_restarted {
            broker_restarted = restart_broker();
            // Give the job time to notice the broker's return and work on.
            std::thread::sleep(Duration::from_secs(4));
        }
        if let Some(status) = job.try_wait().expect("wait") {
            panic!("the job exited on its own with {status}");
        }
        job.kill().expect("SIGKILL");
        job.wait().expect("reap");
        kills += 1;
    }

    // A final run to the end of the input, which must exit by itself and cleanly.
    wait_for_end(
        start_job(&registry.url, topology, &processor, "127.0.0.1:0", true),
        "the final run",
    );

    tokio::task::block_in_place(|| verdict::assert_campaign_metrics_exact(&topics, &processor));
    assert!(kills >= 5);
    let _ = std::fs::remove_dir_all(dir);
    eprintln!("killed {kills} times, broker restarted: {broker_restarted}");
}
