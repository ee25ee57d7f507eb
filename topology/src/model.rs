//! What a valid topology file describes, and how it prints.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::TopologyError;

/// Topic config names that the topology's own fields set; everything else comes from a topic's `config` map.
pub(crate) mod keys {
    /// `cleanup_policy`.
    pub const CLEANUP_POLICY: &str = "cleanup.policy";
    /// `retention_ms`.
    pub const RETENTION_MS: &str = "retention.ms";
    /// `compaction.min_cleanable_dirty_ratio`.
    pub const MIN_CLEANABLE_DIRTY_RATIO: &str = "min.cleanable.dirty.ratio";
    /// `compaction.segment_ms`.
    pub const SEGMENT_MS: &str = "segment.ms";
    /// `compaction.delete_retention_ms`.
    pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";
    /// `compaction.min_compaction_lag_ms`.
    pub const MIN_COMPACTION_LAG_MS: &str = "min.compaction.lag.ms";
    /// `compaction.max_compaction_lag_ms`.
    pub const MAX_COMPACTION_LAG_MS: &str = "max.compaction.lag.ms";
}

/// A position in the topology file (1-based line and column).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Kafka's `cleanup.policy`: what happens to old records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Old segments are deleted after the retention time (`delete`).
    Delete,
    /// Only the latest record per key is kept (`compact`).
    Compact,
    /// Compacted, and segments older than the retention time are also deleted (`compact,delete`).
    CompactDelete,
}

impl CleanupPolicy {
    /// The value of Kafka's `cleanup.policy` config.
    pub fn as_config(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }

    /// Reads a `cleanup.policy` value; the order of `compact,delete` does not matter to Kafka, nor here.
    pub fn from_config(value: &str) -> Option<CleanupPolicy> {
        let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
        parts.sort_unstable();
        match parts.as_slice() {
            ["delete"] => Some(CleanupPolicy::Delete),
            ["compact"] => Some(CleanupPolicy::Compact),
            ["compact", "delete"] => Some(CleanupPolicy::CompactDelete),
            _ => None,
        }
    }

    /// Whether the log cleaner keeps only the latest record per key (which needs a key).
    pub fn is_compacted(self) -> bool {
        !matches!(self, CleanupPolicy::Delete)
    }

    /// Whether old segments are deleted by time (so `retention_ms` means something).
    pub fn deletes(self) -> bool {
        !matches!(self, CleanupPolicy::Compact)
    }
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_config())
    }
}

/// Log-cleaner settings of a compacted topic; unset fields keep the broker's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compaction {
    /// `min.cleanable.dirty.ratio`: share of the log that must be uncompacted before the cleaner runs (0..=1).
    pub min_cleanable_dirty_ratio: Option<f64>,
    /// `segment.ms`: how often the active segment rolls; the active segment is never compacted.
    pub segment_ms: Option<i64>,
    /// `delete.retention.ms`: how long tombstones stay readable after compaction.
    pub delete_retention_ms: Option<i64>,
    /// `min.compaction.lag.ms`: minimum age of a record before it may be compacted away.
    pub min_compaction_lag_ms: Option<i64>,
    /// `max.compaction.lag.ms`: maximum age of a record before its segment must be compacted.
    pub max_compaction_lag_ms: Option<i64>,
}

/// A topic as the topology declares it (defaults applied).
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    /// Kafka topic name.
    pub name: String,
    /// What the topic holds, for people.
    pub description: Option<String>,
    /// Name of the field its records are keyed (and so partitioned) by; `None` for unkeyed topics.
    pub key: Option<String>,
    /// Full name of the Avro record its values are written with (one of `schemas/*.avsc`).
    pub value_schema: Option<String>,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i32,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `retention.ms` (`-1` keeps records forever); `None` keeps the broker's default.
    pub retention_ms: Option<i64>,
    /// Log-cleaner settings; only on compacted topics.
    pub compaction: Option<Compaction>,
    /// Any other topic configs, passed to Kafka as written.
    pub config: BTreeMap<String, String>,
    /// Its writer writes every record to every partition (`broadcast: true`), so that each task of a processor
    /// reading it as an input has all of it in its own partition: a processor may read it whatever its key (the
    /// partition count must still match the processor's other inputs).
    pub broadcast: bool,
    /// Where the topic's entry starts in the file.
    pub location: Location,
    /// Where its partition count is declared: its own `partitions` field, or `defaults.partitions`.
    pub partitions_location: Location,
    /// Where its replication factor is declared: its own field, or `defaults.replication_factor`.
    pub replication_factor_location: Location,
}

impl Topic {
    /// Every topic config the topology manages for this topic, as Kafka config name → value. Configs not listed
    /// here are left at (or reset to) the broker's defaults.
    pub fn configs(&self) -> BTreeMap<String, String> {
        let mut configs = self.config.clone();
        configs.insert(
            keys::CLEANUP_POLICY.into(),
            self.cleanup_policy.as_config().into(),
        );
        if let Some(retention) = self.retention_ms {
            configs.insert(keys::RETENTION_MS.into(), retention.to_string());
        }
        if let Some(compaction) = &self.compaction {
            let numbers = [
                (keys::SEGMENT_MS, compaction.segment_ms),
                (keys::DELETE_RETENTION_MS, compaction.delete_retention_ms),
                (
                    keys::MIN_COMPACTION_LAG_MS,
                    compaction.min_compaction_lag_ms,
                ),
                (
                    keys::MAX_COMPACTION_LAG_MS,
                    compaction.max_compaction_lag_ms,
                ),
            ];
            for (key, value) in numbers {
                if let Some(value) = value {
                    configs.insert(key.into(), value.to_string());
                }
            }
            if let Some(ratio) = compaction.min_cleanable_dirty_ratio {
                configs.insert(keys::MIN_CLEANABLE_DIRTY_RATIO.into(), ratio.to_string());
            }
        }
        configs
    }

    /// The schema registry subject of its values under TopicNameStrategy (`<topic>-value`), when it declares a
    /// value schema. Keys are plain strings and have no subject.
    pub fn value_subject(&self) -> Option<String> {
        self.value_schema
            .as_ref()
            .map(|_| format!("{}-value", self.name))
    }
}

/// A stream processor as the topology declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processor {
    /// Processor name, unique in the topology.
    pub name: String,
    /// The job it runs (one of `adstream jobs`); None: the job named like the processor.
    pub job: Option<String>,
    /// What it computes, for people.
    pub description: Option<String>,
    /// Topics it reads; all keyed by `key` and co-partitioned.
    pub inputs: Vec<String>,
    /// Topics it reads and re-keys by `key` through an internal repartition topic first (any key, any partition
    /// count).
    pub repartition: Vec<String>,
    /// Topics it writes.
    pub outputs: Vec<String>,
    /// The key its inputs are partitioned by.
    pub key: String,
    /// Where the processor's entry starts in the file.
    pub location: Location,
}

impl Processor {
    /// The name of the job the processor runs: its `job` field, else its own name.
    pub fn job_name(&self) -> &str {
        self.job.as_deref().unwrap_or(&self.name)
    }
}

/// A validated topology file.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub(crate) origin: String,
    pub(crate) topics: Vec<Topic>,
    pub(crate) processors: Vec<Processor>,
    pub(crate) internal_topics: InternalTopics,
}

/// How the topics the processors create for themselves (changelogs, repartitions, `dlq.*`, `late.*`) are
/// replicated: from the topology's `defaults`, since they are not declared one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InternalTopics {
    /// `defaults.replication_factor`; None leaves it to the broker's `default.replication.factor`.
    pub replication_factor: Option<i32>,
    /// `defaults.min_insync_replicas` (`min.insync.replicas`); None leaves the broker's default.
    pub min_insync_replicas: Option<i32>,
}

impl Topology {
    /// Reads and validates a topology file; errors name the file as given.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let source = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Topology::parse(&source, &path.display().to_string())
    }

    /// Validates topology YAML; `origin` names it in errors (usually the file's path).
    pub fn parse(source: &str, origin: &str) -> Result<Topology, TopologyError> {
        crate::parse::parse(source, origin)
    }

    /// Replication of the topics processors create for themselves.
    pub fn internal_topics(&self) -> InternalTopics {
        self.internal_topics
    }

    /// Where the topology was read from, as given to [`Topology::load`] or [`Topology::parse`].
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Topics in file order.
    pub fn topics(&self) -> &[Topic] {
        &self.topics
    }

    /// The topic of that name.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// Processors in file order.
    pub fn processors(&self) -> &[Processor] {
        &self.processors
    }

    /// The processor of that name.
    pub fn processor(&self, name: &str) -> Option<&Processor> {
        self.processors.iter().find(|p| p.name == name)
    }

    /// Topics that declare a value schema, with that schema's full Avro name, in file order.
    pub fn value_schemas(&self) -> impl Iterator<Item = (&Topic, &str)> {
        self.topics
            .iter()
            .filter_map(|t| Some((t, t.value_schema.as_deref()?)))
    }

    /// Topics and processors as aligned tables, ending with a newline.
    pub fn describe(&self) -> String {
        let topics: Vec<Vec<String>> = self
            .topics
            .iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    t.partitions.to_string(),
                    t.replication_factor.to_string(),
                    t.cleanup_policy.to_string(),
                    retention(t),
                    t.key.clone().unwrap_or_else(|| "-".into()),
                    t.value_schema.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let processors: Vec<Vec<String>> = self
            .processors
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.key.clone(),
                    if p.repartition.is_empty() {
                        format!("{} -> {}", p.inputs.join(", "), p.outputs.join(", "))
                    } else {
                        format!(
                            "{} (repartitioned by {}), {} -> {}",
                            p.repartition.join(", "),
                            p.key,
                            p.inputs.join(", "),
                            p.outputs.join(", ")
                        )
                    },
                ]
            })
            .collect();
        let mut out = format!("{} topics ({})\n", self.origin, self.topics.len());
        out.push_str(&table(
            &[
                "topic",
                "partitions",
                "rf",
                "cleanup",
                "retention",
                "key",
                "value schema",
            ],
            &topics,
        ));
        out.push_str(&format!("\nprocessors ({})\n", self.processors.len()));
        out.push_str(&table(
            &["processor", "key", "inputs -> outputs"],
            &processors,
        ));
        out
    }
}

/// How long a topic keeps records, for people: `7d`, `36h`, `forever`, `-` when time plays no part (compact only).
fn retention(topic: &Topic) -> String {
    if !topic.cleanup_policy.deletes() {
        return "-".into();
    }
    match topic.retention_ms {
        None => "default".into(),
        Some(ms) if ms < 0 => "forever".into(),
        Some(ms) => {
            let units = [
                (86_400_000, "d"),
                (3_600_000, "h"),
                (60_000, "min"),
                (1_000, "s"),
            ];
            units
                .iter()
                .find(|(size, _)| ms > 0 && ms % size == 0)
                .map(|(size, unit)| format!("{}{unit}", ms / size))
                .unwrap_or_else(|| format!("{ms}ms"))
        }
    }
}

/// Left-aligned columns two spaces apart, indented by two; the last column is not padded.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::from(" ");
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            line.push(' ');
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$} "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
