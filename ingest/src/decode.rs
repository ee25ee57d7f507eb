//! From a received CloudEvent to the contract record its `type` names, checked field by field.
//!
//! The data is read with the contract's Avro field semantics, not serde's looser ones: a field the record does
//! not have is refused (a misspelt optional field would otherwise vanish silently), a field with an Avro
//! `default` may be left out, every other field is required. The record's id field (`event_id`, or
//! `conversion_id`) is the CloudEvents `id`: filled from it when absent, refused when different. `event_time`
//! falls back to the CloudEvents `time`. Then the producers' own checks run ([`CheckedEvent`]).

use std::collections::HashMap;
use std::sync::LazyLock;

use adstream_producers::builders::CheckedEvent;
use adstream_schemas::events::{AdClick, AdImpression, AvroRecord, Conversion};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::cloudevents::{ReceivedEvent, Rejection};

/// The kinds of event the endpoint takes, by CloudEvents `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `io.adstream.ad.impression.v1` → `AdImpression`.
    Impression,
    /// `io.adstream.ad.click.v1` → `AdClick`.
    Click,
    /// `io.adstream.conversion.v1` → `Conversion`.
    Conversion,
}

impl EventKind {
    /// Every kind, in the order the server keeps their topics.
    pub const ALL: [EventKind; 3] = [
        EventKind::Impression,
        EventKind::Click,
        EventKind::Conversion,
    ];

    /// The CloudEvents `type` of this kind.
    pub fn ce_type(self) -> &'static str {
        match self {
            EventKind::Impression => AdImpression::CE_TYPE,
            EventKind::Click => AdClick::CE_TYPE,
            EventKind::Conversion => Conversion::CE_TYPE,
        }
    }

    /// Its position in [`EventKind::ALL`].
    pub fn index(self) -> usize {
        match self {
            EventKind::Impression => 0,
            EventKind::Click => 1,
            EventKind::Conversion => 2,
        }
    }

    fn of_ce_type(ce_type: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.ce_type() == ce_type)
    }
}

/// A checked event: its contract record and the `source` it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestEvent {
    /// The record, ready to encode.
    pub record: IngestRecord,
    /// CloudEvents `source`, kept as the record's `ce_source` header and half of its idempotency key.
    pub source: String,
}

/// The contract record of a checked event.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestRecord {
    /// An impression.
    Impression(AdImpression),
    /// A click.
    Click(AdClick),
    /// A conversion.
    Conversion(Conversion),
}

impl IngestRecord {
    /// Its kind.
    pub fn kind(&self) -> EventKind {
        match self {
            IngestRecord::Impression(_) => EventKind::Impression,
            IngestRecord::Click(_) => EventKind::Click,
            IngestRecord::Conversion(_) => EventKind::Conversion,
        }
    }

    /// Its id: the CloudEvents `id`.
    pub fn id(&self) -> &str {
        match self {
            IngestRecord::Impression(r) => r.id(),
            IngestRecord::Click(r) => r.id(),
            IngestRecord::Conversion(r) => r.id(),
        }
    }
}

/// What the contract says about one record's fields.
struct Contract {
    /// Record name, for messages.
    name: &'static str,
    /// The field that holds the CloudEvents id.
    id_field: &'static str,
    /// Every field, with its Avro default when it has one.
    fields: HashMap<String, Option<Value>>,
}

impl Contract {
    fn of<T: AvroRecord>(name: &'static str, id_field: &'static str) -> Contract {
        // The contract's .avsc files are compiled in and parsed by the schemas crate's own tests; a field list
        // that failed to read here would refuse every event of the kind, loudly, not corrupt one.
        let schema: Value = serde_json::from_str(T::SCHEMA).unwrap_or(Value::Null);
        let fields = schema["fields"]
            .as_array()
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|field| {
                        let name = field["name"].as_str()?.to_owned();
                        Some((name, field.get("default").cloned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Contract {
            name,
            id_field,
            fields,
        }
    }
}

static IMPRESSION: LazyLock<Contract> =
    LazyLock::new(|| Contract::of::<AdImpression>("AdImpression", "event_id"));
static CLICK: LazyLock<Contract> = LazyLock::new(|| Contract::of::<AdClick>("AdClick", "event_id"));
static CONVERSION: LazyLock<Contract> =
    LazyLock::new(|| Contract::of::<Conversion>("Conversion", "conversion_id"));

/// Turns the event at `index` of a request into its contract record, or says which field is wrong and why.
pub fn decode(index: usize, event: ReceivedEvent) -> Result<IngestEvent, Rejection> {
    let reject = |path: String, reason: String| Rejection {
        index,
        id: Some(event.id.clone()),
        path,
        reason,
    };
    let Some(kind) = EventKind::of_ce_type(&event.ce_type) else {
        let accepted: Vec<&str> = EventKind::ALL.iter().map(|k| k.ce_type()).collect();
        return Err(reject(
            "type".into(),
            format!(
                "unknown event type '{}'; accepted: {}",
                event.ce_type,
                accepted.join(", ")
            ),
        ));
    };
    let Value::Object(data) = &event.data else {
        return Err(reject(
            "data".into(),
            "must be a JSON object with the record's fields".into(),
        ));
    };
    let record = match kind {
        EventKind::Impression => {
            read::<AdImpression>(&IMPRESSION, data, &event).map(IngestRecord::Impression)
        }
        EventKind::Click => read::<AdClick>(&CLICK, data, &event).map(IngestRecord::Click),
        EventKind::Conversion => {
            read::<Conversion>(&CONVERSION, data, &event).map(IngestRecord::Conversion)
        }
    }
    .map_err(|(path, reason)| reject(path, reason))?;
    Ok(IngestEvent {
        record,
        source: event.source,
    })
}

/// Reads `data` as `T` under `contract`; on error, the field path (`data.…`) and the reason.
fn read<T: DeserializeOwned + CheckedEvent>(
    contract: &Contract,
    data: &Map<String, Value>,
    event: &ReceivedEvent,
) -> Result<T, (String, String)> {
    if let Some(unknown) = data.keys().find(|key| !contract.fields.contains_key(*key)) {
        return Err((
            format!("data.{unknown}"),
            format!("{} has no field '{unknown}'", contract.name),
        ));
    }
    let mut data = data.clone();
    match data.get(contract.id_field) {
        None => {
            data.insert(contract.id_field.into(), Value::String(event.id.clone()));
        }
        Some(Value::String(id)) if *id == event.id => {}
        Some(other) => {
            return Err((
                format!("data.{}", contract.id_field),
                format!(
                    "must equal the CloudEvents id '{}' (it is {other})",
                    event.id
                ),
            ))
        }
    }
    if let (None, Some(time_ms)) = (data.get("event_time"), event.time_ms) {
        data.insert("event_time".into(), Value::from(time_ms));
    }
    for (field, default) in &contract.fields {
        if let (false, Some(default)) = (data.contains_key(field), default) {
            data.insert(field.clone(), default.clone());
        }
    }
    let record: T = serde_path_to_error::deserialize(Value::Object(data)).map_err(|error| {
        let path = error.path().to_string();
        let reason = error.into_inner().to_string();
        // A missing field is reported by serde at the record, with the field's name in the message.
        let field = match (path.as_str(), missing_field(&reason)) {
            (".", Some(missing)) => missing.to_owned(),
            (".", None) => String::new(),
            _ => path,
        };
        let path = if field.is_empty() {
            "data".to_owned()
        } else {
            format!("data.{field}")
        };
        (path, reason)
    })?;
    record
        .check()
        .map_err(|invalid| (format!("data.{}", invalid.field), invalid.problem))?;
    Ok(record)
}

/// The field name in serde's "missing field `name`" message.
fn missing_field(reason: &str) -> Option<&str> {
    reason
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOV_1: i64 = 1_793_491_200_000;

    fn received(ce_type: &str, data: Value) -> ReceivedEvent {
        ReceivedEvent {
            id: "e-1".into(),
            source: "/shop".into(),
            ce_type: ce_type.into(),
            time_ms: Some(NOV_1),
            data,
        }
    }

    fn click() -> Value {
        json!({
            "platform": "META", "account_id": "a", "campaign_id": "meta-1", "ad_group_id": "g",
            "creative_id": "cr", "device": "MOBILE", "cost_micros": 120000, "currency": "USD"
        })
    }

    fn rejected(data: Value) -> (String, String) {
        match decode(3, received(AdClick::CE_TYPE, data)) {
            Err(rejection) => {
                assert_eq!(rejection.index, 3);
                assert_eq!(rejection.id.as_deref(), Some("e-1"));
                (rejection.path, rejection.reason)
            }
            Ok(event) => panic!("accepted {event:?}"),
        }
    }

    #[test]
    fn a_click_takes_its_id_and_time_from_the_cloudevent_and_defaults_from_the_contract() {
        let event = decode(0, received(AdClick::CE_TYPE, click())).expect("valid");
        let IngestRecord::Click(record) = event.record else {
            panic!("not a click")
        };
        assert_eq!(record.event_id, "e-1");
        assert_eq!(record.event_time, NOV_1);
        assert_eq!(record.user_id, None, "nullable field with a null default");
        assert_eq!(event.source, "/shop");
    }

    #[test]
    fn each_bad_field_is_named_with_its_reason() {
        let mut wrong_type = click();
        wrong_type["cost_micros"] = json!("12");
        let mut fractional = click();
        fractional["cost_micros"] = json!(1.5);
        let mut missing = click();
        missing.as_object_mut().map(|o| o.remove("campaign_id"));
        let mut unknown = click();
        unknown["userid"] = json!("u");
        let mut symbol = click();
        symbol["platform"] = json!("MYSPACE");
        let mut empty = click();
        empty["creative_id"] = json!(" ");
        let mut currency = click();
        currency["currency"] = json!("usd");
        let mut other_id = click();
        other_id["event_id"] = json!("e-2");
        let mut negative = click();
        negative["cost_micros"] = json!(-1);
        for (data, path) in [
            (wrong_type, "data.cost_micros"),
            (fractional, "data.cost_micros"),
            (missing, "data.campaign_id"),
            (unknown, "data.userid"),
            (symbol, "data.platform"),
            (empty, "data.creative_id"),
            (currency, "data.currency"),
            (other_id, "data.event_id"),
            (negative, "data.cost_micros"),
        ] {
            let (found, reason) = rejected(data);
            assert_eq!(found, path, "{reason}");
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn an_event_time_is_required_when_the_cloudevent_has_no_time() {
        let mut event = received(AdClick::CE_TYPE, click());
        event.time_ms = None;
        let rejection = decode(0, event).expect_err("no time");
        assert_eq!(rejection.path, "data.event_time");
    }

    #[test]
    fn unknown_types_and_non_object_data_are_refused() {
        let rejection = decode(0, received("com.example.page_view", click())).expect_err("type");
        assert_eq!(rejection.path, "type");
        assert!(rejection.reason.contains(Conversion::CE_TYPE));
        let rejection = decode(0, received(Conversion::CE_TYPE, json!([1]))).expect_err("data");
        assert_eq!(rejection.path, "data");
    }

    #[test]
    fn a_conversion_is_keyed_by_its_conversion_id() {
        let data = json!({"user_id": "u-9", "conversion_type": "PURCHASE", "value_micros": 5, "currency": "EUR"});
        let event = decode(0, received(Conversion::CE_TYPE, data)).expect("valid");
        assert_eq!(event.record.id(), "e-1");
        assert_eq!(event.record.kind(), EventKind::Conversion);
    }
}
