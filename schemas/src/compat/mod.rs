//! Avro schema compatibility with Confluent Schema Registry's seven levels.
//!
//! The base verdict comes from apache-avro's checker
//! ([`apache_avro::schema_compatibility::SchemaCompatibility::can_read`]), with `Partial` counted as
//! incompatible (a pair that only works for some data is not safe to register). apache-avro stops at the first
//! problem and differs from Java Avro's `SchemaCompatibility` (what Confluent runs, and what Python avro's
//! `ReaderWriterCompatibilityChecker` mirrors) in a few places, so we also run our own walk (`walk`) that mirrors
//! Java step for step. It lists every incompatibility, each with a readable per-field explanation, and corrects
//! apache-avro's verdict in these documented cases:
//!
//! - type aliases: a renamed record/enum/fixed whose reader lists the old full name in `aliases` (apache-avro
//!   ignores type aliases);
//! - decimals of different precision/scale (Java and Python ignore logical types; apache-avro requires equality);
//! - a named type defined at another place in the reader than in the writer, or a recursive reference whose
//!   namespace changed (apache-avro compares `Ref`s by full name only and a `Ref` with a definition is a wrong type);
//! - stricter than apache-avro: a decimal on `bytes` vs one on `fixed`, `uuid` on `string` vs on `fixed`, decimals
//!   on `fixed` of different sizes, and references that apache-avro accepts by name without comparing their
//!   definitions (Java/Python compare the underlying types and the definitions).
//!
//! One known difference of Python avro 1.12 from Java is *not* followed: Python compares a type alias exactly as
//! written with the writer's full name, while Java (and the specification) first qualify an alias without a dot
//! with the type's namespace. We follow Java; see `schemas/tests/compat_corpus/python_divergences.jsonl`.

mod level;
#[cfg(test)]
mod tests;
mod walk;

use std::fmt;

use apache_avro::error::CompatibilityError;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;

pub use level::{CompatibilityLevel, UnknownCompatibilityLevel};
use walk::{Outcome, Walker};

/// The kind of an incompatibility, named as Confluent's `Incompatibility{type:...}` messages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncompatibilityKind {
    /// The reader's type cannot read the writer's type (no equal type and no promotion).
    TypeMismatch,
    /// Two named types of the same kind have different names and no alias connects them.
    NameMismatch,
    /// Two `fixed` types differ in size.
    FixedSizeMismatch,
    /// The writer's enum has symbols the reader's enum lacks, and the reader's enum has no default.
    MissingEnumSymbols,
    /// A reader field is absent from the writer and has no default value.
    ReaderFieldMissingDefaultValue,
    /// No branch of the reader's union can read what the writer wrote.
    MissingUnionBranch,
    /// apache-avro's checker rejects the pair for a reason our walk does not reproduce; treated as incompatible so
    /// that an unexplained disagreement never lets a schema through.
    CheckerDisagreement,
}

impl IncompatibilityKind {
    /// Confluent's name, e.g. `READER_FIELD_MISSING_DEFAULT_VALUE`.
    pub fn as_str(self) -> &'static str {
        match self {
            IncompatibilityKind::TypeMismatch => "TYPE_MISMATCH",
            IncompatibilityKind::NameMismatch => "NAME_MISMATCH",
            IncompatibilityKind::FixedSizeMismatch => "FIXED_SIZE_MISMATCH",
            IncompatibilityKind::MissingEnumSymbols => "MISSING_ENUM_SYMBOLS",
            IncompatibilityKind::ReaderFieldMissingDefaultValue => {
                "READER_FIELD_MISSING_DEFAULT_VALUE"
            }
            IncompatibilityKind::MissingUnionBranch => "MISSING_UNION_BRANCH",
            IncompatibilityKind::CheckerDisagreement => "CHECKER_DISAGREEMENT",
        }
    }
}

impl fmt::Display for IncompatibilityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason why a reader schema cannot read data written with a writer schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// What kind of problem it is.
    pub kind: IncompatibilityKind,
    /// Where in the reader schema, as Java/Confluent report it, e.g. `/fields/3/type`.
    pub location: String,
    /// Where in the reader schema, readably: the record name then field names, `[]` for array items and `{}` for
    /// map values, e.g. `AdClick.cost_micros` or `Campaign.targets{}`.
    pub path: String,
    /// A one-line explanation naming the field, e.g. "reader field 'currency' (AdClick.currency) has no default
    /// and is missing from the writer schema".
    pub message: String,
    /// The reader's schema at `location`, as JSON.
    pub reader: String,
    /// The writer's schema at `location`, as JSON (`null` when the writer has nothing there).
    pub writer: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Whether data written with `writer` can be read with `reader` under Avro's schema resolution rules, as Java Avro
/// (and so Confluent Schema Registry) decides it. On failure, returns every incompatibility found, not only the
/// first.
pub fn can_read(writer: &Schema, reader: &Schema) -> Result<(), Vec<Incompatibility>> {
    let base = SchemaCompatibility::can_read(writer, reader);
    combine(&base, Walker::check(writer, reader))
}

/// Joins apache-avro's verdict (`base`) with our walk's findings.
fn combine(
    base: &Result<Compatibility, CompatibilityError>,
    walk: Outcome,
) -> Result<(), Vec<Incompatibility>> {
    if !walk.is_ok() {
        // Whatever apache-avro said, the walk names concrete problems. Where apache-avro accepted the pair anyway,
        // it is one of the stricter-than-apache-avro cases documented in `walk`.
        return Err(walk.problems);
    }
    match base {
        Ok(Compatibility::Full) => Ok(()),
        // apache-avro rejects, the walk accepts because of a documented correction (see `walk::Correction`).
        _ if !walk.corrections.is_empty() => Ok(()),
        Ok(Compatibility::Partial) => Err(vec![disagreement(
            "apache-avro finds the schemas only partially compatible (some data written could not be read)",
        )]),
        Err(error) => Err(vec![disagreement(&format!("apache-avro rejects the pair: {error}"))]),
    }
}

fn disagreement(why: &str) -> Incompatibility {
    Incompatibility {
        kind: IncompatibilityKind::CheckerDisagreement,
        location: "/".to_string(),
        path: "(root)".to_string(),
        message: format!("{why}; treated as incompatible to be safe"),
        reader: "null".to_string(),
        writer: "null".to_string(),
    }
}

/// Checks `new_schema` against the live versions of a subject under `level`, as Confluent Schema Registry does.
///
/// `existing` holds the live versions oldest first; they are numbered 1, 2, ... in the messages (use
/// [`check_versions`] to report the registry's real version numbers). Returns Confluent-style verbose messages; an
/// empty vector means compatible.
pub fn check(level: CompatibilityLevel, new_schema: &Schema, existing: &[Schema]) -> Vec<String> {
    let numbered: Vec<(i32, &Schema)> = existing
        .iter()
        .enumerate()
        .map(|(i, s)| (i32::try_from(i + 1).unwrap_or(i32::MAX), s))
        .collect();
    check_versions(level, new_schema, &numbered)
}

/// Like [`check`], with each existing schema paired with its version number (oldest first).
///
/// Non-transitive levels check only the newest version; transitive ones check every version, newest first.
/// BACKWARD means the new schema reads data of the old ones; FORWARD means the old ones read data of the new one.
/// For each failing version the messages are `Incompatibility{...}` lines, then `{oldSchemaVersion: N}` and
/// `{oldSchema: '...'}`; a final `{compatibility: 'LEVEL'}` line names the level.
pub fn check_versions(
    level: CompatibilityLevel,
    new_schema: &Schema,
    existing: &[(i32, &Schema)],
) -> Vec<String> {
    let targets: Vec<&(i32, &Schema)> = if level.is_transitive() {
        existing.iter().rev().collect()
    } else {
        existing.last().into_iter().collect()
    };
    let mut messages = Vec::new();
    for (version, old) in targets {
        let mut lines = Vec::new();
        if level.checks_backward() {
            if let Err(problems) = can_read(old, new_schema) {
                let direction =
                    format!("the new schema cannot read data written with version {version}");
                lines.extend(problems.iter().map(|p| confluent_line(p, &direction)));
            }
        }
        if level.checks_forward() {
            if let Err(problems) = can_read(new_schema, old) {
                let direction =
                    format!("version {version} cannot read data written with the new schema");
                lines.extend(problems.iter().map(|p| confluent_line(p, &direction)));
            }
        }
        if !lines.is_empty() {
            messages.extend(lines);
            messages.push(format!("{{oldSchemaVersion: {version}}}"));
            messages.push(format!("{{oldSchema: '{}'}}", walk::json_of(old)));
        }
    }
    if !messages.is_empty() {
        messages.push(format!("{{compatibility: '{level}'}}"));
    }
    messages
}

fn confluent_line(problem: &Incompatibility, direction: &str) -> String {
    format!(
        "Incompatibility{{type:{}, location:{}, message:{direction}: {}, reader:{}, writer:{}}}",
        problem.kind, problem.location, problem.message, problem.reader, problem.writer
    )
}
