//! Schema evolution end to end, as a data engineer meets it: register v1 with the CLI, check and register a
//! compatible v2 (an optional field with a default), read v1 and v2 data with readers of either version, and see
//! an incompatible v2 refused by `schemas check` (non-zero exit, the field named) and by the registry (409).
//!
//! Needs the local broker (`./dev/kafka up`); the registry runs in-process on a private `_schemas` topic.

mod common;

use std::path::Path;

use adstream_schemas::events::{AdClick, AvroRecord, Device, Platform};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde_json::json;

use common::{adstream, copy_schemas, start_registry};

const CLICK_SUBJECT: &str = "ads.clicks-value";

fn v2_click_schema(extra_field: serde_json::Value) -> String {
    let mut schema: serde_json::Value =
        serde_json::from_str(AdClick::SCHEMA).expect("contract parses");
    schema["fields"]
        .as_array_mut()
        .expect("fields")
        .push(extra_field);
    serde_json::to_string_pretty(&schema).expect("serializes")
}

fn click() -> AdClick {
    AdClick {
        event_id: "clk-1".into(),
        event_time: 1_793_491_200_000,
        platform: Platform::Tiktok,
        account_id: "tiktok-acct-00".into(),
        campaign_id: "tiktok-cmp-0002".into(),
        ad_group_id: "tiktok-cmp-0002-ag-0".into(),
        creative_id: "tiktok-cmp-0002-cr-1".into(),
        user_id: Some("u-00000042".into()),
        impression_id: Some("imp-1".into()),
        device: Device::Mobile,
        cost_micros: 0,
        currency: "USD".into(),
    }
}

/// Confluent wire format: magic byte, big-endian id, body.
fn wire(id: u32, body: Vec<u8>) -> Vec<u8> {
    adstream_schemas::wire::encode(id, &body)
}

async fn schema_by_id(registry: &str, id: u32) -> Schema {
    let body: serde_json::Value = reqwest::get(format!("{registry}/schemas/ids/{id}"))
        .await
        .expect("registry answers")
        .json()
        .await
        .expect("json");
    Schema::parse_str(body["schema"].as_str().expect("schema string"))
        .expect("registry schema parses")
}

/// Decodes a wire-format record the way a consumer does: writer schema from the id, resolved to `reader`.
async fn decode(registry: &str, bytes: &[u8], reader: &Schema) -> Value {
    let (id, mut datum) = adstream_schemas::wire::split(bytes).expect("magic byte");
    let writer = schema_by_id(registry, id).await;
    GenericDatumReader::builder(&writer)
        .reader_schema(reader)
        .build()
        .expect("reader")
        .read_value(&mut datum)
        .expect("decodes")
}

fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    let Value::Record(fields) = value else {
        panic!("not a record: {value:?}")
    };
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn write_click_schema(dir: &Path, text: &str) {
    std::fs::write(dir.join("ad_click.avsc"), text).expect("write v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_to_v2_evolution_end_to_end() {
    let registry = start_registry("evolution").await;
    let url = registry.url.as_str();

    // v1: register the contract.
    let out = adstream(&["schemas", "register", "--registry-url", url]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(
        out.stdout_text().contains(&format!("+ {CLICK_SUBJECT}")),
        "{}",
        out.stdout_text()
    );
    let again = adstream(&["schemas", "register", "--registry-url", url]);
    assert!(
        again.stdout_text().contains("unchanged"),
        "{}",
        again.stdout_text()
    );

    // v2: an optional field with a default is compatible under BACKWARD; check, then register.
    let v2_dir = copy_schemas("evolution-v2");
    let v2_text = v2_click_schema(json!({
        "name": "landing_page_url", "type": ["null", "string"], "default": null,
        "doc": "URL the click landed on, when the platform reports it."
    }));
    write_click_schema(&v2_dir, &v2_text);
    let check = adstream(&[
        "schemas",
        "check",
        "--registry-url",
        url,
        "--dir",
        v2_dir.to_str().expect("utf-8"),
    ]);
    assert!(
        check.status.success(),
        "{}\n{}",
        check.stdout_text(),
        check.stderr_text()
    );
    assert!(
        check
            .stdout_text()
            .contains(&format!("ok   {CLICK_SUBJECT}")),
        "{}",
        check.stdout_text()
    );
    let register = adstream(&[
        "schemas",
        "register",
        "--registry-url",
        url,
        "--dir",
        v2_dir.to_str().expect("utf-8"),
    ]);
    assert!(register.status.success(), "{}", register.stderr_text());

    let versions: Vec<u32> = reqwest::get(format!("{url}/subjects/{CLICK_SUBJECT}/versions"))
        .await
        .expect("versions")
        .json()
        .await
        .expect("json");
    assert_eq!(versions, vec![1, 2]);
    let id_of = |version: u32| {
        let url = format!("{url}/subjects/{CLICK_SUBJECT}/versions/{version}");
        async move {
            let body: serde_json::Value = reqwest::get(url)
                .await
                .expect("version")
                .json()
                .await
                .expect("json");
            body["id"].as_u64().expect("id") as u32
        }
    };
    let (v1_id, v2_id) = (id_of(1).await, id_of(2).await);
    assert_ne!(v1_id, v2_id);

    // Data written with each version.
    let v1 = Schema::parse_str(AdClick::SCHEMA).expect("v1");
    let v2 = Schema::parse_str(&v2_text).expect("v2");
    let v1_bytes = wire(
        v1_id,
        GenericDatumWriter::builder(&v1)
            .build()
            .expect("w1")
            .write_ser_to_vec(&click())
            .expect("v1 data"),
    );
    let mut v2_value = apache_avro::to_value(click()).expect("value");
    if let Value::Record(fields) = &mut v2_value {
        fields.push((
            "landing_page_url".into(),
            Value::Union(
                1,
                Box::new(Value::String("https://shop.example/p/1".into())),
            ),
        ));
    }
    let v2_bytes = wire(
        v2_id,
        GenericDatumWriter::builder(&v2)
            .build()
            .expect("w2")
            .write_value_to_vec(v2_value)
            .expect("v2 data"),
    );

    // A v1 reader reads both: the new field is skipped.
    for bytes in [&v1_bytes, &v2_bytes] {
        let value = decode(url, bytes, &v1).await;
        let back: AdClick = apache_avro::from_value(&value).expect("v1 reader gets a v1 click");
        assert_eq!(back, click());
        assert!(field(&value, "landing_page_url").is_none());
    }
    // A v2 reader reads both: v1 data gets the default.
    let old = decode(url, &v1_bytes, &v2).await;
    assert_eq!(
        field(&old, "landing_page_url"),
        Some(&Value::Union(0, Box::new(Value::Null)))
    );
    let new = decode(url, &v2_bytes, &v2).await;
    assert_eq!(
        field(&new, "landing_page_url"),
        Some(&Value::Union(
            1,
            Box::new(Value::String("https://shop.example/p/1".into()))
        ))
    );

    // An incompatible v3: a required field without a default cannot read old data.
    let bad_dir = copy_schemas("evolution-bad");
    let bad_text = v2_click_schema(json!({
        "name": "attribution_window_days", "type": "int", "doc": "Required, no default: breaks old data."
    }));
    write_click_schema(&bad_dir, &bad_text);
    let check = adstream(&[
        "schemas",
        "check",
        "--registry-url",
        url,
        "--dir",
        bad_dir.to_str().expect("utf-8"),
    ]);
    assert!(
        !check.status.success(),
        "incompatible schema must fail the check"
    );
    let report = check.stdout_text();
    assert!(
        report.contains(&format!("FAIL {CLICK_SUBJECT}")),
        "{report}"
    );
    assert!(
        report.contains("attribution_window_days"),
        "the message names the field: {report}"
    );
    assert!(
        check.stderr_text().contains("incompatible"),
        "{}",
        check.stderr_text()
    );

    let response = reqwest::Client::new()
        .post(format!("{url}/subjects/{CLICK_SUBJECT}/versions"))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .json(&json!({ "schema": bad_text }))
        .send()
        .await
        .expect("registry answers");
    assert_eq!(response.status().as_u16(), 409);
    let body: serde_json::Value = response.json().await.expect("error body");
    assert_eq!(body["error_code"], 409);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("attribution_window_days"),
        "{body}"
    );
}
