//! SQL, replay and state over real topics (`adstream sql`, `adstream replay`, `adstream state`), each result
//! checked against an independent reading of the same topics with a plain consumer and apache-avro.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use adstream_schemas::events::{AdClick, AdImpression, AvroRecord};
use apache_avro::Schema;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::Message;

use common::jobs::{adstream, apply_private_topology, start_job, wait_for_end};
use common::recompute::{
    decode, kafka, outputs, produce_generated_events, read_committed_messages,
};
use common::{start_registry, unique};

const DAY_MS: i64 = 86_400_000;
/// The generator's default start, 2026-11-01T00:00:00Z.
const START_MS: i64 = 1_793_491_200_000;

/// Runs the binary; returns (stdout, stderr), panicking with both on failure.
fn run(registry: &str, args: &[&str]) -> (String, String) {
    let output = adstream(registry, args).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{args:?} failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// `adstream sql --format csv`: rows without the header, and the number of records it says it fetched.
fn sql(registry: &str, topology: &str, query: &str, extra: &[&str]) -> (Vec<Vec<String>>, u64) {
    let mut args = vec!["sql", "--topology", topology, "--format", "csv", query];
    args.extend_from_slice(extra);
    let (stdout, stderr) = run(registry, &args);
    let rows = stdout
        .lines()
        .skip(1)
        .map(|line| line.split(',').map(str::to_owned).collect())
        .collect();
    let fetched = stderr
        .lines()
        .find_map(|line| {
            let (_, rest) = line.split_once("row(s); ")?;
            rest.split(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"));
    (rows, fetched)
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("valid time")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn impressions(messages: &[OwnedMessage]) -> Vec<(AdImpression, &OwnedMessage)> {
    let schema = Schema::parse_str(AdImpression::SCHEMA).expect("schema");
    messages
        .iter()
        .filter_map(|m| Some((decode::<AdImpression>(&schema, m.payload()?), m)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_replay_and_state_agree_with_an_independent_reading() {
    let registry = start_registry("query").await;
    let prefix = unique("query");
    let dir = std::env::temp_dir().join(&prefix);
    let (topology_path, topics) =
        apply_private_topology(&registry.url, &dir, &prefix, &format!("{prefix}-metrics"));
    let topology = topology_path.to_str().expect("utf-8").to_owned();
    produce_generated_events(&registry.url, &topics.events, 11, 40_000).await;

    let all = tokio::task::block_in_place(|| read_committed_messages(&topics.events.impressions));
    let decoded = impressions(&all);
    let total = all.len() as u64;

    // 1. A full-history aggregate equals the same aggregate over a plain consumer's reading.
    let (rows, fetched) = sql(
        &registry.url,
        &topology,
        &format!(
            "SELECT campaign_id, count(*) AS n, sum(cost_micros) AS spend FROM \"{}\" \
             GROUP BY campaign_id ORDER BY campaign_id",
            topics.events.impressions
        ),
        &[],
    );
    let mut expected: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for (impression, _) in &decoded {
        let entry = expected.entry(impression.campaign_id.clone()).or_default();
        entry.0 += 1;
        entry.1 += impression.cost_micros;
    }
    let got: BTreeMap<String, (u64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r[0].clone(),
                (r[1].parse().expect("n"), r[2].parse().expect("spend")),
            )
        })
        .collect();
    assert_eq!(got, expected, "per-campaign impressions and spend");
    assert_eq!(fetched, total, "a full scan reads every record once");
    // The same aggregate decodes its flat columns straight from Avro into Arrow (the scan's fast path).
    let (plan, _) = run(
        &registry.url,
        &[
            "sql",
            "--topology",
            &topology,
            &format!(
                "EXPLAIN ANALYZE SELECT campaign_id, sum(cost_micros) FROM \"{}\" GROUP BY 1",
                topics.events.impressions
            ),
        ],
    );
    let metric = |name: &str| {
        let (_, rest) = plan
            .split_once(&format!("{name}="))
            .unwrap_or_else(|| panic!("no {name} in:\n{plan}"));
        rest.split([',', ']']).next().unwrap_or_default().to_owned()
    };
    // DataFusion prints counts rounded ("39.24 K"): every fetched row went the direct way, none undecodable.
    assert_eq!(
        metric("rows_decoded_directly"),
        metric("records_fetched"),
        "every row on the direct path:\n{plan}"
    );
    assert_eq!(metric("undecodable"), "0");

    // 2. A one-day time range reads only its offsets (the day plus the allowed lateness), and counts exactly: the
    //    generator writes some events up to six hours late, within the seven hours allowed here.
    let (from, to) = (START_MS + 2 * DAY_MS, START_MS + 3 * DAY_MS);
    let (rows, fetched) = sql(
        &registry.url,
        &topology,
        &format!(
            "SELECT count(*) FROM \"{}\" WHERE _timestamp >= '{}' AND _timestamp < '{}'",
            topics.events.impressions,
            rfc3339(from),
            rfc3339(to)
        ),
        &["--max-lateness-hours", "7"],
    );
    let in_day = all
        .iter()
        .filter(|m| {
            m.timestamp()
                .to_millis()
                .is_some_and(|t| t >= from && t < to)
        })
        .count();
    assert_eq!(rows[0][0].parse::<usize>().expect("count"), in_day);
    assert!(
        fetched < total / 3 && fetched >= in_day as u64,
        "a day of a week-long topic: fetched {fetched} of {total} records for {in_day} rows"
    );

    // 3. A key reads only its partition.
    let campaign = decoded[0].0.campaign_id.clone();
    let (rows, fetched) = sql(
        &registry.url,
        &topology,
        &format!(
            "SELECT count(*) FROM \"{}\" WHERE _key = '{campaign}'",
            topics.events.impressions
        ),
        &[],
    );
    let of_campaign = decoded
        .iter()
        .filter(|(i, _)| i.campaign_id == campaign)
        .count();
    let partition = decoded[0].1.partition();
    let partition_size = all.iter().filter(|m| m.partition() == partition).count() as u64;
    assert_eq!(rows[0][0].parse::<usize>().expect("count"), of_campaign);
    assert_eq!(fetched, partition_size, "only the key's partition is read");

    // 4. An output topic of a processor, by its topology name, is its latest row per key.
    let job = start_job(
        &registry.url,
        &topology,
        &format!("{prefix}-metrics"),
        "127.0.0.1:0",
        true,
    );
    tokio::task::block_in_place(|| wait_for_end(job, "campaign-metrics"));
    let latest = tokio::task::block_in_place(|| outputs(&topics));
    let hourly: Vec<_> = latest
        .values()
        .filter(|m| m.window_end - m.window_start == 3_600_000)
        .collect();
    let (rows, _) = sql(
        &registry.url,
        &topology,
        &format!(
            "SELECT count(*), sum(impressions), sum(spend_micros) FROM \"{}\"",
            topics.hourly
        ),
        &[],
    );
    assert_eq!(rows[0][0].parse::<usize>().expect("rows"), hourly.len());
    assert_eq!(
        rows[0][1].parse::<i64>().expect("impressions"),
        hourly.iter().map(|m| m.impressions).sum::<i64>()
    );
    assert_eq!(
        rows[0][2].parse::<i64>().expect("spend"),
        hourly.iter().map(|m| m.spend_micros).sum::<i64>()
    );

    // Regression: a time range over a topic written in transactions. The job's rows carry event times (weeks
    // ago), its commit markers the wall-clock time of their commit: the scan used to end at Kafka's offset for the
    // range's end, which was the first commit marker, and returned the first transaction's rows only.
    let hourly_messages = tokio::task::block_in_place(|| read_committed_messages(&topics.hourly));
    let bound = START_MS + 3 * DAY_MS;
    let before_bound = hourly_messages
        .iter()
        .filter(|m| m.timestamp().to_millis().is_some_and(|t| t < bound))
        .count();
    let (rows, _) = sql(
        &registry.url,
        &topology,
        &format!(
            "SELECT count(*) FROM history.\"{}\" WHERE _timestamp < '{}'",
            topics.hourly,
            rfc3339(bound)
        ),
        &[],
    );
    assert!(before_bound > 0, "the job wrote rows before the bound");
    assert_eq!(
        rows[0][0].parse::<usize>().expect("count"),
        before_bound,
        "every committed row of the output before the bound"
    );

    // A tombstone removes its key from the compacted table; the history keeps the versions.
    let producer: ThreadedProducer<DefaultProducerContext> = kafka()
        .set("partitioner", "murmur2_random")
        .create()
        .expect("producer");
    producer
        .send::<[u8], [u8]>(BaseRecord::to(&topics.events.campaigns).key(campaign.as_bytes()))
        .map_err(|(e, _)| e)
        .expect("tombstone queued");
    producer
        .flush(Duration::from_secs(10))
        .expect("tombstone delivered");
    let (rows, _) = sql(
        &registry.url,
        &topology,
        &format!(
            "SELECT (SELECT count(*) FROM \"{0}\" WHERE campaign_id = '{campaign}') AS latest, \
                    (SELECT count(*) FROM history.\"{0}\" WHERE _key = '{campaign}') AS versions",
            topics.events.campaigns
        ),
        &[],
    );
    assert_eq!(rows[0][0], "0", "deleted from the latest-per-key table");
    assert!(
        rows[0][1].parse::<u64>().expect("versions") >= 2,
        "value and tombstone in history"
    );

    // 5. `state` re-runs the job over the campaign's history up to a moment.
    let at = START_MS + 3 * DAY_MS + 5 * 3_600_000;
    let (stdout, _) = run(
        &registry.url,
        &[
            "state",
            "--topology",
            &topology,
            "--application-id",
            &format!("{prefix}-metrics"),
            "--campaign",
            &campaign,
            "--at",
            &rfc3339(at),
            "--granularity",
            "hourly",
            "--json",
        ],
    );
    let windows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("json row"))
        .collect();
    let state_impressions: i64 = windows
        .iter()
        .map(|w| w["impressions"].as_i64().expect("n"))
        .sum();
    let state_spend: i64 = windows
        .iter()
        .map(|w| w["spend_micros"].as_i64().expect("spend"))
        .sum();
    let until: Vec<&AdImpression> = decoded
        .iter()
        .filter(|(i, _)| i.campaign_id == campaign && i.event_time <= at)
        .map(|(i, _)| i)
        .collect();
    let clicks_schema = Schema::parse_str(AdClick::SCHEMA).expect("schema");
    let clicks = tokio::task::block_in_place(|| read_committed_messages(&topics.events.clicks));
    let click_spend: i64 = clicks
        .iter()
        .filter_map(|m| m.payload().map(|p| decode::<AdClick>(&clicks_schema, p)))
        .filter(|c| c.campaign_id == campaign && c.event_time <= at)
        .map(|c| c.cost_micros)
        .sum();
    assert_eq!(
        state_impressions,
        until.len() as i64,
        "impressions up to the moment"
    );
    assert_eq!(
        state_spend,
        until.iter().map(|i| i.cost_micros).sum::<i64>() + click_spend,
        "spend up to the moment"
    );
    assert!(windows
        .iter()
        .all(|w| w["window_start"].as_i64().expect("start") <= at));

    // 6. `replay --to-topic`: one campaign's clicks of one day, with provenance, byte for byte.
    let target = format!("{prefix}.replayed");
    let admin: AdminClient<DefaultClientContext> = kafka().create().expect("admin");
    admin
        .create_topics(
            &[NewTopic::new(&target, 4, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create")
        .into_iter()
        .for_each(|r| {
            r.expect("created");
        });
    tokio::task::block_in_place(|| common::wait_for_topics(std::slice::from_ref(&target)));
    let clicking = clicks
        .iter()
        .filter_map(|m| Some((decode::<AdClick>(&clicks_schema, m.payload()?), m)))
        .map(|(c, _)| c.campaign_id)
        .next()
        .expect("a click");
    let (from, to) = (START_MS + DAY_MS, START_MS + 4 * DAY_MS);
    run(
        &registry.url,
        &[
            "replay",
            "--topic",
            &topics.events.clicks,
            "--from",
            &rfc3339(from),
            "--to",
            &rfc3339(to),
            "--key",
            &clicking,
            "--type",
            "io.adstream.ad.click.v1",
            "--to-topic",
            &target,
        ],
    );
    let expected: BTreeMap<(i32, i64), Vec<u8>> = clicks
        .iter()
        .filter(|m| m.key() == Some(clicking.as_bytes()))
        .filter(|m| {
            m.timestamp()
                .to_millis()
                .is_some_and(|t| t >= from && t < to)
        })
        .map(|m| {
            (
                (m.partition(), m.offset()),
                m.payload().expect("value").to_vec(),
            )
        })
        .collect();
    assert!(
        !expected.is_empty(),
        "the chosen campaign has clicks in the range"
    );
    let replayed = tokio::task::block_in_place(|| read_committed_messages(&target));
    let mut got: BTreeMap<(i32, i64), Vec<u8>> = BTreeMap::new();
    for message in &replayed {
        let header = |key: &str| {
            message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == key).and_then(|h| h.value))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(|| panic!("header {key} missing"))
        };
        assert_eq!(header("replay_source_topic"), topics.events.clicks);
        assert_eq!(
            header("ce_type"),
            "io.adstream.ad.click.v1",
            "original headers kept"
        );
        let source = (
            header("replay_source_partition")
                .parse()
                .expect("partition"),
            header("replay_source_offset").parse().expect("offset"),
        );
        got.insert(source, message.payload().expect("value").to_vec());
    }
    assert_eq!(replayed.len(), expected.len(), "each record replayed once");
    assert_eq!(
        got, expected,
        "replayed values are the source records' bytes"
    );

    // `replay --out`: the same selection as JSON lines.
    let file = dir.join("clicks.jsonl");
    run(
        &registry.url,
        &[
            "replay",
            "--topic",
            &topics.events.clicks,
            "--from",
            &rfc3339(from),
            "--to",
            &rfc3339(to),
            "--key",
            &clicking,
            "--out",
            file.to_str().expect("utf-8"),
        ],
    );
    let lines = std::fs::read_to_string(&file).expect("file written");
    assert_eq!(lines.lines().count(), expected.len());
    assert!(lines
        .lines()
        .all(|l| l.contains(&format!("\"campaign_id\":\"{clicking}\""))));

    // 7. Schema evolution: clicks written under a v2 (an optional field with a default) and the v1 history read as
    //    one table through the latest schema; v1 rows get the default.
    let mut v2: serde_json::Value = serde_json::from_str(AdClick::SCHEMA).expect("contract");
    v2["fields"].as_array_mut().expect("fields").push(
        serde_json::json!({"name": "placement", "type": ["null", "string"], "default": null}),
    );
    let v2_text = v2.to_string();
    let v2_id = adstream_kafka::registry_client::RegistryClient::new(&registry.url)
        .expect("client")
        .register(&format!("{}-value", topics.events.clicks), &v2_text)
        .await
        .expect("v2 registered (backward compatible)");
    let v2_schema = Schema::parse_str(&v2_text).expect("v2 parses");
    let v2_writer = apache_avro::writer::datum::GenericDatumWriter::builder(&v2_schema)
        .build()
        .expect("writer");
    let template = clicks
        .iter()
        .find_map(|m| Some(decode::<AdClick>(&clicks_schema, m.payload()?)))
        .expect("a click");
    for n in 0..3 {
        let apache_avro::types::Value::Record(mut fields) =
            apache_avro::to_value(&template).expect("to value")
        else {
            panic!("a click is a record");
        };
        fields.push((
            "placement".into(),
            apache_avro::types::Value::Union(
                1,
                Box::new(apache_avro::types::Value::String(format!("feed-{n}"))),
            ),
        ));
        let body = v2_writer
            .write_value_to_vec(apache_avro::types::Value::Record(fields))
            .expect("encodes under v2");
        let value = adstream_schemas::wire::encode(v2_id, &body);
        producer
            .send(
                BaseRecord::to(&topics.events.clicks)
                    .key(template.campaign_id.as_bytes())
                    .payload(&value),
            )
            .map_err(|(e, _)| e)
            .expect("queued");
    }
    producer
        .flush(Duration::from_secs(10))
        .expect("v2 clicks delivered");
    let (rows, _) = sql(
        &registry.url,
        &topology,
        &format!(
            "SELECT count(*), count(placement), min(placement) FROM \"{}\"",
            topics.events.clicks
        ),
        &[],
    );
    assert_eq!(
        rows[0][0].parse::<usize>().expect("count"),
        clicks.len() + 3,
        "v1 and v2 rows in one table"
    );
    assert_eq!(
        rows[0][1], "3",
        "only v2 rows carry the new field; v1 rows read its default"
    );
    assert_eq!(rows[0][2], "feed-0");
}

#[test]
fn sql_refuses_writes_and_ddl_with_a_clear_error() {
    // No broker needed to refuse: the statement is rejected before any table is read; an empty topology keeps the
    // session free of topics.
    let dir = std::env::temp_dir().join(unique("query-ro"));
    std::fs::create_dir_all(&dir).expect("dir");
    let topology = dir.join("empty.yaml");
    std::fs::write(&topology, "topics: []\n").expect("write");
    for statement in [
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/tmp/x.csv'",
        "COPY (SELECT 1) TO '/tmp/adstream-copy.csv'",
        "INSERT INTO t VALUES (1)",
        "DROP TABLE t",
    ] {
        let output = adstream(
            "http://127.0.0.1:1",
            &[
                "sql",
                "--topology",
                topology.to_str().expect("utf-8"),
                statement,
            ],
        )
        .output()
        .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{statement} was accepted");
        assert!(
            stderr.contains("adstream sql is read-only"),
            "{statement}: {stderr}"
        );
    }
}
