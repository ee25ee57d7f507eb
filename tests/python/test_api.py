"""`adstream api serve` driven by clients written by others: gql (GraphQL over graphql-transport-ws and HTTP),
requests (Server-Sent Events), and a real headless Chromium (Debian's, through its chromium-driver and Selenium)
on the embedded dashboard.

One private topology; the campaign-metrics job runs at-least-once with `--flush-interval-ms 10` and a one-minute
commit interval, so every output the tests see was emitted by a flush between commits; the API serves its outputs. Campaign settings and impressions are written with confluent-kafka's Avro serializer.

- gql: a `campaignMetricsUpdated` subscription receives the row of a produced impression (its correlation id and
  the count); a request without a token is refused with 401; an introspection query nested past the depth limit is
  refused with a GraphQL error; a connection's subscription past its limit (3: the dashboard's own three fit) is
  refused with a GraphQL error.
- SSE: the alerts stream delivers the alert a produced impression raises (asked for with the legacy
  `minSeverity=WARNING`, which still means medium and above), and a creative's fatigue change from
  `alerts.creative`, which GraphQL's `openAlerts` and `alertHistory` list too.
- Browser: the dashboard shows the campaign's row and its budget alert, and after one more impression the alert's
  change, with the values of the compacted topics' latest rows (the job evaluates alerts at its watermark, which
  exists once the partitions without events, clicks and credits, went idle: 30 s after the job started); the screenshot is saved as a test artifact
  (`$ADSTREAM_ARTIFACTS`, default `$CARGO_TARGET_DIR/test-artifacts`).
"""

import asyncio
import json
import os
import shutil
import tempfile
import time
import uuid

import pytest
import requests
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError, TransportServerError
from gql.transport.requests import RequestsHTTPTransport
from gql.transport.websockets import WebsocketsTransport

import api_stack

TOKEN = "t-" + uuid.uuid4().hex
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BUDGET = 10_000_000  # 10.00 USD a day
COST = 1_000_000  # 1.00 USD per impression: the 9th reaches 90 % (HIGH), the 10th 100 % (CRITICAL)


@pytest.fixture(scope="module")
def stack(adstream_bin, bootstrap, registry, tmp_path_factory):
    """(prefix, producer, api server) over a private topology with the job running."""
    prefix = "pytest_api_" + uuid.uuid4().hex[:10]
    directory = tmp_path_factory.mktemp("api")
    topology = api_stack.apply_topology(adstream_bin, bootstrap, registry, str(directory), prefix)
    job = api_stack.start_job(adstream_bin, bootstrap, registry, topology, prefix, flush_ms=10, commit_ms=60_000)
    server = api_stack.ApiServer(adstream_bin, bootstrap, registry, topology, TOKEN,
                                 flags=["--max-subscriptions-per-connection", "3"])
    producer = api_stack.EventProducer(bootstrap, registry, prefix)
    yield prefix, producer, server
    server.stop()
    job.stop()
    if os.environ.get("ADSTREAM_TEST_LOGS"):
        print(job.stderr(), server.stderr())


def _wait(what, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _ws_transport(server, token=TOKEN):
    return WebsocketsTransport(url=server.ws_url, init_payload={"authorization": f"Bearer {token}"},
                               subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])


def _http_client(server, token=TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client(transport=RequestsHTTPTransport(url=server.url + "/graphql", headers=headers, timeout=10))


def test_subscription_receives_the_row_of_a_produced_impression(stack):
    prefix, producer, server = stack
    campaign = f"{prefix}-sub"
    producer.campaign(campaign, None, api_stack.noon_time_zone())
    producer.flush()
    subscription = gql("""
        subscription($ids: [String!]) {
          campaignMetricsUpdated(campaignIds: $ids, granularity: HOURLY) {
            campaignId granularity impressions spendMicros correlationId revision
          }
        }""")
    subscription.variable_values = {"ids": [campaign]}

    async def scenario():
        async with Client(transport=_ws_transport(server)) as session:
            received = []

            async def listen():
                async for result in session.subscribe(subscription):
                    received.append(result["campaignMetricsUpdated"])
                    if received[-1]["impressions"] >= 2:
                        return

            task = asyncio.create_task(listen())
            await asyncio.sleep(0.5)  # the subscription is registered before anything is produced
            first = producer.impression(campaign, 250_000)
            second = producer.impression(campaign, 250_000)
            producer.flush()
            await asyncio.wait_for(task, 60)
            return first, second, received

    first, second, received = asyncio.run(scenario())
    last = received[-1]
    assert last["campaignId"] == campaign and last["granularity"] == "HOURLY"
    assert last["impressions"] == 2 and last["spendMicros"] == 500_000
    assert last["correlationId"] == second
    assert {r["correlationId"] for r in received} <= {first, second}


def test_a_request_without_a_valid_token_is_refused_with_401(stack):
    _, _, server = stack
    for token in (None, "wrong-token"):
        with pytest.raises(TransportServerError) as refused:
            _http_client(server, token).execute(gql("{ campaigns { campaignId } }"))
        assert refused.value.code == 401
    # The same request with the token goes through.
    assert "campaigns" in _http_client(server).execute(gql("{ campaigns { campaignId } }"))
    # A WebSocket whose connection_init carries a wrong token is closed, and nothing is subscribed.

    async def bad_ws():
        async with Client(transport=_ws_transport(server, "wrong-token")) as session:
            async for _ in session.subscribe(gql("subscription { alertChanged { alertId } }")):
                return

    with pytest.raises(Exception) as closed:
        asyncio.run(bad_ws())
    causes, error = [], closed.value
    while error is not None:
        causes.append(error)
        error = error.__cause__ or error.__context__
    codes = [getattr(getattr(e, "rcvd", None), "code", None) for e in causes]
    assert 4403 in codes, [repr(e) for e in causes]


def test_hostile_bodies_are_refused_with_a_status_not_a_crash(stack):
    _, _, server = stack
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    # Over the 64 KiB body limit (the server's default): 413 before the body is read to its end.
    oversized = json.dumps({"query": "{ campaigns { campaignId } }", "variables": {"pad": "x" * (65 << 10)}})
    assert requests.post(server.url + "/graphql", data=oversized, headers=headers, timeout=30).status_code == 413
    # Not UTF-8, and not JSON: 400 with a GraphQL-shaped error.
    for body in (b"\xff\xfe{\"query\": 1}", b"{\"query\": ", b"[]", b"{}"):
        refused = requests.post(server.url + "/graphql", data=body, headers=headers, timeout=30)
        assert refused.status_code == 400, body
        assert refused.json()["errors"][0]["message"]
    # The server is still serving.
    assert "campaigns" in _http_client(server).execute(gql("{ campaigns { campaignId } }"))


def test_a_query_past_the_depth_limit_is_refused_with_a_graphql_error(stack):
    _, _, server = stack
    deep = gql("{ __schema { types { fields { type { ofType { ofType { ofType { ofType { name } } } } } } } } }")
    with pytest.raises(TransportQueryError) as refused:
        _http_client(server).execute(deep)
    assert "nested too deep" in str(refused.value)
    shallow = gql("{ __schema { types { name } } }")
    assert _http_client(server).execute(shallow)["__schema"]["types"]


def test_subscriptions_past_the_per_connection_limit_are_refused(stack):
    _, _, server = stack
    subscription = gql("subscription { creativeFatigueChanged { creativeId } }")

    async def scenario():
        async with Client(transport=_ws_transport(server)) as session:
            async def hold():
                async for _ in session.subscribe(subscription):
                    pass

            holders = [asyncio.create_task(hold()) for _ in range(3)]
            await asyncio.sleep(0.5)
            try:
                with pytest.raises(TransportQueryError) as refused:
                    async for _ in session.subscribe(subscription):
                        break
                return str(refused.value)
            finally:
                for task in holders:
                    task.cancel()

    assert "too many subscriptions on this connection: at most 3" in asyncio.run(scenario())


def test_server_sent_events_stream_the_alerts(stack):
    prefix, producer, server = stack
    campaign = f"{prefix}-sse"
    producer.campaign(campaign, BUDGET, api_stack.noon_time_zone())
    producer.flush()
    url = f"{server.url}/events/alerts?campaignIds={campaign}&minSeverity=WARNING"
    assert requests.get(url, timeout=10).status_code == 401
    with requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, stream=True, timeout=60) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for _ in range(9):
            producer.impression(campaign, COST)
        producer.flush()
        event = None
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "alertChanged":
                alert = json.loads(line.split(":", 1)[1])
                if alert["kind"] == "DAILY_BUDGET_REACHED":
                    break
    assert alert["campaignId"] == campaign and alert["severity"] == "HIGH"
    assert alert["rule"] == "daily_budget_reached:tier1" and alert["ruleLevel"] == 0.9
    assert alert["observed"] == 9 * COST  # the day's spend, in micros


def test_creative_alerts_join_the_alert_stream(stack):
    prefix, producer, server = stack
    campaign = f"{prefix}-creative"
    creative = f"{campaign}-cr-7"
    url = f"{server.url}/events/alerts?campaignIds={campaign}&minSeverity=HIGH"
    with requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, stream=True, timeout=60) as stream:
        assert stream.status_code == 200
        # LIMITED is MEDIUM, below the stream's HIGH; FATIGUED is HIGH.
        producer.creative_alert(campaign, creative, "LIMITED", "HEALTHY")
        fatigued = producer.creative_alert(campaign, creative, "FATIGUED", "LIMITED")
        producer.flush()
        event, alerts = None, []
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "alertChanged":
                alerts.append(json.loads(line.split(":", 1)[1]))
                break
    (alert,) = alerts
    assert alert["alertId"] == fatigued and alert["kind"] == "CREATIVE_FATIGUE"
    assert alert["campaignId"] == campaign and alert["creativeId"] == creative
    assert alert["severity"] == "HIGH" and alert["previousSeverity"] == "MEDIUM"
    assert alert["rule"] == "creative_fatigue:fatigued" and alert["dayStart"] is None
    assert (alert["observed"], alert["threshold"]) == (0.012, 0.02)

    query = gql("""
        query($ids: [String!]) {
          openAlerts(campaignIds: $ids, minSeverity: MEDIUM) { alertId kind creativeId severity }
          alertHistory(campaignIds: $ids) { alertId severity }
        }""")
    query.variable_values = {"ids": [campaign]}
    result = _http_client(server).execute(query)
    assert result["openAlerts"] == [
        {"alertId": fatigued, "kind": "CREATIVE_FATIGUE", "creativeId": creative, "severity": "HIGH"}]
    assert [a["severity"] for a in result["alertHistory"]] == ["HIGH", "MEDIUM"]


def _browser(profile):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def _artifacts():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "adstream", "target")
    directory = os.environ.get("ADSTREAM_ARTIFACTS") or os.path.join(target, "test-artifacts")
    os.makedirs(directory, exist_ok=True)
    return directory


def _row(driver, campaign):
    """The dashboard row of `campaign` as {field: data-value} plus its revision, or None."""
    return driver.execute_script("""
        const tr = document.querySelector(`#campaigns tr[data-campaign-id="${arguments[0]}"]`);
        if (!tr) return null;
        const row = { revision: tr.dataset.revision, name: tr.querySelector('[data-field=name]').textContent };
        for (const td of tr.querySelectorAll('td[data-value]')) row[td.dataset.field] = td.dataset.value;
        return row;""", campaign)


def _alerts(driver, campaign):
    """The dashboard's alert feed entries of `campaign`, newest first."""
    return driver.execute_script("""
        return [...document.querySelectorAll(`#alerts li[data-campaign-id="${arguments[0]}"]`)]
          .map((li) => ({ alertId: li.dataset.alertId, kind: li.dataset.kind, severity: li.dataset.severity,
                          text: li.textContent }));""", campaign)


@pytest.mark.skipif(not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
                    reason="needs Debian's chromium and chromium-driver (./dev/setup installs them)")
def test_dashboard_shows_the_campaign_and_its_alert_change_live(stack, bootstrap, registry):
    prefix, producer, server = stack
    campaign = f"{prefix}-dash"
    producer.campaign(campaign, BUDGET, api_stack.noon_time_zone(), name="Dashboard test campaign")
    producer.flush()
    profile = tempfile.mkdtemp(prefix="adstream-chromium-")
    driver = _browser(profile)
    try:
        driver.get(f"{server.url}/#token={TOKEN}")
        _wait("the dashboard to go live",
              lambda: driver.execute_script("return document.querySelector('#status').dataset.state") == "live")
        # Produced after the page is live: what appears comes through the subscriptions.
        for _ in range(9):
            producer.impression(campaign, COST)
        producer.flush()
        daily = f"{prefix}.daily"

        def row_matches_topic():
            latest = api_stack.latest_rows(bootstrap, registry, daily, key_prefix=f"{campaign}|daily|")
            if len(latest) != 1:
                return None
            (topic_row,) = latest.values()
            shown = _row(driver, campaign)
            if not shown or shown["revision"] != str(topic_row["revision"]):
                return None
            if shown["name"] != "Dashboard test campaign":  # the settings, from the campaigns table
                return None
            return topic_row, shown

        topic_row, shown = _wait("the row to show the topic's latest daily row", row_matches_topic)
        assert topic_row["impressions"] == 9 and topic_row["spend_micros"] == 9 * COST
        for field, column in (("impressions", "impressions"), ("clicks", "clicks"), ("spendMicros", "spend_micros")):
            assert int(shown[field]) == topic_row[column], field
        assert float(shown["ctr"]) == topic_row["ctr"]

        def alert_shown(severity):
            def check():
                topic = [a for a in api_stack.alerts_of(bootstrap, registry, f"{prefix}.alerts", campaign)
                         if a["kind"] == "DAILY_BUDGET_REACHED"]
                if not topic or topic[-1]["severity"] != severity:
                    return None
                shown = [a for a in _alerts(driver, campaign) if a["kind"] == "DAILY_BUDGET_REACHED"]
                if not shown or shown[0]["alertId"] != topic[-1]["alert_id"]:
                    return None
                return topic[-1], shown[0]
            return check

        topic_alert, shown_alert = _wait("the HIGH budget alert", alert_shown("HIGH"))
        assert shown_alert["severity"] == "HIGH" and topic_alert["message"] in shown_alert["text"]

        producer.impression(campaign, COST)
        producer.flush()
        topic_alert, shown_alert = _wait("the alert's change to CRITICAL", alert_shown("CRITICAL"))
        assert shown_alert["severity"] == "CRITICAL" and topic_alert["previous_severity"] == "HIGH"
        assert topic_alert["message"] in shown_alert["text"]
        _, shown = _wait("the row to show the 10th impression", row_matches_topic)
        assert int(shown["impressions"]) == 10
        pacing = driver.execute_script(
            f"return document.querySelector('#campaigns tr[data-campaign-id=\"{campaign}\"] .bar.over') !== null")
        assert pacing, "the budget bar shows the budget as spent"
        path = os.path.join(_artifacts(), "dashboard.png")
        assert driver.save_screenshot(path)
        print(f"screenshot: {path}")
    except BaseException:
        # What the page showed when it failed, and what its console said, beside the other artifacts.
        driver.save_screenshot(os.path.join(_artifacts(), "dashboard-failed.png"))
        print("dashboard status:", driver.execute_script("return document.querySelector('#status').textContent"))
        print("alerts shown:", _alerts(driver, campaign))
        print("server log:", server.stderr()[-4000:])
        raise
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
