//! The registry's record format in its Kafka topic, byte-compatible with Confluent Schema Registry.
//!
//! Keys are compact JSON objects whose field order is fixed (`keytype` first, `magic` last), because the topic is
//! compacted by key *bytes*: a key written in another field order would be a different key, and an update would
//! never replace the record it updates. Karapace calls this the "canonical" key format and detects it by the same
//! byte layout. Values are JSON objects; a `null` value (tombstone) deletes the key.

use serde::{Deserialize, Serialize};

use adstream_schemas::compat::CompatibilityLevel;

use super::state::Mode;

/// A record key of the registry topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    /// One version of a subject: `{"keytype":"SCHEMA","subject":S,"version":N,"magic":1}`.
    Schema { subject: String, version: i32 },
    /// A compatibility level, global when `subject` is `None`: `{"keytype":"CONFIG","subject":S|null,"magic":0}`.
    Config { subject: Option<String> },
    /// A mode, global when `subject` is `None`: `{"keytype":"MODE","subject":S|null,"magic":0}`.
    Mode { subject: Option<String> },
    /// A soft delete of a whole subject: `{"keytype":"DELETE_SUBJECT","subject":S,"magic":0}`.
    DeleteSubject { subject: String },
    /// A key type this registry does not act on (Confluent's `NOOP` read barrier, contexts, ...).
    Ignored { keytype: String },
}

/// Serialization shape of a `SCHEMA` key; field order is the byte layout.
#[derive(Serialize)]
struct SchemaKeyJson<'a> {
    keytype: &'static str,
    subject: &'a str,
    version: i32,
    magic: u8,
}

/// Serialization shape of the subject-scoped keys; field order is the byte layout.
#[derive(Serialize)]
struct SubjectKeyJson<'a> {
    keytype: &'static str,
    subject: Option<&'a str>,
    magic: u8,
}

/// Any key as read back, whatever its field order.
#[derive(Deserialize)]
struct AnyKeyJson {
    keytype: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    version: Option<i32>,
}

impl Key {
    /// The key bytes exactly as Confluent Schema Registry writes them.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let json = match self {
            Key::Schema { subject, version } => serde_json::to_vec(&SchemaKeyJson {
                keytype: "SCHEMA",
                subject,
                version: *version,
                magic: 1,
            }),
            Key::Config { subject } => serde_json::to_vec(&SubjectKeyJson {
                keytype: "CONFIG",
                subject: subject.as_deref(),
                magic: 0,
            }),
            Key::Mode { subject } => serde_json::to_vec(&SubjectKeyJson {
                keytype: "MODE",
                subject: subject.as_deref(),
                magic: 0,
            }),
            Key::DeleteSubject { subject } => serde_json::to_vec(&SubjectKeyJson {
                keytype: "DELETE_SUBJECT",
                subject: Some(subject),
                magic: 0,
            }),
            Key::Ignored { keytype } => {
                serde_json::to_vec(&serde_json::json!({ "keytype": keytype, "magic": 0 }))
            }
        };
        // Serializing these plain structs of strings and integers cannot fail.
        json.unwrap_or_default()
    }

    /// Parses a key read from the topic.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Key, RecordError> {
        let key: AnyKeyJson = serde_json::from_slice(bytes).map_err(RecordError::NotAKey)?;
        let need_subject = |subject: Option<String>| {
            subject.ok_or_else(|| RecordError::MissingField {
                keytype: key.keytype.clone(),
                field: "subject",
            })
        };
        Ok(match key.keytype.as_str() {
            "SCHEMA" => Key::Schema {
                subject: need_subject(key.subject)?,
                version: key.version.ok_or_else(|| RecordError::MissingField {
                    keytype: key.keytype.clone(),
                    field: "version",
                })?,
            },
            "CONFIG" => Key::Config {
                subject: key.subject,
            },
            "MODE" => Key::Mode {
                subject: key.subject,
            },
            "DELETE_SUBJECT" => Key::DeleteSubject {
                subject: need_subject(key.subject)?,
            },
            _ => Key::Ignored {
                keytype: key.keytype,
            },
        })
    }
}

/// Value of a `SCHEMA` record. Field order follows Confluent; `schemaType` is absent for Avro, as Confluent omits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SchemaValue {
    /// The subject.
    pub subject: String,
    /// The version within the subject.
    pub version: i32,
    /// The global schema id.
    pub id: u32,
    /// The schema text.
    pub schema: String,
    /// Soft-deleted.
    #[serde(default)]
    pub deleted: bool,
    /// `AVRO` when absent; other types are written by registries that support them.
    #[serde(
        rename = "schemaType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub schema_type: Option<String>,
    /// Other subjects' versions whose named types the schema uses; Confluent omits the field when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
}

/// A schema reference, Confluent's `{"name": ..., "subject": ..., "version": ...}`: the schema uses the named type
/// `name` defined by version `version` of `subject`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct SchemaReference {
    /// The full name of the referenced type, as the referencing schema spells it.
    pub name: String,
    /// The subject holding the referenced schema.
    pub subject: String,
    /// Its version.
    pub version: i32,
}

/// Value of a `CONFIG` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ConfigValue {
    /// The level; newer Confluent versions may write a config with other settings only.
    #[serde(rename = "compatibilityLevel", default)]
    pub compatibility_level: Option<CompatibilityLevel>,
}

/// Value of a `MODE` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModeValue {
    /// The mode.
    pub mode: Mode,
}

/// Value of a `DELETE_SUBJECT` record: every version up to `version` is soft-deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeleteSubjectValue {
    /// The subject.
    pub subject: String,
    /// The highest version the delete covers.
    pub version: i32,
}

/// A decoded record value; `None` in a [`Record`] is a tombstone.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// See [`SchemaValue`].
    Schema(SchemaValue),
    /// See [`ConfigValue`].
    Config(ConfigValue),
    /// See [`ModeValue`].
    Mode(ModeValue),
    /// See [`DeleteSubjectValue`].
    DeleteSubject(DeleteSubjectValue),
}

impl Value {
    /// The value bytes as Confluent writes them.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let json = match self {
            Value::Schema(v) => serde_json::to_vec(v),
            Value::Config(v) => serde_json::to_vec(v),
            Value::Mode(v) => serde_json::to_vec(v),
            Value::DeleteSubject(v) => serde_json::to_vec(v),
        };
        // Serializing these plain structs of strings, integers and unit enums cannot fail.
        json.unwrap_or_default()
    }

    /// Parses the value of a record whose key is `key`; `None` for keys that carry no value we use.
    pub(crate) fn parse(key: &Key, bytes: &[u8]) -> Result<Option<Value>, RecordError> {
        let bad = |source| RecordError::ValueMismatch {
            key: format!("{key:?}"),
            source,
        };
        Ok(Some(match key {
            Key::Schema { .. } => Value::Schema(serde_json::from_slice(bytes).map_err(bad)?),
            Key::Config { .. } => Value::Config(serde_json::from_slice(bytes).map_err(bad)?),
            Key::Mode { .. } => Value::Mode(serde_json::from_slice(bytes).map_err(bad)?),
            Key::DeleteSubject { .. } => {
                Value::DeleteSubject(serde_json::from_slice(bytes).map_err(bad)?)
            }
            Key::Ignored { .. } => return Ok(None),
        }))
    }
}

/// Why a record of the registry topic is unreadable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    /// The key is no JSON object of a registry key.
    #[error("key is not a registry key: {0}")]
    NotAKey(#[source] serde_json::Error),
    /// The key lacks a field its type requires.
    #[error("{keytype} key without {field}")]
    MissingField {
        /// The key's `keytype`.
        keytype: String,
        /// The missing field.
        field: &'static str,
    },
    /// The value is not what its key's type holds.
    #[error("value does not match its key {key}: {source}")]
    ValueMismatch {
        /// The key, for the message.
        key: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// One record of the registry topic: a key and a value, or a tombstone.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// The key.
    pub key: Key,
    /// The value; `None` deletes the key.
    pub value: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(key: Key) -> String {
        String::from_utf8(key.to_bytes()).unwrap()
    }

    #[test]
    fn keys_are_byte_identical_to_confluent() {
        assert_eq!(
            text(Key::Schema {
                subject: "ads.clicks-value".into(),
                version: 3
            }),
            r#"{"keytype":"SCHEMA","subject":"ads.clicks-value","version":3,"magic":1}"#
        );
        assert_eq!(
            text(Key::Config { subject: None }),
            r#"{"keytype":"CONFIG","subject":null,"magic":0}"#
        );
        assert_eq!(
            text(Key::Config {
                subject: Some("s".into())
            }),
            r#"{"keytype":"CONFIG","subject":"s","magic":0}"#
        );
        assert_eq!(
            text(Key::Mode { subject: None }),
            r#"{"keytype":"MODE","subject":null,"magic":0}"#
        );
        assert_eq!(
            text(Key::DeleteSubject {
                subject: "a/b".into()
            }),
            r#"{"keytype":"DELETE_SUBJECT","subject":"a/b","magic":0}"#
        );
    }

    #[test]
    fn keys_in_any_field_order_parse() {
        let key =
            Key::parse(br#"{"magic":1,"subject":"s","version":2,"keytype":"SCHEMA"}"#).unwrap();
        assert_eq!(
            key,
            Key::Schema {
                subject: "s".into(),
                version: 2
            }
        );
        assert_eq!(
            Key::parse(br#"{"keytype":"NOOP","magic":0}"#).unwrap(),
            Key::Ignored {
                keytype: "NOOP".into()
            }
        );
        assert!(Key::parse(b"not json").is_err());
        assert!(Key::parse(br#"{"keytype":"SCHEMA","magic":1}"#).is_err());
    }

    #[test]
    fn values_match_confluent_layout() {
        let value = Value::Schema(SchemaValue {
            subject: "s".into(),
            version: 1,
            id: 7,
            schema: "\"string\"".into(),
            deleted: false,
            schema_type: None,
            references: Vec::new(),
        });
        assert_eq!(
            String::from_utf8(value.to_bytes()).unwrap(),
            r#"{"subject":"s","version":1,"id":7,"schema":"\"string\"","deleted":false}"#
        );
        let config = Value::Config(ConfigValue {
            compatibility_level: Some(CompatibilityLevel::FullTransitive),
        });
        assert_eq!(
            String::from_utf8(config.to_bytes()).unwrap(),
            r#"{"compatibilityLevel":"FULL_TRANSITIVE"}"#
        );
        let mode = Value::Mode(ModeValue {
            mode: Mode::ReadOnly,
        });
        assert_eq!(
            String::from_utf8(mode.to_bytes()).unwrap(),
            r#"{"mode":"READONLY"}"#
        );
        let delete = Value::DeleteSubject(DeleteSubjectValue {
            subject: "s".into(),
            version: 4,
        });
        assert_eq!(
            String::from_utf8(delete.to_bytes()).unwrap(),
            r#"{"subject":"s","version":4}"#
        );
    }

    #[test]
    fn references_are_stored_as_confluent_stores_them() {
        let value = Value::Schema(SchemaValue {
            subject: "s".into(),
            version: 2,
            id: 9,
            schema: "\"t.Money\"".into(),
            deleted: false,
            schema_type: None,
            references: vec![SchemaReference {
                name: "t.Money".into(),
                subject: "money-value".into(),
                version: 1,
            }],
        });
        let bytes = value.to_bytes();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"subject":"s","version":2,"id":9,"schema":"\"t.Money\"","deleted":false,"references":[{"name":"t.Money","subject":"money-value","version":1}]}"#
        );
        let key = Key::Schema {
            subject: "s".into(),
            version: 2,
        };
        assert_eq!(Value::parse(&key, &bytes).unwrap(), Some(value));
    }

    #[test]
    fn values_written_by_newer_registries_parse() {
        let key = Key::Schema {
            subject: "s".into(),
            version: 1,
        };
        let parsed = Value::parse(
            &key,
            br#"{"subject":"s","version":1,"id":3,"schemaType":"PROTOBUF","schema":"x","deleted":true,"references":[]}"#,
        )
        .unwrap();
        let Some(Value::Schema(v)) = parsed else {
            panic!("not a schema value")
        };
        assert_eq!(v.schema_type.as_deref(), Some("PROTOBUF"));
        assert!(v.deleted);
        let config =
            Value::parse(&Key::Config { subject: None }, br#"{"normalize":true}"#).unwrap();
        assert_eq!(
            config,
            Some(Value::Config(ConfigValue {
                compatibility_level: None
            }))
        );
    }
}
