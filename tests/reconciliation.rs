//! The reconciliation job on the real broker: generator traffic in the event topics, and the platform's report of
//! the same traffic in the report topic — exact for every campaign but one, whose reported spend is 5 % higher.
//! The alert must fire for that campaign only.
//!
//! The report rows are built from the same seeded generator the events came from (per campaign, ad and UTC hour,
//! keyed and named the way the connectors write them) and include one restatement (a wrong first row for an ad
//! and hour, then the correct one with a later `reported_at`) and one stale row (an older `reported_at` arriving
//! last), so the comparison also shows that the latest report of an ad and window wins. Every event is produced
//! twice: the job counts each `event_id` once.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use adstream_kafka::registry_client::RegistryClient;
use adstream_processors::runtime::WireEncoder;
use adstream_producers::generator::{GeneratedEvent, Generator, GeneratorConfig};
use adstream_schemas::events::Platform;
use adstream_schemas::outputs::Granularity;
use adstream_schemas::platform::PlatformReport;
use adstream_schemas::reconciliation::{CampaignReconciliation, ReconciliationStatus};
use apache_avro::Schema;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use common::jobs::{apply_topology, wait_for_end};
use common::recompute::{self, produce_generator, read_committed_records};
use common::{start_registry, unique};

const HOUR_MS: i64 = 3_600_000;

fn topology(prefix: &str, processor: &str) -> String {
    format!(
        "defaults:\n  partitions: 4\n  replication_factor: 1\ntopics:\n\
         \x20 - {{ name: {prefix}.impressions, key: campaign_id, value_schema: io.adstream.ads.AdImpression }}\n\
         \x20 - {{ name: {prefix}.clicks, key: campaign_id, value_schema: io.adstream.ads.AdClick }}\n\
         \x20 - {{ name: {prefix}.conversions, key: user_id, value_schema: io.adstream.ads.Conversion }}\n\
         \x20 - {{ name: {prefix}.campaigns, key: campaign_id, value_schema: io.adstream.ads.Campaign, cleanup_policy: compact }}\n\
         \x20 - {{ name: {prefix}.creatives, key: creative_id, value_schema: io.adstream.ads.Creative, cleanup_policy: compact }}\n\
         \x20 - {{ name: {prefix}.reports, key: report_key, value_schema: io.adstream.platform.PlatformReport, cleanup_policy: compact }}\n\
         \x20 - {{ name: {prefix}.metrics.reconciliation, key: campaign_window, value_schema: io.adstream.reconciliation.CampaignReconciliation, cleanup_policy: compact }}\n\
         \x20 - {{ name: {prefix}.alerts.reconciliation, key: campaign_id, value_schema: io.adstream.reconciliation.CampaignReconciliation }}\n\
         processors:\n\
         \x20 - name: {processor}\n\
         \x20   job: reconciliation\n\
         \x20   repartition: [{prefix}.reports]\n\
         \x20   inputs: [{prefix}.impressions, {prefix}.clicks]\n\
         \x20   outputs: [{prefix}.metrics.reconciliation, {prefix}.alerts.reconciliation]\n\
         \x20   key: campaign_id\n"
    )
}

/// The platform's report of the generated traffic: one row per (campaign, ad, UTC hour), exact.
fn exact_reports(
    config: &GeneratorConfig,
    reported_at: i64,
) -> BTreeMap<(String, String, i64), PlatformReport> {
    let mut rows: BTreeMap<(String, String, i64), PlatformReport> = BTreeMap::new();
    for generated in Generator::new(config.clone()) {
        let (platform, account, campaign, creative, time, impressions, clicks, cost) =
            match generated.event {
                GeneratedEvent::Impression(i) => (
                    i.platform,
                    i.account_id,
                    i.campaign_id,
                    i.creative_id,
                    i.event_time,
                    1,
                    0,
                    i.cost_micros,
                ),
                GeneratedEvent::Click(c) => (
                    c.platform,
                    c.account_id,
                    c.campaign_id,
                    c.creative_id,
                    c.event_time,
                    0,
                    1,
                    c.cost_micros,
                ),
                _ => continue,
            };
        let hour = time.div_euclid(HOUR_MS) * HOUR_MS;
        // adstream's campaign id is `<platform slug>-<the platform's id>`; the platform reports its own id.
        let platform_campaign = campaign
            .strip_prefix(&format!("{}-", platform.slug()))
            .expect("generated campaign ids start with their platform's slug")
            .to_owned();
        let row = rows
            .entry((campaign.clone(), creative.clone(), hour))
            .or_insert_with(|| PlatformReport {
                platform,
                account_id: account,
                campaign_id: platform_campaign,
                ad_group_id: None,
                ad_id: creative,
                granularity: Granularity::Hourly,
                window_start: hour,
                window_end: hour + HOUR_MS,
                time_zone: "UTC".into(),
                currency: "USD".into(),
                impressions: 0,
                clicks: 0,
                spend_micros: 0,
                conversions: 0.0,
                conversion_value_micros: None,
                reported_at,
            });
        row.impressions += impressions;
        row.clicks += clicks;
        row.spend_micros += cost;
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_spend_discrepancy_alerts_its_campaign_only() {
    let registry = start_registry("reconciliation").await;
    let prefix = unique("recon");
    let processor = unique("recon-job");
    let dir = std::env::temp_dir().join(unique("reconciliation"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("topology.yaml");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(topology(&prefix, &processor).as_bytes()))
        .expect("write topology");
    apply_topology(&registry.url, &path, &[]);
    let topics = recompute::Topics::under(&prefix);

    let config = GeneratorConfig {
        seed: 4242,
        events: 40_000,
        campaigns: 8,
        days: 1,
        ..GeneratorConfig::default()
    };
    // Every event twice (a resending pixel): counted once.
    produce_generator(&registry.url, &topics.events, config.clone()).await;
    produce_generator(&registry.url, &topics.events, config.clone()).await;

    let reported_at = 1_800_000_000_000;
    let mut rows: Vec<PlatformReport> = exact_reports(&config, reported_at).into_values().collect();
    let planted = "meta-cmp-0001";
    for row in rows
        .iter_mut()
        .filter(|r| format!("{}-{}", r.platform.slug(), r.campaign_id) == planted)
    {
        row.spend_micros = row.spend_micros * 105 / 100;
    }
    assert!(rows
        .iter()
        .any(|r| r.platform == Platform::Meta && r.campaign_id == "cmp-0001"));
    // A restated row: first a wrong number, then the right one read later; then a stale wrong one arrives last.
    let restated = rows
        .iter()
        .find(|r| r.campaign_id == "cmp-0002" && r.impressions > 20)
        .expect("a busy hour of another campaign")
        .clone();
    let mut wrong = restated.clone();
    wrong.spend_micros *= 2;
    wrong.impressions *= 2;
    wrong.reported_at = reported_at - 1;
    let mut stale = wrong.clone();
    stale.reported_at = reported_at - 2;
    let mut sequence = vec![wrong];
    sequence.extend(rows.iter().cloned());
    sequence.push(stale);
    produce_reports(&registry.url, &format!("{prefix}.reports"), &sequence).await;

    // The restatement look-back covers the generator's late events (at most 6 h), so no window is judged before
    // its last event arrived; every window is judged, however small.
    let job = common::jobs::adstream(
        &registry.url,
        &[
            "process",
            "reconciliation",
            "--topology",
            path.to_str().expect("utf-8 path"),
            "--application-id",
            &processor,
            "--commit-interval-ms",
            "200",
            "--until-end",
            "--restatement-secs",
            "28800",
            "--min-impressions",
            "1",
        ],
    )
    .spawn()
    .expect("start the job");
    wait_for_end(job, "reconciliation");

    let schema = Schema::parse_str(CampaignReconciliation::SCHEMA).expect("schema");
    let decode = |payload: &[u8]| -> CampaignReconciliation { recompute::decode(&schema, payload) };
    let alerts: Vec<CampaignReconciliation> =
        read_committed_records(&format!("{prefix}.alerts.reconciliation"))
            .into_iter()
            .filter_map(|(_, value)| value.map(|v| decode(&v)))
            .collect();
    let mut latest: BTreeMap<String, CampaignReconciliation> = BTreeMap::new();
    for (key, value) in read_committed_records(&format!("{prefix}.metrics.reconciliation")) {
        if let (Some(key), Some(value)) = (key, value) {
            latest.insert(String::from_utf8(key).expect("utf-8 key"), decode(&value));
        }
    }

    assert!(!alerts.is_empty(), "no alert for the planted discrepancy");
    let alerted: std::collections::BTreeSet<&str> =
        alerts.iter().map(|a| a.campaign_id.as_str()).collect();
    assert_eq!(
        alerted,
        [planted].into(),
        "alerts for other campaigns: {alerts:#?}"
    );
    assert!(alerts
        .iter()
        .all(|a| a.status == ReconciliationStatus::Mismatched && a.spend_difference > 0.02));

    let windows = rows
        .iter()
        .map(|r| (r.campaign_id.clone(), r.window_start))
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        latest.len(),
        windows.len(),
        "one row per reported campaign and hour"
    );
    for row in latest.values() {
        if row.campaign_id == planted && row.event_spend_micros >= 100 {
            assert_eq!(row.status, ReconciliationStatus::Mismatched, "{row:?}");
        } else if row.campaign_id != planted {
            assert_eq!(row.status, ReconciliationStatus::Matched, "{row:?}");
            assert_eq!(
                (
                    row.event_impressions,
                    row.event_clicks,
                    row.event_spend_micros
                ),
                (
                    row.platform_impressions,
                    row.platform_clicks,
                    row.platform_spend_micros
                ),
                "{row:?}"
            );
        }
    }
    let restated_row = latest
        .values()
        .find(|r| r.campaign_id.ends_with("cmp-0002") && r.window_start == restated.window_start)
        .expect("the restated window");
    assert_eq!(
        restated_row.platform_spend_micros,
        restated_row.event_spend_micros
    );
    assert_eq!(
        restated_row.reported_at, reported_at,
        "the latest report of the ad wins"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Writes `rows` to `topic` in the Confluent wire format, keyed like the connectors key them, in order.
async fn produce_reports(registry_url: &str, topic: &str, rows: &[PlatformReport]) {
    let id = RegistryClient::new(registry_url)
        .expect("registry client")
        .register(&format!("{topic}-value"), PlatformReport::SCHEMA)
        .await
        .expect("register");
    let encoder = WireEncoder::new(PlatformReport::SCHEMA, id).expect("encoder");
    let producer: ThreadedProducer<DefaultProducerContext> = recompute::kafka()
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let mut buffer = Vec::new();
    for row in rows {
        encoder.encode(row, &mut buffer).expect("encodes");
        let key = row.key();
        producer
            .send(
                BaseRecord::to(topic)
                    .key(&key)
                    .payload(&buffer)
                    .timestamp(row.window_start),
            )
            .map_err(|(e, _)| e)
            .expect("enqueued");
        buffer.clear();
    }
    producer.flush(Duration::from_secs(30)).expect("delivered");
}
