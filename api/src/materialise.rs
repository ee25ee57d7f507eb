//! Fills the [`Hub`]'s tables from the source topics and keeps them current.
//!
//! One consumer on its own thread reads every partition of every source from the beginning, `read_committed`
//! (exactly-once outputs appear when their transaction commits, aborted ones never), with partitions assigned by
//! hand: no consumer group is joined and nothing is committed, so any number of API servers can run. Once every
//! partition reported its end once, the hub is marked ready (`/readyz`); the consumer then tails the topics.
//!
//! Watermark markers (progress announcements of the processors' runtime) are skipped. A record that does not
//! decode is logged with its position and skipped; the server keeps serving. A record whose writer schema cannot
//! be fetched because the registry is unavailable is retried after a pause.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use adstream_kafka::read::{partition_count, read_to_end, reader_config, ReadError, ReadOptions};
use adstream_kafka::registry_client::{RegistryClient, RegistrySettings, DEFAULT_TIMEOUT};
use adstream_kafka::QuietEof;
use adstream_processors::runtime::{DecodeError, SchemaCache, TypedDecoder};
use adstream_schemas::events::{AvroRecord, Campaign};
use adstream_schemas::outputs::{
    AttributionCredit, CampaignAlert, CampaignMetrics, CreativeAlert, CreativeFatigue,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tracing::{error, info, info_span, warn};

use crate::settings::{SourceKind, Sources};
use crate::store::{Hub, Update};

/// Why the tables cannot be materialised.
#[derive(Debug, thiserror::Error)]
pub enum MaterialiseError {
    /// The topology names no topic the API serves.
    #[error("the topology has no topic with a value schema the API serves (campaign metrics, campaign and creative alerts, fatigue, credits, campaigns)")]
    NoSources,
    /// A source topic does not exist.
    #[error("topic '{0}' does not exist: create it with `adstream topology apply`")]
    MissingTopic(String),
    /// Kafka could not be reached or the consumer not set up.
    #[error("{0}")]
    Kafka(String),
    /// A decoder or the registry client could not be built.
    #[error("{0}")]
    Setup(String),
}

/// How long the start-up waits for a topic's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to pause before retrying a record whose writer schema the registry could not give.
const REGISTRY_RETRY: Duration = Duration::from_millis(500);

/// The decoders of the source kinds and the writer schemas they share.
struct Decoders {
    cache: SchemaCache,
    by_kind: HashMap<SourceKind, TypedDecoder>,
}

impl Decoders {
    fn new(
        registry: RegistryClient,
        runtime: tokio::runtime::Handle,
    ) -> Result<Decoders, MaterialiseError> {
        let mut by_kind = HashMap::new();
        for (kind, name, schema) in [
            (SourceKind::Campaigns, Campaign::FULL_NAME, Campaign::SCHEMA),
            (
                SourceKind::Metrics,
                CampaignMetrics::FULL_NAME,
                CampaignMetrics::SCHEMA,
            ),
            (
                SourceKind::Alerts,
                CampaignAlert::FULL_NAME,
                CampaignAlert::SCHEMA,
            ),
            (
                SourceKind::Fatigue,
                CreativeFatigue::FULL_NAME,
                CreativeFatigue::SCHEMA,
            ),
            (
                SourceKind::CreativeAlerts,
                CreativeAlert::FULL_NAME,
                CreativeAlert::SCHEMA,
            ),
            (
                SourceKind::Credits,
                AttributionCredit::FULL_NAME,
                AttributionCredit::SCHEMA,
            ),
        ] {
            let decoder = TypedDecoder::new(name, schema)
                .map_err(|e| MaterialiseError::Setup(e.to_string()))?;
            by_kind.insert(kind, decoder);
        }
        Ok(Decoders {
            cache: SchemaCache::new(registry, runtime),
            by_kind,
        })
    }

    /// The update `value` (None: a tombstone) of a `kind` topic stands for; Ok(None) for a tombstone on a stream
    /// topic, which carries nothing.
    fn decode(
        &mut self,
        kind: SourceKind,
        value: Option<&[u8]>,
    ) -> Result<Option<Update>, DecodeError> {
        let Some(decoder) = self.by_kind.get_mut(&kind) else {
            return Ok(None);
        };
        let cache = &mut self.cache;
        Ok(Some(match (kind, value) {
            (SourceKind::Campaigns, None) => Update::Campaign(None),
            (SourceKind::Metrics, None) => Update::Metrics(None),
            (SourceKind::Fatigue, None) => Update::Fatigue(None),
            (SourceKind::Alerts | SourceKind::CreativeAlerts | SourceKind::Credits, None) => {
                return Ok(None)
            }
            (SourceKind::Campaigns, value) => Update::Campaign(Some(decoder.decode(cache, value)?)),
            (SourceKind::Metrics, value) => Update::Metrics(Some(decoder.decode(cache, value)?)),
            (SourceKind::Alerts, value) => Update::Alert(decoder.decode(cache, value)?),
            (SourceKind::CreativeAlerts, value) => {
                Update::CreativeAlert(decoder.decode(cache, value)?)
            }
            (SourceKind::Fatigue, value) => Update::Fatigue(Some(decoder.decode(cache, value)?)),
            (SourceKind::Credits, value) => Update::Credit(decoder.decode(cache, value)?),
        }))
    }
}

/// Watermark markers (see the processors' runtime) are progress announcements, not data.
fn is_watermark_marker(message: &BorrowedMessage<'_>) -> bool {
    message.payload().is_none()
        && message
            .headers()
            .is_some_and(|headers| headers.iter().any(|h| h.key == "adstream_watermark"))
}

/// Starts the consumer thread: checks that every source topic exists (failing at once, before the thread starts,
/// when one is missing or Kafka cannot be reached), then, on the thread, reads each source to its end, marks `hub`
/// ready, and tails every partition until `shutdown`. `runtime` serves the registry's rare schema fetches.
pub fn spawn(
    sources: &Sources,
    kafka: &ClientConfig,
    registry: &RegistrySettings,
    hub: Arc<Hub>,
    runtime: tokio::runtime::Handle,
    shutdown: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, MaterialiseError> {
    if sources.topics.is_empty() {
        return Err(MaterialiseError::NoSources);
    }
    let mut config = reader_config(kafka, &format!("adstream-api-{}", std::process::id()), true);
    // The tail waits for new records up to this long per fetch; a record that arrives is answered at once.
    config.set("fetch.wait.max.ms", "100");
    let consumer: BaseConsumer<QuietEof> = config
        .create_with_context(QuietEof)
        .map_err(|e| MaterialiseError::Kafka(format!("cannot create the consumer: {e}")))?;
    let mut partitions = Vec::new();
    for (topic, kind) in &sources.topics {
        let count = partition_count::<_, String>(&consumer, topic, METADATA_TIMEOUT)
            .map_err(|e| MaterialiseError::Kafka(e.to_string()))?
            .ok_or_else(|| MaterialiseError::MissingTopic(topic.clone()))?;
        partitions.push((topic.clone(), *kind, count));
    }
    let registry = RegistryClient::connect(registry, DEFAULT_TIMEOUT)
        .map_err(|e| MaterialiseError::Setup(e.to_string()))?;
    let decoders = Decoders::new(registry, runtime)?;
    std::thread::Builder::new()
        .name("api-materialise".to_owned())
        .spawn(move || {
            let span = info_span!("materialise");
            let _entered = span.enter();
            let mut reader = Reader {
                consumer,
                handler: Handler {
                    decoders,
                    hub,
                    shutdown,
                    undecodable: 0,
                },
            };
            if let Some(positions) = reader.catch_up(&partitions) {
                reader.tail(positions);
            }
        })
        .map_err(|e| MaterialiseError::Setup(format!("cannot start the consumer thread: {e}")))
}

/// The consumer thread's state.
struct Reader {
    consumer: BaseConsumer<QuietEof>,
    handler: Handler,
}

/// What is done with each record read.
struct Handler {
    decoders: Decoders,
    hub: Arc<Hub>,
    shutdown: Arc<AtomicBool>,
    undecodable: u64,
}

impl Reader {
    /// Reads every source to its end (one topic after the other) and marks the hub ready; returns where each
    /// partition goes on from (None: shut down or failed, logged).
    fn catch_up(
        &mut self,
        sources: &[(String, SourceKind, i32)],
    ) -> Option<Vec<(String, SourceKind, i32, Offset)>> {
        let options = ReadOptions {
            tolerate_errors: true,
            ..ReadOptions::default()
        };
        let mut positions = Vec::new();
        for (topic, kind, count) in sources {
            let all: Vec<i32> = (0..*count).collect();
            let mut next: HashMap<i32, i64> = HashMap::new();
            let handler = &mut self.handler;
            let read = read_to_end(&self.consumer, topic, &all, &options, |message| {
                next.insert(message.partition(), message.offset() + 1);
                handler.handle(*kind, message);
                if handler.shutdown.load(Ordering::Relaxed) {
                    return Err("shutdown");
                }
                Ok(())
            });
            match read {
                Ok(records) => info!(topic, records, "source read to its end"),
                Err(ReadError::Record(_)) => return None,
                Err(error) => {
                    error!(topic, %error, "cannot read the source: the API stays not ready");
                    return None;
                }
            }
            positions.extend(all.iter().map(|p| {
                let from = next
                    .get(p)
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                (topic.clone(), *kind, *p, from)
            }));
        }
        self.handler.hub.set_ready();
        info!(
            undecodable = self.handler.undecodable,
            "caught up with every source: ready"
        );
        Some(positions)
    }

    /// Follows every partition from `positions` until shutdown.
    fn tail(&mut self, positions: Vec<(String, SourceKind, i32, Offset)>) {
        let mut assignment = TopicPartitionList::new();
        let mut kinds = HashMap::new();
        for (topic, kind, partition, offset) in &positions {
            if let Err(error) = assignment.add_partition_offset(topic, *partition, *offset) {
                error!(topic, partition, %error, "cannot follow the partition");
            }
            kinds.insert(topic.clone(), *kind);
        }
        if let Err(error) = self.consumer.assign(&assignment) {
            error!(%error, "cannot follow the sources: updates stop");
            return;
        }
        while !self.handler.shutdown.load(Ordering::Relaxed) {
            match self.consumer.poll(Duration::from_millis(100)) {
                None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(error)) => warn!(%error, "consumer error"),
                Some(Ok(message)) => {
                    if let Some(&kind) = kinds.get(message.topic()) {
                        self.handler.handle(kind, &message);
                    }
                }
            }
        }
    }
}

impl Handler {
    /// Decodes and applies one record; a record whose writer schema the registry cannot give now is retried until
    /// it can or the server stops.
    fn handle(&mut self, kind: SourceKind, message: &BorrowedMessage<'_>) {
        if is_watermark_marker(message) {
            return;
        }
        loop {
            match self.decoders.decode(kind, message.payload()) {
                Ok(Some(update)) => self.hub.apply(message.key().unwrap_or_default(), update),
                Ok(None) => {}
                Err(error) if error.is_transient() && !self.shutdown.load(Ordering::Relaxed) => {
                    warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(),
                          %error, "registry unavailable: retrying the record");
                    std::thread::sleep(REGISTRY_RETRY);
                    continue;
                }
                Err(error) => {
                    self.undecodable += 1;
                    warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(),
                          %error, "undecodable record skipped");
                }
            }
            return;
        }
    }
}
