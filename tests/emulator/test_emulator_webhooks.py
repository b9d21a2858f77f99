"""Emulator webhooks: HubSpot's shapes, SDK-checked signatures, batching, retries, disorder."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from hubspot.utils.signature import Signature

from localdev.emulator import Emulator
from localdev.emulator.store import PRIMARY_TYPE_IDS
from localdev.emulator.webhooks import RETRY_JITTER, retry_delay_seconds
from shared.hubspot.signatures import normalize_v3_uri, verify_v3
from tests.helpers.webhook_sink import Received, WebhookSink

pytestmark = pytest.mark.integration
SECRET = "client-secret-for-tests"
APP_ID = 9393361
TOKEN = "emulator-token"


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as s:
        yield s


def _emulator(sink: WebhookSink, **kw: object) -> Emulator:
    settings: dict = {
        "webhook_url": sink.url,
        "client_secret": SECRET,
        "app_id": APP_ID,
        "webhook_time_scale": 2.5e-5,
        "seed": 1,
        **kw,
    }
    return Emulator(**settings).start()


@pytest.fixture
def emu(sink: WebhookSink) -> Iterator[Emulator]:
    emulator = _emulator(sink)
    yield emulator
    emulator.stop()


def _api(emu: Emulator, method: str, path: str, body: object = None) -> httpx.Response:
    return httpx.request(
        method, emu.url + path, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )


def _assert_signed(request: Received, url: str) -> None:
    body = request.body.decode()
    timestamp = request.headers["x-hubspot-request-timestamp"]
    v3 = request.headers["x-hubspot-signature-v3"]
    assert Signature.is_valid(v3, SECRET, body, normalize_v3_uri(url), "POST", "v3", timestamp)
    assert Signature.is_valid(
        request.headers["x-hubspot-signature"], SECRET, body, signature_version="v1"
    )
    assert verify_v3(SECRET, "POST", url, request.body, v3, timestamp, int(time.time() * 1000)).ok


def test_ui_change_delivers_a_signed_hubspot_event(emu: Emulator, sink: WebhookSink) -> None:
    [company] = emu.seed("companies", [{"name": "Acme"}])
    emu.ui_change("companies", company, {"name": "Acme Ltd"}, user_id=45678)
    assert emu.webhooks.wait_idle(10)
    [request] = sink.accepted()
    _assert_signed(request, sink.url)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("HubSpot Connect 2.0")
    assert request.headers["x-hubspot-signature-version"] == "v1"
    [event] = request.events
    assert list(event)[:7] == [
        "eventId",
        "subscriptionId",
        "portalId",
        "appId",
        "occurredAt",
        "subscriptionType",
        "attemptNumber",
    ]
    assert event["objectId"] == int(company) and isinstance(event["objectId"], int)
    assert event | {"eventId": 0, "occurredAt": 0, "subscriptionId": 0} == {
        "eventId": 0,
        "subscriptionId": 0,
        "portalId": emu.portal_id,
        "appId": APP_ID,
        "occurredAt": 0,
        "subscriptionType": "company.propertyChange",
        "attemptNumber": 0,
        "objectId": int(company),
        "changeSource": "CRM_UI",
        "sourceId": "userId:45678",
        "propertyName": "name",
        "propertyValue": "Acme Ltd",
    }


def test_our_api_writes_come_back_as_integration_echoes(emu: Emulator, sink: WebhookSink) -> None:
    created = _api(
        emu, "POST", "/crm/v3/objects/contacts", {"properties": {"email": "e@x.example"}}
    ).json()
    _api(
        emu,
        "PATCH",
        f"/crm/v3/objects/contacts/{created['id']}",
        {"properties": {"firstname": "E"}},
    )
    _api(
        emu,
        "PATCH",
        f"/crm/v3/objects/contacts/{created['id']}",
        {"properties": {"firstname": "E"}},
    )  # no-op
    assert emu.webhooks.wait_idle(10)
    events = sink.events()
    assert [(e["subscriptionType"], e.get("propertyName")) for e in events] == [
        ("contact.creation", None),
        ("contact.propertyChange", "email"),
        ("contact.propertyChange", "firstname"),
    ]
    assert all(
        (e["changeSource"], e["sourceId"], e["appId"]) == ("INTEGRATION", str(APP_ID), APP_ID)
        for e in events
    )
    assert events[0]["changeFlag"] == "CREATED"
    by_type = {
        e["subscriptionType"] + str(e.get("propertyName")): e["subscriptionId"] for e in events
    }
    assert len(set(by_type.values())) == 3  # one subscription per type and property


def test_batches_hold_at_most_100_events(emu: Emulator, sink: WebhookSink) -> None:
    ids = emu.seed("companies", [{"name": f"c{i}"} for i in range(250)])
    emu.webhooks.pause()
    for start in range(0, 250, 100):
        inputs = [{"id": i, "properties": {"city": f"x{i}"}} for i in ids[start : start + 100]]
        assert (
            _api(
                emu, "POST", "/crm/v3/objects/companies/batch/update", {"inputs": inputs}
            ).status_code
            == 200
        )
    assert not emu.webhooks.wait_idle(0.05)  # paused: nothing leaves
    emu.webhooks.resume()
    assert emu.webhooks.wait_idle(10)
    sizes = [len(r.events) for r in sink.accepted()]
    assert max(sizes) == 100 and sum(sizes) == 250
    assert sorted(e["objectId"] for e in sink.events()) == sorted(int(i) for i in ids)
    for request in sink.accepted():
        _assert_signed(request, sink.url)


def test_failed_deliveries_are_retried_with_attempt_numbers(
    emu: Emulator, sink: WebhookSink
) -> None:
    sink.responses.extend([500, 503, 404])
    emu.ui_create("companies", {"name": "R"})
    assert emu.webhooks.wait_idle(10)
    attempts = [(r.status, [e["attemptNumber"] for e in r.events]) for r in sink.requests]
    assert [a[0] for a in attempts] == [500, 503, 404, 200]
    assert all(numbers == [n] * len(numbers) for n, (_, numbers) in enumerate(attempts))
    ids = {tuple(e["eventId"] for e in r.events) for r in sink.requests}
    assert len(ids) == 1  # the same events each time
    for request in sink.requests:
        _assert_signed(request, sink.url)  # re-signed with a fresh timestamp
    stats = emu.webhooks.stats()
    assert (stats["retried"], stats["delivered"], stats["failed"]) == (3, 1, 0)


def test_hubspot_retry_schedule_ten_retries_within_24_hours_first_after_minutes() -> None:
    for jitter in (0.0, 0.999_999):
        delays = [retry_delay_seconds(n, jitter) for n in range(1, 11)]
        assert 60 <= delays[0] <= 120
        assert all(later > earlier for earlier, later in itertools.pairwise(delays))
        assert 20 * 3600 <= sum(delays) <= 24 * 3600


def test_ten_retries_on_hubspots_scaled_schedule_each_freshly_signed(sink: WebhookSink) -> None:
    scale = 2.5e-5  # HubSpot's 22.7 hours of retries in about 2 s
    emu = _emulator(sink, webhook_time_scale=scale)
    try:
        sink.default = 500
        emu.ui_create("companies", {"name": "Down All Day"})  # one batch of two events
        assert emu.webhooks.wait_idle(30)
    finally:
        emu.stop()
    batches = sink.requests
    assert [r.events[0]["attemptNumber"] for r in batches] == list(range(11))
    stamps = [int(r.headers["x-hubspot-request-timestamp"]) for r in batches]
    for n in range(1, 11):  # never sooner than the step allows (ms stamps: 1 ms slack)
        floor_ms = retry_delay_seconds(n, 1.0) * scale * 1000
        assert stamps[n] - stamps[n - 1] >= floor_ms - 1, (n, stamps)
    assert (1 - RETRY_JITTER) * 80 * 1023 * scale * 1000 - 10 <= stamps[-1] - stamps[0]
    for request in batches:
        _assert_signed(request, sink.url)
    assert emu.webhooks.stats()["failed"] == 1


def test_ten_deliveries_in_flight_by_default_and_configurable(sink: WebhookSink) -> None:
    emu = _emulator(sink)
    try:
        httpx.post(emu.url + "/_emulator/webhooks", json={"batchSize": 1})
        emu.webhooks.pause()
        for n in range(10):
            emu.ui_create("companies", {"name": f"c{n}"})  # a creation and a name change each
        sink.hold = threading.Barrier(10, timeout=20)  # answers only once 10 are in flight
        emu.webhooks.resume()
        assert emu.webhooks.wait_idle(30)
        stats = emu.webhooks.stats()
        assert (stats["peakInFlight"], stats["maxConcurrentRequests"]) == (10, 10)
        assert len(sink.accepted()) == 20 and stats["retried"] == 0
        answer = httpx.post(emu.url + "/_emulator/webhooks", json={"maxConcurrentRequests": 6})
        assert answer.json()["maxConcurrentRequests"] == 6
        emu.webhooks.clear()
        emu.webhooks.pause()
        for n in range(6):
            emu.ui_create("companies", {"name": f"d{n}"})
        sink.hold = threading.Barrier(6, timeout=20)
        emu.webhooks.resume()
        assert emu.webhooks.wait_idle(30)
        assert emu.webhooks.stats()["peakInFlight"] == 6
    finally:
        sink.hold = None
        emu.stop()


def test_4xx_not_retried_when_configured_and_retries_capped(sink: WebhookSink) -> None:
    emu = _emulator(sink, webhook_retry_4xx=False, webhook_max_retries=3)
    try:
        sink.responses.append(400)
        emu.ui_create("companies", {"name": "A"})
        assert emu.webhooks.wait_idle(10)
        assert [r.status for r in sink.requests] == [400]
        sink.default = 500
        emu.ui_create("companies", {"name": "B"})
        assert emu.webhooks.wait_idle(10)
        assert [r.status for r in sink.requests[1:]] == [500] * 4  # first try + 3 retries
        assert emu.webhooks.stats()["failed"] == 2
    finally:
        emu.stop()


def test_connection_errors_are_retried_to_the_url_in_force(sink: WebhookSink) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    emu = Emulator(
        webhook_url=dead_url, client_secret=SECRET, app_id=APP_ID, webhook_time_scale=2.5e-4
    ).start()
    try:
        emu.ui_create("contacts", {"email": "c@x.example"})
        deadline = time.monotonic() + 10
        while not emu.webhooks.attempts and time.monotonic() < deadline:
            time.sleep(0.005)
        assert emu.webhooks.attempts[0].status is None  # connection refused
        emu.webhooks.configure(url=sink.url)
        emu.webhooks.flush()
        assert emu.webhooks.wait_idle(10)
        [request] = sink.accepted()
        assert all(e["attemptNumber"] >= 1 for e in request.events)
        _assert_signed(request, sink.url)
    finally:
        emu.stop()


def test_shuffle_and_duplicates(sink: WebhookSink) -> None:
    emu = _emulator(sink, webhook_shuffle=True, webhook_duplicate_rate=0.3, seed=7)
    try:
        emu.webhooks.pause()
        for n in range(150):
            emu.ui_create("companies", {"name": f"s{n}"})  # creation + name change each
        emu.webhooks.resume()
        assert emu.webhooks.wait_idle(10)
        events = sink.events()
        counts = Counter(e["eventId"] for e in events)
        assert len(counts) == 300 and max(counts.values()) == 2
        assert emu.webhooks.stats()["duplicated"] == sum(c - 1 for c in counts.values()) > 0
        first_seen = list(dict.fromkeys(e["eventId"] for e in events))
        assert first_seen != sorted(first_seen)  # not in occurrence order
    finally:
        emu.stop()


def test_merge_deletion_and_association_events(emu: Emulator, sink: WebhookSink) -> None:
    a, b = emu.seed("companies", [{"name": "A"}, {"name": "B", "phone": "1"}])
    [contact] = emu.seed("contacts", [{"email": "m@x.example"}])
    new = emu.merge("companies", a, b, user_id=3)
    assert new not in (a, b)
    _api(emu, "PUT", f"/crm/v4/objects/contacts/{contact}/associations/default/companies/{a}")
    _api(emu, "DELETE", f"/crm/v3/objects/contacts/{contact}")
    assert emu.webhooks.wait_idle(10)
    events = {e["subscriptionType"]: e for e in sink.events()}
    merge = events["company.merge"]
    assert (
        merge["objectId"],
        merge["primaryObjectId"],
        merge["mergedObjectIds"],
        merge["newObjectId"],
    ) == (int(new), int(a), [int(b)], int(new))
    assert merge["numberOfPropertiesMoved"] == 1 and merge["sourceId"] == "userId:3"
    link = events["contact.associationChange"]
    expected = ("CONTACT_TO_COMPANY", int(contact), int(new))  # the old id resolved
    assert (link["associationType"], link["fromObjectId"], link["toObjectId"]) == expected
    assert link["associationRemoved"] is False and link["changeSource"] == "INTEGRATION"
    assert events["company.associationChange"]["associationType"] == "COMPANY_TO_CONTACT"
    assert events["contact.deletion"]["changeFlag"] == "DELETED"


def test_primary_associations_and_the_company_auto_association_setting(
    emu: Emulator, sink: WebhookSink
) -> None:
    [company] = emu.seed("companies", [{"name": "Acme", "domain": "acme.example"}])
    assert emu.state.auto_create_companies is False  # off by default, as in a new portal
    answer = httpx.post(f"{emu.url}/_emulator/settings", json={"autoCreateCompanies": True})
    assert answer.json()["autoCreateCompanies"] is True
    try:
        known = emu.ui_create("contacts", {"email": "a@acme.example"})
        fresh = emu.ui_create("contacts", {"email": "b@fresh.example"})
        emu.ui_create("contacts", {"email": "c@gmail.com"})  # freemail: left alone
    finally:
        emu.state.auto_create_companies = False
    [made] = [r for r in emu.state.live("companies") if r.values.get("domain") == "fresh.example"]
    assert len(emu.state.live("companies")) == 2
    # The unlabeled association plus the primary one, each way.
    primary = PRIMARY_TYPE_IDS[("contacts", "companies")]
    assert emu.state.associations("contacts", int(known), "companies") == [
        (int(company), sorted([primary, 279]))
    ]
    # A primary set through the v4 labels endpoint replaces the contact's primary company.
    body = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": primary}]
    labeled = _api(
        emu, "PUT", f"/crm/v4/objects/contacts/{fresh}/associations/companies/{company}", body
    )
    assert labeled.status_code == 201 and labeled.json()["toObjectId"] == int(company)
    assert emu.state.associations("contacts", int(fresh), "companies") == [
        (int(company), sorted([primary, 279])),
        (made.id, [279]),  # demoted, still associated
    ]
    assert emu.webhooks.wait_idle(10)
    events = sink.events()
    [creation] = [e for e in events if e["subscriptionType"] == "company.creation"]
    assert creation["objectId"] == made.id and creation["changeSource"] == "HUBSPOT_INTERNAL"
    flagged = {
        (e["fromObjectId"], e["toObjectId"], e["associationRemoved"])
        for e in events
        if e["subscriptionType"] == "contact.associationChange" and e["isPrimaryAssociation"]
    }
    assert flagged == {
        (int(known), int(company), False),
        (int(fresh), made.id, False),
        (int(fresh), made.id, True),
        (int(fresh), int(company), False),
    }


def test_signed_uri_is_the_configured_url_with_its_query(sink: WebhookSink) -> None:
    url = sink.url + "?route=a%2Fb&x=%20"
    emu = _emulator(sink, webhook_url=url)
    try:
        emu.ui_create("companies", {"name": "U"})
        assert emu.webhooks.wait_idle(10)
        request = sink.accepted()[0]
        assert request.path.endswith("?route=a%2Fb&x=%20")
        _assert_signed(request, url)
        body = json.loads(request.body)
        assert body[0]["subscriptionType"] == "company.creation"
    finally:
        emu.stop()


def test_identical_writes_can_be_made_to_fire(sink: WebhookSink) -> None:
    emu = _emulator(sink, identical_writes_fire=True)
    try:
        [company] = emu.seed("companies", [{"name": "Same"}])
        _api(emu, "PATCH", f"/crm/v3/objects/companies/{company}", {"properties": {"name": "Same"}})
        assert emu.webhooks.wait_idle(10)
        [event] = sink.events()
        assert (event["propertyName"], event["propertyValue"]) == ("name", "Same")
        assert len(emu.snapshot("companies", company)["propertiesWithHistory"]["name"]) == 2
    finally:
        emu.stop()


def test_concurrent_writers_each_change_fires_once(emu: Emulator, sink: WebhookSink) -> None:
    ids = emu.seed("companies", [{"name": f"w{i}"} for i in range(8)])
    statuses: list[int] = []  # 8 x 10 PATCHes stay under the default 100 calls per 10 s

    def writer(company: str) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            for n in range(10):
                body = {"properties": {"city": f"c{n}"}}
                path = f"/crm/v3/objects/companies/{company}"
                statuses.append(client.patch(emu.url + path, json=body).status_code)
                emu.ui_change("companies", company, {"phone": str(n)})

    threads = [threading.Thread(target=writer, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 80
    assert emu.webhooks.wait_idle(10)
    events = sink.events()
    assert len(events) == len({e["eventId"] for e in events}) == 8 * 20
    for company in ids:
        history = emu.snapshot("companies", company)["propertiesWithHistory"]
        assert [h["value"] for h in history["city"]] == [f"c{n}" for n in reversed(range(10))]
        stamps = [h["timestamp"] for h in history["hs_lastmodifieddate"]]
        assert stamps == sorted(stamps, reverse=True)
