//! Journeys and data-driven credit on the stream, on the real broker: `adstream process attribution` over a
//! private topology that wires `attribution.journeys` and the broadcast `attribution.model_weights`, then
//! `adstream attribution fit`, then the job again over new traffic:
//! - the first run writes each closed journey: the converted ones with their touches and the conversion, and the
//!   touches no conversion followed within the lookback as a journey that did not convert;
//! - the fit writes the Markov removal effects and Shapley values of those journeys (checked against a hand
//!   computation) to the weights topic;
//! - the second run reads them and credits its new conversion under MARKOV and SHAPLEY with the shares the rule
//!   gives (a campaign's weight, split over its touches, normalised), summing to 1, and credits summing to 1 per
//!   model; the first run's conversions, attributed before any fit, have no data-driven credit.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use adstream_producers::builders::{ClickBuilder, ConversionBuilder, ImpressionBuilder, Serving};
use adstream_producers::producer::EventTopics;
use adstream_schemas::events::Platform;
use adstream_schemas::outputs::{
    AttributedConversion, AttributionCredit, AttributionModel, Journey, ModelWeight, WeightModel,
};
use apache_avro::Schema;

use common::jobs::{adstream, apply_topology, process_command, wait_for_end};
use common::recompute::{connect_producer, decode, read_committed_records};
use common::{start_registry, unique};

const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;
/// 2026-11-01T00:00:00Z.
const T0: i64 = 1_793_491_200_000;

fn topology_yaml(prefix: &str) -> String {
    format!(
        "defaults:\n  partitions: 1\n  replication_factor: 1\ntopics:\n\
         \x20 - {{ name: {prefix}.impressions, key: campaign_id, value_schema: io.adstream.ads.AdImpression }}\n\
         \x20 - {{ name: {prefix}.clicks, key: campaign_id, value_schema: io.adstream.ads.AdClick }}\n\
         \x20 - {{ name: {prefix}.conversions, key: user_id, value_schema: io.adstream.ads.Conversion }}\n\
         \x20 - {{ name: {prefix}.campaigns, key: campaign_id, value_schema: io.adstream.ads.Campaign, cleanup_policy: compact }}\n\
         \x20 - {{ name: {prefix}.creatives, key: creative_id, value_schema: io.adstream.ads.Creative, cleanup_policy: compact }}\n\
         \x20 - {{ name: {prefix}.credits, key: campaign_id, value_schema: io.adstream.attribution.AttributionCredit }}\n\
         \x20 - {{ name: {prefix}.attributed, key: conversion_id, value_schema: io.adstream.attribution.AttributedConversion, cleanup_policy: compact }}\n\
         \x20 - {{ name: {prefix}.journeys, key: user_id, value_schema: io.adstream.attribution.Journey }}\n\
         \x20 - {{ name: {prefix}.weights, key: model_channel, value_schema: io.adstream.attribution.ModelWeight, cleanup_policy: compact, broadcast: true }}\n\
         processors:\n\
         \x20 - name: {prefix}-attribution\n\
         \x20   job: attribution\n\
         \x20   repartition: [{prefix}.impressions, {prefix}.clicks]\n\
         \x20   inputs: [{prefix}.conversions, {prefix}.weights]\n\
         \x20   outputs: [{prefix}.attributed, {prefix}.credits, {prefix}.journeys]\n\
         \x20   key: user_id\n"
    )
}

/// An ad of campaign `campaign`.
fn serving(campaign: &str) -> Serving {
    Serving {
        platform: Platform::Meta,
        account_id: "act-1".into(),
        campaign_id: campaign.into(),
        ad_group_id: "g".into(),
        creative_id: format!("{campaign}-cr"),
    }
}

/// A touch or a conversion to produce.
enum Event<'a> {
    View(&'a str, &'a str, i64),
    Click(&'a str, &'a str, i64),
    Convert(&'a str, &'a str, i64),
}

fn produce(producer: &adstream_producers::producer::EventProducer, events: &[Event<'_>]) {
    let encoders = producer.schemas.encoders().expect("encoders");
    let mut buffer = Vec::new();
    for event in events {
        match event {
            Event::View(user, campaign, time) => {
                let id = format!("imp-{user}-{time}");
                let impression = ImpressionBuilder::new(&id, *time, serving(campaign))
                    .user(*user)
                    .cost(1_000, "USD")
                    .build()
                    .expect("valid");
                producer.send(&encoders.impressions, &impression, &id, &mut buffer)
            }
            Event::Click(user, campaign, time) => {
                let id = format!("clk-{user}-{time}");
                let click = ClickBuilder::new(&id, *time, serving(campaign))
                    .user(*user)
                    .cost(50_000, "USD")
                    .build()
                    .expect("valid");
                producer.send(&encoders.clicks, &click, &id, &mut buffer)
            }
            Event::Convert(user, id, time) => {
                let conversion = ConversionBuilder::new(*id, *time, *user)
                    .value(10_000_000, "USD")
                    .build()
                    .expect("valid");
                producer.send(&encoders.conversions, &conversion, id, &mut buffer)
            }
        }
        .expect("enqueued");
    }
    producer.flush(Duration::from_secs(30)).expect("delivered");
}

fn read<T: serde::de::DeserializeOwned>(topic: &str, schema: &str) -> Vec<(String, T)> {
    let schema = Schema::parse_str(schema).expect("schema");
    read_committed_records(topic)
        .into_iter()
        // Records without a value are watermark markers.
        .filter_map(|(key, value)| Some((key, value?)))
        .map(|(key, value)| {
            (
                String::from_utf8(key.unwrap_or_default()).expect("utf-8 key"),
                decode(&schema, &value),
            )
        })
        .collect()
}

fn run_attribution(registry: &str, topology: &str, processor: &str) {
    let job = process_command(
        "attribution",
        registry,
        topology,
        processor,
        "127.0.0.1:0",
        true,
        &["--lookback-days", "1"],
    )
    .spawn()
    .expect("start the job");
    wait_for_end(job, "the attribution run");
}

fn assert_close(ours: &[f64], expected: &[f64], what: &str) {
    assert_eq!(ours.len(), expected.len(), "{what}: {ours:?}");
    for (a, b) in ours.iter().zip(expected) {
        assert!(
            (a - b).abs() < 1e-12,
            "{what}: {ours:?}, expected {expected:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journeys_are_written_and_fitted_weights_credit_new_conversions() {
    let registry = start_registry("attribution-stream").await;
    let prefix = unique("attr-stream");
    let processor = format!("{prefix}-attribution");
    let dir = std::env::temp_dir().join(unique("attr-stream-topology"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let topology_path = dir.join("topology.yaml");
    std::fs::File::create(&topology_path)
        .and_then(|mut f| f.write_all(topology_yaml(&prefix).as_bytes()))
        .expect("write topology");
    apply_topology(&registry.url, &topology_path, &[]);
    let topology = topology_path.to_str().expect("utf-8 path");
    let name = |kind: &str| format!("{prefix}.{kind}");
    let producer = connect_producer(
        &registry.url,
        &EventTopics {
            impressions: name("impressions"),
            clicks: name("clicks"),
            conversions: name("conversions"),
            campaigns: name("campaigns"),
            creatives: name("creatives"),
        },
    )
    .await;

    // Day 0: u-a sees c-a, clicks c-b and converts; u-b sees c-a and never converts. Day 3: u-c sees c-c and
    // converts, which moves event time past u-b's lookback.
    tokio::task::block_in_place(|| {
        produce(
            &producer,
            &[
                Event::View("u-a", "c-a", T0),
                Event::View("u-b", "c-a", T0 + 5 * MINUTE),
                Event::Click("u-a", "c-b", T0 + 10 * MINUTE),
                Event::Convert("u-a", "cv-a", T0 + 20 * MINUTE),
                Event::View("u-c", "c-c", T0 + 3 * DAY),
                Event::Convert("u-c", "cv-c", T0 + 3 * DAY + MINUTE),
            ],
        );
        run_attribution(&registry.url, topology, &processor);
    });

    let journeys: BTreeMap<String, Journey> =
        tokio::task::block_in_place(|| read::<Journey>(&name("journeys"), Journey::SCHEMA))
            .into_iter()
            .map(|(key, journey)| {
                assert_eq!(key, journey.user_id);
                (journey.journey_id.clone(), journey)
            })
            .collect();
    let summary: Vec<(&str, &str, bool, &str, i64)> = journeys
        .values()
        .map(|j| {
            (
                j.journey_id.as_str(),
                j.user_id.as_str(),
                j.converted,
                j.path.as_str(),
                j.ended_at,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("cv-a", "u-a", true, "c-a > c-b", T0 + 20 * MINUTE),
            ("cv-c", "u-c", true, "c-c", T0 + 3 * DAY + MINUTE),
            (
                "u-b|imp-u-b-1793491500000|imp-u-b-1793491500000",
                "u-b",
                false,
                "c-a",
                T0 + 5 * MINUTE + DAY
            ),
        ]
    );
    let converted = &journeys["cv-a"];
    assert_eq!(converted.conversion_id.as_deref(), Some("cv-a"));
    assert_eq!(converted.value_micros, 10_000_000);
    assert_eq!(
        converted
            .touches
            .iter()
            .map(|t| (t.event_id.as_str(), t.event_time))
            .collect::<Vec<_>>(),
        [
            ("imp-u-a-1793491200000", T0),
            ("clk-u-a-1793491800000", T0 + 10 * MINUTE)
        ]
    );

    // The fit over those three journeys. Markov: P(conversion) = 2/3 and each campaign's removal leaves 1/3, so
    // every removal effect is 1/2. Shapley: cv-a splits between c-a and c-b, cv-c is c-c's.
    let fit = tokio::task::block_in_place(|| {
        adstream(
            &registry.url,
            &[
                "attribution",
                "fit",
                "--topology",
                topology,
                "--application-id",
                &processor,
                "--until",
                "2026-11-10",
                "--period-days",
                "30",
            ],
        )
        .output()
        .expect("fit")
    });
    assert!(
        fit.status.success(),
        "{}",
        String::from_utf8_lossy(&fit.stderr)
    );
    let weights: BTreeMap<String, ModelWeight> =
        tokio::task::block_in_place(|| read::<ModelWeight>(&name("weights"), ModelWeight::SCHEMA))
            .into_iter()
            .collect();
    let fitted: Vec<(&str, f64, i64, i64)> = weights
        .iter()
        .map(|(key, w)| (key.as_str(), w.weight, w.journeys, w.conversions))
        .collect();
    let expected = [
        ("MARKOV|c-a", 0.5),
        ("MARKOV|c-b", 0.5),
        ("MARKOV|c-c", 0.5),
        ("SHAPLEY|c-a", 0.5),
        ("SHAPLEY|c-b", 0.5),
        ("SHAPLEY|c-c", 1.0),
    ];
    assert_eq!(fitted.len(), expected.len(), "{fitted:?}");
    for ((key, weight, journeys, conversions), (expected_key, expected_weight)) in
        fitted.iter().zip(expected)
    {
        assert_eq!(*key, expected_key);
        assert!((weight - expected_weight).abs() < 1e-12, "{key}: {weight}");
        assert_eq!((*journeys, *conversions), (3, 2));
    }
    assert!(weights
        .values()
        .all(|w| w.model != WeightModel::Unknown && w.period_end == 1_794_268_800_000));

    // Day 3: u-d sees c-a, clicks c-b, sees c-c and converts; the job runs again and reads the weights.
    tokio::task::block_in_place(|| {
        produce(
            &producer,
            &[
                Event::View("u-d", "c-a", T0 + 3 * DAY + 10 * MINUTE),
                Event::Click("u-d", "c-b", T0 + 3 * DAY + 20 * MINUTE),
                Event::View("u-d", "c-c", T0 + 3 * DAY + 30 * MINUTE),
                Event::Convert("u-d", "cv-d", T0 + 3 * DAY + 40 * MINUTE),
            ],
        );
        run_attribution(&registry.url, topology, &processor);
    });
    let attributed: BTreeMap<String, AttributedConversion> = tokio::task::block_in_place(|| {
        read::<AttributedConversion>(&name("attributed"), AttributedConversion::SCHEMA)
    })
    .into_iter()
    .collect();
    let shares = |conversion: &str, model: AttributionModel| {
        attributed[conversion]
            .credits
            .iter()
            .find(|m| m.model == model)
            .map(|m| m.shares.clone())
    };
    let third = 1.0 / 3.0;
    assert_close(
        &shares("cv-d", AttributionModel::Markov).expect("Markov shares"),
        &[third, third, third],
        "cv-d Markov",
    );
    assert_close(
        &shares("cv-d", AttributionModel::Shapley).expect("Shapley shares"),
        &[0.25, 0.25, 0.5],
        "cv-d Shapley",
    );
    for before_the_fit in ["cv-a", "cv-c"] {
        assert_eq!(shares(before_the_fit, AttributionModel::Markov), None);
        assert_eq!(shares(before_the_fit, AttributionModel::Shapley), None);
    }
    let credits: Vec<AttributionCredit> = tokio::task::block_in_place(|| {
        read::<AttributionCredit>(&name("credits"), AttributionCredit::SCHEMA)
    })
    .into_iter()
    .map(|(_, credit)| credit)
    .collect();
    for model in [AttributionModel::Markov, AttributionModel::Shapley] {
        let of_model: Vec<&AttributionCredit> =
            credits.iter().filter(|c| c.model == model).collect();
        assert!(of_model.iter().all(|c| c.conversion_id == "cv-d"));
        let total: f64 = of_model.iter().map(|c| c.conversions).sum();
        assert!((total - 1.0).abs() < 1e-12, "{model}: {total}");
        let revenue: f64 = of_model.iter().map(|c| c.revenue_micros).sum();
        assert!((revenue - 10_000_000.0).abs() < 1e-6, "{model}: {revenue}");
    }
}
