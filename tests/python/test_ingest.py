"""`adstream ingest serve` driven by clients written by others: events built with the CloudEvents SDK for Python
(binary and structured HTTP modes, its JSON format for batches), sent with httpx, and read back from Kafka with
confluent-kafka's Avro deserializer against the registry — the way any consumer reads them.

Every answer the endpoint documents is exercised: 202 for valid events (only once the broker has them), 400 with
the field path and reason, 413 over the body and batch limits, 401 without the token, 415 for what is not a
CloudEvent, and a duplicate (same source and id) acknowledged without a second record.
"""

import json
import os
import time
import uuid
from datetime import datetime, timezone

import httpx
import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from api_stack import Process, read_records, run

TOKEN = "ingest-test-token"
MAX_BODY = 64 * 1024
MAX_BATCH = 50

TOPOLOGY = """defaults:
  partitions: 2
  replication_factor: 1
topics:
  - {{ name: {p}.impressions, key: campaign_id, value_schema: io.adstream.ads.AdImpression }}
  - {{ name: {p}.clicks, key: campaign_id, value_schema: io.adstream.ads.AdClick }}
  - {{ name: {p}.conversions, key: user_id, value_schema: io.adstream.ads.Conversion }}
"""

CLICK = "io.adstream.ad.click.v1"
IMPRESSION = "io.adstream.ad.impression.v1"
CONVERSION = "io.adstream.conversion.v1"
SOURCE = "/tests/ingest"


class IngestServer(Process):
    """`adstream ingest serve` on a free port; waits for its `listening on` line and `/readyz`."""

    def __init__(self, adstream_bin, bootstrap, registry, topology):
        super().__init__(adstream_bin, bootstrap, registry,
                         ["ingest", "serve", "--listen", "127.0.0.1:0", "--topology", topology,
                          "--max-body-bytes", str(MAX_BODY), "--max-batch-events", str(MAX_BATCH)],
                         env={"ADSTREAM_INGEST_TOKEN": TOKEN})
        self.url = f"http://127.0.0.1:{self._port()}"
        self.wait_for_ok(self.url + "/readyz", "ingest serve")

    def _port(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = self.stdout()
            if out.startswith("listening on ") and "\n" in out:
                return int(out.split("\n", 1)[0].rsplit(":", 1)[1])
            if not self.alive():
                raise RuntimeError(f"ingest serve exited with {self.process.returncode}:\n{self.stderr()}")
            time.sleep(0.1)
        raise RuntimeError(f"ingest serve printed no address:\n{self.stderr()}")


@pytest.fixture(scope="module")
def stack(adstream_bin, bootstrap, registry, tmp_path_factory):
    prefix = "ingest-" + uuid.uuid4().hex[:8]
    path = os.path.join(str(tmp_path_factory.mktemp("ingest")), "topology.yaml")
    with open(path, "w") as f:
        f.write(TOPOLOGY.format(p=prefix))
    applied = run(adstream_bin, bootstrap, registry, "topology", "apply", "--topology", path)
    assert applied.returncode == 0, applied.stderr
    server = IngestServer(adstream_bin, bootstrap, registry, path)
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    yield {"server": server, "client": client, "prefix": prefix, "bootstrap": bootstrap, "registry": registry}
    client.close()
    server.stop()


def click_data(campaign="meta-c1", cost=120_000):
    return {"platform": "META", "account_id": "act-1", "campaign_id": campaign, "ad_group_id": "as-1",
            "creative_id": "cr-1", "user_id": "u-1", "device": "MOBILE", "cost_micros": cost, "currency": "USD"}


def impression_data(campaign="meta-c1"):
    return {"platform": "META", "account_id": "act-1", "campaign_id": campaign, "ad_group_id": "as-1",
            "creative_id": "cr-1", "placement": "FEED", "device": "DESKTOP", "cost_micros": 2_000,
            "currency": "USD"}


def conversion_data(user="u-1"):
    return {"user_id": user, "conversion_type": "PURCHASE", "value_micros": 49_990_000, "currency": "EUR"}


def event(ce_type, data, event_id=None, source=SOURCE):
    return CloudEvent(attributes={"type": ce_type, "source": source, "id": event_id or uuid.uuid4().hex,
                                  "specversion": "1.0", "datacontenttype": "application/json",
                                  "time": datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)},
                      data=data)


def post_binary(client, ce):
    message = ce_http.to_binary_event(ce)
    return client.post("/events", headers=message.headers, content=message.body)


def post_structured(client, ce):
    message = ce_http.to_structured_event(ce)
    return client.post("/events", headers=message.headers, content=message.body)


def post_batch(client, events):
    body = b"[" + b",".join(JSONFormat().write(e) for e in events) + b"]"
    return client.post("/events", headers={"Content-Type": "application/cloudevents-batch+json"}, content=body)


def read_topic(stack, topic):
    """Every record of `topic` as (key, value, headers dict), read to its end with the Confluent deserializer."""
    return read_records(stack["bootstrap"], stack["registry"], topic)


def by_id(records, field="event_id"):
    found = {}
    for key, value, headers in records:
        found.setdefault(value[field], []).append((key, value, headers))
    return found


def test_valid_events_in_every_mode_are_acknowledged_and_readable_with_the_confluent_deserializer(stack):
    client, p = stack["client"], stack["prefix"]
    click = event(CLICK, click_data(), event_id="click-binary-1")
    answer = post_binary(client, click)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": 1, "duplicates": 0}

    conversion = event(CONVERSION, conversion_data(), event_id="conv-structured-1")
    answer = post_structured(client, conversion)
    assert answer.status_code == 202, answer.text

    impressions = [event(IMPRESSION, impression_data(f"meta-c{i}"), event_id=f"imp-batch-{i}") for i in range(5)]
    answer = post_batch(client, impressions)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": 5, "duplicates": 0}

    clicks = by_id(read_topic(stack, f"{p}.clicks"))
    [(key, value, headers)] = clicks["click-binary-1"]
    assert key == "meta-c1"
    assert value["cost_micros"] == 120_000 and value["platform"] == "META" and value["user_id"] == "u-1"
    assert value["impression_id"] is None, "a field with an Avro default may be left out"
    # timestamp-millis, decoded by the Confluent deserializer as an aware datetime.
    assert value["event_time"] == datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc), \
        "event_time falls back to the CloudEvents time"
    assert headers["ce_id"] == "click-binary-1" and headers["ce_source"] == SOURCE
    assert headers["ce_type"] == CLICK and headers["ce_specversion"] == "1.0"

    conversions = by_id(read_topic(stack, f"{p}.conversions"), field="conversion_id")
    [(key, value, _)] = conversions["conv-structured-1"]
    assert key == "u-1" and value["value_micros"] == 49_990_000 and value["conversion_type"] == "PURCHASE"

    batch = by_id(read_topic(stack, f"{p}.impressions"))
    assert sorted(batch) == sorted(f"imp-batch-{i}" for i in range(5))
    assert all(len(copies) == 1 for copies in batch.values())


def test_invalid_events_are_refused_with_the_field_path_and_nothing_of_their_request_is_produced(stack):
    client, p = stack["client"], stack["prefix"]
    wrong_type = click_data()
    wrong_type["cost_micros"] = "lots"
    missing = click_data()
    del missing["campaign_id"]
    answer = post_binary(client, event(CLICK, wrong_type, event_id="bad-1"))
    assert answer.status_code == 400, answer.text
    [problem] = answer.json()["events"]
    assert problem["path"] == "data.cost_micros" and problem["id"] == "bad-1" and problem["reason"]

    answer = post_structured(client, event(CLICK, missing, event_id="bad-2"))
    assert answer.status_code == 400
    assert answer.json()["events"][0]["path"] == "data.campaign_id"

    answer = post_binary(client, event("com.example.pageview", click_data(), event_id="bad-3"))
    assert answer.status_code == 400
    assert answer.json()["events"][0]["path"] == "type"

    # One bad event in a batch: every bad one is reported by index, and the good ones are not produced either.
    batch = [event(IMPRESSION, impression_data(), event_id="held-back-1"),
             event(IMPRESSION, {**impression_data(), "currency": "dollars"}, event_id="bad-4"),
             event(IMPRESSION, {**impression_data(), "placment": "FEED"}, event_id="bad-5")]
    answer = post_batch(client, batch)
    assert answer.status_code == 400
    assert [(e["index"], e["path"]) for e in answer.json()["events"]] == [(1, "data.currency"), (2, "data.placment")]
    assert "held-back-1" not in by_id(read_topic(stack, f"{p}.impressions"))

    # Not JSON, not UTF-8.
    answer = client.post("/events", headers={"Content-Type": "application/cloudevents+json"}, content=b"\xff\xfe{")
    assert answer.status_code == 400
    assert answer.json()["events"][0]["path"] == "body"


def test_oversized_bodies_and_batches_get_413(stack):
    client = stack["client"]
    huge = click_data()
    huge["creative_id"] = "x" * (MAX_BODY + 1)
    answer = post_structured(client, event(CLICK, huge))
    assert answer.status_code == 413, answer.text
    too_many = [event(IMPRESSION, impression_data()) for _ in range(MAX_BATCH + 1)]
    answer = post_batch(client, too_many)
    assert answer.status_code == 413, answer.text
    assert "limit" in answer.json()["error"]


def test_requests_without_the_token_get_401_and_non_cloudevents_get_415(stack):
    server, client = stack["server"], stack["client"]
    message = ce_http.to_binary_event(event(CLICK, click_data()))
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}]:
        answer = httpx.post(server.url + "/events", headers={**message.headers, **headers}, content=message.body)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"] == "Bearer"
    answer = client.post("/events", headers={"Content-Type": "application/json"}, content=json.dumps(click_data()))
    assert answer.status_code == 415


def test_a_duplicate_event_is_acknowledged_without_a_second_record(stack):
    client, p = stack["client"], stack["prefix"]
    first = event(CONVERSION, conversion_data("u-dup"), event_id="order-42")
    assert post_binary(client, first).json() == {"accepted": 1, "duplicates": 0}
    # The same event again, in another mode; then in a batch with a new event and a copy of that new event.
    assert post_structured(client, first).json() == {"accepted": 0, "duplicates": 1}
    again = event(CONVERSION, conversion_data("u-dup"), event_id="order-42")
    new = event(CONVERSION, conversion_data("u-dup"), event_id="order-43")
    answer = post_batch(client, [again, new, new])
    assert answer.status_code == 202
    assert answer.json() == {"accepted": 1, "duplicates": 2}
    # The same id from another source is another event.
    other = event(CONVERSION, conversion_data("u-dup"), event_id="order-42", source="/other-shop")
    assert post_binary(client, other).json() == {"accepted": 1, "duplicates": 0}

    conversions = [(h["ce_source"], v["conversion_id"]) for _, v, h in read_topic(stack, f"{p}.conversions")
                   if v["user_id"] == "u-dup"]
    assert sorted(conversions) == [("/other-shop", "order-42"), (SOURCE, "order-42"), (SOURCE, "order-43")]


def test_metrics_count_the_outcomes(stack):
    text = httpx.get(stack["server"].url + "/metrics").text
    assert 'adstream_ingest_events_total{outcome="accepted"}' in text
    assert 'adstream_ingest_requests_total{status="202"}' in text
