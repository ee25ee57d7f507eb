//! `adstream topics` and `adstream consume`: see what landed.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use adstream_kafka::read;
use adstream_kafka::registry_client::RegistryClient;
use adstream_kafka::QuietEof;
use adstream_processors::runtime::headers::{key_text, KafkaHeaders};
use adstream_schemas::wire;
use adstream_topology::Topology;
use anyhow::{Context, Result};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::Schema;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::config::Settings;

const TIMEOUT: Duration = Duration::from_secs(5);

fn consumer(settings: &Settings) -> Result<BaseConsumer<QuietEof>> {
    let mut config = settings.kafka_config();
    config
        .set("group.id", "adstream-inspect")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    config
        .create_with_context(QuietEof)
        .context("invalid Kafka client configuration")
}

/// `adstream topics`: every topology topic with its partitions and record count (high − low watermark, summed).
pub fn topics(settings: &Settings, topology: &Topology) -> Result<()> {
    let consumer = consumer(settings)?;
    let bootstrap = &settings.bootstrap_servers;
    let metadata = consumer
        .fetch_metadata(None, TIMEOUT)
        .with_context(|| format!("cannot reach Kafka at {bootstrap}"))?;
    println!(
        "{:<28} {:>10} {:>12}  key",
        "topic", "partitions", "records"
    );
    for topic in topology.topics() {
        let Some(found) = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic.name && t.error().is_none())
        else {
            println!(
                "{:<28} {:>10} {:>12}  (missing: run `adstream topology apply`)",
                topic.name, "-", "-"
            );
            continue;
        };
        let mut records = 0;
        for partition in found.partitions() {
            let (low, high) =
                read::watermarks::<_, Infallible>(&consumer, &topic.name, partition.id(), TIMEOUT)?;
            records += high - low;
        }
        let key = topic.key.as_deref().unwrap_or("-");
        println!(
            "{:<28} {:>10} {:>12}  {key}",
            topic.name,
            found.partitions().len(),
            records
        );
    }
    Ok(())
}

/// `adstream consume <topic> --limit N`: the first records of a topic, decoded through the registry, as JSON
/// lines with partition, offset, timestamp, key and headers.
pub async fn consume(settings: &Settings, topic: &str, limit: usize) -> Result<()> {
    let consumer = consumer(settings)?;
    let bootstrap = &settings.bootstrap_servers;
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .with_context(|| format!("cannot reach Kafka at {bootstrap}"))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .filter(|n| *n > 0)
        .with_context(|| format!("topic '{topic}' does not exist"))?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let registry = RegistryClient::connect(&settings.registry, TIMEOUT)?;
    let mut writers: HashMap<u32, Schema> = HashMap::new();
    let (mut printed, mut finished) = (0, 0);
    while printed < limit && finished < partitions {
        let Some(result) = consumer.poll(TIMEOUT) else {
            break;
        };
        let message = match result {
            Ok(message) => message,
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => {
                finished += 1;
                continue;
            }
            Err(error) => return Err(error).with_context(|| format!("reading {topic}")),
        };
        let value = decode(&registry, &mut writers, message.payload())
            .await
            .unwrap_or_else(|e| serde_json::json!({ "undecodable": format!("{e:#}") }));
        let headers: serde_json::Map<String, serde_json::Value> = KafkaHeaders::of(&message)
            .iter()
            .map(|(key, value)| {
                (
                    key_text(key).into_owned(),
                    String::from_utf8_lossy(value.unwrap_or_default()).into(),
                )
            })
            .collect();
        let line = serde_json::json!({
            "partition": message.partition(),
            "offset": message.offset(),
            "timestamp": message.timestamp().to_millis(),
            "key": message.key().map(String::from_utf8_lossy),
            "headers": headers,
            "value": value,
        });
        println!("{line}");
        printed += 1;
    }
    Ok(())
}

/// A Confluent wire-format value as JSON, read with its writer schema (fetched from the registry once per id); no
/// value (a tombstone) is JSON null.
async fn decode(
    registry: &RegistryClient,
    writers: &mut HashMap<u32, Schema>,
    payload: Option<&[u8]>,
) -> Result<serde_json::Value> {
    let Some(payload) = payload else {
        return Ok(serde_json::Value::Null);
    };
    let (id, mut datum) = wire::split(payload)?;
    let writer = match writers.entry(id) {
        Entry::Occupied(known) => known.into_mut(),
        Entry::Vacant(unseen) => {
            let text = registry
                .schema_by_id(id)
                .await?
                .with_context(|| format!("schema id {id} is unknown to the registry"))?;
            let schema = Schema::parse_str(&text)
                .with_context(|| format!("the schema with id {id} does not parse"))?;
            unseen.insert(schema)
        }
    };
    let value = GenericDatumReader::builder(&*writer)
        .build()?
        .read_value(&mut datum)
        .with_context(|| format!("schema id {id}: undecodable Avro"))?;
    serde_json::Value::try_from(value).context("not representable as JSON")
}
