"""The database connection dies under each function: the caller is told to retry, nothing
is left half-written, and the identical retry succeeds.

Two deterministic ways to kill it, both with pg_terminate_backend on the test database:

- mid-transaction: a second connection holds the customer's advisory lock (the lock
  every flow takes first in the transaction that records its result), the function's
  backend is seen waiting on it and is terminated there;
- before the request: every pooled connection is terminated, so the function's first
  statement meets a dead socket.

The webhook receiver has its own tests of this (tests/inbound/test_webhook_receiver.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from localdev.drain import wait_drained
from shared.db.connection import url_connector
from shared.db.repositories import customers, sync_queue
from shared.engine import Engine
from shared.messages.envelope import encode_push_envelope
from tests.api.test_api import configured
from tests.engine.test_reconcile import linked_customer
from tests.helpers.db_kill import in_thread, kill_lock_waiter
from tests.helpers.functions import serve_function
from tests.outbound.test_outbound_sync import _change
from tests.tasks.test_retry_worker import RecordingDispatcher

pytestmark = pytest.mark.integration

TOKEN = "db-faults-api-token"


@pytest.fixture(scope="module")
def served(engine: Engine, database_url: str, emulator: Any) -> Iterator[Engine]:
    """The engine the served functions use: ``engine`` with the API's token."""
    engine.hubspot.max_transient_retries = 0
    with configured(engine, database_url, emulator, sync_api_token=TOKEN) as replaced:
        yield replaced


@pytest.fixture(scope="module")
def urls(served: Engine) -> Iterator[dict[str, str]]:
    """Every function but the webhook receiver, served in-process on ``served``."""
    with (
        serve_function("outbound_sync") as outbound,
        serve_function("retry_worker") as worker,
        serve_function("reconciler") as reconciler,
        serve_function("sync_api") as api,
    ):
        yield {
            "outbound_sync": outbound,
            "retry_worker": worker,
            "reconciler": reconciler,
            "sync_api": api,
        }


def _admin(database_url: str) -> Any:
    connection = url_connector(database_url)()
    connection.autocommit = True
    return connection


def terminate_pool(database_url: str) -> int:
    """Terminate every other backend of the test database (the engine's pooled ones)."""
    admin = _admin(database_url)
    try:
        cursor = admin.cursor()
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])
    finally:
        admin.close()


@contextmanager
def killed_while_waiting(database_url: str, customer_id: str) -> Iterator[Callable[[], None]]:
    """Hold the customer's lock; the yielded ``kill()`` terminates the backend waiting on it."""
    blocker = url_connector(database_url)()
    cursor = blocker.cursor()
    cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(:c, 8410))", {"c": customer_id})

    def kill() -> None:
        kill_lock_waiter(blocker)

    try:
        yield kill
    finally:
        blocker.rollback()
        blocker.close()


def suspend(engine: Engine, customer: dict[str, str]) -> None:
    """Change WARP's status (BIDIRECTIONAL, WARP_WINS): the push must carry it to HubSpot."""
    with engine.database.transaction() as tx:
        customers.update_columns(tx, customer["id"], {"status": "SUSPENDED"})


def db_trace(engine: Engine, customer_id: str) -> dict[str, Any]:
    """What the sync wrote about a customer: log rows, field states, dirty marks, queue rows."""
    with engine.database.transaction() as tx:
        return {
            table: int(
                tx.fetch_value(
                    f"SELECT count(*) FROM accounts.{table} WHERE {column} = CAST(:c AS uuid)",
                    {"c": customer_id},
                )
            )
            for table, column in (
                ("hubspot_sync_log", "entity_id"),
                ("hubspot_field_state", "entity_id"),
                ("hubspot_outbound_dirty", "customer_id"),
            )
        }


def hubspot_status(emulator: Any, customer: dict[str, str]) -> str | None:
    value = emulator.values("companies", customer["company_id"]).get("warp_status")
    return None if value is None else str(value)


# --- outbound_sync ---------------------------------------------------------------------


def test_outbound_sync_killed_mid_transaction_answers_503_and_the_redelivery_lands(
    engine: Engine, emulator: Any, database_url: str, urls: dict[str, str]
) -> None:
    customer = linked_customer(engine, emulator)
    suspend(engine, customer)
    body = encode_push_envelope(_change(customer["id"], "status"), uuid.uuid4().hex)
    before = db_trace(engine, customer["id"])
    admin = _admin(database_url)
    try:
        # The dirty mark is the flow's one write: hold its table so the INSERT waits.
        admin.autocommit = False
        admin.cursor().execute("LOCK TABLE accounts.hubspot_outbound_dirty IN EXCLUSIVE MODE")
        join = in_thread(lambda: httpx.post(urls["outbound_sync"], content=body, timeout=30))
        kill_lock_waiter(admin)
        response = join()
        admin.rollback()
    finally:
        admin.close()
    assert response.status_code == 503, response.text
    assert db_trace(engine, customer["id"]) == before  # no dirty mark, no log, no state
    redelivered = httpx.post(urls["outbound_sync"], content=body, timeout=30)
    assert redelivered.status_code == 200 and redelivered.json()["outcome"] == "accepted"
    assert wait_drained(engine, timeout=30)
    assert hubspot_status(emulator, customer) == "SUSPENDED"


def test_outbound_sync_on_a_dead_pool_answers_503_then_accepts(
    engine: Engine, emulator: Any, database_url: str, urls: dict[str, str]
) -> None:
    customer = linked_customer(engine, emulator)
    suspend(engine, customer)
    body = encode_push_envelope(_change(customer["id"], "status"), uuid.uuid4().hex)
    assert terminate_pool(database_url) >= 1
    first = httpx.post(urls["outbound_sync"], content=body, timeout=30)
    assert first.status_code == 503, first.text
    again = httpx.post(urls["outbound_sync"], content=body, timeout=30)
    assert again.status_code == 200 and again.json()["outcome"] == "accepted", again.text
    assert wait_drained(engine, timeout=30)
    assert hubspot_status(emulator, customer) == "SUSPENDED"


# --- retry_worker ----------------------------------------------------------------------


def _queued_push(engine: Engine, customer_id: str) -> str:
    """A QUEUED outbound row (as a failed flush leaves it), with no task yet."""
    with engine.database.transaction() as tx:
        row = sync_queue.enqueue(
            tx,
            kind="outbound",
            entity_type="customer",
            entity_id=customer_id,
            operation="UPDATE",
            direction="WARP_TO_HUBSPOT",
            payload={"customer_id": customer_id, "fields": ["status"]},
            max_retries=8,
        )
    return str(row["id"])


def _queue_row(engine: Engine, item_id: str) -> dict[str, Any]:
    with engine.database.transaction() as tx:
        row = sync_queue.get(tx, item_id)
    assert row is not None
    return dict(row)


def _task(url: str, item_id: str, attempt: int) -> httpx.Response:
    return httpx.post(
        url,
        json={"kind": "queue_item", "payload": {"id": item_id}},
        headers={"X-CloudTasks-TaskRetryCount": str(attempt)},
        timeout=30,
    )


def test_retry_worker_killed_mid_transaction_schedules_the_retry_and_it_completes(
    engine: Engine,
    served: Engine,
    emulator: Any,
    database_url: str,
    urls: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The scheduled retry is kept, not run at once, so what the failure left is seen.
    tasks = RecordingDispatcher()
    monkeypatch.setattr(served, "dispatcher", tasks)
    customer = linked_customer(engine, emulator)
    suspend(engine, customer)
    item_id = _queued_push(engine, customer["id"])
    before = db_trace(engine, customer["id"])
    with killed_while_waiting(database_url, customer["id"]) as kill:
        join = in_thread(lambda: _task(urls["retry_worker"], item_id, 0))
        kill()
        response = join()
    # The failure is recorded and the next attempt is a task of its own (200, not a 503
    # for Cloud Tasks to redeliver this one too).
    assert response.status_code == 200 and response.json()["outcome"] == "SCHEDULED"
    row = _queue_row(engine, item_id)
    assert row["status"] == "QUEUED" and "connection" in (row["last_error"] or "")
    assert db_trace(engine, customer["id"]) == before
    assert hubspot_status(emulator, customer) == "ACTIVE"  # nothing half-pushed
    (retry,) = [t for t in tasks.tasks if t.payload.get("id") == item_id]
    assert retry.name == row["task_name"]
    again = _task(urls["retry_worker"], item_id, 0)
    assert again.status_code == 200 and again.json()["outcome"] == "DONE", again.text
    assert _queue_row(engine, item_id)["status"] == "COMPLETED"
    assert hubspot_status(emulator, customer) == "SUSPENDED"


def test_retry_worker_on_a_dead_pool_answers_503_then_completes(
    engine: Engine, emulator: Any, database_url: str, urls: dict[str, str]
) -> None:
    customer = linked_customer(engine, emulator)
    suspend(engine, customer)
    item_id = _queued_push(engine, customer["id"])
    assert terminate_pool(database_url) >= 1
    first = _task(urls["retry_worker"], item_id, 0)
    assert first.status_code == 503, first.text
    assert _queue_row(engine, item_id)["status"] == "QUEUED"  # the claim never committed
    again = _task(urls["retry_worker"], item_id, 1)
    assert again.status_code == 200 and again.json()["outcome"] == "DONE", again.text
    assert hubspot_status(emulator, customer) == "SUSPENDED"


# --- reconciler ------------------------------------------------------------------------


def _runs(engine: Engine, key: str) -> list[dict[str, Any]]:
    with engine.database.transaction() as tx:
        return tx.fetch(
            "SELECT id, status, records_updated FROM accounts.hubspot_reconciliation_runs "
            "WHERE idempotency_key = :k",
            {"k": key},
        )


def _company_name(engine: Engine, customer_id: str) -> str:
    with engine.database.transaction() as tx:
        row = customers.get(tx, customer_id)
    assert row is not None
    return str(row["company_name"])


def test_reconciler_killed_mid_page_continues_from_its_checkpoint(
    engine: Engine, emulator: Any, database_url: str, urls: dict[str, str]
) -> None:
    """A lost connection inside a page is a retryable step failure: the run hands itself
    to a continuation task (202) instead of failing, and the Scheduler's retry of the
    same trigger finds that run rather than starting another."""
    customer = linked_customer(engine, emulator)
    emulator.ui_change("companies", customer["company_id"], {"name": "Renamed In HubSpot"})
    schedule = f"2031-0{uuid.uuid4().int % 9 + 1}-01T02:00:00Z"
    body = {"run_type": "CUSTOMER_SPECIFIC", "customer_id": customer["id"]}
    headers = {"X-CloudScheduler-ScheduleTime": schedule}
    with killed_while_waiting(database_url, customer["id"]) as kill:
        join = in_thread(
            lambda: httpx.post(urls["reconciler"], json=body, headers=headers, timeout=30)
        )
        kill()
        response = join()
        # Still blocked: the page's writes were rolled back with the killed connection.
        assert _company_name(engine, customer["id"]) != "Renamed In HubSpot"
    assert response.status_code == 202, response.text
    assert engine.dispatcher.wait_idle(30)  # type: ignore[attr-defined]
    runs = _runs(engine, f"scheduler:{schedule}")
    assert len(runs) == 1 and runs[0]["status"] == "COMPLETED", runs
    assert _company_name(engine, customer["id"]) == "Renamed In HubSpot"
    retried = httpx.post(urls["reconciler"], json=body, headers=headers, timeout=30)
    assert retried.status_code == 200 and retried.json()["started"] is False
    assert len(_runs(engine, f"scheduler:{schedule}")) == 1


def test_reconciler_on_a_dead_pool_answers_503_and_the_retry_runs_once(
    engine: Engine, emulator: Any, database_url: str, urls: dict[str, str]
) -> None:
    customer = linked_customer(engine, emulator)
    emulator.ui_change("companies", customer["company_id"], {"name": "Renamed Again"})
    schedule = f"2032-0{uuid.uuid4().int % 9 + 1}-01T02:00:00Z"
    body = {"run_type": "CUSTOMER_SPECIFIC", "customer_id": customer["id"]}
    headers = {"X-CloudScheduler-ScheduleTime": schedule}
    assert terminate_pool(database_url) >= 1
    first = httpx.post(urls["reconciler"], json=body, headers=headers, timeout=30)
    assert first.status_code == 503, first.text
    assert _runs(engine, f"scheduler:{schedule}") == []
    again = httpx.post(urls["reconciler"], json=body, headers=headers, timeout=30)
    assert again.status_code == 200 and again.json()["run"]["status"] == "COMPLETED", again.text
    assert _company_name(engine, customer["id"]) == "Renamed Again"


# --- sync_api --------------------------------------------------------------------------


def _to_hubspot(url: str, customer_id: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/sync/customers/{customer_id}/to-hubspot",
        json={},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )


def test_sync_api_killed_mid_transaction_answers_503_and_the_retry_syncs(
    engine: Engine, emulator: Any, database_url: str, urls: dict[str, str]
) -> None:
    customer = linked_customer(engine, emulator)
    suspend(engine, customer)
    before = db_trace(engine, customer["id"])
    with killed_while_waiting(database_url, customer["id"]) as kill:
        join = in_thread(lambda: _to_hubspot(urls["sync_api"], customer["id"]))
        kill()
        response = join()
    assert response.status_code == 503, response.text
    assert response.json().get("retryable") is True
    assert db_trace(engine, customer["id"]) == before
    assert hubspot_status(emulator, customer) == "ACTIVE"
    again = _to_hubspot(urls["sync_api"], customer["id"])
    assert again.status_code == 200, again.text
    assert hubspot_status(emulator, customer) == "SUSPENDED"
    assert db_trace(engine, customer["id"])["hubspot_sync_log"] > before["hubspot_sync_log"]


def test_sync_api_on_a_dead_pool_answers_503_then_200(
    engine: Engine, emulator: Any, database_url: str, urls: dict[str, str]
) -> None:
    customer = linked_customer(engine, emulator)
    assert terminate_pool(database_url) >= 1
    status = f"{urls['sync_api']}/v1/sync/customers/{customer['id']}/status"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    first = httpx.get(status, headers=auth, timeout=30)
    assert first.status_code == 503, first.text
    again = httpx.get(status, headers=auth, timeout=30)
    assert again.status_code == 200, again.text
