//! Comparing a topology with a cluster ([`plan`]) and making the cluster match it ([`apply`]).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_char, CStr};
use std::fmt;
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigResource, ConfigSource, NewPartitions, NewTopic,
    OwnedResourceSpecifier, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;

use crate::model::keys;
use crate::{CleanupPolicy, Location, Topology, TopologyError, ValidationError};

/// One topic config that differs between the cluster and the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// Kafka config name.
    pub key: String,
    /// Value on the cluster now (`None` when the broker does not report it).
    pub old: Option<String>,
    /// Value the topology wants; `None` resets it to the broker's default (set on the cluster, not in the file).
    pub new: Option<String>,
}

/// What to do to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the topic with these settings.
    CreateTopic {
        /// Topic name.
        name: String,
        /// Partition count.
        partitions: i32,
        /// Replication factor.
        replication_factor: i32,
        /// Every managed topic config.
        configs: BTreeMap<String, String>,
    },
    /// Raise the partition count (records keep their partitions; new keys spread over all of them).
    AddPartitions {
        /// Topic name.
        name: String,
        /// Partition count now.
        from: i32,
        /// Partition count wanted.
        to: i32,
    },
    /// Change topic configs.
    AlterConfigs {
        /// Topic name.
        name: String,
        /// What differs.
        changes: Vec<ConfigChange>,
        /// The full set of configs the topology wants. Kafka's (non-incremental) AlterConfigs replaces every
        /// dynamic config of the topic, so the whole set is sent, not only the changes.
        configs: BTreeMap<String, String>,
    },
    /// Nothing to do for this topic.
    UpToDate {
        /// Topic name.
        name: String,
    },
}

/// What [`apply`] would do to make the cluster match the topology, topic by topic in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One or more actions per topic; [`Action::UpToDate`] for topics that already match.
    pub actions: Vec<Action>,
}

impl Action {
    /// The topic the action is about.
    pub fn topic(&self) -> &str {
        match self {
            Action::CreateTopic { name, .. }
            | Action::AddPartitions { name, .. }
            | Action::AlterConfigs { name, .. }
            | Action::UpToDate { name } => name,
        }
    }
}

impl Plan {
    /// Whether applying the plan would change anything.
    pub fn has_changes(&self) -> bool {
        self.actions
            .iter()
            .any(|a| !matches!(a, Action::UpToDate { .. }))
    }
}

impl fmt::Display for Plan {
    /// One line per action (`+` create or grow, `~` alter, `=` unchanged), then a summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mut create, mut grow, mut alter, mut same) = (0, 0, 0, 0);
        for action in &self.actions {
            match action {
                Action::CreateTopic {
                    name,
                    partitions,
                    replication_factor,
                    configs,
                } => {
                    create += 1;
                    let configs: Vec<String> =
                        configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let plural = if *partitions == 1 { "" } else { "s" };
                    let mut settings =
                        format!("{partitions} partition{plural}, rf {replication_factor}");
                    if !configs.is_empty() {
                        settings.push_str(", ");
                        settings.push_str(&configs.join(", "));
                    }
                    writeln!(f, "+ create topic {name} ({settings})")?;
                }
                Action::AddPartitions { name, from, to } => {
                    grow += 1;
                    writeln!(f, "+ add partitions to {name}: {from} -> {to}")?;
                }
                Action::AlterConfigs { name, changes, .. } => {
                    alter += 1;
                    for change in changes {
                        let old = change.old.as_deref().unwrap_or("(unset)");
                        let new = change.new.as_deref().unwrap_or("(broker default)");
                        writeln!(f, "~ alter {name}: {} {old} -> {new}", change.key)?;
                    }
                }
                Action::UpToDate { name } => {
                    same += 1;
                    writeln!(f, "= {name} up to date")?;
                }
            }
        }
        writeln!(
            f,
            "plan: {create} to create, {grow} to add partitions to, {alter} to alter, {same} up to date"
        )
    }
}

/// What [`apply`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Topics created.
    pub created: Vec<String>,
    /// Topics that got more partitions.
    pub partitions_added: Vec<String>,
    /// Topics whose configs were altered.
    pub altered: Vec<String>,
}

impl ApplyReport {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        !(self.created.is_empty() && self.partitions_added.is_empty() && self.altered.is_empty())
    }
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.changed() {
            return f.write_str("nothing changed: the cluster matches the topology");
        }
        let parts: Vec<String> = [
            ("created", &self.created),
            ("added partitions to", &self.partitions_added),
            ("altered configs of", &self.altered),
        ]
        .iter()
        .filter(|(_, topics)| !topics.is_empty())
        .map(|(what, topics)| format!("{what} {} ({})", topics.len(), topics.join(", ")))
        .collect();
        write!(f, "applied: {}", parts.join("; "))
    }
}

/// Compares the topology's topics with the cluster: partitions and replication from metadata, the managed topic
/// configs from DescribeConfigs. Differences Kafka cannot apply (fewer partitions, another replication factor)
/// fail with [`TopologyError::Conflicts`], each naming the line of the file that asks for it.
pub async fn plan<C: ClientContext>(
    admin: &AdminClient<C>,
    topology: &Topology,
    timeout: Duration,
) -> Result<Plan, TopologyError> {
    let bootstrap = bootstrap_servers(admin.inner());
    // All topics: asking for the topology's topics by name could auto-create them on brokers that allow it.
    let metadata: Metadata = blocking(|| admin.inner().fetch_metadata(None, timeout))
        .map_err(|e| kafka_error(&bootstrap, "metadata", timeout, e))?;
    // name → (partitions, replication factor) of the topology's topics that exist.
    let mut existing: HashMap<&str, (i32, i32)> = HashMap::new();
    for topic in metadata.topics() {
        if topology.topic(topic.name()).is_none() {
            continue;
        }
        if let Some(error) = topic.error() {
            let source = Box::new(KafkaError::MetadataFetch(error.into()));
            return Err(TopologyError::Kafka {
                bootstrap,
                operation: format!("metadata of topic {}", topic.name()),
                source,
            });
        }
        let partitions = i32::try_from(topic.partitions().len()).unwrap_or(i32::MAX);
        let replicas = topic
            .partitions()
            .iter()
            .map(|p| p.replicas().len())
            .max()
            .unwrap_or(0);
        existing.insert(
            topic.name(),
            (partitions, i32::try_from(replicas).unwrap_or(i32::MAX)),
        );
    }

    let names: Vec<&str> = existing.keys().copied().collect();
    let mut described = HashMap::new();
    for (name, result) in describe_configs(admin, &bootstrap, &names, timeout).await? {
        match result {
            Ok(resource) => {
                described.insert(name, resource);
            }
            Err(code) => {
                return Err(TopologyError::Kafka {
                    bootstrap,
                    operation: format!("describe configs of topic {name}"),
                    source: Box::new(KafkaError::AdminOp(code)),
                })
            }
        }
    }
    let mut actions = Vec::new();
    let mut conflicts = Vec::new();
    for topic in topology.topics() {
        let Some(&(partitions, replication_factor)) = existing.get(topic.name.as_str()) else {
            actions.push(Action::CreateTopic {
                name: topic.name.clone(),
                partitions: topic.partitions,
                replication_factor: topic.replication_factor,
                configs: topic.configs(),
            });
            continue;
        };
        let conflict = |location: Location, message: String| ValidationError {
            origin: topology.origin().to_string(),
            location,
            message,
        };
        if partitions > topic.partitions {
            conflicts.push(conflict(
                topic.partitions_location,
                format!(
                    "topic '{}' has {partitions} partitions on the cluster but the topology declares {}: Kafka \
                     cannot remove partitions (declare {partitions}, or delete and recreate the topic)",
                    topic.name, topic.partitions
                ),
            ));
        }
        if replication_factor != topic.replication_factor {
            conflicts.push(conflict(
                topic.replication_factor_location,
                format!(
                    "topic '{}' has replication factor {replication_factor} on the cluster but the topology \
                     declares {}: changing it needs a partition reassignment, which topology apply does not do",
                    topic.name, topic.replication_factor
                ),
            ));
        }
        let before = actions.len();
        if partitions < topic.partitions {
            actions.push(Action::AddPartitions {
                name: topic.name.clone(),
                from: partitions,
                to: topic.partitions,
            });
        }
        let configs = topic.configs();
        let changes = config_changes(&configs, described.get(topic.name.as_str()));
        if !changes.is_empty() {
            actions.push(Action::AlterConfigs {
                name: topic.name.clone(),
                changes,
                configs,
            });
        }
        if actions.len() == before {
            actions.push(Action::UpToDate {
                name: topic.name.clone(),
            });
        }
    }
    if !conflicts.is_empty() {
        return Err(TopologyError::Conflicts(conflicts));
    }
    Ok(Plan { actions })
}

/// Executes a plan: creates topics, then adds partitions, then alters configs, then waits (up to `timeout`)
/// until the cluster reports the changes, so that a plan made right after sees them. Operations Kafka refuses are
/// collected into [`TopologyError::Apply`]; the others still happen. Applying a fresh plan of a cluster that
/// matches changes nothing.
pub async fn apply<C: ClientContext>(
    admin: &AdminClient<C>,
    plan: &Plan,
    timeout: Duration,
) -> Result<ApplyReport, TopologyError> {
    let bootstrap = bootstrap_servers(admin.inner());
    // The operation timeout makes the controller answer only once the change is committed.
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let mut report = ApplyReport::default();
    let mut failures = Vec::new();
    let mut attempted = 0;

    let new_topics: Vec<NewTopic> = plan
        .actions
        .iter()
        .filter_map(|action| match action {
            Action::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
            } => Some(configs.iter().fold(
                NewTopic::new(
                    name,
                    *partitions,
                    TopicReplication::Fixed(*replication_factor),
                ),
                |topic, (key, value)| topic.set(key, value),
            )),
            _ => None,
        })
        .collect();
    if !new_topics.is_empty() {
        attempted += new_topics.len();
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|e| kafka_error(&bootstrap, "create topics", timeout, e))?;
        for result in results {
            match result {
                Ok(name) => report.created.push(name),
                Err((name, code)) => failures.push(format!("create topic {name}: {code}")),
            }
        }
    }

    let new_partitions: Vec<NewPartitions> = plan
        .actions
        .iter()
        .filter_map(|action| match action {
            Action::AddPartitions { name, to, .. } => {
                Some(NewPartitions::new(name, usize::try_from(*to).ok()?))
            }
            _ => None,
        })
        .collect();
    if !new_partitions.is_empty() {
        attempted += new_partitions.len();
        let results = admin
            .create_partitions(&new_partitions, &options)
            .await
            .map_err(|e| kafka_error(&bootstrap, "create partitions", timeout, e))?;
        for result in results {
            match result {
                Ok(name) => report.partitions_added.push(name),
                Err((name, code)) => failures.push(format!("add partitions to {name}: {code}")),
            }
        }
    }

    let alters: Vec<AlterConfig> = plan
        .actions
        .iter()
        .filter_map(|action| match action {
            Action::AlterConfigs { name, configs, .. } => Some(configs.iter().fold(
                AlterConfig::new(ResourceSpecifier::Topic(name)),
                |alter, (key, value)| alter.set(key, value),
            )),
            _ => None,
        })
        .collect();
    if !alters.is_empty() {
        attempted += alters.len();
        let results = admin
            .alter_configs(&alters, &options)
            .await
            .map_err(|e| kafka_error(&bootstrap, "alter configs", timeout, e))?;
        for result in results {
            match result {
                Ok(resource) => report.altered.push(resource_name(resource)),
                Err((resource, code)) => failures.push(format!(
                    "alter configs of {}: {code}",
                    resource_name(resource)
                )),
            }
        }
    }

    let applied: Vec<&Action> = plan
        .actions
        .iter()
        .filter(|action| {
            let done = match action {
                Action::CreateTopic { .. } => &report.created,
                Action::AddPartitions { .. } => &report.partitions_added,
                Action::AlterConfigs { .. } => &report.altered,
                Action::UpToDate { .. } => return false,
            };
            done.iter().any(|name| name == action.topic())
        })
        .collect();
    for name in wait_until_visible(admin, &bootstrap, &applied, timeout).await? {
        failures.push(format!(
            "topic {name}: Kafka accepted the change but did not report it within {}s",
            timeout.as_secs_f32()
        ));
    }

    if !failures.is_empty() {
        return Err(TopologyError::Apply {
            attempted,
            failures,
        });
    }
    Ok(report)
}

fn resource_name(resource: OwnedResourceSpecifier) -> String {
    match resource {
        OwnedResourceSpecifier::Topic(name) | OwnedResourceSpecifier::Group(name) => name,
        OwnedResourceSpecifier::Broker(id) => format!("broker {id}"),
    }
}

/// The current configs of the named topics: per topic, its configs or Kafka's error for it (a topic created a
/// moment ago may not be known to the broker that answers yet).
async fn describe_configs<C: ClientContext>(
    admin: &AdminClient<C>,
    bootstrap: &str,
    names: &[&str],
    timeout: Duration,
) -> Result<HashMap<String, Result<ConfigResource, RDKafkaErrorCode>>, TopologyError> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let specifiers: Vec<ResourceSpecifier> = names
        .iter()
        .map(|name| ResourceSpecifier::Topic(name))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let results = admin
        .describe_configs(&specifiers, &options)
        .await
        .map_err(|e| kafka_error(bootstrap, "describe configs", timeout, e))?;
    // Results come in request order.
    Ok(names
        .iter()
        .map(|name| name.to_string())
        .zip(results)
        .collect())
}

/// Waits until the cluster reports what the `applied` actions asked for, so that a plan made right after an apply
/// sees its effect (brokers learn about changes from the controller a moment after it accepted them). Returns
/// the topics still not reported as changed when `timeout` ran out.
async fn wait_until_visible<C: ClientContext>(
    admin: &AdminClient<C>,
    bootstrap: &str,
    applied: &[&Action],
    timeout: Duration,
) -> Result<Vec<String>, TopologyError> {
    let deadline = Instant::now() + timeout;
    loop {
        let pending = not_yet_visible(admin, bootstrap, applied, timeout).await?;
        if pending.is_empty() || Instant::now() >= deadline {
            return Ok(pending);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The topics of `applied` whose partition count or configs the cluster does not report as asked yet.
async fn not_yet_visible<C: ClientContext>(
    admin: &AdminClient<C>,
    bootstrap: &str,
    applied: &[&Action],
    timeout: Duration,
) -> Result<Vec<String>, TopologyError> {
    let metadata: Metadata = blocking(|| admin.inner().fetch_metadata(None, timeout))
        .map_err(|e| kafka_error(bootstrap, "metadata", timeout, e))?;
    let partitions: HashMap<&str, usize> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name(), t.partitions().len()))
        .collect();
    let mut names: Vec<&str> = applied.iter().map(|a| a.topic()).collect();
    names.sort_unstable();
    names.dedup();
    let described = describe_configs(admin, bootstrap, &names, timeout).await?;
    let mut pending: Vec<String> = Vec::new();
    for action in applied {
        let (wanted_partitions, wanted_configs) = match action {
            Action::CreateTopic {
                partitions,
                configs,
                ..
            } => (Some(*partitions), Some(configs)),
            Action::AddPartitions { to, .. } => (Some(*to), None),
            Action::AlterConfigs { configs, .. } => (None, Some(configs)),
            Action::UpToDate { .. } => continue,
        };
        let name = action.topic();
        let partitions_visible = wanted_partitions.is_none_or(|wanted| {
            partitions
                .get(name)
                .is_some_and(|&n| i32::try_from(n) == Ok(wanted))
        });
        let configs_visible = wanted_configs.is_none_or(|wanted| {
            matches!(described.get(name), Some(Ok(current)) if config_changes(wanted, Some(current)).is_empty())
        });
        let visible = partitions_visible && configs_visible;
        if !visible && !pending.iter().any(|p| p == name) {
            pending.push(name.to_string());
        }
    }
    Ok(pending)
}

/// Managed configs whose value differs, and dynamic topic configs the topology does not set (AlterConfigs would
/// reset those, so the plan says so).
fn config_changes(
    desired: &BTreeMap<String, String>,
    current: Option<&ConfigResource>,
) -> Vec<ConfigChange> {
    let current_value = |key: &str| {
        current
            .and_then(|r| r.get(key))
            .and_then(|e| e.value.clone())
    };
    let mut changes: Vec<ConfigChange> = desired
        .iter()
        .filter_map(|(key, value)| {
            let old = current_value(key);
            if old
                .as_deref()
                .is_some_and(|old| same_value(key, old, value))
            {
                return None;
            }
            Some(ConfigChange {
                key: key.clone(),
                old,
                new: Some(value.clone()),
            })
        })
        .collect();
    if let Some(resource) = current {
        for entry in &resource.entries {
            if entry.source == ConfigSource::DynamicTopic && !desired.contains_key(&entry.name) {
                changes.push(ConfigChange {
                    key: entry.name.clone(),
                    old: entry.value.clone(),
                    new: None,
                });
            }
        }
    }
    changes
}

/// Whether a config value reported by the broker means the same as the one the topology wants: `0.10` is `0.1`,
/// `delete,compact` is `compact,delete`.
fn same_value(key: &str, current: &str, wanted: &str) -> bool {
    if current == wanted {
        return true;
    }
    if key == keys::CLEANUP_POLICY {
        return CleanupPolicy::from_config(current).is_some()
            && CleanupPolicy::from_config(current) == CleanupPolicy::from_config(wanted);
    }
    match (current.parse::<i64>(), wanted.parse::<i64>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => matches!((current.parse::<f64>(), wanted.parse::<f64>()), (Ok(a), Ok(b)) if a == b),
    }
}

/// Maps a client error to [`TopologyError::Unreachable`] when no broker answered, else to
/// [`TopologyError::Kafka`].
fn kafka_error(
    bootstrap: &str,
    operation: &'static str,
    timeout: Duration,
    error: KafkaError,
) -> TopologyError {
    let unreachable = matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::Resolve
        )
    );
    if unreachable {
        TopologyError::Unreachable {
            bootstrap: bootstrap.to_string(),
            operation,
            timeout,
        }
    } else {
        TopologyError::Kafka {
            bootstrap: bootstrap.to_string(),
            operation: operation.to_string(),
            source: Box::new(error),
        }
    }
}

/// Runs a blocking client call. On a multi-threaded runtime the worker hands its other tasks over first; on a
/// current-thread runtime there is nobody to hand them to, and the call (bounded by its timeout) just runs.
fn blocking<R>(call: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(call)
        }
        _ => call(),
    }
}

/// The client's `bootstrap.servers`, so that errors can say where Kafka was looked for.
fn bootstrap_servers<C: ClientContext>(client: &Client<C>) -> String {
    use rdkafka::bindings::{rd_kafka_conf, rd_kafka_conf_get, rd_kafka_conf_res_t};
    let name = c"bootstrap.servers";
    let mut buffer = vec![0 as c_char; 1024];
    loop {
        let mut size = buffer.len();
        // SAFETY: `rd_kafka_conf` returns the configuration of the running client, which lives as long as the
        // borrowed client. `rd_kafka_conf_get` writes at most `size` bytes (a NUL-terminated string) into
        // `buffer` and sets `size` to the length it needs, NUL included.
        let result = unsafe {
            rd_kafka_conf_get(
                rd_kafka_conf(client.native_ptr()),
                name.as_ptr(),
                buffer.as_mut_ptr(),
                &mut size,
            )
        };
        if result != rd_kafka_conf_res_t::RD_KAFKA_CONF_OK {
            return "(bootstrap.servers not set)".into();
        }
        if size <= buffer.len() {
            break;
        }
        buffer.resize(size, 0);
    }
    let bytes: Vec<u8> = buffer.iter().map(|&c| c as u8).collect();
    CStr::from_bytes_until_nul(&bytes)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "(unreadable bootstrap.servers)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, value: &str, source: ConfigSource) -> rdkafka::admin::ConfigEntry {
        rdkafka::admin::ConfigEntry {
            name: name.into(),
            value: Some(value.into()),
            is_default: source == ConfigSource::Default,
            source,
            is_read_only: false,
            is_sensitive: false,
        }
    }

    fn wanted(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn config_changes_compare_values_and_reset_what_the_file_dropped() {
        let current = ConfigResource {
            specifier: OwnedResourceSpecifier::Topic("t".into()),
            entries: vec![
                entry(
                    "cleanup.policy",
                    "delete,compact",
                    ConfigSource::DynamicTopic,
                ),
                entry(
                    "min.cleanable.dirty.ratio",
                    "0.50",
                    ConfigSource::DynamicTopic,
                ),
                entry("segment.ms", "604800000", ConfigSource::Default),
                entry("max.message.bytes", "2097152", ConfigSource::DynamicTopic),
                entry("retention.ms", "604800000", ConfigSource::Default),
            ],
        };
        let desired = wanted(&[
            ("cleanup.policy", "compact,delete"),
            ("min.cleanable.dirty.ratio", "0.5"),
            ("segment.ms", "3600000"),
            ("retention.ms", "604800000"),
        ]);
        let changes = config_changes(&desired, Some(&current));
        assert_eq!(
            changes,
            [
                ConfigChange {
                    key: "segment.ms".into(),
                    old: Some("604800000".into()),
                    new: Some("3600000".into())
                },
                ConfigChange {
                    key: "max.message.bytes".into(),
                    old: Some("2097152".into()),
                    new: None
                },
            ]
        );
    }

    #[test]
    fn unreported_configs_are_changes() {
        let desired = wanted(&[("cleanup.policy", "delete")]);
        let changes = config_changes(&desired, None);
        assert_eq!(
            changes,
            [ConfigChange {
                key: "cleanup.policy".into(),
                old: None,
                new: Some("delete".into())
            }]
        );
    }

    #[test]
    fn values_that_mean_the_same_are_the_same() {
        assert!(same_value("retention.ms", "604800000", "604800000"));
        assert!(same_value("min.cleanable.dirty.ratio", "0.10", "0.1"));
        assert!(same_value(
            "cleanup.policy",
            "delete,compact",
            "compact,delete"
        ));
        assert!(!same_value("cleanup.policy", "delete", "compact"));
        assert!(!same_value("cleanup.policy", "weird", "weird,"));
        assert!(!same_value("retention.ms", "604800000", "86400000"));
        assert!(!same_value("compression.type", "lz4", "zstd"));
    }

    #[test]
    fn plan_and_report_print_one_line_per_change() {
        let plan = Plan {
            actions: vec![
                Action::CreateTopic {
                    name: "ads.impressions".into(),
                    partitions: 4,
                    replication_factor: 1,
                    configs: wanted(&[("cleanup.policy", "delete"), ("retention.ms", "604800000")]),
                },
                Action::AddPartitions {
                    name: "ads.clicks".into(),
                    from: 4,
                    to: 8,
                },
                Action::AlterConfigs {
                    name: "ads.campaigns".into(),
                    changes: vec![
                        ConfigChange {
                            key: "min.cleanable.dirty.ratio".into(),
                            old: Some("0.5".into()),
                            new: Some("0.1".into()),
                        },
                        ConfigChange {
                            key: "max.message.bytes".into(),
                            old: Some("2097152".into()),
                            new: None,
                        },
                    ],
                    configs: wanted(&[
                        ("cleanup.policy", "compact"),
                        ("min.cleanable.dirty.ratio", "0.1"),
                    ]),
                },
                Action::UpToDate {
                    name: "ads.creatives".into(),
                },
            ],
        };
        assert!(plan.has_changes());
        assert_eq!(
            plan.to_string(),
            "\
+ create topic ads.impressions (4 partitions, rf 1, cleanup.policy=delete, retention.ms=604800000)
+ add partitions to ads.clicks: 4 -> 8
~ alter ads.campaigns: min.cleanable.dirty.ratio 0.5 -> 0.1
~ alter ads.campaigns: max.message.bytes 2097152 -> (broker default)
= ads.creatives up to date
plan: 1 to create, 1 to add partitions to, 1 to alter, 1 up to date
"
        );
        let same = Plan {
            actions: vec![Action::UpToDate { name: "a".into() }],
        };
        assert!(!same.has_changes());

        let report = ApplyReport {
            created: vec!["a".into(), "b".into()],
            partitions_added: vec![],
            altered: vec!["c".into()],
        };
        assert_eq!(
            report.to_string(),
            "applied: created 2 (a, b); altered configs of 1 (c)"
        );
        assert_eq!(
            ApplyReport::default().to_string(),
            "nothing changed: the cluster matches the topology"
        );
    }

    #[test]
    fn unreachable_means_no_answer() {
        let timeout = Duration::from_secs(3);
        let error = kafka_error(
            "h:1",
            "metadata",
            timeout,
            KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut),
        );
        assert_eq!(
            error.to_string(),
            "cannot reach Kafka at h:1: no answer to the metadata request within 3s"
        );
        let error = kafka_error(
            "h:1",
            "create topics",
            timeout,
            KafkaError::AdminOp(RDKafkaErrorCode::InvalidConfig),
        );
        assert!(matches!(error, TopologyError::Kafka { .. }), "{error:?}");
    }
}
