//! The registry's state in memory and the rules that decide what a write does.
//!
//! The state is only ever changed by [`State::apply`], with the same records that are written to the topic, both
//! when the topic is replayed at startup and after a write is acknowledged. A restarted registry therefore rebuilds
//! exactly the state the previous one served. The `plan_*` methods decide, without changing anything, which records a
//! request writes (or which error it gets), so the HTTP layer can write them first and apply them after.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

use adstream_schemas::compat::{self, CompatibilityLevel};

use super::errors::ApiError;
use super::limits;
use super::records::{
    ConfigValue, DeleteSubjectValue, Key, ModeValue, Record, SchemaReference, SchemaValue, Value,
};

/// Confluent's registry modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Mode {
    /// Reads and writes.
    #[serde(rename = "READWRITE")]
    ReadWrite,
    /// No schema writes.
    #[serde(rename = "READONLY")]
    ReadOnly,
    /// Read-only, and when global, overriding every subject's mode.
    #[serde(rename = "READONLY_OVERRIDE")]
    ReadOnlyOverride,
    /// Registration with explicit ids and versions and without compatibility checks (migrations).
    #[serde(rename = "IMPORT")]
    Import,
}

impl Mode {
    /// The name Confluent uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ReadWrite => "READWRITE",
            Mode::ReadOnly => "READONLY",
            Mode::ReadOnlyOverride => "READONLY_OVERRIDE",
            Mode::Import => "IMPORT",
        }
    }

    fn is_read_only(self) -> bool {
        matches!(self, Mode::ReadOnly | Mode::ReadOnlyOverride)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = ApiError;

    /// Case-insensitive, as Confluent upper-cases what it is given.
    fn from_str(s: &str) -> Result<Mode, ApiError> {
        match s.to_ascii_uppercase().as_str() {
            "READWRITE" => Ok(Mode::ReadWrite),
            "READONLY" => Ok(Mode::ReadOnly),
            "READONLY_OVERRIDE" => Ok(Mode::ReadOnlyOverride),
            "IMPORT" => Ok(Mode::Import),
            _ => Err(ApiError::invalid_mode(s)),
        }
    }
}

/// Parses a compatibility level as Confluent does: case-insensitively.
pub(crate) fn parse_level(s: &str) -> Result<CompatibilityLevel, ApiError> {
    s.to_ascii_uppercase()
        .parse()
        .map_err(|_| ApiError::invalid_compatibility_level(s))
}

/// Which versions (or subjects) a listing shows, as Confluent's `deleted` / `deletedOnly` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filter {
    /// Live only.
    Live,
    /// Live and soft-deleted.
    IncludeDeleted,
    /// Soft-deleted only.
    DeletedOnly,
}

impl Filter {
    fn admits(self, deleted: bool) -> bool {
        match self {
            Filter::Live => !deleted,
            Filter::IncludeDeleted => true,
            Filter::DeletedOnly => deleted,
        }
    }
}

/// A version in a request path: a number in 1..=2^31-1, or `latest` (also spelled `-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VersionSpec {
    /// The highest version the lookup admits.
    Latest,
    /// A given version.
    Number(i32),
}

impl FromStr for VersionSpec {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<VersionSpec, ApiError> {
        if s.eq_ignore_ascii_case("latest") || s == "-1" {
            return Ok(VersionSpec::Latest);
        }
        match s.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(VersionSpec::Number(n)),
            _ => Err(ApiError::invalid_version(s)),
        }
    }
}

/// A schema as the registry stores it, shared by every subject version with its id.
#[derive(Debug, Clone)]
pub(crate) struct StoredSchema {
    /// The text served to clients.
    pub text: String,
    /// `None` for Avro; other types only come from topics written by other registries.
    pub schema_type: Option<String>,
    /// The versions whose named types the schema uses.
    pub references: Vec<SchemaReference>,
    /// What two schemas must share to be "the same schema" (same id).
    identity: String,
    /// The parsed schema, or why it could not be parsed.
    parsed: Parsed,
}

/// A stored schema's parsed form.
#[derive(Debug, Clone)]
enum Parsed {
    /// Parsed, and self-contained.
    Ready(Schema),
    /// The schema uses referenced types, so it is parsed together with them when it is used
    /// ([`State::self_contained`]): in a compacted topic a referenced version may come after its referrer (a soft
    /// delete rewrites it), so the references cannot always be resolved when the referrer is applied.
    WithReferences,
    /// Why the schema cannot be used for checks.
    Unusable(String),
}

impl StoredSchema {
    fn from_topic(
        text: &str,
        schema_type: Option<String>,
        references: Vec<SchemaReference>,
    ) -> StoredSchema {
        let avro = schema_type
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case("AVRO"));
        if !avro {
            let kind = schema_type.clone().unwrap_or_default();
            return StoredSchema {
                text: text.to_owned(),
                identity: format!("{kind}:{}", identity_of(text, &references)),
                parsed: Parsed::Unusable(format!(
                    "{kind} schemas are not supported by this registry"
                )),
                schema_type,
                references,
            };
        }
        if !references.is_empty() {
            // The registry stores the normalized text, so it is its own identity; a text written by another
            // registry may differ from what a client submits in whitespace only and then gets a new id.
            return StoredSchema {
                text: text.to_owned(),
                schema_type: None,
                identity: identity_of(text, &references),
                parsed: Parsed::WithReferences,
                references,
            };
        }
        match Candidate::parse(text) {
            Ok(candidate) => candidate.into_stored(text.to_owned()),
            Err(error) => StoredSchema {
                text: text.to_owned(),
                identity: text.to_owned(),
                parsed: Parsed::Unusable(error.message),
                schema_type: None,
                references,
            },
        }
    }
}

/// The identity of a schema: its normalized text, and its references when it has any, since the same text
/// resolved against other versions is another schema (Confluent gives it another id).
fn identity_of(normalized: &str, references: &[SchemaReference]) -> String {
    if references.is_empty() {
        return normalized.to_owned();
    }
    let references: Vec<String> = references
        .iter()
        .map(|r| format!("{}={}/{}", r.name, r.subject, r.version))
        .collect();
    format!("{normalized}\nreferences: {}", references.join(", "))
}

/// An Avro schema submitted by a client, parsed and normalized.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// The schema re-serialized from its parsed form: compact, attribute order fixed, docs, defaults, aliases and
    /// custom attributes kept; referenced types stay references by name. Whitespace and key order of the submitted
    /// text do not change it, so it is the text the registry stores.
    pub normalized: String,
    /// The references, as resolved (a `-1` version replaced by the version it named).
    pub references: Vec<SchemaReference>,
    /// The schema with every referenced type inlined: what compatibility checks compare.
    pub parsed: Schema,
    /// See [`identity_of`].
    identity: String,
}

impl Candidate {
    /// Parses an Avro schema without references; the error is 42201 with the parser's message.
    pub fn parse(text: &str) -> Result<Candidate, ApiError> {
        Candidate::parse_with_references(text, Vec::new(), &[])
    }

    /// Parses an Avro schema that uses the named types of `referenced` (the texts of the schemas its `references`
    /// resolve to, transitively). Errors are 42201: unparsable, or a referenced type missing.
    pub fn parse_with_references(
        text: &str,
        references: Vec<SchemaReference>,
        referenced: &[String],
    ) -> Result<Candidate, ApiError> {
        let invalid =
            |e: apache_avro::Error| ApiError::invalid_schema(format!("Invalid schema: {e}"));
        if text.trim().is_empty() {
            return Err(ApiError::invalid_schema("Invalid schema: empty schema"));
        }
        let (parsed, self_contained) = if referenced.is_empty() {
            let parsed = Schema::parse_str(text).map_err(invalid)?;
            (parsed.clone(), parsed)
        } else {
            let (parsed, definitions) =
                Schema::parse_str_with_list(text, referenced).map_err(invalid)?;
            let mut self_contained = parsed.clone();
            self_contained
                .denormalize(&named_types(&definitions))
                .map_err(invalid)?;
            (parsed, self_contained)
        };
        let normalized = serde_json::to_string(&parsed).map_err(|e| {
            ApiError::invalid_schema(format!("Invalid schema: cannot serialize it back: {e}"))
        })?;
        Ok(Candidate {
            identity: identity_of(&normalized, &references),
            normalized,
            references,
            parsed: self_contained,
        })
    }

    /// 42201 when the schema's unions nest more widely than [`limits::MAX_UNION_FANOUT`]. Applied to what clients
    /// submit, not to what the topic holds: a schema another registry accepted stays usable.
    pub fn ensure_union_fanout_within_limit(&self) -> Result<(), ApiError> {
        let fanout = limits::union_fanout(&self.parsed);
        if fanout > limits::MAX_UNION_FANOUT {
            return Err(ApiError::invalid_schema(format!(
                "Invalid schema: its unions nest too widely: the product of union widths along one path is \
                 {fanout}, and this registry accepts at most {} (union width x nesting depth) so that \
                 compatibility checks stay fast",
                limits::MAX_UNION_FANOUT
            )));
        }
        Ok(())
    }

    fn into_stored(self, text: String) -> StoredSchema {
        StoredSchema {
            text,
            schema_type: None,
            parsed: if self.references.is_empty() {
                Parsed::Ready(self.parsed)
            } else {
                Parsed::WithReferences
            },
            identity: self.identity,
            references: self.references,
        }
    }
}

/// Every named type defined in `schemas`, nested ones included: a schema may use a type that a referenced schema
/// defines inside one of its fields, and inlining looks types up in this flat list.
fn named_types(schemas: &[Schema]) -> Vec<Schema> {
    fn collect(schema: &Schema, out: &mut Vec<Schema>) {
        if schema.name().is_some() && !matches!(schema, Schema::Ref { .. }) {
            out.push(schema.clone());
        }
        match schema {
            Schema::Record(record) => record.fields.iter().for_each(|f| collect(&f.schema, out)),
            Schema::Array(array) => collect(&array.items, out),
            Schema::Map(map) => collect(&map.types, out),
            Schema::Union(union) => union.variants().iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    schemas.iter().for_each(|s| collect(s, &mut out));
    out
}

/// One version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VersionEntry {
    /// The schema id.
    pub id: u32,
    /// Soft-deleted.
    pub deleted: bool,
}

/// What a registration does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RegisterPlan {
    /// The schema is already a live version of the subject: nothing to write.
    Existing { id: u32, version: i32 },
    /// The compatibility check must run first, without the lock; plan again with its verdict.
    Check(CompatCheck),
    /// Write `record`, a new version.
    New {
        id: u32,
        version: i32,
        record: Record,
    },
}

/// What a compatibility verdict depends on: the level, and which schema each compared version has. A verdict is
/// still valid for as long as the state gives the same basis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckBasis {
    level: CompatibilityLevel,
    /// (version, schema id) of each version compared against, oldest first.
    versions: Vec<(i32, u32)>,
}

/// A compatibility check taken out of the state ([`State::compat_check`]), to be run without holding any lock:
/// a check may take long (wide unions), and readers and writers must not wait for it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CompatCheck {
    basis: CheckBasis,
    /// The versions to compare against, self-contained, or why one of them cannot be used.
    against: Result<Vec<(i32, Schema)>, String>,
}

impl CompatCheck {
    /// Nothing to compare against: the answer is known without running anything.
    fn is_trivial(&self) -> bool {
        self.basis.versions.is_empty()
    }

    /// Runs the check of `candidate` (self-contained) against the snapshot.
    pub fn run(self, candidate: &Schema) -> Verdict {
        let reasons = match &self.against {
            // With the registry's version numbers, so messages name the versions a user can fetch.
            Ok(existing) => {
                let existing: Vec<(i32, &Schema)> = existing.iter().map(|(v, s)| (*v, s)).collect();
                compat::check_versions(self.basis.level, candidate, &existing)
            }
            Err(why) => vec![why.clone()],
        };
        Verdict {
            basis: self.basis,
            reasons,
        }
    }
}

/// The outcome of a [`CompatCheck`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    basis: CheckBasis,
    /// Why the schema is incompatible; empty when it is compatible.
    pub reasons: Vec<String>,
}

fn too_large_to_store(size: usize) -> ApiError {
    ApiError::invalid_schema(format!(
        "Invalid schema: the schema is too large to store: it needs at least {size} bytes in its registry record, \
         and this registry stores at most {} bytes per schema version",
        limits::MAX_RECORD_BYTES
    ))
}

fn reference_not_found(reference: &SchemaReference) -> ApiError {
    ApiError::invalid_schema(format!(
        "Invalid schema: reference '{}' to subject '{}' version {} not found",
        reference.name, reference.subject, reference.version
    ))
}

/// Explicit id and version of a registration, honoured in IMPORT mode.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Explicit {
    /// Requested id.
    pub id: Option<u32>,
    /// Requested version.
    pub version: Option<i32>,
}

/// The whole registry state.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Subject → version → entry, soft-deleted versions included; hard-deleted versions are gone.
    subjects: BTreeMap<String, BTreeMap<i32, VersionEntry>>,
    /// Id → schema, for every id some version (live or soft-deleted) uses.
    schemas: BTreeMap<u32, StoredSchema>,
    /// Schema identity → id.
    ids_by_identity: HashMap<String, u32>,
    /// The highest id ever seen; new ids are above it.
    max_id: u32,
    global_level: Option<CompatibilityLevel>,
    subject_levels: BTreeMap<String, CompatibilityLevel>,
    global_mode: Option<Mode>,
    subject_modes: BTreeMap<String, Mode>,
}

impl State {
    /// Applies one record of the topic (a replayed one, or one this registry just wrote).
    pub fn apply(&mut self, record: &Record) {
        match (&record.key, &record.value) {
            (Key::Schema { subject, version }, Some(Value::Schema(value))) => {
                self.put_version(subject, *version, value);
            }
            (Key::Schema { subject, version }, None) => self.remove_version(subject, *version),
            (Key::Config { subject }, value) => {
                let level = match value {
                    Some(Value::Config(ConfigValue {
                        compatibility_level,
                    })) => *compatibility_level,
                    _ => None,
                };
                match (subject, level) {
                    (None, level) => self.global_level = level,
                    (Some(s), Some(level)) => {
                        self.subject_levels.insert(s.clone(), level);
                    }
                    (Some(s), None) => {
                        self.subject_levels.remove(s);
                    }
                }
            }
            (Key::Mode { subject }, value) => {
                let mode = match value {
                    Some(Value::Mode(ModeValue { mode })) => Some(*mode),
                    _ => None,
                };
                match (subject, mode) {
                    (None, mode) => self.global_mode = mode,
                    (Some(s), Some(mode)) => {
                        self.subject_modes.insert(s.clone(), mode);
                    }
                    (Some(s), None) => {
                        self.subject_modes.remove(s);
                    }
                }
            }
            (Key::DeleteSubject { subject }, Some(Value::DeleteSubject(value))) => {
                if let Some(versions) = self.subjects.get_mut(subject) {
                    for (_, entry) in versions.range_mut(..=value.version) {
                        entry.deleted = true;
                    }
                }
            }
            // A value that does not match its key type was rejected when parsed; tombstones of DELETE_SUBJECT and
            // ignored key types change nothing.
            _ => {}
        }
    }

    fn put_version(&mut self, subject: &str, version: i32, value: &SchemaValue) {
        if !(1..=limits::MAX_SCHEMA_ID).contains(&value.id) {
            // Written by a registry without the bound: Java clients would read the id as negative, and counting
            // ids on from it would exhaust the id space, so the version is left out of what is served.
            tracing::warn!(
                subject,
                version,
                id = value.id,
                "ignored a registry record whose schema id is outside 1..=2147483647"
            );
            return;
        }
        let previous = self.subjects.entry(subject.to_owned()).or_default().insert(
            version,
            VersionEntry {
                id: value.id,
                deleted: value.deleted,
            },
        );
        self.max_id = self.max_id.max(value.id);
        if !self.schemas.contains_key(&value.id) {
            let stored = StoredSchema::from_topic(
                &value.schema,
                value.schema_type.clone(),
                value.references.clone(),
            );
            self.ids_by_identity
                .entry(stored.identity.clone())
                .or_insert(value.id);
            self.schemas.insert(value.id, stored);
        }
        if let Some(previous) = previous.filter(|p| p.id != value.id) {
            self.forget_id_if_unused(previous.id);
        }
    }

    fn remove_version(&mut self, subject: &str, version: i32) {
        let Some(versions) = self.subjects.get_mut(subject) else {
            return;
        };
        let Some(removed) = versions.remove(&version) else {
            return;
        };
        if versions.is_empty() {
            self.subjects.remove(subject);
        }
        self.forget_id_if_unused(removed.id);
    }

    /// Drops an id's schema once no version uses it, so `/schemas/ids/{id}` answers 40403 after hard deletes.
    fn forget_id_if_unused(&mut self, id: u32) {
        let used = self
            .subjects
            .values()
            .any(|versions| versions.values().any(|e| e.id == id));
        if !used {
            if let Some(stored) = self.schemas.remove(&id) {
                if self.ids_by_identity.get(&stored.identity) == Some(&id) {
                    self.ids_by_identity.remove(&stored.identity);
                }
            }
        }
    }

    // ----- reads --------------------------------------------------------------------------------------------------

    /// Subjects with at least one version the filter admits (for `DeletedOnly`: subjects all of whose versions are
    /// soft-deleted), sorted, as Confluent lists them.
    pub fn subjects(&self, prefix: &str, filter: Filter) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .filter(|(_, versions)| {
                let all_deleted = versions.values().all(|e| e.deleted);
                match filter {
                    Filter::Live => !all_deleted,
                    Filter::IncludeDeleted => true,
                    Filter::DeletedOnly => all_deleted,
                }
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The versions of a subject the filter admits; 40401 when there are none.
    pub fn versions(&self, subject: &str, filter: Filter) -> Result<Vec<i32>, ApiError> {
        let versions: Vec<i32> = self
            .subjects
            .get(subject)
            .map(|v| {
                v.iter()
                    .filter(|(_, e)| filter.admits(e.deleted))
                    .map(|(n, _)| *n)
                    .collect()
            })
            .unwrap_or_default();
        if versions.is_empty() {
            return Err(ApiError::subject_not_found(subject));
        }
        Ok(versions)
    }

    /// Resolves a version of a subject; 40401 when the subject has no admitted version, 40402 when the version is
    /// missing (or soft-deleted and `include_deleted` is false).
    pub fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        include_deleted: bool,
    ) -> Result<(i32, VersionEntry), ApiError> {
        let filter = if include_deleted {
            Filter::IncludeDeleted
        } else {
            Filter::Live
        };
        let versions = self
            .subjects
            .get(subject)
            .filter(|v| v.values().any(|e| filter.admits(e.deleted)));
        let Some(versions) = versions else {
            return Err(ApiError::subject_not_found(subject));
        };
        let found = match spec {
            VersionSpec::Latest => versions
                .iter()
                .rev()
                .find(|(_, e)| filter.admits(e.deleted)),
            VersionSpec::Number(n) => versions
                .get_key_value(&n)
                .filter(|(_, e)| filter.admits(e.deleted)),
        };
        match (found, spec) {
            (Some((n, entry)), _) => Ok((*n, *entry)),
            (None, VersionSpec::Number(n)) => Err(ApiError::version_not_found(subject, n)),
            (None, VersionSpec::Latest) => Err(ApiError::subject_not_found(subject)),
        }
    }

    /// The schema of an id.
    pub fn schema(&self, id: u32) -> Option<&StoredSchema> {
        self.schemas.get(&id)
    }

    /// (subject, version) pairs that use an id, sorted; soft-deleted ones only with `include_deleted`.
    pub fn usages(&self, id: u32, include_deleted: bool) -> Vec<(String, i32)> {
        let mut out = Vec::new();
        for (subject, versions) in &self.subjects {
            for (version, entry) in versions {
                if entry.id == id && (include_deleted || !entry.deleted) {
                    out.push((subject.clone(), *version));
                }
            }
        }
        out
    }

    /// Every (subject, version, entry) whose subject starts with `prefix`, for `GET /schemas`.
    pub fn all_versions(
        &self,
        prefix: &str,
        include_deleted: bool,
        latest_only: bool,
    ) -> Vec<(String, i32, VersionEntry)> {
        let mut out = Vec::new();
        for (subject, versions) in self.subjects.range(prefix.to_owned()..) {
            if !subject.starts_with(prefix) {
                break;
            }
            let mut admitted = versions
                .iter()
                .filter(|(_, e)| include_deleted || !e.deleted);
            if latest_only {
                if let Some((v, e)) = admitted.next_back() {
                    out.push((subject.clone(), *v, *e));
                }
            } else {
                out.extend(admitted.map(|(v, e)| (subject.clone(), *v, *e)));
            }
        }
        out
    }

    /// Finds `candidate` among a subject's versions: 40401 without admitted versions, 40403 when no version has it.
    pub fn lookup(
        &self,
        subject: &str,
        candidate: &Candidate,
        include_deleted: bool,
    ) -> Result<(i32, u32), ApiError> {
        let filter = if include_deleted {
            Filter::IncludeDeleted
        } else {
            Filter::Live
        };
        let versions = self.versions(subject, filter)?;
        let entries = &self.subjects[subject];
        // Newest first, so a schema registered again after a soft delete resolves to its live version.
        for version in versions.iter().rev() {
            let entry = entries[version];
            if self
                .schemas
                .get(&entry.id)
                .is_some_and(|s| s.identity == candidate.identity)
            {
                return Ok((*version, entry.id));
            }
        }
        Err(ApiError::schema_not_found(subject))
    }

    /// The subject's own level, if set.
    pub fn subject_level(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.subject_levels.get(subject).copied()
    }

    /// The global level, if set.
    pub fn global_level(&self) -> Option<CompatibilityLevel> {
        self.global_level
    }

    /// Subject level, else global level, else the default (BACKWARD).
    pub fn effective_level(&self, subject: &str) -> CompatibilityLevel {
        self.subject_level(subject)
            .or(self.global_level)
            .unwrap_or_default()
    }

    /// The subject's own mode, if set.
    pub fn subject_mode(&self, subject: &str) -> Option<Mode> {
        self.subject_modes.get(subject).copied()
    }

    /// The global mode, if set.
    pub fn global_mode(&self) -> Option<Mode> {
        self.global_mode
    }

    /// The mode that applies to a subject: a global READONLY_OVERRIDE wins, then the subject's mode, then the
    /// global mode, then READWRITE.
    pub fn effective_mode(&self, subject: &str) -> Mode {
        if self.global_mode == Some(Mode::ReadOnlyOverride) {
            return Mode::ReadOnlyOverride;
        }
        self.subject_mode(subject)
            .or(self.global_mode)
            .unwrap_or(Mode::ReadWrite)
    }

    /// 42205 when the subject does not take schema writes.
    pub fn ensure_writable(&self, subject: &str) -> Result<Mode, ApiError> {
        let mode = self.effective_mode(subject);
        if mode.is_read_only() {
            return Err(ApiError::not_permitted(format!(
                "Subject '{subject}' is in read-only mode ({mode})"
            )));
        }
        Ok(mode)
    }

    /// The schema of an id with every referenced type inlined, as compatibility checks need it.
    pub fn self_contained(&self, id: u32) -> Result<Schema, NotSelfContained> {
        let stored = self
            .schemas
            .get(&id)
            .ok_or(NotSelfContained::UnknownId(id))?;
        match &stored.parsed {
            Parsed::Ready(schema) => Ok(schema.clone()),
            Parsed::Unusable(why) => Err(NotSelfContained::Unusable(why.clone())),
            Parsed::WithReferences => {
                let (references, referenced) = self
                    .resolve_references(&stored.references)
                    .map_err(NotSelfContained::Unresolved)?;
                Candidate::parse_with_references(&stored.text, references, &referenced)
                    .map(|candidate| candidate.parsed)
                    .map_err(NotSelfContained::Unresolved)
            }
        }
    }

    /// Resolves a schema's references: each `(subject, version)` (`-1` for the latest) must exist, soft-deleted
    /// or not, as in Confluent. Returns the references with their versions made concrete, and the texts of every
    /// schema they lead to, transitively (a referenced schema may itself have references), each once. An unknown
    /// reference is 42201, the error Confluent gives for a schema it cannot resolve.
    pub fn resolve_references(
        &self,
        references: &[SchemaReference],
    ) -> Result<(Vec<SchemaReference>, Vec<String>), ApiError> {
        let mut concrete = Vec::with_capacity(references.len());
        for reference in references {
            let (version, _) = self.referenced_version(reference)?;
            concrete.push(SchemaReference {
                version,
                ..reference.clone()
            });
        }
        let mut texts = Vec::new();
        let mut seen_ids = BTreeSet::new();
        let mut pending: Vec<SchemaReference> = concrete.clone();
        while let Some(reference) = pending.pop() {
            let (_, entry) = self.referenced_version(&reference)?;
            if !seen_ids.insert(entry.id) {
                continue;
            }
            let Some(stored) = self.schemas.get(&entry.id) else {
                return Err(reference_not_found(&reference));
            };
            texts.push(stored.text.clone());
            pending.extend(stored.references.iter().cloned());
        }
        Ok((concrete, texts))
    }

    fn referenced_version(
        &self,
        reference: &SchemaReference,
    ) -> Result<(i32, VersionEntry), ApiError> {
        let spec = match reference.version {
            -1 => VersionSpec::Latest,
            n if n >= 1 => VersionSpec::Number(n),
            _ => return Err(reference_not_found(reference)),
        };
        self.version(&reference.subject, spec, true)
            .map_err(|_| reference_not_found(reference))
    }

    /// Ids of the schemas (used by live or soft-deleted versions) that reference a subject's version, sorted.
    pub fn referenced_by(&self, subject: &str, version: i32) -> Vec<u32> {
        self.schemas
            .iter()
            .filter(|(_, stored)| {
                stored
                    .references
                    .iter()
                    .any(|r| r.subject == subject && r.version == version)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Ids of the schemas that reference any version using `id`, sorted and deduplicated.
    pub fn referenced_by_id(&self, id: u32) -> Vec<u32> {
        let referrers: BTreeSet<u32> = self
            .usages(id, true)
            .iter()
            .flat_map(|(subject, version)| self.referenced_by(subject, *version))
            .collect();
        referrers.into_iter().collect()
    }

    /// Referrers of a version that would be left dangling by hard-deleting it: references from versions of
    /// `subject` itself do not count when the whole subject goes.
    fn blocking_referrers(&self, subject: &str, version: i32, whole_subject: bool) -> Vec<u32> {
        self.referenced_by(subject, version)
            .into_iter()
            .filter(|referrer| {
                !whole_subject
                    || self
                        .usages(*referrer, true)
                        .iter()
                        .any(|(user, _)| user != subject)
            })
            .collect()
    }

    /// What checking a schema against the subject requires, taken from the state so that the check itself can run
    /// without any lock: against `only` that version, or against the live versions the subject's level requires
    /// (the latest one, or all of them for transitive levels).
    pub fn compat_check(&self, subject: &str, only: Option<i32>) -> CompatCheck {
        let level = self.effective_level(subject);
        let live: Vec<(i32, u32)> = self
            .subjects
            .get(subject)
            .map(|versions| {
                versions
                    .iter()
                    .filter(|(v, e)| !e.deleted && only.is_none_or(|o| o == **v))
                    .map(|(v, e)| (*v, e.id))
                    .collect()
            })
            .unwrap_or_default();
        let versions = if level == CompatibilityLevel::None {
            Vec::new()
        } else if level.is_transitive() || only.is_some() {
            live
        } else {
            live.last().copied().into_iter().collect()
        };
        let against = versions
            .iter()
            .map(|(version, id)| {
                self.self_contained(*id)
                    .map(|schema| (*version, schema))
                    .map_err(|why| {
                        format!(
                            "version {version} of subject '{subject}' (id {id}) cannot be checked: {why}"
                        )
                    })
            })
            .collect();
        CompatCheck {
            basis: CheckBasis { level, versions },
            against,
        }
    }

    // ----- write plans --------------------------------------------------------------------------------------------

    /// Decides what registering `candidate` under `subject` writes. Errors: 42205 (mode, id out of range), 409
    /// (incompatible), 42201 (record too large to store).
    ///
    /// When a compatibility check is needed and `verdict` is not one for the current state, the plan is
    /// [`RegisterPlan::Check`]: run it without the lock and plan again with its verdict.
    pub fn plan_register(
        &self,
        subject: &str,
        candidate: &Candidate,
        explicit: Explicit,
        verdict: Option<&Verdict>,
    ) -> Result<RegisterPlan, ApiError> {
        let mode = self.ensure_writable(subject)?;
        if mode != Mode::Import && explicit.id.is_some() {
            return Err(ApiError::not_permitted(format!(
                "a schema id can only be given in IMPORT mode; subject '{subject}' is in {mode} mode"
            )));
        }
        if let Some(id) = explicit
            .id
            .filter(|id| !(1..=limits::MAX_SCHEMA_ID).contains(id))
        {
            return Err(ApiError::not_permitted(format!(
                "schema id {id} is out of range: ids are 1 to {}",
                limits::MAX_SCHEMA_ID
            )));
        }
        // An identical schema returns what it already has, before any compatibility check.
        if let Ok((version, id)) = self.lookup(subject, candidate, false) {
            if explicit.id.is_none_or(|e| e == id) && explicit.version.is_none_or(|e| e == version)
            {
                return Ok(RegisterPlan::Existing { id, version });
            }
        }
        // A schema whose text alone is above the record limit is refused before it is checked.
        if candidate.normalized.len() > limits::MAX_RECORD_BYTES {
            return Err(too_large_to_store(candidate.normalized.len()));
        }
        let next_version = self
            .subjects
            .get(subject)
            .and_then(|v| v.keys().next_back())
            .map_or(1, |v| v + 1);
        let version = match (explicit.version, mode) {
            (None, _) => next_version,
            (Some(v), Mode::Import) => {
                if self.subjects.get(subject).is_some_and(|versions| versions.contains_key(&v)) {
                    return Err(ApiError::not_permitted(format!(
                        "version {v} of subject '{subject}' already exists with another schema; overwriting is not \
                         permitted"
                    )));
                }
                v
            }
            (Some(v), _) if v == next_version => v,
            (Some(v), _) => {
                return Err(ApiError::not_permitted(format!(
                    "version {v} cannot be registered for subject '{subject}' in {mode} mode: the next version is \
                     {next_version}"
                )))
            }
        };
        if mode != Mode::Import {
            let check = self.compat_check(subject, None);
            let reasons = match verdict {
                _ if check.is_trivial() => Vec::new(),
                Some(verdict) if verdict.basis == check.basis => verdict.reasons.clone(),
                _ => return Ok(RegisterPlan::Check(check)),
            };
            if !reasons.is_empty() {
                return Err(ApiError::incompatible(format!(
                    "Schema being registered is incompatible with an earlier schema for subject \"{subject}\" under \
                     compatibility level {}, details: [{}]",
                    self.effective_level(subject),
                    reasons.join("; ")
                )));
            }
        }
        let known = self.ids_by_identity.get(&candidate.identity).copied();
        let id = match (explicit.id, known) {
            (Some(id), _) => match self.schemas.get(&id) {
                Some(stored) if stored.identity != candidate.identity => {
                    return Err(ApiError::not_permitted(format!(
                        "schema id {id} is already used by another schema; overwriting is not permitted"
                    )))
                }
                _ => id,
            },
            (None, Some(id)) => id,
            (None, None) => self
                .max_id
                .checked_add(1)
                .filter(|id| *id <= limits::MAX_SCHEMA_ID)
                .ok_or_else(|| ApiError::store("schema ids are exhausted"))?,
        };
        let record = Record {
            key: Key::Schema {
                subject: subject.to_owned(),
                version,
            },
            value: Some(Value::Schema(SchemaValue {
                subject: subject.to_owned(),
                version,
                id,
                schema: self
                    .schemas
                    .get(&id)
                    .map_or_else(|| candidate.normalized.clone(), |s| s.text.clone()),
                deleted: false,
                schema_type: None,
                references: candidate.references.clone(),
            })),
        };
        // Checked before writing: the Kafka client would refuse the record with an error about its own settings.
        let size =
            record.key.to_bytes().len() + record.value.as_ref().map_or(0, |v| v.to_bytes().len());
        if size > limits::MAX_RECORD_BYTES {
            return Err(too_large_to_store(size));
        }
        Ok(RegisterPlan::New {
            id,
            version,
            record,
        })
    }

    /// Decides what deleting a subject writes and which versions it reports.
    pub fn plan_delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<(Vec<i32>, Vec<Record>), ApiError> {
        self.ensure_writable(subject)?;
        let Some(versions) = self.subjects.get(subject) else {
            return Err(ApiError::subject_not_found(subject));
        };
        let live: Vec<i32> = versions
            .iter()
            .filter(|(_, e)| !e.deleted)
            .map(|(v, _)| *v)
            .collect();
        if permanent {
            if !live.is_empty() {
                return Err(ApiError::subject_not_soft_deleted(subject));
            }
            let all: Vec<i32> = versions.keys().copied().collect();
            for version in &all {
                let referrers = self.blocking_referrers(subject, *version, true);
                if !referrers.is_empty() {
                    return Err(ApiError::reference_exists(subject, *version, &referrers));
                }
            }
            let records = all
                .iter()
                .map(|v| Record {
                    key: Key::Schema {
                        subject: subject.to_owned(),
                        version: *v,
                    },
                    value: None,
                })
                .collect();
            return Ok((all, records));
        }
        let Some(&latest) = live.last() else {
            return Err(ApiError::subject_soft_deleted(subject));
        };
        let mut records = vec![Record {
            key: Key::DeleteSubject {
                subject: subject.to_owned(),
            },
            value: Some(Value::DeleteSubject(DeleteSubjectValue {
                subject: subject.to_owned(),
                version: latest,
            })),
        }];
        records.extend(self.subject_settings_tombstones(subject));
        Ok((live, records))
    }

    /// Decides what deleting one version writes; reports the version.
    pub fn plan_delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<(i32, Vec<Record>), ApiError> {
        self.ensure_writable(subject)?;
        if !self.subjects.contains_key(subject) {
            return Err(ApiError::subject_not_found(subject));
        }
        // A numbered version is found even when soft-deleted (to answer 40406); `latest` of a soft delete is the
        // newest live version, of a permanent delete the newest version at all.
        let include_deleted = permanent || matches!(spec, VersionSpec::Number(_));
        let (version, entry) = self.version(subject, spec, include_deleted)?;
        let key = Key::Schema {
            subject: subject.to_owned(),
            version,
        };
        if permanent {
            if !entry.deleted {
                return Err(ApiError::version_not_soft_deleted(subject, version));
            }
            // Soft deletes are allowed (a soft-deleted version still resolves), a hard delete would leave the
            // referrers unresolvable.
            let referrers = self.blocking_referrers(subject, version, false);
            if !referrers.is_empty() {
                return Err(ApiError::reference_exists(subject, version, &referrers));
            }
            return Ok((version, vec![Record { key, value: None }]));
        }
        if entry.deleted {
            return Err(ApiError::version_soft_deleted(subject, version));
        }
        let text = self
            .schemas
            .get(&entry.id)
            .map(|s| (s.text.clone(), s.schema_type.clone(), s.references.clone()));
        let Some((schema, schema_type, references)) = text else {
            return Err(ApiError::store(format!(
                "version {version} of '{subject}' has no schema for id {}",
                entry.id
            )));
        };
        let value = SchemaValue {
            subject: subject.to_owned(),
            version,
            id: entry.id,
            schema,
            deleted: true,
            schema_type,
            references,
        };
        let mut records = vec![Record {
            key,
            value: Some(Value::Schema(value)),
        }];
        // As Confluent does, a subject without live versions loses its subject-level settings.
        let others_live = self.subjects[subject]
            .iter()
            .any(|(v, e)| *v != version && !e.deleted);
        if !others_live {
            records.extend(self.subject_settings_tombstones(subject));
        }
        Ok((version, records))
    }

    fn subject_settings_tombstones(&self, subject: &str) -> Vec<Record> {
        let mut records = Vec::new();
        if self.subject_modes.contains_key(subject) {
            records.push(Record {
                key: Key::Mode {
                    subject: Some(subject.to_owned()),
                },
                value: None,
            });
        }
        if self.subject_levels.contains_key(subject) {
            records.push(Record {
                key: Key::Config {
                    subject: Some(subject.to_owned()),
                },
                value: None,
            });
        }
        records
    }

    /// The record that sets (or with `None` clears) a compatibility level.
    pub fn config_record(subject: Option<&str>, level: Option<CompatibilityLevel>) -> Record {
        Record {
            key: Key::Config {
                subject: subject.map(str::to_owned),
            },
            value: level.map(|l| {
                Value::Config(ConfigValue {
                    compatibility_level: Some(l),
                })
            }),
        }
    }

    /// Decides what setting a mode writes: IMPORT needs an empty registry (or subject) unless forced, as in Confluent.
    pub fn plan_mode(
        &self,
        subject: Option<&str>,
        mode: Option<Mode>,
        force: bool,
    ) -> Result<Record, ApiError> {
        if mode == Some(Mode::Import) && !force {
            let has_schemas = match subject {
                Some(s) => self.subjects.contains_key(s),
                None => !self.subjects.is_empty(),
            };
            if has_schemas {
                let scope =
                    subject.map_or_else(|| "the registry".to_owned(), |s| format!("subject '{s}'"));
                return Err(ApiError::not_permitted(format!(
                    "Cannot import since {scope} already has schemas; set force=true to switch to IMPORT anyway"
                )));
            }
        }
        Ok(Record {
            key: Key::Mode {
                subject: subject.map(str::to_owned),
            },
            value: mode.map(|mode| Value::Mode(ModeValue { mode })),
        })
    }

    /// Number of subjects (live or soft-deleted) and schemas, for the startup log.
    pub fn summary(&self) -> (usize, usize) {
        (self.subjects.len(), self.schemas.len())
    }

    /// Subject names that have a version using `id`, sorted and deduplicated.
    pub fn subjects_of(&self, id: u32, include_deleted: bool) -> Vec<String> {
        let set: BTreeSet<String> = self
            .usages(id, include_deleted)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        set.into_iter().collect()
    }
}

/// Why [`State::self_contained`] has no schema to give.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum NotSelfContained {
    /// No schema has the id.
    #[error("no schema has id {0}")]
    UnknownId(u32),
    /// The stored text does not parse (kept as written, e.g. from an import).
    #[error("{0}")]
    Unusable(String),
    /// Its references do not resolve, or the schema does not parse with them.
    #[error("{}", .0.message)]
    Unresolved(ApiError),
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"Click","namespace":"t","fields":[{"name":"id","type":"string"}]}"#;
    /// V1 plus an optional field with a default: backward compatible.
    const V2: &str = r#"{"type":"record","name":"Click","namespace":"t","fields":[{"name":"id","type":"string"},
        {"name":"note","type":["null","string"],"default":null}]}"#;
    /// V1 plus a required field without default: not backward compatible.
    const BAD: &str = r#"{"type":"record","name":"Click","namespace":"t","fields":[{"name":"id","type":"string"},
        {"name":"cost","type":"long"}]}"#;

    fn candidate(text: &str) -> Candidate {
        Candidate::parse(text).unwrap()
    }

    /// Registers like the HTTP layer does, keeping the written records as a topic would.
    fn register(
        state: &mut State,
        log: &mut Vec<Record>,
        subject: &str,
        text: &str,
    ) -> Result<(u32, i32), ApiError> {
        match plan(state, subject, &candidate(text), Explicit::default())? {
            RegisterPlan::Existing { id, version } => Ok((id, version)),
            RegisterPlan::New {
                id,
                version,
                record,
            } => {
                state.apply(&record);
                log.push(record);
                Ok((id, version))
            }
            RegisterPlan::Check(_) => panic!("planned again after its check, yet asks for a check"),
        }
    }

    /// Plans a registration like the HTTP layer does: a needed compatibility check is run, then planned again.
    fn plan(
        state: &State,
        subject: &str,
        candidate: &Candidate,
        explicit: Explicit,
    ) -> Result<RegisterPlan, ApiError> {
        match state.plan_register(subject, candidate, explicit, None)? {
            RegisterPlan::Check(check) => {
                let verdict = check.run(&candidate.parsed);
                state.plan_register(subject, candidate, explicit, Some(&verdict))
            }
            plan => Ok(plan),
        }
    }

    fn write(state: &mut State, log: &mut Vec<Record>, records: Vec<Record>) {
        for record in records {
            state.apply(&record);
            log.push(record);
        }
    }

    fn replay(log: &[Record]) -> State {
        let mut state = State::default();
        for record in log {
            state.apply(record);
        }
        state
    }

    #[test]
    fn whitespace_and_key_order_do_not_change_identity() {
        let a = candidate(V1);
        let b = candidate(
            r#"{ "fields": [ {"type": "string", "name": "id"} ], "namespace": "t", "name": "Click", "type": "record" }"#,
        );
        assert_eq!(a.normalized, b.normalized);
        // A changed default or doc is a different schema (Parsing Canonical Form would drop both).
        let c = candidate(
            r#"{"type":"record","name":"Click","namespace":"t","doc":"x","fields":[{"name":"id","type":"string"}]}"#,
        );
        assert_ne!(a.normalized, c.normalized);
        // The stored form parses back to itself.
        assert_eq!(candidate(&a.normalized).normalized, a.normalized);
    }

    #[test]
    fn invalid_schema_is_42201_with_the_parser_message() {
        let error = Candidate::parse(
            r#"{"type":"record","name":"X","fields":[{"name":"a","type":"nope"}]}"#,
        )
        .unwrap_err();
        assert_eq!(error.code, 42201);
        assert!(
            error.message.starts_with("Invalid schema: "),
            "{}",
            error.message
        );
        assert!(error.message.contains("nope"), "{}", error.message);
        assert_eq!(Candidate::parse("").unwrap_err().code, 42201);
    }

    #[test]
    fn ids_and_versions_follow_confluent_rules() {
        let (mut state, mut log) = (State::default(), Vec::new());
        assert_eq!(register(&mut state, &mut log, "a", V1).unwrap(), (1, 1));
        // Identical schema: same id and version, nothing written.
        assert_eq!(register(&mut state, &mut log, "a", V1).unwrap(), (1, 1));
        assert_eq!(log.len(), 1);
        // Same schema in another subject: same id, its own version 1.
        assert_eq!(register(&mut state, &mut log, "b", V1).unwrap(), (1, 1));
        assert_eq!(register(&mut state, &mut log, "a", V2).unwrap(), (2, 2));
        // A soft-deleted version still counts for the next version number.
        let (_, records) = state
            .plan_delete_version("a", VersionSpec::Number(2), false)
            .unwrap();
        write(&mut state, &mut log, records);
        assert_eq!(state.versions("a", Filter::Live).unwrap(), vec![1]);
        assert_eq!(state.versions("a", Filter::DeletedOnly).unwrap(), vec![2]);
        let third = candidate(
            r#"{"type":"record","name":"Click","namespace":"t","fields":[{"name":"id","type":"string"},{"name":"n","type":"int","default":0}]}"#,
        );
        let RegisterPlan::New {
            id,
            version,
            record,
        } = plan(&state, "a", &third, Explicit::default()).unwrap()
        else {
            panic!("expected a new version")
        };
        assert_eq!((id, version), (3, 3));
        write(&mut state, &mut log, vec![record]);
        // Soft-deleted id still resolves.
        assert!(state.schema(2).is_some());
    }

    #[test]
    fn incompatible_schema_is_409_and_none_level_accepts_it() {
        let (mut state, mut log) = (State::default(), Vec::new());
        register(&mut state, &mut log, "s", V1).unwrap();
        let error = register(&mut state, &mut log, "s", BAD).unwrap_err();
        assert_eq!(
            (error.status, error.code),
            (axum::http::StatusCode::CONFLICT, 409)
        );
        assert!(
            error
                .message
                .contains("incompatible with an earlier schema"),
            "{}",
            error.message
        );
        assert!(error.message.contains("BACKWARD"), "{}", error.message);
        write(
            &mut state,
            &mut log,
            vec![State::config_record(
                Some("s"),
                Some(CompatibilityLevel::None),
            )],
        );
        assert_eq!(register(&mut state, &mut log, "s", BAD).unwrap(), (2, 2));
    }

    #[test]
    fn subject_deletes_follow_confluent_rules() {
        let (mut state, mut log) = (State::default(), Vec::new());
        register(&mut state, &mut log, "s", V1).unwrap();
        register(&mut state, &mut log, "s", V2).unwrap();
        write(
            &mut state,
            &mut log,
            vec![State::config_record(
                Some("s"),
                Some(CompatibilityLevel::Full),
            )],
        );
        assert_eq!(
            state.plan_delete_subject("nope", false).unwrap_err().code,
            40401
        );
        assert_eq!(
            state.plan_delete_subject("s", true).unwrap_err().code,
            40405
        );
        let (versions, records) = state.plan_delete_subject("s", false).unwrap();
        assert_eq!(versions, vec![1, 2]);
        write(&mut state, &mut log, records);
        assert!(state.subjects("", Filter::Live).is_empty());
        assert_eq!(
            state.subjects("", Filter::DeletedOnly),
            vec!["s".to_owned()]
        );
        assert_eq!(
            state.subject_level("s"),
            None,
            "a soft delete drops the subject's level"
        );
        assert_eq!(
            state.plan_delete_subject("s", false).unwrap_err().code,
            40404
        );
        assert_eq!(
            state.lookup("s", &candidate(V1), false).unwrap_err().code,
            40401
        );
        assert_eq!(state.lookup("s", &candidate(V1), true).unwrap(), (1, 1));
        let (versions, records) = state.plan_delete_subject("s", true).unwrap();
        assert_eq!(versions, vec![1, 2]);
        write(&mut state, &mut log, records);
        assert!(state.subjects("", Filter::IncludeDeleted).is_empty());
        assert!(
            state.schema(1).is_none(),
            "a hard-deleted id no longer resolves"
        );
        assert_eq!(
            state.plan_delete_subject("s", false).unwrap_err().code,
            40401
        );
    }

    #[test]
    fn version_deletes_follow_confluent_rules() {
        let (mut state, mut log) = (State::default(), Vec::new());
        register(&mut state, &mut log, "s", V1).unwrap();
        assert_eq!(
            state
                .plan_delete_version("s", VersionSpec::Number(1), true)
                .unwrap_err()
                .code,
            40407
        );
        assert_eq!(
            state
                .plan_delete_version("s", VersionSpec::Number(9), false)
                .unwrap_err()
                .code,
            40402
        );
        let (version, records) = state
            .plan_delete_version("s", VersionSpec::Latest, false)
            .unwrap();
        assert_eq!(version, 1);
        write(&mut state, &mut log, records);
        assert_eq!(
            state
                .plan_delete_version("s", VersionSpec::Number(1), false)
                .unwrap_err()
                .code,
            40406
        );
        let (_, records) = state
            .plan_delete_version("s", VersionSpec::Number(1), true)
            .unwrap();
        write(&mut state, &mut log, records);
        assert_eq!(
            state
                .plan_delete_version("s", VersionSpec::Number(1), true)
                .unwrap_err()
                .code,
            40401
        );
    }

    #[test]
    fn read_only_modes_refuse_writes_and_import_takes_ids() {
        let (mut state, mut log) = (State::default(), Vec::new());
        let record = state
            .plan_mode(Some("s"), Some(Mode::ReadOnly), false)
            .unwrap();
        write(&mut state, &mut log, vec![record]);
        assert_eq!(
            register(&mut state, &mut log, "s", V1).unwrap_err().code,
            42205
        );
        register(&mut state, &mut log, "other", V1).unwrap();
        let record = state
            .plan_mode(None, Some(Mode::ReadOnlyOverride), true)
            .unwrap();
        write(&mut state, &mut log, vec![record]);
        assert_eq!(
            register(&mut state, &mut log, "other", V2)
                .unwrap_err()
                .code,
            42205
        );
        let record = state.plan_mode(None, None, false).unwrap();
        write(&mut state, &mut log, vec![record]);
        // IMPORT on a subject with schemas needs force, as in Confluent.
        assert_eq!(
            state
                .plan_mode(Some("other"), Some(Mode::Import), false)
                .unwrap_err()
                .code,
            42205
        );
        let record = state
            .plan_mode(Some("imp"), Some(Mode::Import), false)
            .unwrap();
        write(&mut state, &mut log, vec![record]);
        let explicit = Explicit {
            id: Some(100),
            version: Some(5),
        };
        let RegisterPlan::New {
            id,
            version,
            record,
        } = plan(&state, "imp", &candidate(BAD), explicit).unwrap()
        else {
            panic!("expected a new version")
        };
        assert_eq!((id, version), (100, 5));
        write(&mut state, &mut log, vec![record]);
        // Outside IMPORT mode an explicit id is refused; ids continue above the imported one.
        assert_eq!(
            plan(
                &state,
                "other",
                &candidate(V2),
                Explicit {
                    id: Some(7),
                    version: None
                }
            )
            .unwrap_err()
            .code,
            42205
        );
        assert_eq!(
            register(&mut state, &mut log, "fresh", V2).unwrap(),
            (101, 1)
        );
    }

    #[test]
    fn replaying_the_written_records_rebuilds_the_same_state() {
        let (mut state, mut log) = (State::default(), Vec::new());
        register(&mut state, &mut log, "a", V1).unwrap();
        register(&mut state, &mut log, "a", V2).unwrap();
        register(&mut state, &mut log, "b", V2).unwrap();
        write(
            &mut state,
            &mut log,
            vec![State::config_record(
                None,
                Some(CompatibilityLevel::Forward),
            )],
        );
        write(
            &mut state,
            &mut log,
            vec![State::config_record(
                Some("b"),
                Some(CompatibilityLevel::None),
            )],
        );
        let record = state
            .plan_mode(Some("a"), Some(Mode::ReadOnly), false)
            .unwrap();
        write(&mut state, &mut log, vec![record]);
        let (_, records) = state
            .plan_delete_version("b", VersionSpec::Number(1), false)
            .unwrap();
        write(&mut state, &mut log, records);
        let replayed = replay(&log);
        assert_eq!(
            format!("{:?}", replayed.subjects),
            format!("{:?}", state.subjects)
        );
        assert_eq!(replayed.max_id, state.max_id);
        assert_eq!(replayed.global_level, Some(CompatibilityLevel::Forward));
        assert_eq!(replayed.subject_modes, state.subject_modes);
        assert_eq!(replayed.subject_levels, state.subject_levels);
        assert_eq!(
            replayed.schemas.keys().collect::<Vec<_>>(),
            state.schemas.keys().collect::<Vec<_>>()
        );
    }

    const CURRENCY: &str =
        r#"{"type":"enum","name":"Currency","namespace":"t","symbols":["EUR","USD"]}"#;
    const MONEY: &str = r#"{"type":"record","name":"Money","namespace":"t","fields":[{"name":"micros","type":"long"},
        {"name":"currency","type":"Currency"}]}"#;
    const PAYMENT: &str = r#"{"type":"record","name":"Payment","namespace":"t","fields":[{"name":"amount","type":"Money"}]}"#;

    fn reference(name: &str, subject: &str, version: i32) -> SchemaReference {
        SchemaReference {
            name: name.into(),
            subject: subject.into(),
            version,
        }
    }

    /// Resolves the references against the state and parses, as the HTTP layer does.
    fn candidate_with(state: &State, text: &str, references: &[SchemaReference]) -> Candidate {
        let (references, referenced) = state.resolve_references(references).unwrap();
        Candidate::parse_with_references(text, references, &referenced).unwrap()
    }

    fn register_with(
        state: &mut State,
        log: &mut Vec<Record>,
        subject: &str,
        text: &str,
        references: &[SchemaReference],
    ) -> u32 {
        let candidate = candidate_with(state, text, references);
        match plan(state, subject, &candidate, Explicit::default()).unwrap() {
            RegisterPlan::New { id, record, .. } => {
                write(state, log, vec![record]);
                id
            }
            RegisterPlan::Existing { id, .. } => id,
            RegisterPlan::Check(_) => panic!("planned again after its check, yet asks for a check"),
        }
    }

    #[test]
    fn references_resolve_transitively_and_protect_what_they_reference() {
        let (mut state, mut log) = (State::default(), Vec::new());
        let currency = register_with(&mut state, &mut log, "currency", CURRENCY, &[]);
        let money = register_with(
            &mut state,
            &mut log,
            "money",
            MONEY,
            &[reference("t.Currency", "currency", 1)],
        );
        // `-1` is resolved to the latest version and stored as such.
        let payment = register_with(
            &mut state,
            &mut log,
            "payment",
            PAYMENT,
            &[reference("t.Money", "money", -1)],
        );
        assert_eq!(
            state.schema(payment).unwrap().references,
            vec![reference("t.Money", "money", 1)]
        );
        // Payment resolves through Money to Currency.
        let resolved = state.self_contained(payment).unwrap();
        assert!(
            serde_json::to_string(&resolved).unwrap().contains("EUR"),
            "{resolved:?}"
        );
        assert_eq!(state.referenced_by("money", 1), vec![payment]);
        assert_eq!(state.referenced_by_id(currency), vec![money]);
        // The same text with the same (resolved) references is the same schema; with other ones it is another.
        let same = register_with(
            &mut state,
            &mut log,
            "other",
            PAYMENT,
            &[reference("t.Money", "money", 1)],
        );
        assert_eq!(same, payment);
        let money_v2 = MONEY.replace(
            r#"{"name":"micros""#,
            r#"{"name":"note","type":"string","default":""},{"name":"micros""#,
        );
        register_with(
            &mut state,
            &mut log,
            "money",
            &money_v2,
            &[reference("t.Currency", "currency", 1)],
        );
        let against_v2 = register_with(
            &mut state,
            &mut log,
            "other2",
            PAYMENT,
            &[reference("t.Money", "money", 2)],
        );
        assert_ne!(against_v2, payment);
        assert_eq!(
            state
                .resolve_references(&[reference("t.Money", "nope", 1)])
                .unwrap_err()
                .code,
            42201
        );

        // A referenced version may be soft-deleted, not hard-deleted; a subject likewise.
        let (_, records) = state
            .plan_delete_version("money", VersionSpec::Number(1), false)
            .unwrap();
        write(&mut state, &mut log, records);
        assert_eq!(
            state
                .plan_delete_version("money", VersionSpec::Number(1), true)
                .unwrap_err()
                .code,
            42206
        );
        let (_, records) = state.plan_delete_subject("money", false).unwrap();
        write(&mut state, &mut log, records);
        assert_eq!(
            state.plan_delete_subject("money", true).unwrap_err().code,
            42206
        );
        assert!(
            state.self_contained(payment).is_ok(),
            "a soft-deleted reference still resolves"
        );

        // In a compacted topic the soft delete rewrote Money's record after Payment's; the replay still resolves.
        let is_money =
            |r: &&Record| matches!(&r.key, Key::Schema { subject, .. } if subject == "money");
        let mut compacted: Vec<Record> = log.iter().filter(|r| !is_money(r)).cloned().collect();
        compacted.extend(log.iter().filter(is_money).cloned());
        let replayed = replay(&compacted);
        assert!(replayed.self_contained(payment).is_ok());
        assert_eq!(replayed.referenced_by("money", 1), vec![payment]);
        let check = replayed.compat_check("payment", None);
        assert!(check
            .run(&candidate_with(&replayed, PAYMENT, &[reference("t.Money", "money", 1)]).parsed)
            .reasons
            .is_empty());
    }

    #[test]
    fn a_verdict_counts_only_while_what_it_compared_against_is_unchanged() {
        let (mut state, mut log) = (State::default(), Vec::new());
        register(&mut state, &mut log, "s", V1).unwrap();
        let bad = candidate(BAD);
        let RegisterPlan::Check(check) = state
            .plan_register("s", &bad, Explicit::default(), None)
            .unwrap()
        else {
            panic!("a check is needed first")
        };
        let verdict = check.run(&bad.parsed);
        assert!(!verdict.reasons.is_empty());
        // Meanwhile the level changed to NONE: the stale verdict is not used, and the schema is accepted.
        write(
            &mut state,
            &mut log,
            vec![State::config_record(
                Some("s"),
                Some(CompatibilityLevel::None),
            )],
        );
        assert!(matches!(
            state.plan_register("s", &bad, Explicit::default(), Some(&verdict)),
            Ok(RegisterPlan::New { .. })
        ));
        write(
            &mut state,
            &mut log,
            vec![State::config_record(Some("s"), None)],
        );
        // Unchanged state: the verdict is used as it is.
        assert_eq!(
            state
                .plan_register("s", &bad, Explicit::default(), Some(&verdict))
                .unwrap_err()
                .code,
            409
        );
        // A new latest version: stale again.
        register(&mut state, &mut log, "s", V2).unwrap();
        assert!(matches!(
            state.plan_register("s", &bad, Explicit::default(), Some(&verdict)),
            Ok(RegisterPlan::Check(_))
        ));
    }

    #[test]
    fn ids_outside_java_int_range_are_refused_and_ignored_in_the_topic() {
        let (mut state, mut log) = (State::default(), Vec::new());
        let record = state
            .plan_mode(Some("imp"), Some(Mode::Import), false)
            .unwrap();
        write(&mut state, &mut log, vec![record]);
        for id in [0, limits::MAX_SCHEMA_ID + 1, u32::MAX] {
            let explicit = Explicit {
                id: Some(id),
                version: Some(1),
            };
            let error = plan(&state, "imp", &candidate(V1), explicit).unwrap_err();
            assert_eq!(error.code, 42205, "{id}: {}", error.message);
        }
        // Written by a registry without the bound: left out, and ids go on from the highest valid one.
        state.apply(&Record {
            key: Key::Schema {
                subject: "old".into(),
                version: 1,
            },
            value: Some(Value::Schema(SchemaValue {
                subject: "old".into(),
                version: 1,
                id: u32::MAX,
                schema: V1.into(),
                deleted: false,
                schema_type: None,
                references: Vec::new(),
            })),
        });
        assert_eq!(
            state
                .versions("old", Filter::IncludeDeleted)
                .unwrap_err()
                .code,
            40401
        );
        assert_eq!(register(&mut state, &mut log, "fresh", V1).unwrap(), (1, 1));
    }

    #[test]
    fn version_specs_parse_like_confluent() {
        assert_eq!(
            "latest".parse::<VersionSpec>().unwrap(),
            VersionSpec::Latest
        );
        assert_eq!("-1".parse::<VersionSpec>().unwrap(), VersionSpec::Latest);
        assert_eq!(
            "2147483647".parse::<VersionSpec>().unwrap(),
            VersionSpec::Number(i32::MAX)
        );
        for bad in ["0", "-2", "2147483648", "a", ""] {
            assert_eq!(bad.parse::<VersionSpec>().unwrap_err().code, 42202, "{bad}");
        }
        assert_eq!("readonly".parse::<Mode>().unwrap(), Mode::ReadOnly);
        assert_eq!("WRITE".parse::<Mode>().unwrap_err().code, 42204);
        assert_eq!(
            parse_level("full_transitive").unwrap(),
            CompatibilityLevel::FullTransitive
        );
        assert_eq!(parse_level("INVALID").unwrap_err().code, 42203);
    }
}
