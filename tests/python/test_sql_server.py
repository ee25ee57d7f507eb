"""`adstream query serve` driven by third-party Postgres clients: psycopg (libpq) and psql.

A private topology (input topics under a random prefix) gets a small generated data set; the server serves it with
a password. psycopg lists the tables through information_schema and pg_catalog, and a per-campaign aggregate over
the impressions must equal the same sums computed from the records a plain confluent-kafka Consumer decodes with
the registry's AvroDeserializer. Every write (INSERT, COPY ... TO, CREATE EXTERNAL TABLE, DROP, ...) is refused
with SQLSTATE 25006 on both the simple and the extended protocol, a wrong password, an unknown user and a missing
password are refused, and psql's `\\dt` and `\\d` list and describe the tables.

Issue 18's attacks: switching the SQL dialect to smuggle a write, `SET datafusion.*` for every session, queries deep
enough to overflow a stack, a cross join past its statement_timeout and a CancelRequest, more memory than a query
may have, more connections than the cap, and an attack script of all of them after which the server must still
answer and nothing may have been created. TLS is offered and can be required.
"""

import os
import re
import subprocess
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

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
    """One `adstream query serve` process on a free port (`flags` are added to its command line, `cwd` and `tmpdir`
    are its working and temporary directories)."""

    def __init__(self, adstream_bin, bootstrap, registry, topology, flags=(), cwd=ROOT, tmpdir=None):
        self._stdout = tempfile.TemporaryFile(mode="w+")
        self._stderr = tempfile.TemporaryFile(mode="w+")
        extra = {"TMPDIR": str(tmpdir)} if tmpdir else {}
        self.process = subprocess.Popen(
            [adstream_bin, "query", "serve", "--listen", "127.0.0.1:0", "--user", USER, "--topology", str(topology),
             *flags],
            cwd=cwd, env=_env(bootstrap, registry, ADSTREAM_SQL_PASSWORD=PASSWORD, **extra), stdin=subprocess.DEVNULL,
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


# Issue 18, items 2-4: what an authenticated attacker on the same host tried.

# Postgres reads this as a SELECT of two string literals (the second holding `INTO ...`) followed by a nested comment.
# Re-printed without the comment and re-parsed as MySQL (where `\'` escapes the quote) it was `SELECT ... INTO t`:
# the old server checked the original text as MySQL, could not parse it (MySQL has no nested comments), let it
# through, and executed the re-printed text, which created a table.
DIALECT_BYPASS = "SELECT 'x\\', ' INTO {table} FROM (SELECT 1) AS s -- '\n/* /* */ ! */"


def _tables(conn):
    return {(s, t) for s, t in conn.execute("SELECT table_schema, table_name FROM information_schema.tables")}


def _cross_join(n=40_000):
    """A cross join that runs for tens of seconds: the filter makes DataFusion look at each of the n² rows."""
    return f"SELECT count(*) FROM generate_series(1, {n}) a(v) CROSS JOIN generate_series(1, {n}) b(w) WHERE v + w = 7"


def _answers_select_1(server):
    """Connects anew and runs `SELECT 1`; returns the seconds it took (asserting the answer)."""
    started = time.monotonic()
    with server.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    return time.monotonic() - started


@pytest.mark.parametrize("protocol", ["extended", "simple"])
def test_a_session_cannot_switch_the_dialect_to_smuggle_a_write(server, protocol):
    table = "smuggled_" + uuid.uuid4().hex[:8]
    with server.connect() as conn:
        cursor = conn.cursor() if protocol == "extended" else psycopg.ClientCursor(conn)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            cursor.execute("SET datafusion.sql_parser.dialect = 'mysql'")
        assert refused.value.sqlstate == "42501"
        assert "datafusion.sql_parser.dialect" in str(refused.value)
        # Read as Postgres reads it: two strings, nothing created.
        cursor.execute(DIALECT_BYPASS.format(table=table))
        assert cursor.fetchone()[0] == "x\\"
        assert table not in {t for _, t in _tables(conn)}
        # What neither parser reads is refused as a syntax error rather than let through.
        with pytest.raises(psycopg.errors.SyntaxError) as refused:
            cursor.execute("SELEC 1")
        assert refused.value.sqlstate == "42601"
    with server.connect() as other:
        assert table not in {t for _, t in _tables(other)}


def test_settings_are_per_session_and_datafusion_options_are_refused(server, dataset):
    _, prefix = dataset
    with server.connect() as attacker, server.connect() as bystander:
        for statement in ("SET datafusion.catalog.information_schema = false",
                          "SET datafusion.execution.batch_size = 1",
                          "SET datafusion.runtime.memory_limit = '1K'",
                          "SET datafusion.runtime.temp_directory = '/tmp'",
                          "RESET datafusion.catalog.information_schema"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                attacker.execute(statement)
            assert refused.value.sqlstate == "42501", statement
        with pytest.raises(psycopg.errors.UndefinedObject):
            attacker.execute("SET work_mem = '1GB'")
        # Session settings stay with the session that set them.
        attacker.execute("SET statement_timeout = '1s'")
        attacker.execute("SET application_name = 'attacker'")
        attacker.execute("SET DateStyle = 'ISO, DMY'")
        assert attacker.execute("SHOW statement_timeout").fetchone() == ("1000ms",)
        assert bystander.execute("SHOW statement_timeout").fetchone() == ("0",)
        assert bystander.execute("SHOW application_name").fetchone() != ("attacker",)
        assert bystander.execute("SHOW datestyle").fetchone() != ("ISO, DMY",)
        # The shared settings did not move: information_schema still lists the tables for everyone.
        rows = bystander.execute("SELECT table_name FROM information_schema.tables WHERE table_name LIKE %s",
                                 (prefix + "%",)).fetchall()
        assert len(rows) == 2 * len(KINDS)


@pytest.fixture()
def fresh_server(adstream_bin, bootstrap, registry, dataset, tmp_path):
    """`start(*flags)`: a server of the test's own (stopped at the end), in an empty working and temporary
    directory (`tmp_path / "cwd"` and `tmp_path / "tmp"`)."""
    topology, _ = dataset
    started = []

    def start(*flags):
        (tmp_path / "cwd").mkdir(exist_ok=True)
        (tmp_path / "tmp").mkdir(exist_ok=True)
        process = SqlServer(adstream_bin, bootstrap, registry, topology, flags=flags, cwd=tmp_path / "cwd",
                            tmpdir=tmp_path / "tmp")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def _run_and_cancel(server, sql, after=1.0):
    """Runs `sql` on a connection of its own and sends a CancelRequest for it `after` seconds later; returns the
    exception the query ended with."""
    with server.connect() as conn:
        outcome = {}

        def run():
            try:
                conn.execute(sql)
            except psycopg.Error as error:
                outcome["error"] = error

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(after)
        conn.cancel()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the cancelled query did not end"
    return outcome.get("error")


def _fuzz_regression(name):
    """A checked-in input of the `sql_check` fuzz target."""
    path = Path(__file__).resolve().parents[2] / "fuzz" / "regressions" / "sql_check" / name
    return path.read_text()


def test_one_query_cannot_take_the_server_down(fresh_server):
    server = fresh_server()
    with server.connect() as conn:
        # Left-deep trees that overflowed a worker's stack and aborted the process: refused before parsing.
        for sql in (" UNION ALL ".join(["SELECT 1 AS a"] * 20_000), "SELECT " + "+".join(["1"] * 150_000)):
            with pytest.raises(psycopg.errors.StatementTooComplex) as refused:
                conn.execute(sql)
            assert refused.value.sqlstate == "54001"
        # Nested calls that made the parser backtrack for seconds to hours on the session's worker (fuzzing found
        # the first): refused by the parse budget in milliseconds.
        for sql in (_fuzz_regression("slow-parse-4.sql"), "SELECT " + "upper(" * 24 + "'x'" + ")" * 24):
            started = time.monotonic()
            with pytest.raises(psycopg.errors.StatementTooComplex) as refused:
                conn.execute(sql)
            assert "too complex to parse" in str(refused.value)
            assert time.monotonic() - started < 5
        # Short enough chains and nesting still run.
        assert conn.execute("SELECT " + "upper(" * 10 + "'x'" + ")" * 10).fetchone() == ("X",)
        assert conn.execute(" UNION ALL ".join(["SELECT 1 AS a"] * 300)).fetchall() == [(1,)] * 300
        assert conn.execute("SELECT " + "+".join(["1"] * 300)).fetchone() == (300,)
        # A cross join that runs for minutes stops at the session's statement_timeout.
        conn.execute("SET statement_timeout = '1s'")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as cancelled:
            conn.execute(_cross_join())
        assert "statement timeout" in str(cancelled.value)
        assert time.monotonic() - started < 30
        # Also when its rows are read through a cursor.
        with psycopg.ClientCursor(conn) as cursor:
            cursor.execute(f"DECLARE big CURSOR FOR {_cross_join()}")
            with pytest.raises(psycopg.errors.QueryCanceled):
                cursor.execute("FETCH FORWARD 10 FROM big")
    # And at a client's CancelRequest.
    error = _run_and_cancel(server, _cross_join())
    assert isinstance(error, psycopg.errors.QueryCanceled), error
    assert server.process.poll() is None, server.stderr()
    assert _answers_select_1(server) < 5


def test_connections_over_the_cap_are_refused_not_hung(fresh_server):
    server = fresh_server("--max-connections", "3")
    held = [server.connect() for _ in range(3)]
    try:
        with pytest.raises(psycopg.OperationalError) as refused:
            server.connect(connect_timeout=10)
        assert "too many clients" in str(refused.value)
    finally:
        held.pop().close()
    # A freed slot is served again.
    deadline = time.monotonic() + 10
    while True:
        try:
            assert _answers_select_1(server) < 5
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    for conn in held:
        conn.close()


def test_queries_over_the_running_cap_are_refused(fresh_server):
    server = fresh_server("--max-running-queries", "2")
    with server.connect() as conn, psycopg.ClientCursor(conn) as cursor:
        # Cursors nobody reads keep their queries running.
        cursor.execute(f"DECLARE one CURSOR FOR {_cross_join()}")
        cursor.execute(f"DECLARE two CURSOR FOR {_cross_join()}")
        with pytest.raises(psycopg.errors.InsufficientResources) as refused:
            cursor.execute("SELECT 1")
        assert refused.value.sqlstate == "53000"
        cursor.execute("CLOSE ALL")
        # Closed cursors free their slots (once their queries notice nobody reads them).
        deadline = time.monotonic() + 30
        while True:
            try:
                assert cursor.execute("SELECT 1").fetchone() == (1,)
                break
            except psycopg.errors.InsufficientResources:
                assert time.monotonic() < deadline, "closing the cursors freed no slot"
                time.sleep(0.2)


# A million groups: tens of megabytes of hash table, and the server never spills to disk.
GREEDY_AGGREGATE = ("SELECT count(*) FROM (SELECT v % 1000000 AS k, count(*) FROM generate_series(1, 3000000) t(v) "
                    "GROUP BY 1) s")


def test_a_query_over_its_memory_limit_fails_alone(fresh_server):
    server = fresh_server("--query-memory-mb", "16")
    with server.connect() as conn:
        with pytest.raises(psycopg.errors.OutOfMemory) as refused:
            conn.execute(GREEDY_AGGREGATE)
        assert refused.value.sqlstate == "53200"
        assert conn.execute("SELECT count(*) FROM generate_series(1, 1000)").fetchone() == (1000,)


def _attack_script(prefix, unique):
    """(statement, SQLSTATEs it may be refused with; None: it may also run) for the attack script."""
    t = f'"{prefix}.impressions"'
    file = f"attack-{unique}.csv"
    read_only, privilege, unknown, syntax, too_complex = "25006", "42501", "42704", "42601", "54001"
    return [
        # SET of server-wide options and dialect tricks.
        ("SET datafusion.sql_parser.dialect = 'mysql'", {privilege}),
        ("SET datafusion.sql_parser.dialect TO 'hive'", {privilege}),
        ("SET datafusion.execution.batch_size = 1", {privilege}),
        ("SET datafusion.runtime.memory_limit = '1K'", {privilege}),
        ("SET datafusion.runtime.temp_directory = '.'", {privilege}),
        ("SET datafusion.catalog.information_schema = false", {privilege}),
        ("SET datafusion.execution.target_partitions = 1000000", {privilege}),
        ("RESET datafusion.sql_parser.dialect", {privilege}),
        ("SET work_mem = '64GB'", {unknown}),
        ("SET ROLE postgres", {privilege}),
        ("SET SESSION AUTHORIZATION postgres", {privilege}),
        ("SET client_encoding = 'LATIN1'", {"22023"}),
        (DIALECT_BYPASS.format(table=f"bypass_{unique}"), None),
        ("SELECT 1; SET datafusion.sql_parser.dialect = 'mysql'", {privilege}),
        # DDL, DML and COPY.
        (f"CREATE TABLE t_{unique} (a INT)", {read_only}),
        (f"CREATE TABLE t_{unique} AS SELECT 1", {read_only}),
        (f"SELECT 1 AS a INTO t_{unique}", {read_only}),
        (f"CREATE VIEW v_{unique} AS SELECT 1", {read_only}),
        (f"CREATE SCHEMA s_{unique}", {read_only}),
        (f"CREATE EXTERNAL TABLE e_{unique} STORED AS CSV LOCATION '{file}'", {read_only}),
        (f"CREATE EXTERNAL TABLE e_{unique} (a INT) STORED AS TEXTFILE LOCATION '{file}'", {read_only}),
        (f"DROP TABLE {t}", {read_only}),
        (f"ALTER TABLE {t} ADD COLUMN b INT", {read_only}),
        (f"TRUNCATE TABLE {t}", {read_only}),
        (f"INSERT INTO {t} (event_id) VALUES ('x')", {read_only}),
        (f"UPDATE {t} SET event_id = 'x'", {read_only}),
        (f"DELETE FROM {t}", {read_only}),
        (f"MERGE INTO {t} USING {t} s ON false WHEN MATCHED THEN DELETE", {read_only}),
        (f"COPY (SELECT 1) TO '{file}'", {read_only}),
        (f"COPY (SELECT 1) TO '{file}' STORED AS PARQUET", {read_only}),
        (f"COPY {t} TO STDOUT", {read_only}),
        (f"COPY {t} FROM '{file}'", {read_only}),
        (f"EXPLAIN ANALYZE INSERT INTO {t} (event_id) VALUES ('x')", {read_only}),
        (f"EXPLAIN COPY (SELECT 1) TO '{file}'", {read_only}),
        (f"WITH d AS (DELETE FROM {t} RETURNING *) SELECT * FROM d", {read_only}),
        (f"PREPARE p_{unique} AS INSERT INTO {t} (event_id) VALUES ('x')", {read_only}),
        (f"DECLARE c_{unique} CURSOR FOR SELECT 1 AS a INTO t_{unique}", {read_only}),
        (f"SELECT 1; CREATE TABLE t_{unique} (a INT)", {read_only}),
        (f"SELECT 1 INTO OUTFILE '{file}'", {read_only, syntax}),
        ("SELEC 1", {syntax}),
        # Huge texts and deep trees.
        ("SELECT '" + "x" * (2 << 20) + "'", {"54000"}),
        (" UNION ALL ".join(["SELECT 1 AS a"] * 20_000), {too_complex}),
        ("SELECT " + "+".join(["1"] * 150_000), {too_complex}),
        ("SELECT " + "(" * 20_000 + "1" + ")" * 20_000, {too_complex}),
        ("SELECT 1 FROM " + " CROSS JOIN ".join(["(SELECT 1)"] * 3_000), {too_complex}),
        ("SELECT " + " || ".join(["'a'"] * 50_000), {too_complex}),
        # Texts that make the parser backtrack exponentially.
        (_fuzz_regression("slow-parse-7.sql"), {too_complex}),
        ("SELECT " + "CAST(CASE (" * 12 + ")" * 36, {too_complex}),
        ("SELECT " + "coalesce(" * 30 + "1" + ", 0)" * 30, {too_complex}),
        # More memory than a query may have.
        (GREEDY_AGGREGATE, {"53200"}),
    ]


def test_attack_script_leaves_the_server_answering_and_unchanged(fresh_server, dataset, tmp_path):
    _, prefix = dataset
    unique = uuid.uuid4().hex[:8]
    server = fresh_server("--max-connections", "6", "--query-memory-mb", "16")
    with server.connect() as conn:
        tables_before = _tables(conn)
    script = _attack_script(prefix, unique)
    assert len(script) >= 40
    for sql, refused_with in script:
        # A connection per statement, half of them over the simple protocol: a refusal must not depend on either.
        with server.connect() as conn:
            cursor = psycopg.ClientCursor(conn) if len(sql) % 2 else conn.cursor()
            try:
                cursor.execute(sql)
            except psycopg.Error as error:
                assert refused_with is not None and error.sqlstate in refused_with, (sql[:200], error.sqlstate, error)
            else:
                assert refused_with is None, f"{sql[:200]} ran"
    # A big cross join under a statement timeout, and one cancelled by a CancelRequest.
    with server.connect() as conn:
        conn.execute("SET statement_timeout = 1000")
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute(_cross_join())
    assert isinstance(_run_and_cancel(server, _cross_join()), psycopg.errors.QueryCanceled)
    # Many connections beyond the cap.
    held = [server.connect() for _ in range(6)]
    over = []
    for _ in range(10):
        with pytest.raises(psycopg.OperationalError) as refused:
            server.connect()
        over.append(str(refused.value))
    assert all("too many clients" in message for message in over)
    for conn in held:
        conn.close()
    # Still up, answering, and nothing was created: no table, no file in its working or temporary directory.
    assert server.process.poll() is None, server.stderr()
    deadline = time.monotonic() + 10
    while True:
        try:
            elapsed = _answers_select_1(server)
            break
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, "the server does not answer after the attack"
            time.sleep(0.2)
    print(f"SELECT 1 after the attack answered in {elapsed:.3f} s")
    assert elapsed < 5
    with server.connect() as conn:
        assert _tables(conn) == tables_before
        assert conn.execute(f'SELECT count(*) FROM "{prefix}.impressions"').fetchone()[0] > 0
    assert os.listdir(tmp_path / "cwd") == []
    assert os.listdir(tmp_path / "tmp") == []
    assert not any(unique in name for name in os.listdir(ROOT))


def test_tls_is_offered_and_can_be_required(fresh_server, tmp_path):
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                           "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    server = fresh_server("--tls-cert", str(cert), "--tls-key", str(key), "--require-tls")
    with server.connect(sslmode="require") as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError) as refused:
        server.connect(sslmode="disable")
    assert "requires TLS" in str(refused.value)
