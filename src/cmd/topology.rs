//! `adstream topology apply|describe`.

use std::time::Duration;

use adstream_processors::jobs::{JobRegistry, Wiring};
use adstream_topology::Topology;
use anyhow::{Context, Result};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;

use crate::config::Settings;

/// How long admin requests may take before the command gives up with an error.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// `topology apply [--dry-run]`: prints the plan, then (unless dry-run) applies it.
pub async fn apply(settings: &Settings, topology: &Topology, dry_run: bool) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = settings
        .kafka_config()
        .create()
        .context("invalid Kafka client configuration")?;
    let plan = adstream_topology::plan(&admin, topology, ADMIN_TIMEOUT).await?;
    print!("{plan}");
    if dry_run {
        println!("dry run: nothing changed");
        return Ok(());
    }
    let report = adstream_topology::apply(&admin, &plan, ADMIN_TIMEOUT).await?;
    println!("{report}");
    Ok(())
}

/// `topology describe`: the topics and processors, then the job each processor runs (its `job` field, else the
/// job named like it; run with `process <job> --application-id <processor>`): how its ports connect and the
/// internal topics its stages create.
pub fn describe(topology: &Topology) {
    print!("{}", topology.describe());
    let registry = JobRegistry::builtin();
    for processor in topology.processors() {
        println!();
        let Some(job) = registry.job_of(processor) else {
            println!(
                "processor {}: no job named {} (jobs: {}); name one with `job:` in its entry",
                processor.name,
                processor.job_name(),
                registry
                    .jobs()
                    .iter()
                    .map(|j| j.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            continue;
        };
        println!("processor {} runs job {}", processor.name, job.name());
        let wiring = match Wiring::resolve(topology, &processor.name, job.ports()) {
            Ok(wiring) => wiring,
            Err(e) => {
                println!("  cannot connect its ports: {e}");
                continue;
            }
        };
        for (role, topic) in wiring.topics() {
            println!("  {role:<12} {topic}");
        }
        match job.stages_from_yaml("", &wiring) {
            Ok(stages) => {
                for mut stage in stages {
                    let internal = stage.internal_topics().join(", ");
                    println!("  stage {} creates: {internal}", stage.application_id);
                }
            }
            Err(e) => println!("  cannot build its stages: {e}"),
        }
    }
}
