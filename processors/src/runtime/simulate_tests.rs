//! Simulations of the live operators over wire-encoded records, checked against hand computations.

use std::collections::BTreeMap;
use std::time::Duration;

use adstream_schemas::events::{
    avsc, AdClick, AdImpression, Campaign, CampaignStatus, CampaignTargets, Conversion,
    ConversionType, Device, Objective, Placement, Platform,
};
use adstream_schemas::outputs::{
    AlertKind, AlertSeverity, AttributedConversion, AttributionCredit, AttributionModel,
    AttributionTouch, CampaignAlert, CampaignMetrics, CreativeAlert, CreativeFatigue, Journey,
    ModelWeight, WeightModel,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::*;
use crate::attribution::models::RuleSettings;
use crate::attribution::operator::{AttributionConfig, AttributionJob};
use crate::attribution::repartition::{RepartitionConfig, TouchRepartition};
use crate::campaign_metrics::operator::{CampaignMetricsConfig, CampaignMetricsJob, EmitMode};
use crate::fatigue::detector::FatigueConfig;
use crate::fatigue::operator::{CreativeFatigueConfig, CreativeFatigueJob};
use crate::runtime::{SchemaCache, TypedDecoder, WireEncoder};
use crate::window::Lateness;

const IMPRESSION_ID: u32 = 1;
const CLICK_ID: u32 = 2;
const CAMPAIGN_ID: u32 = 3;
const CONVERSION_ID: u32 = 4;
const HOURLY_ID: u32 = 11;
const DAILY_ID: u32 = 12;
const ALERT_ID: u32 = 13;
const TOUCH_ID: u32 = 14;
const ATTRIBUTED_ID: u32 = 15;
const CREDIT_ID: u32 = 16;
const FATIGUE_ID: u32 = 17;
const CREATIVE_ALERT_ID: u32 = 18;
const JOURNEY_ID: u32 = 19;
const WEIGHT_ID: u32 = 20;

/// 2024-03-04T10:00:00Z.
const T0: i64 = 1_709_546_400_000;
const MINUTE: i64 = 60_000;
/// The campaigns table's input index in campaign-metrics.
const CAMPAIGNS_INPUT: usize = 2;
const HOUR: i64 = 60 * MINUTE;

/// Every schema of these tests under the ids above, without a registry.
fn schemas() -> SchemaCache {
    let mut cache = SchemaCache::offline();
    for (id, text) in [
        (IMPRESSION_ID, avsc::AD_IMPRESSION),
        (CLICK_ID, avsc::AD_CLICK),
        (CAMPAIGN_ID, avsc::CAMPAIGN),
        (CONVERSION_ID, avsc::CONVERSION),
        (HOURLY_ID, CampaignMetrics::SCHEMA),
        (DAILY_ID, CampaignMetrics::SCHEMA),
        (ALERT_ID, CampaignAlert::SCHEMA),
        (TOUCH_ID, AttributionTouch::SCHEMA),
        (ATTRIBUTED_ID, AttributedConversion::SCHEMA),
        (CREDIT_ID, AttributionCredit::SCHEMA),
        (FATIGUE_ID, CreativeFatigue::SCHEMA),
        (CREATIVE_ALERT_ID, CreativeAlert::SCHEMA),
        (JOURNEY_ID, Journey::SCHEMA),
        (WEIGHT_ID, ModelWeight::SCHEMA),
    ] {
        cache.insert(id, text).expect("schema parses");
    }
    cache
}

fn wire<T: Serialize>(schema: &str, id: u32, value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    WireEncoder::new(schema, id)
        .expect("encoder")
        .encode(value, &mut out)
        .expect("encodes");
    out
}

fn decode<T: DeserializeOwned>(full_name: &'static str, schema: &str, value: &[u8]) -> T {
    TypedDecoder::new(full_name, schema)
        .expect("decoder")
        .decode(&mut schemas(), Some(value))
        .expect("decodes")
}

/// A record of input `input` with CloudEvents and correlation headers, its offset set by [`numbered`].
fn record(input: usize, partition: i32, time: i64, key: &str, value: Vec<u8>) -> SimulatedRecord {
    let id = format!("{key}@{time}");
    SimulatedRecord {
        input,
        partition,
        offset: 0,
        timestamp_ms: Some(time),
        key: Some(key.as_bytes().to_vec()),
        value: Some(value),
        headers: vec![
            ("ce_id".into(), id.clone().into_bytes()),
            ("ce_type".into(), b"io.adstream.test".to_vec()),
            ("correlation_id".into(), format!("corr-{id}").into_bytes()),
        ],
        correlation_id: format!("corr-{id}"),
    }
}

/// Offsets in order per (input, partition).
fn numbered(mut records: Vec<SimulatedRecord>) -> Vec<SimulatedRecord> {
    let mut next: BTreeMap<(usize, i32), i64> = BTreeMap::new();
    for record in &mut records {
        let offset = next.entry((record.input, record.partition)).or_default();
        record.offset = *offset;
        *offset += 1;
    }
    records
}

fn impression(
    partition: i32,
    campaign: &str,
    user: &str,
    time: i64,
    cost_micros: i64,
) -> SimulatedRecord {
    let value = AdImpression {
        event_id: format!("imp-{campaign}-{time}"),
        event_time: time,
        platform: Platform::Meta,
        account_id: "acct-1".into(),
        campaign_id: campaign.into(),
        ad_group_id: "ag-1".into(),
        creative_id: format!("cr-{campaign}"),
        user_id: Some(user.into()),
        placement: Placement::Feed,
        device: Device::Mobile,
        cost_micros,
        currency: "EUR".into(),
    };
    record(
        0,
        partition,
        time,
        campaign,
        wire(avsc::AD_IMPRESSION, IMPRESSION_ID, &value),
    )
}

fn click(
    partition: i32,
    campaign: &str,
    user: &str,
    time: i64,
    cost_micros: i64,
) -> SimulatedRecord {
    let value = AdClick {
        event_id: format!("clk-{campaign}-{time}"),
        event_time: time,
        platform: Platform::Meta,
        account_id: "acct-1".into(),
        campaign_id: campaign.into(),
        ad_group_id: "ag-1".into(),
        creative_id: format!("cr-{campaign}"),
        user_id: Some(user.into()),
        impression_id: None,
        device: Device::Mobile,
        cost_micros,
        currency: "EUR".into(),
    };
    record(
        1,
        partition,
        time,
        campaign,
        wire(avsc::AD_CLICK, CLICK_ID, &value),
    )
}

fn campaign(partition: i32, campaign_id: &str, time_zone: &str) -> SimulatedRecord {
    let value = Campaign {
        campaign_id: campaign_id.into(),
        platform: Platform::Meta,
        account_id: "acct-1".into(),
        name: campaign_id.into(),
        objective: Objective::Traffic,
        status: CampaignStatus::Active,
        currency: "EUR".into(),
        daily_budget_micros: None,
        lifetime_budget_micros: None,
        start_time: T0 - 86_400_000,
        end_time: None,
        time_zone: time_zone.into(),
        targets: CampaignTargets::default(),
        updated_at: T0 - 86_400_000,
    };
    let mut table = record(
        2,
        partition,
        T0 - 86_400_000,
        campaign_id,
        wire(avsc::CAMPAIGN, CAMPAIGN_ID, &value),
    );
    table.headers.clear();
    table
}

fn metrics_job() -> Box<dyn crate::runtime::Operator> {
    Box::new(
        CampaignMetricsJob::new(CampaignMetricsConfig {
            impressions: "ads.impressions".into(),
            clicks: "ads.clicks".into(),
            campaigns: "ads.campaigns".into(),
            hourly: "metrics.campaign.hourly".into(),
            daily: "metrics.campaign.daily".into(),
            alerts: "alerts.campaign".into(),
            credits: None,
            attribution_model: AttributionModel::LastTouch,
            lateness: Lateness::new(Duration::from_secs(600), Duration::from_secs(3600))
                .expect("lateness"),
            emit: EmitMode::Updating,
            pacing_check_ms: 15 * 60_000,
            alert_rules: Default::default(),
        })
        .expect("job"),
    )
}

fn metrics_options() -> SimulateOptions {
    SimulateOptions::new("metrics-sim", 2, vec![HOURLY_ID, DAILY_ID, ALERT_ID])
}

/// Campaign c-a (Asia/Kolkata, UTC+05:30: its hours start at :30 UTC) on partition 0, c-b (UTC) on partition 1; one
/// impression of c-a five hours later moves task 0 far past the first hours, then a c-a impression of the first hour
/// arrives: past its retention.
fn metrics_input() -> Vec<SimulatedRecord> {
    let mut records = vec![
        impression(0, "c-a", "u-1", T0 + MINUTE, 1_000),
        impression(0, "c-a", "u-2", T0 + 2 * MINUTE, 1_000),
        click(0, "c-a", "u-1", T0 + 5 * MINUTE, 50_000),
        impression(0, "c-a", "u-3", T0 + 40 * MINUTE, 2_000),
        impression(1, "c-b", "u-4", T0 + 3 * MINUTE, 500),
        impression(1, "c-b", "u-5", T0 + 70 * MINUTE, 500),
        click(1, "c-b", "u-5", T0 + 71 * MINUTE, 30_000),
        impression(0, "c-a", "u-6", T0 + 5 * HOUR, 4_000),
        impression(1, "c-b", "u-7", T0 + 5 * HOUR + MINUTE, 700),
    ];
    records = interleave_by_timestamp(numbered(records));
    // Last in partition 0's offsets, after the 5 h impression: it arrives once the watermark moved on.
    records.push(impression(0, "c-a", "u-8", T0 + 10 * MINUTE, 9_000));
    let mut input = vec![
        campaign(0, "c-a", "Asia/Kolkata"),
        campaign(1, "c-b", "UTC"),
    ];
    input.extend(records);
    numbered(input)
}

/// Latest row per key of a metrics topic, decoded.
fn rows(simulation: &Simulation, topic: &str) -> BTreeMap<String, CampaignMetrics> {
    simulation
        .compacted(topic)
        .into_iter()
        .map(|(key, value)| {
            (
                String::from_utf8(key).expect("utf-8 key"),
                decode(CampaignMetrics::FULL_NAME, CampaignMetrics::SCHEMA, &value),
            )
        })
        .collect()
}

/// (impressions, clicks, spend, ctr, cpc) of a row.
fn figures(row: &CampaignMetrics) -> (i64, i64, i64, Option<f64>, Option<f64>) {
    (
        row.impressions,
        row.clicks,
        row.spend_micros,
        row.ctr,
        row.cpc_micros,
    )
}

#[test]
fn campaign_metrics_match_a_hand_computation() {
    let simulation = simulate(
        metrics_job(),
        schemas(),
        metrics_input(),
        &metrics_options(),
    )
    .expect("runs");
    let hourly = rows(&simulation, "metrics.campaign.hourly");
    let by_window: BTreeMap<(String, i64, i64), _> = hourly
        .values()
        .map(|r| {
            (
                (r.campaign_id.clone(), r.window_start, r.window_end),
                figures(r),
            )
        })
        .collect();
    let half = 30 * MINUTE;
    let expected: BTreeMap<(String, i64, i64), _> = [
        // c-a, 15:00-16:00 IST: two impressions (1 000 each) and the 50 000 click; CTR 1/2, CPC 52 000.
        (
            ("c-a".into(), T0 - half, T0 + half),
            (2, 1, 52_000, Some(0.5), Some(52_000.0)),
        ),
        // c-a, 16:00-17:00 IST: the 2 000 impression at 10:40Z.
        (
            ("c-a".into(), T0 + half, T0 + HOUR + half),
            (1, 0, 2_000, Some(0.0), None),
        ),
        (
            ("c-a".into(), T0 + 4 * HOUR + half, T0 + 5 * HOUR + half),
            (1, 0, 4_000, Some(0.0), None),
        ),
        // c-b, 10:00-11:00Z and 11:00-12:00Z.
        (("c-b".into(), T0, T0 + HOUR), (1, 0, 500, Some(0.0), None)),
        (
            ("c-b".into(), T0 + HOUR, T0 + 2 * HOUR),
            (1, 1, 30_500, Some(1.0), Some(30_500.0)),
        ),
        (
            ("c-b".into(), T0 + 5 * HOUR, T0 + 6 * HOUR),
            (1, 0, 700, Some(0.0), None),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(by_window, expected);
    // The first hours were final (grace 10 min) when the watermark passed 5 h; the last ones are not.
    for row in hourly.values() {
        assert_eq!(row.is_final, row.window_end <= T0 + 4 * HOUR, "{row:?}");
    }

    let daily = rows(&simulation, "metrics.campaign.daily");
    let days: BTreeMap<(String, i64), _> = daily
        .values()
        .map(|r| ((r.campaign_id.clone(), r.window_start), figures(r)))
        .collect();
    // The Kolkata day of 2024-03-04 starts 2024-03-03T18:30Z.
    let day = T0 - 10 * HOUR;
    let expected_days: BTreeMap<(String, i64), _> = [
        (
            ("c-a".into(), day - 5 * HOUR - half),
            (4, 1, 58_000, Some(0.25), Some(58_000.0)),
        ),
        (
            ("c-b".into(), day),
            (3, 1, 31_700, Some(1.0 / 3.0), Some(31_700.0)),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(days, expected_days);
    assert_eq!(simulation.bootstrapped, 2, "both campaigns bootstrapped");
    assert!(
        simulation
            .changelog
            .contains_key("metrics-sim-windows-changelog"),
        "{:?}",
        simulation.changelog
    );
    assert_eq!(
        simulation.task_watermarks,
        BTreeMap::from([(0, Some(T0 + 5 * HOUR)), (1, Some(T0 + 5 * HOUR + MINUTE))])
    );
}

#[test]
fn a_record_past_retention_is_captured_on_the_late_topic_with_the_live_headers() {
    let simulation = simulate(
        metrics_job(),
        schemas(),
        metrics_input(),
        &metrics_options(),
    )
    .expect("runs");
    let late = simulation.topic("late.ads.impressions");
    assert_eq!(late.len(), 1, "{late:?}");
    let late = &late[0];
    let input = metrics_input();
    let original = input
        .iter()
        .find(|r| r.timestamp_ms == Some(T0 + 10 * MINUTE))
        .expect("the late impression");
    assert_eq!(late.partition, Some(0));
    assert_eq!(Some(late.key.clone()), original.key);
    assert_eq!(late.value, original.value);
    assert_eq!(late.timestamp_ms, original.timestamp_ms);
    let headers: Vec<(&str, String)> = late
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    let keys: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "late_class",
            "late_reason",
            "source_topic",
            "source_partition",
            "source_offset",
            "redirected_at",
            "redirected_by",
            "correlation_id",
            "ce_id",
            "ce_type"
        ]
    );
    let value = |key: &str| {
        headers
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
            .expect("header")
    };
    assert_eq!(value("late_class"), "expired");
    assert!(
        value("late_reason").contains("past the retention"),
        "{}",
        value("late_reason")
    );
    assert_eq!(value("source_topic"), "ads.impressions");
    assert_eq!(value("source_partition"), "0");
    assert_eq!(value("source_offset"), original.offset.to_string());
    // The simulation's clock: the latest event time read, not the wall clock.
    assert_eq!(value("redirected_at"), (T0 + 5 * HOUR + MINUTE).to_string());
    assert_eq!(value("redirected_by"), "metrics-sim");
    assert_eq!(value("correlation_id"), original.correlation_id);
    assert_eq!(
        simulation.late,
        BTreeMap::from([("ads.impressions".into(), 1)])
    );
    // The late impression touched no window: c-a's first hour still has its two.
    let hourly = rows(&simulation, "metrics.campaign.hourly");
    assert!(hourly.values().any(|r| r.campaign_id == "c-a"
        && r.window_start == T0 - 30 * MINUTE
        && r.impressions == 2));
}

#[test]
fn two_partition_interleavings_give_the_same_compacted_output() {
    let by_time = metrics_input();
    // Partition 1 read as if its consumer lagged 20 s behind partition 0 (each partition keeps its order).
    let (tables, streams): (Vec<_>, Vec<_>) = by_time.iter().cloned().partition(|r| r.input == 2);
    const LAG_MS: i64 = 20_000;
    let shift = |records: Vec<SimulatedRecord>, by: i64| -> Vec<SimulatedRecord> {
        records
            .into_iter()
            .map(|mut r| {
                if r.partition == 1 {
                    r.timestamp_ms = r.timestamp_ms.map(|t| t + by);
                }
                r
            })
            .collect()
    };
    let lagging = shift(
        interleave_by_timestamp(shift(streams.clone(), LAG_MS)),
        -LAG_MS,
    );
    // Both keep each partition's own order.
    let order = |records: &[SimulatedRecord]| {
        let mut per_partition: BTreeMap<(usize, i32), Vec<i64>> = BTreeMap::new();
        for r in records {
            per_partition
                .entry((r.input, r.partition))
                .or_default()
                .push(r.offset);
        }
        per_partition
    };
    assert_eq!(order(&lagging), order(&streams));
    assert_ne!(
        lagging.iter().map(|r| r.offset).collect::<Vec<_>>(),
        streams.iter().map(|r| r.offset).collect::<Vec<_>>(),
        "the interleavings differ"
    );
    let mut lagging_input = tables;
    lagging_input.extend(lagging);
    let mut options = metrics_options();
    options.commit_every_ms = Some(1000);
    options.commit_every_records = Some(3);
    let first = simulate(metrics_job(), schemas(), by_time, &options).expect("runs");
    let second = simulate(metrics_job(), schemas(), lagging_input, &options).expect("runs");
    for topic in ["metrics.campaign.hourly", "metrics.campaign.daily"] {
        // Revision and emission time record the run's commit schedule, not the data.
        let normalized = |simulation: &Simulation| {
            rows(simulation, topic)
                .into_iter()
                .map(|(key, mut row)| {
                    row.revision = 0;
                    row.emitted_at = 0;
                    (key, row)
                })
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(normalized(&first), normalized(&second), "{topic}");
        assert!(!normalized(&first).is_empty());
    }
    // The same late record, redirected at the clock of the moment it was read.
    let late = |simulation: &Simulation| {
        let mut records = simulation.topic("late.ads.impressions").to_vec();
        for record in &mut records {
            record.headers.retain(|(key, _)| key != "redirected_at");
        }
        records
    };
    assert_eq!(late(&first), late(&second));
    assert_eq!(late(&first).len(), 1);
}

/// Stage 1 (impressions and clicks by campaign → touches by user) on 2 partitions, its captured output fed with
/// the conversions to stage 2 (attribution) on 2 partitions.
#[test]
fn attribution_credits_a_conversion_to_the_touch_before_it_through_the_captured_repartition() {
    const PARTITIONS: i32 = 2;
    let user = "u-42";
    let user_partition = kafka_partition(user.as_bytes(), PARTITIONS);
    // The user saw c-a (partition 0) at +10 min, clicked c-b (partition 1) at +20 min, converted at +30 min, then
    // saw c-c at +40 min. Later traffic of other users moves both stage-1 tasks to +3 h.
    let events = numbered(vec![
        impression(0, "c-a", user, T0 + 10 * MINUTE, 1_000),
        click(1, "c-b", user, T0 + 20 * MINUTE, 40_000),
        impression(0, "c-c", user, T0 + 40 * MINUTE, 1_000),
        impression(0, "c-a", "u-1", T0 + 3 * HOUR, 1_000),
        click(1, "c-b", "u-2", T0 + 3 * HOUR, 40_000),
    ]);
    let repartition = TouchRepartition::new(RepartitionConfig {
        impressions: "ads.impressions".into(),
        clicks: "ads.clicks".into(),
        touches: "attr-touches".into(),
        partitions: PARTITIONS,
    })
    .expect("stage 1");
    let stage1 = simulate(
        Box::new(repartition),
        schemas(),
        interleave_by_timestamp(events),
        &SimulateOptions::new("attr-repartition", PARTITIONS, vec![TOUCH_ID]),
    )
    .expect("stage 1 runs");
    let touches = stage1.as_input("attr-touches", 0, PARTITIONS);
    let markers = touches.iter().filter(|r| r.value.is_none()).count();
    assert!(markers > 0, "stage 1 announced its watermarks");
    assert!(touches
        .iter()
        .filter(|r| r.key.as_deref() == Some(user.as_bytes()))
        .all(|r| r.partition == user_partition));

    let conversion = |id: &str, user: &str, time: i64| {
        let value = Conversion {
            conversion_id: id.into(),
            event_time: time,
            user_id: user.into(),
            conversion_type: ConversionType::Purchase,
            value_micros: 10_000_000,
            currency: "EUR".into(),
        };
        record(
            1,
            kafka_partition(user.as_bytes(), PARTITIONS),
            time,
            user,
            wire(avsc::CONVERSION, CONVERSION_ID, &value),
        )
    };
    // A conversion of a user without touches, long after: the run's clock ends there, so a conversion attributed
    // only at the end of input would say so in its attributed_at.
    let mut input = touches;
    input.extend(numbered(vec![
        conversion("conv-1", user, T0 + 30 * MINUTE),
        conversion("conv-2", "u-nobody", T0 + 6 * HOUR),
    ]));
    let attribution = AttributionJob::new(AttributionConfig {
        touches: "attr-touches".into(),
        conversions: "ads.conversions".into(),
        partitions: PARTITIONS,
        attributed: "attribution.conversions".into(),
        credits: "attribution.credits".into(),
        journeys: None,
        model_weights: None,
        lookback_ms: 7 * 24 * HOUR,
        grace_ms: 10 * MINUTE,
        retention_ms: 24 * HOUR,
        settings: RuleSettings::default(),
    })
    .expect("stage 2");
    let stage2 = simulate(
        Box::new(attribution),
        schemas(),
        interleave_by_timestamp(input),
        &SimulateOptions::new(
            "attr-attribution",
            PARTITIONS,
            vec![ATTRIBUTED_ID, CREDIT_ID],
        ),
    )
    .expect("stage 2 runs");
    assert!(stage2.markers > 0, "stage 2 read stage 1's markers");

    let attributed = stage2.compacted("attribution.conversions");
    let conv: AttributedConversion = decode(
        AttributedConversion::FULL_NAME,
        AttributedConversion::SCHEMA,
        attributed
            .get(b"conv-1".as_slice())
            .expect("conv-1 attributed"),
    );
    let touched: Vec<(&str, i64)> = conv
        .touchpoints
        .iter()
        .map(|t| (t.campaign_id.as_str(), t.event_time))
        .collect();
    assert_eq!(
        touched,
        [("c-a", T0 + 10 * MINUTE), ("c-b", T0 + 20 * MINUTE)],
        "the touches before the conversion, not the one after"
    );
    // Attributed at a commit once stage 1's markers moved the watermark past +40 min, not at the end of input.
    assert!(
        conv.attributed_at < T0 + 6 * HOUR,
        "attributed at {} (end of input at {})",
        conv.attributed_at,
        T0 + 6 * HOUR
    );

    let credits: Vec<AttributionCredit> = stage2
        .topic("attribution.credits")
        .iter()
        .filter_map(|r| r.value.as_deref())
        .map(|v| decode(AttributionCredit::FULL_NAME, AttributionCredit::SCHEMA, v))
        .filter(|c: &AttributionCredit| c.conversion_id == "conv-1")
        .collect();
    let shares = |model: AttributionModel| {
        let mut by_campaign: Vec<(String, f64)> = credits
            .iter()
            .filter(|c| c.model == model)
            .map(|c| (c.campaign_id.clone(), c.conversions))
            .collect();
        by_campaign.sort_by(|a, b| a.0.cmp(&b.0));
        by_campaign
    };
    assert_eq!(
        shares(AttributionModel::LastTouch),
        [("c-b".to_owned(), 1.0)]
    );
    assert_eq!(
        shares(AttributionModel::FirstTouch),
        [("c-a".to_owned(), 1.0)]
    );
    assert_eq!(
        shares(AttributionModel::Linear),
        [("c-a".to_owned(), 0.5), ("c-b".to_owned(), 0.5)]
    );
    // Stage 2 announces its own progress on the credits topic, for campaign-metrics.
    assert!(stage2.topic("attribution.credits").iter().any(|r| {
        r.value.is_none()
            && r.headers
                .iter()
                .any(|(k, v)| k == "adstream_watermark_tasks" && v == b"2")
    }));
}

#[test]
fn an_operator_input_that_does_not_exist_is_an_error() {
    let mut bad = impression(0, "c-a", "u-1", T0, 1);
    bad.input = 7;
    let error = simulate(metrics_job(), schemas(), vec![bad], &metrics_options())
        .expect_err("input 7 does not exist");
    assert!(
        matches!(error, SimulateError::Record { index: 0, .. }),
        "{error}"
    );
}

/// The live runtime's per-task rules around the campaign-metrics job, capturing what it sends, with a wall clock
/// at `now` and one task.
fn live_tasks(now: i64) -> crate::runtime::tasks::Tasks<crate::runtime::emit::Capture> {
    let mut tasks = crate::runtime::tasks::Tasks::new(
        metrics_job(),
        "metrics-live",
        crate::runtime::emit::Capture::default(),
        schemas(),
        crate::runtime::tasks::EventTimeRules {
            idle_timeout: Duration::from_secs(30),
            max_event_time_ahead: Some(Duration::from_secs(3600)),
        },
        1,
        Vec::new(),
    );
    tasks
        .operator
        .set_output_schema_ids(&[HOURLY_ID, DAILY_ID, ALERT_ID])
        .expect("ids");
    tasks.assign(0, now);
    tasks
}

fn dead_letter_classes(
    tasks: &crate::runtime::tasks::Tasks<crate::runtime::emit::Capture>,
) -> Vec<String> {
    tasks
        .emitter
        .transport
        .records
        .iter()
        .filter(|r| r.topic.starts_with("dlq."))
        .map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == "dlq_error_class")
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        })
        .collect()
}

// Regression (issue 18, item 6): one record with a timestamp years ahead (microseconds written as milliseconds)
// moved its task's watermark for good, so every later event of the partition was late.
#[test]
fn a_far_future_record_is_dead_lettered_and_does_not_move_its_tasks_watermark() {
    let now = T0 + 10 * HOUR;
    let mut tasks = live_tasks(now);
    let future = impression(0, "c-a", "u-1", T0 * 1000, 1_000);
    let on_time = impression(0, "c-a", "u-2", T0 + HOUR, 1_000);
    for record in numbered(vec![future, on_time]) {
        tasks.process(&record.view(), now).expect("processed");
    }
    assert_eq!(dead_letter_classes(&tasks), ["future-timestamp"]);
    let watermark = tasks.watermarks.get_mut(&0).expect("task 0").finish();
    assert_eq!(
        watermark,
        Some(T0 + HOUR),
        "only the on-time event moved time"
    );
}

// Regression (issue 18, items 1 and the poison-pill list): records whose headers cannot be trusted, without a
// key, or before 1970 are dead-lettered with their class before the operator sees them; the job goes on.
#[test]
fn records_with_untrusted_headers_no_key_or_a_negative_time_are_dead_lettered() {
    let now = T0 + 10 * HOUR;
    let mut tasks = live_tasks(now);
    let mut bad_text = impression(0, "c-a", "u-1", T0 + MINUTE, 1_000);
    bad_text.headers[1].1 = vec![0xc3, 0x28];
    let mut no_key = impression(0, "c-a", "u-1", T0 + 2 * MINUTE, 1_000);
    no_key.key = None;
    let negative = impression(0, "c-a", "u-1", -5_000, 1_000);
    let good = impression(0, "c-a", "u-1", T0 + 3 * MINUTE, 1_000);
    for record in numbered(vec![bad_text, no_key, negative, good]) {
        tasks.process(&record.view(), now).expect("processed");
    }
    assert_eq!(
        dead_letter_classes(&tasks),
        ["bad-headers", "missing-key", "negative-timestamp"]
    );
}

/// `records` with every stream record twice in a row (the second copy a new record at the next offset), tables once.
fn every_event_twice(
    records: Vec<SimulatedRecord>,
    table_input: Option<usize>,
) -> Vec<SimulatedRecord> {
    let mut doubled = Vec::with_capacity(2 * records.len());
    for record in records {
        if Some(record.input) != table_input {
            doubled.push(record.clone());
        }
        doubled.push(record);
    }
    numbered(doubled)
}

fn counter(simulation: &Simulation, name: &str) -> u64 {
    simulation
        .counters
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, value)| *value)
        .unwrap_or_else(|| panic!("no counter {name} in {:?}", simulation.counters))
}

#[test]
fn campaign_metrics_skip_a_second_copy_of_every_event() {
    let once = simulate(
        metrics_job(),
        schemas(),
        metrics_input(),
        &metrics_options(),
    )
    .expect("runs");
    let twice = simulate(
        metrics_job(),
        schemas(),
        every_event_twice(metrics_input(), Some(CAMPAIGNS_INPUT)),
        &metrics_options(),
    )
    .expect("runs");
    for topic in ["metrics.campaign.hourly", "metrics.campaign.daily"] {
        assert_eq!(rows(&twice, topic), rows(&once, topic), "{topic}");
    }
    assert_eq!(
        twice.compacted("alerts.campaign"),
        once.compacted("alerts.campaign")
    );
    // The copy of the late impression is late too (lateness is judged first); the other 9 copies are duplicates.
    assert_eq!(twice.late.get("ads.impressions"), Some(&2));
    assert_eq!(counter(&once, "duplicate_events"), 0);
    assert_eq!(counter(&twice, "duplicate_events"), 9);
    assert_eq!(
        counter(&twice, "applied_events"),
        counter(&once, "applied_events")
    );
    assert!(
        twice
            .changelog
            .contains_key("metrics-sim-event_ids-changelog"),
        "{:?}",
        twice.changelog
    );
}

/// Attribution of one user's journey (views of c-a and c-c, a click of c-b) whose conversion `conv-1` comes
/// `copies` times: the copies after the first arrive once the conversion was attributed (the watermark moved hours
/// past it, within retention). Every impression and click is produced twice when `copies` > 1.
fn attribution_with_copies(copies: usize) -> Simulation {
    const PARTITIONS: i32 = 2;
    let user = "u-42";
    let mut events = vec![
        impression(0, "c-a", user, T0 + 10 * MINUTE, 1_000),
        click(1, "c-b", user, T0 + 20 * MINUTE, 40_000),
        impression(0, "c-c", user, T0 + 40 * MINUTE, 1_000),
        impression(0, "c-a", "u-1", T0 + 3 * HOUR, 1_000),
        click(1, "c-b", "u-2", T0 + 3 * HOUR, 40_000),
    ];
    if copies > 1 {
        events = every_event_twice(events, None);
    }
    let repartition = TouchRepartition::new(RepartitionConfig {
        impressions: "ads.impressions".into(),
        clicks: "ads.clicks".into(),
        touches: "attr-touches".into(),
        partitions: PARTITIONS,
    })
    .expect("stage 1");
    let stage1 = simulate(
        Box::new(repartition),
        schemas(),
        interleave_by_timestamp(numbered(events)),
        &SimulateOptions::new("attr-repartition", PARTITIONS, vec![TOUCH_ID]),
    )
    .expect("stage 1 runs");
    let conversion = |id: &str, user: &str, time: i64| {
        let value = Conversion {
            conversion_id: id.into(),
            event_time: time,
            user_id: user.into(),
            conversion_type: ConversionType::Purchase,
            value_micros: 10_000_000,
            currency: "EUR".into(),
        };
        record(
            1,
            kafka_partition(user.as_bytes(), PARTITIONS),
            time,
            user,
            wire(avsc::CONVERSION, CONVERSION_ID, &value),
        )
    };
    let mut input = interleave_by_timestamp(stage1.as_input("attr-touches", 0, PARTITIONS));
    // In offset order: the conversion, then traffic hours later (which gets it attributed), then the copies.
    let mut conversions = vec![
        conversion("conv-1", user, T0 + 30 * MINUTE),
        conversion("conv-2", "u-nobody", T0 + 6 * HOUR),
    ];
    conversions.extend((1..copies).map(|_| conversion("conv-1", user, T0 + 30 * MINUTE)));
    input.extend(numbered(conversions));
    let attribution = AttributionJob::new(AttributionConfig {
        touches: "attr-touches".into(),
        conversions: "ads.conversions".into(),
        partitions: PARTITIONS,
        attributed: "attribution.conversions".into(),
        credits: "attribution.credits".into(),
        journeys: None,
        model_weights: None,
        lookback_ms: 7 * 24 * HOUR,
        grace_ms: 10 * MINUTE,
        retention_ms: 24 * HOUR,
        settings: RuleSettings::default(),
    })
    .expect("stage 2");
    simulate(
        Box::new(attribution),
        schemas(),
        input,
        &SimulateOptions::new(
            "attr-attribution",
            PARTITIONS,
            vec![ATTRIBUTED_ID, CREDIT_ID],
        ),
    )
    .expect("stage 2 runs")
}

#[test]
fn attribution_drops_copies_of_a_conversion_and_of_its_touches() {
    let once = attribution_with_copies(1);
    let thrice = attribution_with_copies(3);
    // Every record sent, not only what compaction keeps: a second attribution would add credits downstream.
    let values = |simulation: &Simulation, topic: &str| -> Vec<(Vec<u8>, Vec<u8>)> {
        simulation
            .topic(topic)
            .iter()
            .filter_map(|r| r.value.clone().map(|v| (r.key.clone(), v)))
            .collect()
    };
    let credits = values(&once, "attribution.credits");
    assert!(!credits.is_empty());
    assert_eq!(values(&thrice, "attribution.credits"), credits);
    let attributed = values(&once, "attribution.conversions");
    assert_eq!(attributed.len(), 2, "conv-1 and conv-2");
    // attributed_at is the commit's clock, the same in both runs: the copies arrive after both were attributed.
    assert_eq!(values(&thrice, "attribution.conversions"), attributed);
    assert_eq!(counter(&thrice, "duplicate_conversions"), 2);
    assert_eq!(counter(&thrice, "duplicate_touches"), 5);
    assert_eq!(counter(&once, "duplicate_touches"), 0);
    assert_eq!(
        counter(&thrice, "touches_stored"),
        counter(&once, "touches_stored")
    );
}

fn fatigue_run(records: Vec<SimulatedRecord>) -> Simulation {
    let job = CreativeFatigueJob::new(CreativeFatigueConfig {
        impressions: "ads.impressions".into(),
        clicks: "ads.clicks".into(),
        output: "fatigue.creatives".into(),
        alerts: Some("alerts.creative".into()),
        detector: FatigueConfig::default(),
        lateness: Lateness::new(Duration::from_secs(600), Duration::from_secs(3600))
            .expect("lateness"),
        report_interval_ms: HOUR,
    })
    .expect("job");
    simulate(
        Box::new(job),
        schemas(),
        records,
        &SimulateOptions::new("fatigue-sim", 2, vec![FATIGUE_ID, CREATIVE_ALERT_ID]),
    )
    .expect("runs")
}

#[test]
fn creative_fatigue_skips_a_second_copy_of_every_event() {
    // campaign-metrics' input without its table: impressions and clicks are inputs 0 and 1 of both jobs.
    let events = || -> Vec<SimulatedRecord> {
        metrics_input()
            .into_iter()
            .filter(|r| r.input != CAMPAIGNS_INPUT)
            .collect()
    };
    let once = fatigue_run(numbered(events()));
    let twice = fatigue_run(every_event_twice(events(), None));
    // Every record, in creative and time order: records of one commit come in no particular creative order.
    let values = |simulation: &Simulation| -> Vec<CreativeFatigue> {
        let mut values: Vec<CreativeFatigue> = simulation
            .topic("fatigue.creatives")
            .iter()
            .filter_map(|r| r.value.as_deref())
            .map(|v| decode(CreativeFatigue::FULL_NAME, CreativeFatigue::SCHEMA, v))
            .collect();
        values.sort_by(|a, b| {
            (&a.creative_id, a.assessed_until, a.emitted_at).cmp(&(
                &b.creative_id,
                b.assessed_until,
                b.emitted_at,
            ))
        });
        values
    };
    assert!(!values(&once).is_empty());
    assert_eq!(values(&twice), values(&once));
    assert_eq!(counter(&twice, "fatigue_duplicates"), 9);
    // Healthy throughout: first assessments are no transitions.
    assert!(twice.topic("alerts.creative").is_empty());
    assert_eq!(
        counter(&twice, "fatigue_events"),
        counter(&once, "fatigue_events")
    );
    assert_eq!(
        twice.late.get("ads.impressions"),
        Some(&2),
        "the late impression's copy is late too"
    );
}

/// Campaign-metrics with a pacing check every `pacing_check_ms`, on one partition.
fn paced_metrics_job(pacing_check_ms: i64) -> Box<dyn crate::runtime::Operator> {
    Box::new(
        CampaignMetricsJob::new(CampaignMetricsConfig {
            impressions: "ads.impressions".into(),
            clicks: "ads.clicks".into(),
            campaigns: "ads.campaigns".into(),
            hourly: "metrics.campaign.hourly".into(),
            daily: "metrics.campaign.daily".into(),
            alerts: "alerts.campaign".into(),
            credits: None,
            attribution_model: AttributionModel::LastTouch,
            lateness: Lateness::new(Duration::from_secs(600), Duration::from_secs(86_400))
                .expect("lateness"),
            emit: EmitMode::Updating,
            pacing_check_ms,
            alert_rules: Default::default(),
        })
        .expect("job"),
    )
}

/// The campaigns-table record of `campaign_id` (UTC, partition 0) with a daily budget.
fn campaign_with_daily_budget(campaign_id: &str, budget_micros: i64) -> SimulatedRecord {
    let mut table = campaign(0, campaign_id, "UTC");
    let mut value: Campaign = decode(
        "io.adstream.ads.Campaign",
        avsc::CAMPAIGN,
        table.value.as_deref().expect("value"),
    );
    value.daily_budget_micros = Some(budget_micros);
    table.value = Some(wire(avsc::CAMPAIGN, CAMPAIGN_ID, &value));
    table
}

/// Campaign c-p (UTC, daily budget 144 units) delivers one unit every ten minutes, exactly on pace, until 11:55, then
/// nothing; c-busy, in the same task, delivers every five minutes until 18:00 and moves the task's event time on.
/// Returns the alerts of c-p and the run.
fn silent_campaign_run(pacing_check_ms: i64) -> (Vec<CampaignAlert>, Simulation) {
    let day = T0 - 10 * HOUR;
    let table = campaign_with_daily_budget("c-p", 144_000_000);
    let mut events = Vec::new();
    for i in 0..72 {
        events.push(impression(
            0,
            "c-p",
            "u-1",
            day + 5 * MINUTE + i * 10 * MINUTE,
            1_000_000,
        ));
    }
    for i in 0..(18 * 12) {
        events.push(impression(
            0,
            "c-busy",
            "u-2",
            day + i * 5 * MINUTE + MINUTE,
            1_000,
        ));
    }
    let mut input = vec![table];
    input.extend(interleave_by_timestamp(numbered(events)));
    let simulation = simulate(
        paced_metrics_job(pacing_check_ms),
        schemas(),
        numbered(input),
        &SimulateOptions::new("pacing-sim", 1, vec![HOURLY_ID, DAILY_ID, ALERT_ID]),
    )
    .expect("runs");
    let alerts = simulation
        .topic("alerts.campaign")
        .iter()
        .filter(|r| r.key == b"c-p")
        .filter_map(|r| r.value.as_deref())
        .map(|v| decode(CampaignAlert::FULL_NAME, CampaignAlert::SCHEMA, v))
        .collect();
    (alerts, simulation)
}

#[test]
fn a_campaign_that_stops_delivering_raises_pacing_under_within_the_check_interval() {
    let day = T0 - 10 * HOUR;
    let check = 15 * MINUTE;
    let (alerts, simulation) = silent_campaign_run(check);
    let under: Vec<&CampaignAlert> = alerts
        .iter()
        .filter(|a| a.kind == AlertKind::PacingUnder && a.severity != AlertSeverity::Resolved)
        .collect();
    let first = under
        .first()
        .expect("PACING_UNDER raised without events of c-p");
    // 72 units spent by noon: 10 % under the linear pace (72 / 0.9 = 80 units expected) from 13:20 on.
    let crossed = day + 13 * HOUR + 20 * MINUTE;
    assert!(
        first.event_time >= crossed && first.event_time <= crossed + check,
        "raised at {} ms after the crossing (interval {check} ms): {first:?}",
        first.event_time - crossed
    );
    assert_eq!(first.severity, AlertSeverity::Low);
    assert_eq!(first.rule, "pacing_under:tier1");
    // It worsens as the afternoon goes on: medium from 15:00 (20 % under), high from 17:08 (30 %).
    assert!(
        under.iter().any(|a| a.severity == AlertSeverity::High),
        "{under:?}"
    );
    assert!(counter(&simulation, "pacing_checks") > 0);
    assert!(simulation
        .changelog
        .contains_key("pacing-sim-timers-changelog"));
    // Nothing else about c-p: on pace until it stopped.
    assert!(
        alerts.iter().all(|a| a.kind == AlertKind::PacingUnder),
        "{alerts:?}"
    );
}

/// Regression: alerts judged only the local day of the watermark at each commit, so a day inside a backlog (several
/// days between two commits) was never judged: c-b spends 12 units of its 10-unit daily budget on day 0, and a run
/// that reads days 0 to 2 before its first commit raised no DAILY_BUDGET_REACHED at all.
#[test]
fn a_budget_breach_inside_a_backlog_fires_at_the_end_of_its_day() {
    let day = T0 - 10 * HOUR;
    let table = campaign_with_daily_budget("c-b", 10_000_000);
    let mut events = Vec::new();
    for hour in 1..=12 {
        events.push(impression(0, "c-b", "u-1", day + hour * HOUR, 1_000_000));
    }
    for hour in [12, 13] {
        events.push(impression(
            0,
            "c-b",
            "u-1",
            day + 24 * HOUR + hour * HOUR,
            1_000_000,
        ));
    }
    events.push(impression(
        0,
        "c-b",
        "u-1",
        day + 48 * HOUR + 2 * HOUR,
        1_000,
    ));
    let mut input = vec![table];
    input.extend(interleave_by_timestamp(numbered(events)));
    let budget_alerts = |options: SimulateOptions| -> Vec<CampaignAlert> {
        let simulation = simulate(
            paced_metrics_job(HOUR),
            schemas(),
            numbered(input.clone()),
            &options,
        )
        .expect("runs");
        simulation
            .topic("alerts.campaign")
            .iter()
            .filter_map(|r| r.value.as_deref())
            .map(|v| decode::<CampaignAlert>(CampaignAlert::FULL_NAME, CampaignAlert::SCHEMA, v))
            .filter(|a| a.kind == AlertKind::DailyBudgetReached)
            .collect()
    };
    let options = || SimulateOptions::new("backlog-alerts", 1, vec![HOURLY_ID, DAILY_ID, ALERT_ID]);
    let live = budget_alerts(options());
    let backlog = budget_alerts(SimulateOptions {
        commit_every_ms: None,
        commit_every_records: Some(1_000_000),
        ..options()
    });
    // Live: HIGH at 9 units (90 %), CRITICAL at 10, resolved on day 1.
    let severities = |alerts: &[CampaignAlert]| -> Vec<(AlertSeverity, i64)> {
        alerts.iter().map(|a| (a.severity, a.day_start)).collect()
    };
    assert_eq!(
        severities(&live),
        vec![
            (AlertSeverity::High, day),
            (AlertSeverity::Critical, day),
            (AlertSeverity::Resolved, day + 24 * HOUR),
        ]
    );
    // Backlog: day 0 judged at its last millisecond on its 12 units, then day 1 resolves it.
    assert_eq!(
        severities(&backlog),
        vec![
            (AlertSeverity::Critical, day),
            (AlertSeverity::Resolved, day + 24 * HOUR),
        ]
    );
    assert_eq!(backlog[0].event_time, day + 24 * HOUR - 1);
    assert_eq!(backlog[0].observed, 12_000_000.0, "spend in micros");
}

/// Attribution with journeys and a model-weights table on one partition, lookback 1 h: u-a sees c-a, clicks c-b,
/// converts, then sees c-c and never converts; u-b sees c-a, then c-b more than the lookback later, and converts.
/// Later traffic of u-x moves the watermark 5 h on.
fn attribution_with_journeys(weights: &[(WeightModel, &str, f64)]) -> Simulation {
    let events = numbered(vec![
        impression(0, "c-a", "u-b", T0, 1_000),
        impression(0, "c-a", "u-a", T0 + 10 * MINUTE, 1_000),
        click(0, "c-b", "u-a", T0 + 20 * MINUTE, 40_000),
        impression(0, "c-c", "u-a", T0 + 40 * MINUTE, 1_000),
        impression(0, "c-b", "u-b", T0 + 2 * HOUR + 10 * MINUTE, 1_000),
        impression(0, "c-a", "u-x", T0 + 5 * HOUR, 1_000),
        click(0, "c-b", "u-x", T0 + 5 * HOUR, 40_000),
    ]);
    let repartition = TouchRepartition::new(RepartitionConfig {
        impressions: "ads.impressions".into(),
        clicks: "ads.clicks".into(),
        touches: "attr-touches".into(),
        partitions: 1,
    })
    .expect("stage 1");
    let stage1 = simulate(
        Box::new(repartition),
        schemas(),
        interleave_by_timestamp(events),
        &SimulateOptions::new("attr-repartition", 1, vec![TOUCH_ID]),
    )
    .expect("stage 1 runs");
    let conversion = |id: &str, user: &str, time: i64| {
        let value = Conversion {
            conversion_id: id.into(),
            event_time: time,
            user_id: user.into(),
            conversion_type: ConversionType::Purchase,
            value_micros: 10_000_000,
            currency: "EUR".into(),
        };
        record(
            1,
            0,
            time,
            user,
            wire(avsc::CONVERSION, CONVERSION_ID, &value),
        )
    };
    let mut input: Vec<SimulatedRecord> = weights
        .iter()
        .map(|(model, channel, weight)| {
            let value = ModelWeight {
                model: *model,
                channel: (*channel).into(),
                weight: *weight,
                share: 0.0,
                credited_conversions: 0.0,
                period_start: T0 - 24 * HOUR,
                period_end: T0,
                journeys: 10,
                conversions: 5,
                fitted_at: T0,
            };
            let mut table = record(
                2,
                0,
                T0,
                &value.key(),
                wire(ModelWeight::SCHEMA, WEIGHT_ID, &value),
            );
            table.headers.clear();
            table
        })
        .collect();
    let mut streams = stage1.as_input("attr-touches", 0, 1);
    streams.extend(numbered(vec![
        conversion("conv-a", "u-a", T0 + 30 * MINUTE),
        conversion("conv-b", "u-b", T0 + 2 * HOUR + 20 * MINUTE),
    ]));
    input.extend(interleave_by_timestamp(streams));
    let attribution = AttributionJob::new(AttributionConfig {
        touches: "attr-touches".into(),
        conversions: "ads.conversions".into(),
        partitions: 1,
        attributed: "attribution.conversions".into(),
        credits: "attribution.credits".into(),
        journeys: Some("attribution.journeys".into()),
        model_weights: Some("attribution.model_weights".into()),
        lookback_ms: HOUR,
        grace_ms: MINUTE,
        retention_ms: 2 * HOUR,
        settings: RuleSettings::default(),
    })
    .expect("stage 2");
    simulate(
        Box::new(attribution),
        schemas(),
        numbered(input),
        &SimulateOptions::new(
            "attr-attribution",
            1,
            vec![ATTRIBUTED_ID, CREDIT_ID, JOURNEY_ID],
        ),
    )
    .expect("stage 2 runs")
}

#[test]
fn attribution_writes_each_touch_in_one_journey_converted_or_not() {
    let run = attribution_with_journeys(&[]);
    let journeys: Vec<(String, bool, String, i64)> = run
        .topic("attribution.journeys")
        .iter()
        .filter_map(|r| r.value.as_deref())
        .map(|v| decode::<Journey>(Journey::FULL_NAME, Journey::SCHEMA, v))
        .map(|j| (j.user_id, j.converted, j.path, j.ended_at))
        .collect();
    let mut journeys = journeys;
    journeys.sort();
    assert_eq!(
        journeys,
        [
            (
                "u-a".to_owned(),
                false,
                "c-c".to_owned(),
                T0 + 40 * MINUTE + HOUR
            ),
            (
                "u-a".to_owned(),
                true,
                "c-a > c-b".to_owned(),
                T0 + 30 * MINUTE
            ),
            // c-a was more than the lookback before u-b's conversion: it closes unconverted when the conversion
            // is attributed, ending an hour after it.
            ("u-b".to_owned(), false, "c-a".to_owned(), T0 + HOUR),
            (
                "u-b".to_owned(),
                true,
                "c-b".to_owned(),
                T0 + 2 * HOUR + 20 * MINUTE
            ),
        ]
    );
    assert_eq!(counter(&run, "journeys_converted"), 2);
    assert_eq!(counter(&run, "journeys_not_converted"), 2);
    // No fit read: the data-driven models credit nothing rather than something made up.
    let conv: AttributedConversion = decode(
        AttributedConversion::FULL_NAME,
        AttributedConversion::SCHEMA,
        run.compacted("attribution.conversions")
            .get(b"conv-a".as_slice())
            .expect("conv-a"),
    );
    assert!(conv.credits.iter().all(|m| m.model.is_rule_based()));
}

#[test]
fn attribution_credits_markov_and_shapley_with_the_weights_read() {
    let run = attribution_with_journeys(&[
        (WeightModel::Markov, "c-a", 0.6),
        (WeightModel::Markov, "c-b", 0.2),
        (WeightModel::Shapley, "c-b", 3.0),
    ]);
    assert_eq!(counter(&run, "model_weights_read"), 3);
    let attributed = run.compacted("attribution.conversions");
    let conv: AttributedConversion = decode(
        AttributedConversion::FULL_NAME,
        AttributedConversion::SCHEMA,
        attributed.get(b"conv-a".as_slice()).expect("conv-a"),
    );
    let shares = |model: AttributionModel| {
        conv.credits
            .iter()
            .find(|m| m.model == model)
            .map(|m| m.shares.clone())
    };
    // Touchpoints c-a, c-b: Markov 0.6 : 0.2; Shapley knows only c-b.
    let markov = shares(AttributionModel::Markov).expect("Markov shares");
    assert!(
        (markov[0] - 0.75).abs() < 1e-12 && (markov[1] - 0.25).abs() < 1e-12,
        "{markov:?}"
    );
    assert_eq!(shares(AttributionModel::Shapley), Some(vec![0.0, 1.0]));
    let credits: Vec<AttributionCredit> = run
        .topic("attribution.credits")
        .iter()
        .filter_map(|r| r.value.as_deref())
        .map(|v| decode(AttributionCredit::FULL_NAME, AttributionCredit::SCHEMA, v))
        .collect();
    for model in [AttributionModel::Markov, AttributionModel::Shapley] {
        let total: f64 = credits
            .iter()
            .filter(|c| c.model == model)
            .map(|c| c.conversions)
            .sum();
        assert!(
            (total - 2.0).abs() < 1e-12,
            "{model}: {total} for 2 conversions"
        );
    }
    let markov_a = credits
        .iter()
        .find(|c| {
            c.model == AttributionModel::Markov
                && c.conversion_id == "conv-a"
                && c.campaign_id == "c-a"
        })
        .expect("c-a's Markov credit");
    assert_eq!(markov_a.credit_id, "conv-a|c-a|MARKOV");
    assert!((markov_a.revenue_micros - 7_500_000.0).abs() < 1e-6);
}
