"""Generated events read back by a plain third-party consumer.

`adstream produce generate` writes into the topology's topics; Python confluent-kafka's Consumer with its
AvroDeserializer (schemas fetched from the registry by id) must decode every record, the per-topic counts must
equal what the generator says it sent (its manifest), and every record must carry the CloudEvents headers, a
correlation id, the designed key and the event time as its timestamp.
"""

import json
import os
import subprocess
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOPICS = {
    "ads.impressions": ("impressions", "campaign_id", "io.adstream.ad.impression.v1", "event_id"),
    "ads.clicks": ("clicks", "campaign_id", "io.adstream.ad.click.v1", "event_id"),
    "ads.conversions": ("conversions", "user_id", "io.adstream.conversion.v1", "conversion_id"),
    "ads.campaigns": ("campaigns", "campaign_id", "io.adstream.campaign.v1", "campaign_id"),
    "ads.creatives": ("creatives", "creative_id", "io.adstream.creative.v1", "creative_id"),
}
CE_HEADERS = {"ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "correlation_id"}


def _run(adstream_bin, bootstrap, registry_url, *args):
    env = dict(os.environ, ADSTREAM_BOOTSTRAP_SERVERS=bootstrap, ADSTREAM_REGISTRY_URL=registry_url)
    return subprocess.run([adstream_bin, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _high_watermarks(consumer, topic):
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = sorted(metadata.topics[topic].partitions)
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}


@pytest.fixture(scope="module")
def generated(adstream_bin, bootstrap, registry, tmp_path_factory):
    """Applies the topology, records where each topic ends, generates events, returns (start offsets, manifest)."""
    applied = _run(adstream_bin, bootstrap, registry, "topology", "apply")
    assert applied.returncode == 0, applied.stderr
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe-" + uuid.uuid4().hex})
    start = {topic: _high_watermarks(probe, topic) for topic in TOPICS}
    probe.close()
    manifest_path = tmp_path_factory.mktemp("gen") / "manifest.json"
    result = _run(adstream_bin, bootstrap, registry, "produce", "generate", "--seed", "1234", "--events", "20000",
                  "--manifest", str(manifest_path))
    assert result.returncode == 0, result.stderr
    assert "all acknowledged" in result.stdout
    with open(manifest_path) as f:
        manifest = json.load(f)
    return start, manifest


def _read_range(bootstrap, registry, topic, start):
    """Every record of `topic` from `start` offsets up to the current end, decoded by the Avro deserializer."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "pytest-" + uuid.uuid4().hex,
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    end = _high_watermarks(consumer, topic)
    consumer.assign([TopicPartition(topic, p, start[p]) for p in end])
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry}))
    remaining = sum(end[p] - start[p] for p in end)
    records = []
    idle = 0
    while remaining > 0 and idle < 20:
        batch = consumer.consume(num_messages=5000, timeout=1.0)
        if not batch:
            idle += 1
            continue
        for message in batch:
            assert message.error() is None, message.error()
            if message.offset() >= end[message.partition()]:
                continue
            value = deserializer(message.value(), SerializationContext(topic, MessageField.VALUE))
            records.append((message, value))
            remaining -= 1
    consumer.close()
    return records


@pytest.mark.parametrize("topic", list(TOPICS))
def test_generated_records_decode_and_match_the_manifest(generated, bootstrap, registry, topic):
    start, manifest = generated
    kind, key_field, ce_type, id_field = TOPICS[topic]
    records = _read_range(bootstrap, registry, topic, start[topic])
    assert len(records) == manifest["counts"][kind], f"{topic}: read {len(records)}, generator sent {manifest['counts'][kind]}"
    ids = set()
    for message, value in records:
        assert message.key().decode() == value[key_field], "record key is the designed key"
        headers = {k: (v.decode() if v is not None else None) for k, v in (message.headers() or [])}
        assert CE_HEADERS <= headers.keys(), headers.keys()
        assert headers["ce_specversion"] == "1.0"
        assert headers["ce_type"] == ce_type
        assert headers["ce_id"] == value[id_field]
        assert headers["correlation_id"]
        time_field = {"campaigns": "updated_at", "creatives": "created_at"}.get(kind, "event_time")
        event_time = value[time_field]
        # fastavro returns timestamp-millis as an aware datetime
        assert message.timestamp()[1] == int(event_time.timestamp() * 1000), "record timestamp is the event time"
        ids.add(value[id_field])
    assert len(ids) == len(records), "no duplicates"


def test_generation_is_deterministic(adstream_bin, bootstrap, registry, tmp_path):
    """Two runs with the same seed write the same manifest (same events, same ground truth)."""
    manifests = []
    for run in range(2):
        path = tmp_path / f"m{run}.json"
        result = _run(adstream_bin, bootstrap, registry, "produce", "generate", "--seed", "99", "--events", "3000",
                      "--manifest", str(path))
        assert result.returncode == 0, result.stderr
        manifests.append(path.read_text())
    assert manifests[0] == manifests[1]
