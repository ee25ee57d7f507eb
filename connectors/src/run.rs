//! Running one platform's connector: the source and sink built from the config, then sync passes until stopped
//! (or one pass with `once`).

use std::future::Future;
use std::time::Duration;

use adstream_kafka::registry_client::RegistrySettings;
use adstream_schemas::events::Platform;
use rdkafka::ClientConfig;

use crate::config::{ConnectorsConfig, PlatformConfig};
use crate::google_ads::GoogleAds;
use crate::http::{Http, SourceError};
use crate::linkedin::Linkedin;
use crate::meta::Meta;
use crate::sink::{KafkaSink, SinkError, SinkSettings};
use crate::source::{Account, ReportSource};
use crate::sync::{AccountSummary, Connector, SyncError, SyncSettings};
use crate::tiktok::Tiktok;

/// Why a connector stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(#[from] SourceError),
    /// Kafka or the registry could not be set up, or the cursors not read.
    #[error("{0}")]
    Sink(#[from] SinkError),
    /// Accounts failed (all of them listed, one per line).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Sync(Vec<SyncError>),
}

/// Where the connector writes and how it runs.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Base Kafka client config.
    pub kafka: ClientConfig,
    /// The schema registry.
    pub registry: RegistrySettings,
    /// One pass, then return (instead of passing every `poll_interval_secs` until `shutdown`).
    pub once: bool,
}

/// The config section of `platform`.
fn section(config: &ConnectorsConfig, platform: Platform) -> Result<&PlatformConfig, SourceError> {
    let (found, name) = match platform {
        Platform::GoogleAds => (&config.google_ads, "google_ads"),
        Platform::Meta => (&config.meta, "meta"),
        Platform::Tiktok => (&config.tiktok, "tiktok"),
        Platform::Linkedin => (&config.linkedin, "linkedin"),
        Platform::Unknown => (&None, "unknown"),
    };
    found.as_ref().ok_or_else(|| {
        SourceError::Config(format!("the connectors config has no `{name}:` section"))
    })
}

/// Runs `platform`'s connector until `shutdown` resolves (or for one pass); `progress` hears of every account's
/// pass. With `once`, any failed account fails the run; otherwise passes go on after retriable failures (throttling,
/// outages) and stop on the others (credentials, refusals, Kafka fencing, an unknown commit outcome).
pub async fn run(
    platform: Platform,
    config: &ConnectorsConfig,
    settings: RunSettings,
    progress: impl FnMut(&AccountSummary),
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let section = section(config, platform)?;
    let http = Http::new(&config.http)?;
    match platform {
        Platform::GoogleAds => {
            run_source(
                GoogleAds::new(http, section)?,
                config,
                section,
                settings,
                progress,
                shutdown,
            )
            .await
        }
        Platform::Meta => {
            run_source(
                Meta::new(http, section)?,
                config,
                section,
                settings,
                progress,
                shutdown,
            )
            .await
        }
        Platform::Tiktok => {
            run_source(
                Tiktok::new(http, section)?,
                config,
                section,
                settings,
                progress,
                shutdown,
            )
            .await
        }
        Platform::Linkedin => {
            run_source(
                Linkedin::new(http, section)?,
                config,
                section,
                settings,
                progress,
                shutdown,
            )
            .await
        }
        Platform::Unknown => {
            Err(SourceError::Config("no connector for an unknown platform".into()).into())
        }
    }
}

async fn run_source<S: ReportSource>(
    source: S,
    config: &ConnectorsConfig,
    section: &PlatformConfig,
    settings: RunSettings,
    mut progress: impl FnMut(&AccountSummary),
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let platform = source.platform();
    if section.accounts.is_empty() {
        return Err(
            SourceError::Config(format!("{}: no accounts to sync", platform.slug())).into(),
        );
    }
    let accounts = section
        .accounts
        .iter()
        .map(Account::from_config)
        .collect::<Result<Vec<_>, _>>()?;
    let sink = KafkaSink::open(SinkSettings {
        kafka: settings.kafka.clone(),
        registry: settings.registry.clone(),
        topics: config.topics.clone(),
        transactional_id: format!("{}-{}", config.transactional_id_prefix, platform.slug()),
    })
    .await?;
    let mut connector = Connector::resume(
        source,
        sink,
        accounts,
        SyncSettings {
            start_date: section.start_date,
            end_date: section.end_date,
            lookback_days: section.lookback_days,
        },
    )
    .await?;
    tokio::pin!(shutdown);
    loop {
        // Cancelling a pass is safe at any await: commits happen inside a blocking call, between awaits, and an
        // uncommitted page is read again by the next run.
        let outcomes = tokio::select! {
            outcomes = connector.sync_pass() => outcomes,
            () = &mut shutdown => return Ok(()),
        };
        let mut failed = Vec::new();
        for outcome in outcomes {
            match outcome {
                Ok(summary) => progress(&summary),
                Err(error) => failed.push(error),
            }
        }
        if settings.once && !failed.is_empty() || failed.iter().any(|e| !e.is_retriable()) {
            return Err(RunError::Sync(failed));
        }
        if settings.once {
            return Ok(());
        }
        for error in &failed {
            tracing::warn!(%error, "account sync failed, trying again next pass");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(config.poll_interval_secs)) => {}
            () = &mut shutdown => return Ok(()),
        }
    }
}
