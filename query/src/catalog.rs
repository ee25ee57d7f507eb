//! Every topic of the topology as SQL tables in one DataFusion session.
//!
//! - `public."<topic>"`: compacted topics (the processors' outputs, `ads.campaigns`) as their latest value per key,
//!   other topics (the event streams) as their history. Names are the topology's, quoted in SQL because they
//!   contain dots: `SELECT * FROM "metrics.campaign.hourly"`.
//! - `history."<topic>"`: every topic's full history, compacted ones included (every version of every key that
//!   compaction has not removed yet).
//!
//! Value columns come from the latest schema registered under `<topic>-value`; a topic with none registered yet
//! is skipped with a warning (nothing was ever written to it by adstream).

use std::sync::Arc;

use adstream_topology::Topology;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::source::KafkaSource;
use crate::table::{TableMode, TopicTable};
use crate::QueryError;

/// The SQL catalog (database) name.
pub const CATALOG: &str = "adstream";
/// The schema of the default tables.
pub const PUBLIC: &str = "public";
/// The schema of the full-history tables.
pub const HISTORY: &str = "history";

/// One registered table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredTable {
    /// Schema name (`public` or `history`).
    pub schema: String,
    /// Table name (the topic).
    pub name: String,
    /// History or latest per key.
    pub latest_per_key: bool,
}

/// A session whose default catalog is [`CATALOG`] with the schemas [`PUBLIC`] and [`HISTORY`], and
/// `information_schema` on (BI tools list tables through it).
pub fn new_session() -> Result<SessionContext, QueryError> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema(CATALOG, PUBLIC)
        .with_create_default_catalog_and_schema(true);
    let ctx = SessionContext::new_with_config(config);
    let catalog = ctx.catalog(CATALOG).ok_or_else(|| QueryError::Schema {
        topic: String::new(),
        message: format!("catalog {CATALOG} was not created"),
    })?;
    catalog
        .register_schema(HISTORY, Arc::new(MemorySchemaProvider::new()))
        .map_err(|e| QueryError::Schema {
            topic: String::new(),
            message: e.to_string(),
        })?;
    Ok(ctx)
}

/// Registers every topology topic that has a value schema (see the module doc); returns what was registered.
pub fn register_topology(
    ctx: &SessionContext,
    source: &Arc<KafkaSource>,
    topology: &Topology,
) -> Result<Vec<RegisteredTable>, QueryError> {
    let mut registered = Vec::new();
    for (topic, _) in topology.value_schemas() {
        let reader = match source.latest_schema(&format!("{}-value", topic.name)) {
            Ok((_, schema)) => schema,
            Err(QueryError::Registry { message, .. }) if message.starts_with("no schema") => {
                tracing::warn!(topic = %topic.name, "no value schema registered yet; the topic is not a table");
                continue;
            }
            Err(e) => return Err(e),
        };
        let compacted = topic.cleanup_policy.is_compacted();
        let tables = [
            (
                PUBLIC,
                if compacted {
                    TableMode::LatestPerKey
                } else {
                    TableMode::History
                },
            ),
            (HISTORY, TableMode::History),
        ];
        // A processor's output is stamped with event times in no order (each row with its window's start, a
        // commit writing many windows); every other topic is an event stream, written roughly in time order.
        let written_by_processor = topology
            .processors()
            .iter()
            .any(|p| p.outputs.contains(&topic.name));
        for (schema, mode) in tables {
            let mut table = TopicTable::new(source.clone(), &topic.name, reader.clone(), mode)?;
            if !written_by_processor {
                table = table.in_timestamp_order();
            }
            ctx.register_table(
                TableReference::full(CATALOG, schema, topic.name.as_str()),
                Arc::new(table),
            )
            .map_err(|e| QueryError::Schema {
                topic: topic.name.clone(),
                message: e.to_string(),
            })?;
            registered.push(RegisteredTable {
                schema: schema.to_owned(),
                name: topic.name.clone(),
                latest_per_key: mode == TableMode::LatestPerKey,
            });
        }
    }
    Ok(registered)
}

/// A new session ([`new_session`]) with every topology topic registered ([`register_topology`]).
pub fn session_for_topology(
    source: &Arc<KafkaSource>,
    topology: &Topology,
) -> Result<(SessionContext, Vec<RegisteredTable>), QueryError> {
    let ctx = new_session()?;
    let registered = register_topology(&ctx, source, topology)?;
    Ok((ctx, registered))
}
