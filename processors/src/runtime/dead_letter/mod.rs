//! The dead-letter format, in one place for the side that writes it (the runtime's emitter) and the side that reads
//! it (`adstream dlq inspect|redrive`, SQL over `dlq.*`).
//!
//! A dead letter is the original record (key, value, timestamp, partition) on `dlq.<topic>`, with the runtime's
//! headers saying why ([`header::CLASS`], [`header::MESSAGE`]), where from ([`header::SOURCE_TOPIC`],
//! [`header::SOURCE_PARTITION`], [`header::SOURCE_OFFSET`]) and by whom ([`header::REDIRECTED_AT`],
//! [`header::REDIRECTED_BY`]), followed by the record's own headers. A record past its window's retention goes to
//! `late.<topic>` the same way with [`header::LATE_CLASS`] and [`header::LATE_REASON`].
//!
//! This module holds the names (topics, headers, [`Class`]) and what the writer needs ([`is_runtime_header`]);
//! [`read`] holds the reading side: a consumed dead letter as a [`DeadLetter`], the topic it may go back to
//! ([`DeadLetter::source`], [`topics_of`]), which letters a redrive re-sends ([`keep_one_per_source`]) and with
//! which headers ([`redrive_headers`]). [`scan`] reads a dead-letter topic to its end (and what `adstream dlq
//! inspect` keeps of it); [`redrive`] selects letters, checks their targets and re-sends them with every delivery
//! confirmed.

pub mod read;
pub mod redrive;
pub mod scan;

pub use read::{keep_one_per_source, redrive_headers, topics_of, DeadLetter, DeadLetterError};

/// Prefix of dead-letter topics: `dlq.<source topic>`.
pub const DLQ_PREFIX: &str = "dlq.";
/// Prefix of late-record topics: `late.<source topic>`.
pub const LATE_PREFIX: &str = "late.";

/// Header names of the format.
pub mod header {
    /// Why the record was dead-lettered: a [`super::Class`] name.
    pub const CLASS: &str = "dlq_error_class";
    /// What exactly was wrong, for people.
    pub const MESSAGE: &str = "dlq_error_message";
    /// Why a late record was redirected (`expired`).
    pub const LATE_CLASS: &str = "late_class";
    /// What made the late record late, for people.
    pub const LATE_REASON: &str = "late_reason";
    /// The topic the record was read from.
    pub const SOURCE_TOPIC: &str = "source_topic";
    /// Its partition there.
    pub const SOURCE_PARTITION: &str = "source_partition";
    /// Its offset there.
    pub const SOURCE_OFFSET: &str = "source_offset";
    /// When it was redirected (epoch millis).
    pub const REDIRECTED_AT: &str = "redirected_at";
    /// The application id of the job that redirected it.
    pub const REDIRECTED_BY: &str = "redirected_by";
    /// The record's correlation id (its own header, or `<topic>/<partition>/<offset>`).
    pub const CORRELATION_ID: &str = "correlation_id";
    /// `true` when the record was too large to carry whole and its key and value were cut.
    pub const TRUNCATED: &str = "dlq_truncated";
    /// The original record's timestamp, when the dead letter could not keep it.
    pub const ORIGINAL_TIMESTAMP: &str = "dlq_original_timestamp";
    /// Set on a record re-sent by `adstream dlq redrive`: `<dead-letter topic>/<partition>/<offset>` of the dead
    /// letter it came from.
    pub const REDRIVEN_FROM: &str = "redriven_from";
}

/// The headers the runtime sets on a redirected record besides class and message; a re-sent record drops them.
pub const PROVENANCE: [&str; 5] = [
    header::SOURCE_TOPIC,
    header::SOURCE_PARTITION,
    header::SOURCE_OFFSET,
    header::REDIRECTED_AT,
    header::REDIRECTED_BY,
];

/// Whether `key` is a header the runtime writes on redirected records (so a record's own header of that name is
/// not carried twice, and a re-sent record drops it).
pub fn is_runtime_header(key: &str) -> bool {
    key == header::CORRELATION_ID
        || PROVENANCE.contains(&key)
        || key.starts_with("dlq_")
        || key.starts_with("late_")
        || key.starts_with("source_")
}

/// Why a record was dead-lettered: the value of [`header::CLASS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// A stream record without a value (a tombstone).
    MissingValue,
    /// Shorter than the Confluent wire header.
    TruncatedHeader,
    /// Not Confluent wire format.
    BadMagicByte,
    /// The registry says the schema id does not exist (Confluent error 40403).
    UnknownSchemaId,
    /// The registry could not be asked. Written by versions before the runtime paused on registry outages; the job
    /// now waits instead.
    RegistryUnavailable,
    /// The registry refused the job's requests. Never written: the job stops instead.
    RegistryRefused,
    /// The writer schema cannot be read as the job's record type.
    IncompatibleSchema,
    /// The Avro datum does not decode with its writer schema.
    UndecodableAvro,
    /// Decoded, but breaks a rule of the contract.
    InvalidValue,
    /// Headers that cannot be read, a key that is not UTF-8, or a text header that is not.
    BadHeaders,
    /// A stream record without a key.
    MissingKey,
    /// A timestamp before 1970.
    NegativeTimestamp,
    /// A timestamp too far ahead of the wall clock.
    FutureTimestamp,
}

impl Class {
    /// Every class, in the order `dlq inspect` lists them when a `--class` matches none.
    pub const ALL: [Class; 13] = [
        Class::MissingValue,
        Class::TruncatedHeader,
        Class::BadMagicByte,
        Class::UnknownSchemaId,
        Class::RegistryUnavailable,
        Class::RegistryRefused,
        Class::IncompatibleSchema,
        Class::UndecodableAvro,
        Class::InvalidValue,
        Class::BadHeaders,
        Class::MissingKey,
        Class::NegativeTimestamp,
        Class::FutureTimestamp,
    ];

    /// The class's name in [`header::CLASS`].
    pub fn as_str(self) -> &'static str {
        match self {
            Class::MissingValue => "missing-value",
            Class::TruncatedHeader => "truncated-header",
            Class::BadMagicByte => "bad-magic-byte",
            Class::UnknownSchemaId => "unknown-schema-id",
            Class::RegistryUnavailable => "registry-unavailable",
            Class::RegistryRefused => "registry-refused",
            Class::IncompatibleSchema => "incompatible-schema",
            Class::UndecodableAvro => "undecodable-avro",
            Class::InvalidValue => "invalid-value",
            Class::BadHeaders => "bad-headers",
            Class::MissingKey => "missing-key",
            Class::NegativeTimestamp => "negative-timestamp",
            Class::FutureTimestamp => "future-timestamp",
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_are_distinct_and_the_runtime_headers_are_recognised() {
        let names: std::collections::BTreeSet<&str> =
            Class::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), Class::ALL.len());
        for key in PROVENANCE {
            assert!(is_runtime_header(key), "{key}");
        }
        assert!(is_runtime_header(header::CLASS) && is_runtime_header(header::TRUNCATED));
        assert!(!is_runtime_header("ce_id"));
    }
}
