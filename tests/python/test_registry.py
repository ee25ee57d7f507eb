"""adstream's schema registry driven by a client written by others: confluent-kafka's SchemaRegistryClient.

Covers registration, lookup, versions, schema references, schemas by id, subjects, soft and permanent deletes, configs with all seven
levels, compatibility checks, modes, Confluent's error codes (``error_code`` and HTTP status as the client reports
them), the Avro serializer/deserializer round trip, and a restart of the registry process that loses nothing.

Tests that change global settings (config, mode) get a registry of their own so they cannot disturb others.
Each test uses a fresh client: the client caches aggressively, and a test must see what the server answers.
"""

import json
import uuid

import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.schema_registry_client import ConfigCompatibilityLevel, ServerConfig
from confluent_kafka.serialization import MessageField, SerializationContext

LEVELS = ["NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"]

CLICK_V1 = {
    "type": "record", "name": "Click", "namespace": "io.adstream.pytest",
    "fields": [{"name": "id", "type": "string"}, {"name": "cost_micros", "type": "long"}],
}
# v2 adds an optional field with a default: compatible in every direction.
CLICK_V2 = {**CLICK_V1, "fields": CLICK_V1["fields"] + [{"name": "note", "type": ["null", "string"], "default": None}]}
# Adds a required field without default: new readers cannot read old data (breaks BACKWARD).
CLICK_BREAKING = {**CLICK_V1, "fields": CLICK_V1["fields"] + [{"name": "currency", "type": "string"}]}
INVALID = '{"type": "record", "name": "Broken", "fields": [{"name": "a", "type": "no_such_type"}]}'


def avro(schema):
    return Schema(json.dumps(schema) if not isinstance(schema, str) else schema, schema_type="AVRO")


def subject(prefix="pytest"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}-value"


def same_schema(a, b):
    return json.loads(a) == json.loads(b)


def expect_error(call, error_code, http_status):
    with pytest.raises(SchemaRegistryError) as raised:
        call()
    assert (raised.value.error_code, raised.value.http_status_code) == (error_code, http_status), raised.value
    assert raised.value.error_message
    return raised.value


@pytest.fixture
def sr(registry):
    return SchemaRegistryClient({"url": registry})


@pytest.fixture(scope="module")
def private_registry(registry_factory):
    """A registry of its own, for tests that change global config and mode."""
    return registry_factory().url


@pytest.fixture
def private_sr(private_registry):
    return SchemaRegistryClient({"url": private_registry})


def test_register_and_lookup(sr, registry):
    s = subject()
    schema_id = sr.register_schema(s, avro(CLICK_V1))
    found = sr.lookup_schema(s, avro(CLICK_V1))
    assert (found.schema_id, found.subject, found.version) == (schema_id, s, 1)
    # Identical schema (other whitespace, other key order) → same id, no new version; checked with a fresh client.
    fresh = SchemaRegistryClient({"url": registry})
    reordered = json.dumps({"fields": CLICK_V1["fields"], "name": "Click", "namespace": "io.adstream.pytest",
                            "type": "record"}, indent=4)
    assert fresh.register_schema(s, avro(reordered)) == schema_id
    assert fresh.get_versions(s) == [1]


def test_same_schema_in_another_subject_gets_the_same_id(sr):
    first, second = subject("a"), subject("b")
    schema_id = sr.register_schema(first, avro(CLICK_V1))
    assert sr.register_schema(second, avro(CLICK_V1)) == schema_id
    # Other tests register the same schema in the shared registry, so these are supersets.
    assert {first, second} <= set(sr.get_subjects_by_schema_id(schema_id))
    versions = sr.get_schema_versions(schema_id)
    assert {(first, 1), (second, 1)} <= {(v.subject, v.version) for v in versions}
    other_id = sr.register_schema(second, avro(CLICK_V2))
    assert other_id != schema_id


def test_versions_latest_and_schema_by_id(sr):
    s = subject()
    id1 = sr.register_schema(s, avro(CLICK_V1))
    id2 = sr.register_schema(s, avro(CLICK_V2))
    assert sr.get_versions(s) == [1, 2]
    v1 = sr.get_version(s, 1)
    assert (v1.schema_id, v1.version, v1.subject) == (id1, 1, s)
    assert same_schema(v1.schema.schema_str, json.dumps(CLICK_V1))
    latest = sr.get_latest_version(s)
    assert (latest.schema_id, latest.version) == (id2, 2)
    assert latest.schema.schema_type == "AVRO"
    assert same_schema(latest.schema.schema_str, json.dumps(CLICK_V2))
    assert sr.get_version(s, "latest").version == 2
    by_id = sr.get_schema(id2)
    assert by_id.schema_type == "AVRO"
    assert same_schema(by_id.schema_str, json.dumps(CLICK_V2))
    assert sr.get_schema_types() == ["AVRO"]


def test_get_subjects(sr):
    prefix = f"listing-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-{n}" for n in range(3)]
    for name in names:
        sr.register_schema(name, avro(CLICK_V1))
    assert set(names) <= set(sr.get_subjects())
    assert sr.get_subjects(subject_prefix=prefix) == sorted(names)


def test_delete_subject_soft_then_permanent(sr):
    s = subject()
    sr.register_schema(s, avro(CLICK_V1))
    sr.register_schema(s, avro(CLICK_V2))
    expect_error(lambda: sr.delete_subject(s, permanent=True), 40405, 404)
    assert sr.delete_subject(s) == [1, 2]
    assert s not in sr.get_subjects()
    assert s in sr.get_subjects(deleted=True)
    expect_error(lambda: sr.delete_subject(s), 40404, 404)
    assert sr.get_versions(s, deleted=True) == [1, 2]
    assert sr.delete_subject(s, permanent=True) == [1, 2]
    assert s not in sr.get_subjects(deleted=True)
    expect_error(lambda: sr.delete_subject(s), 40401, 404)


def test_delete_version_soft_then_permanent(sr, registry):
    s = subject()
    sr.register_schema(s, avro(CLICK_V1))
    v2_id = sr.register_schema(s, avro(CLICK_V2))
    expect_error(lambda: sr.delete_version(s, 2, permanent=True), 40407, 404)
    assert sr.delete_version(s, 2) == 2
    expect_error(lambda: sr.delete_version(s, 2), 40406, 404)
    assert sr.get_versions(s) == [1]
    assert sr.get_versions(s, deleted=True) == [1, 2]
    # A soft-deleted schema still resolves by id, so old data stays readable.
    assert same_schema(SchemaRegistryClient({"url": registry}).get_schema(v2_id).schema_str, json.dumps(CLICK_V2))
    assert sr.delete_version(s, 2, permanent=True) == 2
    assert sr.get_versions(s, deleted=True) == [1]
    # Registered again (by a client without cache): the same id, and the next version after those that exist.
    assert SchemaRegistryClient({"url": registry}).register_schema(s, avro(CLICK_V2)) == v2_id
    assert sr.get_versions(s) == [1, 2]


def test_subject_config_all_seven_levels(sr):
    s = subject()
    sr.register_schema(s, avro(CLICK_V1))
    expect_error(lambda: sr.get_compatibility(s), 40408, 404)
    for level in LEVELS:
        assert sr.set_compatibility(subject_name=s, level=level) == {"compatibility": level}
        assert sr.get_compatibility(s) == level
        assert sr.get_config(s).compatibility_level == ConfigCompatibilityLevel(level)
    sr.set_config(s, ServerConfig(compatibility=ConfigCompatibilityLevel.FORWARD))
    assert sr.get_compatibility(s) == "FORWARD"
    assert sr.delete_config(s).compatibility_level == ConfigCompatibilityLevel.FORWARD
    expect_error(lambda: sr.get_compatibility(s), 40408, 404)


def test_global_config_all_seven_levels(private_sr):
    assert private_sr.get_compatibility() == "BACKWARD"
    for level in LEVELS:
        assert private_sr.set_compatibility(level=level) == {"compatibility": level}
        assert private_sr.get_compatibility() == level
    expect_error(lambda: private_sr.set_compatibility(level="INVALID"), 42203, 422)
    private_sr.delete_config()
    assert private_sr.get_compatibility() == "BACKWARD"


def test_compatibility_checks(sr):
    s = subject()
    sr.register_schema(s, avro(CLICK_V1))
    assert sr.test_compatibility(s, avro(CLICK_V2)) is True
    assert sr.test_compatibility(s, avro(CLICK_BREAKING)) is False
    assert sr.test_compatibility(s, avro(CLICK_BREAKING), version=1, verbose=True) is False
    assert sr.test_compatibility_all_versions(s, avro(CLICK_BREAKING)) is False
    error = expect_error(lambda: sr.register_schema(s, avro(CLICK_BREAKING)), 409, 409)
    assert "incompatible" in error.error_message and "currency" in error.error_message, error.error_message
    # Under NONE the same schema registers.
    sr.set_compatibility(subject_name=s, level="NONE")
    assert sr.register_schema(s, avro(CLICK_BREAKING)) > 0
    # FORWARD_TRANSITIVE checks every version: removing `cost_micros` breaks old readers that have no default for it.
    sr.set_compatibility(subject_name=s, level="FORWARD_TRANSITIVE")
    without_cost = {**CLICK_V1, "fields": [CLICK_V1["fields"][0], {"name": "currency", "type": "string"}]}
    assert sr.test_compatibility_all_versions(s, avro(without_cost)) is False


def test_subject_mode(sr):
    s = subject()
    sr.register_schema(s, avro(CLICK_V1))
    assert sr.update_mode(s, "READONLY") == "READONLY"
    assert sr.get_mode(s) == "READONLY"
    expect_error(lambda: sr.register_schema(s, avro(CLICK_V2)), 42205, 422)
    expect_error(lambda: sr.delete_version(s, 1), 42205, 422)
    expect_error(lambda: sr.update_mode(s, "SIDEWAYS"), 42204, 422)
    assert sr.update_mode(s, "READWRITE") == "READWRITE"
    assert sr.register_schema(s, avro(CLICK_V2)) > 0
    assert sr.delete_mode(s) == "READWRITE"
    fresh = subject("import")
    assert sr.update_mode(fresh, "IMPORT") == "IMPORT"
    assert sr.get_mode(fresh) == "IMPORT"


def test_global_mode(private_sr):
    s = subject()
    private_sr.register_schema(s, avro(CLICK_V1))
    assert private_sr.get_global_mode() == "READWRITE"
    assert private_sr.update_global_mode("READONLY") == "READONLY"
    assert private_sr.get_global_mode() == "READONLY"
    expect_error(lambda: private_sr.register_schema(subject(), avro(CLICK_V2)), 42205, 422)
    # IMPORT needs an empty registry unless forced, as in Confluent.
    expect_error(lambda: private_sr.update_global_mode("IMPORT"), 42205, 422)
    assert private_sr.update_global_mode("READWRITE") == "READWRITE"
    assert private_sr.register_schema(subject(), avro(CLICK_V2)) > 0
    assert private_sr.get_contexts() == ["."]


def test_error_codes(sr):
    s = subject()
    sr.register_schema(s, avro(CLICK_V1))
    expect_error(lambda: sr.lookup_schema(subject("missing"), avro(CLICK_V1)), 40401, 404)
    expect_error(lambda: sr.get_versions(subject("missing")), 40401, 404)
    expect_error(lambda: sr.get_version(s, 3), 40402, 404)
    expect_error(lambda: sr.get_schema(999999), 40403, 404)
    expect_error(lambda: sr.lookup_schema(s, avro(CLICK_V2)), 40403, 404)
    expect_error(lambda: sr.get_version(s, "a"), 42202, 422)
    expect_error(lambda: sr.get_version(s, 0), 42202, 422)
    error = expect_error(lambda: sr.register_schema(subject("invalid"), avro(INVALID)), 42201, 422)
    assert "no_such_type" in error.error_message, error.error_message
    error = expect_error(lambda: sr.lookup_schema(s, avro(INVALID)), 42201, 422)
    assert "Invalid schema" in error.error_message
    json_schema = Schema('{"type": "object"}', schema_type="JSON")
    expect_error(lambda: sr.register_schema(subject("json"), json_schema), 42201, 422)
    expect_error(lambda: sr.set_compatibility(subject_name=s, level="SIDEWAYS"), 42203, 422)
    expect_error(lambda: sr.get_compatibility(s), 40408, 404)


def test_avro_serializer_round_trip(registry):
    """The confluent-kafka serializer registers through the API and the deserializer fetches the schema by id."""
    topic = f"pytest-serde-{uuid.uuid4().hex[:8]}"
    client = SchemaRegistryClient({"url": registry})
    serializer = AvroSerializer(client, json.dumps(CLICK_V2))
    context = SerializationContext(topic, MessageField.VALUE)
    record = {"id": "clk-1", "cost_micros": 1_250_000, "note": "hello"}
    data = serializer(record, context)
    assert data[0] == 0, "Confluent wire format magic byte"
    schema_id = int.from_bytes(data[1:5], "big")
    assert client.get_latest_version(f"{topic}-value").schema_id == schema_id
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry}))
    assert deserializer(data, context) == record


def test_restart_keeps_every_schema_id_version_config_mode_and_delete(registry_factory):
    process = registry_factory()
    sr = SchemaRegistryClient({"url": process.url})
    a, b, soft, gone, ro = (subject(n) for n in ("a", "b", "soft", "gone", "ro"))
    id1 = sr.register_schema(a, avro(CLICK_V1))
    id2 = sr.register_schema(a, avro(CLICK_V2))
    assert sr.register_schema(b, avro(CLICK_V1)) == id1
    sr.set_compatibility(level="FULL")
    sr.set_compatibility(subject_name=b, level="NONE")
    id3 = sr.register_schema(b, avro(CLICK_BREAKING))
    sr.register_schema(soft, avro(CLICK_V2))
    sr.delete_subject(soft)
    sr.register_schema(gone, avro(CLICK_V1))
    sr.delete_subject(gone)
    sr.delete_subject(gone, permanent=True)
    sr.delete_version(a, 1)
    sr.register_schema(ro, avro(CLICK_V1))
    sr.update_mode(ro, "READONLY")

    process.restart()
    sr = SchemaRegistryClient({"url": process.url})
    assert sorted(sr.get_subjects()) == sorted([a, b, ro])
    assert sorted(sr.get_subjects(deleted=True)) == sorted([a, b, ro, soft])
    assert sr.get_versions(a) == [2]
    assert sr.get_versions(a, deleted=True) == [1, 2]
    assert sr.get_versions(soft, deleted=True) == [1]
    expect_error(lambda: sr.get_versions(gone, deleted=True), 40401, 404)
    assert sr.get_version(b, 2).schema_id == id3
    assert sr.lookup_schema(b, avro(CLICK_V1)).schema_id == id1
    assert sr.get_latest_version(a).schema_id == id2
    for schema_id, schema in ((id1, CLICK_V1), (id2, CLICK_V2), (id3, CLICK_BREAKING)):
        assert same_schema(sr.get_schema(schema_id).schema_str, json.dumps(schema))
    assert sr.get_compatibility() == "FULL"
    assert sr.get_compatibility(b) == "NONE"
    assert sr.get_mode(ro) == "READONLY"
    expect_error(lambda: sr.register_schema(ro, avro(CLICK_V2)), 42205, 422)
    # New registrations continue above every id and version in use.
    sr.set_compatibility(subject_name=a, level="NONE")
    new_id = sr.register_schema(a, avro({"type": "record", "name": "Fresh", "fields": []}))
    assert new_id > id3
    assert sr.get_versions(a) == [2, 3]


MONEY = {
    "type": "record", "name": "Money", "namespace": "io.adstream.pytest",
    "fields": [{"name": "micros", "type": "long"}, {"name": "currency", "type": "string"}],
}
PAYMENT = {
    "type": "record", "name": "Payment", "namespace": "io.adstream.pytest",
    "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "io.adstream.pytest.Money"}],
}


def references_of(schema):
    return [(r.name, r.subject, r.version) for r in schema.references]


def test_schema_references_registered_and_read_back_across_a_restart(registry_factory):
    process = registry_factory()
    sr = SchemaRegistryClient({"url": process.url})
    money, payment = subject("money"), subject("payment")
    money_id = sr.register_schema(money, avro(MONEY))
    reference = SchemaReference("io.adstream.pytest.Money", money, 1)
    with_reference = Schema(json.dumps(PAYMENT), schema_type="AVRO", references=[reference])
    payment_id = sr.register_schema(payment, with_reference)
    assert payment_id != money_id
    expected = [("io.adstream.pytest.Money", money, 1)]

    def read_back(client):
        by_id = client.get_schema(payment_id)
        assert references_of(by_id) == expected
        assert same_schema(by_id.schema_str, json.dumps(PAYMENT))
        latest = client.get_latest_version(payment)
        assert (latest.schema_id, latest.version) == (payment_id, 1)
        assert references_of(latest.schema) == expected
        found = client.lookup_schema(payment, with_reference)
        assert (found.schema_id, found.version) == (payment_id, 1)
        # Without its reference the schema does not resolve: 42201, as Confluent answers.
        expect_error(lambda: client.lookup_schema(payment, avro(PAYMENT)), 42201, 422)

    read_back(sr)
    assert sr.test_compatibility(payment, with_reference) is True
    # A referenced version cannot be hard-deleted while something references it.
    sr.delete_version(money, 1)
    expect_error(lambda: sr.delete_version(money, 1, permanent=True), 42206, 422)

    process.restart()
    read_back(SchemaRegistryClient({"url": process.url}))
