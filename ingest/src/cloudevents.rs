//! The CloudEvents HTTP protocol binding 1.0, the three ways a request may carry events:
//!
//! - **binary**: one event; its context attributes in `ce-` headers (`ce-specversion`, `ce-id`, `ce-source`,
//!   `ce-type`, optional `ce-time`), its data as the body with `Content-Type: application/json`;
//! - **structured**: one event as a JSON object, `Content-Type: application/cloudevents+json`;
//! - **batch**: a JSON array of structured events, `Content-Type: application/cloudevents-batch+json`.
//!
//! Only JSON data is taken (`data`, not `data_base64`): the data becomes an Avro record field by field, so it
//! has to be a JSON object.

use axum::http::HeaderMap;
use chrono::DateTime;
use serde::Serialize;
use serde_json::{Map, Value};

/// The only `specversion` there is.
pub const SPEC_VERSION: &str = "1.0";
/// Content type of a structured-mode request.
pub const STRUCTURED: &str = "application/cloudevents+json";
/// Content type of a batch-mode request.
pub const BATCH: &str = "application/cloudevents-batch+json";

/// One event as received: its context attributes and its JSON data, not yet checked against a contract.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedEvent {
    /// `id`: unique within `source`.
    pub id: String,
    /// `source`: who sent it (a URI reference).
    pub source: String,
    /// `type`: which contract record the data is.
    pub ce_type: String,
    /// `time` in UTC epoch millis, when given.
    pub time_ms: Option<i64>,
    /// `data`.
    pub data: Value,
}

/// Why one event (or the whole request) was refused: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Position of the event in the request (0 outside batch mode).
    pub index: usize,
    /// The event's `id`, when it had a readable one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The attribute or data field at fault: `type`, `data.campaign_id`, `body`…
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Rejection {
    /// A rejection of the event at `index` (id unknown yet).
    pub fn at(index: usize, path: impl Into<String>, reason: impl Into<String>) -> Rejection {
        Rejection {
            index,
            id: None,
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Why a request as a whole cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Neither a CloudEvents content type nor binary-mode headers with JSON data (`415`).
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// A batch with more events than the server takes in one request (`413`).
    #[error("a batch of {count} events is over the limit of {max}")]
    TooManyEvents {
        /// Events in the batch.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The request or some of its events are not valid CloudEvents (`400`).
    #[error("{} invalid event(s)", .0.len())]
    Invalid(Vec<Rejection>),
}

/// Reads the events a request carries, in the mode its headers say.
pub fn read_request(
    headers: &HeaderMap,
    body: &[u8],
    max_batch_events: usize,
) -> Result<Vec<ReceivedEvent>, RequestError> {
    let content_type = match headers.get(axum::http::header::CONTENT_TYPE) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            RequestError::UnsupportedMediaType("Content-Type is not visible ASCII".into())
        })?),
    };
    let media_type = content_type
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match media_type.as_str() {
        STRUCTURED => {
            let value = parse_json(body)?;
            structured(0, value)
                .map(|event| vec![event])
                .map_err(|rejection| RequestError::Invalid(vec![rejection]))
        }
        BATCH => batch(parse_json(body)?, max_batch_events),
        _ if headers.contains_key("ce-specversion") => {
            // Without a Content-Type the data is JSON (the JSON event format's rule for an absent
            // `datacontenttype`).
            if content_type.is_some() && !is_json(&media_type) {
                return Err(RequestError::UnsupportedMediaType(format!(
                    "binary-mode data must be JSON (Content-Type: application/json), not '{}'",
                    content_type.unwrap_or("(none)")
                )));
            }
            binary(headers, body).map(|event| vec![event])
        }
        _ => Err(RequestError::UnsupportedMediaType(format!(
            "'{}' is not a CloudEvent: send {STRUCTURED}, {BATCH}, or JSON data with ce-* headers (binary mode)",
            content_type.unwrap_or("(no Content-Type)")
        ))),
    }
}

/// `application/json` or any `+json` type (what `datacontenttype` may be for data the server can read).
fn is_json(media_type: &str) -> bool {
    media_type == "application/json" || media_type.ends_with("+json")
}

fn parse_json(body: &[u8]) -> Result<Value, RequestError> {
    serde_json::from_slice(body).map_err(|error| {
        RequestError::Invalid(vec![Rejection::at(0, "body", format!("not JSON: {error}"))])
    })
}

fn batch(value: Value, max_batch_events: usize) -> Result<Vec<ReceivedEvent>, RequestError> {
    let Value::Array(items) = value else {
        return Err(RequestError::Invalid(vec![Rejection::at(
            0,
            "body",
            "a batch must be a JSON array of events",
        )]));
    };
    if items.is_empty() {
        return Err(RequestError::Invalid(vec![Rejection::at(
            0,
            "body",
            "the batch is empty",
        )]));
    }
    if items.len() > max_batch_events {
        return Err(RequestError::TooManyEvents {
            count: items.len(),
            max: max_batch_events,
        });
    }
    let mut events = Vec::with_capacity(items.len());
    let mut rejections = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match structured(index, item) {
            Ok(event) => events.push(event),
            Err(rejection) => rejections.push(rejection),
        }
    }
    if rejections.is_empty() {
        Ok(events)
    } else {
        Err(RequestError::Invalid(rejections))
    }
}

/// One structured-mode event (a JSON object with its attributes and `data`).
fn structured(index: usize, value: Value) -> Result<ReceivedEvent, Rejection> {
    let Value::Object(mut object) = value else {
        return Err(Rejection::at(index, "", "an event must be a JSON object"));
    };
    let id = object.get("id").and_then(Value::as_str).map(str::to_owned);
    let with_id = |mut rejection: Rejection| {
        rejection.id = id.clone();
        rejection
    };
    let attribute =
        |object: &Map<String, Value>, name: &str| -> Result<Option<String>, Rejection> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(_) => Err(Rejection::at(index, name, "must be a string")),
            }
        };
    let required = |object: &Map<String, Value>, name: &str| -> Result<String, Rejection> {
        match attribute(object, name)? {
            Some(text) if !text.is_empty() => Ok(text),
            _ => Err(Rejection::at(index, name, "is required")),
        }
    };
    let specversion = required(&object, "specversion").map_err(with_id)?;
    check_specversion(index, &specversion).map_err(with_id)?;
    if let Some(content_type) = attribute(&object, "datacontenttype").map_err(with_id)? {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if !is_json(&media_type.to_ascii_lowercase()) {
            return Err(with_id(Rejection::at(
                index,
                "datacontenttype",
                format!("'{content_type}': only JSON data is accepted"),
            )));
        }
    }
    if object.contains_key("data_base64") {
        return Err(with_id(Rejection::at(
            index,
            "data_base64",
            "binary data is not accepted: send the event's fields as JSON in `data`",
        )));
    }
    let event = ReceivedEvent {
        id: required(&object, "id").map_err(with_id)?,
        source: required(&object, "source").map_err(with_id)?,
        ce_type: required(&object, "type").map_err(with_id)?,
        time_ms: match attribute(&object, "time").map_err(with_id)? {
            Some(time) => Some(parse_time(index, &time).map_err(with_id)?),
            None => None,
        },
        data: match object.remove("data") {
            Some(data) => data,
            None => return Err(with_id(Rejection::at(index, "data", "is required"))),
        },
    };
    Ok(event)
}

/// One binary-mode event: attributes from `ce-` headers, data from the body.
fn binary(headers: &HeaderMap, body: &[u8]) -> Result<ReceivedEvent, RequestError> {
    let invalid = |path: &str, reason: &str| {
        RequestError::Invalid(vec![Rejection::at(0, path, reason.to_string())])
    };
    let header = |name: &str| -> Result<Option<String>, RequestError> {
        match headers.get(name) {
            None => Ok(None),
            Some(value) => percent_decode(value.as_bytes())
                .map(Some)
                .ok_or_else(|| invalid(name, "is not percent-encoded UTF-8")),
        }
    };
    let required = |name: &str| -> Result<String, RequestError> {
        match header(name)? {
            Some(text) if !text.is_empty() => Ok(text),
            _ => Err(invalid(name, "is required")),
        }
    };
    let specversion = required("ce-specversion")?;
    check_specversion(0, &specversion).map_err(|r| RequestError::Invalid(vec![r]))?;
    let id = required("ce-id")?;
    let rejected = |rejection: Rejection| {
        RequestError::Invalid(vec![Rejection {
            id: Some(id.clone()),
            ..rejection
        }])
    };
    let source = required("ce-source")?;
    let ce_type = required("ce-type")?;
    let time_ms = match header("ce-time")? {
        Some(time) => Some(parse_time(0, &time).map_err(rejected)?),
        None => None,
    };
    let data = serde_json::from_slice(body)
        .map_err(|error| rejected(Rejection::at(0, "data", format!("not JSON: {error}"))))?;
    Ok(ReceivedEvent {
        id,
        source,
        ce_type,
        time_ms,
        data,
    })
}

/// A header value with the binding's percent-encoding undone (it encodes space, `"`, `%` and everything outside
/// printable ASCII as UTF-8 bytes `%XX`); None when an escape is malformed or the bytes are not UTF-8.
fn percent_decode(value: &[u8]) -> Option<String> {
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail.get(..2)?;
            let text = std::str::from_utf8(hex).ok()?;
            bytes.push(u8::from_str_radix(text, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

fn check_specversion(index: usize, specversion: &str) -> Result<(), Rejection> {
    if specversion == SPEC_VERSION {
        Ok(())
    } else {
        Err(Rejection::at(
            index,
            "specversion",
            format!("'{specversion}' is not supported (only {SPEC_VERSION})"),
        ))
    }
}

fn parse_time(index: usize, time: &str) -> Result<i64, Rejection> {
    DateTime::parse_from_rfc3339(time)
        .map(|t| t.timestamp_millis())
        .map_err(|error| Rejection::at(index, "time", format!("'{time}' is not RFC 3339: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("test header"));
        }
        map
    }

    fn invalid(result: Result<Vec<ReceivedEvent>, RequestError>) -> Vec<Rejection> {
        match result {
            Err(RequestError::Invalid(rejections)) => rejections,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn binary_mode_takes_attributes_from_headers_and_data_from_the_body() {
        let h = headers(&[
            ("content-type", "application/json; charset=utf-8"),
            ("ce-specversion", "1.0"),
            ("ce-id", "e1"),
            ("ce-source", "/shop"),
            ("ce-type", "io.adstream.conversion.v1"),
            ("ce-time", "2026-11-01T10:00:00Z"),
        ]);
        let events = read_request(&h, br#"{"user_id":"u"}"#, 10).expect("valid");
        assert_eq!(
            events,
            vec![ReceivedEvent {
                id: "e1".into(),
                source: "/shop".into(),
                ce_type: "io.adstream.conversion.v1".into(),
                time_ms: Some(1_793_527_200_000),
                data: json!({"user_id": "u"}),
            }]
        );
    }

    #[test]
    fn binary_mode_header_values_are_percent_decoded_and_json_is_the_default_data_type() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "order%20%C3%A9-1"),
            ("ce-source", "/shop"),
            ("ce-type", "t"),
        ]);
        let events = read_request(&h, b"{}", 10).expect("valid");
        assert_eq!(events[0].id, "order \u{e9}-1");
        for bad in ["%zz", "%C3", "%"] {
            let h = headers(&[
                ("ce-specversion", "1.0"),
                ("ce-id", bad),
                ("ce-source", "/s"),
                ("ce-type", "t"),
            ]);
            assert_eq!(
                invalid(read_request(&h, b"{}", 10))[0].path,
                "ce-id",
                "{bad}"
            );
        }
    }

    #[test]
    fn structured_and_batch_modes_read_json_events() {
        let event = json!({"specversion":"1.0","id":"a","source":"/s","type":"t","data":{"x":1}});
        let h = headers(&[("content-type", STRUCTURED)]);
        let one = read_request(&h, event.to_string().as_bytes(), 10).expect("structured");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].time_ms, None);
        let h = headers(&[("content-type", BATCH)]);
        let body = json!([event, event]).to_string();
        assert_eq!(
            read_request(&h, body.as_bytes(), 10).expect("batch").len(),
            2
        );
    }

    #[test]
    fn every_bad_event_of_a_batch_is_reported_with_its_index_and_attribute() {
        let h = headers(&[("content-type", BATCH)]);
        let body = json!([
            {"specversion":"1.0","id":"a","source":"/s","type":"t","data":{}},
            {"specversion":"0.3","id":"b","source":"/s","type":"t","data":{}},
            {"specversion":"1.0","id":"c","type":"t","data":{}},
            {"specversion":"1.0","id":"d","source":"/s","type":"t","data_base64":"AA=="},
            {"specversion":"1.0","id":"e","source":"/s","type":"t","time":"yesterday","data":{}},
            7
        ])
        .to_string();
        let rejections = invalid(read_request(&h, body.as_bytes(), 10));
        let found: Vec<(usize, Option<&str>, &str)> = rejections
            .iter()
            .map(|r| (r.index, r.id.as_deref(), r.path.as_str()))
            .collect();
        assert_eq!(
            found,
            vec![
                (1, Some("b"), "specversion"),
                (2, Some("c"), "source"),
                (3, Some("d"), "data_base64"),
                (4, Some("e"), "time"),
                (5, None, ""),
            ]
        );
    }

    #[test]
    fn a_batch_over_the_limit_is_refused_whole() {
        let h = headers(&[("content-type", BATCH)]);
        let body = json!([{}, {}, {}]).to_string();
        assert_eq!(
            read_request(&h, body.as_bytes(), 2),
            Err(RequestError::TooManyEvents { count: 3, max: 2 })
        );
    }

    #[test]
    fn requests_that_are_not_cloudevents_are_unsupported_media() {
        for pairs in [
            vec![("content-type", "application/json")],
            vec![("content-type", "text/plain"), ("ce-specversion", "1.0")],
            vec![],
        ] {
            let result = read_request(&headers(&pairs), b"{}", 10);
            assert!(
                matches!(result, Err(RequestError::UnsupportedMediaType(_))),
                "{pairs:?}: {result:?}"
            );
        }
    }

    #[test]
    fn bodies_that_are_not_json_or_not_utf8_are_invalid_not_a_panic() {
        let h = headers(&[("content-type", STRUCTURED)]);
        for body in [
            &b"{"[..],
            &[0xff, 0xfe, 0x00][..],
            &b"\"just a string\""[..],
        ] {
            let rejections = invalid(read_request(&h, body, 10));
            assert_eq!(rejections.len(), 1);
        }
    }
}
