"""No database error detail and no event or message content in a log line (issue 21, item 3).

A webhook field holding ``1e400`` (valid JSON) was read as ``inf``; JSONB refused it,
the delivery answered 500 and the ERROR line's stack trace quoted PostgreSQL's detail
with the event's JSON around it: a contact's phone number and last name. Now every
reader of outside JSON refuses non-finite numbers (``shared/untrusted_json.py``), and
a logged exception carries its SQLSTATE and schema names, our own words, or only its
type (``shared/observability/redaction.describe_error``), never what a party sent.

Every value below is seeded personal data; each test searches every line logged while
it ran for all of them.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.db import Database
from shared.engine import Engine
from shared.hubspot.errors import HubSpotError
from shared.hubspot.signatures import sign_v3
from shared.observability.logging import build_entry
from tests.conftest import TEST_CLIENT_SECRET, engine_settings, serving
from tests.helpers.customers import acme_customer
from tests.helpers.functions import serve_function

pytestmark = pytest.mark.integration

FIRST_NAME = "Zofia"
LAST_NAME = "Kowalczykowska"
PHONE = "+48 601 234 987"
EMAIL = "zofia.kowalczykowska@example.pl"
PERSONAL = (FIRST_NAME, LAST_NAME, PHONE, EMAIL, "601 234 987")
TOKEN = "log-content-token"

log = logging.getLogger("warp_hubspot_sync.test")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.dumps(build_entry(record), default=str, ensure_ascii=False))


@pytest.fixture
def lines() -> Iterator[list[str]]:
    """Every line the package logs during the test, as it would be written."""
    handler = _Lines()
    logger = logging.getLogger("warp_hubspot_sync")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def leaks(lines: list[str]) -> list[str]:
    return [line for line in lines if any(value in line for value in PERSONAL)]


# --- the log line of an exception -------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "params", "sqlstate"),
    [
        # JSONB refusing a document: the context quotes the document around the fault.
        (
            "SELECT CAST(:doc AS jsonb)",
            {"doc": f'{{"phone": "{PHONE}", "lastname": "{LAST_NAME}", "n": Infinity}}'},
            "22P02",
        ),
        # A NOT NULL violation: the detail is the whole failing row.
        (
            "INSERT INTO accounts.customers (ban, company_name, customer_type, contact) "
            "VALUES (:ban, NULL, 'PREPAID', CAST(:contact AS jsonb))",
            {
                "ban": "LEAK-1",
                "contact": json.dumps({"name": f"{FIRST_NAME} {LAST_NAME}", "phone": PHONE}),
            },
            "23502",
        ),
    ],
)
def test_a_database_error_is_logged_by_sqlstate_and_names_only(
    database: Database, lines: list[str], sql: str, params: dict[str, Any], sqlstate: str
) -> None:
    try:
        with database.transaction() as tx:
            tx.execute(sql, params)
    except Exception:
        log.exception("statement failed")
    [line] = lines
    assert f"SQLSTATE {sqlstate}" in line
    assert leaks(lines) == []


def test_hubspot_and_builtin_messages_stay_out_of_the_log(lines: list[str]) -> None:
    refusal = HubSpotError.from_response(
        400,
        {
            "status": "error",
            "message": f"Property values were not valid: {FIRST_NAME} {LAST_NAME} ({PHONE})",
            "category": "VALIDATION_ERROR",
            "correlationId": "c0ffee",
        },
    )
    for exc in (refusal, ValueError(f"invalid literal for int() with base 10: '{LAST_NAME}'")):
        try:
            raise RuntimeError("wrapped") from exc
        except RuntimeError:
            log.exception("call failed")
    assert "correlation_id=c0ffee" in lines[0] and "ValueError" in lines[1]
    assert "The above exception was the direct cause" in lines[0]
    assert leaks(lines) == []


# --- non-finite numbers at every entry point, over HTTP ----------------------------------


@pytest.fixture(scope="module")
def urls(engine: Engine, database_url: str, emulator: Any) -> Iterator[dict[str, str]]:
    settings = engine_settings(database_url, emulator.url, sync_api_token=TOKEN)
    names = ("webhook_receiver", "outbound_sync", "sync_api", "retry_worker", "reconciler")
    with serving(dataclasses.replace(engine, settings=settings)), contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(serve_function(name)) for name in names}


def signed_webhook(url: str, body: bytes) -> httpx.Response:
    uri = url + "/v1/webhooks/hubspot/contact"
    ts = int(time.time() * 1000)
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": sign_v3(TEST_CLIENT_SECRET, "POST", uri, body, ts),
        "X-HubSpot-Request-Timestamp": str(ts),
    }
    return httpx.post(uri, content=body, headers=headers, timeout=30)


def stored_events(engine: Engine) -> int:
    with engine.database.transaction() as tx:
        return int(tx.fetch_value("SELECT count(*) FROM accounts.hubspot_webhook_events"))


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1E+309"])
def test_non_finite_numbers_are_refused_everywhere_and_logged_without_content(
    urls: dict[str, str], engine: Engine, emulator: Any, lines: list[str], number: str
) -> None:
    customer_id, _ = acme_customer(engine, emulator)
    before = stored_events(engine)
    event = (
        f'[{{"eventId": {uuid.uuid4().int % 10**9}, "subscriptionId": 1, "portalId": 2, '
        f'"occurredAt": {int(time.time() * 1000)}, "subscriptionType": "contact.propertyChange", '
        f'"attemptNumber": 0, "objectId": 123, "propertyName": "phone", '
        f'"propertyValue": "{PHONE}", "lastname": "{LAST_NAME}", "score": {number}}}]'
    )
    webhook = signed_webhook(urls["webhook_receiver"], event.encode())
    assert webhook.status_code == 400, webhook.text
    assert stored_events(engine) == before

    message = (
        f'{{"entity_type": "customer", "entity_id": "{customer_id}", "operation": "UPDATE", '
        f'"occurred_at": "2026-01-01T00:00:00Z", "trigger_source": "admin_ui", '
        f'"triggered_by_user": "{FIRST_NAME} {LAST_NAME}", "balance": {number}}}'
    )
    data = base64.b64encode(message.encode()).decode()
    pushed = httpx.post(
        urls["outbound_sync"],
        json={"message": {"data": data, "messageId": f"m-{uuid.uuid4().hex}"}},
        timeout=30,
    )
    assert pushed.status_code == 200 and pushed.json()["outcome"] == "rejected", pushed.text

    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    resolve = httpx.post(
        f"{urls['sync_api']}/v1/sync/customers/{customer_id}/resolve-conflict",
        content=f'{{"field_name": "credit_limit", "resolution": "use_custom_value", '
        f'"value": {number}}}',
        headers=auth,
        timeout=30,
    )
    assert resolve.status_code == 400, resolve.text

    task = httpx.post(
        urls["retry_worker"],
        content=f'{{"kind": "inbound_batch", "payload": {{"event_ids": ["{uuid.uuid4()}"], '
        f'"limit": {number}}}}}',
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert task.status_code == 400, task.text

    run = httpx.post(
        urls["reconciler"],
        content=f'{{"customer_id": "{customer_id}", "force": {number}}}',
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert run.status_code == 400, run.text
    assert leaks(lines) == []
