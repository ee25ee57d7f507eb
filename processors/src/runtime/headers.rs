//! Kafka record headers read without trusting them.
//!
//! rdkafka's `Headers::iter`/`get` turn each header key into `&str` with `unwrap()`: one record whose header key is
//! not UTF-8 (any producer can write one) panics every consumer that looks at its headers, and since the record is
//! never committed, every restart dies on it again. [`KafkaHeaders`] reads the same native header list through
//! librdkafka's own accessor and hands out keys and values as bytes; deciding what is acceptable is left to the
//! reader ([`HeaderProblem`] says what the runtime refuses).
//!
//! Every place that reads headers of consumed records (the runtime, SQL tables, `dlq`, `inspect`, `replay`) reads
//! them here.

use std::marker::PhantomData;

use rdkafka::bindings as rdsys;
use rdkafka::bindings::rd_kafka_resp_err_t as RDKafkaRespErr;
use rdkafka::message::BorrowedMessage;

/// One header as it is on the wire: key and value bytes; a null value is None.
pub type RawHeader<'a> = (&'a [u8], Option<&'a [u8]>);

/// The headers of one consumed message, borrowed from it.
#[derive(Clone, Copy)]
pub struct KafkaHeaders<'a> {
    /// librdkafka's parsed header list of the message; null when the message has none or they cannot be read.
    list: *const rdsys::rd_kafka_headers_t,
    /// Why the headers could not be parsed (librdkafka's error name), when they could not.
    unreadable: Option<&'static str>,
    message: PhantomData<&'a BorrowedMessage<'a>>,
}

impl<'a> KafkaHeaders<'a> {
    /// The headers of `message`.
    pub fn of(message: &'a BorrowedMessage<'_>) -> KafkaHeaders<'a> {
        let mut list: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: `message.ptr()` is the live native message for as long as `message` is borrowed; librdkafka
        // parses its headers into a list the message owns (and frees with it), so the list and every key and
        // value in it live at least as long as `'a`.
        let code = unsafe { rdsys::rd_kafka_message_headers(message.ptr(), &mut list) };
        match code {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => KafkaHeaders {
                list,
                unreadable: None,
                message: PhantomData,
            },
            // No headers at all: the common case for records written by clients that set none.
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__NOENT => KafkaHeaders::none(),
            other => KafkaHeaders {
                list: std::ptr::null(),
                unreadable: Some(error_name(other)),
                message: PhantomData,
            },
        }
    }

    /// No headers.
    pub fn none() -> KafkaHeaders<'a> {
        KafkaHeaders {
            list: std::ptr::null(),
            unreadable: None,
            message: PhantomData,
        }
    }

    /// Why the message's headers could not be read at all (malformed on the wire), if they could not.
    pub fn unreadable(&self) -> Option<&'static str> {
        self.unreadable
    }

    /// Every header in record order.
    pub fn iter(&self) -> impl Iterator<Item = RawHeader<'a>> + 'a {
        let list = self.list;
        let count = if list.is_null() {
            0
        } else {
            // SAFETY: a non-null list came from `rd_kafka_message_headers` and lives for 'a (see `of`).
            unsafe { rdsys::rd_kafka_header_cnt(list) }
        };
        (0..count).filter_map(move |index| {
            let mut name: *const std::ffi::c_char = std::ptr::null();
            let mut value: *const std::ffi::c_void = std::ptr::null();
            let mut size: usize = 0;
            // SAFETY: as above; `index` is below the list's count, and librdkafka writes the name (a
            // NUL-terminated copy of the key), the value pointer and its size into the out-parameters.
            let code = unsafe {
                rdsys::rd_kafka_header_get_all(list, index, &mut name, &mut value, &mut size)
            };
            if code != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                return None;
            }
            // SAFETY: librdkafka's names are NUL-terminated and live with the list; values are `size` bytes.
            let key = unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes();
            let value = (!value.is_null())
                .then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) });
            Some((key, value))
        })
    }
}

fn error_name(code: RDKafkaRespErr) -> &'static str {
    // SAFETY: librdkafka returns a pointer to a static NUL-terminated name for every error code.
    let name = unsafe { std::ffi::CStr::from_ptr(rdsys::rd_kafka_err2name(code)) };
    name.to_str().unwrap_or("unknown error")
}

/// Headers whose values adstream reads as text: CloudEvents attributes (`ce_*`) and the correlation id.
pub fn is_text_header(key: &[u8]) -> bool {
    key == b"correlation_id" || key.starts_with(b"ce_")
}

/// Why the runtime refuses a record's headers (dead-letter class `bad-headers`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderProblem {
    /// librdkafka could not parse the header block.
    #[error("headers cannot be read: {0}")]
    Unreadable(&'static str),
    /// Kafka header keys are strings; this one is not UTF-8.
    #[error("header #{index} has a key that is not UTF-8 ({key})")]
    KeyNotUtf8 {
        /// Position in the record's headers.
        index: usize,
        /// The key, escaped.
        key: String,
    },
    /// A header adstream reads as text (see [`is_text_header`]) is not UTF-8.
    #[error("header {key} has a value that is not UTF-8")]
    TextValueNotUtf8 {
        /// The header's key.
        key: String,
    },
}

/// The first reason to refuse `headers`: a key that is not UTF-8, or a text header whose value is not.
pub fn check<'a>(headers: impl IntoIterator<Item = RawHeader<'a>>) -> Result<(), HeaderProblem> {
    for (index, (key, value)) in headers.into_iter().enumerate() {
        let Ok(text_key) = std::str::from_utf8(key) else {
            return Err(HeaderProblem::KeyNotUtf8 {
                index,
                key: key.escape_ascii().to_string(),
            });
        };
        if is_text_header(key) && value.is_some_and(|v| std::str::from_utf8(v).is_err()) {
            return Err(HeaderProblem::TextValueNotUtf8 {
                key: text_key.to_owned(),
            });
        }
    }
    Ok(())
}

/// A header key as text for writing it again: a key that is not UTF-8 (a record being dead-lettered for it) is
/// carried with its invalid bytes replaced, since Kafka clients write header keys as strings.
pub fn key_text(key: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_text_headers_that_are_not_utf8_are_problems_other_values_are_bytes() {
        let fine: [RawHeader<'_>; 3] = [
            (b"ce_id", Some(b"1")),
            (b"blob", Some(&[0xff, 0x00])),
            (b"correlation_id", None),
        ];
        assert_eq!(check(fine), Ok(()));
        let bad_key: [RawHeader<'_>; 2] = [(b"ok", None), (&[0xff, b'k'], Some(b"1"))];
        assert_eq!(
            check(bad_key),
            Err(HeaderProblem::KeyNotUtf8 {
                index: 1,
                key: "\\xffk".into()
            })
        );
        let bad_text: [RawHeader<'_>; 1] = [(b"ce_type", Some(&[0xc3]))];
        assert!(matches!(
            check(bad_text),
            Err(HeaderProblem::TextValueNotUtf8 { .. })
        ));
    }
}
