use adstream_topology::Topology;

use clap::Args;

use super::*;

fn topology() -> Topology {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../topology/adstream.yaml"
    ))
    .expect("the project's topology file");
    Topology::parse(&text, "adstream.yaml").expect("parses")
}

#[test]
fn every_builtin_job_connects_to_its_processor_in_the_projects_topology() {
    let topology = topology();
    for job in JobRegistry::builtin().jobs() {
        let wiring = Wiring::resolve(&topology, job.name(), job.ports())
            .unwrap_or_else(|e| panic!("{}: {e}", job.name()));
        let stages = job
            .stages_from_yaml("", &wiring)
            .unwrap_or_else(|e| panic!("{}: {e}", job.name()));
        assert!(!stages.is_empty(), "{}", job.name());
        assert_eq!(
            stages.last().map(|s| s.application_id.as_str()),
            Some(job.name())
        );
    }
}

#[test]
fn ports_are_found_by_record_and_name_part() {
    let topology = topology();
    let metrics = JobRegistry::builtin()
        .get("campaign-metrics")
        .expect("registered");
    let wiring = Wiring::resolve(&topology, "campaign-metrics", metrics.ports()).expect("wires");
    assert_eq!(wiring.optional("hourly"), Some("metrics.campaign.hourly"));
    assert_eq!(wiring.optional("daily"), Some("metrics.campaign.daily"));
    assert_eq!(wiring.optional("credits"), Some("attribution.credits"));
    assert_eq!(wiring.partitions("impressions"), Ok(4));
    let attribution = JobRegistry::builtin()
        .get("attribution")
        .expect("registered");
    let stages = attribution
        .stages_from_yaml(
            "",
            &Wiring::resolve(&topology, "attribution", attribution.ports()).expect("wires"),
        )
        .expect("builds");
    let ids: Vec<&str> = stages.iter().map(|s| s.application_id.as_str()).collect();
    assert_eq!(ids, ["attribution-repartition", "attribution"]);
}

#[test]
fn wiring_errors_name_the_processor_and_what_is_missing() {
    let text = "defaults: { partitions: 2, replication_factor: 1 }\ntopics:\n  - name: a.clicks\n    value_schema: io.adstream.ads.AdClick\n    key: campaign_id\n\
                processors:\n  - name: creative-fatigue\n    inputs: [a.clicks]\n    outputs: []\n    key: campaign_id\n";
    let topology = Topology::parse(text, "t.yaml").expect("parses");
    let fatigue = JobRegistry::builtin()
        .get("creative-fatigue")
        .expect("registered");
    let missing = Wiring::resolve(&topology, "creative-fatigue", fatigue.ports())
        .expect_err("no impressions");
    assert!(
        missing.to_string().contains("creative-fatigue")
            && missing.to_string().contains("io.adstream.ads.AdImpression"),
        "{missing}"
    );
    let unknown =
        Wiring::resolve(&topology, "nope", fatigue.ports()).expect_err("no such processor");
    assert!(unknown.to_string().contains("'nope'"), "{unknown}");
}

#[test]
fn settings_come_from_flags_or_yaml_with_the_same_defaults() {
    for job in JobRegistry::builtin().jobs() {
        let command = job.augment_args(clap::Command::new(job.name()));
        let matches = command
            .try_get_matches_from([job.name()])
            .unwrap_or_else(|e| panic!("{}: {e}", job.name()));
        let wiring = Wiring::resolve(&topology(), job.name(), job.ports()).expect("wires");
        job.stages_from_args(&matches, &wiring)
            .unwrap_or_else(|e| panic!("{}: {e}", job.name()));
        // The defaults printed as YAML read back.
        job.stages_from_yaml(&job.default_settings_yaml(), &wiring)
            .unwrap_or_else(|e| panic!("{}: {e}", job.name()));
    }
    let from_flags = crate::campaign_metrics::job::CampaignMetricsSettings::augment_args(
        clap::Command::new("m"),
    )
    .try_get_matches_from(["m", "--attribution-model", "time-decay", "--emit", "final"])
    .expect("parses");
    let settings = <crate::campaign_metrics::job::CampaignMetricsSettings as clap::FromArgMatches>::from_arg_matches(&from_flags)
        .expect("settings");
    let from_yaml: crate::campaign_metrics::job::CampaignMetricsSettings =
        settings_from_yaml("attribution_model: time-decay\nemit: final\n").expect("settings");
    assert_eq!(settings, from_yaml);
    let typo = settings_from_yaml::<crate::campaign_metrics::job::CampaignMetricsSettings>(
        "grace_sec: 5\n",
    )
    .expect_err("unknown field");
    assert!(typo.to_string().contains("grace_sec"), "{typo}");
}

#[test]
fn alert_tiers_come_from_flags_or_yaml_and_bad_ones_are_refused_with_the_field() {
    use crate::campaign_metrics::job::CampaignMetricsSettings;
    let from_flags = CampaignMetricsSettings::augment_args(clap::Command::new("m"))
        .try_get_matches_from([
            "m",
            "--cpa-tiers",
            "0%:low,50%:critical",
            "--budget-tiers",
            "80%:high",
        ])
        .expect("parses");
    let settings = <CampaignMetricsSettings as clap::FromArgMatches>::from_arg_matches(&from_flags)
        .expect("settings");
    let from_yaml: CampaignMetricsSettings = settings_from_yaml(
        "alert_rules:\n  cpa_tiers: 0%:low,50%:critical\n  budget_tiers: 80%:high\n",
    )
    .expect("settings");
    assert_eq!(settings, from_yaml);
    assert_eq!(
        settings.alert_rules.cpa_tiers.to_string(),
        "0%:low,50%:critical"
    );
    // The rules not given keep their defaults.
    assert_eq!(
        settings.alert_rules.pacing_tiers.to_string(),
        "10%:low,20%:medium,30%:high"
    );

    let flag = CampaignMetricsSettings::augment_args(clap::Command::new("m"))
        .try_get_matches_from(["m", "--cpa-tiers", "50%:high,25%:critical"])
        .expect_err("decreasing levels");
    assert!(
        flag.to_string()
            .contains("levels must increase from tier to tier"),
        "{flag}"
    );
    let yaml = settings_from_yaml::<CampaignMetricsSettings>(
        "alert_rules:\n  roas_tiers: 10%:critical,20%:low\n",
    )
    .expect_err("decreasing severities");
    assert!(
        yaml.to_string()
            .contains("alert_rules.roas_tiers: tiers '10%:critical,20%:low'")
            && yaml.to_string().contains("severities must increase"),
        "{yaml}"
    );
    let typo = settings_from_yaml::<CampaignMetricsSettings>("alert_rules:\n  cpa_tier: 5%:low\n")
        .expect_err("unknown field");
    assert!(typo.to_string().contains("cpa_tier"), "{typo}");

    // A pacing tier at 0 % parses but is refused when the job is built.
    let metrics = JobRegistry::builtin()
        .get("campaign-metrics")
        .expect("registered");
    let wiring = Wiring::resolve(&topology(), metrics.name(), metrics.ports()).expect("wires");
    let Err(refused) =
        metrics.stages_from_yaml("alert_rules:\n  pacing_tiers: 0%:low,30%:high\n", &wiring)
    else {
        panic!("a pacing tier at 0 % was accepted")
    };
    assert_eq!(
        refused.to_string(),
        "alert_rules.pacing_tiers: the first level must be above 0%, got '0%:low,30%:high'"
    );
}

#[test]
fn a_stage_lists_the_internal_topics_it_creates() {
    let topology = topology();
    let attribution = JobRegistry::builtin()
        .get("attribution")
        .expect("registered");
    let wiring = Wiring::resolve(&topology, "attribution", attribution.ports()).expect("wires");
    let mut stages = attribution.stages_from_yaml("", &wiring).expect("builds");
    let repartition = stages[0].internal_topics();
    assert!(
        repartition.contains(&"attribution-repartition".to_owned()),
        "{repartition:?}"
    );
    assert!(
        repartition.contains(&"dlq.ads.clicks".to_owned()),
        "{repartition:?}"
    );
    let attribution = stages[1].internal_topics();
    assert!(
        attribution.contains(&"attribution-touches-changelog".to_owned())
            && attribution.contains(&"late.ads.conversions".to_owned()),
        "{attribution:?}"
    );
}
