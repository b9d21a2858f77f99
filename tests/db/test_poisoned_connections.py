"""One request must never poison a pooled database connection (issue 21, item 1).

An aware datetime whose UTC form lies outside years 1-9999 used to reach pg8000
through three entry points: a change message's ``occurred_at`` (outbound_sync), the
logs cursor (sync_api) and an ``inbound_batch`` task's ``received_before``
(retry_worker). pg8000 failed to convert it after sending the statement, the pool
took the connection back with the server's replies unread, and from then on each
statement on it read the previous one's answer: status 404s, /metrics 500s, a valid
webhook called a duplicate. Now such a time is refused at the edge (400, or a
rejected and acknowledged message), and a connection whose driver failed
mid-statement never returns to the pool (shared/db/connection.py).

Every function is served over real HTTP on the test module's one pool, so the
requests after the poison run on the connections the poison touched.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from shared.db import Database
from shared.engine import Engine
from shared.hubspot.signatures import sign_v3
from tests.conftest import TEST_CLIENT_SECRET, engine_settings, serving
from tests.helpers.customers import acme_customer
from tests.helpers.functions import serve_function

pytestmark = pytest.mark.integration

TOKEN = "poison-test-token"
# The first is before year 1 in UTC, the second after year 9999.
POISONS = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


@pytest.fixture(scope="module")
def urls(engine: Engine, database_url: str, emulator: Any) -> Iterator[dict[str, str]]:
    settings = engine_settings(database_url, emulator.url, sync_api_token=TOKEN)
    names = ("outbound_sync", "sync_api", "retry_worker", "webhook_receiver")
    with serving(dataclasses.replace(engine, settings=settings)), contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(serve_function(name)) for name in names}


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def customer(engine: Engine, emulator: Any) -> str:
    customer_id, _ = acme_customer(engine, emulator)
    return customer_id


def push_change(http: httpx.Client, url: str, customer_id: str, occurred_at: str) -> httpx.Response:
    """A Pub/Sub push of one change message, as WARP's publisher could send it."""
    message = {
        "entity_type": "customer",
        "entity_id": customer_id,
        "operation": "UPDATE",
        "changed_fields": ["company_name"],
        "occurred_at": occurred_at,
        "trigger_source": "admin_ui",
    }
    body = {
        "message": {
            "data": base64.b64encode(json.dumps(message).encode()).decode(),
            "messageId": f"m-{uuid.uuid4().hex}",
        },
        "subscription": "projects/p/subscriptions/customer-changes-push",
    }
    return http.post(url, json=body)


def logs_cursor(occurred_at: str) -> str:
    return base64.urlsafe_b64encode(f"{occurred_at}|{uuid.uuid4()}".encode()).decode()


def send_poisons(http: httpx.Client, urls: dict[str, str], customer_id: str) -> list[str]:
    """Every poison through every entry point; the problems with their answers."""
    problems = []
    for when in POISONS:
        pushed = push_change(http, urls["outbound_sync"], customer_id, when)
        if pushed.status_code != 200 or pushed.json().get("outcome") != "rejected":
            problems.append(f"outbound_sync {when}: {pushed.status_code} {pushed.text}")
        logs = http.get(
            f"{urls['sync_api']}/v1/sync/customers/{customer_id}/logs",
            params={"cursor": logs_cursor(when)},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        if logs.status_code != 400 or logs.json().get("field") != "cursor":
            problems.append(f"sync_api logs cursor {when}: {logs.status_code} {logs.text}")
        task = http.post(
            urls["retry_worker"],
            json={"kind": "inbound_batch", "payload": {"received_before": when}},
        )
        if task.status_code != 400:
            problems.append(f"retry_worker received_before {when}: {task.status_code} {task.text}")
    return problems


def every_pooled_connection_answers_right(database: Database) -> list[str]:
    """Hold every connection of the pool at once; each must answer its own question."""
    wrong = []
    with contextlib.ExitStack() as stack:
        sessions = [stack.enter_context(database.transaction()) for _ in range(database.pool_size)]
        for n, session in enumerate(sessions):
            try:
                answer = session.fetch_one("SELECT CAST(:n AS int) AS n", {"n": n})
            except Exception as exc:
                wrong.append(f"connection {n}: {type(exc).__name__}: {exc}")
                continue
            if answer != {"n": n}:
                wrong.append(f"connection {n}: asked {n}, answered {answer}")
    return wrong


_event_ids = iter(range(77_000_000, 10**9))


def post_webhook(http: httpx.Client, url: str, company_id: int) -> httpx.Response:
    body = json.dumps(
        [
            {
                "eventId": next(_event_ids),
                "subscriptionId": 4242,
                "portalId": 62515,
                "appId": 1,
                "occurredAt": int(time.time() * 1000),
                "subscriptionType": "company.propertyChange",
                "attemptNumber": 0,
                "objectId": company_id,
                "propertyName": "name",
                "propertyValue": "After the poison",
                "changeSource": "CRM_UI",
            }
        ]
    ).encode()
    uri = url + "/v1/webhooks/hubspot/company"
    ts = int(time.time() * 1000)
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": sign_v3(TEST_CLIENT_SECRET, "POST", uri, body, ts),
        "X-HubSpot-Request-Timestamp": str(ts),
    }
    return http.post(uri, content=body, headers=headers)


def test_out_of_range_times_are_refused_and_poison_no_connection(
    http: httpx.Client, urls: dict[str, str], engine: Engine, customer: str
) -> None:
    problems = send_poisons(http, urls, customer)

    assert every_pooled_connection_answers_right(engine.database) == []
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # More requests than the pool has connections, each checked for its own answer.
    for round_ in range(engine.database.pool_size + 1):
        status = http.get(f"{urls['sync_api']}/v1/sync/customers/{customer}/status", headers=auth)
        assert status.status_code == 200, (round_, status.text)
        assert status.json()["customer_id"] == customer
        metrics = http.get(f"{urls['sync_api']}/metrics", headers=auth)
        assert metrics.status_code == 200, (round_, metrics.text)
        assert "hubspot_sync_queue_depth" in metrics.text
        delivered = post_webhook(http, urls["webhook_receiver"], 880_000_001 + round_)
        assert delivered.status_code == 200, (round_, delivered.text)
        assert delivered.json()["stored"] == 1, (round_, delivered.text)
    assert problems == []


def test_a_valid_change_after_the_poison_is_accepted(
    http: httpx.Client, urls: dict[str, str], engine: Engine, customer: str
) -> None:
    send_poisons(http, urls, customer)
    pushed = push_change(http, urls["outbound_sync"], customer, datetime.now(UTC).isoformat())
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["outcome"] == "accepted", pushed.text
    assert every_pooled_connection_answers_right(engine.database) == []
