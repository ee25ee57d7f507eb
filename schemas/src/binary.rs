//! Avro binary encoding read in place: a cursor over one datum ([`Datum`]) that hands out numbers, borrowed strings
//! and bytes, and skips what its reader does not want; and on it a [`Projection`], which reads some flat fields of a
//! record into borrowed [`Cell`]s. Neither builds `apache_avro::types::Value`s (an owned `String` per field, a `Vec`
//! per record): the SQL scan and the jobs decode their inputs this way.
//!
//! The datum is hostile input: every read checks the bounds, lengths must fit in what is left, varints are at most
//! ten bytes, an `int` must fit 32 bits, a string must be UTF-8, and skipping is bounded in nesting depth and in
//! work (a block may claim 2^62 zero-byte items). What the cursor cannot read is a [`DatumError`], never a panic.

use std::collections::HashMap;

use apache_avro::schema::{InnerDecimalSchema, Name, RecordField, UuidSchema};
use apache_avro::Schema;

/// Named types of a schema, for [`Datum::skip`] to follow references (`apache_avro`'s `ResolvedSchema` names).
pub type Names<'s> = HashMap<Name, &'s Schema>;

/// Deepest nesting [`Datum::skip`] follows: a recursive schema (a linked list of records) lets the datum choose
/// the depth, one byte a level.
const MAX_SKIP_DEPTH: usize = 128;

/// Why a datum cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatumError {
    /// The datum ends inside a value.
    #[error("datum ends early")]
    Truncated,
    /// A varint runs past ten bytes.
    #[error("variable-length integer longer than ten bytes")]
    VarintOverflow,
    /// An `int` outside 32 bits.
    #[error("int {0} is outside 32 bits")]
    IntRange(i64),
    /// A string, bytes or block length below zero.
    #[error("negative length {0}")]
    NegativeLength(i64),
    /// A boolean byte other than 0 and 1.
    #[error("boolean byte {0:#04x}")]
    Boolean(u8),
    /// A string that is not UTF-8.
    #[error("string is not UTF-8")]
    NotUtf8,
    /// An enum index outside the symbols.
    #[error("enum index {index} of {symbols} symbols")]
    EnumIndex {
        /// The index read.
        index: i64,
        /// How many symbols the schema has.
        symbols: usize,
    },
    /// A union branch outside the union.
    #[error("union branch {index} of {branches}")]
    UnionBranch {
        /// The branch read.
        index: i64,
        /// How many branches the union has.
        branches: usize,
    },
    /// A reference to a type the schema does not define.
    #[error("schema references {0}, which it does not define")]
    UnknownName(String),
    /// Nesting deeper than the skip follows.
    #[error("values nested deeper than {MAX_SKIP_DEPTH} levels")]
    TooDeep,
    /// More array or map items than the datum could hold.
    #[error("more items than a datum of {0} bytes can hold")]
    TooManyItems(usize),
}

/// A cursor over one Avro binary datum.
pub struct Datum<'a> {
    bytes: &'a [u8],
    position: usize,
    /// Array and map items [`Datum::skip`] may still visit: a bound on work for items that take no bytes.
    item_budget: usize,
}

impl<'a> Datum<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Datum<'a> {
        Datum {
            bytes,
            position: 0,
            item_budget: bytes.len().saturating_mul(8).saturating_add(1024),
        }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.position
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DatumError> {
        let end = self
            .position
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(DatumError::Truncated)?;
        let taken = &self.bytes[self.position..end];
        self.position = end;
        Ok(taken)
    }

    /// A zigzag varint `long`.
    pub fn long(&mut self) -> Result<i64, DatumError> {
        let mut value = 0u64;
        for index in 0..10 {
            let byte = *self.bytes.get(self.position).ok_or(DatumError::Truncated)?;
            self.position += 1;
            value |= u64::from(byte & 0x7f) << (index * 7);
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(DatumError::VarintOverflow)
    }

    /// A zigzag varint `int`.
    pub fn int(&mut self) -> Result<i32, DatumError> {
        let value = self.long()?;
        i32::try_from(value).map_err(|_| DatumError::IntRange(value))
    }

    /// A `boolean`.
    pub fn boolean(&mut self) -> Result<bool, DatumError> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DatumError::Boolean(other)),
        }
    }

    /// A `float`.
    pub fn float(&mut self) -> Result<f32, DatumError> {
        let bytes = self.take(4)?;
        Ok(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A `double`.
    pub fn double(&mut self) -> Result<f64, DatumError> {
        let mut le = [0u8; 8];
        le.copy_from_slice(self.take(8)?);
        Ok(f64::from_le_bytes(le))
    }

    /// A length (of bytes, a string or a block's byte size).
    fn length(&mut self) -> Result<usize, DatumError> {
        let length = self.long()?;
        usize::try_from(length).map_err(|_| DatumError::NegativeLength(length))
    }

    /// `bytes`, borrowed.
    pub fn bytes(&mut self) -> Result<&'a [u8], DatumError> {
        let length = self.length()?;
        self.take(length)
    }

    /// A `string`, borrowed.
    pub fn str(&mut self) -> Result<&'a str, DatumError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DatumError::NotUtf8)
    }

    /// A `fixed` of `size` bytes, borrowed.
    pub fn fixed(&mut self, size: usize) -> Result<&'a [u8], DatumError> {
        self.take(size)
    }

    /// An enum's symbol among `symbols`.
    pub fn symbol<'s>(&mut self, symbols: &'s [String]) -> Result<&'s str, DatumError> {
        let index = self.long()?;
        usize::try_from(index)
            .ok()
            .and_then(|i| symbols.get(i))
            .map(String::as_str)
            .ok_or(DatumError::EnumIndex {
                index,
                symbols: symbols.len(),
            })
    }

    /// A union's branch index, below `branches`.
    pub fn branch(&mut self, branches: usize) -> Result<usize, DatumError> {
        let index = self.long()?;
        usize::try_from(index)
            .ok()
            .filter(|i| *i < branches)
            .ok_or(DatumError::UnionBranch { index, branches })
    }

    /// Moves past one value of `schema` (references looked up in `names`).
    pub fn skip<'s>(&mut self, schema: &'s Schema, names: &Names<'s>) -> Result<(), DatumError> {
        self.skip_at(schema, names, 0)
    }

    fn skip_at<'s>(
        &mut self,
        schema: &'s Schema,
        names: &Names<'s>,
        depth: usize,
    ) -> Result<(), DatumError> {
        if depth > MAX_SKIP_DEPTH {
            return Err(DatumError::TooDeep);
        }
        // Flat values are checked as a reader would check them, even when skipped: a datum whose skipped string
        // is not UTF-8, or whose enum index is out of range, is not Avro, and reading only some fields must not
        // make it valid.
        if let Some(encoding) = Encoding::of(schema, names) {
            self.read_flat(&encoding)?;
            return Ok(());
        }
        match schema {
            Schema::Null => {}
            Schema::Uuid(UuidSchema::String) => {
                self.str()?;
            }
            Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => {
                self.bytes()?;
            }
            Schema::Decimal(decimal) => match &decimal.inner {
                InnerDecimalSchema::Bytes => {
                    self.bytes()?;
                }
                InnerDecimalSchema::Fixed(fixed) => {
                    self.take(fixed.size)?;
                }
            },
            Schema::Duration(fixed) | Schema::Uuid(UuidSchema::Fixed(fixed)) => {
                self.take(fixed.size)?;
            }
            Schema::Array(array) => self.skip_blocks(depth, |datum, depth| {
                datum.skip_at(&array.items, names, depth)
            })?,
            Schema::Map(map) => self.skip_blocks(depth, |datum, depth| {
                datum.bytes()?;
                datum.skip_at(&map.types, names, depth)
            })?,
            Schema::Record(record) => {
                for field in &record.fields {
                    self.skip_at(&field.schema, names, depth + 1)?;
                }
            }
            Schema::Union(union) => {
                let variants = union.variants();
                let branch = self.branch(variants.len())?;
                self.skip_at(&variants[branch], names, depth + 1)?;
            }
            Schema::Ref { name } => {
                let named = names
                    .get(name)
                    .ok_or_else(|| DatumError::UnknownName(name.fullname(None)))?;
                self.skip_at(named, names, depth + 1)?;
            }
            // Flat: read above.
            Schema::Boolean
            | Schema::Int
            | Schema::Long
            | Schema::Float
            | Schema::Double
            | Schema::Bytes
            | Schema::String
            | Schema::Fixed(_)
            | Schema::Enum(_)
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {}
        }
        Ok(())
    }

    /// One flat value of `encoding`, checked and returned as a cell.
    fn read_flat<'s, 'c>(&mut self, encoding: &Encoding<'s>) -> Result<Cell<'c>, DatumError>
    where
        'a: 'c,
        's: 'c,
    {
        Ok(match encoding {
            Encoding::Boolean => Cell::Boolean(self.boolean()?),
            Encoding::Int => Cell::Long(i64::from(self.int()?)),
            Encoding::Long => Cell::Long(self.long()?),
            Encoding::Float => Cell::Float(self.float()?),
            Encoding::Double => Cell::Double(self.double()?),
            Encoding::String => Cell::Str(self.str()?),
            Encoding::Bytes => Cell::Bytes(self.bytes()?),
            Encoding::Fixed(size) => Cell::Bytes(self.fixed(*size)?),
            Encoding::Enum(symbols) => Cell::Str(self.symbol(symbols)?),
        })
    }

    /// Skips the blocks of an array or map, `item` skipping one item. A block with a negative count carries its
    /// byte size and is jumped over whole.
    fn skip_blocks(
        &mut self,
        depth: usize,
        mut item: impl FnMut(&mut Datum<'a>, usize) -> Result<(), DatumError>,
    ) -> Result<(), DatumError> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                let size = self.length()?;
                self.take(size)?;
                continue;
            }
            let count = usize::try_from(count).map_err(|_| DatumError::NegativeLength(count))?;
            self.item_budget = self
                .item_budget
                .checked_sub(count)
                .ok_or(DatumError::TooManyItems(self.bytes.len()))?;
            for _ in 0..count {
                item(self, depth + 1)?;
            }
        }
    }
}

/// The Avro encoding of a flat value (what [`Projection`] reads); enum symbols borrowed from the schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Encoding<'s> {
    /// boolean.
    Boolean,
    /// int, date, time-millis.
    Int,
    /// long, time-micros, the timestamps.
    Long,
    /// float.
    Float,
    /// double.
    Double,
    /// string.
    String,
    /// bytes.
    Bytes,
    /// fixed of this size.
    Fixed(usize),
    /// enum with these symbols.
    Enum(&'s [String]),
}

impl<'s> Encoding<'s> {
    /// The encoding of `schema` when flat; None for anything else (arrays, maps, records, unions, decimals, UUIDs).
    fn of(schema: &'s Schema, names: &Names<'s>) -> Option<Encoding<'s>> {
        Some(match schema {
            Schema::Boolean => Encoding::Boolean,
            Schema::Int | Schema::Date | Schema::TimeMillis => Encoding::Int,
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => Encoding::Long,
            Schema::Float => Encoding::Float,
            Schema::Double => Encoding::Double,
            Schema::String => Encoding::String,
            Schema::Bytes => Encoding::Bytes,
            Schema::Fixed(fixed) => Encoding::Fixed(fixed.size),
            Schema::Enum(e) => Encoding::Enum(&e.symbols),
            Schema::Ref { name } => return Encoding::of(names.get(name)?, names),
            _ => return None,
        })
    }

    /// Whether Avro resolves a value written as `self` to a reader field of encoding `reader`: the same encoding
    /// (enums with the same symbols), or a promotion. Bytes to string is left out: it needs a UTF-8 check the
    /// cells do not make.
    fn resolves_to(&self, reader: &Encoding<'_>) -> bool {
        self == reader
            || matches!(
                (self, reader),
                (
                    Encoding::Int,
                    Encoding::Long | Encoding::Float | Encoding::Double
                ) | (Encoding::Long, Encoding::Float | Encoding::Double)
                    | (Encoding::Float, Encoding::Double)
                    | (Encoding::String, Encoding::Bytes)
            )
    }
}

/// A flat field, optional when a union of it and null.
#[derive(Debug, Clone)]
struct Shape<'s> {
    encoding: Encoding<'s>,
    /// Branch count and the null branch's index, for a union.
    union: Option<(usize, Option<usize>)>,
}

impl<'s> Shape<'s> {
    fn of(schema: &'s Schema, names: &Names<'s>) -> Option<Shape<'s>> {
        let Schema::Union(union) = schema else {
            return Some(Shape {
                encoding: Encoding::of(schema, names)?,
                union: None,
            });
        };
        let variants = union.variants();
        let null = variants.iter().position(|v| matches!(v, Schema::Null));
        let mut values = variants.iter().filter(|v| !matches!(v, Schema::Null));
        let (Some(value), None) = (values.next(), values.next()) else {
            return None;
        };
        Some(Shape {
            encoding: Encoding::of(value, names)?,
            union: Some((variants.len(), null)),
        })
    }

    fn nullable(&self) -> bool {
        self.union.is_some_and(|(_, null)| null.is_some())
    }
}

/// One value a [`Projection`] read, borrowed from the datum (strings and bytes) or from the writer schema (enum
/// symbols, which live for the process like every writer schema).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// Null, or a wanted field the writer does not have.
    Null,
    /// A boolean.
    Boolean(bool),
    /// An int or a long.
    Long(i64),
    /// A float.
    Float(f32),
    /// A double.
    Double(f64),
    /// A string, or an enum's symbol.
    Str(&'a str),
    /// Bytes or a fixed.
    Bytes(&'a [u8]),
}

/// What a [`Projection`] does with one field of the writer's record.
#[derive(Debug)]
enum Step {
    /// Not wanted: move past it.
    Skip(&'static Schema),
    /// Read it into cell `slot`.
    Read { slot: usize, shape: Shape<'static> },
}

/// Some flat fields of a reader schema, read from datums of one writer schema without building values: the
/// wanted fields in place, the others skipped.
///
/// Built when the writer is the reader or resolves to it field by field: fields matched by name or by the reader
/// field's aliases (as the Avro specification and the registry's compatibility check have it; `apache_avro` 0.22's
/// resolver matches names only), the same encodings or a promotion, an optional writer field only into an optional
/// reader field, and a wanted reader field the writer lacks only when its default is null.
#[derive(Debug)]
pub struct Projection {
    steps: Vec<Step>,
    names: Names<'static>,
    /// The writer's encoding of each wanted field (None: the writer lacks it).
    encodings: Vec<Option<Encoding<'static>>>,
}

/// The named types of `schema`.
fn resolved_names(schema: &Schema) -> Result<Names<'_>, NoProjection> {
    apache_avro::schema::ResolvedSchema::try_from(schema)
        .map(|r| r.get_names().clone())
        .map_err(|_| NoProjection::NotRecords)
}

fn field_matches(reader: &RecordField, writer: &RecordField) -> bool {
    reader.name == writer.name || reader.aliases.contains(&writer.name)
}

/// Why there is no [`Projection`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoProjection {
    /// Writer or reader is not a record schema, or a schema does not resolve its names.
    #[error("not record schemas that resolve")]
    NotRecords,
    /// A wanted field is not flat (an array, map, record, union of several types, decimal or UUID).
    #[error("field {0} is not flat")]
    NotFlat(String),
    /// A wanted field's writer type does not resolve to the reader's by name, encoding or promotion.
    #[error("field {0} does not resolve to the reader's type")]
    Unresolvable(String),
    /// A wanted reader field the writer lacks has a default other than null.
    #[error("field {0} is missing from the writer and its default is not null")]
    NonNullDefault(String),
    /// The same reader field is wanted twice.
    #[error("reader field #{0} is wanted twice")]
    Repeated(usize),
}

impl Projection {
    /// The projection of `reader`'s fields at `wanted` (indexes into its fields; cell i holds field `wanted[i]`)
    /// from datums written with `writer`.
    pub fn new(
        writer: &'static Schema,
        reader: &Schema,
        wanted: &[usize],
    ) -> Result<Projection, NoProjection> {
        let (Schema::Record(writer_record), Schema::Record(reader_record)) = (writer, reader)
        else {
            return Err(NoProjection::NotRecords);
        };
        let names: Names<'static> = resolved_names(writer)?;
        let reader_names = resolved_names(reader)?;
        for (i, index) in wanted.iter().enumerate() {
            if wanted[..i].contains(index) {
                return Err(NoProjection::Repeated(*index));
            }
        }
        let same = writer.canonical_form() == reader.canonical_form();
        let mut encodings = vec![None; wanted.len()];
        let mut steps = Vec::with_capacity(writer_record.fields.len());
        for field in &writer_record.fields {
            let reader_index = reader_record
                .fields
                .iter()
                .position(|r| field_matches(r, field));
            let slot = reader_index.and_then(|r| wanted.iter().position(|w| *w == r));
            let (Some(slot), Some(reader_index)) = (slot, reader_index) else {
                steps.push(Step::Skip(&field.schema));
                continue;
            };
            let shape = Shape::of(&field.schema, &names)
                .ok_or_else(|| NoProjection::NotFlat(field.name.clone()))?;
            if !same {
                let reader_field = &reader_record.fields[reader_index];
                let wanted = Shape::of(&reader_field.schema, &reader_names)
                    .ok_or_else(|| NoProjection::NotFlat(reader_field.name.clone()))?;
                if !shape.encoding.resolves_to(&wanted.encoding)
                    || (shape.nullable() && !wanted.nullable())
                {
                    return Err(NoProjection::Unresolvable(reader_field.name.clone()));
                }
            }
            encodings[slot] = Some(shape.encoding.clone());
            steps.push(Step::Read { slot, shape });
        }
        for (slot, index) in wanted.iter().enumerate() {
            let field = &reader_record.fields[*index];
            if encodings[slot].is_none() && !field.default.as_ref().is_some_and(|d| d.is_null()) {
                return Err(NoProjection::NonNullDefault(field.name.clone()));
            }
        }
        Ok(Projection {
            steps,
            names,
            encodings,
        })
    }

    /// The writer's encoding of wanted field `slot` (None: the writer lacks it, and it reads as null).
    pub fn encoding(&self, slot: usize) -> Option<&Encoding<'static>> {
        self.encodings.get(slot).and_then(Option::as_ref)
    }

    /// Reads one datum into `cells` (one per wanted field) and returns the bytes it took: the caller decides what
    /// bytes left after the record mean.
    pub fn read<'a>(&self, datum: &'a [u8], cells: &mut [Cell<'a>]) -> Result<usize, DatumError> {
        cells.fill(Cell::Null);
        let mut datum = Datum::new(datum);
        for step in &self.steps {
            match step {
                Step::Skip(schema) => datum.skip(schema, &self.names)?,
                Step::Read { slot, shape } => {
                    if let Some((branches, null)) = shape.union {
                        if Some(datum.branch(branches)?) == null {
                            continue;
                        }
                    }
                    cells[*slot] = datum.read_flat(&shape.encoding)?;
                }
            }
        }
        Ok(datum.position())
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value;
    use apache_avro::writer::datum::GenericDatumWriter;
    use apache_avro::Schema;

    use super::*;

    fn encode(schema: &Schema, value: Value) -> Result<Vec<u8>, apache_avro::Error> {
        GenericDatumWriter::builder(schema)
            .build()?
            .write_value_to_vec(value)
    }
    fn names(schema: &Schema) -> Names<'_> {
        apache_avro::schema::ResolvedSchema::try_from(schema)
            .expect("resolves")
            .get_names()
            .clone()
    }

    #[test]
    fn reads_what_apache_avro_writes() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[
                {"name":"i","type":"int"},{"name":"l","type":"long"},{"name":"b","type":"boolean"},
                {"name":"f","type":"float"},{"name":"d","type":"double"},{"name":"s","type":"string"},
                {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}},
                {"name":"u","type":["null","string"]}]}"#,
        )
        .expect("schema");
        let value = Value::Record(vec![
            ("i".into(), Value::Int(i32::MIN)),
            ("l".into(), Value::Long(i64::MAX)),
            ("b".into(), Value::Boolean(true)),
            ("f".into(), Value::Float(1.5)),
            ("d".into(), Value::Double(-2.25)),
            ("s".into(), Value::String("grüße".into())),
            ("e".into(), Value::Enum(2, "C".into())),
            (
                "u".into(),
                Value::Union(1, Box::new(Value::String("x".into()))),
            ),
        ]);
        let bytes = encode(&schema, value).expect("encodes");
        let mut datum = Datum::new(&bytes);
        assert_eq!(datum.int(), Ok(i32::MIN));
        assert_eq!(datum.long(), Ok(i64::MAX));
        assert_eq!(datum.boolean(), Ok(true));
        assert_eq!(datum.float(), Ok(1.5));
        assert_eq!(datum.double(), Ok(-2.25));
        assert_eq!(datum.str(), Ok("grüße"));
        let symbols = ["A".to_owned(), "B".to_owned(), "C".to_owned()];
        assert_eq!(datum.symbol(&symbols), Ok("C"));
        assert_eq!(datum.branch(2), Ok(1));
        assert_eq!(datum.str(), Ok("x"));
        assert_eq!(datum.position(), bytes.len());
    }

    #[test]
    fn skips_nested_arrays_maps_records_and_unions_to_the_next_field() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"Outer","fields":[
                {"name":"points","type":{"type":"array","items":{"type":"record","name":"P","fields":[
                    {"name":"t","type":"long"},{"name":"tags","type":{"type":"map","values":"string"}}]}}},
                {"name":"maybe","type":["null","P"]},
                {"name":"after","type":"string"}]}"#,
        )
        .expect("schema");
        let point = |t: i64| {
            Value::Record(vec![
                ("t".into(), Value::Long(t)),
                (
                    "tags".into(),
                    Value::Map([("k".to_owned(), Value::String("v".into()))].into()),
                ),
            ])
        };
        let value = Value::Record(vec![
            ("points".into(), Value::Array(vec![point(1), point(-7)])),
            ("maybe".into(), Value::Union(1, Box::new(point(3)))),
            ("after".into(), Value::String("here".into())),
        ]);
        let bytes = encode(&schema, value).expect("encodes");
        let Schema::Record(record) = &schema else {
            unreachable!("a record schema")
        };
        let names = names(&schema);
        let mut datum = Datum::new(&bytes);
        datum
            .skip(&record.fields[0].schema, &names)
            .expect("array skipped");
        datum
            .skip(&record.fields[1].schema, &names)
            .expect("union skipped");
        assert_eq!(datum.str(), Ok("here"));
    }

    #[test]
    fn hostile_datums_are_errors_not_panics_or_endless_work() {
        assert_eq!(Datum::new(&[]).long(), Err(DatumError::Truncated));
        assert_eq!(
            Datum::new(&[0xff; 11]).long(),
            Err(DatumError::VarintOverflow)
        );
        // 2^40 as a long, read as an int.
        assert!(matches!(
            Datum::new(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x40]).int(),
            Err(DatumError::IntRange(_))
        ));
        // Length -1, and a length past the end.
        assert_eq!(
            Datum::new(&[0x01]).bytes(),
            Err(DatumError::NegativeLength(-1))
        );
        assert_eq!(Datum::new(&[0x08, b'a']).str(), Err(DatumError::Truncated));
        assert_eq!(Datum::new(&[0x02, 0xff]).str(), Err(DatumError::NotUtf8));
        assert_eq!(Datum::new(&[0x02]).boolean(), Err(DatumError::Boolean(2)));
        // Skipped values are checked as read ones are: an enum index past the symbols, a string not UTF-8.
        let skipped = Schema::parse_str(
            r#"{"type":"record","name":"S","fields":[
                {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},{"name":"s","type":"string"}]}"#,
        )
        .expect("schema");
        assert!(matches!(
            Datum::new(&[0x08, 0x00]).skip(&skipped, &names(&skipped)),
            Err(DatumError::EnumIndex { index: 4, .. })
        ));
        assert_eq!(
            Datum::new(&[0x02, 0x02, 0xff]).skip(&skipped, &names(&skipped)),
            Err(DatumError::NotUtf8)
        );
        // An array claiming 2^62 items of type null takes no bytes per item: refused, not iterated.
        let nulls = Schema::parse_str(r#"{"type":"array","items":"null"}"#).expect("schema");
        let huge = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(matches!(
            Datum::new(&huge).skip(&nulls, &Names::new()),
            Err(DatumError::TooManyItems(_))
        ));
        // A recursive list as deep as the datum is long.
        let list = Schema::parse_str(
            r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#,
        )
        .expect("schema");
        let deep = vec![0x02; 10_000];
        assert_eq!(
            Datum::new(&deep).skip(&list, &names(&list)),
            Err(DatumError::TooDeep)
        );
    }
}
