//! The Kafka producer for adstream events.
//!
//! - **Idempotent and ordered**: `enable.idempotence=true`, `acks=all`; librdkafka retries transient errors itself
//!   without reordering or duplicating.
//! - **Batched and compressed**: lz4, 20 ms linger, large batches; records are handed to librdkafka's queue and
//!   a background thread polls delivery reports, so the hot loop makes no syscall per record.
//! - **Keyed** by [`AvroRecord::key`]: campaign id for ad events, user id for conversions, the entity id for
//!   compacted reference data.
//! - **Confluent wire format**: magic byte 0, big-endian schema id, Avro binary (framed by
//!   `adstream_schemas::wire`). Schema ids come from the registry through `adstream_kafka::registry_client`
//!   (TopicNameStrategy, registering the contract's schema if the subject does not have it yet); the Avro body is written straight from serde with apache-avro's schema-aware serializer,
//!   which skips the intermediate `Value` tree that `encode_struct` builds per record.
//! - **Timestamps and headers**: the record timestamp is the event time; CloudEvents Kafka-binding headers
//!   (`ce_specversion`, `ce_id`, `ce_type`, `ce_source`, `ce_time`, `content-type`) and `correlation_id`.
//! - **Nothing swallowed**: every failed delivery is counted and the first failures are kept; [`EventProducer::flush`]
//!   returns an error if any record was not delivered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adstream_kafka::produce::send_waiting_for_room;
use adstream_kafka::registry_client::{RegistryClient, RegistrySettings};
use adstream_schemas::events::AvroRecord;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use chrono::{DateTime, SecondsFormat};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message};

/// How many failed deliveries keep their error message for the final report.
const KEPT_FAILURES: usize = 5;
/// CloudEvents spec version written in `ce_specversion`.
pub const CLOUDEVENTS_SPEC_VERSION: &str = "1.0";
/// `content-type` header value: Avro in Confluent's wire format.
pub const CONTENT_TYPE: &str = "application/vnd.confluent.avro";
/// Header carrying the correlation id that processors propagate to what they emit.
pub const CORRELATION_ID_HEADER: &str = "correlation_id";

/// Errors while producing.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The Kafka client could not be created (usually a bad librdkafka property).
    #[error("invalid Kafka client configuration: {0}")]
    Config(#[source] KafkaError),
    /// The broker did not answer a metadata request in time.
    #[error("cannot reach Kafka at {bootstrap}: {source}")]
    Unreachable {
        /// The configured bootstrap servers.
        bootstrap: String,
        /// What librdkafka reported.
        #[source]
        source: KafkaError,
    },
    /// A topic the producer writes to does not exist.
    #[error("topic '{0}' does not exist (run `adstream topology apply` first)")]
    MissingTopic(String),
    /// The registry refused or could not serve the schema for a subject.
    #[error("schema registry {url}: cannot register or look up subject '{subject}': {message}")]
    Registry {
        /// Registry URL.
        url: String,
        /// Subject.
        subject: String,
        /// What went wrong.
        message: String,
    },
    /// A record does not match its schema (a bug in the caller's data, reported with the record id).
    #[error("record {id} does not match schema {schema}: {source}")]
    Encode {
        /// Record id.
        id: String,
        /// Record full name.
        schema: &'static str,
        /// apache-avro's message.
        #[source]
        source: Box<apache_avro::Error>,
    },
    /// librdkafka refused to enqueue a record (other than a full queue, which is waited out).
    #[error("cannot enqueue record {id} for topic {topic}: {source}")]
    Enqueue {
        /// Record id.
        id: String,
        /// Topic.
        topic: String,
        /// librdkafka's error (boxed: it is large and this path is cold).
        #[source]
        source: Box<KafkaError>,
    },
    /// Some records were not delivered before the flush deadline or failed permanently.
    #[error(
        "{failed} record(s) were not delivered ({delivered} delivered); first failures: {first}"
    )]
    Delivery {
        /// Failed deliveries.
        failed: u64,
        /// Successful deliveries.
        delivered: u64,
        /// The first few failure messages.
        first: String,
    },
}

/// Where each kind of record goes. The binary fills it from the topology file.
#[derive(Debug, Clone)]
pub struct EventTopics {
    /// Topic for `AdImpression`.
    pub impressions: String,
    /// Topic for `AdClick`.
    pub clicks: String,
    /// Topic for `Conversion`.
    pub conversions: String,
    /// Compacted topic for `Campaign`.
    pub campaigns: String,
    /// Compacted topic for `Creative`.
    pub creatives: String,
}

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// Base client config (bootstrap servers and pass-through properties); producer defaults are added unless the
    /// base already sets them.
    pub kafka: ClientConfig,
    /// The schema registry: URL, credentials, CA bundle.
    pub registry: RegistrySettings,
    /// Where records go.
    pub topics: EventTopics,
    /// CloudEvents `ce_source` of every record, e.g. `/adstream/generator`.
    pub source: String,
    /// Timeout for reaching the broker and the registry at start-up.
    pub connect_timeout: Duration,
}

/// Delivery outcome counters, updated by librdkafka's delivery reports.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    delivered: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl DeliveryStats {
    /// Records acknowledged by the broker.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Records that failed permanently (after librdkafka's own retries).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// librdkafka context that counts delivery reports and logs client errors.
pub struct DeliveryContext {
    stats: Arc<DeliveryStats>,
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // Transport errors are retried by librdkafka and show up as delivery failures if they persist; a fatal
        // error (e.g. an idempotence sequence violation) fails every later delivery, which is also counted.
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, message)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut failures) = self.stats.failures.lock() {
                    if failures.len() < KEPT_FAILURES {
                        failures.push(format!(
                            "{}[{}]: {error}",
                            message.topic(),
                            message.partition()
                        ));
                    }
                }
            }
        }
    }
}

/// A topic's registered schema: id for the wire format, parsed schema for encoding.
#[derive(Debug, Clone)]
pub struct TopicSchema {
    /// Topic name.
    pub topic: String,
    /// Registry id of the value schema.
    pub id: u32,
    /// Parsed value schema.
    pub schema: Schema,
}

/// Encodes records of one type into Confluent's wire format.
pub struct WireEncoder<'a> {
    topic: &'a TopicSchema,
    writer: GenericDatumWriter<'a>,
}

impl<'a> WireEncoder<'a> {
    /// Builds an encoder for `topic`; resolving the schema costs a walk over it, so build once per batch.
    pub fn new(topic: &'a TopicSchema) -> Result<Self, ProduceError> {
        let writer = GenericDatumWriter::builder(&topic.schema)
            .build()
            .map_err(|source| ProduceError::Encode {
                id: String::new(),
                schema: "(schema resolution)",
                source: Box::new(source),
            })?;
        Ok(Self { topic, writer })
    }

    /// Clears `buffer` and writes magic byte, schema id and the Avro body of `record` into it.
    pub fn encode<T: AvroRecord>(
        &self,
        record: &T,
        buffer: &mut Vec<u8>,
    ) -> Result<(), ProduceError> {
        buffer.clear();
        adstream_schemas::wire::write_header(self.topic.id, buffer);
        self.writer
            .write_ser(buffer, record)
            .map(|_| ())
            .map_err(|source| ProduceError::Encode {
                id: record.id().to_string(),
                schema: T::FULL_NAME,
                source: Box::new(source),
            })
    }

    /// The topic this encoder writes for.
    pub fn topic(&self) -> &'a str {
        &self.topic.topic
    }
}

/// The producer: one librdkafka producer plus the registered schema of each topic.
pub struct EventProducer {
    producer: ThreadedProducer<DeliveryContext>,
    stats: Arc<DeliveryStats>,
    source: String,
    /// Schemas in the order impressions, clicks, conversions, campaigns, creatives.
    pub schemas: EventSchemas,
}

/// The registered schema of every event topic.
#[derive(Debug, Clone)]
pub struct EventSchemas {
    /// `AdImpression` topic.
    pub impressions: TopicSchema,
    /// `AdClick` topic.
    pub clicks: TopicSchema,
    /// `Conversion` topic.
    pub conversions: TopicSchema,
    /// `Campaign` topic.
    pub campaigns: TopicSchema,
    /// `Creative` topic.
    pub creatives: TopicSchema,
}

/// Encoders for every event topic, built once per batch.
pub struct EventEncoders<'a> {
    /// `AdImpression`.
    pub impressions: WireEncoder<'a>,
    /// `AdClick`.
    pub clicks: WireEncoder<'a>,
    /// `Conversion`.
    pub conversions: WireEncoder<'a>,
    /// `Campaign`.
    pub campaigns: WireEncoder<'a>,
    /// `Creative`.
    pub creatives: WireEncoder<'a>,
}

impl EventSchemas {
    /// Builds one encoder per topic.
    pub fn encoders(&self) -> Result<EventEncoders<'_>, ProduceError> {
        Ok(EventEncoders {
            impressions: WireEncoder::new(&self.impressions)?,
            clicks: WireEncoder::new(&self.clicks)?,
            conversions: WireEncoder::new(&self.conversions)?,
            campaigns: WireEncoder::new(&self.campaigns)?,
            creatives: WireEncoder::new(&self.creatives)?,
        })
    }
}

/// Producer properties adstream sets unless the user's config already has them.
pub const PRODUCER_DEFAULTS: [(&str, &str); 9] = [
    ("enable.idempotence", "true"),
    // The Java client's partitioner, so that a key lands on the same partition whichever client wrote it
    // (co-partitioning with topics written by Kafka Streams or Java producers rests on it).
    ("partitioner", "murmur2_random"),
    ("acks", "all"),
    ("compression.type", "lz4"),
    ("linger.ms", "20"),
    ("batch.size", "1000000"),
    ("batch.num.messages", "10000"),
    ("queue.buffering.max.messages", "500000"),
    // The Java client's `delivery.timeout.ms`: long enough to outlast a broker's crash and restart on a replicated
    // cluster (with acks=all, a dead follower holds writes back until the controller fences it or it returns and
    // catches up, which took more than 30 s in the chaos run); bounded so that a cluster that stays away fails the
    // deliveries rather than waiting librdkafka's 5 minutes. Reaching no broker at all fails at connect, in seconds.
    ("message.timeout.ms", "120000"),
];

/// Builds a producer client config: the base config plus [`PRODUCER_DEFAULTS`] where the base is silent.
pub fn producer_config(base: &ClientConfig) -> ClientConfig {
    let mut config = base.clone();
    for (key, value) in PRODUCER_DEFAULTS {
        if config.get(key).is_none() {
            config.set(key, value);
        }
    }
    config
}

/// The CloudEvents attributes a record carries as Kafka headers (the CloudEvents Kafka protocol binding, binary
/// mode: `ce_` prefixed headers, the record's `content-type`).
#[derive(Debug, Clone, Copy)]
pub struct CloudEventAttributes<'a> {
    /// `ce_id`: the event's unique id.
    pub id: &'a str,
    /// `ce_type`, e.g. `io.adstream.ad.click.v1`.
    pub ce_type: &'a str,
    /// `ce_source`: who produced the event.
    pub source: &'a str,
    /// Event time (UTC epoch millis), written as RFC 3339 in `ce_time`.
    pub time_ms: i64,
    /// Written as the `correlation_id` header that processors propagate.
    pub correlation_id: &'a str,
}

/// The headers every adstream event record carries: CloudEvents attributes, content type, correlation id.
pub fn cloudevent_headers(attributes: &CloudEventAttributes<'_>) -> OwnedHeaders {
    let ce_time = DateTime::from_timestamp_millis(attributes.time_ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default();
    OwnedHeaders::new_with_capacity(7)
        .insert(Header {
            key: "ce_specversion",
            value: Some(CLOUDEVENTS_SPEC_VERSION),
        })
        .insert(Header {
            key: "ce_id",
            value: Some(attributes.id),
        })
        .insert(Header {
            key: "ce_type",
            value: Some(attributes.ce_type),
        })
        .insert(Header {
            key: "ce_source",
            value: Some(attributes.source),
        })
        .insert(Header {
            key: "ce_time",
            value: Some(ce_time.as_str()),
        })
        .insert(Header {
            key: "content-type",
            value: Some(CONTENT_TYPE),
        })
        .insert(Header {
            key: CORRELATION_ID_HEADER,
            value: Some(attributes.correlation_id),
        })
}

impl EventProducer {
    /// Creates the producer, checks that the broker answers and every topic exists, and registers (or looks up)
    /// the value schema of each topic under TopicNameStrategy (`<topic>-value`).
    pub async fn connect(settings: &ProducerSettings) -> Result<Self, ProduceError> {
        let stats = Arc::new(DeliveryStats::default());
        let producer: ThreadedProducer<DeliveryContext> = producer_config(&settings.kafka)
            .create_with_context(DeliveryContext {
                stats: Arc::clone(&stats),
            })
            .map_err(ProduceError::Config)?;
        let bootstrap = settings
            .kafka
            .get("bootstrap.servers")
            .unwrap_or_default()
            .to_string();
        let metadata = {
            let client = producer.client();
            let timeout = settings.connect_timeout;
            // fetch_metadata blocks; keep it off the async runtime's worker.
            tokio::task::block_in_place(|| client.fetch_metadata(None, timeout))
        }
        .map_err(|source| ProduceError::Unreachable { bootstrap, source })?;
        let topics = &settings.topics;
        for topic in [
            &topics.impressions,
            &topics.clicks,
            &topics.conversions,
            &topics.campaigns,
            &topics.creatives,
        ] {
            let exists = metadata
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none());
            if !exists {
                return Err(ProduceError::MissingTopic(topic.clone()));
            }
        }
        let registry = SchemaRegistrar::new(&settings.registry, settings.connect_timeout)?;
        use adstream_schemas::events::{AdClick, AdImpression, Campaign, Conversion, Creative};
        let schemas = EventSchemas {
            impressions: registry
                .topic_schema::<AdImpression>(&topics.impressions)
                .await?,
            clicks: registry.topic_schema::<AdClick>(&topics.clicks).await?,
            conversions: registry
                .topic_schema::<Conversion>(&topics.conversions)
                .await?,
            campaigns: registry.topic_schema::<Campaign>(&topics.campaigns).await?,
            creatives: registry.topic_schema::<Creative>(&topics.creatives).await?,
        };
        Ok(Self {
            producer,
            stats,
            source: settings.source.clone(),
            schemas,
        })
    }

    /// Encodes `record` with `encoder` into `buffer` and enqueues it keyed by [`AvroRecord::key`], timestamped
    /// with the event time and carrying CloudEvents and correlation headers. Waits while librdkafka's queue is
    /// full (back-pressure), never drops.
    pub fn send<T: AvroRecord>(
        &self,
        encoder: &WireEncoder<'_>,
        record: &T,
        correlation_id: &str,
        buffer: &mut Vec<u8>,
    ) -> Result<(), ProduceError> {
        encoder.encode(record, buffer)?;
        let time_ms = record.event_time_ms();
        let headers = cloudevent_headers(&CloudEventAttributes {
            id: record.id(),
            ce_type: T::CE_TYPE,
            source: &self.source,
            time_ms,
            correlation_id,
        });
        let pending = BaseRecord::to(encoder.topic())
            .key(record.key())
            .payload(buffer.as_slice())
            .timestamp(time_ms)
            .headers(headers);
        send_waiting_for_room(&self.producer, pending).map_err(|refused| ProduceError::Enqueue {
            id: record.id().to_string(),
            topic: encoder.topic().to_string(),
            source: Box::new(refused.0),
        })
    }

    /// Delivery counters so far.
    pub fn stats(&self) -> &DeliveryStats {
        &self.stats
    }

    /// Waits until every enqueued record is delivered or failed, then reports: `Ok(delivered)` only if nothing
    /// failed and nothing is left in flight.
    pub fn flush(&self, timeout: Duration) -> Result<u64, ProduceError> {
        let flushed = self.producer.flush(timeout);
        let in_flight = self.producer.in_flight_count().max(0) as u64;
        let failed = self.stats.failed() + in_flight;
        if failed == 0 && flushed.is_ok() {
            return Ok(self.stats.delivered());
        }
        let mut first = self
            .stats
            .failures
            .lock()
            .map(|f| f.join("; "))
            .unwrap_or_default();
        if in_flight > 0 {
            first.push_str(&format!(
                "{}{in_flight} still in flight after {timeout:?}",
                if first.is_empty() { "" } else { "; " }
            ));
        }
        Err(ProduceError::Delivery {
            failed,
            delivered: self.stats.delivered(),
            first,
        })
    }
}

/// Registers the contract's schemas under their topics' subjects and hands back what encoding needs.
pub struct SchemaRegistrar {
    url: String,
    client: RegistryClient,
}

impl SchemaRegistrar {
    /// A registrar talking to the registry of `settings`, each request bounded by `timeout`.
    pub fn new(settings: &RegistrySettings, timeout: Duration) -> Result<Self, ProduceError> {
        let client =
            RegistryClient::connect(settings, timeout).map_err(|e| ProduceError::Registry {
                url: String::new(),
                subject: String::new(),
                message: e.to_string(),
            })?;
        Ok(Self {
            // The client's URL: user info (credentials) stripped.
            url: client.base_url().to_owned(),
            client,
        })
    }

    /// Registers `T`'s contract schema under `<topic>-value` (TopicNameStrategy); an identical schema keeps its id.
    pub async fn topic_schema<T: AvroRecord>(
        &self,
        topic: &str,
    ) -> Result<TopicSchema, ProduceError> {
        let subject = format!("{topic}-value");
        let failed = |message: String| ProduceError::Registry {
            url: self.url.clone(),
            subject: subject.clone(),
            message,
        };
        let schema = Schema::parse_str(T::SCHEMA).map_err(|e| failed(e.to_string()))?;
        let id = self
            .client
            .register(&subject, T::SCHEMA)
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(TopicSchema {
            topic: topic.to_string(),
            id,
            schema,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adstream_schemas::events::{AdClick, Device, Platform};

    #[test]
    fn wire_format_is_magic_byte_big_endian_id_then_avro() {
        let topic = TopicSchema {
            topic: "ads.clicks".into(),
            id: 0x01020304,
            schema: Schema::parse_str(AdClick::SCHEMA).expect("contract schema parses"),
        };
        let encoder = WireEncoder::new(&topic).expect("encoder");
        let click = AdClick {
            event_id: "c".into(),
            event_time: 1,
            platform: Platform::Meta,
            account_id: "a".into(),
            campaign_id: "k".into(),
            ad_group_id: "g".into(),
            creative_id: "cr".into(),
            user_id: None,
            impression_id: None,
            device: Device::Other,
            cost_micros: 5,
            currency: "USD".into(),
        };
        let mut buffer = Vec::new();
        encoder.encode(&click, &mut buffer).expect("encodes");
        assert_eq!(&buffer[..5], &[0, 1, 2, 3, 4]);
        let body = apache_avro::reader::datum::GenericDatumReader::builder(&topic.schema)
            .build()
            .expect("reader")
            .read_value(&mut &buffer[5..])
            .expect("decodes");
        let back: AdClick = apache_avro::from_value(&body).expect("deserializes");
        assert_eq!(back, click);
    }

    #[test]
    fn user_properties_win_over_producer_defaults() {
        let mut base = ClientConfig::new();
        base.set("compression.type", "zstd");
        let config = producer_config(&base);
        assert_eq!(config.get("compression.type"), Some("zstd"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
    }
}
