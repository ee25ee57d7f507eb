//! Exactness verdicts over what the jobs left in Kafka, as a `read_committed` reader sees it: per output, how many
//! rows were compared against an independent computation and how many were lost, duplicated or different. Shared
//! by the tests that run the jobs through faults (kills, broker restarts, scaling) and print or assert these counts.
//!
//! - campaign-metrics: the latest row per key against the batch recomputation of [`super::recompute`]; per key,
//!   revisions 1, 2, 3, … (a repeat is a duplicated update: two owners of one partition, or aborted work leaking;
//!   a gap is a lost commit); in the `windows` changelog, counts never go backwards per key.
//! - attribution: one `attribution.conversions` record per conversion of the input, each credit once, each
//!   model's credits per conversion summing to one conversion and to its value.
//! - any compacted output against the backtest engine's replay of the same job over the raw topics
//!   ([`against_simulation`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use adstream_backtest::engine::{self, StrategyRun};
use adstream_backtest::{Dataflow, History, Period, Strategy};
use adstream_processors::campaign_metrics::window_codec::CompactWindowRows;
use adstream_processors::jobs::JobRegistry;
use adstream_processors::runtime::ValueCodec;
use adstream_query::source::KafkaSource;
use adstream_schemas::events::{avsc, Conversion};
use adstream_schemas::outputs::{
    self, AttributedConversion, AttributionCredit, CampaignMetrics, CreativeFatigue,
};
use adstream_topology::Topology;
use apache_avro::Schema;

use super::recompute::{self, read_changelog_records, read_committed_records, KeyValue, Topics};

/// Examples kept per verdict, to say what went wrong.
const EXAMPLES: usize = 5;

/// What one check found in one output.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// The output (or changelog) checked.
    pub topic: String,
    /// What it was checked against.
    pub against: &'static str,
    /// Rows (or records) compared.
    pub compared: usize,
    /// Expected rows or updates that are missing.
    pub lost: usize,
    /// Rows or updates seen more than once.
    pub duplicated: usize,
    /// Rows present on both sides with different contents, and rows that should not exist.
    pub different: usize,
    /// The first few problems, for the failure message.
    pub examples: Vec<String>,
}

/// A kind of problem.
#[derive(Debug, Clone, Copy)]
enum Problem {
    Lost,
    Duplicated,
    Different,
}

impl Verdict {
    fn new(topic: &str, against: &'static str) -> Verdict {
        Verdict {
            topic: topic.to_owned(),
            against,
            ..Verdict::default()
        }
    }

    fn found(&mut self, problem: Problem, what: String) {
        match problem {
            Problem::Lost => self.lost += 1,
            Problem::Duplicated => self.duplicated += 1,
            Problem::Different => self.different += 1,
        }
        if self.examples.len() < EXAMPLES {
            self.examples.push(what);
        }
    }

    /// Nothing lost, duplicated or different, and something was compared.
    pub fn is_exact(&self) -> bool {
        self.compared > 0 && self.lost == 0 && self.duplicated == 0 && self.different == 0
    }
}

/// The verdicts as a Markdown table, one row per output.
pub fn table(verdicts: &[Verdict]) -> String {
    let mut text = String::from(
        "| output | checked against | rows compared | lost | duplicated | different |\n\
         |---|---|---:|---:|---:|---:|\n",
    );
    for v in verdicts {
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            v.topic, v.against, v.compared, v.lost, v.duplicated, v.different
        ));
    }
    text
}

/// Panics with the examples of every verdict that is not exact.
pub fn assert_exact(verdicts: &[Verdict]) {
    let failed: Vec<String> = verdicts
        .iter()
        .filter(|v| !v.is_exact())
        .map(|v| format!("{v:?}"))
        .collect();
    assert!(
        failed.is_empty(),
        "outputs not exact:\n{}\n{}",
        table(verdicts),
        failed.join("\n")
    );
}

/// campaign-metrics' outputs (`processor` is its application id): the latest rows against the batch
/// recomputation, the revisions per key of both outputs, and the changelog's counts per key.
pub fn campaign_metrics(topics: &Topics, processor: &str) -> Vec<Verdict> {
    let expected = recompute::recompute(topics);
    let schema = Schema::parse_str(outputs::CAMPAIGN_METRICS_AVSC).expect("schema");
    let mut verdicts = Vec::new();
    for topic in [&topics.hourly, &topics.daily] {
        let mut verdict = Verdict::new(topic, "batch recomputation, revisions");
        let mut latest: BTreeMap<String, CampaignMetrics> = BTreeMap::new();
        let mut revisions: HashMap<String, i64> = HashMap::new();
        for (key, value) in read_committed_records(topic) {
            let (Some(key), Some(value)) = (key, value) else {
                verdict.found(
                    Problem::Different,
                    format!("{topic}: a record without key or value"),
                );
                continue;
            };
            let key = String::from_utf8_lossy(&key).into_owned();
            let row: CampaignMetrics = recompute::decode(&schema, &value);
            let last = revisions.entry(key.clone()).or_insert(0);
            if row.revision <= *last {
                verdict.found(
                    Problem::Duplicated,
                    format!("{key}: revision {} after {last}", row.revision),
                );
            } else if row.revision > *last + 1 {
                verdict.found(
                    Problem::Lost,
                    format!("{key}: revision {} after {last}", row.revision),
                );
            }
            *last = (*last).max(row.revision);
            latest.insert(key, row);
        }
        let granularity = if topic == &topics.hourly {
            "|hourly|"
        } else {
            "|daily|"
        };
        let expected: BTreeMap<String, recompute::Expected> = expected
            .iter()
            .filter(|(key, _)| key.contains(granularity))
            .map(|(key, row)| (key.clone(), row.clone()))
            .collect();
        verdict.compared = expected.len().max(latest.len());
        for problem in recompute::differences(&expected, &latest) {
            let kind = if problem.ends_with(": missing") {
                Problem::Lost
            } else {
                Problem::Different
            };
            verdict.found(kind, problem);
        }
        verdicts.push(verdict);
    }
    let changelog = format!("{processor}-windows-changelog");
    let mut verdict = Verdict::new(&changelog, "counts never decrease");
    let mut counts: HashMap<Vec<u8>, (u64, u64)> = HashMap::new();
    for (key, value) in read_changelog_records(&changelog) {
        let (Some(key), Some(value)) = (key, value) else {
            continue;
        };
        verdict.compared += 1;
        let row = CompactWindowRows::decode(&value).expect("changelog row");
        let now = (row.impressions, row.clicks);
        let before = counts.entry(key.clone()).or_insert((0, 0));
        if now.0 < before.0 || now.1 < before.1 {
            verdict.found(
                Problem::Different,
                format!(
                    "changelog {}: counts went from {before:?} to {now:?}",
                    String::from_utf8_lossy(&key)
                ),
            );
        }
        *before = now;
    }
    verdicts.push(verdict);
    verdicts
}

/// Prints the [`campaign_metrics`] verdicts and panics unless they are exact.
pub fn assert_campaign_metrics_exact(topics: &Topics, processor: &str) {
    let verdicts = campaign_metrics(topics, processor);
    eprintln!("{}", table(&verdicts));
    assert_exact(&verdicts);
}

/// The attribution job's outputs: exactly one `attribution.conversions` record per input conversion with its value,
/// every credit once, and per (conversion, model) credits summing to one conversion and to its value.
pub fn attribution(topics: &Topics) -> Vec<Verdict> {
    let conversion_schema = Schema::parse_str(avsc::CONVERSION).expect("schema");
    let conversions: BTreeMap<String, Conversion> =
        read_committed_records(&topics.events.conversions)
            .into_iter()
            .filter_map(|(_, value)| value)
            .map(|value| {
                let c: Conversion = recompute::decode(&conversion_schema, &value);
                (c.conversion_id.clone(), c)
            })
            .collect();

    let mut attributed_verdict = Verdict::new(&topics.attributed, "input conversions");
    attributed_verdict.compared = conversions.len();
    let schema = Schema::parse_str(AttributedConversion::SCHEMA).expect("schema");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (_, value) in read_committed_records(&topics.attributed) {
        let Some(value) = value else { continue };
        let record: AttributedConversion = recompute::decode(&schema, &value);
        let id = record.conversion_id.clone();
        *seen.entry(id.clone()).or_default() += 1;
        if seen[&id] > 1 {
            attributed_verdict.found(
                Problem::Duplicated,
                format!("conversion {id} attributed again"),
            );
        }
        match conversions.get(&id) {
            None => attributed_verdict
                .found(Problem::Different, format!("{id}: not an input conversion")),
            Some(c) if c.value_micros != record.value_micros => attributed_verdict.found(
                Problem::Different,
                format!("{id}: value {} for {}", record.value_micros, c.value_micros),
            ),
            Some(_) => {}
        }
    }
    for id in conversions.keys().filter(|id| !seen.contains_key(*id)) {
        attributed_verdict.found(Problem::Lost, format!("conversion {id} not attributed"));
    }

    let mut credits_verdict = Verdict::new(&topics.credits, "conversions' values");
    let schema = Schema::parse_str(AttributionCredit::SCHEMA).expect("schema");
    let mut credit_ids: HashMap<String, usize> = HashMap::new();
    let mut sums: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    // Records without a value are watermark markers.
    for value in read_committed_records(&topics.credits)
        .into_iter()
        .filter_map(|(_, value): KeyValue| value)
    {
        let credit: AttributionCredit = recompute::decode(&schema, &value);
        credits_verdict.compared += 1;
        let times = credit_ids.entry(credit.credit_id.clone()).or_default();
        *times += 1;
        if *times > 1 {
            credits_verdict.found(
                Problem::Duplicated,
                format!("credit {} emitted again", credit.credit_id),
            );
        }
        let sum = sums
            .entry((credit.conversion_id.clone(), format!("{:?}", credit.model)))
            .or_default();
        sum.0 += credit.conversions;
        sum.1 += credit.revenue_micros;
    }
    for ((id, model), (count, revenue)) in &sums {
        let Some(conversion) = conversions.get(id) else {
            credits_verdict.found(
                Problem::Different,
                format!("credit for unknown conversion {id}"),
            );
            continue;
        };
        let value = conversion.value_micros as f64;
        if (count - 1.0).abs() > 1e-9 || (revenue - value).abs() > 1e-9 * value.max(1.0) {
            credits_verdict.found(
                Problem::Different,
                format!("{id} {model}: credits sum to {count} conversions, {revenue} of {value}"),
            );
        }
    }
    vec![attributed_verdict, credits_verdict]
}

/// Latest value per key of `records`, tombstones and markers applied as compaction would.
pub fn compact(records: Vec<KeyValue>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut table = BTreeMap::new();
    for (key, value) in records {
        match (key, value) {
            (Some(key), Some(value)) => {
                table.insert(key, value);
            }
            (Some(key), None) => {
                table.remove(&key);
            }
            _ => {}
        }
    }
    table
}

/// What the live job left in `topic` (latest per key) against the backtest engine's replay `simulated` of the same
/// job over the raw topics, field by field (decoded with `schema`), `ignored` fields aside: those that say when or in
/// which arrival order a row was written, not what it holds (see `tests/backtest.rs`). Prints the counts of
/// differing fields, ignored ones included.
pub fn against_simulation(
    topic: &str,
    simulated: &BTreeMap<Vec<u8>, Vec<u8>>,
    schema: &str,
    ignored: &[&str],
) -> Verdict {
    let schema = Schema::parse_str(schema).expect("schema");
    let as_json = |table: &BTreeMap<Vec<u8>, Vec<u8>>| -> BTreeMap<String, serde_json::Value> {
        table
            .iter()
            .map(|(key, value)| {
                (
                    String::from_utf8_lossy(key).into_owned(),
                    recompute::decode(&schema, value),
                )
            })
            .collect()
    };
    let live = as_json(&compact(read_committed_records(topic)));
    let simulated = as_json(simulated);
    let mut verdict = Verdict::new(topic, "backtest replay");
    verdict.compared = live.len().max(simulated.len());
    let mut differing: BTreeMap<String, usize> = BTreeMap::new();
    for (key, row) in &live {
        let Some(other) = simulated.get(key) else {
            verdict.found(Problem::Different, format!("{key}: only live"));
            continue;
        };
        let mut unexpected = Vec::new();
        for (field, value) in row.as_object().into_iter().flatten() {
            if other.get(field) != Some(value) {
                *differing.entry(field.clone()).or_default() += 1;
                if !ignored.contains(&field.as_str()) {
                    unexpected.push(format!(
                        "{field}: {value} live, {:?} simulated",
                        other.get(field)
                    ));
                }
            }
        }
        if !unexpected.is_empty() {
            verdict.found(
                Problem::Different,
                format!("{key}: {}", unexpected.join("; ")),
            );
        }
    }
    for key in simulated.keys().filter(|k| !live.contains_key(*k)) {
        verdict.found(Problem::Lost, format!("{key}: only simulated"));
    }
    eprintln!(
        "{topic}: {} rows live, {} simulated; rows differing per field: {differing:?}",
        live.len(),
        simulated.len()
    );
    verdict
}

/// The backtest engine's runs of `strategies` over `period` of the raw topics of the topology at `topology` (its
/// processors in data order, schemas from the registry at `registry`), and the history they read. Blocking.
pub fn replay(
    registry: &str,
    topology: &Path,
    period: Period,
    strategies: &[Strategy],
) -> (Vec<StrategyRun>, History) {
    let flow = Dataflow::resolve(
        &Topology::load(topology).expect("topology"),
        &JobRegistry::builtin(),
        &[],
    )
    .expect("the topology's processors");
    let source =
        std::sync::Arc::new(KafkaSource::new(recompute::kafka(), registry).expect("source"));
    let history = History::read(
        &source,
        &flow,
        period,
        tokio::runtime::Handle::current(),
        &mut |_, _| {},
    )
    .expect("history");
    let runs =
        engine::run_all(&history, &flow, strategies, period, &mut |_, _, _| {}).expect("runs");
    (runs, history)
}

/// The jobs' compacted outputs in `topics` against `live`, a replay of the live configuration (an empty strategy)
/// over the same raw topics: metrics hourly and daily, attributed conversions and creative fatigue, latest row per
/// key, every field but those that say when or in which arrival order a row was written, not what it holds.
///
/// `revision` counts emissions and `emitted_at` / `attributed_at` are the commit's clock (wall clock live, event
/// time replayed). `corrections` counts events that reached a window after it was final, which depends on how far
/// the task's watermark had moved when the event was read: live, that is how the consumer's fetches interleaved the
/// task's partitions; replayed, the timestamp merge. `correlation_id` names the last event that changed a row, and
/// which of two events of a task (an impression and a click, on different topics) is handled last depends on the
/// same interleaving. Both are valid runs of the same job over the same records: the figures in the rows match,
/// those fields may not. Fatigue assessments match to every field but the clock and the correlation id: late events
/// count in their own hour, and each point's exposure counts exactly the users up to its hour's end.
///
/// With `ended_live` (the inputs were still being written while the jobs ran, and a last run read them to their
/// end) two more fields say when, not what: a window's `is_final` (whether the live job's watermark passed its end
/// plus grace before the input ended: sparse conversions hold attribution's, and so campaign-metrics', watermark
/// back for as long as the wall clock decides, while the replay closes everything at the end of its period) and
/// a fatigue record's `reason` (the live run's last record came at the end of its input, the replay's when its
/// report interval passed).
pub fn against_replay(live: &StrategyRun, topics: &Topics, ended_live: bool) -> Vec<Verdict> {
    let replayed = |topic: &str| live.writer_of(topic).expect("replayed").compacted(topic);
    let mut metrics_ignored = vec!["revision", "emitted_at", "corrections", "correlation_id"];
    let mut fatigue_ignored = vec!["emitted_at", "correlation_id"];
    if ended_live {
        metrics_ignored.push("is_final");
        fatigue_ignored.push("reason");
    }
    vec![
        against_simulation(
            &topics.hourly,
            &replayed(&topics.hourly),
            CampaignMetrics::SCHEMA,
            &metrics_ignored,
        ),
        against_simulation(
            &topics.daily,
            &replayed(&topics.daily),
            CampaignMetrics::SCHEMA,
            &metrics_ignored,
        ),
        against_simulation(
            &topics.attributed,
            &replayed(&topics.attributed),
            AttributedConversion::SCHEMA,
            &["attributed_at"],
        ),
        against_simulation(
            &topics.fatigue,
            &replayed(&topics.fatigue),
            CreativeFatigue::SCHEMA,
            &fatigue_ignored,
        ),
    ]
}
