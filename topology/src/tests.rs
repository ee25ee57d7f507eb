//! Parsing and validation: each check with the exact position it reports, and the real topology file.

use std::path::Path;

use crate::{CleanupPolicy, Topology, TopologyError};

/// The validation errors of `yaml` (read as `t.yaml`), one string each, as printed.
fn errors(yaml: &str) -> Vec<String> {
    match Topology::parse(yaml, "t.yaml") {
        Err(TopologyError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
        other => panic!("expected validation errors, got {other:?}"),
    }
}

/// A valid topology; the tests below break one thing at a time. Line numbers matter: keep the layout.
const VALID: &str = "\
defaults: { partitions: 4, replication_factor: 1 }
topics:
  - name: ads.impressions
    key: campaign_id
    value_schema: io.adstream.ads.AdImpression
    retention_ms: 604800000
  - name: ads.clicks
    key: campaign_id
  - name: ads.campaigns
    key: campaign_id
    cleanup_policy: compact
    compaction: { min_cleanable_dirty_ratio: 0.1, segment_ms: 3600000 }
  - name: ads.conversions
    key: user_id
processors:
  - name: campaign-metrics
    inputs: [ads.impressions, ads.clicks, ads.campaigns]
    outputs: [ads.conversions]
    key: campaign_id
";

#[test]
fn valid_topology_parses_with_defaults_applied() {
    let topology = Topology::parse(VALID, "t.yaml").expect("valid");
    assert_eq!(topology.origin(), "t.yaml");
    let names: Vec<&str> = topology.topics().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ads.impressions",
            "ads.clicks",
            "ads.campaigns",
            "ads.conversions"
        ]
    );
    let clicks = topology.topic("ads.clicks").expect("clicks");
    assert_eq!((clicks.partitions, clicks.replication_factor), (4, 1));
    // Inherited values point at the defaults line.
    assert_eq!(clicks.partitions_location.line, 1);
    assert_eq!(clicks.cleanup_policy, CleanupPolicy::Delete);
    assert_eq!(clicks.location.line, 7);
    let processor = topology.processor("campaign-metrics").expect("processor");
    assert_eq!(
        processor.inputs,
        ["ads.impressions", "ads.clicks", "ads.campaigns"]
    );
    assert_eq!(processor.outputs, ["ads.conversions"]);
    assert_eq!(processor.key, "campaign_id");
    assert!(topology.topic("nope").is_none());
}

#[test]
fn configs_are_what_kafka_gets() {
    let topology = Topology::parse(VALID, "t.yaml").expect("valid");
    let impressions = topology
        .topic("ads.impressions")
        .expect("impressions")
        .configs();
    let expected = [("cleanup.policy", "delete"), ("retention.ms", "604800000")];
    assert_eq!(
        impressions
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        expected
    );
    let campaigns = topology
        .topic("ads.campaigns")
        .expect("campaigns")
        .configs();
    let expected = [
        ("cleanup.policy", "compact"),
        ("min.cleanable.dirty.ratio", "0.1"),
        ("segment.ms", "3600000"),
    ];
    assert_eq!(
        campaigns
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn value_schemas_map_topics_to_subjects() {
    let topology = Topology::parse(VALID, "t.yaml").expect("valid");
    let schemas: Vec<(&str, &str)> = topology
        .value_schemas()
        .map(|(t, s)| (t.name.as_str(), s))
        .collect();
    assert_eq!(
        schemas,
        [("ads.impressions", "io.adstream.ads.AdImpression")]
    );
    let impressions = topology.topic("ads.impressions").expect("impressions");
    assert_eq!(
        impressions.value_subject().as_deref(),
        Some("ads.impressions-value")
    );
    assert_eq!(
        topology
            .topic("ads.clicks")
            .expect("clicks")
            .value_subject(),
        None
    );
}

#[test]
fn unknown_input_topic_is_named_with_its_position() {
    let yaml = VALID.replace(
        "inputs: [ads.impressions, ads.clicks,",
        "inputs: [ads.impressions, ads.clickz,",
    );
    assert_eq!(
        errors(&yaml),
        ["t.yaml:17:31: processor 'campaign-metrics' reads unknown topic 'ads.clickz' (did you mean 'ads.clicks'?)"]
    );
}

#[test]
fn unknown_output_topic_is_named() {
    let yaml = VALID.replace("outputs: [ads.conversions]", "outputs: [metrics.hourly]");
    assert_eq!(
        errors(&yaml),
        ["t.yaml:18:15: processor 'campaign-metrics' writes unknown topic 'metrics.hourly'"]
    );
}

#[test]
fn compacted_topic_needs_a_key() {
    let yaml = VALID.replace(
        "    key: campaign_id\n    cleanup_policy: compact",
        "    cleanup_policy: compact",
    );
    let errors = errors(&yaml);
    assert_eq!(
        errors[0],
        "t.yaml:10:21: topic 'ads.campaigns' is compacted but declares no key: compaction keeps the latest record \
         per key"
    );
    // It is also an input of a processor keyed by campaign_id.
    assert_eq!(
        errors[1],
        "t.yaml:16:43: processor 'campaign-metrics' is keyed by 'campaign_id' but its input 'ads.campaigns' \
         declares no key"
    );
    assert_eq!(errors.len(), 2);
}

#[test]
fn co_partitioned_inputs_need_the_same_partition_count() {
    let yaml = VALID.replace(
        "  - name: ads.clicks\n",
        "  - name: ads.clicks\n    partitions: 8\n",
    );
    assert_eq!(
        errors(&yaml),
        ["t.yaml:18:31: processor 'campaign-metrics' reads co-partitioned inputs with different partition counts: \
          'ads.clicks' has 8 (line 8) but 'ads.impressions' has 4 (line 1)"]
    );
}

#[test]
fn inputs_must_be_keyed_by_the_processors_key() {
    let yaml = VALID
        .replace("outputs: [ads.conversions]", "outputs: []")
        .replace(
            "inputs: [ads.impressions, ads.clicks, ads.campaigns]",
            "inputs: [ads.impressions, ads.conversions]",
        );
    assert_eq!(
        errors(&yaml),
        ["t.yaml:17:31: processor 'campaign-metrics' is keyed by 'campaign_id' but its input 'ads.conversions' is \
          keyed by 'user_id' (repartition it by 'campaign_id' into another topic)"]
    );
}

#[test]
fn a_broadcast_topic_is_read_whatever_its_key_but_with_the_same_partition_count() {
    let weights = "  - name: weights\n    key: model_channel\n    cleanup_policy: compact\n    broadcast: true\n";
    let yaml = VALID
        .replace("processors:\n", &format!("{weights}processors:\n"))
        .replace(
            "inputs: [ads.impressions, ads.clicks, ads.campaigns]",
            "inputs: [ads.impressions, ads.clicks, ads.campaigns, weights]",
        );
    let topology = Topology::parse(&yaml, "t.yaml").expect("a broadcast input is valid");
    assert!(topology.topic("weights").expect("weights").broadcast);
    assert!(!topology.topic("ads.clicks").expect("clicks").broadcast);

    let unbroadcast = yaml.replace("    broadcast: true\n", "");
    assert_eq!(
        errors(&unbroadcast),
        ["t.yaml:20:58: processor 'campaign-metrics' is keyed by 'campaign_id' but its input 'weights' is \
          keyed by 'model_channel' (repartition it by 'campaign_id' into another topic)"]
    );
    let bad = yaml.replace("broadcast: true", "broadcast: yes please");
    assert_eq!(
        errors(&bad),
        [
            "t.yaml:18:16: topic 'weights': broadcast must be true or false, got 'yes please'",
            "t.yaml:21:58: processor 'campaign-metrics' is keyed by 'campaign_id' but its input 'weights' is keyed \
             by 'model_channel' (repartition it by 'campaign_id' into another topic)"
        ]
    );
    let fewer = yaml.replace(
        "    broadcast: true\n",
        "    broadcast: true\n    partitions: 1\n",
    );
    assert_eq!(errors(&fewer).len(), 1, "{:?}", errors(&fewer));
}

#[test]
fn topics_with_another_key_are_read_through_a_repartition() {
    let attribution = "  - name: attribution\n    repartition: [ads.impressions, ads.clicks]\n    \
                       inputs: [ads.conversions]\n    outputs: []\n    key: user_id\n";
    let topology = Topology::parse(&format!("{VALID}{attribution}"), "t.yaml")
        .expect("a repartition is valid");
    let processor = topology.processor("attribution").expect("processor");
    assert_eq!(processor.repartition, ["ads.impressions", "ads.clicks"]);
    assert_eq!(processor.inputs, ["ads.conversions"]);

    let unknown = attribution.replace("ads.clicks]", "ads.clickz]");
    assert_eq!(
        errors(&format!("{VALID}{unknown}")),
        ["t.yaml:21:36: processor 'attribution' repartitions unknown topic 'ads.clickz' (did you mean 'ads.clicks'?)"]
    );
    let twice = attribution.replace(
        "inputs: [ads.conversions]",
        "inputs: [ads.conversions, ads.clicks]",
    );
    assert_eq!(
        errors(&format!("{VALID}{twice}")),
        [
            "t.yaml:21:36: processor 'attribution' lists 'ads.clicks' both as an input and to repartition",
            "t.yaml:22:31: processor 'attribution' is keyed by 'user_id' but its input 'ads.clicks' is keyed by \
             'campaign_id' (repartition it by 'user_id' into another topic)"
        ]
    );
}

#[test]
fn duplicate_topics_are_refused() {
    let yaml = VALID.replace(
        "processors:",
        "  - name: ads.clicks\n    key: campaign_id\nprocessors:",
    );
    assert_eq!(
        errors(&yaml),
        ["t.yaml:15:11: duplicate topic 'ads.clicks' (first declared at line 7)"]
    );
}

#[test]
fn topic_names_that_collide_in_metrics_are_refused() {
    let yaml = VALID.replace("processors:", "  - name: ads_clicks\nprocessors:");
    assert_eq!(
        errors(&yaml),
        ["t.yaml:15:11: topic 'ads_clicks' collides with 'ads.clicks' (line 7): Kafka does not tell '.' from '_' in \
          metric names and refuses the second one"]
    );
}

#[test]
fn typos_in_field_names_are_caught_with_a_suggestion() {
    let yaml = VALID.replace(
        "  - name: ads.clicks\n",
        "  - name: ads.clicks\n    partitons: 4\n",
    );
    assert_eq!(
        errors(&yaml),
        ["t.yaml:8:5: unknown field 'partitons' in topic 'ads.clicks' (did you mean 'partitions'?)"]
    );
    let yaml = VALID.replace("processors:", "procesors:");
    let errors = errors(&yaml);
    assert_eq!(
        errors[0],
        "t.yaml:15:1: unknown field 'procesors' in the topology (did you mean 'processors'?)"
    );
    let yaml = VALID.replace("    key: user_id\n", "    key: user_id\n    colour: blue\n");
    assert_eq!(
        self::errors(&yaml),
        ["t.yaml:15:5: unknown field 'colour' in topic 'ads.conversions' (expected one of: name, description, key, \
          value_schema, partitions, replication_factor, cleanup_policy, retention_ms, compaction, config, broadcast)"]
    );
    let yaml = VALID.replace("segment_ms: 3600000", "segmnt_ms: 3600000");
    assert_eq!(
        self::errors(&yaml),
        ["t.yaml:12:51: unknown field 'segmnt_ms' in compaction of topic 'ads.campaigns' (did you mean \
          'segment_ms'?)"]
    );
}

#[test]
fn bad_values_are_refused() {
    let cases = [
        ("    key: user_id\n", "    key: user_id\n    partitions: 0\n", "t.yaml:15:17: topic 'ads.conversions': partitions must be a whole number of at least 1, got '0'"),
        ("    key: user_id\n", "    key: user_id\n    partitions: four\n", "t.yaml:15:17: topic 'ads.conversions': partitions must be a whole number of at least 1, got 'four'"),
        ("    key: user_id\n", "    key: user_id\n    replication_factor: 0\n", "t.yaml:15:25: topic 'ads.conversions': replication_factor must be a whole number from 1 to 32767, got '0'"),
        ("    key: user_id\n", "    key: user_id\n    cleanup_policy: compacted\n", "t.yaml:15:21: topic 'ads.conversions': cleanup_policy must be delete, compact or compact,delete, got 'compacted'"),
        ("    key: user_id\n", "    key: user_id\n    retention_ms: -2\n", "t.yaml:15:19: topic 'ads.conversions': retention_ms must be a whole number of at least -1, got '-2'"),
        ("    key: user_id\n", "    key: user_id\n    retention_ms:\n", "t.yaml:15:5: topic 'ads.conversions': retention_ms has no value"),
        ("    key: user_id\n", "    key: user_id\n    compaction: { segment_ms: 100 }\n", "t.yaml:15:5: topic 'ads.conversions': compaction settings need cleanup_policy compact or compact,delete"),
        ("    key: user_id\n", "    key: user id\n", "t.yaml:14:10: topic 'ads.conversions': key 'user id' must be a field name (letters, digits and '_')"),
        ("    key: user_id\n", "    key: user_id\n    value_schema: io.adstream..Conversion\n", "t.yaml:15:19: topic 'ads.conversions': value_schema 'io.adstream..Conversion' is not an Avro full name like io.example.Record"),
        ("segment_ms: 3600000", "segment_ms: 0", "t.yaml:12:63: compaction of topic 'ads.campaigns': segment_ms must be a whole number of at least 1, got '0'"),
        ("min_cleanable_dirty_ratio: 0.1", "min_cleanable_dirty_ratio: 1.5", "t.yaml:12:46: compaction of topic 'ads.campaigns': min_cleanable_dirty_ratio must be from 0 to 1, got '1.5'"),
        ("    cleanup_policy: compact\n", "    cleanup_policy: compact\n    retention_ms: 1000\n", "t.yaml:12:19: topic 'ads.campaigns': retention_ms has no effect with cleanup_policy compact (use compact,delete)"),
        ("    key: user_id\n", "    key: user_id\n    config: { cleanup.policy: compact }\n", "t.yaml:15:15: topic 'ads.conversions': set cleanup.policy with the cleanup_policy field, not in config"),
        ("    key: user_id\n", "    key: user_id\n    config: { Max.Bytes: 1 }\n", "t.yaml:15:15: topic 'ads.conversions': 'Max.Bytes' is not a Kafka topic config name"),
        ("    key: user_id\n", "    key: user_id\n    config: [a, b]\n", "t.yaml:15:13: topic 'ads.conversions': config must be a mapping of names to values"),
        ("    key: user_id\n", "    key: user_id\n    description: [a]\n", "t.yaml:15:18: topic 'ads.conversions': description must be a single value, not a list"),
    ];
    for (from, to, expected) in cases {
        let yaml = VALID.replace(from, to);
        assert_ne!(yaml, VALID, "{from:?} not found");
        assert_eq!(errors(&yaml), [expected], "{to:?}");
    }
}

#[test]
fn invalid_topic_names_are_refused() {
    let long = "a".repeat(250);
    let cases = [
        ("ads conversions", "t.yaml:15:11: invalid topic name 'ads conversions': ' ' is not allowed (only letters, digits, '.', '_' and '-')"),
        ("ads/conversions", "t.yaml:15:11: invalid topic name 'ads/conversions': '/' is not allowed (only letters, digits, '.', '_' and '-')"),
        ("'.'", "t.yaml:15:11: invalid topic name '.': '.' and '..' are reserved"),
        ("'..'", "t.yaml:15:11: invalid topic name '..': '.' and '..' are reserved"),
        ("''", "t.yaml:15:11: invalid topic name '': it is empty"),
    ];
    let with_topic =
        |name: &str| VALID.replace("processors:", &format!("  - name: {name}\nprocessors:"));
    for (name, expected) in cases {
        let yaml = with_topic(name);
        assert_eq!(errors(&yaml), [expected], "{name}");
    }
    assert_eq!(
        errors(&with_topic(&long)),
        [format!("t.yaml:15:11: invalid topic name '{long}': it is 250 characters long, at most 249 are allowed")]
    );
    // 249 is fine.
    assert!(Topology::parse(&with_topic(&long[1..]), "t.yaml").is_ok());
}

#[test]
fn every_error_is_reported_in_file_order_one_per_line() {
    let yaml = VALID
        .replace(
            "  - name: ads.clicks\n",
            "  - name: ads.clicks\n    partitions: 0\n",
        )
        .replace(
            "inputs: [ads.impressions, ads.clicks,",
            "inputs: [ads.impressions, ads.clickz,",
        )
        .replace("    key: user_id\n", "    key: user_id\n    partitons: 2\n");
    let error = Topology::parse(&yaml, "t.yaml").expect_err("invalid");
    assert_eq!(
        error.to_string(),
        "t.yaml:8:17: topic 'ads.clicks': partitions must be a whole number of at least 1, got '0'\n\
         t.yaml:16:5: unknown field 'partitons' in topic 'ads.conversions' (did you mean 'partitions'?)\n\
         t.yaml:19:31: processor 'campaign-metrics' reads unknown topic 'ads.clickz' (did you mean 'ads.clicks'?)"
    );
}

#[test]
fn missing_pieces_are_named() {
    let yaml = VALID.replace(
        "defaults: { partitions: 4, replication_factor: 1 }\n",
        "defaults: { partitions: 4 }\n",
    );
    let errors = errors(&yaml);
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert_eq!(
        errors[0],
        "t.yaml:3:5: topic 'ads.impressions' has no replication_factor and defaults.replication_factor is not set"
    );
    let yaml = VALID.replace(
        "  - name: ads.conversions\n    key: user_id\n",
        "  - key: user_id\n",
    );
    assert_eq!(
        self::errors(&yaml),
        [
            "t.yaml:13:5: topic #4 has no name",
            "t.yaml:17:15: processor 'campaign-metrics' writes unknown topic 'ads.conversions'",
        ]
    );
    let yaml = VALID.replace(
        "    outputs: [ads.conversions]\n    key: campaign_id\n",
        "    outputs: [ads.conversions]\n",
    );
    assert_eq!(
        self::errors(&yaml),
        ["t.yaml:16:5: processor 'campaign-metrics' has no key (the key its inputs are partitioned by)"]
    );
    let yaml = VALID.replace(
        "inputs: [ads.impressions, ads.clicks, ads.campaigns]",
        "inputs: []",
    );
    assert_eq!(
        self::errors(&yaml),
        ["t.yaml:17:5: processor 'campaign-metrics' has no inputs"]
    );
    let yaml = VALID.replace(
        "inputs: [ads.impressions, ads.clicks, ads.campaigns]",
        "inputs: ads.clicks",
    );
    assert_eq!(
        self::errors(&yaml),
        ["t.yaml:17:13: processor 'campaign-metrics': inputs must be a list of topic names"]
    );
    assert_eq!(
        self::errors("defaults: {}\n"),
        ["t.yaml:1:1: the topology has no topics list"]
    );
}

#[test]
fn yaml_syntax_errors_have_positions() {
    // The parser notices the unclosed list on the next line.
    let yaml = VALID.replace("    key: user_id\n", "    key: [user_id\n");
    assert_eq!(
        errors(&yaml),
        ["t.yaml:16:3: invalid YAML: invalid indentation"]
    );
    let yaml = VALID.replace(
        "    key: user_id\n",
        "    key: user_id\n    key: campaign_id\n",
    );
    assert_eq!(
        self::errors(&yaml),
        ["t.yaml:15:5: duplicate field 'key' (first set at line 14)"]
    );
    assert_eq!(
        self::errors("- a\n- b\n"),
        ["t.yaml:1:1: the topology must be a mapping of defaults, topics and processors"]
    );
    let anchors = "defaults: &d { partitions: 1, replication_factor: 1 }\ntopics: []\n";
    assert_eq!(
        self::errors(anchors),
        ["t.yaml:1:14: YAML anchors and aliases are not supported"]
    );
}

#[test]
fn empty_input_is_an_error_not_a_panic() {
    for source in ["", "\n", "# only a comment\n"] {
        assert!(
            matches!(
                Topology::parse(source, "t.yaml"),
                Err(TopologyError::Invalid(_))
            ),
            "{source:?}"
        );
    }
}

#[test]
fn passthrough_config_is_kept_as_written() {
    let yaml = VALID.replace(
        "    key: user_id\n",
        "    key: user_id\n    config: { max.message.bytes: 2097152 }\n",
    );
    let topology = Topology::parse(&yaml, "t.yaml").expect("valid");
    let configs = topology
        .topic("ads.conversions")
        .expect("conversions")
        .configs();
    assert_eq!(
        configs.get("max.message.bytes").map(String::as_str),
        Some("2097152")
    );
    // segment.ms has a compaction field, but a delete topic has no compaction block: config is the place for it.
    let yaml = VALID.replace(
        "    key: user_id\n",
        "    key: user_id\n    config: { segment.ms: 60000 }\n",
    );
    assert!(Topology::parse(&yaml, "t.yaml").is_ok());
}

#[test]
fn missing_file_is_named() {
    let error = Topology::load(Path::new("no/such/topology.yaml")).expect_err("missing");
    assert!(matches!(error, TopologyError::Read { .. }));
    assert!(
        error
            .to_string()
            .starts_with("cannot read topology file no/such/topology.yaml: "),
        "{error}"
    );
}

#[test]
fn the_project_topology_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("adstream.yaml");
    let topology = Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
    type Row<'a> = (&'a str, i32, &'a str, Option<&'a str>, Option<i64>);
    let summary: Vec<Row> = topology
        .topics()
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                t.partitions,
                t.cleanup_policy.as_config(),
                t.key.as_deref(),
                t.retention_ms,
            )
        })
        .collect();
    let forever = Some(-1);
    assert_eq!(
        summary,
        [
            ("ads.impressions", 4, "delete", Some("campaign_id"), forever),
            ("ads.clicks", 4, "delete", Some("campaign_id"), forever),
            ("ads.conversions", 4, "delete", Some("user_id"), forever),
            ("ads.campaigns", 4, "compact", Some("campaign_id"), None),
            ("ads.creatives", 4, "compact", Some("creative_id"), None),
            (
                "metrics.campaign.hourly",
                4,
                "compact",
                Some("campaign_window"),
                None
            ),
            (
                "metrics.campaign.daily",
                4,
                "compact",
                Some("campaign_window"),
                None
            ),
            ("alerts.campaign", 4, "delete", Some("campaign_id"), forever),
            (
                "attribution.credits",
                4,
                "delete",
                Some("campaign_id"),
                forever
            ),
            (
                "attribution.conversions",
                4,
                "compact",
                Some("conversion_id"),
                None
            ),
            (
                "attribution.journeys",
                4,
                "delete",
                Some("user_id"),
                forever
            ),
            (
                "attribution.model_weights",
                4,
                "compact",
                Some("model_channel"),
                None
            ),
            ("fatigue.creatives", 4, "compact", Some("creative_id"), None),
            ("platform.reports", 4, "compact", Some("report_key"), None),
            ("connectors.cursors", 1, "compact", Some("cursor_key"), None),
            (
                "metrics.campaign.reconciliation",
                4,
                "compact",
                Some("campaign_window"),
                None
            ),
            (
                "alerts.reconciliation",
                4,
                "delete",
                Some("campaign_id"),
                forever
            ),
            ("alerts.creative", 4, "delete", Some("creative_id"), forever),
        ]
    );
    assert!(topology.topics().iter().all(|t| t.replication_factor == 1));
    let schemas: Vec<(&str, &str)> = topology
        .value_schemas()
        .map(|(t, s)| (t.name.as_str(), s))
        .collect();
    assert_eq!(
        schemas,
        [
            ("ads.impressions", "io.adstream.ads.AdImpression"),
            ("ads.clicks", "io.adstream.ads.AdClick"),
            ("ads.conversions", "io.adstream.ads.Conversion"),
            ("ads.campaigns", "io.adstream.ads.Campaign"),
            ("ads.creatives", "io.adstream.ads.Creative"),
            (
                "metrics.campaign.hourly",
                "io.adstream.metrics.CampaignMetrics"
            ),
            (
                "metrics.campaign.daily",
                "io.adstream.metrics.CampaignMetrics"
            ),
            ("alerts.campaign", "io.adstream.alerts.CampaignAlert"),
            (
                "attribution.credits",
                "io.adstream.attribution.AttributionCredit"
            ),
            (
                "attribution.conversions",
                "io.adstream.attribution.AttributedConversion"
            ),
            ("attribution.journeys", "io.adstream.attribution.Journey"),
            (
                "attribution.model_weights",
                "io.adstream.attribution.ModelWeight"
            ),
            ("fatigue.creatives", "io.adstream.fatigue.CreativeFatigue"),
            ("platform.reports", "io.adstream.platform.PlatformReport"),
            ("connectors.cursors", "io.adstream.platform.ConnectorCursor"),
            (
                "metrics.campaign.reconciliation",
                "io.adstream.reconciliation.CampaignReconciliation"
            ),
            (
                "alerts.reconciliation",
                "io.adstream.reconciliation.CampaignReconciliation"
            ),
            ("alerts.creative", "io.adstream.alerts.CreativeAlert"),
        ]
    );
    let processor = topology
        .processor("campaign-metrics")
        .expect("campaign-metrics");
    assert_eq!(
        processor.inputs,
        [
            "ads.impressions",
            "ads.clicks",
            "ads.campaigns",
            "attribution.credits"
        ]
    );
    assert_eq!(
        processor.outputs,
        [
            "metrics.campaign.hourly",
            "metrics.campaign.daily",
            "alerts.campaign"
        ]
    );
    assert_eq!(processor.key, "campaign_id");
}

#[test]
fn describe_prints_aligned_tables() {
    let topology = Topology::parse(VALID, "t.yaml").expect("valid");
    assert_eq!(
        topology.describe(),
        "\
t.yaml topics (4)
  topic            partitions  rf  cleanup  retention  key          value schema
  ads.impressions  4           1   delete   7d         campaign_id  io.adstream.ads.AdImpression
  ads.clicks       4           1   delete   default    campaign_id  -
  ads.campaigns    4           1   compact  -          campaign_id  -
  ads.conversions  4           1   delete   default    user_id      -

processors (1)
  processor         key          inputs -> outputs
  campaign-metrics  campaign_id  ads.impressions, ads.clicks, ads.campaigns -> ads.conversions
"
    );
}

#[test]
fn defaults_say_how_internal_topics_are_replicated() {
    let topology = Topology::parse(VALID, "t.yaml").expect("valid");
    let internal = topology.internal_topics();
    assert_eq!(internal.replication_factor, Some(1));
    assert_eq!(internal.min_insync_replicas, None);

    let three = VALID.replace(
        "defaults: { partitions: 4, replication_factor: 1 }",
        "defaults: { partitions: 4, replication_factor: 3, min_insync_replicas: 2 }",
    );
    let internal = Topology::parse(&three, "t.yaml")
        .expect("valid")
        .internal_topics();
    assert_eq!(internal.replication_factor, Some(3));
    assert_eq!(internal.min_insync_replicas, Some(2));

    let impossible = VALID.replace(
        "defaults: { partitions: 4, replication_factor: 1 }",
        "defaults: { partitions: 4, replication_factor: 1, min_insync_replicas: 2 }",
    );
    assert_eq!(
        errors(&impossible),
        ["t.yaml:1:72: defaults: min_insync_replicas (2) is more than replication_factor (1)"]
    );
}

#[test]
fn a_processor_names_its_job_or_is_named_after_it() {
    let topology = Topology::parse(VALID, "t.yaml").expect("valid");
    let processor = topology.processor("campaign-metrics").expect("declared");
    assert_eq!(
        (processor.job.as_deref(), processor.job_name()),
        (None, "campaign-metrics")
    );
    let renamed = VALID.replace(
        "  - name: campaign-metrics\n",
        "  - name: eu-metrics\n    job: campaign-metrics\n",
    );
    let topology = Topology::parse(&renamed, "t.yaml").expect("valid");
    let processor = topology.processor("eu-metrics").expect("declared");
    assert_eq!(processor.job_name(), "campaign-metrics");
}
