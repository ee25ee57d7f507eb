//! The reading side of the dead-letter format: a record of `dlq.<topic>` as a [`DeadLetter`], which topic a
//! letter may go back to, which letters of a selection are re-sent, and the headers a re-sent record carries.
//!
//! Used by [`super::scan`] and [`super::redrive`] (`adstream dlq inspect|redrive`); the binary only parses
//! arguments and prints.

use std::collections::HashSet;

use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::Message;

use super::{header, DLQ_PREFIX, PROVENANCE};
use crate::runtime::headers::{key_text, KafkaHeaders};

/// Why a topic argument or a dead letter cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadLetterError {
    /// The topic argument is empty (or only white space).
    #[error("the topic name is empty")]
    EmptyTopic,
    /// The topic argument is the dead-letter prefix alone (`dlq.`).
    #[error("'{argument}' names no topic after the '{DLQ_PREFIX}' prefix")]
    NoTopicAfterPrefix {
        /// The argument as given (trimmed).
        argument: String,
    },
    /// The letter has no (or an empty) [`header::SOURCE_TOPIC`].
    #[error("dead letter {letter} has no source_topic header")]
    NoSourceTopic {
        /// `<dead-letter topic>/<partition>/<offset>` of the letter.
        letter: String,
    },
    /// The letter's [`header::SOURCE_TOPIC`] names a topic other than the one its dead-letter topic implies.
    #[error(
        "dead letter {letter} names source_topic '{}', but {dlq_topic} holds dead letters of '{implied_source}' \
         only; nothing was sent",
        named.escape_debug()
    )]
    ForeignSourceTopic {
        /// `<dead-letter topic>/<partition>/<offset>` of the letter.
        letter: String,
        /// The topic named by the letter's header.
        named: String,
        /// The dead-letter topic the letter was read from.
        dlq_topic: String,
        /// The only topic its letters may go back to.
        implied_source: String,
    },
    /// The letter has no [`header::SOURCE_PARTITION`].
    #[error("dead letter {letter} has no source_partition header")]
    NoSourcePartition {
        /// `<dead-letter topic>/<partition>/<offset>` of the letter.
        letter: String,
    },
    /// The letter's [`header::SOURCE_PARTITION`] is not a partition number.
    #[error("dead letter {letter}: source_partition '{value}' is not a partition number")]
    BadSourcePartition {
        /// `<dead-letter topic>/<partition>/<offset>` of the letter.
        letter: String,
        /// The header's value (lossy UTF-8).
        value: String,
    },
}

/// One record of a dead-letter topic, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Partition of the dead-letter topic it was read from.
    pub partition: i32,
    /// Offset there.
    pub offset: i64,
    /// The record timestamp (epoch millis; the original record's, see [`header::ORIGINAL_TIMESTAMP`]).
    pub timestamp_ms: Option<i64>,
    /// The original record's key.
    pub key: Option<Vec<u8>>,
    /// The original record's value; None for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Every header in record order: the runtime's, then the record's own. Keys that are not UTF-8 have their
    /// invalid bytes replaced; values are bytes, None for a null value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl DeadLetter {
    /// The letter held by a consumed message, its headers read with [`KafkaHeaders`] (never trusted to be UTF-8).
    pub fn from_message(message: &BorrowedMessage<'_>) -> DeadLetter {
        let headers = KafkaHeaders::of(message)
            .iter()
            .map(|(key, value)| (key_text(key).into_owned(), value.map(<[u8]>::to_vec)))
            .collect();
        DeadLetter {
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// The first header named `name`, as text (lossy for non-UTF-8 values).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// [`header::CLASS`], or `(none)` for a record without one (not written by the runtime).
    pub fn class(&self) -> String {
        self.header(header::CLASS)
            .unwrap_or_else(|| "(none)".to_owned())
    }

    /// Where the record came from: [`header::SOURCE_TOPIC`] and [`header::SOURCE_PARTITION`], both required to
    /// re-send it. The topic must be `implied_source`, the one the dead-letter topic's name implies (see
    /// [`topics_of`]): the headers are whatever the dead-lettered record carried, and a record written to `dlq.X`
    /// must not be able to make a redrive write into any other topic (`_schemas`, say).
    pub fn source(
        &self,
        dlq_topic: &str,
        implied_source: &str,
    ) -> Result<(String, i32), DeadLetterError> {
        let here = format!("{dlq_topic}/{}/{}", self.partition, self.offset);
        let topic = self
            .header(header::SOURCE_TOPIC)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| DeadLetterError::NoSourceTopic {
                letter: here.clone(),
            })?;
        if topic != implied_source {
            return Err(DeadLetterError::ForeignSourceTopic {
                letter: here,
                named: topic,
                dlq_topic: dlq_topic.to_owned(),
                implied_source: implied_source.to_owned(),
            });
        }
        let partition = self.header(header::SOURCE_PARTITION).ok_or_else(|| {
            DeadLetterError::NoSourcePartition {
                letter: here.clone(),
            }
        })?;
        let partition = partition.parse::<i32>().ok().filter(|p| *p >= 0).ok_or(
            DeadLetterError::BadSourcePartition {
                letter: here,
                value: partition,
            },
        )?;
        Ok((topic, partition))
    }
}

/// `(dead-letter topic, source topic)` for a topic argument that names either: `ads.clicks` and `dlq.ads.clicks`
/// both give `("dlq.ads.clicks", "ads.clicks")`. Surrounding white space is ignored.
pub fn topics_of(argument: &str) -> Result<(String, String), DeadLetterError> {
    let argument = argument.trim();
    if argument.is_empty() {
        return Err(DeadLetterError::EmptyTopic);
    }
    match argument.strip_prefix(DLQ_PREFIX) {
        Some("") => Err(DeadLetterError::NoTopicAfterPrefix {
            argument: argument.to_owned(),
        }),
        Some(source) => Ok((argument.to_owned(), source.to_owned())),
        None => Ok((format!("{DLQ_PREFIX}{argument}"), argument.to_owned())),
    }
}

/// Keeps the first dead letter of each source record ([`header::SOURCE_TOPIC`], [`header::SOURCE_PARTITION`],
/// [`header::SOURCE_OFFSET`]), so that a record dead-lettered by several jobs goes back once; letters without
/// those headers are all kept. Returns how many were dropped.
pub fn keep_one_per_source(letters: &mut Vec<DeadLetter>) -> usize {
    let before = letters.len();
    let mut seen = HashSet::new();
    letters.retain(|letter| {
        let source = (
            letter.header(header::SOURCE_TOPIC),
            letter.header(header::SOURCE_PARTITION),
            letter.header(header::SOURCE_OFFSET),
        );
        match source {
            (Some(topic), Some(partition), Some(offset)) => seen.insert((topic, partition, offset)),
            _ => true,
        }
    });
    before - letters.len()
}

/// The headers of a re-sent record: the dead letter's, minus `dlq_*`, the [`PROVENANCE`] headers and any earlier
/// [`header::REDRIVEN_FROM`], plus [`header::REDRIVEN_FROM`] set to `redriven_from`
/// (`<dead-letter topic>/<partition>/<offset>` of the letter).
pub fn redrive_headers(letter: &DeadLetter, redriven_from: &str) -> OwnedHeaders {
    let kept = letter.headers.iter().filter(|(key, _)| {
        !key.starts_with("dlq_")
            && !PROVENANCE.contains(&key.as_str())
            && key != header::REDRIVEN_FROM
    });
    let mut headers = OwnedHeaders::new_with_capacity(letter.headers.len() + 1);
    for (key, value) in kept {
        headers = headers.insert(Header {
            key,
            value: value.as_deref(),
        });
    }
    headers.insert(Header {
        key: header::REDRIVEN_FROM,
        value: Some(redriven_from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_argument_names_source_or_dead_letter_topic() {
        let pair = |a: &str| topics_of(a).expect("valid");
        assert_eq!(
            pair("ads.clicks"),
            ("dlq.ads.clicks".to_owned(), "ads.clicks".to_owned())
        );
        assert_eq!(
            pair("dlq.ads.clicks"),
            ("dlq.ads.clicks".to_owned(), "ads.clicks".to_owned())
        );
        assert!(topics_of("dlq.").is_err());
        assert!(topics_of(" ").is_err());
    }

    // Regression (issue 18, item 8): the target came from the letter's own `source_topic` header, so a record
    // written to dlq.X with `source_topic: _schemas` made a redrive write into the registry's topic.
    #[test]
    fn a_letter_can_only_go_back_to_the_topic_its_dead_letter_topic_names() {
        let letter = |source_topic: &str| DeadLetter {
            partition: 0,
            offset: 3,
            timestamp_ms: None,
            key: None,
            value: None,
            headers: vec![
                (
                    "source_topic".to_owned(),
                    Some(source_topic.as_bytes().to_vec()),
                ),
                ("source_partition".to_owned(), Some(b"1".to_vec())),
            ],
        };
        assert_eq!(
            letter("ads.clicks")
                .source("dlq.ads.clicks", "ads.clicks")
                .expect("its own source"),
            ("ads.clicks".to_owned(), 1)
        );
        let error = letter("_schemas")
            .source("dlq.ads.clicks", "ads.clicks")
            .expect_err("another topic")
            .to_string();
        assert!(
            error.contains("'_schemas'") && error.contains("nothing was sent"),
            "{error}"
        );
    }

    #[test]
    fn the_refusal_of_a_foreign_source_topic_reads_as_one_sentence() {
        let letter = DeadLetter {
            partition: 0,
            offset: 3,
            timestamp_ms: None,
            key: None,
            value: None,
            headers: vec![("source_topic".to_owned(), Some(b"_schemas".to_vec()))],
        };
        let error = letter
            .source("dlq.ads.clicks", "ads.clicks")
            .expect_err("another topic")
            .to_string();
        assert_eq!(
            error,
            "dead letter dlq.ads.clicks/0/3 names source_topic '_schemas', but dlq.ads.clicks holds dead letters \
             of 'ads.clicks' only; nothing was sent"
        );
        assert!(!error.contains("  "), "{error}");
    }

    #[test]
    fn a_record_dead_lettered_by_several_jobs_is_redriven_once() {
        let letter = |offset: i64, by: &str, source_offset: Option<&str>| DeadLetter {
            partition: 0,
            offset,
            timestamp_ms: None,
            key: None,
            value: None,
            headers: [
                ("source_topic", Some("t")),
                ("source_partition", Some("2")),
                ("source_offset", source_offset),
                ("redirected_by", Some(by)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.map(|v| v.as_bytes().to_vec())))
            .collect(),
        };
        let mut letters = vec![
            letter(0, "campaign-metrics", Some("7")),
            letter(1, "creative-fatigue", Some("7")),
            letter(2, "campaign-metrics", Some("8")),
            letter(3, "elsewhere", None),
            letter(4, "elsewhere", None),
        ];
        assert_eq!(keep_one_per_source(&mut letters), 1);
        let kept: Vec<i64> = letters.iter().map(|l| l.offset).collect();
        assert_eq!(kept, [0, 2, 3, 4]);
    }

    #[test]
    fn redrive_headers_drop_dead_letter_headers_and_name_the_origin() {
        let letter = DeadLetter {
            partition: 1,
            offset: 7,
            timestamp_ms: Some(5),
            key: None,
            value: None,
            headers: [
                ("ce_id", Some("e-1")),
                ("dlq_error_class", Some("invalid-value")),
                ("dlq_error_message", Some("bad")),
                ("source_topic", Some("t")),
                ("source_partition", Some("1")),
                ("source_offset", Some("3")),
                ("redirected_at", Some("9")),
                ("correlation_id", Some("c-1")),
                ("redriven_from", Some("dlq.t/0/0")),
                ("empty", None),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.map(|v| v.as_bytes().to_vec())))
            .collect(),
        };
        let headers = redrive_headers(&letter, "dlq.t/1/7");
        // Headers built here from UTF-8 keys: rdkafka's reader is safe on them.
        use rdkafka::message::Headers;
        let names: Vec<(String, Option<Vec<u8>>)> = headers
            .iter()
            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(
            names,
            vec![
                ("ce_id".to_owned(), Some(b"e-1".to_vec())),
                ("correlation_id".to_owned(), Some(b"c-1".to_vec())),
                ("empty".to_owned(), None),
                ("redriven_from".to_owned(), Some(b"dlq.t/1/7".to_vec())),
            ]
        );
    }
}
