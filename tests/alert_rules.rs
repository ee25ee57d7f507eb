//! Alert rules on the real broker, over generator data with a planted CPA breach: one campaign whose target CPA
//! is three times its expected CPA pays six times its prices for one local day (`GeneratorConfig::cpa_breach`), so
//! that day's CPA is about twice the target. The events are produced a local day at a time, and after each day the
//! attribution job credits the conversions and two campaign-metrics processors read the same topics (each run
//! `--until-end`, restarting from its committed state): one with the default tiers, where `CPA_ABOVE_TARGET` fires
//! `HIGH` (tier 2, a miss of 25 % or more) on the breach day and resolves the next day, and one with
//! `--cpa-tiers 0%:low,50%:critical`, where the same breach is `CRITICAL`.
//!
//! A day at a time, because alerts judge the campaign's current local day at the job's watermark: a job that
//! reads three days of backlog in one go judges only the last day (the breach is over by the time it looks),
//! as a live job catching up after an outage would.

mod common;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use adstream_producers::generator::{
    CpaBreach, Generated, GeneratedEvent, Generator, GeneratorConfig,
};
use adstream_producers::producer::EventProducer;
use adstream_schemas::outputs::{self, AlertKind, AlertSeverity, CampaignAlert};
use apache_avro::Schema;
use chrono::{Days, NaiveDate, TimeZone};
use chrono_tz::Tz;

use common::jobs::{apply_topology, process_command, topology_yaml};
use common::recompute::{connect_producer, decode, read_committed_records, Topics};
use common::{free_port, start_registry, unique};

const HOUR: i64 = 3_600_000;
/// The generator's default start, 2026-11-01T00:00Z.
const START: i64 = 1_793_491_200_000;

/// The event time of a generated ad event or conversion; None for reference records.
fn event_time(generated: &Generated) -> Option<i64> {
    match &generated.event {
        GeneratedEvent::Impression(e) => Some(e.event_time),
        GeneratedEvent::Click(e) => Some(e.event_time),
        GeneratedEvent::Conversion(e) => Some(e.event_time),
        GeneratedEvent::Campaign(_) | GeneratedEvent::Creative(_) => None,
    }
}

/// Produces `records` and waits for their delivery.
fn produce(producer: &EventProducer, records: &[Generated]) {
    let encoders = producer.schemas.encoders().expect("encoders");
    let mut buffer = Vec::new();
    for generated in records {
        let correlation = generated.correlation_id.as_str();
        match &generated.event {
            GeneratedEvent::Impression(e) => {
                producer.send(&encoders.impressions, e, correlation, &mut buffer)
            }
            GeneratedEvent::Click(e) => {
                producer.send(&encoders.clicks, e, correlation, &mut buffer)
            }
            GeneratedEvent::Conversion(e) => {
                producer.send(&encoders.conversions, e, correlation, &mut buffer)
            }
            GeneratedEvent::Campaign(e) => {
                producer.send(&encoders.campaigns, e, correlation, &mut buffer)
            }
            GeneratedEvent::Creative(e) => {
                producer.send(&encoders.creatives, e, correlation, &mut buffer)
            }
        }
        .expect("enqueued");
    }
    producer.flush(Duration::from_secs(60)).expect("delivered");
}

/// Starts `adstream process <job> --until-end` with `extra` flags (see [`finished`]).
fn run_to_end(registry: &str, topology: &str, job: &str, processor: &str, extra: &[&str]) -> Child {
    let metrics = format!("127.0.0.1:{}", free_port());
    process_command(job, registry, topology, processor, &metrics, true, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the job")
}

/// Waits for `child` to exit by itself; panics with its stderr if it fails or takes over five minutes.
fn finished(mut child: Child, what: &str) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                std::io::Read::read_to_string(&mut pipe, &mut stderr).ok();
            }
            assert!(status.success(), "{what} failed: {stderr}");
            return;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("{what} did not reach the end of its input within 300 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The CPA alerts of `campaign` on `topic`, in offset order (one campaign, so one partition).
fn cpa_alerts(topic: &str, campaign: &str) -> Vec<CampaignAlert> {
    let schema = Schema::parse_str(outputs::CAMPAIGN_ALERT_AVSC).expect("schema");
    read_committed_records(topic)
        .into_iter()
        .filter(|(key, _)| key.as_deref() == Some(campaign.as_bytes()))
        .filter_map(|(_, value)| value)
        .map(|value| decode::<CampaignAlert>(&schema, &value))
        .filter(|alert| alert.kind == AlertKind::CpaAboveTarget)
        .collect()
}

/// The day the alerts at `severity` fired on: all of them on one local day, the breach's (day 1 of the period,
/// whose start is 15 to 32 hours after the period's in the generator's time zones), never day 0 or day 2.
fn breach_day(alerts: &[CampaignAlert], severity: AlertSeverity) -> i64 {
    let days: Vec<i64> = alerts
        .iter()
        .filter(|a| a.severity == severity)
        .map(|a| a.day_start)
        .collect();
    let day = *days
        .first()
        .unwrap_or_else(|| panic!("no CPA alert at {severity:?}: {alerts:#?}"));
    assert!(days.iter().all(|d| *d == day), "{alerts:#?}");
    assert!(
        (START + 12 * HOUR..START + 36 * HOUR).contains(&day),
        "fired on the day starting {day}, not the breach day: {alerts:#?}"
    );
    day
}

/// Asserts that the alert resolved after `day`, with its rule named, and stayed resolved.
fn resolves_after(alerts: &[CampaignAlert], day: i64) {
    let resolution = alerts
        .iter()
        .find(|a| a.severity == AlertSeverity::Resolved && a.day_start > day)
        .unwrap_or_else(|| panic!("no resolution after the breach day: {alerts:#?}"));
    assert_eq!(resolution.rule, "cpa_above_target:resolved");
    assert_eq!(resolution.rule_level, 0.0);
    assert!(resolution.previous_severity.is_some(), "{resolution:?}");
    assert!(
        resolution.observed <= resolution.threshold,
        "{resolution:?}"
    );
    let last = alerts.last().expect("alerts");
    assert_eq!(last.severity, AlertSeverity::Resolved, "{alerts:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_cpa_breach_fires_and_resolves_and_configured_tiers_change_its_severity() {
    let registry = start_registry("alert-rules").await;
    let prefix = unique("rules");
    let processor = format!("{prefix}-job");
    let tiered = format!("{prefix}-tiers");
    // The shared test topology plus a second campaign-metrics processor with its own outputs.
    let yaml = topology_yaml(&prefix, &processor).replace(
        "processors:\n",
        &format!(
            "  - {{ name: {prefix}.tiers_hourly, key: campaign_window, value_schema: io.adstream.metrics.CampaignMetrics, cleanup_policy: compact }}\n\
             \x20 - {{ name: {prefix}.tiers_daily, key: campaign_window, value_schema: io.adstream.metrics.CampaignMetrics, cleanup_policy: compact }}\n\
             \x20 - {{ name: {prefix}.tiers_alerts, key: campaign_id, value_schema: io.adstream.alerts.CampaignAlert }}\n\
             processors:\n\
             \x20 - name: {tiered}\n\
             \x20   job: campaign-metrics\n\
             \x20   inputs: [{prefix}.impressions, {prefix}.clicks, {prefix}.campaigns, {prefix}.credits]\n\
             \x20   outputs: [{prefix}.tiers_hourly, {prefix}.tiers_daily, {prefix}.tiers_alerts]\n\
             \x20   key: campaign_id\n"
        ),
    );
    let dir = std::env::temp_dir().join(unique("rules-topology"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("topology.yaml");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(yaml.as_bytes()))
        .expect("write topology");
    apply_topology(&registry.url, &path, &[]);
    let topology = path.to_str().expect("utf-8 path");
    let topics = Topics::under(&prefix);

    let generated: Vec<Generated> = Generator::new(GeneratorConfig {
        seed: 47,
        events: 60_000,
        campaigns: 1,
        days: 3,
        fatigued_creative_share: 0.0,
        cpa_breach: Some(CpaBreach {
            campaign: 0,
            day: 1,
            cost_factor: 6.0,
        }),
        ..GeneratorConfig::default()
    })
    .collect();
    let Some(GeneratedEvent::Campaign(campaign)) = generated.first().map(|g| &g.event) else {
        panic!("the generator starts with the campaign")
    };
    let campaign = campaign.clone();
    let target = campaign
        .targets
        .target_cpa_micros
        .expect("the breach sets a target CPA") as f64;
    // The ends of the campaign's local days 0 and 1, then the rest.
    let zone: Tz = campaign.time_zone.parse().expect("an IANA zone");
    let first_day = NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
    let local_midnight = |days: u64| {
        let date = first_day + Days::new(days);
        zone.from_local_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight"))
            .earliest()
            .expect("midnight exists")
            .timestamp_millis()
    };
    let cuts = [local_midnight(1), local_midnight(2), i64::MAX];

    let producer = connect_producer(&registry.url, &topics.events).await;
    let attribution = format!("{processor}-attribution");
    let mut pending = generated;
    for cut in cuts {
        // Late and out-of-order events come after their time in the stream; they are sent with their day.
        let (today, later): (Vec<Generated>, Vec<Generated>) = pending
            .into_iter()
            .partition(|g| event_time(g).is_none_or(|time| time < cut));
        pending = later;
        tokio::task::block_in_place(|| {
            produce(&producer, &today);
            finished(
                run_to_end(&registry.url, topology, "attribution", &attribution, &[]),
                "attribution",
            );
            let default_tiers =
                run_to_end(&registry.url, topology, "campaign-metrics", &processor, &[]);
            let configured = run_to_end(
                &registry.url,
                topology,
                "campaign-metrics",
                &tiered,
                &["--cpa-tiers", "0%:low,50%:critical"],
            );
            finished(default_tiers, "campaign-metrics");
            finished(configured, "campaign-metrics with configured tiers");
        });
    }
    assert!(pending.is_empty());

    // Default tiers: HIGH (tier 2 from a 25 % miss) on the breach day, then resolved the next day.
    let alerts = tokio::task::block_in_place(|| cpa_alerts(&topics.alerts, &campaign.campaign_id));
    let day = breach_day(&alerts, AlertSeverity::High);
    for alert in alerts.iter().filter(|a| a.severity == AlertSeverity::High) {
        assert_eq!(alert.rule, "cpa_above_target:tier2", "{alert:?}");
        assert_eq!(alert.rule_level, 0.25);
        assert_eq!(alert.threshold, target);
        assert!(alert.observed >= 1.25 * target, "{alert:?}");
    }
    assert!(
        !alerts.iter().any(|a| a.severity == AlertSeverity::Critical),
        "the default CPA tiers stop at HIGH: {alerts:#?}"
    );
    resolves_after(&alerts, day);

    // `--cpa-tiers 0%:low,50%:critical`: the same breach is CRITICAL (tier 2 from a 50 % miss).
    let tiered_topic = format!("{prefix}.tiers_alerts");
    let configured =
        tokio::task::block_in_place(|| cpa_alerts(&tiered_topic, &campaign.campaign_id));
    let configured_day = breach_day(&configured, AlertSeverity::Critical);
    assert_eq!(configured_day, day);
    for alert in configured
        .iter()
        .filter(|a| a.severity == AlertSeverity::Critical)
    {
        assert_eq!(alert.rule, "cpa_above_target:tier2", "{alert:?}");
        assert_eq!(alert.rule_level, 0.5);
        assert!(alert.observed >= 1.5 * target, "{alert:?}");
    }
    assert!(
        configured.iter().all(|a| matches!(
            a.severity,
            AlertSeverity::Low | AlertSeverity::Critical | AlertSeverity::Resolved
        )),
        "only the configured severities: {configured:#?}"
    );
    resolves_after(&configured, day);
    let _ = std::fs::remove_dir_all(dir);
}
