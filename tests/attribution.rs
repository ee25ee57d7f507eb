//! The attribution job end to end on the real broker, killed with SIGKILL three times mid-run, checked against
//! the generator's journeys (ground truth kept by the generator, not by the job):
//! - every conversion of the input topic is attributed exactly once: one `attribution.conversions` record and one
//!   credit per (conversion, campaign, model) as a `read_committed` reader sees them;
//! - each model's shares sum to 1 and its credits to the conversion's value;
//! - the touchpoints are exactly the user's touches within the lookback before the conversion, the cause of the
//!   conversion among them, and last-touch and linear credits per campaign equal a recomputation from the journeys;
//! - campaign-metrics, run over the same topics afterwards, turns the LAST_TOUCH credits into conversions, revenue,
//!   CPA and ROAS equal to the batch recomputation of `common/recompute.rs`.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use adstream_processors::attribution::operator::UserTouches;
use adstream_processors::attribution::touch_codec::CompactTouches;
use adstream_processors::runtime::ValueCodec;
use adstream_producers::generator::GeneratorConfig;
use adstream_schemas::outputs::{
    self, AttributedConversion, AttributionCredit, AttributionModel, TouchKind,
};
use apache_avro::Schema;
use rand::{Rng, SeedableRng};

use common::jobs::{adstream, apply_private_topology, start_process, wait_for_end};
use common::recompute::{
    self, differences, produce_generator, read_changelog_records, read_committed_records, recompute,
};
use common::{start_registry, unique, verdict};

const LOOKBACK_MS: i64 = 30 * 86_400_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conversion_is_attributed_exactly_once_through_kills() {
    let registry = start_registry("attribution").await;
    let prefix = unique("attr");
    let processor = format!("{prefix}-job");
    let dir = std::env::temp_dir().join(unique("attr-topology"));
    let (topology_path, topics) = apply_private_topology(&registry.url, &dir, &prefix, &processor);
    let topology = topology_path.to_str().expect("utf-8 path");
    let generator = produce_generator(
        &registry.url,
        &topics.events,
        GeneratorConfig {
            seed: 23,
            events: 200_000,
            ..GeneratorConfig::default()
        },
    )
    .await;
    let manifest = generator.manifest();
    let journeys = manifest.journeys.expect("journeys are kept for small runs");

    let attribution = format!("{processor}-attribution");
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for kill in 0..3 {
        let mut job = start_process(
            "attribution",
            &registry.url,
            topology,
            &attribution,
            "127.0.0.1:0",
            false,
        );
        std::thread::sleep(Duration::from_millis(rng.gen_range(1500..5000)));
        if let Some(status) = job.try_wait().expect("wait") {
            panic!("the job exited on its own with {status} before kill {kill}");
        }
        job.kill().expect("SIGKILL");
        job.wait().expect("reap");
    }
    wait_for_end(
        start_process(
            "attribution",
            &registry.url,
            topology,
            &attribution,
            "127.0.0.1:0",
            true,
        ),
        "the final attribution run",
    );

    // Exactly one attribution record per conversion, each credit once, credits summing to each conversion.
    let verdicts = tokio::task::block_in_place(|| verdict::attribution(&topics));
    verdict::assert_exact(&verdicts);
    assert!(
        verdicts[0].compared > 100,
        "{} conversions",
        verdicts[0].compared
    );
    let attributed_schema = Schema::parse_str(AttributedConversion::SCHEMA).expect("schema");
    let attributed: BTreeMap<String, AttributedConversion> =
        tokio::task::block_in_place(|| read_committed_records(&topics.attributed))
            .into_iter()
            .map(|(key, value)| {
                let record: AttributedConversion =
                    recompute::decode(&attributed_schema, &value.expect("value"));
                assert_eq!(key.as_deref(), Some(record.conversion_id.as_bytes()));
                (record.conversion_id.clone(), record)
            })
            .collect();
    let credit_schema = Schema::parse_str(AttributionCredit::SCHEMA).expect("schema");
    let credits: Vec<AttributionCredit> =
        tokio::task::block_in_place(|| read_committed_records(&topics.credits))
            .into_iter()
            // Records without a value are watermark markers.
            .filter_map(|(key, value)| Some((key, value?)))
            .map(|(key, value)| {
                let credit: AttributionCredit = recompute::decode(&credit_schema, &value);
                assert_eq!(key.as_deref(), Some(credit.campaign_id.as_bytes()));
                credit
            })
            .collect();
    let models = 5;
    let mut with_touches = 0;
    for (id, record) in &attributed {
        assert_eq!(
            record.credits.len(),
            models,
            "{id}: one entry per rule model"
        );
        for shares in &record.credits {
            assert_eq!(shares.shares.len(), record.touchpoints.len());
            if record.touchpoints.is_empty() {
                continue;
            }
            let total: f64 = shares.shares.iter().sum();
            assert!(
                (total - 1.0).abs() < 1e-9,
                "{id} {:?}: shares sum to {total}",
                shares.model
            );
        }
        if !record.touchpoints.is_empty() {
            with_touches += 1;
        }
    }

    // Against the journeys: the touchpoints are the touches within the lookback; last touch and linear per campaign.
    let late: HashSet<&str> = manifest.late_ids.iter().map(String::as_str).collect();
    let mut checked = 0;
    for journey in &journeys {
        if journey
            .touches
            .iter()
            .any(|t| late.contains(t.event_id.as_str()))
        {
            // A touch that arrived hours late may miss conversions attributed before it: not predictable here.
            continue;
        }
        for conversion in &journey.conversions {
            let record = &attributed[&conversion.conversion_id];
            let mut expected: Vec<_> = journey
                .touches
                .iter()
                .filter(|t| {
                    t.time_ms <= conversion.time_ms && t.time_ms >= conversion.time_ms - LOOKBACK_MS
                })
                .collect();
            expected.sort_by(|a, b| (a.time_ms, &a.event_id).cmp(&(b.time_ms, &b.event_id)));
            let actual: Vec<&str> = record
                .touchpoints
                .iter()
                .map(|t| t.event_id.as_str())
                .collect();
            let wanted: Vec<&str> = expected.iter().map(|t| t.event_id.as_str()).collect();
            assert_eq!(
                actual, wanted,
                "touchpoints of {}",
                conversion.conversion_id
            );
            for (touch, point) in expected.iter().zip(&record.touchpoints) {
                let kind = if touch.kind == "click" {
                    TouchKind::Click
                } else {
                    TouchKind::View
                };
                assert_eq!(point.kind, kind);
                assert_eq!(point.campaign_id, touch.campaign_id);
            }
            assert!(
                wanted.contains(&conversion.caused_by.as_str()),
                "{}: its cause {} is among its touchpoints",
                conversion.conversion_id,
                conversion.caused_by
            );
            // Independent per-campaign credits: last touch all to the latest touch's campaign; linear by count.
            let n = expected.len() as f64;
            let mut linear: BTreeMap<&str, f64> = BTreeMap::new();
            for touch in &expected {
                *linear.entry(touch.campaign_id.as_str()).or_default() += 1.0 / n;
            }
            let last_campaign = expected.last().map(|t| t.campaign_id.as_str());
            for credit in credits
                .iter()
                .filter(|c| c.conversion_id == conversion.conversion_id)
            {
                match credit.model {
                    AttributionModel::Linear => {
                        let want = linear
                            .get(credit.campaign_id.as_str())
                            .copied()
                            .unwrap_or(0.0);
                        assert!(
                            (credit.conversions - want).abs() < 1e-9,
                            "linear {}",
                            credit.credit_id
                        );
                    }
                    AttributionModel::LastTouch => {
                        assert_eq!(Some(credit.campaign_id.as_str()), last_campaign);
                        assert!((credit.conversions - 1.0).abs() < 1e-12);
                    }
                    _ => {}
                }
            }
            let linear_campaigns: BTreeSet<&str> = credits
                .iter()
                .filter(|c| {
                    c.conversion_id == conversion.conversion_id
                        && c.model == AttributionModel::Linear
                })
                .map(|c| c.campaign_id.as_str())
                .collect();
            assert_eq!(linear_campaigns, linear.keys().copied().collect());
            checked += 1;
        }
    }
    assert!(
        checked > 100,
        "checked {checked} conversions against their journeys"
    );

    assert!(
        with_touches * 10 > attributed.len() * 9,
        "most conversions have touches: {with_touches} of {}",
        attributed.len()
    );

    // campaign-metrics turns the LAST_TOUCH credits into conversions, revenue, CPA and ROAS.
    wait_for_end(
        start_process(
            "campaign-metrics",
            &registry.url,
            topology,
            &processor,
            "127.0.0.1:0",
            true,
        ),
        "campaign-metrics",
    );
    let expected = tokio::task::block_in_place(|| recompute(&topics));
    let actual = tokio::task::block_in_place(|| recompute::outputs(&topics));
    let problems = differences(&expected, &actual);
    assert!(
        problems.is_empty(),
        "{} difference(s): {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    let daily: Vec<_> = actual
        .values()
        .filter(|row| {
            row.granularity == outputs::Granularity::Daily
                && row.conversions > 0.0
                && row.spend_micros > 0
        })
        .collect();
    assert!(!daily.is_empty(), "daily rows with credited conversions");
    assert!(daily
        .iter()
        .all(|row| row.cpa_micros.is_some() && row.roas.is_some()));
    let _ = std::fs::remove_dir_all(dir);
    eprintln!(
        "{} conversions attributed exactly once, {checked} checked against journeys, {} credits",
        attributed.len(),
        credits.len()
    );
}

/// With a lookback of 12 hours and a retention of 1 hour over a week of traffic, touches leave the store as the
/// watermark passes them: the changelog carries tombstones for users without touches left, and what it holds at the
/// end (latest value per key) has no touch older than the final horizon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touches_older_than_the_lookback_leave_the_store_and_its_changelog() {
    let registry = start_registry("attribution-expiry").await;
    let prefix = unique("attrx");
    let processor = format!("{prefix}-job");
    let dir = std::env::temp_dir().join(unique("attrx-topology"));
    let (topology_path, topics) = apply_private_topology(&registry.url, &dir, &prefix, &processor);
    let generator = produce_generator(
        &registry.url,
        &topics.events,
        GeneratorConfig {
            seed: 29,
            events: 40_000,
            ..GeneratorConfig::default()
        },
    )
    .await;
    let manifest = generator.manifest();
    let last_event_ms = manifest.last_event_time_ms.expect("events were generated");
    let touches = manifest.counts.impressions + manifest.counts.clicks;
    let attribution = format!("{processor}-attribution");
    let run = adstream(
        &registry.url,
        &[
            "process",
            "attribution",
            "--topology",
            topology_path.to_str().expect("utf-8 path"),
            "--application-id",
            &attribution,
            "--lookback-days",
            "0.5",
            "--retention-secs",
            "3600",
            "--commit-interval-ms",
            "200",
            "--metrics-listen",
            "127.0.0.1:0",
            "--until-end",
        ],
    )
    .output()
    .expect("run the job");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let changelog = format!("{attribution}-touches-changelog");
    let mut latest: BTreeMap<Vec<u8>, UserTouches> = BTreeMap::new();
    let mut tombstones = 0;
    for (key, value) in tokio::task::block_in_place(|| read_changelog_records(&changelog)) {
        let key = key.expect("changelog keys are user ids");
        match value {
            Some(value) => {
                latest.insert(
                    key,
                    CompactTouches::decode(&value).expect("a changelog value of the touches store"),
                );
            }
            None => {
                tombstones += 1;
                latest.remove(&key);
            }
        }
    }
    assert!(
        tombstones > 0,
        "users without touches leave with a tombstone"
    );
    let remaining: usize = latest.values().map(|user| user.touches.len()).sum();
    // About 13 of 168 hours of touches can remain.
    assert!(
        remaining * 5 < touches as usize,
        "{remaining} of {touches} touches remain"
    );
    // The final watermark trails the last event by at most the generator's disorder; allow an hour more.
    let horizon = last_event_ms - 12 * 3_600_000 - 3_600_000 - 3_600_000;
    for (key, user) in &latest {
        for touch in &user.touches {
            let t = touch.t;
            assert!(
                t >= horizon,
                "{}: touch at {t} is older than the horizon {horizon}",
                String::from_utf8_lossy(key)
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
