//! Confluent-framed Avro straight into Arrow columns, for the scan's common case.
//!
//! The common case: every projected value column is flat (boolean, number, string, enum, bytes, fixed or a time
//! type, optional or not), and the record's writer schema is the table's reader schema or resolves to it field by
//! field with the same types, Avro's promotions (int → long/float/double, long → float/double, float → double,
//! string → bytes), and reader fields the writer lacks defaulting to null. Then a [`DirectPlan`] per writer schema
//! id reads each wanted field in place from the payload, skips the others, and copies a string once, into its
//! Arrow buffer.
//!
//! The reading itself is [`adstream_schemas::binary::Projection`]'s, which matches fields by name or by the reader
//! field's aliases, as the Avro specification and the registry's compatibility check have it; `apache_avro` 0.22's
//! resolver matches names only, so on the general path a field renamed with an alias reads as null.
//!
//! Everything else has no plan and goes through `apache_avro`'s resolver and [`crate::avro_arrow::build_column`]:
//! a projected array, map, record or union of several types, decimals and UUIDs, a default other than null,
//! enums whose symbols differ between writer and reader. That general path builds an `apache_avro::types::Value`
//! with an owned `String` per field, wanted or not; it was the scan's cost (231k rows per CPU-second against the
//! raw consumer's 961k).

use std::collections::HashMap;
use std::sync::Arc;

pub(crate) use adstream_schemas::binary::Cell;
use adstream_schemas::binary::{DatumError, Encoding, Projection};
use apache_avro::Schema;
use datafusion::arrow::array::builder::NullBufferBuilder;
use datafusion::arrow::array::{
    make_array, ArrayData, ArrayRef, BinaryBuilder, BooleanBuilder, StringBuilder,
};
use datafusion::arrow::buffer::Buffer;
use datafusion::arrow::datatypes::{ArrowNativeType, DataType, Field};
use datafusion::arrow::error::ArrowError;

/// How a column is held while a batch is built, from its Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    Boolean,
    /// Int32, Date32, Time32.
    I32,
    /// Int64, Timestamp, Time64, Date64.
    I64,
    F32,
    F64,
    Utf8,
    Binary,
}

impl Store {
    /// The store of a column of `data_type`; None for types the direct path does not build (lists, structs).
    pub(crate) fn of(data_type: &DataType) -> Option<Store> {
        Some(match data_type {
            DataType::Boolean => Store::Boolean,
            DataType::Int32 | DataType::Date32 | DataType::Time32(_) => Store::I32,
            DataType::Int64 | DataType::Date64 | DataType::Time64(_) | DataType::Timestamp(..) => {
                Store::I64
            }
            DataType::Float32 => Store::F32,
            DataType::Float64 => Store::F64,
            DataType::Utf8 => Store::Utf8,
            DataType::Binary => Store::Binary,
            _ => return None,
        })
    }
}

/// Whether a value written as `encoding` fills a column held as `store`.
fn fills(encoding: &Encoding<'_>, store: Store) -> bool {
    matches!(
        (encoding, store),
        (Encoding::Boolean, Store::Boolean)
            | (
                Encoding::Int,
                Store::I32 | Store::I64 | Store::F32 | Store::F64
            )
            | (Encoding::Long, Store::I64 | Store::F32 | Store::F64)
            | (Encoding::Float, Store::F32 | Store::F64)
            | (Encoding::Double, Store::F64)
            | (Encoding::String, Store::Utf8 | Store::Binary)
            | (Encoding::Bytes | Encoding::Fixed(_), Store::Binary)
            | (Encoding::Enum(_), Store::Utf8)
    )
}

/// How the records of one writer schema are read into the projected value columns: a [`Projection`] of the
/// reader's fields whose every cell fits its column.
#[derive(Debug)]
pub(crate) struct DirectPlan {
    projection: Projection,
}

impl DirectPlan {
    /// The plan reading records written with `writer` as `reader` records into `slots` (per projected value column
    /// in projection order: the reader field's index and the column's store); None when the direct path cannot
    /// (see the module doc).
    pub(crate) fn new(
        writer: &'static Schema,
        reader: &Schema,
        slots: &[(usize, Store)],
    ) -> Option<DirectPlan> {
        let wanted: Vec<usize> = slots.iter().map(|(index, _)| *index).collect();
        let projection = Projection::new(writer, reader, &wanted).ok()?;
        let fit = slots.iter().enumerate().all(|(slot, (_, store))| {
            projection
                .encoding(slot)
                .is_none_or(|encoding| fills(encoding, *store))
        });
        fit.then_some(DirectPlan { projection })
    }

    /// Reads one datum into `cells` (one per slot; slots the writer lacks stay null). Bytes after the record are
    /// ignored, as `apache_avro`'s reader on the general path ignores them.
    pub(crate) fn read<'a>(
        &self,
        datum: &'a [u8],
        cells: &mut [Cell<'a>],
    ) -> Result<(), DatumError> {
        self.projection.read(datum, cells).map(|_| ())
    }
}

/// A plan per writer schema id, built on first sight (None: that id takes the general path).
pub(crate) type Plans = HashMap<u32, Option<DirectPlan>>;

/// Numbers and their validity, for a primitive column.
struct Primitive<T> {
    values: Vec<T>,
    nulls: NullBufferBuilder,
}

impl<T: ArrowNativeType> Primitive<T> {
    fn new(rows: usize) -> Self {
        Primitive {
            values: Vec::with_capacity(rows),
            nulls: NullBufferBuilder::new(rows),
        }
    }

    fn push(&mut self, value: Option<T>) {
        self.values.push(value.unwrap_or_default());
        self.nulls.append(value.is_some());
    }

    fn finish(mut self, data_type: &DataType) -> Result<ArrayRef, ArrowError> {
        let len = self.values.len();
        let data = ArrayData::builder(data_type.clone())
            .len(len)
            .add_buffer(Buffer::from_vec(self.values))
            .nulls(self.nulls.finish())
            .build()?;
        Ok(make_array(data))
    }
}

/// One projected value column being built.
enum Column {
    Boolean(BooleanBuilder),
    I32(Primitive<i32>),
    I64(Primitive<i64>),
    F32(Primitive<f32>),
    F64(Primitive<f64>),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
}

/// The projected value columns of one batch, filled a row at a time.
pub(crate) struct DirectColumns {
    columns: Vec<Column>,
}

impl DirectColumns {
    /// Empty columns of `stores`, sized for `rows`.
    pub(crate) fn new(stores: &[Store], rows: usize) -> DirectColumns {
        let columns = stores
            .iter()
            .map(|store| match store {
                Store::Boolean => Column::Boolean(BooleanBuilder::with_capacity(rows)),
                Store::I32 => Column::I32(Primitive::new(rows)),
                Store::I64 => Column::I64(Primitive::new(rows)),
                Store::F32 => Column::F32(Primitive::new(rows)),
                Store::F64 => Column::F64(Primitive::new(rows)),
                Store::Utf8 => Column::Utf8(StringBuilder::with_capacity(rows, rows * 16)),
                Store::Binary => Column::Binary(BinaryBuilder::with_capacity(rows, rows * 16)),
            })
            .collect();
        DirectColumns { columns }
    }

    /// Appends one row. A cell that does not fit its column is appended as null; the plan only pairs what fits
    /// ([`fills`]), so that does not happen.
    pub(crate) fn push(&mut self, cells: &[Cell<'_>]) {
        for (column, cell) in self.columns.iter_mut().zip(cells) {
            match (column, *cell) {
                (Column::Boolean(b), Cell::Boolean(v)) => b.append_value(v),
                (Column::Boolean(b), _) => b.append_null(),
                (Column::I32(p), Cell::Long(v)) => p.push(i32::try_from(v).ok()),
                (Column::I32(p), _) => p.push(None),
                (Column::I64(p), Cell::Long(v)) => p.push(Some(v)),
                (Column::I64(p), _) => p.push(None),
                (Column::F32(p), Cell::Long(v)) => p.push(Some(v as f32)),
                (Column::F32(p), Cell::Float(v)) => p.push(Some(v)),
                (Column::F32(p), _) => p.push(None),
                (Column::F64(p), Cell::Long(v)) => p.push(Some(v as f64)),
                (Column::F64(p), Cell::Float(v)) => p.push(Some(f64::from(v))),
                (Column::F64(p), Cell::Double(v)) => p.push(Some(v)),
                (Column::F64(p), _) => p.push(None),
                (Column::Utf8(s), Cell::Str(v)) => s.append_value(v),
                (Column::Utf8(s), _) => s.append_null(),
                (Column::Binary(b), Cell::Bytes(v)) => b.append_value(v),
                (Column::Binary(b), Cell::Str(v)) => b.append_value(v.as_bytes()),
                (Column::Binary(b), _) => b.append_null(),
            }
        }
    }

    /// The columns as Arrow arrays of `fields`' types (in store order).
    pub(crate) fn finish(self, fields: &[&Field]) -> Result<Vec<ArrayRef>, ArrowError> {
        self.columns
            .into_iter()
            .zip(fields)
            .map(|(column, field)| {
                let data_type = field.data_type();
                match column {
                    Column::Boolean(mut b) => Ok(Arc::new(b.finish()) as ArrayRef),
                    Column::I32(p) => p.finish(data_type),
                    Column::I64(p) => p.finish(data_type),
                    Column::F32(p) => p.finish(data_type),
                    Column::F64(p) => p.finish(data_type),
                    Column::Utf8(mut s) => Ok(Arc::new(s.finish()) as ArrayRef),
                    Column::Binary(mut b) => Ok(Arc::new(b.finish()) as ArrayRef),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::types::Value;
    use apache_avro::writer::datum::GenericDatumWriter;
    use apache_avro::Schema;
    use datafusion::arrow::array::{Array, AsArray};

    use super::*;
    use crate::avro_arrow::{build_column, record_fields};

    fn encode(schema: &Schema, value: Value) -> Result<Vec<u8>, apache_avro::Error> {
        GenericDatumWriter::builder(schema)
            .build()?
            .write_value_to_vec(value)
    }
    fn leak(json: &str) -> &'static Schema {
        Box::leak(Box::new(Schema::parse_str(json).expect("schema")))
    }

    const WRITER: &str = r#"{"type":"record","name":"Event","fields":[
        {"name":"id","type":"string"},
        {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["VIEW","CLICK"]}},
        {"name":"user","type":["null","string"]},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"count","type":"int"},
        {"name":"cost","type":"long"},
        {"name":"score","type":["double","null"]},
        {"name":"ok","type":"boolean"},
        {"name":"blob","type":"bytes"}]}"#;

    fn event(id: &str, user: Option<&str>, score: Option<f64>) -> Value {
        Value::Record(vec![
            ("id".into(), Value::String(id.into())),
            ("at".into(), Value::TimestampMillis(1_700_000_000_123)),
            ("kind".into(), Value::Enum(1, "CLICK".into())),
            (
                "user".into(),
                match user {
                    Some(u) => Value::Union(1, Box::new(Value::String(u.into()))),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            ),
            (
                "tags".into(),
                Value::Array(vec![Value::String("a".into()), Value::String("b".into())]),
            ),
            ("count".into(), Value::Int(-3)),
            ("cost".into(), Value::Long(1_234_567)),
            (
                "score".into(),
                match score {
                    Some(s) => Value::Union(0, Box::new(Value::Double(s))),
                    None => Value::Union(1, Box::new(Value::Null)),
                },
            ),
            ("ok".into(), Value::Boolean(true)),
            ("blob".into(), Value::Bytes(vec![0, 255])),
        ])
    }

    /// The projected columns of `datums` (written with `writer`) read as `reader`, through the direct plan and
    /// through apache_avro's resolver + `build_column`.
    fn both_ways(
        writer: &'static Schema,
        reader: &Schema,
        projection: &[usize],
        datums: &[Vec<u8>],
    ) -> (Vec<ArrayRef>, Vec<ArrayRef>) {
        let fields = record_fields(reader).expect("fields");
        let wanted: Vec<&Field> = projection.iter().map(|i| &fields[*i]).collect();
        let slots: Vec<(usize, Store)> = projection
            .iter()
            .map(|i| (*i, Store::of(fields[*i].data_type()).expect("flat")))
            .collect();
        let plan = DirectPlan::new(writer, reader, &slots).expect("a direct plan");
        let stores: Vec<Store> = slots.iter().map(|(_, s)| *s).collect();
        let mut columns = DirectColumns::new(&stores, datums.len());
        let mut cells = vec![Cell::Null; slots.len()];
        for datum in datums {
            plan.read(datum, &mut cells).expect("reads");
            columns.push(&cells);
        }
        let direct = columns.finish(&wanted).expect("arrays");

        let values: Vec<Value> = datums
            .iter()
            .map(|d| {
                GenericDatumReader::builder(writer)
                    .reader_schema(reader)
                    .build()
                    .and_then(|r| r.read_value(&mut d.as_slice()))
                    .expect("resolves")
            })
            .collect();
        let general = projection
            .iter()
            .map(|i| {
                let cells: Vec<Option<&Value>> = values
                    .iter()
                    .map(|v| match v {
                        Value::Record(fields) => fields.get(*i).map(|(_, v)| v),
                        _ => None,
                    })
                    .collect();
                build_column(fields[*i].name(), fields[*i].data_type(), &cells).expect("column")
            })
            .collect();
        (direct, general)
    }

    #[test]
    fn the_direct_plan_builds_the_same_columns_as_the_general_path() {
        let writer = leak(WRITER);
        let datums: Vec<Vec<u8>> = [
            event("e1", Some("u1"), Some(0.5)),
            event("e2", None, None),
            event("ë3", Some(""), Some(-1e300)),
        ]
        .into_iter()
        .map(|v| encode(writer, v).expect("encodes"))
        .collect();
        // Every flat column, in an order other than the schema's, the array skipped.
        let (direct, general) = both_ways(writer, writer, &[9, 7, 0, 1, 2, 3, 5, 6, 8], &datums);
        assert_eq!(direct.len(), 9);
        for (d, g) in direct.iter().zip(&general) {
            assert_eq!(d.to_data(), g.to_data());
        }
        // `user`, null in the second event.
        assert_eq!(direct[5].null_count(), 1);
    }

    #[test]
    fn an_evolved_writer_resolves_by_name_with_promotions_and_null_defaults() {
        let writer = leak(WRITER);
        // The reader renamed `user` (alias), widened `count` to long and `cost` to double, dropped `tags`, and
        // added `region` with a null default.
        let reader = Schema::parse_str(
            r#"{"type":"record","name":"Event","fields":[
            {"name":"cost","type":"double"},
            {"name":"viewer","aliases":["user"],"type":["null","string"],"default":null},
            {"name":"count","type":"long"},
            {"name":"region","type":["null","string"],"default":null},
            {"name":"id","type":"string"}]}"#,
        )
        .expect("schema");
        let datums = vec![
            encode(writer, event("e1", Some("u1"), Some(0.5))).expect("encodes"),
            encode(writer, event("e2", None, None)).expect("encodes"),
        ];
        let (direct, general) = both_ways(writer, &reader, &[0, 1, 2, 3, 4], &datums);
        for column in [0, 2, 3, 4] {
            assert_eq!(direct[column].to_data(), general[column].to_data());
        }
        assert_eq!(direct[3].null_count(), 2);
        // The renamed field is found through the reader's alias, as the specification and the registry's
        // compatibility check have it (apache_avro's resolver matches names only and reads it as null).
        let viewer = direct[1].as_string::<i32>();
        assert_eq!((viewer.value(0), viewer.is_null(1)), ("u1", true));
    }

    #[test]
    fn what_the_direct_path_cannot_build_has_no_plan() {
        let writer = leak(WRITER);
        let fields = record_fields(writer).expect("fields");
        // The array column is not flat: no store, so a scan projecting it never asks for a plan.
        assert_eq!(Store::of(fields[4].data_type()), None);
        // A reader field the writer lacks whose default is not null.
        let with_default = Schema::parse_str(
            r#"{"type":"record","name":"Event","fields":[
            {"name":"id","type":"string"},{"name":"region","type":"string","default":"EU"}]}"#,
        )
        .expect("schema");
        assert!(DirectPlan::new(writer, &with_default, &[(1, Store::Utf8)]).is_none());
        // Enum symbols that differ: resolution by symbol name is the general path's.
        let other_enum = Schema::parse_str(
            r#"{"type":"record","name":"Event","fields":[
            {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["CLICK","VIEW"]}}]}"#,
        )
        .expect("schema");
        assert!(DirectPlan::new(writer, &other_enum, &[(0, Store::Utf8)]).is_none());
        // An optional writer field read into a required reader field.
        let required = Schema::parse_str(
            r#"{"type":"record","name":"Event","fields":[{"name":"user","type":"string"}]}"#,
        )
        .expect("schema");
        assert!(DirectPlan::new(writer, &required, &[(0, Store::Utf8)]).is_none());
    }

    #[test]
    fn a_malformed_datum_is_an_error_and_leaves_no_partial_row() {
        let writer = leak(WRITER);
        let plan = DirectPlan::new(writer, writer, &[(0, Store::Utf8), (6, Store::I64)])
            .expect("a direct plan");
        let good = encode(writer, event("e1", Some("u1"), Some(0.5))).expect("encodes");
        let mut cells = vec![Cell::Null; 2];
        for cut in 0..good.len() {
            assert!(plan.read(&good[..cut], &mut cells).is_err(), "cut at {cut}");
        }
        let mut columns = DirectColumns::new(&[Store::Utf8, Store::I64], 1);
        plan.read(&good, &mut cells).expect("reads");
        columns.push(&cells);
        let fields = record_fields(writer).expect("fields");
        let arrays = columns.finish(&[&fields[0], &fields[6]]).expect("arrays");
        assert_eq!(arrays[0].len(), 1);
        assert_eq!(arrays[1].len(), 1);
    }
}
