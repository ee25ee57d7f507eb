//! Reading a topology file: walks the YAML nodes (which carry their line and column) and checks every field,
//! collecting all problems rather than stopping at the first.

use std::collections::{BTreeMap, HashMap};

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, LoaderOptions, Node, Span};

use crate::model::keys;
use crate::{
    CleanupPolicy, Compaction, InternalTopics, Location, Processor, Topic, Topology, TopologyError,
    ValidationError,
};

const TOP_FIELDS: &[&str] = &["defaults", "topics", "processors"];
const DEFAULTS_FIELDS: &[&str] = &["partitions", "replication_factor", "min_insync_replicas"];
const TOPIC_FIELDS: &[&str] = &[
    "name",
    "description",
    "key",
    "value_schema",
    "partitions",
    "replication_factor",
    "cleanup_policy",
    "retention_ms",
    "compaction",
    "config",
    "broadcast",
];
const COMPACTION_FIELDS: &[&str] = &[
    "min_cleanable_dirty_ratio",
    "segment_ms",
    "delete_retention_ms",
    "min_compaction_lag_ms",
    "max_compaction_lag_ms",
];
const PROCESSOR_FIELDS: &[&str] = &[
    "name",
    "job",
    "description",
    "inputs",
    "repartition",
    "outputs",
    "key",
];

/// Kafka's longest legal topic name.
const MAX_TOPIC_NAME: usize = 249;

/// Topic configs that have a field of their own: (config, field, whether the field applies only to compacted
/// topics). Setting them through `config` as well would leave two sources of truth.
const FIELD_CONFIGS: &[(&str, &str, bool)] = &[
    (keys::CLEANUP_POLICY, "cleanup_policy", false),
    (keys::RETENTION_MS, "retention_ms", false),
    (
        keys::MIN_CLEANABLE_DIRTY_RATIO,
        "compaction.min_cleanable_dirty_ratio",
        true,
    ),
    (keys::SEGMENT_MS, "compaction.segment_ms", true),
    (
        keys::DELETE_RETENTION_MS,
        "compaction.delete_retention_ms",
        true,
    ),
    (
        keys::MIN_COMPACTION_LAG_MS,
        "compaction.min_compaction_lag_ms",
        true,
    ),
    (
        keys::MAX_COMPACTION_LAG_MS,
        "compaction.max_compaction_lag_ms",
        true,
    ),
];

/// Parses and validates topology YAML.
pub(crate) fn parse(source: &str, origin: &str) -> Result<Topology, TopologyError> {
    let mut checker = Checker {
        origin,
        errors: Vec::new(),
    };
    // Without coercion, quoted scalars stay strings: `name: ''` is an empty name, not a missing one.
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true)
        .toplevel_mapping();
    let root = match marked_yaml::parse_yaml_with_options(0, source, options) {
        Ok(root) => root,
        Err(error) => {
            checker.load_error(error);
            return Err(checker.into_error());
        }
    };
    let Some(root) = root.as_mapping() else {
        checker.error(
            location(root.span()),
            "the topology must be a mapping of defaults, topics and processors",
        );
        return Err(checker.into_error());
    };
    checker.unknown_fields(root, TOP_FIELDS, "the topology");
    let defaults = checker.defaults(root);
    let drafts = checker.topics(root, &defaults);
    let processors = checker.processors(root, &drafts);
    let internal_topics = InternalTopics {
        replication_factor: defaults.replication_factor.map(|(value, _)| value),
        min_insync_replicas: defaults.min_insync_replicas.map(|(value, _)| value),
    };
    let topics: Vec<Topic> = drafts.into_iter().filter_map(TopicDraft::finish).collect();
    if !checker.errors.is_empty() {
        return Err(checker.into_error());
    }
    Ok(Topology {
        origin: origin.to_string(),
        topics,
        processors,
        internal_topics,
    })
}

fn location(span: &Span) -> Location {
    span.start()
        .map(|m| Location {
            line: m.line(),
            column: m.column(),
        })
        .unwrap_or_default()
}

/// Where `field`'s key is written in `map` (the mapping's start if absent).
fn key_location(map: &MarkedMappingNode, field: &str) -> Location {
    map.keys()
        .find(|k| k.as_str() == field)
        .map_or(start(map), |k| location(k.span()))
}

/// Where a node starts: for a mapping, its first key.
fn node_location(node: &Node) -> Location {
    match node {
        Node::Mapping(map) => start(map),
        _ => location(node.span()),
    }
}

/// Where a mapping's first key is written. (The parser marks a block mapping where its first value begins, which
/// points into the middle of a line.)
fn start(map: &MarkedMappingNode) -> Location {
    map.keys()
        .next()
        .map_or(location(map.span()), |k| location(k.span()))
}

/// A declared value with where it was declared.
type At<T> = (T, Location);

/// `defaults:` — values topics inherit.
#[derive(Default)]
struct Defaults {
    partitions: Option<At<i32>>,
    replication_factor: Option<At<i32>>,
    min_insync_replicas: Option<At<i32>>,
}

/// A topic while the file is being checked: partitions or replication factor may be missing or invalid (then an
/// error has been recorded and the topic is not built).
struct TopicDraft {
    name: String,
    location: Location,
    description: Option<String>,
    key: Option<String>,
    value_schema: Option<String>,
    partitions: Option<At<i32>>,
    replication_factor: Option<At<i32>>,
    cleanup_policy: CleanupPolicy,
    retention_ms: Option<i64>,
    compaction: Option<Compaction>,
    config: BTreeMap<String, String>,
    broadcast: bool,
}

impl TopicDraft {
    fn finish(self) -> Option<Topic> {
        let (partitions, partitions_location) = self.partitions?;
        let (replication_factor, replication_factor_location) = self.replication_factor?;
        Some(Topic {
            name: self.name,
            description: self.description,
            key: self.key,
            value_schema: self.value_schema,
            partitions,
            replication_factor,
            cleanup_policy: self.cleanup_policy,
            retention_ms: self.retention_ms,
            compaction: self.compaction,
            config: self.config,
            broadcast: self.broadcast,
            location: self.location,
            partitions_location,
            replication_factor_location,
        })
    }
}

struct Checker<'a> {
    origin: &'a str,
    errors: Vec<ValidationError>,
}

impl Checker<'_> {
    fn error(&mut self, location: Location, message: impl Into<String>) {
        self.errors.push(ValidationError {
            origin: self.origin.to_string(),
            location,
            message: message.into(),
        });
    }

    fn into_error(mut self) -> TopologyError {
        // Checks run in passes (topics, then processors); file order reads better.
        self.errors.sort_by_key(|e| e.location);
        TopologyError::Invalid(self.errors)
    }

    fn load_error(&mut self, error: LoadError) {
        let (marker, message) = match &error {
            LoadError::TopLevelMustBeMapping(m) => (
                *m,
                "the topology must be a mapping of defaults, topics and processors".to_string(),
            ),
            LoadError::TopLevelMustBeSequence(m) => {
                (*m, "the topology must be a mapping".to_string())
            }
            LoadError::UnexpectedAnchor(m) => {
                (*m, "YAML anchors and aliases are not supported".to_string())
            }
            LoadError::MappingKeyMustBeScalar(m) => {
                (*m, "mapping keys must be plain strings".to_string())
            }
            LoadError::UnexpectedTag(m) => (*m, "YAML tags are not supported".to_string()),
            LoadError::ScanError(m, e) => (*m, format!("invalid YAML: {}", e.info())),
            LoadError::DuplicateKey(inner) => {
                let first = location(inner.prev_key.span());
                let message = format!(
                    "duplicate field '{}' (first set at line {})",
                    inner.key.as_str(),
                    first.line
                );
                match inner.key.span().start() {
                    Some(m) => (*m, message),
                    None => (
                        marked_yaml::Marker::new(0, 0, first.line, first.column),
                        message,
                    ),
                }
            }
        };
        self.error(
            Location {
                line: marker.line(),
                column: marker.column(),
            },
            message,
        );
    }

    /// Reports every key of `map` that is not one of `allowed`, suggesting the closest allowed one.
    fn unknown_fields(&mut self, map: &MarkedMappingNode, allowed: &[&str], owner: &str) {
        for key in map.keys() {
            if allowed.contains(&key.as_str()) {
                continue;
            }
            let hint = match closest(key.as_str(), allowed.iter().copied()) {
                Some(near) => format!("did you mean '{near}'?"),
                None => format!("expected one of: {}", allowed.join(", ")),
            };
            self.error(
                location(key.span()),
                format!("unknown field '{}' in {owner} ({hint})", key.as_str()),
            );
        }
    }

    /// The value of `field` as a scalar, if present; a mapping, a list or an empty value is an error.
    fn scalar<'n>(
        &mut self,
        map: &'n MarkedMappingNode,
        field: &str,
        owner: &str,
    ) -> Option<&'n MarkedScalarNode> {
        let node = map.get_node(field)?;
        match node {
            Node::Scalar(scalar) if is_null(scalar) => {
                // An empty value's position is wherever the next token starts: point at the key instead.
                self.error(
                    key_location(map, field),
                    format!("{owner}: {field} has no value"),
                );
                None
            }
            Node::Scalar(scalar) => Some(scalar),
            Node::Mapping(_) | Node::Sequence(_) => {
                let kind = if node.as_mapping().is_some() {
                    "a mapping"
                } else {
                    "a list"
                };
                self.error(
                    node_location(node),
                    format!("{owner}: {field} must be a single value, not {kind}"),
                );
                None
            }
        }
    }

    fn text(&mut self, map: &MarkedMappingNode, field: &str, owner: &str) -> Option<At<String>> {
        self.scalar(map, field, owner)
            .map(|s| (s.as_str().to_string(), location(s.span())))
    }

    /// A whole number in `min..=max`.
    fn integer(
        &mut self,
        map: &MarkedMappingNode,
        field: &str,
        owner: &str,
        min: i64,
        max: i64,
    ) -> Option<At<i64>> {
        let scalar = self.scalar(map, field, owner)?;
        let at = location(scalar.span());
        match scalar.as_str().parse::<i64>() {
            Ok(value) if (min..=max).contains(&value) => Some((value, at)),
            _ => {
                let expected = if max == i64::MAX || max == i64::from(i32::MAX) {
                    format!("a whole number of at least {min}")
                } else {
                    format!("a whole number from {min} to {max}")
                };
                self.error(
                    at,
                    format!(
                        "{owner}: {field} must be {expected}, got '{}'",
                        scalar.as_str()
                    ),
                );
                None
            }
        }
    }

    fn mapping<'n>(
        &mut self,
        map: &'n MarkedMappingNode,
        field: &str,
        owner: &str,
    ) -> Option<&'n MarkedMappingNode> {
        let node = map.get_node(field)?;
        match node.as_mapping() {
            Some(inner) => Some(inner),
            None => {
                self.error(
                    node_location(node),
                    format!("{owner}: {field} must be a mapping of names to values"),
                );
                None
            }
        }
    }

    /// A list of plain strings, each with where it is.
    fn strings(
        &mut self,
        map: &MarkedMappingNode,
        field: &str,
        owner: &str,
    ) -> Option<Vec<At<String>>> {
        let node = map.get_node(field)?;
        let Some(items) = node.as_sequence() else {
            self.error(
                node_location(node),
                format!("{owner}: {field} must be a list of topic names"),
            );
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.as_scalar() {
                Some(s) if !is_null(s) => out.push((s.as_str().to_string(), location(s.span()))),
                _ => self.error(
                    node_location(item),
                    format!("{owner}: every entry of {field} must be a topic name"),
                ),
            }
        }
        Some(out)
    }

    fn defaults(&mut self, root: &MarkedMappingNode) -> Defaults {
        let Some(map) = self.mapping(root, "defaults", "the topology") else {
            return Defaults::default();
        };
        self.unknown_fields(map, DEFAULTS_FIELDS, "defaults");
        let replication_factor = self.replication_factor(map, "defaults");
        let min_insync_replicas = self
            .integer(
                map,
                "min_insync_replicas",
                "defaults",
                1,
                i64::from(i16::MAX),
            )
            .and_then(|(value, at)| Some((i32::try_from(value).ok()?, at)));
        if let (Some((min, at)), Some((replicas, _))) = (min_insync_replicas, replication_factor) {
            if min > replicas {
                // Every acks=all write (transactions included) would then fail with NOT_ENOUGH_REPLICAS.
                self.error(
                    at,
                    format!(
                        "defaults: min_insync_replicas ({min}) is more than replication_factor ({replicas})"
                    ),
                );
            }
        }
        Defaults {
            partitions: self.partitions(map, "defaults"),
            replication_factor,
            min_insync_replicas,
        }
    }

    fn partitions(&mut self, map: &MarkedMappingNode, owner: &str) -> Option<At<i32>> {
        let (value, at) = self.integer(map, "partitions", owner, 1, i64::from(i32::MAX))?;
        Some((i32::try_from(value).ok()?, at))
    }

    fn replication_factor(&mut self, map: &MarkedMappingNode, owner: &str) -> Option<At<i32>> {
        // The protocol carries the replication factor as an int16.
        let (value, at) = self.integer(map, "replication_factor", owner, 1, i64::from(i16::MAX))?;
        Some((i32::try_from(value).ok()?, at))
    }

    fn topics(&mut self, root: &MarkedMappingNode, defaults: &Defaults) -> Vec<TopicDraft> {
        let Some(node) = root.get_node("topics") else {
            self.error(start(root), "the topology has no topics list");
            return Vec::new();
        };
        let Some(entries) = node.as_sequence() else {
            self.error(node_location(node), "topics must be a list of topics");
            return Vec::new();
        };
        let mut drafts: Vec<TopicDraft> = Vec::new();
        // Name → line of first declaration; and the same with '.' read as '_' (Kafka's metric names collide).
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut seen_metric_names: HashMap<String, (String, usize)> = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let Some(map) = entry.as_mapping() else {
                self.error(
                    node_location(entry),
                    format!("topic #{} must be a mapping with a name", index + 1),
                );
                continue;
            };
            let Some((name, name_at)) = self.text(map, "name", &format!("topic #{}", index + 1))
            else {
                if map.get_node("name").is_none() {
                    self.error(start(map), format!("topic #{} has no name", index + 1));
                }
                self.unknown_fields(map, TOPIC_FIELDS, &format!("topic #{}", index + 1));
                continue;
            };
            let owner = format!("topic '{name}'");
            self.unknown_fields(map, TOPIC_FIELDS, &owner);
            if let Some(problem) = topic_name_problem(&name) {
                self.error(name_at, format!("invalid topic name '{name}': {problem}"));
            }
            if let Some(first) = seen.get(&name) {
                self.error(
                    name_at,
                    format!("duplicate topic '{name}' (first declared at line {first})"),
                );
            } else {
                seen.insert(name.clone(), name_at.line);
                let metric_name = name.replace('.', "_");
                if let Some((other, line)) = seen_metric_names.get(&metric_name) {
                    self.error(
                        name_at,
                        format!(
                            "topic '{name}' collides with '{other}' (line {line}): Kafka does not tell '.' from '_' \
                             in metric names and refuses the second one"
                        ),
                    );
                } else {
                    seen_metric_names.insert(metric_name, (name.clone(), name_at.line));
                }
            }
            let draft = self.topic(map, &name, &owner, defaults);
            drafts.push(draft);
        }
        drafts
    }

    fn topic(
        &mut self,
        map: &MarkedMappingNode,
        name: &str,
        owner: &str,
        defaults: &Defaults,
    ) -> TopicDraft {
        let description = self.text(map, "description", owner).map(|(d, _)| d);
        let key = self.text(map, "key", owner).and_then(|(key, at)| {
            if is_identifier(&key) {
                Some(key)
            } else {
                self.error(
                    at,
                    format!("{owner}: key '{key}' must be a field name (letters, digits and '_')"),
                );
                None
            }
        });
        let value_schema = self.text(map, "value_schema", owner).and_then(|(schema, at)| {
            if schema.split('.').all(is_identifier) {
                Some(schema)
            } else {
                self.error(at, format!("{owner}: value_schema '{schema}' is not an Avro full name like io.example.Record"));
                None
            }
        });
        let partitions = match map.get_node("partitions") {
            Some(_) => self.partitions(map, owner),
            None if defaults.partitions.is_some() => defaults.partitions,
            None => {
                self.error(
                    start(map),
                    format!("{owner} has no partitions and defaults.partitions is not set"),
                );
                None
            }
        };
        let replication_factor = match map.get_node("replication_factor") {
            Some(_) => self.replication_factor(map, owner),
            None if defaults.replication_factor.is_some() => defaults.replication_factor,
            None => {
                let message = format!(
                    "{owner} has no replication_factor and defaults.replication_factor is not set"
                );
                self.error(start(map), message);
                None
            }
        };
        let policy = self.text(map, "cleanup_policy", owner);
        let cleanup_policy = match &policy {
            None => CleanupPolicy::Delete,
            Some((value, at)) => CleanupPolicy::from_config(value).unwrap_or_else(|| {
                self.error(*at, format!("{owner}: cleanup_policy must be delete, compact or compact,delete, got '{value}'"));
                CleanupPolicy::Delete
            }),
        };
        if cleanup_policy.is_compacted() && key.is_none() && map.get_node("key").is_none() {
            let at = policy.as_ref().map_or(start(map), |(_, at)| *at);
            self.error(at, format!("{owner} is compacted but declares no key: compaction keeps the latest record per key"));
        }
        let retention_ms = self.integer(map, "retention_ms", owner, -1, i64::MAX).and_then(|(ms, at)| {
            if cleanup_policy.deletes() {
                Some(ms)
            } else {
                self.error(
                    at,
                    format!("{owner}: retention_ms has no effect with cleanup_policy compact (use compact,delete)"),
                );
                None
            }
        });
        let compaction = self.compaction(map, owner, cleanup_policy);
        let config = self.config(map, owner, cleanup_policy);
        let broadcast = match self.text(map, "broadcast", owner) {
            None => false,
            Some((value, at)) => match value.as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    self.error(
                        at,
                        format!("{owner}: broadcast must be true or false, got '{value}'"),
                    );
                    false
                }
            },
        };
        TopicDraft {
            name: name.to_string(),
            location: start(map),
            description,
            key,
            value_schema,
            partitions,
            replication_factor,
            cleanup_policy,
            retention_ms,
            compaction,
            config,
            broadcast,
        }
    }

    fn compaction(
        &mut self,
        map: &MarkedMappingNode,
        owner: &str,
        policy: CleanupPolicy,
    ) -> Option<Compaction> {
        let block = self.mapping(map, "compaction", owner)?;
        if !policy.is_compacted() {
            let message = format!(
                "{owner}: compaction settings need cleanup_policy compact or compact,delete"
            );
            self.error(key_location(map, "compaction"), message);
            return None;
        }
        let owner = format!("compaction of {owner}");
        self.unknown_fields(block, COMPACTION_FIELDS, &owner);
        let min_cleanable_dirty_ratio = self
            .scalar(block, "min_cleanable_dirty_ratio", &owner)
            .and_then(|s| match s.as_str().parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => Some(ratio),
                _ => {
                    let message = format!(
                        "{owner}: min_cleanable_dirty_ratio must be from 0 to 1, got '{}'",
                        s.as_str()
                    );
                    self.error(location(s.span()), message);
                    None
                }
            });
        let mut ms = |field: &str, min: i64| {
            self.integer(block, field, &owner, min, i64::MAX)
                .map(|(v, _)| v)
        };
        Some(Compaction {
            min_cleanable_dirty_ratio,
            segment_ms: ms("segment_ms", 1),
            delete_retention_ms: ms("delete_retention_ms", 0),
            min_compaction_lag_ms: ms("min_compaction_lag_ms", 0),
            max_compaction_lag_ms: ms("max_compaction_lag_ms", 1),
        })
    }

    fn config(
        &mut self,
        map: &MarkedMappingNode,
        owner: &str,
        policy: CleanupPolicy,
    ) -> BTreeMap<String, String> {
        let mut config = BTreeMap::new();
        let Some(block) = self.mapping(map, "config", owner) else {
            return config;
        };
        for (key, value) in block.iter() {
            let name = key.as_str();
            let at = location(key.span());
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.')
            {
                self.error(
                    at,
                    format!("{owner}: '{name}' is not a Kafka topic config name"),
                );
                continue;
            }
            if let Some((_, field, _)) = FIELD_CONFIGS.iter().find(|(config, _, compacted_only)| {
                *config == name && (!compacted_only || policy.is_compacted())
            }) {
                self.error(
                    at,
                    format!("{owner}: set {name} with the {field} field, not in config"),
                );
                continue;
            }
            match value.as_scalar() {
                Some(scalar) if !is_null(scalar) => {
                    config.insert(name.to_string(), scalar.as_str().to_string());
                }
                _ => self.error(
                    node_location(value),
                    format!("{owner}: config {name} must have a single value"),
                ),
            }
        }
        config
    }

    fn processors(&mut self, root: &MarkedMappingNode, topics: &[TopicDraft]) -> Vec<Processor> {
        let Some(node) = root.get_node("processors") else {
            return Vec::new();
        };
        let Some(entries) = node.as_sequence() else {
            self.error(
                node_location(node),
                "processors must be a list of processors",
            );
            return Vec::new();
        };
        let by_name: HashMap<&str, &TopicDraft> =
            topics.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut processors = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let Some(map) = entry.as_mapping() else {
                self.error(
                    node_location(entry),
                    format!("processor #{} must be a mapping with a name", index + 1),
                );
                continue;
            };
            let Some((name, name_at)) =
                self.text(map, "name", &format!("processor #{}", index + 1))
            else {
                if map.get_node("name").is_none() {
                    self.error(start(map), format!("processor #{} has no name", index + 1));
                }
                self.unknown_fields(map, PROCESSOR_FIELDS, &format!("processor #{}", index + 1));
                continue;
            };
            let owner = format!("processor '{name}'");
            self.unknown_fields(map, PROCESSOR_FIELDS, &owner);
            if let Some(problem) = topic_name_problem(&name) {
                self.error(
                    name_at,
                    format!("invalid processor name '{name}': {problem}"),
                );
            }
            if let Some(first) = seen.get(&name) {
                self.error(
                    name_at,
                    format!("duplicate processor '{name}' (first declared at line {first})"),
                );
            } else {
                seen.insert(name.clone(), name_at.line);
            }
            let job = self.text(map, "job", &owner).map(|(j, _)| j);
            let description = self.text(map, "description", &owner).map(|(d, _)| d);
            let key = self.text(map, "key", &owner);
            if key.is_none() && map.get_node("key").is_none() {
                self.error(
                    start(map),
                    format!("{owner} has no key (the key its inputs are partitioned by)"),
                );
            }
            let inputs = match self.strings(map, "inputs", &owner) {
                Some(inputs) if inputs.is_empty() => {
                    self.error(
                        key_location(map, "inputs"),
                        format!("{owner} has no inputs"),
                    );
                    inputs
                }
                Some(inputs) => inputs,
                None if map.get_node("inputs").is_none() => {
                    self.error(start(map), format!("{owner} has no inputs"));
                    Vec::new()
                }
                // Not a list: already reported.
                None => Vec::new(),
            };
            let outputs = self.strings(map, "outputs", &owner).unwrap_or_default();
            let repartition = self.strings(map, "repartition", &owner).unwrap_or_default();
            for (topic, at) in &repartition {
                if !by_name.contains_key(topic.as_str()) {
                    let message = format!(
                        "{owner} repartitions unknown topic '{topic}'{}",
                        suggestion(topic, &by_name)
                    );
                    self.error(*at, message);
                } else if inputs.iter().any(|(input, _)| input == topic) {
                    self.error(
                        *at,
                        format!("{owner} lists '{topic}' both as an input and to repartition"),
                    );
                }
            }
            self.check_inputs(
                &owner,
                key.as_ref().map(|(k, _)| k.as_str()),
                &inputs,
                &by_name,
            );
            for (topic, at) in &outputs {
                if !by_name.contains_key(topic.as_str()) {
                    let message = format!(
                        "{owner} writes unknown topic '{topic}'{}",
                        suggestion(topic, &by_name)
                    );
                    self.error(*at, message);
                }
            }
            processors.push(Processor {
                name,
                job,
                description,
                inputs: inputs.into_iter().map(|(t, _)| t).collect(),
                repartition: repartition.into_iter().map(|(t, _)| t).collect(),
                outputs: outputs.into_iter().map(|(t, _)| t).collect(),
                key: key.map(|(k, _)| k).unwrap_or_default(),
                location: start(map),
            });
        }
        processors
    }

    /// Inputs must exist, be keyed by the processor's key and have the same partition count, so that partition
    /// `n` of every input holds the same keys.
    fn check_inputs(
        &mut self,
        owner: &str,
        key: Option<&str>,
        inputs: &[At<String>],
        topics: &HashMap<&str, &TopicDraft>,
    ) {
        let mut listed: HashMap<&str, usize> = HashMap::new();
        // The first input with a valid partition count: the one the others are compared with.
        let mut reference: Option<(&str, At<i32>)> = None;
        for (name, at) in inputs {
            if let Some(line) = listed.insert(name, at.line) {
                self.error(
                    *at,
                    format!("{owner} lists input '{name}' twice (also at line {line})"),
                );
                continue;
            }
            let Some(topic) = topics.get(name.as_str()) else {
                self.error(
                    *at,
                    format!(
                        "{owner} reads unknown topic '{name}'{}",
                        suggestion(name, topics)
                    ),
                );
                continue;
            };
            match (key, topic.key.as_deref()) {
                // Every partition holds every record: any task reads all of it, whatever the key.
                _ if topic.broadcast => {}
                (Some(wanted), Some(actual)) if wanted != actual => self.error(
                    *at,
                    format!(
                        "{owner} is keyed by '{wanted}' but its input '{name}' is keyed by '{actual}' \
                         (repartition it by '{wanted}' into another topic)"
                    ),
                ),
                (Some(wanted), None) => self.error(
                    *at,
                    format!("{owner} is keyed by '{wanted}' but its input '{name}' declares no key"),
                ),
                _ => {}
            }
            let Some((count, declared)) = topic.partitions else {
                continue;
            };
            match reference {
                None => reference = Some((name, (count, declared))),
                Some((first, (first_count, first_declared))) if first_count != count => self.error(
                    *at,
                    format!(
                        "{owner} reads co-partitioned inputs with different partition counts: '{name}' has {count} \
                         (line {}) but '{first}' has {first_count} (line {})",
                        declared.line, first_declared.line
                    ),
                ),
                Some(_) => {}
            }
        }
    }
}

/// Plain `~`, `null` and empty values are YAML's null; quoted ones are strings.
fn is_null(scalar: &MarkedScalarNode) -> bool {
    scalar.may_coerce() && matches!(scalar.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

/// Kafka's rules for topic names; processor names follow them too, so that names derived from them (internal
/// topics, consumer groups) are legal.
fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("it is empty".into())
    } else if name == "." || name == ".." {
        Some("'.' and '..' are reserved".into())
    } else if name.len() > MAX_TOPIC_NAME {
        Some(format!(
            "it is {} characters long, at most {MAX_TOPIC_NAME} are allowed",
            name.len()
        ))
    } else {
        let bad = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
        bad.map(|c| format!("'{c}' is not allowed (only letters, digits, '.', '_' and '-')"))
    }
}

/// A field name or an Avro name part: a letter or '_', then letters, digits or '_'.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `" (did you mean 'x'?)"` when a known topic is close to the unknown one, else empty.
fn suggestion(name: &str, topics: &HashMap<&str, &TopicDraft>) -> String {
    let mut names: Vec<&str> = topics.keys().copied().collect();
    // HashMap order is random; sort so that ties resolve the same way every run.
    names.sort_unstable();
    closest(name, names.into_iter())
        .map(|near| format!(" (did you mean '{near}'?)"))
        .unwrap_or_default()
}

/// The candidate within a small edit distance of `word` (typos, not different words), the closest first.
fn closest<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    let limit = (word.chars().count() / 4).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}
