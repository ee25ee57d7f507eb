//! The schema registry against the real broker (`./dev/kafka up`): the REST API with Confluent's codes and bodies,
//! the `_schemas` record format byte for byte, a restart that loses nothing, records written by Confluent read
//! back, concurrent registrations, and the startup errors (unreachable broker, multi-partition topic).
//!
//! Each test serves the registry in-process on `127.0.0.1:0` with its own topic.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use adstream_kafka::read::{self, ReadOptions};
use adstream_registry::{serve, RegistryConfig, RegistryError};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use common::{bootstrap, unique};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

const V1: &str = r#"{"type":"record","name":"Click","namespace":"io.adstream.test","fields":[{"name":"id","type":"string"}]}"#;
/// V1 plus an optional field with a default: compatible under every level.
const V2: &str = r#"{"type":"record","name":"Click","namespace":"io.adstream.test","fields":[{"name":"id","type":"string"},{"name":"note","type":["null","string"],"default":null}]}"#;
/// V1 plus a required field: breaks BACKWARD.
const BREAKING: &str = r#"{"type":"record","name":"Click","namespace":"io.adstream.test","fields":[{"name":"id","type":"string"},{"name":"cost_micros","type":"long"}]}"#;

fn kafka() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap());
    config
}

/// A registry served in-process that can be stopped.
struct Server {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), RegistryError>>,
}

async fn start(topic: &str) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let config = RegistryConfig {
        kafka: kafka(),
        topic: topic.to_owned(),
        kafka_timeout: Duration::from_secs(10),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, config, async move {
        let _ = stopped.await;
    }));
    // The listener is bound already; the first answer comes once the topic has been replayed.
    let (status, _) = Api::new(&url).call(Method::GET, "/", None).await;
    assert_eq!(status, 200);
    Server {
        url,
        stop: Some(stop),
        task,
    }
}

impl Server {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(30), &mut self.task).await;
        let finished = result.expect("registry stops").expect("registry task");
        finished.expect("registry ran without error");
    }
}

/// A tiny HTTP client that returns (status, JSON body) and checks Confluent's content type on every answer.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(base: &str) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: base.to_owned(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("Content-Type", CONTENT_TYPE)
                .body(body.to_string());
        }
        let response = request.send().await.expect("registry answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_owned());
        assert_eq!(
            content_type.as_deref(),
            Some(CONTENT_TYPE),
            "content type of {path}"
        );
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} answered non-JSON {text:?}: {e}"));
        (status, value)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }

    async fn register(&self, subject: &str, schema: &str) -> (u16, Value) {
        self.post(
            &format!("/subjects/{subject}/versions"),
            json!({ "schema": schema }),
        )
        .await
    }

    /// Asserts an error answer: HTTP status, Confluent code, and a message.
    async fn expect_error(&self, answer: (u16, Value), status: u16, code: u64) {
        let (got_status, body) = answer;
        assert_eq!(
            (got_status, body["error_code"].as_u64()),
            (status, Some(code)),
            "{body}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
}

fn id_of(answer: &(u16, Value)) -> u64 {
    assert_eq!(answer.0, 200, "{}", answer.1);
    answer.1["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no id in {}", answer.1))
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_api_behaves_like_confluent() {
    let server = start(&unique("_schemas-api")).await;
    let api = Api::new(&server.url);

    assert_eq!(api.get("/").await, (200, json!({})));
    assert_eq!(api.get("/schemas/types").await, (200, json!(["AVRO"])));
    assert_eq!(api.get("/contexts").await, (200, json!(["."])));
    assert_eq!(
        api.get("/config").await,
        (200, json!({ "compatibilityLevel": "BACKWARD" }))
    );
    assert_eq!(
        api.get("/mode").await,
        (200, json!({ "mode": "READWRITE" }))
    );

    // Register; identical schema → same id; same schema in another subject → same id; whitespace does not matter.
    let id1 = id_of(&api.register("clicks-value", V1).await);
    assert_eq!(id_of(&api.register("clicks-value", V1).await), id1);
    let spaced = serde_json::to_string_pretty(&serde_json::from_str::<Value>(V1).unwrap()).unwrap();
    assert_eq!(id_of(&api.register("other-value", &spaced).await), id1);
    let id2 = id_of(&api.register("clicks-value", V2).await);
    assert_ne!(id1, id2);
    assert_eq!(
        api.get("/subjects").await,
        (200, json!(["clicks-value", "other-value"]))
    );
    assert_eq!(
        api.get("/subjects?subjectPrefix=oth").await,
        (200, json!(["other-value"]))
    );
    assert_eq!(
        api.get("/subjects/clicks-value/versions").await,
        (200, json!([1, 2]))
    );

    // Versions: by number, latest, -1, raw schema.
    let (status, latest) = api.get("/subjects/clicks-value/versions/latest").await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            latest["subject"].clone(),
            latest["version"].clone(),
            latest["id"].clone()
        ),
        (json!("clicks-value"), json!(2), json!(id2))
    );
    assert!(
        latest.get("schemaType").is_none(),
        "Avro is not named: {latest}"
    );
    let stored: Value = serde_json::from_str(latest["schema"].as_str().unwrap()).unwrap();
    assert_eq!(stored, serde_json::from_str::<Value>(V2).unwrap());
    assert_eq!(
        api.get("/subjects/clicks-value/versions/-1").await.1["version"],
        2
    );
    assert_eq!(
        api.get("/subjects/clicks-value/versions/1").await.1["id"],
        id1
    );
    let (status, raw) = api.get("/subjects/clicks-value/versions/1/schema").await;
    assert_eq!(
        (status, raw),
        (200, serde_json::from_str::<Value>(V1).unwrap())
    );
    assert_eq!(
        api.get("/subjects/clicks-value/versions/1/referencedby")
            .await,
        (200, json!([]))
    );

    // By id.
    let (status, by_id) = api.get(&format!("/schemas/ids/{id1}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        by_id.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["schema"],
        "only the schema for Avro"
    );
    assert_eq!(
        api.get(&format!("/schemas/ids/{id1}/schema")).await.1,
        serde_json::from_str::<Value>(V1).unwrap()
    );
    assert_eq!(
        api.get(&format!("/schemas/ids/{id1}/subjects")).await,
        (200, json!(["clicks-value", "other-value"]))
    );
    assert_eq!(
        api.get(&format!("/schemas/ids/{id1}/versions")).await,
        (
            200,
            json!([{ "subject": "clicks-value", "version": 1 }, { "subject": "other-value", "version": 1 }])
        )
    );
    assert_eq!(
        api.get("/schemas?subjectPrefix=clicks")
            .await
            .1
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        api.get("/schemas?latestOnly=true")
            .await
            .1
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // Lookup.
    let (status, found) = api
        .post("/subjects/clicks-value", json!({ "schema": V1 }))
        .await;
    assert_eq!(
        (status, found["id"].clone(), found["version"].clone()),
        (200, json!(id1), json!(1))
    );
    api.expect_error(
        api.post("/subjects/nope", json!({ "schema": V1 })).await,
        404,
        40401,
    )
    .await;
    api.expect_error(
        api.post("/subjects/other-value", json!({ "schema": V2 }))
            .await,
        404,
        40403,
    )
    .await;
    api.expect_error(
        api.post("/subjects/other-value", json!({ "schema": "{" }))
            .await,
        422,
        42201,
    )
    .await;

    // Errors of reads.
    api.expect_error(api.get("/subjects/nope/versions").await, 404, 40401)
        .await;
    api.expect_error(
        api.get("/subjects/clicks-value/versions/9").await,
        404,
        40402,
    )
    .await;
    for bad in ["0", "-2", "abc", "2147483648"] {
        api.expect_error(
            api.get(&format!("/subjects/clicks-value/versions/{bad}"))
                .await,
            422,
            42202,
        )
        .await;
    }
    api.expect_error(api.get("/schemas/ids/999999").await, 404, 40403)
        .await;
    api.expect_error(api.get("/no/such/route").await, 404, 404)
        .await;

    // Invalid schema: 42201 with the parser's message; other schema types and references to unknown versions are
    // refused the same way.
    let (status, body) = api
        .register(
            "clicks-value",
            r#"{"type":"record","name":"X","fields":[{"name":"a","type":"nope"}]}"#,
        )
        .await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (422, json!(42201)),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("nope"),
        "parser message: {body}"
    );
    let protobuf = json!({ "schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF" });
    api.expect_error(api.post("/subjects/p/versions", protobuf).await, 422, 42201)
        .await;
    let references =
        json!({ "schema": V1, "references": [{ "name": "x", "subject": "y", "version": 1 }] });
    api.expect_error(
        api.post("/subjects/p/versions", references).await,
        422,
        42201,
    )
    .await;

    // Incompatible: 409 with the reasons; the compatibility endpoints say why with verbose=true.
    let (status, body) = api.register("clicks-value", BREAKING).await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (409, json!(409)),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("incompatible") && message.contains("cost_micros"),
        "{message}"
    );
    let (status, verdict) = api
        .post(
            "/compatibility/subjects/clicks-value/versions?verbose=true",
            json!({ "schema": BREAKING }),
        )
        .await;
    assert_eq!(
        (status, verdict["is_compatible"].clone()),
        (200, json!(false))
    );
    assert!(
        verdict["messages"].as_array().is_some_and(|m| m
            .iter()
            .any(|m| m.as_str().unwrap().contains("cost_micros"))),
        "{verdict}"
    );
    let (_, verdict) = api
        .post(
            "/compatibility/subjects/clicks-value/versions/1",
            json!({ "schema": V2 }),
        )
        .await;
    assert_eq!(verdict, json!({ "is_compatible": true }));
    let (_, verdict) = api
        .post(
            "/compatibility/subjects/clicks-value/versions/latest?verbose=true",
            json!({ "schema": V2 }),
        )
        .await;
    assert_eq!(verdict, json!({ "is_compatible": true, "messages": [] }));
    let (_, verdict) = api
        .post(
            "/compatibility/subjects/new-subject/versions",
            json!({ "schema": BREAKING }),
        )
        .await;
    assert_eq!(
        verdict,
        json!({ "is_compatible": true }),
        "a subject without versions accepts anything"
    );
    api.expect_error(
        api.post(
            "/compatibility/subjects/clicks-value/versions/7",
            json!({ "schema": V2 }),
        )
        .await,
        404,
        40402,
    )
    .await;
    api.expect_error(
        api.post(
            "/compatibility/subjects/nope/versions/1",
            json!({ "schema": V2 }),
        )
        .await,
        404,
        40401,
    )
    .await;

    // Config: all seven levels, subject level, defaultToGlobal, 40408, 42203.
    for level in [
        "NONE",
        "BACKWARD",
        "BACKWARD_TRANSITIVE",
        "FORWARD",
        "FORWARD_TRANSITIVE",
        "FULL",
        "FULL_TRANSITIVE",
    ] {
        assert_eq!(
            api.put("/config/clicks-value", json!({ "compatibility": level }))
                .await,
            (200, json!({ "compatibility": level }))
        );
        assert_eq!(
            api.get("/config/clicks-value").await,
            (200, json!({ "compatibilityLevel": level }))
        );
    }
    api.expect_error(api.get("/config/other-value").await, 404, 40408)
        .await;
    assert_eq!(
        api.get("/config/other-value?defaultToGlobal=true").await.1,
        json!({ "compatibilityLevel": "BACKWARD" })
    );
    api.expect_error(
        api.put("/config", json!({ "compatibility": "SIDEWAYS" }))
            .await,
        422,
        42203,
    )
    .await;
    assert_eq!(
        api.put("/config", json!({ "compatibility": "forward" }))
            .await,
        (200, json!({ "compatibility": "FORWARD" }))
    );
    assert_eq!(
        api.get("/config").await.1,
        json!({ "compatibilityLevel": "FORWARD" })
    );
    assert_eq!(
        api.delete("/config").await,
        (200, json!({ "compatibilityLevel": "FORWARD" }))
    );
    assert_eq!(
        api.get("/config").await.1,
        json!({ "compatibilityLevel": "BACKWARD" })
    );
    assert_eq!(
        api.put("/config/clicks-value", json!({ "compatibility": "NONE" }))
            .await
            .0,
        200
    );
    // Under NONE the breaking schema registers.
    let id3 = id_of(&api.register("clicks-value", BREAKING).await);
    assert_eq!(
        api.delete("/config/clicks-value").await,
        (200, json!({ "compatibilityLevel": "NONE" }))
    );
    api.expect_error(api.delete("/config/clicks-value").await, 404, 40408)
        .await;

    // Mode: READONLY refuses writes with 42205; invalid mode is 42204.
    assert_eq!(
        api.put("/mode/other-value", json!({ "mode": "READONLY" }))
            .await,
        (200, json!({ "mode": "READONLY" }))
    );
    assert_eq!(
        api.get("/mode/other-value").await.1,
        json!({ "mode": "READONLY" })
    );
    api.expect_error(api.register("other-value", V2).await, 422, 42205)
        .await;
    api.expect_error(
        api.delete("/subjects/other-value/versions/1").await,
        422,
        42205,
    )
    .await;
    api.expect_error(
        api.put("/mode", json!({ "mode": "SLEEPY" })).await,
        422,
        42204,
    )
    .await;
    api.expect_error(api.get("/mode/clicks-value").await, 404, 40409)
        .await;
    assert_eq!(
        api.get("/mode/clicks-value?defaultToGlobal=true").await.1,
        json!({ "mode": "READWRITE" })
    );
    assert_eq!(
        api.delete("/mode/other-value").await,
        (200, json!({ "mode": "READONLY" }))
    );
    assert_eq!(id_of(&api.register("other-value", V2).await), id2);

    // IMPORT mode: explicit id and version; compatibility is not checked.
    assert_eq!(
        api.put("/mode/imported", json!({ "mode": "IMPORT" }))
            .await
            .0,
        200
    );
    let imported = api
        .post(
            "/subjects/imported/versions",
            json!({ "schema": BREAKING, "id": id3, "version": 7 }),
        )
        .await;
    assert_eq!(id_of(&imported), id3);
    assert_eq!(api.get("/subjects/imported/versions").await.1, json!([7]));
    let clash = json!({ "schema": V1, "id": id3, "version": 8 });
    api.expect_error(
        api.post("/subjects/imported/versions", clash).await,
        422,
        42205,
    )
    .await;
    api.expect_error(
        api.post(
            "/subjects/plain/versions",
            json!({ "schema": V1, "id": 555 }),
        )
        .await,
        422,
        42205,
    )
    .await;

    // Version deletes: soft, then 40406 again, 40407 permanent without soft, then permanent.
    api.expect_error(
        api.delete("/subjects/other-value/versions/1?permanent=true")
            .await,
        404,
        40407,
    )
    .await;
    assert_eq!(
        api.delete("/subjects/other-value/versions/1").await,
        (200, json!(1))
    );
    api.expect_error(
        api.delete("/subjects/other-value/versions/1").await,
        404,
        40406,
    )
    .await;
    api.expect_error(
        api.get("/subjects/other-value/versions/1").await,
        404,
        40402,
    )
    .await;
    assert_eq!(
        api.get("/subjects/other-value/versions/1?deleted=true")
            .await
            .1["id"],
        id1
    );
    assert_eq!(
        api.get("/subjects/other-value/versions?deleted=true")
            .await
            .1,
        json!([1, 2])
    );
    assert_eq!(
        api.get("/subjects/other-value/versions?deletedOnly=true")
            .await
            .1,
        json!([1])
    );
    assert_eq!(
        api.get(&format!("/schemas/ids/{id1}/subjects")).await.1,
        json!(["clicks-value"])
    );
    assert_eq!(
        api.get(&format!("/schemas/ids/{id1}/subjects?deleted=true"))
            .await
            .1,
        json!(["clicks-value", "other-value"])
    );
    assert_eq!(
        api.delete("/subjects/other-value/versions/1?permanent=true")
            .await,
        (200, json!(1))
    );
    api.expect_error(
        api.get("/subjects/other-value/versions/1?deleted=true")
            .await,
        404,
        40402,
    )
    .await;

    // Subject deletes: 40405 permanent first, soft, 40404 again, deleted listings, permanent.
    api.expect_error(
        api.delete("/subjects/clicks-value?permanent=true").await,
        404,
        40405,
    )
    .await;
    assert_eq!(
        api.delete("/subjects/clicks-value").await,
        (200, json!([1, 2, 3]))
    );
    api.expect_error(api.delete("/subjects/clicks-value").await, 404, 40404)
        .await;
    api.expect_error(api.get("/subjects/clicks-value/versions").await, 404, 40401)
        .await;
    api.expect_error(
        api.post("/subjects/clicks-value", json!({ "schema": V1 }))
            .await,
        404,
        40401,
    )
    .await;
    assert_eq!(
        api.post(
            "/subjects/clicks-value?deleted=true",
            json!({ "schema": V1 })
        )
        .await
        .1["version"],
        1
    );
    assert!(api
        .get("/subjects")
        .await
        .1
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s != "clicks-value"));
    assert_eq!(
        api.get("/subjects?deletedOnly=true").await.1,
        json!(["clicks-value"])
    );
    // Soft-deleted schemas still resolve by id, for consumers of old data.
    assert_eq!(api.get(&format!("/schemas/ids/{id3}")).await.0, 200);
    assert_eq!(
        api.delete("/subjects/clicks-value?permanent=true").await,
        (200, json!([1, 2, 3]))
    );
    api.expect_error(api.delete("/subjects/clicks-value").await, 404, 40401)
        .await;
    // id1 is gone with clicks-value (other-value's version 1 was hard-deleted too); id3 lives on in `imported`.
    api.expect_error(api.get(&format!("/schemas/ids/{id1}")).await, 404, 40403)
        .await;
    assert_eq!(api.get(&format!("/schemas/ids/{id3}")).await.0, 200);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn subjects_with_slashes_and_plain_json_bodies() {
    let server = start(&unique("_schemas-encoding")).await;
    let api = Api::new(&server.url);
    let id = id_of(&api.register("team%2Fclicks-value", V1).await);
    assert_eq!(api.get("/subjects").await.1, json!(["team/clicks-value"]));
    assert_eq!(
        api.get("/subjects/team%2Fclicks-value/versions/1").await.1["subject"],
        "team/clicks-value"
    );

    // Bodies with plain JSON, Confluent's other type, and no content type at all are all accepted.
    let http = reqwest::Client::new();
    for content_type in [
        Some("application/json"),
        Some("application/vnd.schemaregistry+json"),
        None,
    ] {
        let mut request = http
            .post(format!("{}/subjects/team%2Fclicks-value", server.url))
            .body(json!({ "schema": V1 }).to_string());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert_eq!(answer["id"], id, "{content_type:?}");
    }
    server.stop().await;
}

/// Confluent's value layout and key bytes, in order, for every write kind.
#[tokio::test(flavor = "multi_thread")]
async fn topic_records_match_confluent_format() {
    let topic = unique("_schemas-format");
    let server = start(&topic).await;
    let api = Api::new(&server.url);
    let id = id_of(&api.register("fmt-value", V1).await);
    api.put("/config", json!({ "compatibility": "FULL" })).await;
    api.put("/config/fmt-value", json!({ "compatibility": "NONE" }))
        .await;
    api.put("/mode/fmt-value", json!({ "mode": "READWRITE" }))
        .await;
    api.delete("/subjects/fmt-value").await;
    api.delete("/subjects/fmt-value/versions/1?permanent=true")
        .await;
    server.stop().await;

    let records = read_topic(&topic);
    let keys: Vec<&str> = records.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            r#"{"keytype":"SCHEMA","subject":"fmt-value","version":1,"magic":1}"#,
            r#"{"keytype":"CONFIG","subject":null,"magic":0}"#,
            r#"{"keytype":"CONFIG","subject":"fmt-value","magic":0}"#,
            r#"{"keytype":"MODE","subject":"fmt-value","magic":0}"#,
            r#"{"keytype":"DELETE_SUBJECT","subject":"fmt-value","magic":0}"#,
            // A soft delete of a subject drops its mode and level (tombstones), as Confluent does.
            r#"{"keytype":"MODE","subject":"fmt-value","magic":0}"#,
            r#"{"keytype":"CONFIG","subject":"fmt-value","magic":0}"#,
            r#"{"keytype":"SCHEMA","subject":"fmt-value","version":1,"magic":1}"#,
        ]
    );
    let values: Vec<Option<&str>> = records.iter().map(|(_, v)| v.as_deref()).collect();
    let stored_schema = serde_json::to_string(&serde_json::from_str::<Value>(V1).unwrap()).unwrap();
    let schema_value: Value = serde_json::from_str(values[0].unwrap()).unwrap();
    assert_eq!(
        values[0].unwrap(),
        format!(
            r#"{{"subject":"fmt-value","version":1,"id":{id},"schema":{},"deleted":false}}"#,
            Value::String(schema_value["schema"].as_str().unwrap().to_owned())
        )
    );
    assert_eq!(
        serde_json::from_str::<Value>(schema_value["schema"].as_str().unwrap()).unwrap(),
        serde_json::from_str::<Value>(&stored_schema).unwrap()
    );
    assert_eq!(values[1], Some(r#"{"compatibilityLevel":"FULL"}"#));
    assert_eq!(values[2], Some(r#"{"compatibilityLevel":"NONE"}"#));
    assert_eq!(values[3], Some(r#"{"mode":"READWRITE"}"#));
    assert_eq!(values[4], Some(r#"{"subject":"fmt-value","version":1}"#));
    assert_eq!(&values[5..], &[None, None, None], "tombstones");

    // The topic is what Confluent requires: one partition, compacted.
    let admin: AdminClient<DefaultClientContext> = kafka().create().unwrap();
    let configs = admin
        .describe_configs([&ResourceSpecifier::Topic(&topic)], &AdminOptions::new())
        .await
        .unwrap();
    let config = configs.into_iter().next().unwrap().unwrap();
    assert_eq!(
        config
            .get("cleanup.policy")
            .and_then(|e| e.value.as_deref()),
        Some("compact")
    );
    let consumer: BaseConsumer = kafka().create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 1);
}

/// Every (key, value) of a topic as text, in offset order.
fn read_topic(topic: &str) -> Vec<(String, Option<String>)> {
    let consumer: BaseConsumer = read::reader_config(&kafka(), &unique("registry-test"), true)
        .create()
        .unwrap();
    let mut out = Vec::new();
    read::read_to_end::<_, Infallible>(
        &consumer,
        topic,
        &[0],
        &ReadOptions::default(),
        |message| {
            out.push((
                String::from_utf8(message.key().unwrap().to_vec()).unwrap(),
                message
                    .payload()
                    .map(|p| String::from_utf8(p.to_vec()).unwrap()),
            ));
            Ok(())
        },
    )
    .unwrap_or_else(|e| panic!("{topic} was not read to its end within 30 s: {e}"));
    out
}

/// Snapshot of everything a client can observe, to compare before and after a restart.
async fn observe(api: &Api, ids: &[u64]) -> BTreeMap<String, (u16, Value)> {
    let mut paths = vec![
        "/subjects".to_owned(),
        "/subjects?deleted=true".to_owned(),
        "/schemas?deleted=true".to_owned(),
        "/config".to_owned(),
        "/mode".to_owned(),
    ];
    for subject in ["a-value", "b-value", "soft-value", "gone-value", "ro-value"] {
        paths.push(format!("/subjects/{subject}/versions?deleted=true"));
        paths.push(format!("/subjects/{subject}/versions/latest"));
        paths.push(format!("/config/{subject}"));
        paths.push(format!("/mode/{subject}"));
    }
    for id in ids {
        paths.push(format!("/schemas/ids/{id}"));
        paths.push(format!("/schemas/ids/{id}/versions?deleted=true"));
    }
    let mut out = BTreeMap::new();
    for path in paths {
        let answer = api.get(&path).await;
        out.insert(path, answer);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_registry_loses_nothing() {
    let topic = unique("_schemas-restart");
    let server = start(&topic).await;
    let api = Api::new(&server.url);
    let id1 = id_of(&api.register("a-value", V1).await);
    let id2 = id_of(&api.register("a-value", V2).await);
    assert_eq!(id_of(&api.register("b-value", V2).await), id2);
    api.put("/config", json!({ "compatibility": "FULL_TRANSITIVE" }))
        .await;
    api.put("/config/b-value", json!({ "compatibility": "NONE" }))
        .await;
    let id3 = id_of(&api.register("b-value", BREAKING).await);
    id_of(&api.register("soft-value", V1).await);
    api.delete("/subjects/soft-value").await;
    id_of(&api.register("gone-value", BREAKING).await);
    api.delete("/subjects/gone-value").await;
    api.delete("/subjects/gone-value?permanent=true").await;
    api.delete("/subjects/a-value/versions/1").await;
    id_of(&api.register("ro-value", V1).await);
    api.put("/mode/ro-value", json!({ "mode": "READONLY" }))
        .await;
    api.put("/mode", json!({ "mode": "READWRITE" })).await;
    let ids = [id1, id2, id3, id3 + 1];
    let before = observe(&api, &ids).await;
    server.stop().await;

    let server = start(&topic).await;
    let api = Api::new(&server.url);
    let after = observe(&api, &ids).await;
    for (path, answer) in &before {
        assert_eq!(
            Some(answer),
            after.get(path),
            "{path} changed across the restart"
        );
    }
    // The spot checks that matter most, spelled out.
    assert_eq!(
        after["/subjects"].1,
        json!(["a-value", "b-value", "ro-value"])
    );
    assert_eq!(
        after["/subjects/a-value/versions?deleted=true"].1,
        json!([1, 2])
    );
    assert_eq!(
        after["/config"].1,
        json!({ "compatibilityLevel": "FULL_TRANSITIVE" })
    );
    assert_eq!(
        after["/config/b-value"].1,
        json!({ "compatibilityLevel": "NONE" })
    );
    assert_eq!(after["/mode/ro-value"].1, json!({ "mode": "READONLY" }));
    assert_eq!(
        after["/subjects/soft-value/versions?deleted=true"].1,
        json!([1])
    );
    assert_eq!(
        after["/subjects/gone-value/versions?deleted=true"].1["error_code"],
        40401
    );
    // New writes continue: the next id is above every id seen, the next version above soft-deleted ones.
    api.put("/config/a-value", json!({ "compatibility": "NONE" }))
        .await;
    let (status, body) = api
        .register("a-value", r#"{"type":"record","name":"Fresh","fields":[]}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id"].as_u64().unwrap() > id3, "{body}");
    assert_eq!(
        api.get("/subjects/a-value/versions/latest").await.1["version"],
        3
    );
    api.expect_error(api.register("ro-value", V2).await, 422, 42205)
        .await;
    server.stop().await;
}

/// A topic written by Confluent Schema Registry (its exact records, with a NOOP and a DELETE_SUBJECT) is served.
#[tokio::test(flavor = "multi_thread")]
async fn records_written_by_confluent_are_served() {
    let topic = unique("_schemas-confluent");
    let admin: AdminClient<DefaultClientContext> = kafka().create().unwrap();
    let new_topic =
        NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    admin
        .create_topics([&new_topic], &AdminOptions::new())
        .await
        .unwrap()[0]
        .as_ref()
        .unwrap();
    let producer: FutureProducer = kafka().create().unwrap();
    let pretty_v1 = "{\n  \"type\" : \"record\",\n  \"name\" : \"Click\",\n  \"namespace\" : \"io.adstream.test\",\n  \"fields\" : [ {\n    \"name\" : \"id\",\n    \"type\" : \"string\"\n  } ]\n}";
    let records: Vec<(String, Option<String>)> = vec![
        (r#"{"keytype":"NOOP","magic":0}"#.into(), None),
        (r#"{"keytype":"CONFIG","subject":null,"magic":0}"#.into(), Some(r#"{"compatibilityLevel":"FORWARD"}"#.into())),
        (
            r#"{"keytype":"SCHEMA","subject":"c-value","version":1,"magic":1}"#.into(),
            Some(json!({ "subject": "c-value", "version": 1, "id": 41, "schema": pretty_v1, "deleted": false }).to_string()),
        ),
        (
            r#"{"keytype":"SCHEMA","subject":"c-value","version":2,"magic":1}"#.into(),
            Some(json!({ "subject": "c-value", "version": 2, "id": 42, "schema": V2, "deleted": false, "references": [] }).to_string()),
        ),
        (
            r#"{"keytype":"SCHEMA","subject":"d-value","version":1,"magic":1}"#.into(),
            Some(json!({ "subject": "d-value", "version": 1, "id": 41, "schema": pretty_v1, "deleted": false }).to_string()),
        ),
        (r#"{"keytype":"DELETE_SUBJECT","subject":"d-value","magic":0}"#.into(), Some(r#"{"subject":"d-value","version":1}"#.into())),
        (r#"{"keytype":"MODE","subject":"c-value","magic":0}"#.into(), Some(r#"{"mode":"READONLY"}"#.into())),
    ];
    for (key, value) in &records {
        let mut record: FutureRecord<'_, str, str> =
            FutureRecord::to(&topic).partition(0).key(key.as_str());
        if let Some(value) = value {
            record = record.payload(value.as_str());
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap();
    }

    let server = start(&topic).await;
    let api = Api::new(&server.url);
    assert_eq!(api.get("/subjects").await.1, json!(["c-value"]));
    assert_eq!(
        api.get("/subjects?deletedOnly=true").await.1,
        json!(["d-value"])
    );
    assert_eq!(
        api.get("/config").await.1,
        json!({ "compatibilityLevel": "FORWARD" })
    );
    assert_eq!(
        api.get("/mode/c-value").await.1,
        json!({ "mode": "READONLY" })
    );
    assert_eq!(
        api.get("/schemas/ids/41").await.1,
        json!({ "schema": pretty_v1 })
    );
    // A lookup matches the stored text by meaning, not by bytes.
    assert_eq!(
        api.post("/subjects/c-value", json!({ "schema": V1 }))
            .await
            .1["id"],
        41
    );
    // The same schema registered elsewhere reuses Confluent's id; a new schema gets max id + 1.
    assert_eq!(id_of(&api.register("e-value", V1).await), 41);
    assert_eq!(id_of(&api.register("e-value", V2).await), 42);
    assert_eq!(id_of(&api.register("f-value", BREAKING).await), 43);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_registrations_get_distinct_ids_and_versions() {
    let server = start(&unique("_schemas-race")).await;
    let api = Api::new(&server.url);
    api.put("/config/race-value", json!({ "compatibility": "NONE" }))
        .await;
    let mut tasks = Vec::new();
    for n in 0..16 {
        let url = server.url.clone();
        tasks.push(tokio::spawn(async move {
            let schema = format!(r#"{{"type":"record","name":"R{n}","fields":[]}}"#);
            id_of(&Api::new(&url).register("race-value", &schema).await)
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 16, "distinct ids: {ids:?}");
    assert_eq!(
        api.get("/subjects/race-value/versions").await.1,
        json!((1..=16).collect::<Vec<_>>())
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_is_a_quick_clear_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut kafka = ClientConfig::new();
    kafka.set("bootstrap.servers", "127.0.0.1:1");
    let config = RegistryConfig {
        kafka,
        topic: "_schemas".into(),
        kafka_timeout: Duration::from_secs(3),
    };
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        serve(listener, config, std::future::pending()),
    )
    .await;
    let error = result
        .expect("serve gives up instead of hanging")
        .expect_err("no broker");
    let message = error.to_string();
    assert!(
        message.contains("127.0.0.1:1"),
        "names the bootstrap servers: {message}"
    );
    assert!(message.contains("_schemas"), "names the topic: {message}");
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        matches!(error, RegistryError::Unreachable { .. }),
        "{error:?}"
    );
    // Not a wall-clock assertion on speed, only that the configured timeout bounds the wait.
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_with_several_partitions_is_refused() {
    let topic = unique("_schemas-partitions");
    let admin: AdminClient<DefaultClientContext> = kafka().create().unwrap();
    let new_topic =
        NewTopic::new(&topic, 2, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    admin
        .create_topics([&new_topic], &AdminOptions::new())
        .await
        .unwrap()[0]
        .as_ref()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = RegistryConfig {
        kafka: kafka(),
        topic: topic.clone(),
        kafka_timeout: Duration::from_secs(10),
    };
    let error = tokio::time::timeout(
        Duration::from_secs(30),
        serve(listener, config, std::future::pending()),
    )
    .await
    .expect("serve gives up")
    .expect_err("two partitions");
    assert!(
        matches!(
            error,
            RegistryError::TooManyPartitions { partitions: 2, .. }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains(&topic), "{error}");
}

/// A write the broker does not acknowledge is a 500 with Confluent's store error codes, and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_write_is_a_store_error_and_changes_nothing() {
    let topic = unique("_schemas-lost");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = RegistryConfig {
        kafka: kafka(),
        topic: topic.clone(),
        kafka_timeout: Duration::from_secs(3),
    };
    let task = tokio::spawn(serve(listener, config, std::future::pending()));
    let api = Api::new(&url);
    assert_eq!(api.get("/").await.0, 200);
    id_of(&api.register("lost-value", V1).await);
    // Take the topic away underneath the registry (the broker does not auto-create topics).
    let admin: AdminClient<DefaultClientContext> = kafka().create().unwrap();
    admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .unwrap()[0]
        .as_ref()
        .unwrap();
    let (status, body) = api.register("lost-value", V2).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        matches!(body["error_code"].as_u64(), Some(50001 | 50002)),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains(&topic),
        "names the topic: {body}"
    );
    assert_eq!(
        api.get("/subjects/lost-value/versions").await.1,
        json!([1]),
        "nothing applied"
    );
    task.abort();
}

/// A union of `width` records all named `R` (in different namespaces, so every pair of branches is compared), each
/// holding the next level's union in a field, `depth` levels deep; the innermost records have a field of
/// `leaf_type`. Its union fan-out is `width ^ depth`.
fn nested_unions(width: usize, depth: usize, namespace: &str, leaf_type: &str) -> String {
    if depth == 0 {
        return format!(
            r#"{{"type":"record","name":"R","namespace":"{namespace}","fields":[{{"name":"leaf","type":"{leaf_type}"}}]}}"#
        );
    }
    let branches: Vec<String> = (0..width)
        .map(|i| {
            let inner = nested_unions(width, depth - 1, &format!("{namespace}.n{i}.c"), leaf_type);
            format!(
                r#"{{"type":"record","name":"R","namespace":"{namespace}.n{i}","fields":[{{"name":"f","type":{inner}}}]}}"#
            )
        })
        .collect();
    format!("[{}]", branches.join(","))
}

fn wide_record(width: usize, depth: usize, leaf_type: &str) -> String {
    format!(
        r#"{{"type":"record","name":"Wide","namespace":"io.adstream.test","fields":[{{"name":"u","type":{}}}]}}"#,
        nested_unions(width, depth, "w", leaf_type)
    )
}

/// Regression: a slow compatibility check ran on the async workers while holding the state lock, so with a couple
/// of them running nothing else was answered. Now `GET /subjects` answers while they are still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_answered_while_slow_compatibility_checks_run() {
    let server = start(&unique("_schemas-slowcheck")).await;
    let api = Api::new(&server.url);
    // Fan-out 4^4 = 256, the most the registry admits: the check compares every branch pair at every level.
    id_of(&api.register("wide-value", &wide_record(4, 4, "int")).await);
    let incompatible = wide_record(4, 4, "boolean");
    let mut checks = Vec::new();
    for _ in 0..4 {
        let url = server.url.clone();
        let schema = incompatible.clone();
        checks.push(tokio::spawn(async move {
            Api::new(&url)
                .post(
                    "/compatibility/subjects/wide-value/versions/latest",
                    json!({ "schema": schema }),
                )
                .await
        }));
    }
    // Give the checks time to be received and started; the read must then not wait for them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let subjects = tokio::spawn({
        let url = server.url.clone();
        async move { Api::new(&url).get("/subjects").await }
    });
    let answer = subjects.await.unwrap();
    let still_running = checks.iter().filter(|c| !c.is_finished()).count();
    assert_eq!(answer, (200, json!(["wide-value"])));
    assert!(
        still_running > 0,
        "GET /subjects was only answered after every compatibility check had finished"
    );
    for check in checks {
        let (status, body) = check.await.unwrap();
        assert_eq!(
            (status, &body["is_compatible"]),
            (200, &json!(false)),
            "{body}"
        );
    }
    server.stop().await;
}

/// Regression: unions nested too widely made one check run for many seconds; they are refused up front (42201,
/// naming the bound) on registration and on compatibility checks.
#[tokio::test(flavor = "multi_thread")]
async fn too_widely_nested_unions_are_refused_naming_the_bound() {
    let server = start(&unique("_schemas-fanout")).await;
    let api = Api::new(&server.url);
    let wide = wide_record(10, 3, "int");
    let (status, body) = api.register("fanout-value", &wide).await;
    assert_eq!(
        (status, &body["error_code"]),
        (422, &json!(42201)),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("1000") && message.contains("256"),
        "names the fan-out and the bound: {message}"
    );
    id_of(&api.register("fanout-value", V1).await);
    api.expect_error(
        api.post(
            "/compatibility/subjects/fanout-value/versions/latest",
            json!({ "schema": wide }),
        )
        .await,
        422,
        42201,
    )
    .await;
    server.stop().await;
}

/// Regression: a schema too large for a Kafka record got a 500 naming the bootstrap servers. It is a 42201 naming
/// the limit, decided before anything is written.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversize_schema_is_refused_naming_the_limit() {
    let topic = unique("_schemas-oversize");
    let server = start(&topic).await;
    let api = Api::new(&server.url);
    let doc = "x".repeat(1_500_000);
    let big = format!(
        r#"{{"type":"record","name":"Big","namespace":"io.adstream.test","doc":"{doc}","fields":[]}}"#
    );
    let (status, body) = api.register("big-value", &big).await;
    assert_eq!(
        (status, &body["error_code"]),
        (422, &json!(42201)),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("900000"), "names the limit: {message}");
    assert!(
        !message.contains(&bootstrap()) && !message.contains(&topic),
        "no internals: {message}"
    );
    api.expect_error(api.get("/subjects/big-value/versions").await, 404, 40401)
        .await;
    server.stop().await;
}

/// Regression: a body above the limit got axum's plain-text 413; Confluent clients read errors as JSON.
#[tokio::test(flavor = "multi_thread")]
async fn a_too_large_body_is_a_json_413() {
    let server = start(&unique("_schemas-body")).await;
    let api = Api::new(&server.url);
    let huge = json!({ "schema": "x".repeat(20 * 1024 * 1024) });
    let (status, body) = api.post("/subjects/huge-value/versions", huge).await;
    assert_eq!((status, &body["error_code"]), (413, &json!(413)), "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("4194304"),
        "names the limit: {body}"
    );
    // The registry goes on answering.
    assert_eq!(api.get("/subjects").await, (200, json!([])));
    server.stop().await;
}

/// Regression: IMPORT mode took ids up to 2^32-1 (negative for Java clients, and one request could use up the id
/// space). Ids are 1..=2^31-1.
#[tokio::test(flavor = "multi_thread")]
async fn imported_ids_stay_within_java_int_range() {
    let server = start(&unique("_schemas-import-ids")).await;
    let api = Api::new(&server.url);
    assert_eq!(
        api.put("/mode/imp-value", json!({ "mode": "IMPORT" }))
            .await
            .0,
        200
    );
    for id in [2_147_483_648_u64, 4_294_967_295, 0] {
        let (status, body) = api
            .post(
                "/subjects/imp-value/versions",
                json!({ "schema": V1, "id": id, "version": 1 }),
            )
            .await;
        assert_eq!(
            (status, &body["error_code"]),
            (422, &json!(42205)),
            "{id}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains("2147483647"),
            "names the range: {body}"
        );
    }
    api.expect_error(api.get("/subjects/imp-value/versions").await, 404, 40401)
        .await;
    let top = api
        .post(
            "/subjects/imp-value/versions",
            json!({ "schema": V1, "id": 2_147_483_647_u64, "version": 1 }),
        )
        .await;
    assert_eq!(id_of(&top), 2_147_483_647);
    assert_eq!(api.get("/schemas/ids/2147483647").await.0, 200);
    server.stop().await;
}

/// A currency enum, a money record using it, and a payment using money: references two levels deep.
const CURRENCY: &str =
    r#"{"type":"enum","name":"Currency","namespace":"io.adstream.test","symbols":["EUR","USD"]}"#;
const MONEY: &str = r#"{"type":"record","name":"Money","namespace":"io.adstream.test","fields":[{"name":"micros","type":"long"},{"name":"currency","type":"Currency"}]}"#;
const PAYMENT: &str = r#"{"type":"record","name":"Payment","namespace":"io.adstream.test","fields":[{"name":"id","type":"string"},{"name":"amount","type":"Money"}]}"#;
/// PAYMENT plus an optional field: compatible.
const PAYMENT_V2: &str = r#"{"type":"record","name":"Payment","namespace":"io.adstream.test","fields":[{"name":"id","type":"string"},{"name":"amount","type":"Money"},{"name":"note","type":["null","string"],"default":null}]}"#;

fn reference(name: &str, subject: &str, version: i64) -> Value {
    json!({ "name": name, "subject": subject, "version": version })
}

/// Everything about references a client can see, to compare across a restart.
async fn observe_references(api: &Api, money_id: u64, payment_id: u64) -> Vec<(u16, Value)> {
    vec![
        api.get(&format!("/schemas/ids/{payment_id}")).await,
        api.get("/subjects/payment-value/versions/1").await,
        api.get("/subjects/money-value/versions/1/referencedby")
            .await,
        api.get("/subjects/currency-value/versions/1/referencedby")
            .await,
        api.get(&format!("/schemas/ids/{money_id}/referencedby"))
            .await,
        api.get(&format!("/schemas/ids/{payment_id}/referencedby"))
            .await,
    ]
}

/// Confluent's schema references: registered, looked up, checked, served with the schema, listed by
/// `referencedby`, protecting what they reference from hard deletes, stored in the topic the Confluent way, and
/// all of it restored by a restart.
#[tokio::test(flavor = "multi_thread")]
async fn schema_references_work_end_to_end_and_survive_a_restart() {
    let topic = unique("_schemas-references");
    let server = start(&topic).await;
    let api = Api::new(&server.url);
    id_of(&api.register("currency-value", CURRENCY).await);
    let money = json!({
        "schema": MONEY,
        "references": [reference("io.adstream.test.Currency", "currency-value", 1)],
    });
    let money_id = id_of(&api.post("/subjects/money-value/versions", money).await);
    // `-1` names the latest version; the registry stores the version it resolved to.
    let payment = json!({
        "schema": PAYMENT,
        "references": [reference("io.adstream.test.Money", "money-value", -1)],
    });
    let payment_id = id_of(
        &api.post("/subjects/payment-value/versions", payment.clone())
            .await,
    );
    let stored_references = json!([reference("io.adstream.test.Money", "money-value", 1)]);

    let (status, by_id) = api.get(&format!("/schemas/ids/{payment_id}")).await;
    assert_eq!(status, 200, "{by_id}");
    assert_eq!(by_id["references"], stored_references);
    // The referenced type stays a reference by (full) name; it is not inlined.
    let served = by_id["schema"].as_str().unwrap();
    assert!(
        served.contains(r#""type":"io.adstream.test.Money""#) && !served.contains("micros"),
        "{served}"
    );
    let version = api.get("/subjects/payment-value/versions/1").await.1;
    assert_eq!(version["references"], stored_references);
    assert_eq!(version["id"], payment_id);
    // A schema without references is served as before, without the field.
    assert!(api.get("/subjects/currency-value/versions/1").await.1["references"].is_null());

    // Registering again and looking up find the same schema; without its references it does not parse.
    assert_eq!(
        id_of(
            &api.post("/subjects/payment-value/versions", payment.clone())
                .await
        ),
        payment_id
    );
    let found = api.post("/subjects/payment-value", payment.clone()).await;
    assert_eq!(
        (found.0, &found.1["version"]),
        (200, &json!(1)),
        "{}",
        found.1
    );
    assert_eq!(found.1["references"], stored_references);
    api.expect_error(
        api.post("/subjects/payment-value", json!({ "schema": PAYMENT }))
            .await,
        422,
        42201,
    )
    .await;

    // Compatibility is checked with the referenced types resolved.
    let v2 = json!({
        "schema": PAYMENT_V2,
        "references": [reference("io.adstream.test.Money", "money-value", 1)],
    });
    assert_eq!(
        api.post(
            "/compatibility/subjects/payment-value/versions/latest",
            v2.clone()
        )
        .await,
        (200, json!({ "is_compatible": true }))
    );
    let breaking = json!({
        "schema": PAYMENT.replace(r#""type":"Money"}"#, r#""type":"Money"},{"name":"payer","type":"string"}"#),
        "references": [reference("io.adstream.test.Money", "money-value", 1)],
    });
    let (status, verdict) = api
        .post(
            "/compatibility/subjects/payment-value/versions/latest?verbose=true",
            breaking.clone(),
        )
        .await;
    assert_eq!(
        (status, &verdict["is_compatible"]),
        (200, &json!(false)),
        "{verdict}"
    );
    assert!(
        verdict["messages"].to_string().contains("payer"),
        "{verdict}"
    );
    api.expect_error(
        api.post("/subjects/payment-value/versions", breaking).await,
        409,
        409,
    )
    .await;
    let payment_v2_id = id_of(&api.post("/subjects/payment-value/versions", v2).await);

    // Who references what.
    assert_eq!(
        api.get("/subjects/money-value/versions/1/referencedby")
            .await,
        (200, json!([payment_id, payment_v2_id]))
    );
    assert_eq!(
        api.get(&format!("/schemas/ids/{money_id}/referencedby"))
            .await,
        (200, json!([payment_id, payment_v2_id]))
    );
    assert_eq!(
        api.get("/subjects/currency-value/versions/1/referencedby")
            .await,
        (200, json!([money_id]))
    );

    // A referenced version may be soft-deleted (it still resolves), not hard-deleted.
    assert_eq!(
        api.delete("/subjects/money-value/versions/1").await,
        (200, json!(1))
    );
    api.expect_error(
        api.delete("/subjects/money-value/versions/1?permanent=true")
            .await,
        422,
        42206,
    )
    .await;
    api.expect_error(
        api.delete("/subjects/money-value?permanent=true").await,
        422,
        42206,
    )
    .await;
    let before = observe_references(&api, money_id, payment_id).await;
    server.stop().await;

    // Stored the Confluent way: the references in the SCHEMA record's value.
    let records = read_topic(&topic);
    let payment_record: Value = records
        .iter()
        .filter(|(key, _)| key.contains(r#""subject":"payment-value","version":1"#))
        .find_map(|(_, value)| value.as_deref())
        .map(|v| serde_json::from_str(v).unwrap())
        .expect("payment-value version 1 is in the topic");
    assert_eq!(payment_record["references"], stored_references);

    let server = start(&topic).await;
    let api = Api::new(&server.url);
    assert_eq!(observe_references(&api, money_id, payment_id).await, before);
    assert_eq!(
        api.post("/subjects/payment-value", payment).await.1["id"],
        payment_id
    );
    api.expect_error(
        api.delete("/subjects/money-value/versions/1?permanent=true")
            .await,
        422,
        42206,
    )
    .await;
    // Once its referrers are gone, the referenced version can go too.
    api.delete("/subjects/payment-value").await;
    assert_eq!(
        api.delete("/subjects/payment-value?permanent=true").await,
        (200, json!([1, 2]))
    );
    assert_eq!(
        api.delete("/subjects/money-value/versions/1?permanent=true")
            .await,
        (200, json!(1))
    );
    server.stop().await;
}

/// With compatibility checks running outside the locks, concurrent registrations that each need a check still get
/// one version each, and one schema registered at once in several subjects still gets one id.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_checked_registrations_keep_one_id_per_schema() {
    let server = start(&unique("_schemas-race-checked")).await;
    let api = Api::new(&server.url);
    id_of(&api.register("checked-value", V1).await);
    // V1 plus one optional field each: every one is BACKWARD compatible with every other.
    let evolved = |n: usize| {
        V1.replace(
            r#"{"name":"id","type":"string"}"#,
            &format!(r#"{{"name":"id","type":"string"}},{{"name":"f{n}","type":["null","long"],"default":null}}"#),
        )
    };
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (url, schema) = (server.url.clone(), evolved(n));
        tasks.push(tokio::spawn(async move {
            id_of(&Api::new(&url).register("checked-value", &schema).await)
        }));
    }
    for n in 0..4 {
        let (url, schema) = (server.url.clone(), evolved(100));
        tasks.push(tokio::spawn(async move {
            id_of(
                &Api::new(&url)
                    .register(&format!("shared-{n}-value"), &schema)
                    .await,
            )
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    let shared: std::collections::BTreeSet<u64> = ids[8..].iter().copied().collect();
    assert_eq!(shared.len(), 1, "one schema, one id: {ids:?}");
    let mut distinct = ids[..8].to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "{ids:?}");
    assert_eq!(
        api.get("/subjects/checked-value/versions").await.1,
        json!((1..=9).collect::<Vec<_>>())
    );
    server.stop().await;
}
