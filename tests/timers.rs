//! Runtime timers on the real broker: campaign-metrics' pacing timer is committed to its changelog, survives a
//! SIGKILL of the process, and after the restart raises `PACING_UNDER` for a campaign that has no more events of
//! its own while other traffic moves its task's event time on. (How soon, in event time, is checked by the
//! simulation test `a_campaign_that_stops_delivering_raises_pacing_under_within_the_check_interval`: here the
//! restarted job reads the afternoon in one go.)

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use adstream_kafka::partitioner::kafka_partition;
use adstream_producers::builders::{ImpressionBuilder, Serving};
use adstream_producers::producer::EventProducer;
use adstream_schemas::events::{Campaign, CampaignStatus, CampaignTargets, Objective, Platform};
use adstream_schemas::outputs::{self, AlertKind, AlertSeverity, CampaignAlert};
use apache_avro::Schema;

use common::jobs::{adstream, apply_private_topology};
use common::recompute::{connect_producer, decode, read_committed_records};
use common::{free_port, start_registry, unique};

/// 2026-11-01T00:00:00Z.
const DAY: i64 = 1_793_491_200_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// Partitions of the private topology's topics.
const PARTITIONS: i32 = 4;

fn impression(producer: &EventProducer, campaign: &str, id: &str, time: i64, cost: i64) {
    let serving = Serving {
        platform: Platform::Meta,
        account_id: "act-1".into(),
        campaign_id: campaign.into(),
        ad_group_id: "g".into(),
        creative_id: format!("cr-{campaign}"),
    };
    let impression = ImpressionBuilder::new(id, time, serving)
        .cost(cost, "USD")
        .build()
        .expect("valid");
    let encoders = producer.schemas.encoders().expect("encoders");
    producer
        .send(&encoders.impressions, &impression, id, &mut Vec::new())
        .expect("enqueued");
}

/// Busy traffic of `campaign` every five minutes over `[from, to)`.
fn busy(producer: &EventProducer, campaign: &str, from: i64, to: i64) {
    let mut time = from;
    while time < to {
        impression(
            producer,
            campaign,
            &format!("{campaign}-{time}"),
            time,
            1_000,
        );
        time += 5 * MINUTE;
    }
    producer.flush(Duration::from_secs(30)).expect("delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pacing_timer_survives_sigkill_and_alerts_on_a_silent_campaign() {
    let registry = start_registry("timers").await;
    let prefix = unique("timers");
    let processor = format!("{prefix}-job");
    let dir = std::env::temp_dir().join(unique("timers-topology"));
    let (topology_path, topics) = apply_private_topology(&registry.url, &dir, &prefix, &processor);
    let producer = connect_producer(&registry.url, &topics.events).await;

    // c-p: a daily budget of 144 units, one unit every ten minutes (on pace) until 11:55, then nothing. Another
    // campaign of the same task keeps delivering.
    let silent = "c-p";
    let task = kafka_partition(silent.as_bytes(), PARTITIONS);
    let other = (0..)
        .map(|i| format!("c-busy-{i}"))
        .find(|c| kafka_partition(c.as_bytes(), PARTITIONS) == task)
        .expect("a key of the same partition");
    let campaign = Campaign {
        campaign_id: silent.into(),
        platform: Platform::Meta,
        account_id: "act-1".into(),
        name: silent.into(),
        objective: Objective::Traffic,
        status: CampaignStatus::Active,
        currency: "USD".into(),
        daily_budget_micros: Some(144_000_000),
        lifetime_budget_micros: None,
        start_time: DAY - 24 * HOUR,
        end_time: None,
        time_zone: "UTC".into(),
        targets: CampaignTargets::default(),
        updated_at: DAY - 24 * HOUR,
    };
    let encoders = producer.schemas.encoders().expect("encoders");
    producer
        .send(&encoders.campaigns, &campaign, silent, &mut Vec::new())
        .expect("enqueued");
    for i in 0..72 {
        let time = DAY + 5 * MINUTE + i * 10 * MINUTE;
        impression(&producer, silent, &format!("p-{i}"), time, 1_000_000);
    }
    // Up to 13:00, where c-p is 8 % behind its pace: no alert yet.
    busy(&producer, &other, DAY + MINUTE, DAY + 13 * HOUR);

    let start = || -> Child {
        adstream(
            &registry.url,
            &[
                "process",
                "campaign-metrics",
                "--topology",
                topology_path.to_str().expect("utf-8"),
                "--application-id",
                &processor,
                "--instance-id",
                "cm-0",
                // A restarted static member gets its partitions back at once, not after the session timeout.
                "--static-membership",
                "--session-timeout-ms",
                "60000",
                "--commit-interval-ms",
                "200",
                "--idle-timeout-secs",
                "1",
                "--pacing-check-minutes",
                "15",
                "--metrics-listen",
                &format!("127.0.0.1:{}", free_port()),
            ],
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the job")
    };

    // The timer is committed with the job's state before the kill.
    let changelog = format!("{processor}-timers-changelog");
    let timer_key = format!("s/pacing|{silent}").into_bytes();
    let mut first = start();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut committed_due = None;
    while Instant::now() < deadline && committed_due.is_none_or(|due| due < DAY + 13 * HOUR) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        committed_due = tokio::task::block_in_place(|| read_committed_records(&changelog))
            .into_iter()
            .filter(|(key, _)| key.as_deref() == Some(timer_key.as_slice()))
            .filter_map(|(_, value)| value)
            .filter_map(|value| String::from_utf8(value).ok()?.parse::<i64>().ok())
            .next_back();
    }
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    let due = committed_due.expect("the pacing timer of c-p reached its changelog");
    assert!(
        due >= DAY + 13 * HOUR,
        "timer due at {due}: the job never saw 13:00"
    );
    let alerts_schema = Schema::parse_str(outputs::CAMPAIGN_ALERT_AVSC).expect("schema");
    let alerts_of_silent = || -> Vec<CampaignAlert> {
        read_committed_records(&topics.alerts)
            .into_iter()
            .filter(|(key, _)| key.as_deref() == Some(silent.as_bytes()))
            .filter_map(|(_, value)| value)
            .map(|value| decode(&alerts_schema, &value))
            .collect()
    };
    let before = tokio::task::block_in_place(alerts_of_silent);
    assert!(before.is_empty(), "on pace until 13:00: {before:?}");

    // The afternoon brings events of the other campaign only; the restarted job restores the timer.
    busy(&producer, &other, DAY + 13 * HOUR, DAY + 18 * HOUR);
    let mut second = start();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut under = Vec::new();
    while Instant::now() < deadline && under.is_empty() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        under = tokio::task::block_in_place(alerts_of_silent)
            .into_iter()
            .filter(|a| a.kind == AlertKind::PacingUnder && a.severity != AlertSeverity::Resolved)
            .collect();
    }
    let _ = second.kill();
    let _ = second.wait();
    let _ = std::fs::remove_dir_all(dir);
    let alert = under
        .first()
        .expect("PACING_UNDER for the campaign without events after the restart");
    assert!(
        alert.correlation_id.starts_with("pacing-check/c-p/"),
        "raised by its timer: {alert:?}"
    );
    assert!(alert.event_time > DAY + 13 * HOUR, "{alert:?}");
}
