//! `adstream schemas register|check`: the data engineer's schema workflow.
//!
//! Local `.avsc` files are matched to topics through the topology (`value_schema` names the record's full name)
//! and to registry subjects through TopicNameStrategy (`<topic>-value`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use adstream_kafka::registry_client::{RegistryClient, DEFAULT_TIMEOUT};
use adstream_topology::Topology;
use anyhow::{bail, Context, Result};
use apache_avro::Schema;
use clap::Args;

use crate::config::Settings;

/// Arguments shared by `register` and `check`.
#[derive(Args)]
pub struct SchemaArgs {
    /// Folder with the `.avsc` files.
    #[arg(long, default_value = "schemas")]
    dir: PathBuf,
}

/// A local schema file.
struct LocalSchema {
    path: PathBuf,
    text: String,
}

/// Reads every `.avsc` in `dir`, keyed by the record's full name; a file that does not parse is an error naming it.
fn local_schemas(dir: &Path) -> Result<BTreeMap<String, LocalSchema>> {
    let mut schemas = BTreeMap::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read schema folder {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("avsc") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let schema = Schema::parse_str(&text)
            .with_context(|| format!("{}: invalid Avro schema", path.display()))?;
        let name = match &schema {
            Schema::Record(r) => r.name.fullname(None),
            Schema::Enum(e) => e.name.fullname(None),
            Schema::Fixed(f) => f.name.fullname(None),
            _ => bail!("{}: top-level schema must be a named type", path.display()),
        };
        if let Some(previous) = schemas.insert(
            name.clone(),
            LocalSchema {
                path: path.clone(),
                text,
            },
        ) {
            bail!(
                "{} and {} both define {name}",
                previous.path.display(),
                path.display()
            );
        }
    }
    Ok(schemas)
}

/// (subject, local schema) for every topology topic that declares a value schema.
fn subjects<'a>(
    topology: &Topology,
    local: &'a BTreeMap<String, LocalSchema>,
) -> Result<Vec<(String, &'a LocalSchema)>> {
    let mut out = Vec::new();
    for topic in topology.topics() {
        let Some(full_name) = topic.value_schema.as_deref() else {
            continue;
        };
        let Some(schema) = local.get(full_name) else {
            bail!(
                "topic {} declares value_schema {full_name}, but no .avsc file defines it",
                topic.name
            );
        };
        out.push((format!("{}-value", topic.name), schema));
    }
    Ok(out)
}

/// `schemas register`: registers each topic's value schema; unchanged schemas keep their id and version.
pub async fn register(settings: &Settings, topology: &Topology, args: SchemaArgs) -> Result<()> {
    let local = local_schemas(&args.dir)?;
    let client = RegistryClient::connect(&settings.registry, DEFAULT_TIMEOUT)?;
    for (subject, schema) in subjects(topology, &local)? {
        let existing = client.lookup(&subject, &schema.text).await?;
        let id = client
            .register(&subject, &schema.text)
            .await
            .with_context(|| format!("registering {} as {subject}", schema.path.display()))?;
        match existing {
            Some((_, version)) => {
                println!("= {subject:<28} id {id:<4} version {version} (unchanged)")
            }
            None => println!(
                "+ {subject:<28} id {id:<4} registered from {}",
                schema.path.display()
            ),
        }
    }
    Ok(())
}

/// `schemas check`: asks the registry whether each local schema is compatible under its subject's level; exits
/// non-zero with a per-field explanation when one is not.
pub async fn check(settings: &Settings, topology: &Topology, args: SchemaArgs) -> Result<()> {
    let local = local_schemas(&args.dir)?;
    let client = RegistryClient::connect(&settings.registry, DEFAULT_TIMEOUT)?;
    let mut incompatible = 0;
    for (subject, schema) in subjects(topology, &local)? {
        let level = client.config(&subject).await?;
        let verdict = client
            .check_compatibility(&subject, &schema.text, true)
            .await?;
        if verdict.is_compatible {
            println!(
                "ok   {subject:<28} compatible under {level} ({})",
                schema.path.display()
            );
        } else {
            incompatible += 1;
            println!(
                "FAIL {subject:<28} incompatible under {level} ({})",
                schema.path.display()
            );
            for message in &verdict.messages {
                println!("       - {message}");
            }
        }
    }
    if incompatible > 0 {
        bail!("{incompatible} schema(s) are incompatible with the registry");
    }
    Ok(())
}
