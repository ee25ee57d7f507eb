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

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use adstream_backtest::{engine, Dataflow, Period, Strategy};
use adstream_processors::jobs::{entry, JobRegistry};
use adstream_producers::generator::GeneratorConfig;
use adstream_schemas::outputs::CreativeFatigue;
use adstream_topology::Topology;
use apache_avro::Schema;
use datafusion::arrow::array::{Array, StringArray};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use serde::de::DeserializeOwned;

use common::jobs::{adstream, apply_private_topology, start_process, wait_for_end};
use high_cost_clicks::HighCostClicksDefinition;

/// The demonstration job of `docs/adding-a-job.md`, defined outside the crate's registry.
#[path = "../processors/tests/adding_a_job/high_cost_clicks.rs"]
mod high_cost_clicks;
use common::recompute::{self, produce_generator, read_committed_records};
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
        let simulation = run
            .writer_of(&high_cost)
            .expect("the demonstration job ran");
        simulation
            .topic(&high_cost)
            .iter()
            .filter(|record| record.value.is_some())
            .count() as u64
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
