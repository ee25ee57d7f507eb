//! Topology apply against the real broker: plan, apply, idempotence, growing partitions and changing configs,
//! refusing what Kafka cannot do; and the `adstream topology` commands around it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use adstream_topology::{apply, plan, Action, ConfigChange, Topology, TopologyError};
use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use common::{adstream, bootstrap, unique};

const TIMEOUT: Duration = Duration::from_secs(10);

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

/// A topology of two co-partitioned topics under `prefix`, with the settings the tests change.
fn topology(prefix: &str, partitions: i32, retention_ms: i64, extra_config: &str) -> Topology {
    let yaml = format!(
        "\
defaults: {{ partitions: {partitions}, replication_factor: 1 }}
topics:
  - name: {prefix}.events
    key: campaign_id
    retention_ms: {retention_ms}
    config: {{ {extra_config} }}
  - name: {prefix}.table
    key: campaign_id
    cleanup_policy: compact
    compaction: {{ min_cleanable_dirty_ratio: 0.2, segment_ms: 60000 }}
processors:
  - name: {prefix}-job
    inputs: [{prefix}.events, {prefix}.table]
    key: campaign_id
"
    );
    Topology::parse(&yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// Dynamic (topic-level) configs of a topic.
async fn dynamic_configs(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> BTreeMap<String, String> {
    let results = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("describe");
    let resource = results
        .into_iter()
        .next()
        .expect("one result")
        .expect("described");
    resource
        .entries
        .into_iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic)
        .filter_map(|e| Some((e.name, e.value?)))
        .collect()
}

fn partition_count(admin: &AdminClient<DefaultClientContext>, topic: &str) -> usize {
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), TIMEOUT)
        .expect("metadata");
    metadata.topics()[0].partitions().len()
}

async fn delete_topics(admin: &AdminClient<DefaultClientContext>, prefix: &str) {
    let names = [format!("{prefix}.events"), format!("{prefix}.table")];
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    // Best effort: a leftover topic with a unique name harms no other test.
    let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
}

fn pairs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn apply_creates_then_changes_only_what_differs() {
    let admin = admin(&bootstrap());
    let prefix = unique("topo");
    let (events, table) = (format!("{prefix}.events"), format!("{prefix}.table"));
    let day = 86_400_000;

    // Nothing exists yet: both topics are to be created with every managed config.
    let first = topology(&prefix, 2, day, "");
    let initial = plan(&admin, &first, TIMEOUT).await.expect("plan");
    assert_eq!(
        initial.actions,
        [
            Action::CreateTopic {
                name: events.clone(),
                partitions: 2,
                replication_factor: 1,
                configs: pairs(&[("cleanup.policy", "delete"), ("retention.ms", "86400000")]),
            },
            Action::CreateTopic {
                name: table.clone(),
                partitions: 2,
                replication_factor: 1,
                configs: pairs(&[
                    ("cleanup.policy", "compact"),
                    ("min.cleanable.dirty.ratio", "0.2"),
                    ("segment.ms", "60000"),
                ]),
            },
        ]
    );
    let printed = initial.to_string();
    assert!(
        printed.contains(&format!("+ create topic {events} (2 partitions, rf 1, cleanup.policy=delete, retention.ms=86400000)")),
        "{printed}"
    );
    let report = apply(&admin, &initial, TIMEOUT).await.expect("apply");
    assert_eq!(report.created, [events.clone(), table.clone()]);

    // Applied: a second plan has nothing to do, and applying it changes nothing.
    let again = plan(&admin, &first, TIMEOUT).await.expect("second plan");
    assert_eq!(
        again.actions,
        [
            Action::UpToDate {
                name: events.clone()
            },
            Action::UpToDate {
                name: table.clone()
            }
        ]
    );
    assert!(!again.has_changes());
    assert!(!apply(&admin, &again, TIMEOUT)
        .await
        .expect("empty apply")
        .changed());

    // Longer retention and one more partition each: exactly those changes.
    let grown = topology(&prefix, 3, 2 * day, "");
    let changes = plan(&admin, &grown, TIMEOUT).await.expect("plan changes");
    assert_eq!(
        changes.actions,
        [
            Action::AddPartitions {
                name: events.clone(),
                from: 2,
                to: 3
            },
            Action::AlterConfigs {
                name: events.clone(),
                changes: vec![ConfigChange {
                    key: "retention.ms".into(),
                    old: Some("86400000".into()),
                    new: Some("172800000".into()),
                }],
                configs: pairs(&[("cleanup.policy", "delete"), ("retention.ms", "172800000")]),
            },
            Action::AddPartitions {
                name: table.clone(),
                from: 2,
                to: 3
            },
        ]
    );
    assert!(changes.to_string().contains(&format!(
        "~ alter {events}: retention.ms 86400000 -> 172800000"
    )));
    let report = apply(&admin, &changes, TIMEOUT)
        .await
        .expect("apply changes");
    assert_eq!(report.partitions_added, [events.clone(), table.clone()]);
    assert_eq!(report.altered, std::slice::from_ref(&events));

    // The cluster now says so, and the table's configs were left alone.
    assert_eq!(
        dynamic_configs(&admin, &events).await,
        pairs(&[("cleanup.policy", "delete"), ("retention.ms", "172800000")])
    );
    assert_eq!(
        dynamic_configs(&admin, &table).await,
        pairs(&[
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0.2"),
            ("segment.ms", "60000")
        ])
    );
    assert_eq!(partition_count(&admin, &events), 3);
    assert_eq!(partition_count(&admin, &table), 3);
    assert!(!plan(&admin, &grown, TIMEOUT)
        .await
        .expect("plan after changes")
        .has_changes());

    // Fewer partitions cannot be applied: the plan refuses, naming topic, counts and line.
    let shrunk = topology(&prefix, 2, 2 * day, "");
    match plan(&admin, &shrunk, TIMEOUT).await {
        Err(TopologyError::Conflicts(conflicts)) => {
            let lines: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
            assert_eq!(lines.len(), 2, "{lines:?}");
            assert_eq!(
                lines[0],
                format!(
                    "test.yaml:1:25: topic '{events}' has 3 partitions on the cluster but the topology declares 2: \
                     Kafka cannot remove partitions (declare 3, or delete and recreate the topic)"
                )
            );
            assert!(
                lines[1].contains(&format!("topic '{table}' has 3 partitions")),
                "{lines:?}"
            );
        }
        other => panic!("expected conflicts, got {other:?}"),
    }
    delete_topics(&admin, &prefix).await;
}

#[tokio::test]
async fn replication_factor_changes_are_refused() {
    let admin = admin(&bootstrap());
    let prefix = unique("topo-rf");
    let created = topology(&prefix, 1, 3_600_000, "");
    apply(
        &admin,
        &plan(&admin, &created, TIMEOUT).await.expect("plan"),
        TIMEOUT,
    )
    .await
    .expect("apply");
    let yaml = format!("defaults: {{ partitions: 1, replication_factor: 1 }}\ntopics:\n  - name: {prefix}.events\n    replication_factor: 2\n    retention_ms: 3600000\n");
    let wanted = Topology::parse(&yaml, "rf.yaml").expect("valid");
    match plan(&admin, &wanted, TIMEOUT).await {
        Err(TopologyError::Conflicts(conflicts)) => assert_eq!(
            conflicts.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [format!(
                "rf.yaml:4:25: topic '{prefix}.events' has replication factor 1 on the cluster but the topology \
                 declares 2: changing it needs a partition reassignment, which topology apply does not do"
            )]
        ),
        other => panic!("expected a conflict, got {other:?}"),
    }
    delete_topics(&admin, &prefix).await;
}

#[tokio::test]
async fn configs_dropped_from_the_file_are_reset_to_broker_defaults() {
    let admin = admin(&bootstrap());
    let prefix = unique("topo-reset");
    let events = format!("{prefix}.events");
    let with_extra = topology(&prefix, 1, 3_600_000, "max.message.bytes: 2097152");
    apply(
        &admin,
        &plan(&admin, &with_extra, TIMEOUT).await.expect("plan"),
        TIMEOUT,
    )
    .await
    .expect("apply");
    assert_eq!(
        dynamic_configs(&admin, &events)
            .await
            .get("max.message.bytes")
            .map(String::as_str),
        Some("2097152")
    );

    let without = topology(&prefix, 1, 3_600_000, "");
    let reset = plan(&admin, &without, TIMEOUT).await.expect("plan");
    let alter = reset.actions.iter().find_map(|a| match a {
        Action::AlterConfigs { name, changes, .. } if *name == events => Some(changes.clone()),
        _ => None,
    });
    assert_eq!(
        alter,
        Some(vec![ConfigChange {
            key: "max.message.bytes".into(),
            old: Some("2097152".into()),
            new: None
        }])
    );
    apply(&admin, &reset, TIMEOUT).await.expect("apply reset");
    let left: BTreeSet<String> = dynamic_configs(&admin, &events).await.into_keys().collect();
    assert_eq!(
        left,
        BTreeSet::from(["cleanup.policy".to_string(), "retention.ms".to_string()])
    );
    assert!(!plan(&admin, &without, TIMEOUT)
        .await
        .expect("plan after reset")
        .has_changes());
    delete_topics(&admin, &prefix).await;
}

#[tokio::test]
async fn refused_operations_are_reported_and_the_rest_applied() {
    let admin = admin(&bootstrap());
    let prefix = unique("topo-refused");
    let yaml = format!(
        "defaults: {{ partitions: 1, replication_factor: 1 }}\ntopics:\n  - name: {prefix}.events\n    \
         config: {{ no.such.config: 1 }}\n  - name: {prefix}.table\n"
    );
    let topology =
        Topology::parse(&yaml, "refused.yaml").expect("valid file: Kafka judges config names");
    let wanted = plan(&admin, &topology, TIMEOUT).await.expect("plan");
    match apply(&admin, &wanted, TIMEOUT).await {
        Err(TopologyError::Apply {
            attempted,
            failures,
        }) => {
            assert_eq!(attempted, 2);
            assert_eq!(failures.len(), 1, "{failures:?}");
            assert!(
                failures[0].starts_with(&format!("create topic {prefix}.events: ")),
                "{failures:?}"
            );
        }
        other => panic!("expected a refused creation, got {other:?}"),
    }
    // The valid topic was created all the same.
    assert_eq!(partition_count(&admin, &format!("{prefix}.table")), 1);
    delete_topics(&admin, &prefix).await;
}

#[tokio::test]
async fn an_unreachable_broker_is_named_within_the_timeout() {
    let admin = admin("127.0.0.1:1");
    let topology = topology("never", 1, 1000, "");
    let started = Instant::now();
    let error = plan(&admin, &topology, Duration::from_secs(2))
        .await
        .expect_err("no broker there");
    // Generous bound: this checks for a hang, not for speed.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        error.to_string(),
        "cannot reach Kafka at 127.0.0.1:1: no answer to the metadata request within 2s"
    );
}

#[test]
fn value_schemas_of_the_project_topology_exist_in_schemas_dir() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let topology =
        Topology::load(&root.join("topology/adstream.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let mut defined = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("schemas")).expect("schemas dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "avsc") {
            let text = std::fs::read_to_string(&path).expect("read schema");
            let schema = apache_avro::Schema::parse_str(&text).expect("valid schema");
            if let apache_avro::Schema::Record(record) = schema {
                defined.insert(record.name.fullname(None));
            }
        }
    }
    let declared: Vec<&str> = topology.value_schemas().map(|(_, schema)| schema).collect();
    assert_eq!(
        declared.len(),
        topology.topics().len(),
        "every topic of the project declares its value schema"
    );
    for schema in declared {
        assert!(
            defined.contains(schema),
            "{schema} is not defined in schemas/*.avsc ({defined:?})"
        );
    }
}

#[test]
fn cli_reports_validation_errors_with_positions() {
    let path = std::env::temp_dir().join(format!("{}.yaml", unique("bad-topology")));
    let yaml = "defaults: { partitions: 1, replication_factor: 1 }\ntopics:\n  - name: a.b\n    partitons: 2\nprocessors:\n  - name: p\n    inputs: [a.c]\n    key: k\n";
    std::fs::write(&path, yaml).expect("write");
    let file = path.to_str().expect("utf-8");
    let run = adstream(&["topology", "describe", "--topology", file]);
    assert!(!run.status.success());
    let stderr = run.stderr_text();
    assert!(
        stderr.contains(&format!(
            "{file}:4:5: unknown field 'partitons' in topic 'a.b' (did you mean 'partitions'?)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}:7:14: processor 'p' reads unknown topic 'a.c' (did you mean 'a.b'?)"
        )),
        "{stderr}"
    );
}

#[test]
fn cli_dry_run_prints_the_plan_and_changes_nothing() {
    let prefix = unique("topo-cli");
    let path = std::env::temp_dir().join(format!("{prefix}.yaml"));
    let yaml = format!("defaults: {{ partitions: 1, replication_factor: 1 }}\ntopics:\n  - name: {prefix}.events\n    retention_ms: 3600000\n");
    std::fs::write(&path, yaml).expect("write");
    let file = path.to_str().expect("utf-8");
    let run = adstream(&["topology", "apply", "--dry-run", "--topology", file]);
    let stdout = run.stdout_text();
    assert!(run.status.success(), "{}", run.stderr_text());
    assert!(
        stdout.contains(&format!("+ create topic {prefix}.events (1 partition, rf 1, cleanup.policy=delete, retention.ms=3600000)")),
        "{stdout}"
    );
    // Still missing: a real apply would create it.
    let run = adstream(&["topology", "apply", "--dry-run", "--topology", file]);
    assert!(
        run.stdout_text()
            .contains(&format!("+ create topic {prefix}.events")),
        "{}",
        run.stdout_text()
    );

    let run = adstream(&[
        "topology",
        "describe",
        "--topology",
        "topology/adstream.yaml",
    ]);
    assert!(run.status.success(), "{}", run.stderr_text());
    let described = run.stdout_text();
    assert!(described.contains("ads.impressions"), "{described}");
    assert!(described.contains("campaign-metrics"), "{described}");
}
