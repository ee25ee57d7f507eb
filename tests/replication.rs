//! Replication on the local three-node cluster (`./dev/kafka up --brokers 3`): the topics `topology apply`
//! declares and the topics a job creates for itself when it starts (changelogs, `dlq.*`, `late.*`) carry the
//! topology's replication factor and `min.insync.replicas`, as the brokers report them.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use common::jobs::{adstream, apply_topology, replicated, topology_yaml, wait_for_end};
use common::{cluster, start_registry, unique};

/// Replicas of each partition and `min.insync.replicas` of every topic whose name contains `part`.
async fn replication(
    admin: &AdminClient<DefaultClientContext>,
    part: &str,
) -> BTreeMap<String, (Vec<usize>, Option<String>)> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap_or_else(|e| {
            panic!(
                "the three-node cluster at {} does not answer ({e}): ./dev/kafka up --brokers 3",
                cluster()
            )
        });
    let mut found = BTreeMap::new();
    for topic in metadata.topics().iter().filter(|t| t.name().contains(part)) {
        let replicas = topic
            .partitions()
            .iter()
            .map(|p| p.replicas().len())
            .collect();
        let described = admin
            .describe_configs(
                &[ResourceSpecifier::Topic(topic.name())],
                &AdminOptions::new(),
            )
            .await
            .expect("describe");
        let min_insync = described
            .into_iter()
            .next()
            .and_then(Result::ok)
            .and_then(|resource| {
                resource
                    .get("min.insync.replicas")
                    .and_then(|entry| entry.value.clone())
            });
        found.insert(topic.name().to_owned(), (replicas, min_insync));
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_and_internal_topics_follow_the_topology_on_three_brokers() {
    let registry = start_registry("replication").await;
    let prefix = unique("repl");
    let processor = format!("{prefix}-job");
    let dir = std::env::temp_dir().join(unique("replication-topology"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("topology.yaml");
    let yaml = replicated(&topology_yaml(&prefix, &processor));
    std::fs::write(&path, yaml).expect("write topology");
    let path = path.to_str().expect("utf-8 path");
    let cluster = cluster();

    apply_topology(
        &registry.url,
        std::path::Path::new(path),
        &["--bootstrap-servers", &cluster],
    );
    // The job starts, creates its internal topics, finds its (empty) inputs at their end and stops.
    let job = adstream(
        &registry.url,
        &[
            "process",
            "campaign-metrics",
            "--topology",
            path,
            "--application-id",
            &processor,
            "--bootstrap-servers",
            &cluster,
            "--metrics-listen",
            "127.0.0.1:0",
            "--until-end",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .expect("start the job");
    tokio::task::block_in_place(|| wait_for_end(job, "campaign-metrics on three brokers"));

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &cluster)
        .create()
        .expect("admin client");
    let topics = replication(&admin, &prefix).await;
    let internal: Vec<&String> = topics
        .keys()
        .filter(|name| {
            name.starts_with("dlq.") || name.starts_with("late.") || name.ends_with("-changelog")
        })
        .collect();
    assert!(
        internal.iter().any(|name| name.ends_with("-changelog"))
            && internal.iter().any(|name| name.starts_with("dlq."))
            && internal.iter().any(|name| name.starts_with("late.")),
        "the job created no changelog, dlq or late topic: {:?}",
        topics.keys()
    );
    for (name, (replicas, min_insync)) in &topics {
        assert!(
            !replicas.is_empty() && replicas.iter().all(|r| *r == 3),
            "{name}: replicas per partition {replicas:?}"
        );
        assert_eq!(min_insync.as_deref(), Some("2"), "{name}");
    }
    println!(
        "{} topics with 3 replicas and min.insync.replicas 2: {:?}",
        topics.len(),
        topics.keys()
    );
    let _ = std::fs::remove_dir_all(dir);
}
