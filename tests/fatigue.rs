//! Creative fatigue against the generator's planted fatigue curves.
//!
//! - Offline, without Kafka: a seeded generator run is replayed through the detector with its default settings,
//!   as the live job would see it (emit order, hours closed behind a watermark), and scored against the manifest.
//!   Sized so that there are more than 20 fatiguing creatives, each with enough clicks for a decline to be
//!   measurable (twelve campaigns share six million events over a week; half the creatives carry a fatigue
//!   curve). Takes about a minute in a debug build, nearly all of it generating the events.
//! - Live, on the real broker: the `creative-fatigue` job over a smaller week of traffic reports `FATIGUED` for
//!   the planted positives and hardly anything else, agrees with the offline replay of the same events (same
//!   detector), keys its records by creative and emits a bounded number of them, never one per event.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use adstream_processors::fatigue::detector::{FatigueConfig, FatigueStatus};
use adstream_processors::fatigue::evaluate::{
    CreativeTruthInput, EvaluationCriteria, EvaluationReport, FatigueEvent, Replay, TruthClass,
};
use adstream_producers::generator::{
    CreativeTruth, Generated, GeneratedEvent, Generator, GeneratorConfig,
};
use adstream_schemas::outputs::{CreativeAlert, CreativeFatigue, FatigueStatus as OutputStatus};
use apache_avro::Schema;

use common::jobs::{adstream, apply_private_topology, start_process, wait_for_end};
use common::recompute::{self, produce_generator, read_committed_records};
use common::{start_registry, unique};

fn fatigue_event(generated: Generated) -> Option<FatigueEvent> {
    match generated.event {
        GeneratedEvent::Impression(i) => Some(FatigueEvent::Impression {
            creative_id: i.creative_id,
            campaign_id: i.campaign_id,
            time_ms: i.event_time,
            user_id: i.user_id,
            cost_micros: i.cost_micros,
        }),
        GeneratedEvent::Click(c) => Some(FatigueEvent::Click {
            creative_id: c.creative_id,
            time_ms: c.event_time,
            cost_micros: c.cost_micros,
        }),
        _ => None,
    }
}

fn truth_input(c: CreativeTruth) -> CreativeTruthInput {
    CreativeTruthInput {
        creative_id: c.creative_id,
        campaign_id: c.campaign_id,
        planted: c.fatigue_planted,
        onset_frequency: c.fatigue_onset_frequency,
        lambda: c.fatigue_lambda,
        onset_ms: c.fatigue_onset_ms,
        baseline_ctr: c.baseline_ctr,
        impressions: c.impressions,
        reach: c.reach,
    }
}

/// Replays a generator run through the detector, as `adstream fatigue evaluate` does.
fn replay(config: GeneratorConfig) -> EvaluationReport {
    let mut generator = Generator::new(config);
    let mut replay = Replay::new(&FatigueConfig::default(), &EvaluationCriteria::default());
    for generated in generator.by_ref() {
        if let Some(event) = fatigue_event(generated) {
            replay.push(event);
        }
    }
    let truth: Vec<CreativeTruthInput> = generator
        .manifest()
        .creatives
        .into_iter()
        .map(truth_input)
        .collect();
    replay.finish(&truth)
}

#[test]
fn planted_fatigue_is_found_with_high_recall_and_precision() {
    let report = replay(GeneratorConfig {
        seed: 7,
        events: 6_000_000,
        campaigns: 12,
        days: 7,
        fatigued_creative_share: 0.5,
        journey_limit: 0,
        ..GeneratorConfig::default()
    });
    let truth_count = report.creatives.len();
    let table = report.to_string();
    println!("{table}");

    let positives = report.true_positives + report.false_negatives;
    let negatives = report.false_positives + report.true_negatives;
    assert!(
        positives >= 20,
        "too few positives to judge recall:\n{table}"
    );
    assert!(
        negatives >= 15,
        "too few negatives to judge precision:\n{table}"
    );
    assert!(truth_count > 40, "{truth_count} creatives");
    assert_eq!(report.creatives_without_truth, 0);
    let recall = report.recall.expect("positives exist");
    let precision = report.precision.expect("detections exist");
    assert!(recall >= 0.95, "recall {recall}:\n{table}");
    assert!(precision >= 0.90, "precision {precision}:\n{table}");

    let median = report.median_delay_hours.expect("a median delay");
    assert!(median.is_finite() && median > 0.0, "{median}");
    // Flagged earlier than before the decay test (a median 46 % decline on this seed, now 38 %), and no earlier
    // than the oracle that knows each planted curve.
    let decline = report
        .median_decline_at_detection
        .expect("a median decline");
    assert!(
        decline < 0.42,
        "median decline at detection {decline}:\n{table}"
    );
    let oracle = report.oracle_median_decline.expect("an oracle median");
    assert!(
        oracle > 0.0 && oracle <= decline,
        "oracle {oracle}:\n{table}"
    );
    assert!(table.contains("median delay after onset"), "{table}");
    for row in &report.creatives {
        // A detection is a fatigued status, and every true positive has a delay after a real onset.
        if row.truth == TruthClass::Positive && row.detected_at_ms.is_some() {
            assert!(row.delay_hours.is_some(), "{row:?}");
        }
        if row.detected_at_ms.is_none() {
            assert_ne!(row.final_status, FatigueStatus::Fatigued, "{row:?}");
        }
        assert!(row.final_score.is_finite() && (0.0..=1.0).contains(&row.final_score));
    }
    // The JSON form has no NaN or infinity (serde_json would have written null for them).
    let json = serde_json::to_value(&report).expect("serializes");
    assert!(json["recall"].is_f64() && json["precision"].is_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_job_finds_planted_fatigue_with_bounded_output() {
    let registry = start_registry("fatigue").await;
    let prefix = unique("fatigue");
    let processor = format!("{prefix}-job");
    let dir = std::env::temp_dir().join(unique("fatigue-topology"));
    let (topology_path, topics) = apply_private_topology(&registry.url, &dir, &prefix, &processor);
    // Few campaigns, a million events: each creative gets tens of thousands of impressions in the week.
    let config = GeneratorConfig {
        seed: 7,
        events: 1_000_000,
        campaigns: 5,
        journey_limit: 0,
        ..GeneratorConfig::default()
    };
    produce_generator(&registry.url, &topics.events, config.clone()).await;

    wait_for_end(
        start_process(
            "creative-fatigue",
            &registry.url,
            topology_path.to_str().expect("utf-8 path"),
            &format!("{processor}-fatigue"),
            "127.0.0.1:0",
            true,
        ),
        "the creative-fatigue job",
    );

    let schema = Schema::parse_str(CreativeFatigue::SCHEMA).expect("schema");
    let mut records: BTreeMap<String, usize> = BTreeMap::new();
    let mut live: BTreeSet<String> = BTreeSet::new();
    // Per creative, (time, previous, new) of every status change the assessments show.
    let mut changes: BTreeMap<String, Vec<(i64, Option<OutputStatus>, OutputStatus)>> =
        BTreeMap::new();
    for (key, value) in tokio::task::block_in_place(|| read_committed_records(&topics.fatigue)) {
        let record: CreativeFatigue = recompute::decode(&schema, &value.expect("value"));
        assert_eq!(key.as_deref(), Some(record.creative_id.as_bytes()));
        assert!((0.0..=1.0).contains(&record.score));
        *records.entry(record.creative_id.clone()).or_default() += 1;
        let first_healthy =
            record.previous_status.is_none() && record.status == OutputStatus::Healthy;
        if record.previous_status != Some(record.status) && !first_healthy {
            changes
                .entry(record.creative_id.clone())
                .or_default()
                .push((record.assessed_until, record.previous_status, record.status));
        }
        if record.status == OutputStatus::Fatigued {
            live.insert(record.creative_id);
        }
    }
    // alerts.creative: one record per status change, at the moment it happened, nothing else.
    let alert_schema = Schema::parse_str(CreativeAlert::SCHEMA).expect("schema");
    let mut transitions: BTreeMap<String, Vec<(i64, Option<OutputStatus>, OutputStatus)>> =
        BTreeMap::new();
    for (key, value) in
        tokio::task::block_in_place(|| read_committed_records(&topics.creative_alerts))
    {
        let alert: CreativeAlert = recompute::decode(&alert_schema, &value.expect("value"));
        assert_eq!(key.as_deref(), Some(alert.creative_id.as_bytes()));
        transitions
            .entry(alert.creative_id.clone())
            .or_default()
            .push((alert.event_time, alert.previous_status, alert.status));
    }
    assert_eq!(
        transitions, changes,
        "one transition record per status change"
    );
    for creative in &live {
        let to_fatigued = transitions[creative]
            .iter()
            .filter(|(_, _, status)| *status == OutputStatus::Fatigued)
            .count();
        assert!(
            to_fatigued >= 1,
            "{creative} turned fatigued without a transition record"
        );
    }
    // The history is a SQL table: one row per transition.
    let to_fatigued: usize = transitions
        .values()
        .flatten()
        .filter(|(_, _, status)| *status == OutputStatus::Fatigued)
        .count();
    let query = format!(
        "SELECT count(*) FROM \"{}\" WHERE status = 'FATIGUED'",
        topics.creative_alerts
    );
    let output = tokio::task::block_in_place(|| {
        adstream(
            &registry.url,
            &[
                "sql",
                "--topology",
                topology_path.to_str().expect("utf-8 path"),
                "--format",
                "csv",
                &query,
            ],
        )
        .output()
        .expect("adstream sql")
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.lines().nth(1).map(str::trim),
        Some(to_fatigued.to_string().as_str()),
        "{stdout}"
    );

    // The same events replayed offline: the ground truth, and what the detector finds without Kafka.
    let report = tokio::task::block_in_place(|| replay(config));
    assert_eq!(
        records.len(),
        report.creatives.len(),
        "one series per creative"
    );
    let offline: BTreeSet<String> = report
        .creatives
        .iter()
        .filter(|row| row.detected_at_ms.is_some())
        .map(|row| row.creative_id.clone())
        .collect();
    let (mut tp, mut fp, mut positives) = (0, 0, 0);
    for row in &report.creatives {
        let found = live.contains(&row.creative_id);
        match row.truth {
            TruthClass::Positive => {
                positives += 1;
                tp += usize::from(found);
            }
            TruthClass::Negative => fp += usize::from(found),
            TruthClass::Borderline => {}
        }
    }
    assert!(positives >= 5, "{positives} planted positives:\n{report}");
    let recall = tp as f64 / positives as f64;
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    assert!(recall >= 0.85, "live recall {recall:.2}:\n{report}");
    assert!(
        precision >= 0.85,
        "live precision {precision:.2}:\n{report}"
    );
    // Hours close at slightly different moments live (per task watermark) and offline: allow one creative near
    // the threshold to differ.
    let differing: Vec<&String> = live.symmetric_difference(&offline).collect();
    assert!(
        differing.len() <= 1,
        "live and offline detections differ: {differing:?}\n{report}"
    );

    // A week of event time at one report per 6 hours, plus status changes: a few dozen records per creative.
    let most = records.values().copied().max().unwrap_or(0);
    assert!(most <= 28 + 40, "a creative got {most} records");
    let _ = std::fs::remove_dir_all(dir);
    eprintln!(
        "live recall {recall:.2}, precision {precision:.2}, at most {most} records per creative"
    );
}
