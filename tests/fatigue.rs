//! The fatigue detector against the generator's planted fatigue, end to end without Kafka: a seeded generator
//! run is replayed through the detector with its default settings, as the live job would see it (emit order,
//! hours closed behind a watermark), and scored against the manifest.
//!
//! Sized so that there are more than 20 fatiguing creatives, each with enough clicks for a decline to be
//! measurable (twelve campaigns share six million events over a week; half the creatives carry a fatigue curve).
//! Takes about a minute in a debug build, nearly all of it generating the events.

use adstream_processors::fatigue::detector::{FatigueConfig, FatigueStatus};
use adstream_processors::fatigue::evaluate::{
    CreativeTruthInput, EvaluationCriteria, FatigueEvent, Replay, TruthClass,
};
use adstream_producers::generator::{Generated, GeneratedEvent, Generator, GeneratorConfig};

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

#[test]
fn planted_fatigue_is_found_with_high_recall_and_precision() {
    let mut generator = Generator::new(GeneratorConfig {
        seed: 7,
        events: 6_000_000,
        campaigns: 12,
        days: 7,
        fatigued_creative_share: 0.5,
        journey_limit: 0,
        ..GeneratorConfig::default()
    });
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
        .map(|c| CreativeTruthInput {
            creative_id: c.creative_id,
            campaign_id: c.campaign_id,
            planted: c.fatigue_planted,
            onset_frequency: c.fatigue_onset_frequency,
            lambda: c.fatigue_lambda,
            onset_ms: c.fatigue_onset_ms,
            baseline_ctr: c.baseline_ctr,
            impressions: c.impressions,
            reach: c.reach,
        })
        .collect();
    let report = replay.finish(&truth);
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
    assert_eq!(report.creatives.len(), truth.len());
    assert_eq!(report.creatives_without_truth, 0);
    let recall = report.recall.expect("positives exist");
    let precision = report.precision.expect("detections exist");
    assert!(recall >= 0.95, "recall {recall}:\n{table}");
    assert!(precision >= 0.90, "precision {precision}:\n{table}");

    let median = report.median_delay_hours.expect("a median delay");
    assert!(median.is_finite() && median > 0.0, "{median}");
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
