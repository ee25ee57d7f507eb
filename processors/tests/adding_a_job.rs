//! Adding a job, as `docs/adding-a-job.md` describes it, shown with the demonstration job `high-cost-clicks`
//! (`adding_a_job/high_cost_clicks.rs`): one registry line, its topology entries, and it runs: its flags and YAML
//! settings parse, its ports connect, and its operator processes records (in the simulation the backtests use).

mod adding_a_job {
    pub mod high_cost_clicks;
}

use adding_a_job::high_cost_clicks::HighCostClicksDefinition;
use adstream_processors::jobs::{entry, JobRegistry, Wiring};
use adstream_processors::runtime::{
    simulate, SchemaCache, SimulateOptions, SimulatedRecord, TypedDecoder, WireEncoder,
};
use adstream_schemas::events::{avsc, AdClick, AvroRecord, Device, Platform};
use adstream_topology::Topology;

/// The topology entries the job needs: its output topic and its processor.
const TOPOLOGY: &str = "\
defaults: { partitions: 2, replication_factor: 1 }
topics:
  - { name: ads.clicks, key: campaign_id, value_schema: io.adstream.ads.AdClick }
  - { name: clicks.high-cost, key: campaign_id, value_schema: io.adstream.ads.AdClick }
processors:
  - name: high-cost-clicks
    inputs: [ads.clicks]
    outputs: [clicks.high-cost]
    key: campaign_id
";

const CLICK_ID: u32 = 1;

fn click(offset: i64, cost_micros: i64) -> SimulatedRecord {
    let value = AdClick {
        event_id: format!("clk-{offset}"),
        event_time: 1_709_546_400_000 + offset * 1000,
        platform: Platform::Meta,
        account_id: "acct-1".into(),
        campaign_id: "cmp-1".into(),
        ad_group_id: "ag-1".into(),
        creative_id: "cr-1".into(),
        user_id: None,
        impression_id: None,
        device: Device::Mobile,
        cost_micros,
        currency: "EUR".into(),
    };
    let mut bytes = Vec::new();
    WireEncoder::new(avsc::AD_CLICK, CLICK_ID)
        .expect("encoder")
        .encode(&value, &mut bytes)
        .expect("encodes");
    SimulatedRecord {
        input: 0,
        partition: 0,
        offset,
        timestamp_ms: Some(value.event_time),
        key: Some(b"cmp-1".to_vec()),
        value: Some(bytes),
        headers: Vec::new(),
        correlation_id: format!("corr-{offset}"),
    }
}

#[test]
fn a_job_added_with_one_registry_line_runs_from_flags_or_yaml() {
    // The registry line (in `JobRegistry::builtin` for a job of the crate).
    let registry = JobRegistry::builtin().with(entry::<HighCostClicksDefinition>());
    let job = registry.get("high-cost-clicks").expect("registered");
    let topology = Topology::parse(TOPOLOGY, "demo.yaml").expect("topology parses");
    let wiring = Wiring::resolve(&topology, job.name(), job.ports()).expect("ports connect");
    assert_eq!(wiring.optional("high_cost"), Some("clicks.high-cost"));

    // Flags, as `adstream process high-cost-clicks --min-cost-micros 2000000` parses them.
    let matches = job
        .augment_args(clap::Command::new("high-cost-clicks"))
        .try_get_matches_from(["high-cost-clicks", "--min-cost-micros", "2000000"])
        .expect("flags parse");
    let from_flags = job.stages_from_args(&matches, &wiring).expect("builds");
    assert_eq!(from_flags.len(), 1);
    assert!(job
        .stages_from_yaml("min_cost_micros: -1\n", &wiring)
        .is_err());

    // YAML, as a backtest strategy or a settings file holds it; run in the simulation.
    let mut stages = job
        .stages_from_yaml("min_cost_micros: 2000000\n", &wiring)
        .expect("builds");
    let stage = stages.remove(0);
    let mut schemas = SchemaCache::offline();
    schemas.insert(CLICK_ID, avsc::AD_CLICK).expect("schema");
    schemas.insert(7, avsc::AD_CLICK).expect("schema");
    let run = simulate(
        stage.operator,
        schemas,
        (0..6).map(|i| click(i, i * 600_000)),
        &SimulateOptions::new(&stage.application_id, 2, vec![7]),
    )
    .expect("simulates");
    let mut decoder = TypedDecoder::new(AdClick::FULL_NAME, avsc::AD_CLICK).expect("decoder");
    let mut cache = SchemaCache::offline();
    cache.insert(7, avsc::AD_CLICK).expect("schema");
    let forwarded: Vec<i64> = run
        .records
        .get("clicks.high-cost")
        .map(|records| {
            records
                .iter()
                .filter_map(|r| r.value.as_deref())
                .map(|v| {
                    decoder
                        .decode::<AdClick>(&mut cache, Some(v))
                        .expect("decodes")
                        .cost_micros
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(forwarded, [2_400_000, 3_000_000]);
}
