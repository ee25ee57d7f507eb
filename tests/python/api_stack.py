"""The live API's stack for its tests and its benchmark (`dev/api-bench`): a private topology, the campaign-metrics
job and `adstream api serve` as processes, and a producer of campaign settings and impressions written the way any
Kafka client writes them (confluent-kafka's Avro serializer against the registry, CloudEvents headers, event time as
the record timestamp).

Nothing here is a fixture: tests/python/test_api.py wraps these in fixtures, the benchmark uses them directly.
"""

import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

from confluent_kafka import Consumer, SerializingProducer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TOPOLOGY = """defaults:
  partitions: {partitions}
  replication_factor: 1
topics:
  - {{ name: {p}.impressions, key: campaign_id, value_schema: io.adstream.ads.AdImpression }}
  - {{ name: {p}.clicks, key: campaign_id, value_schema: io.adstream.ads.AdClick }}
  - {{ name: {p}.campaigns, key: campaign_id, value_schema: io.adstream.ads.Campaign, cleanup_policy: compact }}
  - {{ name: {p}.hourly, key: campaign_window, value_schema: io.adstream.metrics.CampaignMetrics, cleanup_policy: compact }}
  - {{ name: {p}.daily, key: campaign_window, value_schema: io.adstream.metrics.CampaignMetrics, cleanup_policy: compact }}
  - {{ name: {p}.alerts, key: campaign_id, value_schema: io.adstream.alerts.CampaignAlert }}
  - {{ name: {p}.credits, key: campaign_id, value_schema: io.adstream.attribution.AttributionCredit }}
  - {{ name: {p}.fatigue, key: creative_id, value_schema: io.adstream.fatigue.CreativeFatigue, cleanup_policy: compact }}
  - {{ name: {p}.creative_alerts, key: creative_id, value_schema: io.adstream.alerts.CreativeAlert }}
processors:
  - name: {p}-metrics
    job: campaign-metrics
    inputs: [{p}.impressions, {p}.clicks, {p}.campaigns, {p}.credits]
    outputs: [{p}.hourly, {p}.daily, {p}.alerts]
    key: campaign_id
"""


def free_port():
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(adstream_bin, bootstrap, registry, *args):
    """Runs the binary to completion; returns the CompletedProcess."""
    env = dict(os.environ, ADSTREAM_BOOTSTRAP_SERVERS=bootstrap, ADSTREAM_REGISTRY_URL=registry)
    return subprocess.run([adstream_bin, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def apply_topology(adstream_bin, bootstrap, registry, directory, prefix, partitions=2):
    """Writes and applies the private topology under `prefix`; returns its path."""
    path = os.path.join(directory, f"{prefix}.yaml")
    with open(path, "w") as f:
        f.write(TOPOLOGY.format(p=prefix, partitions=partitions))
    applied = run(adstream_bin, bootstrap, registry, "topology", "apply", "--topology", path)
    if applied.returncode != 0:
        raise RuntimeError(f"topology apply failed:\n{applied.stderr}")
    return path


class Process:
    """A long-running `adstream` subprocess whose output goes to files (never a pipe nobody reads)."""

    def __init__(self, adstream_bin, bootstrap, registry, args, env=None):
        self.args = args
        self._stdout = tempfile.TemporaryFile(mode="w+")
        self._stderr = tempfile.TemporaryFile(mode="w+")
        full_env = dict(os.environ, ADSTREAM_BOOTSTRAP_SERVERS=bootstrap, ADSTREAM_REGISTRY_URL=registry,
                        ADSTREAM_LOG=os.environ.get("ADSTREAM_LOG", "info,rdkafka=warn"), **(env or {}))
        self.process = subprocess.Popen([adstream_bin, *args], cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL,
                                        stdout=self._stdout, stderr=self._stderr)

    def stdout(self):
        self._stdout.seek(0)
        return self._stdout.read()

    def stderr(self):
        """What the process logged so far, without terminal colours."""
        self._stderr.seek(0)
        return re.sub(r"\x1b\[[0-9;]*m", "", self._stderr.read())

    def alive(self):
        return self.process.poll() is None

    def wait_for_ok(self, url, what, retry_statuses=None):
        """Polls `url` until it answers 200, for 60 s at most. An HTTP error status is retried if it is in
        `retry_statuses` (any status when None) and raised otherwise; the process exiting fails at once."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as error:
                if retry_statuses is not None and error.code not in retry_statuses:
                    raise
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if not self.alive():
                raise RuntimeError(f"{what} exited with {self.process.returncode}:\n{self.stderr()}")
            time.sleep(0.1)
        raise RuntimeError(f"{what} did not answer 200 within 60 s:\n{self.stderr()}")

    def stop(self):
        """SIGTERM, then SIGKILL after 15 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_job(adstream_bin, bootstrap, registry, topology, prefix, guarantee="at-least-once", flush_ms=10,
              commit_ms=1000):
    """Starts the campaign-metrics job of the private topology: at-least-once with `flush_ms` flushes, or
    exactly-once (`flush_ms=None`) committing every `commit_ms`."""
    args = ["process", "campaign-metrics", "--topology", topology, "--application-id", f"{prefix}-metrics",
            "--guarantee", guarantee, "--commit-interval-ms", str(commit_ms),
            "--metrics-listen", f"127.0.0.1:{free_port()}"]
    if flush_ms is not None:
        args += ["--flush-interval-ms", str(flush_ms)]
    return Process(adstream_bin, bootstrap, registry, args)


class ApiServer(Process):
    """`adstream api serve` on a free port with one bearer token; waits until `/readyz` answers 200."""

    def __init__(self, adstream_bin, bootstrap, registry, topology, token, flags=()):
        super().__init__(adstream_bin, bootstrap, registry,
                         ["api", "serve", "--listen", "127.0.0.1:0", "--topology", topology, *flags],
                         env={"ADSTREAM_API_TOKEN": token})
        self.token = token
        self.port = self._wait_for_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/graphql/ws"
        self._wait_ready()

    def _wait_for_port(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.stdout().split("\n", 1)[0]
            if line.startswith("listening on ") and "\n" in self.stdout():
                return int(line.rsplit(":", 1)[1])
            if not self.alive():
                raise RuntimeError(f"api serve exited with {self.process.returncode}:\n{self.stderr()}")
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"api serve printed no address within 60 s:\n{self.stderr()}")

    def _wait_ready(self):
        # 503 until the outputs are read to their end.
        self.wait_for_ok(self.url + "/readyz", "api serve", retry_statuses={503})


def _schema(name):
    with open(os.path.join(ROOT, "schemas", name)) as f:
        return f.read()


def noon_time_zone():
    """An IANA zone where it is now around noon, so a test's daily window does not end while it runs (and pacing
    is past its first hour). `Etc/GMT-3` is UTC+3: the sign is inverted."""
    hour = datetime.now(timezone.utc).hour
    offset = 12 - hour  # in [-11, 12]
    if offset == 0:
        return "Etc/UTC"
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


class EventProducer:
    """Writes campaigns, impressions and creative alerts of the private topology with confluent-kafka's Avro
    serializer."""

    def __init__(self, bootstrap, registry, prefix):
        self.prefix = prefix
        registry_client = SchemaRegistryClient({"url": registry})
        self._campaign = SerializingProducer({
            "bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": True,
            "key.serializer": StringSerializer("utf_8"),
            "value.serializer": AvroSerializer(registry_client, _schema("campaign.avsc")),
        })
        self._impression = SerializingProducer({
            "bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": True,
            "key.serializer": StringSerializer("utf_8"),
            "value.serializer": AvroSerializer(registry_client, _schema("ad_impression.avsc")),
        })
        self._creative_alert = SerializingProducer({
            "bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": True,
            "key.serializer": StringSerializer("utf_8"),
            "value.serializer": AvroSerializer(registry_client, _schema("creative_alert.avsc")),
        })

    def campaign(self, campaign_id, daily_budget_micros, time_zone, name=None):
        now = int(time.time() * 1000)
        value = {
            "campaign_id": campaign_id, "platform": "GOOGLE_ADS", "account_id": "acct-1",
            "name": name or f"Campaign {campaign_id[-6:]}", "objective": "CONVERSIONS", "status": "ACTIVE",
            "currency": "USD", "daily_budget_micros": daily_budget_micros, "lifetime_budget_micros": None,
            "start_time": now - 86_400_000, "end_time": None, "time_zone": time_zone,
            "targets": {"min_ctr": None, "max_cpc_micros": None, "target_cpa_micros": None, "min_roas": None,
                        "target_cpm_micros": None},
            "updated_at": now,
        }
        self._send(self._campaign, f"{self.prefix}.campaigns", campaign_id, value, now, "io.adstream.campaign.v1")

    def impression(self, campaign_id, cost_micros, correlation_id=None, event_time_ms=None):
        """Writes one impression; returns its correlation id."""
        now = event_time_ms or int(time.time() * 1000)
        event_id = uuid.uuid4().hex
        value = {
            "event_id": event_id, "event_time": now, "platform": "GOOGLE_ADS", "account_id": "acct-1",
            "campaign_id": campaign_id, "ad_group_id": "ag-1", "creative_id": f"{campaign_id}-cr-1",
            "user_id": f"user-{event_id[:8]}", "placement": "SEARCH", "device": "MOBILE",
            "cost_micros": cost_micros, "currency": "USD",
        }
        correlation_id = correlation_id or event_id
        self._send(self._impression, f"{self.prefix}.impressions", campaign_id, value, now,
                   "io.adstream.ad.impression.v1", correlation_id)
        return correlation_id

    def creative_alert(self, campaign_id, creative_id, status, previous_status):
        """Writes one fatigue status change of `creative_id`, as creative-fatigue would; returns its alert id."""
        now = int(time.time() * 1000)
        alert_id = f"{creative_id}|{now}"
        value = {
            "alert_id": alert_id, "creative_id": creative_id, "campaign_id": campaign_id, "status": status,
            "previous_status": previous_status, "score": 0.6, "baseline_ctr": 0.02, "current_ctr": 0.012,
            "change_started_at": now - 3_600_000, "event_time": now, "emitted_at": now,
            "correlation_id": alert_id,
        }
        self._send(self._creative_alert, f"{self.prefix}.creative_alerts", creative_id, value, now,
                   "io.adstream.alerts.creative.v1", alert_id)
        return alert_id

    @staticmethod
    def _send(producer, topic, key, value, timestamp, ce_type, correlation_id=None):
        headers = [("ce_specversion", b"1.0"), ("ce_id", uuid.uuid4().hex.encode()), ("ce_type", ce_type.encode()),
                   ("ce_source", b"/tests/api"), ("ce_time", str(timestamp).encode()),
                   ("correlation_id", (correlation_id or uuid.uuid4().hex).encode())]
        producer.produce(topic, key=key, value=value, timestamp=timestamp, headers=headers)
        producer.poll(0)

    def flush(self):
        for producer in (self._campaign, self._impression, self._creative_alert):
            remaining = producer.flush(30)
            if remaining:
                raise RuntimeError(f"{remaining} record(s) not delivered")


def read_records(bootstrap, registry, topic):
    """Every record of `topic` with a value (read_committed, from the start to the current end, decoded with the
    Confluent Avro deserializer), as (key, value, headers) in offset order per partition. Watermark markers (no
    value) are skipped."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "pytest-" + uuid.uuid4().hex,
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "enable.partition.eof": True})
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = sorted(metadata.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry}))
    records = []
    open_partitions = set(partitions)
    deadline = time.monotonic() + 30
    while open_partitions and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            if message.error().code() == -191:  # _PARTITION_EOF
                open_partitions.discard(message.partition())
            continue
        if message.value() is None:
            continue
        value = deserializer(message.value(), SerializationContext(topic, MessageField.VALUE))
        headers = {k: (v.decode() if v is not None else None) for k, v in (message.headers() or [])}
        records.append((message.key().decode(), value, headers))
    consumer.close()
    return records


def latest_rows(bootstrap, registry, topic, key_prefix=None):
    """The latest decoded value per key of `topic` (read_committed, to the current end), as {key: value};
    only keys starting with `key_prefix` when given."""
    return {key: value for key, value, _ in read_records(bootstrap, registry, topic)
            if not key_prefix or key.startswith(key_prefix)}


def alerts_of(bootstrap, registry, topic, campaign_id):
    """Every alert change of `campaign_id` on the alerts topic, in offset order."""
    return [value for key, value, _ in read_records(bootstrap, registry, topic) if key == campaign_id]


class Registry(Process):
    """`adstream registry serve` on a free port and its own `_schemas` topic; waits until it answers."""

    def __init__(self, adstream_bin, bootstrap):
        port = free_port()
        super().__init__(adstream_bin, bootstrap, "", ["registry", "serve", "--listen", f"127.0.0.1:{port}",
                                                       "--topic", f"_schemas-api-{uuid.uuid4().hex[:10]}"])
        self.url = f"http://127.0.0.1:{port}"
        self.wait_for_ok(self.url + "/", "registry serve")


def rss_kib(pid):
    """Resident memory of process `pid` in KiB (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
