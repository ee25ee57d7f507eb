//! `adstream topics` and `adstream consume`: see what landed.

use std::convert::Infallible;
use std::time::Duration;

use adstream_kafka::read;
use adstream_kafka::QuietEof;
use adstream_processors::runtime::headers::{key_text, KafkaHeaders};
use adstream_topology::Topology;
use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;

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
    let sr = SrSettings::new_builder(settings.registry_url.clone())
        .set_timeout(TIMEOUT)
        .no_proxy()
        .build()?;
    let decoder = AvroDecoder::new(sr);
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
        let value = match decoder.decode(message.payload()).await {
            Ok(decoded) => serde_json::Value::try_from(decoded.value)
                .unwrap_or_else(|e| serde_json::json!({ "undecodable": e.to_string() })),
            Err(e) => serde_json::json!({ "undecodable": e.error }),
        };
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
