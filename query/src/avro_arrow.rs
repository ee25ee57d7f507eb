//! Avro → Arrow: the Arrow schema of an Avro record schema, and decoded Avro values to Arrow columns in batches.
//!
//! Type mapping (every column is nullable: history tables hold tombstones, and a union with null is the common
//! way to write optional fields):
//!
//! | Avro                               | Arrow                          |
//! |------------------------------------|--------------------------------|
//! | null / boolean / int / long        | Null / Boolean / Int32 / Int64 |
//! | float / double                     | Float32 / Float64              |
//! | string, enum, uuid                 | Utf8                           |
//! | bytes, fixed, decimal, duration    | Binary (the Avro bytes)        |
//! | date                               | Date32                         |
//! | timestamp-millis / -micros / -nanos| Timestamp(ms/µs/ns, UTC)       |
//! | local-timestamp-*                  | Timestamp(unit, no zone)       |
//! | time-millis / time-micros          | Time32(ms) / Time64(µs)        |
//! | array                              | List                           |
//! | map                                | List<Struct<key, value>>       |
//! | record                             | Struct                         |
//! | union [null, T]                    | T                              |
//! | other unions                       | Utf8 (the value as JSON)       |
//!
//! Maps become lists of key/value structs rather than Arrow maps because the Postgres wire encoder BI tools
//! go through has no map type; lists of structs travel as `record[]`.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::types::Value;
use apache_avro::Schema;
use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Float32Array, Float64Array,
    Int32Array, Int64Array, ListArray, NullArray, StringArray, StructArray, Time32MillisecondArray,
    Time64MicrosecondArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};

/// An Avro schema that has no Arrow form here.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The top-level schema is not a record.
    #[error("the value schema is {0}, not a record: only record schemas become tables")]
    NotARecord(String),
    /// A named type is referenced but not defined.
    #[error("schema references {0}, which it does not define")]
    UnknownName(String),
    /// The schema does not resolve.
    #[error("schema does not resolve: {0}")]
    Unresolvable(String),
    /// A value does not match the column it is put in (a bug or a schema/value mismatch).
    #[error("column {column}: {message}")]
    Value {
        /// Column name.
        column: String,
        /// What did not fit.
        message: String,
    },
}

/// The UTC zone of timestamp columns.
const UTC: &str = "UTC";

/// Arrow fields of the record schema `schema`'s fields, in order.
pub fn record_fields(schema: &Schema) -> Result<Vec<Field>, ConvertError> {
    let resolved =
        ResolvedSchema::try_from(schema).map_err(|e| ConvertError::Unresolvable(e.to_string()))?;
    let names = resolved.get_names();
    let Schema::Record(record) = schema else {
        return Err(ConvertError::NotARecord(format!("{schema:?}")));
    };
    record
        .fields
        .iter()
        .map(|field| {
            Ok(Field::new(
                &field.name,
                data_type(&field.schema, names)?,
                true,
            ))
        })
        .collect()
}

fn lookup<'a>(
    name: &Name,
    names: &'a HashMap<Name, &'a Schema>,
) -> Result<&'a Schema, ConvertError> {
    names
        .get(name)
        .copied()
        .ok_or_else(|| ConvertError::UnknownName(name.fullname(None)))
}

fn data_type(schema: &Schema, names: &HashMap<Name, &Schema>) -> Result<DataType, ConvertError> {
    Ok(match schema {
        Schema::Null => DataType::Null,
        Schema::Boolean => DataType::Boolean,
        Schema::Int => DataType::Int32,
        Schema::Long => DataType::Int64,
        Schema::Float => DataType::Float32,
        Schema::Double => DataType::Float64,
        Schema::String | Schema::Enum(_) | Schema::Uuid(_) => DataType::Utf8,
        Schema::Bytes
        | Schema::Fixed(_)
        | Schema::Decimal(_)
        | Schema::BigDecimal
        | Schema::Duration(_) => DataType::Binary,
        Schema::Date => DataType::Date32,
        Schema::TimeMillis => DataType::Time32(TimeUnit::Millisecond),
        Schema::TimeMicros => DataType::Time64(TimeUnit::Microsecond),
        Schema::TimestampMillis => DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
        Schema::TimestampMicros => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        Schema::TimestampNanos => DataType::Timestamp(TimeUnit::Nanosecond, Some(UTC.into())),
        Schema::LocalTimestampMillis => DataType::Timestamp(TimeUnit::Millisecond, None),
        Schema::LocalTimestampMicros => DataType::Timestamp(TimeUnit::Microsecond, None),
        Schema::LocalTimestampNanos => DataType::Timestamp(TimeUnit::Nanosecond, None),
        Schema::Array(array) => DataType::List(Arc::new(Field::new(
            "item",
            data_type(&array.items, names)?,
            true,
        ))),
        Schema::Map(map) => DataType::List(Arc::new(Field::new(
            "entry",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, true),
                Field::new("value", data_type(&map.types, names)?, true),
            ])),
            true,
        ))),
        Schema::Record(record) => DataType::Struct(
            record
                .fields
                .iter()
                .map(|f| Ok(Field::new(&f.name, data_type(&f.schema, names)?, true)))
                .collect::<Result<Vec<_>, ConvertError>>()?
                .into(),
        ),
        Schema::Union(union) => {
            let non_null: Vec<&Schema> = union
                .variants()
                .iter()
                .filter(|v| !matches!(v, Schema::Null))
                .collect();
            match non_null.as_slice() {
                [] => DataType::Null,
                [one] => data_type(one, names)?,
                _ => DataType::Utf8,
            }
        }
        Schema::Ref { name } => data_type(lookup(name, names)?, names)?,
    })
}

/// Strips unions: the branch's value, or None for null.
fn present(value: &Value) -> Option<&Value> {
    match value {
        Value::Null => None,
        Value::Union(_, inner) => present(inner),
        other => Some(other),
    }
}

/// A column of `data_type` from one value per row (`None`: null).
pub fn build_column(
    column: &str,
    data_type: &DataType,
    values: &[Option<&Value>],
) -> Result<ArrayRef, ConvertError> {
    let values: Vec<Option<&Value>> = values.iter().map(|v| v.and_then(present)).collect();
    let mismatch = |value: &Value| ConvertError::Value {
        column: column.to_owned(),
        message: format!("{value:?} does not fit {data_type}"),
    };
    macro_rules! primitive {
        ($array:ty, $($pattern:pat => $out:expr),+) => {{
            let mut out = Vec::with_capacity(values.len());
            for value in &values {
                out.push(match value {
                    None => None,
                    $(Some($pattern) => Some($out),)+
                    Some(other) => return Err(mismatch(other)),
                });
            }
            Arc::new(<$array>::from(out)) as ArrayRef
        }};
    }
    Ok(match data_type {
        DataType::Null => Arc::new(NullArray::new(values.len())),
        DataType::Boolean => primitive!(BooleanArray, Value::Boolean(b) => *b),
        DataType::Int32 => primitive!(Int32Array, Value::Int(v) => *v),
        DataType::Int64 => primitive!(Int64Array, Value::Long(v) => *v),
        DataType::Float32 => primitive!(Float32Array, Value::Float(v) => *v),
        DataType::Float64 => primitive!(Float64Array, Value::Double(v) => *v),
        DataType::Date32 => primitive!(Date32Array, Value::Date(v) => *v, Value::Int(v) => *v),
        DataType::Time32(_) => {
            primitive!(Time32MillisecondArray, Value::TimeMillis(v) => *v, Value::Int(v) => *v)
        }
        DataType::Time64(_) => {
            primitive!(Time64MicrosecondArray, Value::TimeMicros(v) => *v, Value::Long(v) => *v)
        }
        DataType::Timestamp(TimeUnit::Millisecond, zone) => {
            let array = primitive!(TimestampMillisecondArray,
                Value::TimestampMillis(v) => *v,
                Value::LocalTimestampMillis(v) => *v,
                Value::Long(v) => *v);
            with_zone(array, zone)
        }
        DataType::Timestamp(TimeUnit::Microsecond, zone) => {
            let array = primitive!(TimestampMicrosecondArray,
                Value::TimestampMicros(v) => *v,
                Value::LocalTimestampMicros(v) => *v,
                Value::Long(v) => *v);
            with_zone(array, zone)
        }
        DataType::Timestamp(_, zone) => {
            let array = primitive!(TimestampNanosecondArray,
                Value::TimestampNanos(v) => *v,
                Value::LocalTimestampNanos(v) => *v,
                Value::Long(v) => *v);
            with_zone(array, zone)
        }
        DataType::Utf8 => {
            let mut out: Vec<Option<String>> = Vec::with_capacity(values.len());
            for value in &values {
                out.push(match value {
                    None => None,
                    Some(Value::String(s)) | Some(Value::Enum(_, s)) => Some(s.clone()),
                    Some(Value::Uuid(u)) => Some(u.to_string()),
                    // A union of several non-null types: its JSON form.
                    Some(other) => Some(
                        serde_json::Value::try_from((*other).clone())
                            .map(|json| json.to_string())
                            .map_err(|e| ConvertError::Value {
                                column: column.to_owned(),
                                message: e.to_string(),
                            })?,
                    ),
                });
            }
            Arc::new(StringArray::from(out))
        }
        DataType::Binary => {
            let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(values.len());
            for value in &values {
                out.push(match value {
                    None => None,
                    Some(Value::Bytes(b)) | Some(Value::Fixed(_, b)) => Some(b.clone()),
                    Some(Value::Decimal(d)) => {
                        Some(Vec::<u8>::try_from(d).map_err(|e| ConvertError::Value {
                            column: column.to_owned(),
                            message: e.to_string(),
                        })?)
                    }
                    Some(other) => return Err(mismatch(other)),
                });
            }
            Arc::new(BinaryArray::from_iter(out))
        }
        DataType::List(item) => {
            // Map entries become (key, value) records, sorted by key; built first so the child column can borrow
            // them.
            let entries: Vec<Vec<Value>> = values
                .iter()
                .map(|value| match value {
                    Some(Value::Map(map)) => {
                        let mut sorted: Vec<(&String, &Value)> = map.iter().collect();
                        sorted.sort_by(|a, b| a.0.cmp(b.0));
                        sorted
                            .into_iter()
                            .map(|(key, value)| {
                                Value::Record(vec![
                                    ("key".to_owned(), Value::String(key.clone())),
                                    ("value".to_owned(), value.clone()),
                                ])
                            })
                            .collect()
                    }
                    _ => Vec::new(),
                })
                .collect();
            let mut offsets = Vec::with_capacity(values.len() + 1);
            offsets.push(0i32);
            let mut children: Vec<Option<&Value>> = Vec::new();
            let mut validity = Vec::with_capacity(values.len());
            for (value, row_entries) in values.iter().zip(&entries) {
                match value {
                    None => validity.push(false),
                    Some(Value::Array(items)) => {
                        validity.push(true);
                        children.extend(items.iter().map(Some));
                    }
                    Some(Value::Map(_)) => {
                        validity.push(true);
                        children.extend(row_entries.iter().map(Some));
                    }
                    Some(other) => return Err(mismatch(other)),
                }
                offsets.push(
                    i32::try_from(children.len()).map_err(|_| ConvertError::Value {
                        column: column.to_owned(),
                        message: "more than 2^31 list items in one batch".to_owned(),
                    })?,
                );
            }
            let child = build_column(column, item.data_type(), &children)?;
            Arc::new(
                ListArray::try_new(
                    item.clone(),
                    OffsetBuffer::new(offsets.into()),
                    child,
                    Some(NullBuffer::from(validity)),
                )
                .map_err(|e| ConvertError::Value {
                    column: column.to_owned(),
                    message: e.to_string(),
                })?,
            )
        }
        DataType::Struct(fields) => {
            let mut validity = Vec::with_capacity(values.len());
            let mut columns: Vec<Vec<Option<&Value>>> =
                vec![Vec::with_capacity(values.len()); fields.len()];
            for value in &values {
                match value {
                    None => {
                        validity.push(false);
                        for column in &mut columns {
                            column.push(None);
                        }
                    }
                    Some(Value::Record(record)) => {
                        validity.push(true);
                        for (index, field) in fields.iter().enumerate() {
                            // Resolved records list the reader's fields in order; look up by name otherwise.
                            let found = match record.get(index) {
                                Some((name, value)) if name == field.name() => Some(value),
                                _ => record
                                    .iter()
                                    .find(|(name, _)| name == field.name())
                                    .map(|(_, value)| value),
                            };
                            columns[index].push(found);
                        }
                    }
                    Some(other) => return Err(mismatch(other)),
                }
            }
            let children = fields
                .iter()
                .zip(&columns)
                .map(|(field, column_values)| {
                    build_column(
                        &format!("{column}.{}", field.name()),
                        field.data_type(),
                        column_values,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(
                StructArray::try_new(fields.clone(), children, Some(NullBuffer::from(validity)))
                    .map_err(|e| ConvertError::Value {
                        column: column.to_owned(),
                        message: e.to_string(),
                    })?,
            )
        }
        other => {
            return Err(ConvertError::Value {
                column: column.to_owned(),
                message: format!("no Avro value maps to {other}"),
            })
        }
    })
}

fn with_zone(array: ArrayRef, zone: &Option<Arc<str>>) -> ArrayRef {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    };
    let Some(zone) = zone.clone() else {
        return array;
    };
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => Arc::new(
            array
                .as_primitive::<TimestampMillisecondType>()
                .clone()
                .with_timezone(zone),
        ),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Arc::new(
            array
                .as_primitive::<TimestampMicrosecondType>()
                .clone()
                .with_timezone(zone),
        ),
        _ => Arc::new(
            array
                .as_primitive::<TimestampNanosecondType>()
                .clone()
                .with_timezone(zone),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Int64Type, TimestampMillisecondType};

    const SCHEMA: &str = r#"{
      "type": "record", "name": "T", "namespace": "t",
      "fields": [
        {"name": "id", "type": "string"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
        {"name": "again", "type": "Kind"},
        {"name": "maybe", "type": ["null", "long"], "default": null},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "int"}},
        {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "double"}]}}
      ]
    }"#;

    fn row(id: &str, maybe: Option<i64>, tags: &[&str]) -> Value {
        Value::Record(vec![
            ("id".into(), Value::String(id.into())),
            ("at".into(), Value::TimestampMillis(1_700_000_000_000)),
            ("kind".into(), Value::Enum(1, "B".into())),
            ("again".into(), Value::Enum(0, "A".into())),
            (
                "maybe".into(),
                match maybe {
                    Some(v) => Value::Union(1, Box::new(Value::Long(v))),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            ),
            (
                "tags".into(),
                Value::Array(tags.iter().map(|t| Value::String((*t).into())).collect()),
            ),
            (
                "attrs".into(),
                Value::Map(
                    [
                        ("b".to_owned(), Value::Int(2)),
                        ("a".to_owned(), Value::Int(1)),
                    ]
                    .into(),
                ),
            ),
            (
                "inner".into(),
                Value::Record(vec![("x".into(), Value::Double(0.5))]),
            ),
        ])
    }

    fn column(fields: &[Field], name: &str, rows: &[Option<&Value>]) -> ArrayRef {
        let index = fields.iter().position(|f| f.name() == name).unwrap();
        let values: Vec<Option<&Value>> = rows
            .iter()
            .map(|row| match row {
                Some(Value::Record(fields)) => Some(&fields[index].1),
                _ => None,
            })
            .collect();
        build_column(name, fields[index].data_type(), &values).unwrap()
    }

    #[test]
    fn every_field_kind_maps_to_its_arrow_type() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let fields = record_fields(&schema).unwrap();
        let types: Vec<String> = fields.iter().map(|f| f.data_type().to_string()).collect();
        assert_eq!(types[0], "Utf8");
        assert_eq!(types[1], "Timestamp(ms, \"UTC\")");
        assert_eq!(types[2], "Utf8");
        assert_eq!(types[3], "Utf8", "a reference to a named enum resolves");
        assert_eq!(types[4], "Int64", "a union with null is its other branch");
        assert!(types[5].starts_with("List("), "{}", types[5]);
        assert!(types[6].contains("Struct"), "{}", types[6]);
        assert!(types[7].contains("Struct"), "{}", types[7]);
    }

    #[test]
    fn values_become_columns_with_nulls_for_missing_rows_and_null_branches() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let fields = record_fields(&schema).unwrap();
        let first = row("a", Some(7), &["x", "y"]);
        let third = row("c", None, &[]);
        let rows = [Some(&first), None, Some(&third)];

        let ids = column(&fields, "id", &rows);
        assert_eq!(ids.as_string::<i32>().value(0), "a");
        assert!(
            ids.is_null(1),
            "a tombstone row is null in every value column"
        );

        let at = column(&fields, "at", &rows);
        assert_eq!(
            at.as_primitive::<TimestampMillisecondType>().value(2),
            1_700_000_000_000
        );
        let maybe = column(&fields, "maybe", &rows);
        assert_eq!(maybe.as_primitive::<Int64Type>().value(0), 7);
        assert!(maybe.is_null(2));

        let tags = column(&fields, "tags", &rows);
        let tags = tags.as_list::<i32>();
        assert_eq!(tags.value(0).len(), 2);
        assert!(tags.is_null(1));
        assert_eq!(tags.value(2).len(), 0);

        let attrs = column(&fields, "attrs", &rows);
        let first_attrs = attrs.as_list::<i32>().value(0);
        let entries = first_attrs.as_struct();
        assert_eq!(
            entries.column(0).as_string::<i32>().value(0),
            "a",
            "map keys sorted"
        );
        assert_eq!(
            entries
                .column(1)
                .as_primitive::<datafusion::arrow::datatypes::Int32Type>()
                .value(1),
            2
        );

        let inner = column(&fields, "inner", &rows);
        let x = inner
            .as_struct()
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
            .value(0);
        assert_eq!(x, 0.5);
        assert!(inner.is_null(1));
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error_naming_the_column() {
        let wrong = Value::String("x".into());
        let error = build_column("clicks", &DataType::Int64, &[Some(&wrong)]).unwrap_err();
        assert!(error.to_string().starts_with("column clicks:"), "{error}");
    }
}
