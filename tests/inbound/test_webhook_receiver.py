"""webhook_receiver over real HTTP (functions-framework) with a real database.

Deliveries are signed by HubSpot's SDK (``Signature``) or sent by the emulator's
own webhook dispatcher; nothing in the receiver is mocked.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hubspot.utils.signature import Signature

from shared.api.metrics import read_snapshot
from shared.db.connection import url_connector
from shared.engine import Engine
from shared.engine.sync import TO_HUBSPOT, sync_customers
from shared.inbound.process import process_pending
from shared.inbound.queries import count_echoes
from shared.tasks import InProcessDispatcher, Task
from tests.conftest import TEST_ACCESS_TOKEN, TEST_APP_ID, TEST_CLIENT_SECRET, serving
from tests.engine.test_reconcile import linked_customer
from tests.helpers.db_kill import in_thread, kill_lock_waiter
from tests.helpers.functions import FunctionProcess, serve_function
from tests.inbound.test_inbound_processing import change, customer, new_customer

pytestmark = pytest.mark.integration

COMPANY_PATH = "/v1/webhooks/hubspot/company"
CONTACT_PATH = "/v1/webhooks/hubspot/contact"


@pytest.fixture(scope="module")
def receiver(engine: Engine) -> Iterator[str]:
    """The function served in-process (it uses the engine fixture through get_engine)."""
    with serve_function("webhook_receiver") as url:
        yield url


def signed_headers(
    uri: str, body: bytes, *, secret: str = TEST_CLIENT_SECRET, age_ms: int = 0
) -> dict[str, str]:
    """v3 headers computed by HubSpot's SDK."""
    ts = str(int(time.time() * 1000) - age_ms)
    signature = Signature.get_signature(
        secret, body.decode(), "v3", http_uri=uri, http_method="POST", timestamp=ts
    )
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": ts,
    }


def deliver(base: str, path: str, events: list[dict[str, Any]], **sign: Any) -> httpx.Response:
    body = json.dumps(events, separators=(",", ":")).encode()
    return httpx.post(base + path, content=body, headers=signed_headers(base + path, body, **sign))


def stored_count(engine: Engine, events: list[dict[str, Any]]) -> int:
    keys = [f"{e['subscriptionId']}:{e['eventId']}:{e['occurredAt']}" for e in events]
    with engine.database.transaction() as tx:
        return int(
            tx.fetch_value(
                "SELECT count(*) FROM accounts.hubspot_webhook_events "
                "WHERE event_id = ANY(CAST(:keys AS text[]))",
                {"keys": keys},
            )
        )


def test_sdk_signed_batch_applied_and_stored_once_under_redelivery(
    engine: Engine, emulator: Any, receiver: str
) -> None:
    cid, company = new_customer(engine, emulator)
    events = [change(company, "name", "Renamed In HubSpot"), change(company, "twitterhandle", "x")]
    first = deliver(receiver, COMPANY_PATH, events)
    assert first.status_code == 200, first.text
    assert first.json()["stored"] == 2 and first.json()["outcomes"]["applied"] == 1
    assert customer(engine, cid)["company_name"] == "Renamed In HubSpot"
    # HubSpot's retry: same events, next attemptNumber, new timestamp and signature.
    again = deliver(receiver, COMPANY_PATH, [{**e, "attemptNumber": 1} for e in events])
    assert again.status_code == 200
    assert again.json()["stored"] == 0 and again.json()["duplicates"] == 2
    assert again.json()["processed"] == 0
    assert stored_count(engine, events) == 2


def test_any_path_and_query_string(engine: Engine, emulator: Any, receiver: str) -> None:
    for path in (CONTACT_PATH, "/", "/hooks/any/where?portal=62515&x=a%20b"):
        events = [change(900_001, "name", "Unknown Company")]
        response = deliver(receiver, path, events)
        assert response.status_code == 200, (path, response.text)
        assert stored_count(engine, events) == 1


def test_forged_stale_unsigned_and_v1_only_refused_with_nothing_stored(
    engine: Engine, receiver: str
) -> None:
    events = [change(900_002, "name", "Never Stored")]
    body = json.dumps(events).encode()
    uri = receiver + COMPANY_PATH
    forged = deliver(receiver, COMPANY_PATH, events, secret="not-the-secret")
    stale = deliver(receiver, COMPANY_PATH, events, age_ms=301_000)
    unsigned = httpx.post(uri, content=body, headers={"Content-Type": "application/json"})
    v1_only = httpx.post(
        uri,
        content=body,
        headers={
            "X-HubSpot-Signature": Signature.get_signature(TEST_CLIENT_SECRET, body.decode(), "v1"),
            "X-HubSpot-Signature-Version": "v1",
        },
    )
    for response, reason in (
        (forged, "bad_signature"),
        (stale, "stale"),
        (unsigned, "missing"),
        (v1_only, "missing"),
    ):
        assert response.status_code == 401, response.text
        assert reason in response.json()["error"]
    assert stored_count(engine, events) == 0


def _post_signed_bytes(base: str, body: bytes) -> httpx.Response:
    uri = base + COMPANY_PATH
    return httpx.post(uri, content=body, headers=signed_headers(uri, body))


def test_bad_bodies_answer_400_or_413_naming_the_problem(engine: Engine, receiver: str) -> None:
    good = change(900_003, "name", "x")
    cases = {
        b"{not json": "not JSON",
        b'{"eventId": 1}': "JSON array",
        json.dumps([good, 17]).encode(): "event 1: must be an object",
        json.dumps([good, [good]]).encode(): "event 1: must be an object",
    }
    for body, named in cases.items():
        response = _post_signed_bytes(receiver, body)
        assert response.status_code == 400, body
        assert named in response.json()["error"], response.json()
    too_big = json.dumps([{**good, "propertyValue": "x" * (1024 * 1024)}]).encode()
    assert _post_signed_bytes(receiver, too_big).status_code == 413
    assert stored_count(engine, [good]) == 0


def test_invalid_events_are_recorded_and_their_97_neighbours_applied(
    engine: Engine, emulator: Any, receiver: str
) -> None:
    """Issue 15 item 4: a malformed event no longer makes HubSpot retry (and drop) 100."""
    linked = [new_customer(engine, emulator) for _ in range(3)]
    good = [change(company, "name", f"Valid {n}") for n, (_, company) in enumerate(linked)]
    good += [change(900_100 + n, "name", "Unknown") for n in range(94)]
    no_object_id = {k: v for k, v in change(900_099, "name", "?").items() if k != "objectId"}
    no_value = {k: v for k, v in change(900_098, "name", "?").items() if k != "propertyValue"}
    text_id = {**change(900_097, "name", "?"), "eventId": "123"}
    batch = [*good[:50], no_object_id, *good[50:], no_value, text_id]
    first = deliver(receiver, COMPANY_PATH, batch)
    assert first.status_code == 200, first.text
    assert first.json()["received"] == 100  # HubSpot's largest batch
    assert first.json()["stored"] == 97 and first.json()["invalid"] == 3
    assert stored_count(engine, good) == 97
    for n, (cid, _) in enumerate(linked):
        assert customer(engine, cid)["company_name"] == f"Valid {n}"
    # HubSpot's retry of the same batch records nothing twice.
    again = deliver(receiver, COMPANY_PATH, [{**e, "attemptNumber": 1} for e in batch])
    assert again.status_code == 200
    assert again.json()["stored"] == 0 and again.json()["duplicates"] == 97
    with engine.database.transaction() as tx:
        rows = tx.fetch(
            "SELECT object_id, processed, processed_at, processing_error, raw_payload "
            "FROM accounts.hubspot_webhook_events WHERE event_type = 'invalid'"
        )
    mine = [r for r in rows if r["raw_payload"].get("eventId") in {e["eventId"] for e in batch}]
    assert len(mine) == 3
    assert all(r["processed"] and r["processed_at"] is not None for r in mine)
    reasons = [r["processing_error"] for r in mine]
    assert any("event 50" in r and "objectId: Field required" in r for r in reasons), reasons
    assert any("event 98" in r and "needs propertyValue" in r for r in reasons), reasons
    assert any("event 99" in r and "eventId" in r for r in reasons), reasons
    assert all("?" not in r for r in reasons)  # a reason never repeats a value
    assert {r["object_id"] for r in mine} == {"", "900098", "900097"}
    assert read_snapshot(engine.database).webhook_invalid_events >= 3


def test_emulator_webhooks_applied_echoes_ignored_duplicates_stored_once(
    engine: Engine, emulator: Any, receiver: str
) -> None:
    cid, company = new_customer(engine, emulator)
    emulator.webhooks.configure(url=receiver + COMPANY_PATH, duplicate_rate=1.0)
    try:
        emulator.ui_change("companies", company, {"name": "Changed By A User"})
        assert emulator.webhooks.wait_idle(20)
        assert customer(engine, cid)["company_name"] == "Changed By A User"
        with engine.database.transaction() as tx:
            echoes_before = count_echoes(tx, TEST_APP_ID)
        engine.hubspot.companies.update(company, {"name": "Written Through The API"})
        assert emulator.webhooks.wait_idle(20)
    finally:
        emulator.webhooks.configure(url=None, duplicate_rate=0.0)
    assert customer(engine, cid)["company_name"] == "Changed By A User"
    with engine.database.transaction() as tx:
        assert count_echoes(tx, TEST_APP_ID) == echoes_before + 1
        rows = tx.fetch(
            "SELECT event_id, count(*) AS n FROM accounts.hubspot_webhook_events "
            "WHERE object_id = :o GROUP BY event_id",
            {"o": company},
        )
    assert rows and all(r["n"] == 1 for r in rows)
    assert emulator.webhooks.stats()["duplicated"] >= 2


@pytest.mark.parametrize("last_crossed", ["to_hubspot", "from_hubspot"])
def test_reordered_delivery_cannot_undo_a_newer_value_already_in_sync(
    engine: Engine, emulator: Any, receiver: str, last_crossed: str
) -> None:
    # HubSpot: V -> CLOSED (t1) -> V (t2); the webhook of t2 arrives first. Its value is
    # the one on record (the echo of our own write, or in sync after HubSpot's), so it
    # writes nothing; it must still make the older t1 event stale (issue 22).
    cid, company = new_customer(engine, emulator, status="ACTIVE")
    (synced,) = sync_customers(engine, [cid], allowed=TO_HUBSPOT, triggered_by="test")
    assert synced.status == "synced"
    start = int(time.time() * 1000)
    value = "ACTIVE"
    if last_crossed == "from_hubspot":
        value = "SUSPENDED"
        crossed = deliver(receiver, COMPANY_PATH, [change(company, "warp_status", value)])
        assert crossed.json()["outcomes"] == {"applied": 1}, crossed.text
    newer = deliver(
        receiver, COMPANY_PATH, [change(company, "warp_status", value, at=start + 2_000)]
    )
    assert newer.status_code == 200, newer.text
    older = deliver(
        receiver, COMPANY_PATH, [change(company, "warp_status", "CLOSED", at=start + 1_000)]
    )
    assert older.status_code == 200, older.text
    assert older.json()["outcomes"] == {"stale": 1}, older.text
    assert customer(engine, cid)["status"] == value


def test_contact_email_from_a_webhook_carries_on_to_the_company_domain(
    engine: Engine, emulator: Any, receiver: str
) -> None:
    # The company's domain derives from the contact's email (email_to_domain, WARP to
    # HubSpot). The inbound flow writes WARP only; the derived domain must follow through
    # outbound sync, not wait for the next reconciliation (issue 22).
    made = linked_customer(engine, emulator)
    (synced,) = sync_customers(engine, [made["id"]], triggered_by="test")
    assert synced.error is None
    edit = change(made["contact_id"], "email", "pat@newco.example", kind="contact.propertyChange")
    response = deliver(receiver, CONTACT_PATH, [edit])
    assert response.json()["outcomes"] == {"applied": 1}, response.text
    assert customer(engine, made["id"])["contact"]["email"] == "pat@newco.example"
    dispatcher = engine.dispatcher
    assert isinstance(dispatcher, InProcessDispatcher)
    dispatcher.run_due_now()  # the coalesced flush task, due now
    assert dispatcher.wait_idle()
    assert emulator.values("companies", made["company_id"])["domain"] == "newco.example"


def test_connection_killed_mid_store_answers_5xx_then_redelivery_succeeds(
    engine: Engine, emulator: Any, receiver: str, database_url: str
) -> None:
    cid, company = new_customer(engine, emulator)
    events = [change(company, "name", "After The Kill"), change(company, "warp_credit_limit", "1")]
    key = "{subscriptionId}:{eventId}:{occurredAt}".format(**events[1])
    blocker = url_connector(database_url)()
    try:
        # An uncommitted row with the batch's second key: the function's INSERT waits on it.
        blocker.cursor().execute(
            "INSERT INTO accounts.hubspot_webhook_events (event_id, event_type, object_type, "
            "object_id, raw_payload, occurred_at) VALUES (:k, 'x', 'company', '0', '{}', NOW())",
            {"k": key},
        )
        join = in_thread(lambda: deliver(receiver, COMPANY_PATH, events))
        kill_lock_waiter(blocker, timeout=10)
        response = join()
        blocker.rollback()
    finally:
        blocker.close()
    assert response.status_code == 503, response.text
    assert stored_count(engine, events) == 0
    assert not customer(engine, cid)["company_name"].startswith("After")
    redelivery = deliver(receiver, COMPANY_PATH, [{**e, "attemptNumber": 1} for e in events])
    assert redelivery.status_code == 200, redelivery.text
    assert redelivery.json()["stored"] == 2
    assert stored_count(engine, events) == 2
    assert customer(engine, cid)["company_name"] == "After The Kill"


def test_connection_killed_mid_processing_hands_events_to_the_task(
    engine: Engine, emulator: Any, receiver: str, database_url: str
) -> None:
    cid, company = new_customer(engine, emulator)
    events = [change(company, "name", "Processed By The Task")]
    blocker = url_connector(database_url)()
    try:
        blocker.cursor().execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(:cid, 8410))", {"cid": cid}
        )
        join = in_thread(lambda: deliver(receiver, COMPANY_PATH, events))
        kill_lock_waiter(blocker, timeout=10)
        response = join()
        blocker.rollback()
    finally:
        blocker.close()
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 1 and response.json()["handed_off"] == 1
    assert engine.dispatcher.wait_idle(20)  # type: ignore[attr-defined]
    assert customer(engine, cid)["company_name"] == "Processed By The Task"
    assert stored_count(engine, events) == 1


def test_time_budget_spent_hands_the_batch_to_one_task(
    engine: Engine, emulator: Any, receiver: str
) -> None:
    cid, company = new_customer(engine, emulator)
    hurried = dataclasses.replace(engine)
    hurried.settings = engine.settings.model_copy(update={"webhook_time_budget_seconds": 1e-6})
    hurried.mappings = engine.mappings
    with serving(hurried):
        response = deliver(receiver, COMPANY_PATH, [change(company, "name", "Deferred")])
    assert response.status_code == 200
    assert response.json()["handed_off"] == 1 and response.json()["processed"] == 0
    assert engine.dispatcher.wait_idle(20)  # type: ignore[attr-defined]
    assert customer(engine, cid)["company_name"] == "Deferred"


def test_functions_framework_process_verifies_over_the_public_url(
    engine: Engine, emulator: Any, database_url: str
) -> None:
    public = "https://hooks.example.com/prefix"
    env = {
        "DATABASE_URL": database_url,
        "HUBSPOT_BASE_URL": emulator.url,
        "HUBSPOT_ACCESS_TOKEN": TEST_ACCESS_TOKEN,
        "HUBSPOT_CLIENT_SECRET": TEST_CLIENT_SECRET,
        "HUBSPOT_APP_ID": str(TEST_APP_ID),
        "WEBHOOK_PUBLIC_URL": public,
    }
    cid, company = new_customer(engine, emulator)
    events = [change(company, "name", "Through The Process")]
    body = json.dumps(events).encode()
    with FunctionProcess("webhook_receiver", env) as fn:
        target = COMPANY_PATH + "?from=hubspot"
        local = httpx.post(
            fn.url + target, content=body, headers=signed_headers(fn.url + target, body)
        )
        assert local.status_code == 401
        ok = httpx.post(
            fn.url + target, content=body, headers=signed_headers(public + target, body)
        )
        assert ok.status_code == 200, ok.text
    assert customer(engine, cid)["company_name"] == "Through The Process"


class _LostTasks:
    """A dispatcher whose tasks never run: the process died after the hand-off."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    def submit(self, task: Task, engine: Engine) -> bool:
        self.tasks.append(task)
        return True


def _events_processed(engine: Engine, company: str) -> list[bool]:
    with engine.database.transaction() as tx:
        rows = tx.fetch(
            "SELECT processed FROM accounts.hubspot_webhook_events WHERE object_id = :o",
            {"o": str(company)},
        )
    return [bool(r["processed"]) for r in rows]


def test_events_whose_task_was_lost_are_applied_once_by_the_next_scheduled_sweep(
    engine: Engine, emulator: Any, receiver: str
) -> None:
    """Issue 21 (4): stored, handed off, the task lost; the reconciler's sweep applies them."""
    cid, company = new_customer(engine, emulator)
    emulator.ui_change("companies", company, {"name": "Stranded Two"})
    at = int(time.time() * 1000)
    events = [
        change(company, "name", "Stranded One", occurredAt=at),
        change(company, "name", "Stranded Two", occurredAt=at + 1),
    ]
    lost = _LostTasks()
    hurried = dataclasses.replace(engine, dispatcher=lost)
    hurried.settings = engine.settings.model_copy(update={"webhook_time_budget_seconds": 1e-6})
    hurried.mappings = engine.mappings
    with serving(hurried):
        response = deliver(receiver, COMPANY_PATH, events)
    assert response.status_code == 200 and response.json()["handed_off"] == 2, response.text
    assert len(lost.tasks) == 1 and _events_processed(engine, company) == [False, False]

    def sweep(clock_ahead: timedelta) -> httpx.Response:
        later = dataclasses.replace(engine, clock=lambda: datetime.now(UTC) + clock_ahead)
        later.mappings = engine.mappings
        with serving(later):
            schedule = datetime.now(UTC).isoformat()  # a new trigger each time
            return httpx.post(
                reconciler,
                json={"run_type": "CUSTOMER_SPECIFIC", "customer_id": cid},
                headers={"X-CloudScheduler-ScheduleTime": schedule},
                timeout=60,
            )

    assert process_pending(engine).processed == 0  # within the grace period: left to its task
    with serve_function("reconciler") as reconciler:
        first = sweep(timedelta(minutes=2))
        again = sweep(timedelta(minutes=3))
    assert first.status_code == 200, first.text
    assert first.json()["stranded_events"]["processed"] == 2
    assert again.json()["stranded_events"]["processed"] == 0
    assert _events_processed(engine, company) == [True, True]
    assert customer(engine, cid)["company_name"] == "Stranded Two"
    with engine.database.transaction() as tx:
        applied = tx.fetch_value(
            "SELECT count(*) FROM accounts.hubspot_sync_log WHERE entity_id = :c "
            "AND triggered_by = 'webhook' AND direction = 'HUBSPOT_TO_WARP'",
            {"c": cid},
        )
    assert applied == 1
