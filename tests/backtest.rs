//! Backtests on the real broker: generated traffic (with planted creative fatigue) is processed by the live jobs
//! with `--until-end`, then backtested over the whole produced period.
//!
//! - The live configuration (an empty strategy file) reproduces the live jobs' compacted outputs exactly:
//!   metrics.campaign.hourly and .daily, attribution.conversions and fatigue.creatives, latest per key, every field
//!   but those that record when or in which arrival order the live job processed a record: revision, emitted_at,
//!   attributed_at, the correlation id of the last record that changed a row, and the metrics' `corrections`
//!   (events applied after their row was final, which depends on how the live consumer interleaved a task's
//!   partitions). Fatigue points and assessments match to the bit: late events count in their own hour, and each
//!   point's exposure counts exactly the users up to its hour's end.
//! - A second strategy with the same content gives zero deltas.
//! - A strategy that pauses fatigued creatives records the pauses and lowers those creatives' spend; `adstream
//!   backtest --out --to-topic` writes the Parquet files, the HTML report naming every strategy and one outcome
//!   record per strategy and campaign.
//!
//! And over a hand-written history where one campaign's paths are shared with another's: a budget pause of that
//! campaign reported under both counterfactuals of its removed touches — the naive one, and the Markov one from
//! the chain fitted on the history, strictly between the naive one and the no-pause baseline and equal to the
//! hand-computed survival — and strategies crediting with the Markov and Shapley models fitted on it.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use adstream_backtest::journeys::NO_KEPT_TOUCH;
use adstream_backtest::{engine, Dataflow, Period, Strategy};
use adstream_processors::jobs::{entry, JobRegistry};
use adstream_producers::generator::GeneratorConfig;
use adstream_schemas::events::{
    AdImpression, Campaign, CampaignStatus, CampaignTargets, Conversion, ConversionType, Device,
    Objective, Placement, Platform,
};
use adstream_schemas::outputs::CreativeFatigue;
use adstream_topology::Topology;
use apache_avro::Schema;
use datafusion::arrow::array::{Array, Float64Array, StringArray};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use serde::de::DeserializeOwned;

use common::jobs::{adstream, apply_private_topology, start_process, wait_for_end};
use high_cost_clicks::HighCostClicksDefinition;

/// The demonstration job of `docs/adding-a-job.md`, defined outside the crate's registry.
#[path = "../processors/tests/adding_a_job/high_cost_clicks.rs"]
mod high_cost_clicks;
use common::recompute::{self, connect_producer, produce_generator, read_committed_records};
use common::{start_registry, unique, verdict};

/// `table` decoded with `schema`, each row passed through `normalize` (which clears the commit-schedule fields).
fn decoded<T: DeserializeOwned>(
    table: &BTreeMap<Vec<u8>, Vec<u8>>,
    schema: &str,
    normalize: impl Fn(&mut T),
) -> BTreeMap<String, T> {
    let schema = Schema::parse_str(schema).expect("schema");
    table
        .iter()
        .map(|(key, value)| {
            let mut row: T = recompute::decode(&schema, value);
            normalize(&mut row);
            (String::from_utf8_lossy(key).into_owned(), row)
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write strategy");
    path.to_str().expect("utf-8 path").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtests_reproduce_the_live_jobs_and_compare_strategies() {
    let registry = start_registry("backtest").await;
    let prefix = unique("bt");
    let processor = format!("{prefix}-job");
    let dir = std::env::temp_dir().join(unique("backtest"));
    let (topology_path, topics) = apply_private_topology(&registry.url, &dir, &prefix, &processor);
    let topology = topology_path.to_str().expect("utf-8 path");
    // Few campaigns, so each creative has the traffic the detector needs to confirm its planted decline.
    let generator = produce_generator(
        &registry.url,
        &topics.events,
        GeneratorConfig {
            seed: 11,
            events: 200_000,
            campaigns: 2,
            days: 5,
            fatigued_creative_share: 0.5,
            ..GeneratorConfig::default()
        },
    )
    .await;
    let manifest = generator.manifest();
    let first = manifest.first_event_time_ms.expect("events");
    let last = manifest.last_event_time_ms.expect("events");

    for (job, name) in [
        ("attribution", format!("{processor}-attribution")),
        ("campaign-metrics", processor.clone()),
        ("creative-fatigue", format!("{processor}-fatigue")),
    ] {
        wait_for_end(
            start_process(job, &registry.url, topology, &name, "127.0.0.1:0", true),
            job,
        );
    }

    let period = Period {
        from_ms: first,
        to_ms: last + 1,
        warmup_ms: 0,
    };
    let live = Strategy::parse("", "live.yaml", "live").expect("live");
    let same = Strategy::parse("", "same.yaml", "same").expect("same");
    let pause = Strategy::parse(
        "name: pause-fatigued\nfatigue: { pause: { enabled: true } }\n",
        "pause.yaml",
        "pause",
    )
    .expect("pause");
    let (runs, history) = tokio::task::block_in_place(|| {
        verdict::replay(&registry.url, &topology_path, period, &[live, same, pause])
    });
    let (live, same, pause) = (&runs[0], &runs[1], &runs[2]);

    // 1. The live configuration reproduces the live outputs exactly, but for the fields that record the commit
    // schedule and `corrections` (see `verdict::against_replay`); fatigue to every field of the assessment, the
    // 24 hourly points and the decay curve included.
    let verdicts = tokio::task::block_in_place(|| verdict::against_replay(live, &topics, false));
    verdict::assert_exact(&verdicts);
    let fatigue = |row: &mut CreativeFatigue| row.emitted_at = 0;

    // 2. The same configuration twice: zero deltas, no actions.
    assert_eq!(live.campaigns, same.campaigns);
    assert_eq!(live.total, same.total);
    assert_eq!(live.hourly, same.hourly);
    assert!(live.actions.is_empty() && same.actions.is_empty());
    assert!(live.total.spend_micros > 0 && live.total.conversions > 0.0);

    // 3. Pausing fatigued creatives: recorded actions, and each paused creative spent less.
    assert!(!pause.actions.is_empty(), "no creative was paused");
    assert!(pause.removed > 0);
    let final_spend = |run: &engine::StrategyRun| {
        decoded(
            &run.writer_of(&topics.fatigue)
                .expect("replayed")
                .compacted(&topics.fatigue),
            CreativeFatigue::SCHEMA,
            fatigue,
        )
        .into_values()
        .map(|r| (r.creative_id, r.spend_micros))
        .collect::<BTreeMap<_, _>>()
    };
    let (live_spend, paused_spend) = (final_spend(live), final_spend(pause));
    for action in &pause.actions {
        assert_eq!(action.kind, "pause-creative");
        let creative = action.creative_id.as_ref().expect("a creative");
        assert!(action.at_ms >= period.from_ms && action.at_ms < period.to_ms);
        assert!(
            paused_spend[creative] < live_spend[creative],
            "{creative}: {} paused, {} live",
            paused_spend[creative],
            live_spend[creative]
        );
    }
    assert!(pause.total.spend_micros < live.total.spend_micros);

    // 4. A job added beside adstream's own (the demonstration job of docs/adding-a-job.md) with nothing but its
    // registry line and its topology entries is replayed by the same engine, in data order with the others, its
    // settings from a strategy's `jobs:` section.
    let high_cost = format!("{prefix}.high-cost");
    let extended = common::jobs::topology_yaml(&prefix, &processor).replace(
        "processors:\n",
        &format!(
            "  - {{ name: {high_cost}, key: campaign_id, value_schema: io.adstream.ads.AdClick }}\n\
             processors:\n  - name: {processor}-high-cost\n    job: high-cost-clicks\n    \
             inputs: [{prefix}.clicks]\n    outputs: [{high_cost}]\n    key: campaign_id\n"
        ),
    );
    let extended_flow = Dataflow::resolve(
        &Topology::parse(&extended, "extended.yaml").expect("extended topology"),
        &JobRegistry::builtin().with(entry::<HighCostClicksDefinition>()),
        &[],
    )
    .expect("the extended topology's processors");
    let every_click = Strategy::parse(
        "jobs: { high-cost-clicks: { min_cost_micros: 0 } }\n",
        "every-click.yaml",
        "every-click",
    )
    .expect("every-click");
    let defaults = Strategy::parse("", "defaults.yaml", "defaults").expect("defaults");
    let extended_runs = tokio::task::block_in_place(|| {
        engine::run_all(
            &history,
            &extended_flow,
            &[every_click, defaults],
            period,
            &mut |_, _, _| {},
        )
        .expect("runs with the demonstration job")
    });
    let forwarded = |run: &engine::StrategyRun| {
        run.writer_of(&high_cost)
            .expect("the demonstration job ran")
            .sent(&high_cost)
    };
    assert_eq!(forwarded(&extended_runs[0]), live.total.clicks);
    assert!(forwarded(&extended_runs[1]) <= forwarded(&extended_runs[0]));
    assert_eq!(extended_runs[0].total, live.total);
    assert_eq!(extended_runs[0].campaigns, live.campaigns);

    // 5. The command: table, Parquet files and the HTML report.
    let out = dir.join("out");
    let files = [
        write(&dir, "live.yaml", ""),
        write(
            &dir,
            "pause.yaml",
            "name: pause-fatigued\nfatigue: { pause: { enabled: true } }\n",
        ),
    ];
    let (from, to) = (first.to_string(), (last + 1).to_string());
    let outcomes_topic = create_outcomes_topic(&prefix).await;
    let mut args = vec![
        "backtest",
        "--topology",
        topology,
        "--processor",
        &processor,
        "--from",
        &from,
        "--to",
        &to,
        "--warmup-hours",
        "0",
        "--out",
        out.to_str().expect("utf-8 path"),
        "--to-topic",
        &outcomes_topic,
    ];
    let fatigue_processor = format!("{processor}-fatigue");
    let attribution_processor = format!("{processor}-attribution");
    args.extend([
        "--processor",
        &fatigue_processor,
        "--processor",
        &attribution_processor,
    ]);
    for file in &files {
        args.extend(["--strategy", file.as_str()]);
    }
    let output = tokio::task::block_in_place(|| adstream(&registry.url, &args).output())
        .expect("backtest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("TOTAL") && stdout.contains("pause-fatigued"),
        "{stdout}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    for name in ["live", "pause-fatigued"] {
        assert!(html.contains(name), "{name} missing from the report");
    }
    assert!(html.contains("<svg") && html.contains("pause-creative"));
    let strategies = |file: &str| {
        let reader = ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(out.join(file)).expect(file),
        )
        .expect("parquet")
        .build()
        .expect("reader");
        let mut names = std::collections::BTreeSet::new();
        for batch in reader {
            let batch = batch.expect("batch");
            let column = batch
                .column_by_name("strategy")
                .expect("strategy column")
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("strings")
                .clone();
            for i in 0..column.len() {
                names.insert(column.value(i).to_owned());
            }
        }
        names
    };
    let all: std::collections::BTreeSet<String> = ["live", "pause-fatigued"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(strategies("outcomes.parquet"), all);
    assert_eq!(strategies("timeline.parquet"), all);
    assert!(strategies("actions.parquet").contains("pause-fatigued"));
    // `--to-topic`: one JSON record per strategy and campaign (and TOTAL), keyed `<strategy>|<campaign>`.
    let records: BTreeMap<String, serde_json::Value> = read_committed_records(&outcomes_topic)
        .into_iter()
        .map(|(key, value)| {
            let key = String::from_utf8(key.expect("a key")).expect("utf-8 key");
            let value = serde_json::from_slice(&value.expect("a value")).expect("json");
            (key, value)
        })
        .collect();
    for (key, value) in &records {
        let expected = format!(
            "{}|{}",
            value["strategy"].as_str().expect("strategy"),
            value["campaign_id"].as_str().expect("campaign")
        );
        assert_eq!(key, &expected);
    }
    let total = |strategy: &str| &records[&format!("{strategy}|TOTAL")];
    let spend = |strategy: &str| total(strategy)["spend_micros"].as_i64().expect("spend");
    assert!(spend("pause-fatigued") < spend("live"), "{records:?}");
    assert_eq!(total("live")["actions"], 0);
    assert!(
        total("pause-fatigued")["actions"]
            .as_u64()
            .expect("actions")
            > 0
    );
    let per_strategy = |strategy: &str| {
        records
            .keys()
            .filter(|k| k.starts_with(&format!("{strategy}|")))
            .count()
    };
    assert_eq!(per_strategy("live"), per_strategy("pause-fatigued"));
    assert!(per_strategy("live") > 1);
    let _ = std::fs::remove_dir_all(dir);
}

const HOUR: i64 = 3_600_000;
/// 2026-11-02T00:00Z.
const DAY_START: i64 = 1_793_577_600_000;

fn campaign(id: &str, daily_budget_micros: Option<i64>) -> Campaign {
    Campaign {
        campaign_id: id.into(),
        platform: Platform::Meta,
        account_id: "meta-acct-00".into(),
        name: id.into(),
        objective: Objective::Traffic,
        status: CampaignStatus::Active,
        currency: "USD".into(),
        daily_budget_micros,
        lifetime_budget_micros: None,
        start_time: DAY_START - 24 * HOUR,
        end_time: None,
        time_zone: "UTC".into(),
        targets: CampaignTargets::default(),
        updated_at: DAY_START - 24 * HOUR,
    }
}

fn seen(id: &str, user: &str, campaign: &str, time: i64, cost_micros: i64) -> AdImpression {
    AdImpression {
        event_id: id.into(),
        event_time: time,
        platform: Platform::Meta,
        account_id: "meta-acct-00".into(),
        campaign_id: campaign.into(),
        ad_group_id: format!("{campaign}-ag"),
        creative_id: format!("{campaign}-cr"),
        user_id: Some(user.into()),
        placement: Placement::Feed,
        device: Device::Mobile,
        cost_micros,
        currency: "USD".into(),
    }
}

fn converted(user: &str, time: i64, value_micros: i64) -> Conversion {
    Conversion {
        conversion_id: format!("conv-{user}"),
        event_time: time,
        user_id: user.into(),
        conversion_type: ConversionType::Purchase,
        value_micros,
        currency: "USD".into(),
    }
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{what}: {actual} vs {expected}"
    );
}

/// Campaign c (daily budget 1.00) is paused by the budget rule after its first impression of the day (u0's, 1.00);
/// its later touches are removed. Journeys (lookback 30 days, views count):
///
/// | user | touches | conversion | journey |
/// |---|---|---|---|
/// | u0 | c 00:10 (kept) | — | c, null |
/// | u1 | c 01:00 (removed) | 02:00, 30.00 | c, converts: every touch removed |
/// | u2 | b 01:00, c 01:30 (removed) | 03:00, 10.00 | b > c, converts: lost c, kept b |
/// | u3, u5, u6 | b 01:00 | 02:00, 30.00 each | b, converts |
/// | u4 | b 01:00 | — | b, null |
///
/// The chain: start→c 2/7, start→b 5/7; b→c 1/5, b→conversion 3/5; c→conversion 2/3. P(conversion) = 5/7. With c
/// leading to null only b's direct conversions remain: 5/7 · 3/5 = 3/7, so c's survival is 3/5 (removal effect 2/5);
/// without b, 2/7 · 2/3 = 4/21: removal effect 11/15. Shapley values: b 3 + 1/2, c 1 + 1/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_is_reported_under_the_naive_and_the_markov_counterfactual() {
    let registry = start_registry("backtest-markov").await;
    let prefix = unique("btm");
    let processor = format!("{prefix}-job");
    let dir = std::env::temp_dir().join(unique("backtest-markov"));
    let (topology_path, topics) = apply_private_topology(&registry.url, &dir, &prefix, &processor);
    let topology = topology_path.to_str().expect("utf-8 path");

    let (b, c) = ("cmp-b", "cmp-c");
    let minute = 60_000;
    let mut impressions = vec![
        seen("i-u0-c", "u0", c, DAY_START + 10 * minute, 1_000_000),
        seen("i-u1-c", "u1", c, DAY_START + HOUR, 1_000),
        seen("i-u2-b", "u2", b, DAY_START + HOUR, 1_000),
        seen("i-u2-c", "u2", c, DAY_START + HOUR + 30 * minute, 1_000),
    ];
    for user in ["u3", "u4", "u5", "u6"] {
        impressions.push(seen(
            &format!("i-{user}-b"),
            user,
            b,
            DAY_START + HOUR,
            1_000,
        ));
    }
    let conversions = [
        converted("u1", DAY_START + 2 * HOUR, 30_000_000),
        converted("u2", DAY_START + 3 * HOUR, 10_000_000),
        converted("u3", DAY_START + 2 * HOUR, 30_000_000),
        converted("u5", DAY_START + 2 * HOUR, 30_000_000),
        converted("u6", DAY_START + 2 * HOUR, 30_000_000),
    ];
    let producer = connect_producer(&registry.url, &topics.events).await;
    tokio::task::block_in_place(|| {
        let encoders = producer.schemas.encoders().expect("encoders");
        let mut buffer = Vec::new();
        for record in [campaign(b, None), campaign(c, Some(1_000_000))] {
            producer
                .send(&encoders.campaigns, &record, "campaign", &mut buffer)
                .expect("enqueued");
        }
        for record in &impressions {
            producer
                .send(&encoders.impressions, record, "touch", &mut buffer)
                .expect("enqueued");
        }
        for record in &conversions {
            producer
                .send(&encoders.conversions, record, "conversion", &mut buffer)
                .expect("enqueued");
        }
        producer
            .flush(std::time::Duration::from_secs(60))
            .expect("delivered");
    });

    let period = Period {
        from_ms: DAY_START,
        to_ms: DAY_START + 24 * HOUR,
        warmup_ms: 0,
    };
    let pause_text = "name: pause-c\nbudget: { pause_at: { daily_budget_share: 1.0 } }\n";
    let strategies = [
        Strategy::parse("", "live.yaml", "live").expect("live"),
        Strategy::parse(pause_text, "pause.yaml", "pause").expect("pause"),
        Strategy::parse("attribution: { model: markov }\n", "m.yaml", "markov").expect("markov"),
        Strategy::parse("attribution: { model: shapley }\n", "s.yaml", "shapley").expect("shapley"),
    ];
    let (runs, _) = tokio::task::block_in_place(|| {
        verdict::replay(&registry.url, &topology_path, period, &strategies)
    });
    let (live, pause, markov, shapley) = (&runs[0], &runs[1], &runs[2], &runs[3]);
    let m = 1e6;

    // No pause: both counterfactuals are the baseline (last touch: u2's conversion is c's).
    assert!(live.actions.is_empty());
    assert_close(live.total.conversions, 5.0, "live conversions");
    assert_close(
        live.total.markov_conversions,
        5.0,
        "live Markov conversions",
    );
    assert_close(live.total.revenue_micros, 130.0 * m, "live revenue");
    assert_close(
        live.total.markov_revenue_micros,
        130.0 * m,
        "live Markov revenue",
    );
    assert_close(live.campaigns[c].conversions, 2.0, "live c");

    // The pause: c paused once, u1's and u2's c touches removed.
    assert_eq!(pause.actions.len(), 1, "{:?}", pause.actions);
    assert_eq!(pause.actions[0].campaign_id, c);
    assert_eq!(pause.removed, 2);
    // Naive: u1 is lost (no touch left), u2 survives whole on b.
    assert_close(pause.total.conversions, 4.0, "naive conversions");
    assert_close(pause.total.revenue_micros, 100.0 * m, "naive revenue");
    assert_close(pause.campaigns[b].conversions, 4.0, "naive b");
    // Markov: u1 and u2 each survive with 3/5; u2's on b, u1's without a kept touch.
    let survival = 3.0 / 5.0;
    assert_close(
        pause.total.markov_conversions,
        3.0 + 2.0 * survival,
        "Markov conversions",
    );
    assert_close(
        pause.total.markov_revenue_micros,
        (90.0 + survival * 10.0 + survival * 30.0) * m,
        "Markov revenue",
    );
    assert_close(
        pause.campaigns[b].markov_conversions,
        3.0 + survival,
        "Markov b",
    );
    assert_close(
        pause.campaigns[NO_KEPT_TOUCH].markov_conversions,
        survival,
        "no touch",
    );
    assert_close(
        pause.campaigns[NO_KEPT_TOUCH].conversions,
        0.0,
        "no touch, naive",
    );
    // Strictly between the naive counterfactual and the no-pause baseline, in conversions and revenue.
    for (naive, markov, baseline, what) in [
        (
            pause.total.conversions,
            pause.total.markov_conversions,
            live.total.conversions,
            "conversions",
        ),
        (
            pause.total.revenue_micros,
            pause.total.markov_revenue_micros,
            live.total.revenue_micros,
            "revenue",
        ),
    ] {
        assert!(
            naive < markov && markov < baseline,
            "{what}: {naive} < {markov} < {baseline}"
        );
    }

    // Data-driven credit models fitted on the history: u2's conversion split by the weights, the others whole.
    let (re_b, re_c) = (11.0 / 15.0, 2.0 / 5.0);
    let b_share = re_b / (re_b + re_c);
    assert_close(
        markov.campaigns[b].conversions,
        3.0 + b_share,
        "Markov model b",
    );
    assert_close(
        markov.campaigns[c].conversions,
        2.0 - b_share,
        "Markov model c",
    );
    assert_close(
        markov.campaigns[b].revenue_micros,
        (90.0 + 10.0 * b_share) * m,
        "Markov model b revenue",
    );
    assert_close(shapley.campaigns[b].conversions, 3.7, "Shapley b");
    assert_close(shapley.campaigns[c].conversions, 1.3, "Shapley c");
    assert_close(shapley.total.revenue_micros, 130.0 * m, "Shapley revenue");

    // The command's report shows both counterfactuals for every strategy.
    let out = dir.join("out");
    let files = [
        write(&dir, "live.yaml", ""),
        write(&dir, "pause.yaml", pause_text),
    ];
    let (from, to) = (period.from_ms.to_string(), period.to_ms.to_string());
    let outcomes_topic = create_outcomes_topic(&prefix).await;
    let mut args = vec![
        "backtest",
        "--topology",
        topology,
        "--from",
        &from,
        "--to",
        &to,
        "--warmup-hours",
        "0",
        "--out",
        out.to_str().expect("utf-8 path"),
        "--to-topic",
        &outcomes_topic,
    ];
    for file in &files {
        args.extend(["--strategy", file.as_str()]);
    }
    let output = tokio::task::block_in_place(|| adstream(&registry.url, &args).output())
        .expect("backtest runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    for label in [
        "conv (naive)",
        "conv (Markov)",
        "revenue (Markov)",
        NO_KEPT_TOUCH,
    ] {
        assert!(
            stdout.contains(label),
            "{label} missing from the table:\n{stdout}"
        );
    }
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.contains("conv (Markov)") && html.contains("Markov counterfactual"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(out.join("outcomes.parquet")).expect("outcomes.parquet"),
    )
    .expect("parquet")
    .build()
    .expect("reader");
    let mut totals = BTreeMap::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let strings = |name: &str| {
            batch
                .column_by_name(name)
                .expect(name)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("strings")
                .clone()
        };
        let floats = |name: &str| {
            batch
                .column_by_name(name)
                .expect(name)
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("floats")
                .clone()
        };
        let (strategy, campaign) = (strings("strategy"), strings("campaign_id"));
        let (naive, markov) = (floats("conversions"), floats("markov_conversions"));
        for i in 0..batch.num_rows() {
            if campaign.value(i) == "TOTAL" {
                totals.insert(
                    strategy.value(i).to_owned(),
                    (naive.value(i), markov.value(i)),
                );
            }
        }
    }
    assert_close(totals["live"].0, 5.0, "live in Parquet");
    assert_close(totals["live"].1, 5.0, "live Markov in Parquet");
    assert_close(totals["pause-c"].0, 4.0, "pause in Parquet");
    assert_close(
        totals["pause-c"].1,
        3.0 + 2.0 * survival,
        "pause Markov in Parquet",
    );
    // The outcome records carry both too.
    let records: BTreeMap<String, serde_json::Value> = read_committed_records(&outcomes_topic)
        .into_iter()
        .map(|(key, value)| {
            let key = String::from_utf8(key.expect("a key")).expect("utf-8 key");
            let value = serde_json::from_slice(&value.expect("a value")).expect("json");
            (key, value)
        })
        .collect();
    let total = &records["pause-c|TOTAL"];
    assert_close(total["conversions"].as_f64().expect("naive"), 4.0, "record");
    assert_close(
        total["markov_conversions"].as_f64().expect("Markov"),
        3.0 + 2.0 * survival,
        "Markov record",
    );
    assert_close(
        records[&format!("pause-c|{NO_KEPT_TOUCH}")]["markov_revenue_micros"]
            .as_f64()
            .expect("Markov revenue"),
        survival * 30.0 * m,
        "no kept touch record",
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Creates `<prefix>-outcomes` (one partition) for `backtest --to-topic` and waits until the broker serves it.
async fn create_outcomes_topic(prefix: &str) -> String {
    let outcomes_topic = format!("{prefix}-outcomes");
    let admin: AdminClient<DefaultClientContext> = recompute::kafka().create().expect("admin");
    for result in admin
        .create_topics(
            &[NewTopic::new(
                &outcomes_topic,
                1,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .expect("create the outcomes topic")
    {
        result.expect("outcomes topic created");
    }
    tokio::task::block_in_place(|| common::wait_for_topics(std::slice::from_ref(&outcomes_topic)));
    outcomes_topic
}
