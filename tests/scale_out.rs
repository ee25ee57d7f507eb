//! Scaling campaign-metrics out and back in while events flow: one instance, then three (same application id,
//! distinct instance ids) sharing the partitions through the consumer group, then one again (the two others stop
//! with SIGTERM, committing and handing their partitions over). Every partition must have been processed by exactly
//! one instance at a time: two owners of a partition would both emit updates for its windows, which a
//! `read_committed` reader sees as repeated revisions of a key; a handover that lost a commit shows as a gap; and
//! the final rows must equal the batch recomputation ([`common::verdict::campaign_metrics`]).
//!
//! The same again with standby copies (`--standby`): the tasks an instance takes over come from the copies it kept
//! warm (its `adstream_standby_promotions_total` counts them), and the outputs stay exact.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use adstream_producers::generator::GeneratorConfig;
use adstream_producers::pipeline::RunOptions;

use common::jobs::{adstream, apply_private_topology, start_job, terminate, wait_for_end};
use common::recompute::produce_generator_with;
use common::{free_port, get, sample, start_registry, unique, verdict};

/// An instance of the job with its `/metrics` address.
struct Instance {
    child: Child,
    metrics: String,
}

fn start(registry: &str, topology: &str, processor: &str, id: &str, standby: bool) -> Instance {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "process",
        "campaign-metrics",
        "--topology",
        topology,
        "--application-id",
        processor,
        "--instance-id",
        id,
        "--commit-interval-ms",
        "200",
        "--metrics-listen",
        &listen,
    ];
    if standby {
        args.push("--standby");
    }
    let child = adstream(registry, &args)
        .stdout(Stdio::null())
        .spawn()
        .expect("start an instance");
    Instance {
        child,
        metrics: format!("http://{listen}/metrics"),
    }
}

/// Records of `topic` the instance has read so far (0 before it serves its metrics).
async fn records_in(instance: &Instance, topic: &str) -> f64 {
    match get(&instance.metrics).await {
        Some((200, body)) => sample(
            &body,
            "adstream_records_in_total",
            &format!("topic=\"{topic}\""),
        )
        .unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Tasks the instance took over from its standby copies so far.
async fn standby_promotions(instance: &Instance) -> f64 {
    match get(&instance.metrics).await {
        Some((200, body)) => sample(&body, "adstream_standby_promotions_total", "").unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Waits until the instance has read records of `topic` beyond `beyond`; panics after two minutes.
async fn wait_for_progress(instance: &Instance, topic: &str, beyond: f64, what: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let read = records_in(instance, topic).await;
        if read > beyond {
            return read;
        }
        assert!(
            Instant::now() < deadline,
            "{what} read no records of {topic} within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// SIGTERM: the instance commits, leaves the group (handing its partitions over at once) and exits 0.
fn stop(instance: Instance) {
    let status = terminate(instance.child);
    assert!(
        status.success(),
        "an instance exited with {status} on SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_one_to_three_to_one_processes_each_partition_once() {
    scale_one_to_three_to_one(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_with_standby_copies_takes_tasks_over_from_them() {
    scale_one_to_three_to_one(true).await;
}

async fn scale_one_to_three_to_one(standby: bool) {
    let registry = start_registry("scale").await;
    let prefix = unique("scale");
    let processor = format!("{prefix}-job");
    let dir = std::env::temp_dir().join(unique("scale-topology"));
    let (topology_path, topics) = apply_private_topology(&registry.url, &dir, &prefix, &processor);
    let topology = topology_path.to_str().expect("utf-8 path");
    let impressions = topics.events.impressions.clone();

    // Traffic keeps flowing through both rebalances.
    let generator = {
        let registry = registry.url.clone();
        let events = topics.events.clone();
        let config = GeneratorConfig {
            seed: 13,
            events: 80_000,
            ..GeneratorConfig::default()
        };
        let options = RunOptions {
            rate: Some(2_000.0),
            ..RunOptions::default()
        };
        tokio::spawn(
            async move { produce_generator_with(&registry, &events, config, options).await },
        )
    };

    let first = start(&registry.url, topology, &processor, "0", standby);
    let read_alone = wait_for_progress(&first, &impressions, 0.0, "instance 0").await;

    // Scale out: both newcomers get partitions and work on them.
    let second = start(&registry.url, topology, &processor, "1", standby);
    let third = start(&registry.url, topology, &processor, "2", standby);
    wait_for_progress(&second, &impressions, 0.0, "instance 1").await;
    wait_for_progress(&third, &impressions, 0.0, "instance 2").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Scale in, one at a time; the first instance takes everything back and goes on.
    tokio::task::block_in_place(|| stop(third));
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| stop(second));
    let read_with_others = records_in(&first, &impressions).await;
    assert!(read_with_others > read_alone);
    if !generator.is_finished() {
        wait_for_progress(
            &first,
            &impressions,
            read_with_others,
            "instance 0 after scaling in",
        )
        .await;
    }

    generator.await.expect("the generator");
    if standby {
        // Instance 0 took the tasks of the two others back: their state came from its copies.
        let promoted = standby_promotions(&first).await;
        assert!(
            promoted > 0.0,
            "instance 0 restored the tasks it took back from the changelogs, not from its standby copies"
        );
    }
    tokio::task::block_in_place(|| {
        stop(first);
        wait_for_end(
            start_job(&registry.url, topology, &processor, "127.0.0.1:0", true),
            "the final run",
        );
    });
    tokio::task::block_in_place(|| verdict::assert_campaign_metrics_exact(&topics, &processor));
    let _ = std::fs::remove_dir_all(dir);
}
