//! Our own reader/writer walk, mirroring Java Avro's `SchemaCompatibility` (which Confluent Schema Registry uses
//! and Python avro's `ReaderWriterCompatibilityChecker` copies), step for step.
//!
//! apache-avro's checker gives the base verdict (see `super::can_read`); this walk exists because that checker
//! stops at the first error and, in a few cases, decides differently from Java. Every place where this walk decides
//! differently from apache-avro 0.22 is marked with a `Deviation from apache-avro` comment. Where the difference
//! makes a pair compatible that apache-avro rejects, the walk records a [`Correction`] so that the final verdict
//! only overrides apache-avro for a documented reason.

use std::collections::{BTreeSet, HashMap};

use apache_avro::schema::{
    DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, RecordField, RecordSchema,
    UuidSchema,
};
use apache_avro::Schema;

use super::{Incompatibility, IncompatibilityKind};

/// A documented reason why this walk accepts a pair that apache-avro 0.22's checker rejects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Correction {
    /// A named type was renamed and the reader lists the writer's full name in `aliases`. Java and Python accept
    /// it (`schemaNameEquals`); apache-avro compares names only and ignores type aliases.
    NamedTypeAlias,
    /// Two decimals differ in precision or scale. Java and Python ignore logical types when checking
    /// compatibility (only the underlying `bytes`/`fixed` counts); apache-avro requires equal precision and scale.
    DecimalParameters,
    /// A named type is defined at a different place in the reader than in the writer (or is a recursive
    /// reference whose namespace changed), so one side holds a reference where the other holds the definition.
    /// Java and Python compare the definitions; apache-avro compares a `Ref` only with a `Ref` of the same full
    /// name and reports anything else as a wrong type or a name mismatch.
    ResolvedReference,
}

/// What the walk found for one reader/writer pair.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// Every incompatibility found, in schema order.
    pub problems: Vec<Incompatibility>,
    /// Documented differences from apache-avro that this (compatible part of the) walk relied on.
    pub corrections: BTreeSet<Correction>,
}

impl Outcome {
    /// No incompatibility found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn merge(&mut self, other: Outcome) {
        for problem in other.problems {
            // A memoised named type can be reached twice; it is reported once, at its first location.
            if !self.problems.contains(&problem) {
                self.problems.push(problem);
            }
        }
        self.corrections.extend(other.corrections);
    }

    fn problem(problem: Incompatibility) -> Outcome {
        Outcome {
            problems: vec![problem],
            corrections: BTreeSet::new(),
        }
    }

    fn corrected(correction: Correction) -> Outcome {
        Outcome {
            problems: Vec::new(),
            corrections: BTreeSet::from([correction]),
        }
    }
}

/// An Avro type as the compatibility rules see it: logical types count as the type that carries them, because
/// Java's and Python's checkers ignore `logicalType` entirely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array,
    Map,
    Union,
    Record,
    Enum,
    Fixed,
    /// A reference to a named type not defined inside the schema (e.g. a Confluent schema reference).
    External,
}

fn kind(schema: &Schema) -> Kind {
    match schema {
        Schema::Null => Kind::Null,
        Schema::Boolean => Kind::Boolean,
        Schema::Int | Schema::Date | Schema::TimeMillis => Kind::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Kind::Long,
        Schema::Float => Kind::Float,
        Schema::Double => Kind::Double,
        Schema::Bytes
        | Schema::BigDecimal
        | Schema::Uuid(UuidSchema::Bytes)
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Bytes,
            ..
        }) => Kind::Bytes,
        Schema::String | Schema::Uuid(UuidSchema::String) => Kind::String,
        Schema::Array(_) => Kind::Array,
        Schema::Map(_) => Kind::Map,
        Schema::Union(_) => Kind::Union,
        Schema::Record(_) => Kind::Record,
        Schema::Enum(_) => Kind::Enum,
        Schema::Fixed(_)
        | Schema::Duration(_)
        | Schema::Uuid(UuidSchema::Fixed(_))
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Fixed(_),
            ..
        }) => Kind::Fixed,
        Schema::Ref { .. } => Kind::External,
    }
}

/// The `fixed` underneath a fixed-sized schema (plain, decimal, uuid or duration).
fn fixed_of(schema: &Schema) -> Option<&FixedSchema> {
    match schema {
        Schema::Fixed(fixed)
        | Schema::Duration(fixed)
        | Schema::Uuid(UuidSchema::Fixed(fixed))
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Fixed(fixed),
            ..
        }) => Some(fixed),
        _ => None,
    }
}

fn decimal_of(schema: &Schema) -> Option<(usize, usize)> {
    match schema {
        Schema::Decimal(DecimalSchema {
            precision, scale, ..
        }) => Some((*precision, *scale)),
        _ => None,
    }
}

fn full_name(schema: &Schema) -> String {
    schema.name().map(|n| n.fullname(None)).unwrap_or_default()
}

/// A short human description of a type, e.g. `long (timestamp-millis)` or `record 'com.acme.AdClick'`.
pub(crate) fn describe(schema: &Schema) -> String {
    let named = |what: &str, s: &Schema| format!("{what} '{}'", full_name(s));
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int => "int".into(),
        Schema::Long => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes => "bytes".into(),
        Schema::String => "string".into(),
        Schema::Date => "int (date)".into(),
        Schema::TimeMillis => "int (time-millis)".into(),
        Schema::TimeMicros => "long (time-micros)".into(),
        Schema::TimestampMillis => "long (timestamp-millis)".into(),
        Schema::TimestampMicros => "long (timestamp-micros)".into(),
        Schema::TimestampNanos => "long (timestamp-nanos)".into(),
        Schema::LocalTimestampMillis => "long (local-timestamp-millis)".into(),
        Schema::LocalTimestampMicros => "long (local-timestamp-micros)".into(),
        Schema::LocalTimestampNanos => "long (local-timestamp-nanos)".into(),
        Schema::BigDecimal => "bytes (big-decimal)".into(),
        Schema::Uuid(UuidSchema::String) => "string (uuid)".into(),
        Schema::Uuid(UuidSchema::Bytes) => "bytes (uuid)".into(),
        Schema::Uuid(UuidSchema::Fixed(_)) => format!("{} (uuid)", named("fixed", schema)),
        Schema::Duration(_) => format!("{} (duration)", named("fixed", schema)),
        Schema::Decimal(DecimalSchema {
            precision,
            scale,
            inner,
        }) => {
            let carrier = match inner {
                InnerDecimalSchema::Bytes => "bytes".to_string(),
                InnerDecimalSchema::Fixed(_) => named("fixed", schema),
            };
            format!("{carrier} (decimal({precision},{scale}))")
        }
        Schema::Fixed(fixed) => format!("{} of size {}", named("fixed", schema), fixed.size),
        Schema::Array(array) => format!("array of {}", describe(&array.items)),
        Schema::Map(map) => format!("map of {}", describe(&map.types)),
        Schema::Union(union) => {
            let branches: Vec<String> = union.variants().iter().map(describe).collect();
            format!("union [{}]", branches.join(", "))
        }
        Schema::Record(_) => named("record", schema),
        Schema::Enum(_) => named("enum", schema),
        Schema::Ref { name } => format!("'{}'", name.fullname(None)),
    }
}

/// The schema as JSON, for the `reader:`/`writer:` parts of Confluent-style messages.
pub(crate) fn json_of(schema: &Schema) -> String {
    serde_json::to_string(schema).unwrap_or_else(|e| format!("<schema not printable as JSON: {e}>"))
}

/// Where in the reader schema the walk is: a JSON-pointer-like location as Java/Python report it
/// (`/fields/3/type/items`) and a readable dotted path (`AdClick.tags[]`).
#[derive(Debug, Clone)]
struct Loc {
    pointer: Vec<String>,
    readable: String,
    /// Set when this location is the type of a record field, to say "field 'x' (Rec.x)" in messages.
    field: Option<String>,
    /// The top-level schema itself (or a branch of it, when it is a union).
    top: bool,
}

impl Loc {
    fn root(reader: &Schema) -> Loc {
        let readable = reader
            .name()
            .map(|n| n.name().to_string())
            .unwrap_or_else(|| "(root)".to_string());
        Loc {
            pointer: Vec::new(),
            readable,
            field: None,
            top: true,
        }
    }

    fn location(&self) -> String {
        format!("/{}", self.pointer.join("/"))
    }

    fn child(&self, segment: &str, readable_suffix: &str) -> Loc {
        let mut pointer = self.pointer.clone();
        pointer.push(segment.to_string());
        Loc {
            pointer,
            readable: format!("{}{readable_suffix}", self.readable),
            field: None,
            top: false,
        }
    }

    /// The slot of reader field `index` (where a missing default is reported).
    fn field_slot(&self, index: usize, name: &str) -> Loc {
        let mut pointer = self.pointer.clone();
        pointer.extend(["fields".to_string(), index.to_string()]);
        Loc {
            pointer,
            readable: format!("{}.{name}", self.readable),
            field: Some(name.to_string()),
            top: false,
        }
    }

    /// The type of reader field `index`.
    fn field_type(&self, index: usize, name: &str) -> Loc {
        let mut loc = self.field_slot(index, name);
        loc.pointer.push("type".to_string());
        loc
    }

    fn branch(&self, index: usize) -> Loc {
        let mut loc = self.child(&index.to_string(), "");
        loc.field.clone_from(&self.field);
        loc.top = self.top;
        loc
    }

    /// How messages name this place: "field 'cost' (AdClick.cost)", or the path itself.
    fn subject(&self) -> String {
        match &self.field {
            Some(field) => format!("field '{field}' ({})", self.readable),
            None if self.top => "the top-level schema".to_string(),
            None => format!("'{}'", self.readable),
        }
    }

    fn incompatibility(
        &self,
        kind: IncompatibilityKind,
        message: String,
        reader: &Schema,
        writer: &Schema,
    ) -> Incompatibility {
        Incompatibility {
            kind,
            location: self.location(),
            path: self.readable.clone(),
            message,
            reader: json_of(reader),
            writer: json_of(writer),
        }
    }
}

/// Named types defined inside one schema, by full name, to resolve `Schema::Ref`.
fn collect_names<'s>(schema: &'s Schema, names: &mut HashMap<String, &'s Schema>) {
    match schema {
        Schema::Record(RecordSchema { name, fields, .. }) => {
            names.insert(name.fullname(None), schema);
            for field in fields {
                collect_names(&field.schema, names);
            }
        }
        Schema::Enum(EnumSchema { name, .. }) => {
            names.insert(name.fullname(None), schema);
        }
        Schema::Array(array) => collect_names(&array.items, names),
        Schema::Map(map) => collect_names(&map.types, names),
        Schema::Union(union) => union
            .variants()
            .iter()
            .for_each(|v| collect_names(v, names)),
        _ => {
            if let Some(fixed) = fixed_of(schema) {
                names.insert(fixed.name.fullname(None), schema);
            }
        }
    }
}

/// The reader-writer walk. Memoises every (reader node, writer node) pair by address, and treats a pair that is
/// still being checked as compatible, exactly like Java's and Python's checkers: this is what makes recursive
/// types terminate, and it yields the same verdicts as they do.
pub(crate) struct Walker<'s> {
    reader_names: HashMap<String, &'s Schema>,
    writer_names: HashMap<String, &'s Schema>,
    /// `None` while the pair is being checked.
    memo: HashMap<(usize, usize), Option<Outcome>>,
}

impl<'s> Walker<'s> {
    /// Checks whether data written with `writer` can be read with `reader`.
    pub fn check(writer: &'s Schema, reader: &'s Schema) -> Outcome {
        let mut walker = Walker {
            reader_names: HashMap::new(),
            writer_names: HashMap::new(),
            memo: HashMap::new(),
        };
        collect_names(reader, &mut walker.reader_names);
        collect_names(writer, &mut walker.writer_names);
        walker.get(reader, writer, &Loc::root(reader))
    }

    fn resolve(names: &HashMap<String, &'s Schema>, schema: &'s Schema) -> &'s Schema {
        match schema {
            Schema::Ref { name } => names.get(&name.fullname(None)).copied().unwrap_or(schema),
            _ => schema,
        }
    }

    fn get(&mut self, reader: &'s Schema, writer: &'s Schema, loc: &Loc) -> Outcome {
        let r = Self::resolve(&self.reader_names, reader);
        let w = Self::resolve(&self.writer_names, writer);
        // Deviation from apache-avro: it compares a `Ref` only with a `Ref` of the same full name (and then
        // without looking at the definitions); a `Ref` against a definition is a "wrong type" there. Java and
        // Python work on resolved schemas, so we compare the definitions and note when that made a difference.
        let same_ref = matches!((reader, writer), (Schema::Ref { name: a }, Schema::Ref { name: b }) if a == b);
        let via_ref = !same_ref
            && (matches!(reader, Schema::Ref { .. }) || matches!(writer, Schema::Ref { .. }))
            && kind(r) != Kind::Union
            && kind(w) != Kind::Union;
        let key = (r as *const Schema as usize, w as *const Schema as usize);
        let mut outcome = match self.memo.get(&key) {
            Some(Some(done)) => done.clone(),
            Some(None) => Outcome::default(),
            None => {
                self.memo.insert(key, None);
                let outcome = self.calculate(r, w, loc);
                self.memo.insert(key, Some(outcome.clone()));
                outcome
            }
        };
        if via_ref && outcome.is_ok() {
            outcome.corrections.insert(Correction::ResolvedReference);
        }
        outcome
    }

    fn calculate(&mut self, reader: &'s Schema, writer: &'s Schema, loc: &Loc) -> Outcome {
        let (rk, wk) = (kind(reader), kind(writer));
        if rk == wk {
            return match (reader, writer) {
                (Schema::Array(r), Schema::Array(w)) => {
                    self.get(&r.items, &w.items, &loc.child("items", "[]"))
                }
                (Schema::Map(r), Schema::Map(w)) => {
                    self.get(&r.types, &w.types, &loc.child("values", "{}"))
                }
                (Schema::Record(r), Schema::Record(w)) => {
                    let mut outcome = check_names(reader, writer, loc);
                    outcome.merge(self.check_fields(r, w, loc));
                    outcome
                }
                (Schema::Enum(r), Schema::Enum(w)) => {
                    let mut outcome = check_names(reader, writer, loc);
                    outcome.merge(check_symbols(reader, r, writer, w, loc));
                    outcome
                }
                (Schema::Union(_), Schema::Union(w)) => {
                    let mut outcome = Outcome::default();
                    for (index, branch) in w.variants().iter().enumerate() {
                        outcome.merge(self.get(reader, branch, &loc.branch(index)));
                    }
                    outcome
                }
                (Schema::Ref { name: r }, Schema::Ref { name: w }) => {
                    // Both sides name a type defined elsewhere (a schema reference): the definitions are not
                    // visible here, so equal full names are taken to mean the same type, as apache-avro does.
                    if r == w {
                        Outcome::default()
                    } else {
                        type_mismatch(reader, writer, loc)
                    }
                }
                _ if rk == Kind::Fixed => {
                    let mut outcome = check_names(reader, writer, loc);
                    outcome.merge(check_fixed_size(reader, writer, loc));
                    outcome.merge(decimal_note(reader, writer));
                    outcome
                }
                // Primitives of the same kind. Deviation from apache-avro: `uuid` on string vs `uuid` on fixed,
                // and a decimal on bytes vs one on fixed, are the same to apache-avro; they have different kinds
                // here (Java/Python compare the underlying types), so they never reach this arm and mismatch.
                _ => decimal_note(reader, writer),
            };
        }
        if wk == Kind::Union {
            // Every branch the writer may have written must be readable.
            let mut outcome = Outcome::default();
            if let Schema::Union(w) = writer {
                for (index, branch) in w.variants().iter().enumerate() {
                    outcome.merge(self.get(reader, branch, &loc.branch(index)));
                }
            }
            return outcome;
        }
        if promotes(wk, rk) {
            return Outcome::default();
        }
        if let Schema::Union(r) = reader {
            return self.read_into_union(reader, r.variants(), writer, loc);
        }
        type_mismatch(reader, writer, loc)
    }

    /// A non-union writer read by a union reader: the first compatible reader branch is used, as in Java.
    fn read_into_union(
        &mut self,
        reader: &'s Schema,
        branches: &'s [Schema],
        writer: &'s Schema,
        loc: &Loc,
    ) -> Outcome {
        let mut closest = None;
        for branch in branches {
            let outcome = self.get(branch, writer, loc);
            if outcome.is_ok() {
                return outcome;
            }
            // The verdict is the same whatever we report, but a branch of the writer's own kind and name explains
            // the failure far better ("field 'email' has no default") than "no branch matches".
            let r = Self::resolve(&self.reader_names, branch);
            if closest.is_none()
                && kind(r) == kind(writer)
                && r.name().map(|n| n.name()) == writer.name().map(|n| n.name())
            {
                closest = Some(outcome);
            }
        }
        closest.unwrap_or_else(|| {
            let message = format!(
                "{}: reader {} has no branch that can read writer type {}",
                loc.subject(),
                describe(reader),
                describe(writer)
            );
            Outcome::problem(loc.incompatibility(
                IncompatibilityKind::MissingUnionBranch,
                message,
                reader,
                writer,
            ))
        })
    }

    fn check_fields(
        &mut self,
        reader: &'s RecordSchema,
        writer: &'s RecordSchema,
        loc: &Loc,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        for (index, field) in reader.fields.iter().enumerate() {
            match lookup_writer_field(writer, field) {
                Some(written) => outcome.merge(self.get(
                    &field.schema,
                    &written.schema,
                    &loc.field_type(index, &field.name),
                )),
                // Java and Python, for a missing field of enum type whose enum has a default, compare the enum
                // with the whole writer record instead; that is always a type mismatch, so the verdict is the
                // same and we report the clearer reason.
                None if field.default.is_none() => {
                    let slot = loc.field_slot(index, &field.name);
                    let message = format!(
                        "reader field '{}' ({}) has no default and is missing from the writer schema",
                        field.name, slot.readable
                    );
                    outcome.merge(Outcome::problem(slot.incompatibility(
                        IncompatibilityKind::ReaderFieldMissingDefaultValue,
                        message,
                        &field.schema,
                        &Schema::Null,
                    )));
                }
                None => {}
            }
        }
        outcome
    }
}

/// Java's `lookupWriterField`: the writer field of the same name, else the first reader alias the writer has.
fn lookup_writer_field<'w>(
    writer: &'w RecordSchema,
    field: &RecordField,
) -> Option<&'w RecordField> {
    std::iter::once(&field.name)
        .chain(field.aliases.iter())
        .find_map(|name| writer.fields.iter().find(|w| &w.name == name))
}

/// Avro's promotions: int → long, float, double; long → float, double; float → double; string ↔ bytes.
fn promotes(writer: Kind, reader: Kind) -> bool {
    matches!(
        (writer, reader),
        (Kind::Int, Kind::Long | Kind::Float | Kind::Double)
            | (Kind::Long, Kind::Float | Kind::Double)
            | (Kind::Float, Kind::Double)
            | (Kind::String, Kind::Bytes)
            | (Kind::Bytes, Kind::String)
    )
}

fn type_mismatch(reader: &Schema, writer: &Schema, loc: &Loc) -> Outcome {
    let message = format!(
        "{}: reader type {} cannot read writer type {}",
        loc.subject(),
        describe(reader),
        describe(writer)
    );
    Outcome::problem(loc.incompatibility(
        IncompatibilityKind::TypeMismatch,
        message,
        reader,
        writer,
    ))
}

/// Java's `schemaNameEquals`: the unqualified names are equal, or the reader's aliases hold the writer's full name.
fn check_names(reader: &Schema, writer: &Schema, loc: &Loc) -> Outcome {
    let (Some(r), Some(w)) = (reader.name(), writer.name()) else {
        return Outcome::default();
    };
    if r.name() == w.name() {
        return Outcome::default();
    }
    let writer_full = w.fullname(None);
    // Deviation from apache-avro: it ignores type aliases, so a renamed record/enum/fixed whose reader names the
    // old name in `aliases` is a name mismatch there. Java and Python accept it. The parser has already qualified
    // each alias with the type's namespace, as the specification (and Java) say.
    if reader
        .aliases()
        .is_some_and(|aliases| aliases.iter().any(|a| a.fullname(None) == writer_full))
    {
        return Outcome::corrected(Correction::NamedTypeAlias);
    }
    let message = format!(
        "{}: reader type {} cannot read writer type {}: the names differ and the reader has no alias '{writer_full}'",
        loc.subject(),
        describe(reader),
        describe(writer)
    );
    Outcome::problem(loc.child("name", "").incompatibility(
        IncompatibilityKind::NameMismatch,
        message,
        reader,
        writer,
    ))
}

fn check_fixed_size(reader: &Schema, writer: &Schema, loc: &Loc) -> Outcome {
    match (fixed_of(reader), fixed_of(writer)) {
        (Some(r), Some(w)) if r.size != w.size => {
            let message = format!(
                "{}: reader fixed '{}' has size {} but the writer's has size {}",
                loc.subject(),
                r.name.fullname(None),
                r.size,
                w.size
            );
            Outcome::problem(loc.child("size", "").incompatibility(
                IncompatibilityKind::FixedSizeMismatch,
                message,
                reader,
                writer,
            ))
        }
        _ => Outcome::default(),
    }
}

/// Java's `checkReaderEnumContainsAllWriterEnumSymbols`: every writer symbol is a reader symbol, unless the reader
/// enum has a default symbol to read unknown ones as.
fn check_symbols(
    reader: &Schema,
    r: &EnumSchema,
    writer: &Schema,
    w: &EnumSchema,
    loc: &Loc,
) -> Outcome {
    let missing: Vec<&str> = w
        .symbols
        .iter()
        .filter(|s| !r.symbols.contains(s))
        .map(String::as_str)
        .collect();
    let has_default = r.default.as_ref().is_some_and(|d| r.symbols.contains(d));
    if missing.is_empty() || has_default {
        return Outcome::default();
    }
    let message = format!(
        "{}: reader enum '{}' lacks the writer's symbols [{}] and has no default symbol to read them as",
        loc.subject(),
        r.name.fullname(None),
        missing.join(", ")
    );
    Outcome::problem(loc.child("symbols", "").incompatibility(
        IncompatibilityKind::MissingEnumSymbols,
        message,
        reader,
        writer,
    ))
}

/// Deviation from apache-avro: it requires two decimals to have equal precision and scale. Java and Python ignore
/// logical types here and check only the carrier type, so such a pair is compatible for them.
fn decimal_note(reader: &Schema, writer: &Schema) -> Outcome {
    match (decimal_of(reader), decimal_of(writer)) {
        (Some(r), Some(w)) if r != w => Outcome::corrected(Correction::DecimalParameters),
        _ => Outcome::default(),
    }
}
