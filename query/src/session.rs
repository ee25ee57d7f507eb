//! Opening the topics for queries: a source with a client config and registry, a session over every topology
//! topic, and the statements a query may run.

use std::sync::Arc;
use std::time::Duration;

use adstream_kafka::registry_client::RegistrySettings;
use adstream_topology::Topology;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use rdkafka::ClientConfig;

use crate::catalog;
use crate::source::KafkaSource;
use crate::QueryError;

/// Why a session over the topology's topics could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A topic could not be registered as a table.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The thread registering the tables panicked or was cancelled.
    #[error("the catalog thread failed")]
    Thread(#[from] tokio::task::JoinError),
}

/// A Kafka source reading with `config` and decoding with `registry`'s schemas; a time-range query
/// finds records written up to `max_lateness` behind newer records of their partition.
pub fn open_source(
    config: ClientConfig,
    registry: &RegistrySettings,
    max_lateness: Duration,
) -> Result<Arc<KafkaSource>, QueryError> {
    let source = KafkaSource::new(config, registry.clone())?.with_max_lateness(max_lateness);
    Ok(Arc::new(source))
}

/// A session over every topology topic. Metadata and registry calls block, so they run off the async threads.
pub async fn open_session(
    source: &Arc<KafkaSource>,
    topology: &Topology,
) -> Result<SessionContext, SessionError> {
    let source = source.clone();
    let topology = topology.clone();
    let (ctx, _) =
        tokio::task::spawn_blocking(move || catalog::session_for_topology(&source, &topology))
            .await??;
    Ok(ctx)
}

/// Read-only: no DDL (`CREATE EXTERNAL TABLE`, `DROP`), no DML (`INSERT`, `COPY ... TO`), no `SET`.
pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}
