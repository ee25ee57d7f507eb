"""`adstream query serve` driven by third-party Postgres clients: psycopg (libpq) and psql.

A private topology (input topics under a random prefix) gets a small generated data set; the server serves it with
a password. psycopg lists the tables through information_schema and pg_catalog, and a per-campaign aggregate over
the impressions must equal the same sums computed from the records a plain confluent-kafka Consumer decodes with
the registry's AvroDeserializer. Every write (INSERT, COPY ... TO, CREATE EXTERNAL TABLE, DROP, ...) is refused
with SQLSTATE 25006 on both the simple and the extended protocol, a wrong password, an unknown user and a missing
password are refused, and psql's `\\dt` and `\\d` list and describe the tables.
"""

import os
import re
import subprocess
import tempfile
import time
import uuid
from collections import defaultdict

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PSQL = "/usr/bin/psql"
USER = "analyst"
PASSWORD = "correct horse battery staple"
KINDS = ("impressions", "clicks", "conversions", "campaigns", "creatives")
TOPOLOGY = """defaults:
  partitions: 3
  replication_factor: 1
topics:
  - {{ name: {p}.impressions, key: campaign_id, value_schema: io.adstream.ads.AdImpression }}
  - {{ name: {p}.clicks, key: campaign_id, value_schema: io.adstream.ads.AdClick }}
  - {{ name: {p}.conversions, key: user_id, value_schema: io.adstream.ads.Conversion }}
  - {{ name: {p}.campaigns, key: campaign_id, value_schema: io.adstream.ads.Campaign, cleanup_policy: compact }}
  - {{ name: {p}.creatives, key: creative_id, value_schema: io.adstream.ads.Creative, cleanup_policy: compact }}
"""


def _env(bootstrap, registry, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(ADSTREAM_BOOTSTRAP_SERVERS=bootstrap, ADSTREAM_REGISTRY_URL=registry, **extra)
    return env


def _run(adstream_bin, bootstrap, registry, *args):
    return subprocess.run([adstream_bin, *args], cwd=ROOT, env=_env(bootstrap, registry), capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def dataset(adstream_bin, bootstrap, registry, tmp_path_factory):
    """A private topology with generated events; returns (topology path, prefix)."""
    prefix = "pytest_sql_" + uuid.uuid4().hex[:10]
    directory = tmp_path_factory.mktemp("sql")
    topology = directory / "topology.yaml"
    topology.write_text(TOPOLOGY.format(p=prefix))
    applied = _run(adstream_bin, bootstrap, registry, "topology", "apply", "--topology", str(topology))
    assert applied.returncode == 0, applied.stderr
    generated = _run(adstream_bin, bootstrap, registry, "produce", "generate", "--topology", str(topology),
                     "--seed", "11", "--events", "3000", "--campaigns", "6", "--manifest",
                     str(directory / "manifest.json"))
    assert generated.returncode == 0, generated.stderr
    return topology, prefix


class SqlServer:
    """One `adstream query serve` process on a free port."""

    def __init__(self, adstream_bin, bootstrap, registry, topology):
        self._stdout = tempfile.TemporaryFile(mode="w+")
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [adstream_bin, "query", "serve", "--listen", "127.0.0.1:0", "--user", USER, "--topology", str(topology)],
            cwd=ROOT, env=_env(bootstrap, registry, ADSTREAM_SQL_PASSWORD=PASSWORD), stdin=subprocess.DEVNULL,
            stdout=self._stdout, stderr=self._stderr,
        )
        self.port = self._wait_for_port()

    def _wait_for_port(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self._stdout.seek(0)
            line = self._stdout.readline()
            if line.startswith("listening on ") and line.endswith("\n"):
                return int(line.rsplit(":", 1)[1])
            if self.process.poll() is not None:
                raise RuntimeError(f"query serve exited with {self.process.returncode}:\n{self.stderr()}")
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"query serve printed no address within 60 s:\n{self.stderr()}")

    def stderr(self):
        """What the server logged so far, without the terminal colours tracing adds."""
        self._stderr.seek(0)
        return re.sub(r"\x1b\[[0-9;]*m", "", self._stderr.read())

    def connect(self, **overrides):
        params = dict(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, dbname="adstream",
                      autocommit=True, connect_timeout=10)
        params.update(overrides)
        params = {k: v for k, v in params.items() if v is not None}
        return psycopg.connect(**params)

    def psql(self, command):
        env = dict(os.environ, PGPASSWORD=PASSWORD, PGCONNECT_TIMEOUT="10")
        return subprocess.run([PSQL, "-X", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", "adstream",
                               "-c", command], env=env, capture_output=True, text=True, timeout=60)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture(scope="module")
def server(adstream_bin, bootstrap, registry, dataset):
    topology, _ = dataset
    process = SqlServer(adstream_bin, bootstrap, registry, topology)
    yield process
    process.stop()


def _decoded_values(bootstrap, registry, topic):
    """Every record of `topic` up to its current end, decoded by confluent-kafka's AvroDeserializer."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "pytest-" + uuid.uuid4().hex,
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    metadata = consumer.list_topics(topic, timeout=10)
    end = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
           for p in metadata.topics[topic].partitions}
    consumer.assign([TopicPartition(topic, p, 0) for p in end])
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry}))
    remaining = {p: n for p, n in end.items() if n > 0}
    values = []
    idle = 0
    while remaining and idle < 20:
        batch = consumer.consume(num_messages=5000, timeout=1.0)
        if not batch:
            idle += 1
            continue
        for message in batch:
            assert message.error() is None, message.error()
            partition = message.partition()
            if partition not in remaining or message.offset() >= end[partition]:
                continue
            values.append(deserializer(message.value(), SerializationContext(topic, MessageField.VALUE)))
            if message.offset() + 1 >= end[partition]:
                del remaining[partition]
    consumer.close()
    assert not remaining, f"{topic}: did not reach the end of partitions {sorted(remaining)}"
    return values


def test_tables_are_listed_through_information_schema_and_pg_catalog(server, dataset):
    _, prefix = dataset
    with server.connect() as conn:
        rows = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                            "WHERE table_name LIKE %s", (prefix + "%",)).fetchall()
        assert {(s, t) for s, t in rows} == {(schema, f"{prefix}.{kind}")
                                             for schema in ("public", "history") for kind in KINDS}
        relations = conn.execute(
            "SELECT c.relname FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r'").fetchall()
        assert {f"{prefix}.{kind}" for kind in KINDS} <= {name for (name,) in relations}
        columns = conn.execute("SELECT column_name FROM information_schema.columns "
                               "WHERE table_schema = 'public' AND table_name = %s",
                               (f"{prefix}.impressions",)).fetchall()
        assert {"event_id", "campaign_id", "cost_micros"} <= {name for (name,) in columns}


def test_aggregate_equals_the_consumers_computation(server, dataset, bootstrap, registry):
    _, prefix = dataset
    topic = f"{prefix}.impressions"
    expected = defaultdict(lambda: [0, 0])
    for value in _decoded_values(bootstrap, registry, topic):
        expected[value["campaign_id"]][0] += 1
        expected[value["campaign_id"]][1] += value["cost_micros"]
    assert expected, "the generator wrote no impressions"
    with server.connect() as conn:
        rows = conn.execute(f'SELECT campaign_id, count(*), sum(cost_micros) FROM "{topic}" '
                            "GROUP BY campaign_id ORDER BY campaign_id").fetchall()
        assert {c: [n, int(s)] for c, n, s in rows} == dict(expected)
        # The same through the simple query protocol (psycopg's ClientCursor sends no Parse/Bind).
        with psycopg.ClientCursor(conn) as cursor:
            cursor.execute(f'SELECT count(*) FROM "{topic}"')
            assert cursor.fetchone()[0] == sum(n for n, _ in expected.values())
        # A bound parameter (extended protocol).
        campaign = min(expected)
        (count,) = conn.execute(f'SELECT count(*) FROM "{topic}" WHERE campaign_id = %s', (campaign,)).fetchone()
        assert count == expected[campaign][0]


WRITES = [
    ("INSERT INTO \"{t}\" (event_id) VALUES ('x')", "INSERT"),
    ("COPY (SELECT 1) TO '/tmp/adstream-sql-{u}.csv'", "COPY"),
    ("CREATE EXTERNAL TABLE x_{u} STORED AS CSV LOCATION '/tmp/adstream-sql-{u}.csv'", "CREATE EXTERNAL TABLE"),
    ("DROP TABLE \"{t}\"", "DROP TABLE"),
    ("CREATE TABLE x_{u} AS SELECT 1", "CREATE TABLE"),
    ("DELETE FROM \"{t}\"", "DELETE"),
    ("EXPLAIN ANALYZE INSERT INTO \"{t}\" (event_id) VALUES ('x')", "INSERT"),
]


@pytest.mark.parametrize("protocol", ["extended", "simple"])
@pytest.mark.parametrize("statement,kind", WRITES, ids=[kind for _, kind in WRITES])
def test_writes_are_refused_with_25006(server, dataset, protocol, statement, kind):
    _, prefix = dataset
    unique = uuid.uuid4().hex[:8]
    sql = statement.format(t=f"{prefix}.impressions", u=unique)
    with server.connect() as conn:
        cursor = conn.cursor() if protocol == "extended" else psycopg.ClientCursor(conn)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as refused:
            cursor.execute(sql)
        assert refused.value.sqlstate == "25006"
        assert kind in str(refused.value)
        # Nothing happened: the table is still there and nothing was written on the server's host.
        assert conn.execute(f'SELECT count(*) FROM "{prefix}.impressions"').fetchone()[0] > 0
    assert not os.path.exists(f"/tmp/adstream-sql-{unique}.csv")


def test_session_statements_clients_send_are_allowed(server):
    with server.connect(autocommit=False) as conn:  # psycopg sends BEGIN before the first statement
        conn.execute("SET TIME ZONE 'UTC'")
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.rollback()
        # SQL-level cursors over the simple protocol, as psql's FETCH_COUNT uses them. (psycopg's named cursors
        # describe the cursor's portal over the extended protocol, which datafusion-postgres does not answer yet.)
        with psycopg.ClientCursor(conn) as cursor:
            cursor.execute("DECLARE c CURSOR FOR SELECT 42")
            cursor.execute("FETCH FORWARD 10 FROM c")
            assert cursor.fetchall() == [(42,)]
            cursor.execute("CLOSE c")
        conn.commit()


def test_wrong_or_unknown_user_or_no_password_is_refused(server):
    for overrides in ({"password": "wrong"}, {"user": "nobody"}):
        with pytest.raises(psycopg.OperationalError) as refused:
            server.connect(**overrides)
        assert "password authentication failed" in str(refused.value).lower()
    with pytest.raises(psycopg.OperationalError) as refused:
        server.connect(password=None, passfile="/nonexistent/pgpass")
    assert "no password supplied" in str(refused.value)
    log = server.stderr()
    assert 'password authentication failed user="analyst"' in log
    assert 'password authentication failed user="nobody"' in log


def test_psql_lists_and_describes_tables(server, dataset):
    _, prefix = dataset
    listed = server.psql("\\dt")
    assert listed.returncode == 0, listed.stderr
    for kind in KINDS:
        assert f"{prefix}.{kind}" in listed.stdout
    described = server.psql(f'\\d "{prefix}.impressions"')
    assert described.returncode == 0, described.stderr
    assert f'Table "public.{prefix}.impressions"' in described.stdout
    for column in ("event_id", "campaign_id", "cost_micros", "currency"):
        assert column in described.stdout
