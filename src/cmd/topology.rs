//! `adstream topology apply|describe`.

use std::time::Duration;

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

/// `topology describe`.
pub fn describe(topology: &Topology) {
    print!("{}", topology.describe());
}
