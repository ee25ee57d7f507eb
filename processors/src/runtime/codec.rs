//! Confluent wire-format Avro: decoding input values into the contract's Rust types, encoding outputs.
//!
//! A value is `0x00`, a big-endian u32 schema id, then the Avro binary datum written with that schema. Writer
//! schemas are fetched from the registry once per id and kept for the life of the process (ids are few). When the
//! writer schema is the reader's own (the common case) the datum is deserialized straight into the Rust type;
//! otherwise it is decoded with the writer schema and resolved to the reader schema (schema evolution).
//! [`ProjectedDecoder`] reads only some flat fields, borrowed from the datum, for a job's hot inputs.
//!
//! Every failure is a [`DecodeError`] with a stable class, which the runtime turns into a dead letter.

use std::collections::HashMap;

use apache_avro::writer::datum::GenericDatumWriter;
use serde::Serialize;

use adstream_kafka::registry_client::{FailureKind, RegistryClient};
use adstream_schemas::binary::{Cell, Projection};
use adstream_schemas::wire::{self, FrameError};

use super::dead_letter::Class;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::Schema;
use serde::de::DeserializeOwned;

/// Why a record could not be decoded. `class()` names the kind for the dead-letter headers.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record has no value (a tombstone on a stream topic).
    #[error("the record has no value")]
    MissingValue,
    /// Shorter than the 5-byte Confluent header.
    #[error("value of {0} bytes is shorter than the 5-byte Confluent wire header")]
    TooShort(usize),
    /// The first byte is not the Confluent magic byte 0.
    #[error("magic byte is {0:#04x}, expected 0x00 (not Confluent wire format)")]
    BadMagic(u8),
    /// The registry has no schema with this id.
    #[error("schema id {0} is unknown to the registry")]
    UnknownSchema(u32),
    /// The registry could not be asked (no answer, a 5xx, rate limited): the record is not at fault. The runtime
    /// pauses and retries it; it is never dead-lettered for this.
    #[error("schema id {id}: registry unavailable: {message}")]
    RegistryUnavailable {
        /// Schema id.
        id: u32,
        /// The client's message.
        message: String,
    },
    /// The registry refused the request for a reason retrying cannot fix (credentials, a URL that is not a
    /// registry): the job stops with this message rather than dead-letter valid records.
    #[error("schema id {id}: the schema registry refused the request: {message}")]
    RegistryRefused {
        /// Schema id.
        id: u32,
        /// The client's message.
        message: String,
    },
    /// The writer schema does not parse, or cannot be resolved to the reader schema.
    #[error("schema id {id} cannot be read as {reader}: {message}")]
    IncompatibleSchema {
        /// Schema id.
        id: u32,
        /// Reader record full name.
        reader: &'static str,
        /// apache-avro's message.
        message: String,
    },
    /// The datum does not decode with its writer schema (truncated, mistyped or trailing bytes).
    #[error("Avro datum does not decode with schema id {id}: {message}")]
    BadDatum {
        /// Schema id.
        id: u32,
        /// What went wrong.
        message: String,
    },
    /// Decoded, but a field breaks a rule of the contract.
    #[error("invalid value: {0}")]
    Invalid(String),
}

impl DecodeError {
    /// The failure's class, written to the dead letter's class header.
    pub fn class(&self) -> Class {
        match self {
            DecodeError::MissingValue => Class::MissingValue,
            DecodeError::TooShort(_) => Class::TruncatedHeader,
            DecodeError::BadMagic(_) => Class::BadMagicByte,
            DecodeError::UnknownSchema(_) => Class::UnknownSchemaId,
            DecodeError::RegistryUnavailable { .. } => Class::RegistryUnavailable,
            DecodeError::RegistryRefused { .. } => Class::RegistryRefused,
            DecodeError::IncompatibleSchema { .. } => Class::IncompatibleSchema,
            DecodeError::BadDatum { .. } => Class::UndecodableAvro,
            DecodeError::Invalid(_) => Class::InvalidValue,
        }
    }

    /// Whether retrying later could succeed: such records must not be dead-lettered; the task stops instead.
    pub fn is_transient(&self) -> bool {
        matches!(self, DecodeError::RegistryUnavailable { .. })
    }

    /// Whether the job cannot go on until someone fixes its configuration: such records must not be
    /// dead-lettered either; the job stops with the error.
    pub fn is_fatal(&self) -> bool {
        matches!(self, DecodeError::RegistryRefused { .. })
    }
}

/// Why a decoder or encoder could not be built, or a value not encoded. These are set-up errors of a job (a
/// contract schema that does not parse, the wrong number of output schema ids), never a record's fault.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A schema text does not parse.
    #[error("schema {name} does not parse: {message}")]
    SchemaParse {
        /// The schema's full name, or its id.
        name: String,
        /// apache-avro's message.
        message: String,
    },
    /// apache-avro refused to build a datum reader or writer, or to write a value.
    #[error("{0}")]
    Avro(String),
    /// An operator was handed a number of output schema ids other than its number of outputs.
    #[error("expected {expected} output schema ids, got {got}")]
    OutputIds {
        /// The operator's outputs.
        expected: usize,
        /// Ids handed over.
        got: usize,
    },
}

/// How values written with one schema id are read as one Rust type.
enum Plan {
    /// The writer schema is the reader's: deserialize directly.
    Direct(GenericDatumReader<'static>),
    /// Decode with the writer schema, resolve to the reader's.
    Resolve(GenericDatumReader<'static>),
}

/// A reader schema (one contract type) and its plans per writer schema id.
pub struct TypedDecoder {
    full_name: &'static str,
    reader: &'static Schema,
    reader_canonical: String,
    plans: HashMap<u32, Plan>,
}

/// Writer schemas by id, shared by every [`TypedDecoder`] of a task, fetched from the registry on first use.
pub struct SchemaCache {
    /// Where unseen ids are fetched, and the runtime that blocks on the fetch; None for a cache that knows only
    /// the schemas it was given.
    registry: Option<(RegistryClient, tokio::runtime::Handle)>,
    schemas: HashMap<u32, &'static Schema>,
}

impl SchemaCache {
    /// A cache that asks `registry`, blocking on `runtime` for the rare fetch of an unseen id.
    pub fn new(registry: RegistryClient, runtime: tokio::runtime::Handle) -> SchemaCache {
        SchemaCache {
            registry: Some((registry, runtime)),
            schemas: HashMap::new(),
        }
    }

    /// A cache without a registry (simulations in tests, tools that carry their schemas): it knows the schemas
    /// added with [`SchemaCache::insert`], and any other id is unknown.
    pub fn offline() -> SchemaCache {
        SchemaCache {
            registry: None,
            schemas: HashMap::new(),
        }
    }

    /// Makes schema `schema_text` known under `id` without asking the registry (replacing what the id had).
    pub fn insert(&mut self, id: u32, schema_text: &str) -> Result<(), CodecError> {
        let schema = Schema::parse_str(schema_text).map_err(|e| CodecError::SchemaParse {
            name: format!("id {id}"),
            message: e.to_string(),
        })?;
        // Same lifetime rule as fetched schemas: few, and borrowed by decoders for 'static.
        self.schemas.insert(id, Box::leak(Box::new(schema)));
        Ok(())
    }

    fn writer(&mut self, id: u32) -> Result<&'static Schema, DecodeError> {
        if let Some(schema) = self.schemas.get(&id) {
            return Ok(schema);
        }
        let Some((registry, runtime)) = &self.registry else {
            return Err(DecodeError::UnknownSchema(id));
        };
        let registry = registry.clone();
        let text = runtime
            .block_on(async move { registry.schema_by_id(id).await })
            .map_err(|e| match e.kind() {
                // `schema_by_id` answers Ok(None) for 40403; another "not found" code is not about this id.
                FailureKind::Retriable | FailureKind::NotFound => {
                    DecodeError::RegistryUnavailable {
                        id,
                        message: e.to_string(),
                    }
                }
                FailureKind::Unauthorized | FailureKind::Refused => DecodeError::RegistryRefused {
                    id,
                    message: e.to_string(),
                },
            })?
            .ok_or(DecodeError::UnknownSchema(id))?;
        let schema = Schema::parse_str(&text).map_err(|e| DecodeError::IncompatibleSchema {
            id,
            reader: "(any)",
            message: e.to_string(),
        })?;
        // Writer schemas live for the process: there are few, and decoders borrow them for 'static.
        let schema: &'static Schema = Box::leak(Box::new(schema));
        self.schemas.insert(id, schema);
        Ok(schema)
    }
}

/// Some flat fields of a contract type, read in place from the datum ([`adstream_schemas::binary::Projection`]):
/// borrowed strings, no owned struct. For the hot inputs of a job, which reads a few of many fields.
///
/// A writer schema the projection does not cover (an evolution beyond same-or-promoted flat fields with null
/// defaults, or one that the full decoder would refuse) makes [`ProjectedDecoder::decode`] answer `Ok(false)`: the
/// caller decodes that record with its [`TypedDecoder`], which reads or refuses it as before. Records the
/// projection reads are held to the full decoder's rules too: every string UTF-8 (skipped ones included), no bytes
/// after the datum.
pub struct ProjectedDecoder {
    reader: &'static Schema,
    reader_canonical: String,
    /// Reader field indexes of the wanted fields, in cell order.
    wanted: Vec<usize>,
    /// Per writer schema id: its projection, or None when the full decoder reads it.
    plans: HashMap<u32, Option<Projection>>,
}

impl ProjectedDecoder {
    /// A decoder of `fields` (cell i holds `fields[i]`) of the type whose schema is `schema_text`.
    pub fn new(
        full_name: &'static str,
        schema_text: &str,
        fields: &[&str],
    ) -> Result<ProjectedDecoder, CodecError> {
        let reader = Schema::parse_str(schema_text).map_err(|e| CodecError::SchemaParse {
            name: full_name.to_owned(),
            message: e.to_string(),
        })?;
        let Schema::Record(record) = &reader else {
            return Err(CodecError::SchemaParse {
                name: full_name.to_owned(),
                message: "not a record schema".to_owned(),
            });
        };
        let wanted = fields
            .iter()
            .map(|name| {
                record
                    .fields
                    .iter()
                    .position(|f| f.name == *name)
                    .ok_or_else(|| CodecError::SchemaParse {
                        name: full_name.to_owned(),
                        message: format!("has no field {name}"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let reader_canonical = reader.canonical_form();
        Ok(ProjectedDecoder {
            reader: Box::leak(Box::new(reader)),
            reader_canonical,
            wanted,
            plans: HashMap::new(),
        })
    }

    /// Reads the wanted fields of one Confluent wire-format value into `cells`: `Ok(true)`, or `Ok(false)` when
    /// this value's writer schema is for the full decoder.
    pub fn decode<'a>(
        &mut self,
        cache: &mut SchemaCache,
        value: Option<&'a [u8]>,
        cells: &mut [Cell<'a>],
    ) -> Result<bool, DecodeError> {
        let value = value.ok_or(DecodeError::MissingValue)?;
        let (id, datum) = wire::split(value).map_err(|e| match e {
            FrameError::TooShort(len) => DecodeError::TooShort(len),
            FrameError::BadMagic(byte) => DecodeError::BadMagic(byte),
        })?;
        // One lookup per record: this is a hot input's path.
        let plan = match self.plans.entry(id) {
            std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::hash_map::Entry::Vacant(new) => {
                let writer = cache.writer(id)?;
                // An evolved writer is projected only when the full decoder would read it: the projection must
                // not accept what that decoder refuses (a missing field without default, outside the wanted ones).
                let readable = writer.canonical_form() == self.reader_canonical
                    || adstream_schemas::compat::can_read(writer, self.reader).is_ok();
                new.insert(
                    readable
                        .then(|| Projection::new(writer, self.reader, &self.wanted).ok())
                        .flatten(),
                )
            }
        };
        let Some(projection) = plan else {
            return Ok(false);
        };
        let bad = |message: String| DecodeError::BadDatum { id, message };
        let read = projection
            .read(datum, cells)
            .map_err(|e| bad(e.to_string()))?;
        if read != datum.len() {
            return Err(bad(format!(
                "{} trailing byte(s) after the datum",
                datum.len() - read
            )));
        }
        Ok(true)
    }
}

/// Cell `index` of a [`ProjectedDecoder`] of `fields`, as text (a string or an enum symbol).
pub fn cell_text<'a>(
    cells: &[Cell<'a>],
    fields: &[&str],
    index: usize,
) -> Result<&'a str, DecodeError> {
    match cells.get(index) {
        Some(Cell::Str(text)) => Ok(text),
        other => Err(unexpected_cell(fields, index, other)),
    }
}

/// Cell `index` of a [`ProjectedDecoder`] of `fields`, as text or null.
pub fn cell_optional_text<'a>(
    cells: &[Cell<'a>],
    fields: &[&str],
    index: usize,
) -> Result<Option<&'a str>, DecodeError> {
    match cells.get(index) {
        Some(Cell::Null) => Ok(None),
        Some(Cell::Str(text)) => Ok(Some(text)),
        other => Err(unexpected_cell(fields, index, other)),
    }
}

/// Cell `index` of a [`ProjectedDecoder`] of `fields`, as an int or long.
pub fn cell_long(cells: &[Cell<'_>], fields: &[&str], index: usize) -> Result<i64, DecodeError> {
    match cells.get(index) {
        Some(Cell::Long(value)) => Ok(*value),
        other => Err(unexpected_cell(fields, index, other)),
    }
}

/// A cell that does not hold what its field's type promises: only a bug pairs them so (the projection reads each
/// field as its schema says), but it is an error for the record rather than a panic.
fn unexpected_cell(fields: &[&str], index: usize, cell: Option<&Cell<'_>>) -> DecodeError {
    DecodeError::Invalid(format!(
        "field {} read as {cell:?}",
        fields.get(index).copied().unwrap_or("?")
    ))
}

impl TypedDecoder {
    /// A decoder into the type whose schema is `schema_text` (a contract `.avsc`).
    pub fn new(full_name: &'static str, schema_text: &str) -> Result<TypedDecoder, CodecError> {
        let reader = Schema::parse_str(schema_text).map_err(|e| CodecError::SchemaParse {
            name: full_name.to_owned(),
            message: e.to_string(),
        })?;
        let reader_canonical = reader.canonical_form();
        Ok(TypedDecoder {
            full_name,
            reader: Box::leak(Box::new(reader)),
            reader_canonical,
            plans: HashMap::new(),
        })
    }

    /// Decodes one Confluent wire-format value into `T`.
    pub fn decode<T: DeserializeOwned>(
        &mut self,
        cache: &mut SchemaCache,
        value: Option<&[u8]>,
    ) -> Result<T, DecodeError> {
        let value = value.ok_or(DecodeError::MissingValue)?;
        let (id, mut datum) = wire::split(value).map_err(|e| match e {
            FrameError::TooShort(len) => DecodeError::TooShort(len),
            FrameError::BadMagic(byte) => DecodeError::BadMagic(byte),
        })?;
        if !self.plans.contains_key(&id) {
            let plan = self.plan(cache, id)?;
            self.plans.insert(id, plan);
        }
        let bad = |message: String| DecodeError::BadDatum { id, message };
        let decoded = match &self.plans[&id] {
            Plan::Direct(reader) => reader
                .read_deser::<T>(&mut datum)
                .map_err(|e| bad(e.to_string()))?,
            Plan::Resolve(reader) => {
                let resolved = reader
                    .read_value(&mut datum)
                    .map_err(|e| bad(e.to_string()))?;
                apache_avro::from_value::<T>(&resolved).map_err(|e| bad(e.to_string()))?
            }
        };
        if !datum.is_empty() {
            return Err(bad(format!(
                "{} trailing byte(s) after the datum",
                datum.len()
            )));
        }
        Ok(decoded)
    }

    fn plan(&self, cache: &mut SchemaCache, id: u32) -> Result<Plan, DecodeError> {
        let writer = cache.writer(id)?;
        let incompatible = |message: String| DecodeError::IncompatibleSchema {
            id,
            reader: self.full_name,
            message,
        };
        if writer.canonical_form() == self.reader_canonical {
            return GenericDatumReader::builder(writer)
                .build()
                .map(Plan::Direct)
                .map_err(|e| incompatible(e.to_string()));
        }
        if let Err(problems) = adstream_schemas::compat::can_read(writer, self.reader) {
            let message = problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(incompatible(message));
        }
        GenericDatumReader::builder(writer)
            .reader_schema(self.reader)
            .build()
            .map(Plan::Resolve)
            .map_err(|e| incompatible(e.to_string()))
    }
}

/// Encodes one output type in Confluent wire format under a registered schema id.
pub struct WireEncoder {
    writer: GenericDatumWriter<'static>,
    header: [u8; wire::HEADER_LEN],
}

impl WireEncoder {
    /// An encoder for values of the schema `schema_text`, registered under `schema_id`.
    pub fn new(schema_text: &str, schema_id: u32) -> Result<WireEncoder, CodecError> {
        let schema = Schema::parse_str(schema_text).map_err(|e| CodecError::SchemaParse {
            name: format!("id {schema_id}"),
            message: e.to_string(),
        })?;
        // Output schemas are few and live for the process.
        let schema: &'static Schema = Box::leak(Box::new(schema));
        let writer = GenericDatumWriter::builder(schema)
            .build()
            .map_err(|e| CodecError::Avro(e.to_string()))?;
        Ok(WireEncoder {
            writer,
            header: wire::header(schema_id),
        })
    }

    /// Clears `out` and writes `value` into it: header, then the Avro datum.
    pub fn encode<T: Serialize>(&self, value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.clear();
        out.extend_from_slice(&self.header);
        self.writer
            .write_ser(out, value)
            .map(|_| ())
            .map_err(|e| CodecError::Avro(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (tokio::runtime::Runtime, SchemaCache) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Port 9 (discard) on loopback: nothing answers, so any fetch fails fast; these tests never fetch.
        let client = RegistryClient::new("http://127.0.0.1:9").expect("client");
        let cache = SchemaCache::new(client, runtime.handle().clone());
        (runtime, cache)
    }

    #[test]
    fn header_problems_are_classified_before_any_registry_call() {
        let (_rt, mut cache) = cache();
        let mut decoder = TypedDecoder::new(
            "io.adstream.ads.AdClick",
            adstream_schemas::events::avsc::AD_CLICK,
        )
        .expect("schema");
        let class = |d: &mut TypedDecoder, c: &mut SchemaCache, v: Option<&[u8]>| {
            d.decode::<adstream_schemas::events::AdClick>(c, v)
                .expect_err("must fail")
                .class()
                .as_str()
        };
        assert_eq!(class(&mut decoder, &mut cache, None), "missing-value");
        assert_eq!(
            class(&mut decoder, &mut cache, Some(&[0, 0, 1])),
            "truncated-header"
        );
        assert_eq!(
            class(&mut decoder, &mut cache, Some(b"{\"json\":1}")),
            "bad-magic-byte"
        );
    }

    #[test]
    fn an_offline_cache_knows_only_the_schemas_it_was_given() {
        let mut cache = SchemaCache::offline();
        cache
            .insert(7, adstream_schemas::events::avsc::AD_CLICK)
            .expect("schema");
        let mut decoder = TypedDecoder::new(
            "io.adstream.ads.AdClick",
            adstream_schemas::events::avsc::AD_CLICK,
        )
        .expect("schema");
        let error = decoder
            .decode::<adstream_schemas::events::AdClick>(&mut cache, Some(&[0, 0, 0, 0, 8, 0]))
            .expect_err("id 8 is unknown");
        assert_eq!(error.class().as_str(), "unknown-schema-id");
        // Id 7 is known: the datum is read (and is too short), no registry is asked.
        let error = decoder
            .decode::<adstream_schemas::events::AdClick>(&mut cache, Some(&[0, 0, 0, 0, 7, 2]))
            .expect_err("truncated datum");
        assert_eq!(error.class().as_str(), "undecodable-avro");
    }

    /// A loopback HTTP server answering every request with `status` and a body that is not a Confluent error.
    fn answering(status: &'static str) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        std::thread::spawn(move || {
            for mut socket in listener.incoming().flatten() {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request);
                let body = "<html>gateway</html>";
                let _ = write!(
                    socket,
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        format!("http://{address}")
    }

    // Regression (issue 18, item 5): a registry behind a gateway answering 502/503 (or an auth proxy's 401) had
    // its valid records dead-lettered as `unknown-schema-id`.
    #[test]
    fn a_registry_outage_is_transient_and_refused_credentials_are_fatal_never_an_unknown_id() {
        // Multi-threaded, as the live job's: a handle's `block_on` drives no I/O on a current-thread runtime.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let decode = |status: &'static str| {
            let client = RegistryClient::new(&answering(status)).expect("client");
            let mut cache = SchemaCache::new(client, runtime.handle().clone());
            let mut decoder = TypedDecoder::new(
                "io.adstream.ads.AdClick",
                adstream_schemas::events::avsc::AD_CLICK,
            )
            .expect("schema");
            decoder
                .decode::<adstream_schemas::events::AdClick>(&mut cache, Some(&[0, 0, 0, 0, 9, 0]))
                .expect_err("the registry cannot answer")
        };
        for status in [
            "502 Bad Gateway",
            "503 Service Unavailable",
            "429 Too Many Requests",
        ] {
            let error = decode(status);
            assert!(error.is_transient(), "{status}: {error}");
            assert_eq!(error.class().as_str(), "registry-unavailable", "{status}");
        }
        for status in ["401 Unauthorized", "403 Forbidden"] {
            let error = decode(status);
            assert!(
                error.is_fatal() && !error.is_transient(),
                "{status}: {error}"
            );
        }
    }

    fn click(event_id: &str, ad_group_id: &str) -> adstream_schemas::events::AdClick {
        use adstream_schemas::events::{AdClick, Device, Platform};
        AdClick {
            event_id: event_id.into(),
            event_time: 1_700_000_000_001,
            platform: Platform::Tiktok,
            account_id: "act".into(),
            campaign_id: "tiktok-c1".into(),
            ad_group_id: ad_group_id.into(),
            creative_id: "cr".into(),
            user_id: None,
            impression_id: Some("imp-1".into()),
            device: Device::Mobile,
            cost_micros: 1_250_000,
            currency: "EUR".into(),
        }
    }

    #[test]
    fn a_projection_reads_what_the_full_decoder_reads_and_refuses_what_it_refuses() {
        use adstream_schemas::events::avsc::AD_CLICK;
        let (_rt, mut cache) = cache();
        cache.insert(7, AD_CLICK).expect("schema");
        let encoder = WireEncoder::new(AD_CLICK, 7).expect("encoder");
        let mut projected = ProjectedDecoder::new(
            "io.adstream.ads.AdClick",
            AD_CLICK,
            &["campaign_id", "platform", "cost_micros"],
        )
        .expect("fields exist");
        let mut value = Vec::new();
        encoder
            .encode(&click("clk-1", "g"), &mut value)
            .expect("encodes");
        {
            let mut cells = [Cell::Null; 3];
            assert!(projected
                .decode(&mut cache, Some(&value), &mut cells)
                .expect("reads"));
            assert_eq!(
                cells,
                [
                    Cell::Str("tiktok-c1"),
                    Cell::Str("TIKTOK"),
                    Cell::Long(1_250_000)
                ]
            );
        }

        // What the full decoder refuses, the projection refuses with the same class: bytes after the datum, and a
        // string that is not UTF-8 in a field the projection skips (ad_group_id, "g" patched to 0xff).
        let mut trailing = value.clone();
        trailing.push(0);
        let mut full = TypedDecoder::new("io.adstream.ads.AdClick", AD_CLICK).expect("schema");
        let group = value
            .windows(3)
            .position(|w| w == [2, b'g', 0x04])
            .expect("ad_group_id \"g\" then creative_id's length");
        let mut not_utf8 = value.clone();
        not_utf8[group + 1] = 0xff;
        for bad in [&trailing, &not_utf8] {
            let mut cells = [Cell::Null; 3];
            let refused = projected
                .decode(&mut cache, Some(bad), &mut cells)
                .expect_err("refused");
            let full_refused = full
                .decode::<adstream_schemas::events::AdClick>(&mut cache, Some(bad))
                .expect_err("refused");
            assert_eq!(refused.class().as_str(), full_refused.class().as_str());
        }
        assert!(projected
            .decode(&mut cache, None, &mut [Cell::Null; 3])
            .is_err());
    }

    #[test]
    fn a_writer_the_projection_does_not_cover_is_left_to_the_full_decoder() {
        use adstream_schemas::events::avsc::AD_CLICK;
        let (_rt, mut cache) = cache();
        // A newer writer whose platform enum has a symbol more: the full decoder resolves unknown symbols to the
        // reader's default, which the projection does not do.
        let newer = AD_CLICK.replacen("\"LINKEDIN\"", "\"LINKEDIN\", \"SNAPCHAT\"", 1);
        assert_ne!(newer, AD_CLICK, "the schema lists LINKEDIN");
        cache.insert(8, &newer).expect("schema");
        let encoder = WireEncoder::new(&newer, 8).expect("encoder");
        let mut value = Vec::new();
        encoder
            .encode(&click("clk-2", "g"), &mut value)
            .expect("encodes");
        let mut projected =
            ProjectedDecoder::new("io.adstream.ads.AdClick", AD_CLICK, &["platform"])
                .expect("field");
        let mut cells = [Cell::Null; 1];
        assert!(!projected
            .decode(&mut cache, Some(&value), &mut cells)
            .expect("no error"));
        let mut full = TypedDecoder::new("io.adstream.ads.AdClick", AD_CLICK).expect("schema");
        let decoded: adstream_schemas::events::AdClick =
            full.decode(&mut cache, Some(&value)).expect("resolves");
        assert_eq!(decoded.platform, adstream_schemas::events::Platform::Tiktok);
    }
}
