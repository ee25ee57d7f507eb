//! The transactional Kafka writer of the connectors (Kafka Connect's exactly-once source design, KIP-618): a page's
//! report rows, its malformed rows and the account's new cursor are produced in one Kafka transaction, so a
//! `read_committed` reader sees either all of a page and the cursor past it, or neither. A connector killed at any
//! point restarts from the last committed cursor: the page whose transaction did not commit is read again, and
//! nothing of it was visible before.
//!
//! The transactional id is fixed per (connector, platform): a restarted connector fences its predecessor and
//! `init_transactions` aborts whatever transaction the predecessor left open, before the cursors are read back
//! (an open transaction would otherwise hold the `read_committed` read at its start).
//!
//! Report rows and cursors are Avro in Confluent's wire format under TopicNameStrategy subjects; dead letters carry
//! the platform's row as JSON with the dead-letter headers of the processors' format (`dlq_error_class`,
//! `dlq_error_message`), so `adstream dlq inspect` lists them.
//!
//! The Kafka calls block: call [`KafkaSink::commit_page`] and [`KafkaSink::open`] from a blocking context (the
//! sync loop uses `tokio::task::block_in_place`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use adstream_kafka::produce::send_waiting_for_room;
use adstream_kafka::read::{self, ReadOptions};
use adstream_kafka::registry_client::{RegistryClient, RegistrySettings};
use adstream_kafka::QuietEof;
use adstream_producers::producer::{cloudevent_headers, CloudEventAttributes};
use adstream_schemas::events::{AvroRecord, Campaign, Creative, Platform};
use adstream_schemas::platform::{ConnectorCursor, PlatformReport};
use adstream_schemas::wire;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

use crate::config::TopicsConfig;

/// The dead-letter class of a row that is not in the platform's documented shape.
pub const MALFORMED_ROW: &str = "malformed-row";
/// Header names shared with the processors' dead-letter format.
pub mod header {
    /// Why the record was dead-lettered.
    pub const CLASS: &str = "dlq_error_class";
    /// What exactly was wrong.
    pub const MESSAGE: &str = "dlq_error_message";
    /// Correlation id: `<platform>/<account>/<day>/<page>`.
    pub const CORRELATION_ID: &str = "correlation_id";
    /// The platform the row came from.
    pub const PLATFORM: &str = "connector_platform";
    /// The account it came from.
    pub const ACCOUNT: &str = "connector_account";
    /// When it was dead-lettered (epoch millis).
    pub const REDIRECTED_AT: &str = "redirected_at";
    /// Who dead-lettered it: the connector's transactional id.
    pub const REDIRECTED_BY: &str = "redirected_by";
}
/// CloudEvents `ce_type` of report rows.
pub const REPORT_CE_TYPE: &str = "io.adstream.platform.report.v1";
/// How long one Kafka call (init, commit, abort, metadata) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts of a commit whose error librdkafka calls retriable.
const COMMIT_ATTEMPTS: u32 = 5;

/// Why writing to Kafka failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink could not be set up (registry, topics, producer).
    #[error("{0}")]
    Setup(String),
    /// The page's transaction was aborted: none of it is visible, the page must be written again.
    #[error("transaction aborted, the page will be written again: {0}")]
    Aborted(String),
    /// The producer cannot go on (fenced by another instance with the same transactional id, or a fatal error).
    #[error("producer stopped: {0}")]
    Fatal(String),
    /// The commit's outcome is unknown: the connector stops rather than guess; a restart resumes from the cursor
    /// that is committed, whichever it is.
    #[error(
        "commit outcome unknown ({0}); stopping: a restart resumes from the last committed cursor"
    )]
    CommitUnknown(String),
}

/// A malformed row on its way to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadRow {
    /// The row as the platform sent it.
    pub raw: String,
    /// Why it is malformed.
    pub reason: String,
}

/// One page's worth of records.
#[derive(Debug, Clone)]
pub struct PageWrite<'a> {
    /// The normalised rows.
    pub reports: &'a [PlatformReport],
    /// The malformed rows.
    pub dead: &'a [DeadRow],
    /// The account's cursor after this page.
    pub cursor: &'a ConnectorCursor,
    /// Correlation id of the page.
    pub correlation_id: &'a str,
}

/// One account's entities.
#[derive(Debug, Clone, Copy)]
pub struct Entities<'a> {
    /// Its campaigns.
    pub campaigns: &'a [Campaign],
    /// Its ads.
    pub creatives: &'a [Creative],
    /// Its malformed entries.
    pub dead: &'a [DeadRow],
}

/// What the sink needs.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// Base Kafka client config (bootstrap servers and pass-through properties).
    pub kafka: ClientConfig,
    /// The schema registry.
    pub registry: RegistrySettings,
    /// The topics.
    pub topics: TopicsConfig,
    /// The producer's transactional id, fixed per connector and platform.
    pub transactional_id: String,
}

/// A record's key and value, as read from the cursor topic.
type KeyAndValue = (String, Option<Vec<u8>>);

/// A registered value schema.
struct Registered {
    id: u32,
    schema: Schema,
}

/// The transactional producer with the registered schemas.
pub struct KafkaSink {
    producer: ThreadedProducer<DefaultProducerContext>,
    settings: SinkSettings,
    reports: Registered,
    cursors: Registered,
    campaigns: Registered,
    creatives: Registered,
    registry: RegistryClient,
}

impl KafkaSink {
    /// Registers the schemas, checks the topics (creating the dead-letter topic when missing), creates the
    /// transactional producer and fences any predecessor. Blocks on Kafka calls.
    pub async fn open(settings: SinkSettings) -> Result<KafkaSink, SinkError> {
        let setup =
            |what: &str, e: &dyn std::fmt::Display| SinkError::Setup(format!("{what}: {e}"));
        let registry = RegistryClient::connect(&settings.registry, CALL_TIMEOUT)
            .map_err(|e| setup("schema registry", &e))?;
        let register = |topic: &str, text: &'static str| {
            let registry = registry.clone();
            let subject = format!("{topic}-value");
            async move {
                let id = registry.register(&subject, text).await.map_err(|e| {
                    SinkError::Setup(format!("schema registry: cannot register '{subject}': {e}"))
                })?;
                let schema = Schema::parse_str(text).map_err(|e| setup("schema", &e))?;
                Ok::<_, SinkError>(Registered { id, schema })
            }
        };
        let reports = register(&settings.topics.reports, PlatformReport::SCHEMA).await?;
        let cursors = register(&settings.topics.cursors, ConnectorCursor::SCHEMA).await?;
        let campaigns = register(&settings.topics.campaigns, Campaign::SCHEMA).await?;
        let creatives = register(&settings.topics.creatives, Creative::SCHEMA).await?;
        let admin: AdminClient<DefaultClientContext> = settings
            .kafka
            .create()
            .map_err(|e| setup("Kafka client configuration", &e))?;
        let dead_letters = NewTopic::new(
            &settings.topics.dead_letters,
            // The broker's defaults (num.partitions, default.replication.factor).
            -1,
            TopicReplication::Fixed(-1),
        );
        let created = admin
            .create_topics(
                [&dead_letters],
                &AdminOptions::new().operation_timeout(Some(CALL_TIMEOUT)),
            )
            .await
            .map_err(|e| setup("creating the dead-letter topic", &e))?;
        for result in created {
            match result {
                Ok(topic) => tracing::info!(topic, "created the dead-letter topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(setup(&format!("creating {topic}"), &code)),
            }
        }
        let producer = tokio::task::block_in_place(|| Self::producer(&settings))?;
        Ok(KafkaSink {
            producer,
            settings,
            reports,
            cursors,
            campaigns,
            creatives,
            registry,
        })
    }

    fn producer(
        settings: &SinkSettings,
    ) -> Result<ThreadedProducer<DefaultProducerContext>, SinkError> {
        let consumer: BaseConsumer<QuietEof> =
            read::reader_config(&settings.kafka, "adstream-connectors-metadata", true)
                .create_with_context(QuietEof)
                .map_err(|e| SinkError::Setup(format!("Kafka client configuration: {e}")))?;
        for topic in [
            &settings.topics.reports,
            &settings.topics.cursors,
            &settings.topics.campaigns,
            &settings.topics.creatives,
        ] {
            match read::partition_count::<_, Infallible>(&consumer, topic, CALL_TIMEOUT) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(SinkError::Setup(format!(
                        "topic '{topic}' does not exist (run `adstream topology apply` first)"
                    )))
                }
                Err(e) => return Err(SinkError::Setup(e.to_string())),
            }
        }
        let mut config = settings.kafka.clone();
        config
            .set("transactional.id", &settings.transactional_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Java's partitioner: a report key lands where a Java or Kafka Streams producer would put it.
            .set("partitioner", "murmur2_random")
            .set("compression.type", "lz4")
            .set("transaction.timeout.ms", "60000");
        let producer: ThreadedProducer<DefaultProducerContext> = config
            .create()
            .map_err(|e| SinkError::Setup(format!("producer: {e}")))?;
        producer.init_transactions(CALL_TIMEOUT).map_err(|e| {
            SinkError::Setup(format!(
                "init transactions ({}): {e}",
                settings.transactional_id
            ))
        })?;
        Ok(producer)
    }

    /// The committed cursors of `platform`'s accounts, by account, read `read_committed` to the end of the cursor
    /// topic; the latest record per key wins, as compaction would keep it.
    pub async fn read_cursors(
        &self,
        platform: Platform,
    ) -> Result<HashMap<String, ConnectorCursor>, SinkError> {
        let topic = self.settings.topics.cursors.clone();
        let kafka = self.settings.kafka.clone();
        let prefix = format!("{}|", platform.slug());
        let records = tokio::task::block_in_place(|| -> Result<Vec<KeyAndValue>, SinkError> {
            let group = format!("{}-cursors", self.settings.transactional_id);
            let consumer: BaseConsumer<QuietEof> = read::reader_config(&kafka, &group, true)
                .create_with_context(QuietEof)
                .map_err(|e| SinkError::Setup(format!("cursor reader: {e}")))?;
            let partitions =
                read::partition_count::<_, Infallible>(&consumer, &topic, CALL_TIMEOUT)
                    .map_err(|e| SinkError::Setup(e.to_string()))?
                    .unwrap_or(0);
            let mut records = Vec::new();
            read::read_to_end::<_, Infallible>(
                &consumer,
                &topic,
                &(0..partitions).collect::<Vec<_>>(),
                &ReadOptions::default(),
                |m| {
                    if let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                        if key.starts_with(&prefix) {
                            records.push((key.to_owned(), m.payload().map(<[u8]>::to_vec)));
                        }
                    }
                    Ok(())
                },
            )
            .map_err(|e| SinkError::Setup(format!("reading the cursors: {e}")))?;
            Ok(records)
        })?;
        let mut latest: HashMap<String, Option<Vec<u8>>> = HashMap::new();
        for (key, value) in records {
            latest.insert(key, value);
        }
        let mut writers: HashMap<u32, Schema> = HashMap::new();
        let mut cursors = HashMap::new();
        for (key, value) in latest {
            let Some(value) = value else { continue };
            let bad = |e: &dyn std::fmt::Display| {
                SinkError::Setup(format!("cursor '{key}' in {topic}: {e}"))
            };
            let (id, mut datum) = wire::split(&value).map_err(|e| bad(&e))?;
            if id != self.cursors.id && !writers.contains_key(&id) {
                let text = self
                    .registry
                    .schema_by_id(id)
                    .await
                    .map_err(|e| bad(&e))?
                    .ok_or_else(|| bad(&format!("schema id {id} unknown to the registry")))?;
                writers.insert(id, Schema::parse_str(&text).map_err(|e| bad(&e))?);
            }
            let writer = writers.get(&id).unwrap_or(&self.cursors.schema);
            let value = GenericDatumReader::builder(writer)
                .reader_schema(&self.cursors.schema)
                .build()
                .and_then(|reader| reader.read_value(&mut datum))
                .map_err(|e| bad(&e))?;
            let cursor: ConnectorCursor = apache_avro::from_value(&value).map_err(|e| bad(&e))?;
            cursors.insert(cursor.account_id.clone(), cursor);
        }
        Ok(cursors)
    }

    /// Writes one page and its cursor in one transaction. Blocks.
    pub fn commit_page(&self, page: &PageWrite<'_>) -> Result<(), SinkError> {
        self.transact(|| self.send_page(page))
    }

    /// Writes an account's campaigns and creatives (and its malformed entries) in one transaction. Blocks.
    pub fn commit_entities(
        &self,
        platform: Platform,
        account: &str,
        entities: &Entities<'_>,
        correlation_id: &str,
    ) -> Result<(), SinkError> {
        let ce_source = format!("/adstream/connectors/{}/{account}", platform.slug());
        self.transact(|| {
            let mut buffer = Vec::new();
            self.send_entities(
                &self.campaigns,
                &self.settings.topics.campaigns,
                entities.campaigns,
                &ce_source,
                correlation_id,
                &mut buffer,
            )?;
            self.send_entities(
                &self.creatives,
                &self.settings.topics.creatives,
                entities.creatives,
                &ce_source,
                correlation_id,
                &mut buffer,
            )?;
            self.send_dead(platform.slug(), account, entities.dead, correlation_id)
        })
    }

    /// Sends `records` to `topic`, keyed by their id, stamped with their event time.
    fn send_entities<T: AvroRecord>(
        &self,
        registered: &Registered,
        topic: &str,
        records: &[T],
        ce_source: &str,
        correlation_id: &str,
        buffer: &mut Vec<u8>,
    ) -> Result<(), KafkaError> {
        let writer = GenericDatumWriter::builder(&registered.schema)
            .build()
            .map_err(avro_error)?;
        for record in records {
            buffer.clear();
            wire::write_header(registered.id, buffer);
            writer.write_ser(buffer, record).map_err(avro_error)?;
            let ce_id = format!("{}@{}", record.id(), record.event_time_ms());
            let headers = cloudevent_headers(&CloudEventAttributes {
                id: &ce_id,
                ce_type: T::CE_TYPE,
                source: ce_source,
                time_ms: record.event_time_ms(),
                correlation_id,
            });
            let record = BaseRecord::to(topic)
                .key(record.key().as_bytes())
                .payload(buffer.as_slice())
                .timestamp(record.event_time_ms())
                .headers(headers);
            send_waiting_for_room(&self.producer, record).map_err(|boxed| boxed.0)?;
        }
        Ok(())
    }

    /// Runs `send` inside a transaction and commits it; aborts when the error requires it.
    fn transact(&self, send: impl FnOnce() -> Result<(), KafkaError>) -> Result<(), SinkError> {
        self.producer
            .begin_transaction()
            .map_err(|e| SinkError::Fatal(format!("begin transaction: {e}")))?;
        match send().and_then(|()| self.commit()) {
            Ok(()) => Ok(()),
            Err(error) if requires_abort(&error) => {
                self.producer
                    .abort_transaction(CALL_TIMEOUT)
                    .map_err(|e| SinkError::Fatal(format!("abort after '{error}': {e}")))?;
                Err(SinkError::Aborted(error.to_string()))
            }
            Err(KafkaError::Transaction(e)) if e.is_fatal() => Err(SinkError::Fatal(e.to_string())),
            Err(error) => Err(SinkError::CommitUnknown(error.to_string())),
        }
    }

    /// Commits the open transaction, again while librdkafka calls the failure retriable (a commit may be retried
    /// until its outcome is known).
    fn commit(&self) -> Result<(), KafkaError> {
        let mut attempt = 1;
        loop {
            match self.producer.commit_transaction(CALL_TIMEOUT) {
                Err(KafkaError::Transaction(e))
                    if e.is_retriable() && attempt < COMMIT_ATTEMPTS =>
                {
                    tracing::warn!(attempt, error = %e, "commit failed, retrying it");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Sends a page's reports, its dead letters and then its cursor, inside the open transaction.
    fn send_page(&self, page: &PageWrite<'_>) -> Result<(), KafkaError> {
        let topics = &self.settings.topics;
        let report_writer = GenericDatumWriter::builder(&self.reports.schema)
            .build()
            .map_err(avro_error)?;
        let ce_source = format!(
            "/adstream/connectors/{}/{}",
            page.cursor.platform.slug(),
            page.cursor.account_id
        );
        let mut buffer = Vec::new();
        for report in page.reports {
            buffer.clear();
            wire::write_header(self.reports.id, &mut buffer);
            report_writer
                .write_ser(&mut buffer, report)
                .map_err(avro_error)?;
            let key = report.key();
            let ce_id = format!("{key}@{}", report.reported_at);
            let headers = cloudevent_headers(&CloudEventAttributes {
                id: &ce_id,
                ce_type: REPORT_CE_TYPE,
                source: &ce_source,
                time_ms: report.reported_at,
                correlation_id: page.correlation_id,
            });
            let record = BaseRecord::to(&topics.reports)
                .key(key.as_bytes())
                .payload(buffer.as_slice())
                .timestamp(report.window_start)
                .headers(headers);
            send_waiting_for_room(&self.producer, record).map_err(|boxed| boxed.0)?;
        }
        self.send_dead(
            page.cursor.platform.slug(),
            &page.cursor.account_id,
            page.dead,
            page.correlation_id,
        )?;
        let cursor_writer = GenericDatumWriter::builder(&self.cursors.schema)
            .build()
            .map_err(avro_error)?;
        buffer.clear();
        wire::write_header(self.cursors.id, &mut buffer);
        cursor_writer
            .write_ser(&mut buffer, page.cursor)
            .map_err(avro_error)?;
        let key = page.cursor.key();
        let record = BaseRecord::to(&topics.cursors)
            .key(key.as_bytes())
            .payload(buffer.as_slice())
            .timestamp(page.cursor.updated_at);
        send_waiting_for_room(&self.producer, record).map_err(|boxed| boxed.0)?;
        Ok(())
    }
}

impl KafkaSink {
    /// Sends `dead` rows of `account` to the dead-letter topic with the dead-letter headers.
    fn send_dead(
        &self,
        platform: &str,
        account: &str,
        dead: &[DeadRow],
        correlation_id: &str,
    ) -> Result<(), KafkaError> {
        let key = format!("{platform}|{account}");
        let now = chrono::Utc::now().timestamp_millis().to_string();
        for dead in dead {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: header::REDIRECTED_AT,
                    value: Some(now.as_str()),
                })
                .insert(Header {
                    key: header::REDIRECTED_BY,
                    value: Some(self.settings.transactional_id.as_str()),
                })
                .insert(Header {
                    key: header::CLASS,
                    value: Some(MALFORMED_ROW),
                })
                .insert(Header {
                    key: header::MESSAGE,
                    value: Some(dead.reason.as_str()),
                })
                .insert(Header {
                    key: header::PLATFORM,
                    value: Some(platform),
                })
                .insert(Header {
                    key: header::ACCOUNT,
                    value: Some(account),
                })
                .insert(Header {
                    key: header::CORRELATION_ID,
                    value: Some(correlation_id),
                })
                .insert(Header {
                    key: "content-type",
                    value: Some("application/json"),
                });
            let record = BaseRecord::to(&self.settings.topics.dead_letters)
                .key(key.as_bytes())
                .payload(dead.raw.as_bytes())
                .headers(headers);
            send_waiting_for_room(&self.producer, record).map_err(|boxed| boxed.0)?;
        }
        Ok(())
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        // Nothing is left open on a normal exit; an error path that could not abort leaves the transaction to
        // the broker's timeout or the next instance's init_transactions.
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}

/// A record that does not encode is a bug of this crate (the types match the schemas, checked by the schemas
/// crate's tests); it is reported as an abortable error so the page's transaction is rolled back.
fn avro_error(e: apache_avro::Error) -> KafkaError {
    tracing::error!(error = %e, "a record does not encode with its schema");
    KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord)
}

fn requires_abort(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(e) => e.txn_requires_abort(),
        // Failed before the commit (encoding, enqueueing): the open transaction holds part of the page.
        KafkaError::MessageProduction(_) => true,
        _ => false,
    }
}
