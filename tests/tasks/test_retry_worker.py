"""retry_worker over real HTTP: queue rows retried through the engine, as Cloud Tasks delivers them.

Cloud Tasks itself cannot run here, so a recording dispatcher keeps the tasks the
code creates, and each test delivers them to the function with Cloud Tasks'
headers (the real gcloud-tasks-emulator does it in test_cloud_tasks_emulator.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from shared.db.repositories import customers, sync_config, sync_log, sync_queue
from shared.engine import Engine
from shared.retry import enqueue_failure, replay
from shared.tasks import Task
from tests.helpers.functions import serve_function
from tests.helpers.oidc_issuer import OidcIssuer

pytestmark = pytest.mark.integration


class RecordingDispatcher:
    """Keeps submitted tasks (and drops a repeated name, as Cloud Tasks does)."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    def submit(self, task: Task, engine: Engine) -> bool:
        if task.name and any(t.name == task.name for t in self.tasks):
            return False
        self.tasks.append(task)
        return True


@pytest.fixture(scope="module")
def tasks(engine: Engine) -> Iterator[RecordingDispatcher]:
    recording = RecordingDispatcher()
    original = engine.dispatcher
    engine.dispatcher = recording
    engine.hubspot.max_transient_retries = 0
    yield recording
    engine.dispatcher = original


@pytest.fixture(scope="module")
def url(tasks: RecordingDispatcher) -> Iterator[str]:
    with serve_function("retry_worker") as base:
        yield base


@pytest.fixture(autouse=True)
def _healthy(emulator: Any) -> Iterator[None]:
    yield
    emulator.set_faults(rate=0.0, outage=False, hold_ms=2_000)


def _deliver(url: str, task: Task, retry_count: int, **headers: str) -> httpx.Response:
    """POST a task the way Cloud Tasks does."""
    return httpx.post(
        url,
        content=task.body(),
        headers={
            "Content-Type": "application/json",
            "X-CloudTasks-TaskRetryCount": str(retry_count),
            "X-CloudTasks-TaskName": task.name or "",
            **headers,
        },
        timeout=30,
    )


def _queued_customer(engine: Engine, emulator: Any, **config: Any) -> tuple[str, str, str]:
    """A linked customer whose status change failed once: (customer, company, queue row)."""
    ban = f"B-{uuid.uuid4().hex[:10]}"
    (company,) = emulator.seed(
        "companies", [{"name": "Retry Co", "warp_ban": ban, "warp_status": "ACTIVE"}]
    )
    with engine.database.transaction() as tx:
        row = customers.insert(
            tx,
            {
                "ban": ban,
                "company_name": "Retry Co",
                "customer_type": "PREPAID",
                "status": "SUSPENDED",
                "legal_name": "Retry Legal",
                "credit_limit": Decimal("100"),
                "contact": {"name": "Ann Lee"},
                "external_ids": {"hubspot_company_id": company},
            },
        )
        if config:
            sync_config.save(tx, config_name="custom", field_mappings=config, customer_id=row["id"])
    engine.reload_mappings()
    cid = str(row["id"])
    item = enqueue_failure(
        engine,
        kind="outbound",
        entity_id=cid,
        payload={"customer_id": cid, "fields": None, "triggered_by": "pubsub"},
        error="ServerError: 503 from HubSpot",
        retryable=True,
    )
    return cid, company, str(item["id"])


def _item(engine: Engine, item_id: str) -> dict[str, Any]:
    with engine.database.transaction() as tx:
        row = sync_queue.get(tx, item_id)
    assert row is not None
    return dict(row)


def _task_for(tasks: RecordingDispatcher, item_id: str) -> Task:
    return [t for t in tasks.tasks if t.payload.get("id") == item_id][-1]


def test_failure_is_queued_with_a_named_task_at_the_backoff(
    engine: Engine, emulator: Any, tasks: RecordingDispatcher
) -> None:
    _, _, item_id = _queued_customer(engine, emulator)
    item = _item(engine, item_id)
    task = _task_for(tasks, item_id)
    assert item["status"] == "QUEUED" and item["retry_count"] == 1
    assert item["task_name"] == task.name and task.kind == "queue_item"
    assert 0 <= task.delay_seconds <= engine.settings.retry_base_seconds
    assert item["scheduled_for"] > item["created_at"] or task.delay_seconds == 0
    # Submitting the same attempt again is harmless: the name is taken.
    assert tasks.submit(Task(task.kind, task.payload, name=task.name), engine) is False


@pytest.mark.parametrize("fault", ["outage", "500", "timeout"])
def test_retryable_failures_schedule_the_next_attempt_then_complete(
    engine: Engine, emulator: Any, tasks: RecordingDispatcher, url: str, fault: str
) -> None:
    _, company, item_id = _queued_customer(engine, emulator)
    task = _task_for(tasks, item_id)
    if fault == "outage":
        emulator.set_faults(outage=True)
    else:
        emulator.set_faults(rate=1.0, kinds=[fault], hold_ms=200)
    response = _deliver(url, task, 0)
    # The worker scheduled the next attempt itself (a new named task at the backoff):
    # Cloud Tasks must not redeliver this one as well.
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "SCHEDULED"
    item = _item(engine, item_id)
    assert item["status"] == "QUEUED" and item["retry_count"] == 2 and item["last_error"]
    following = _task_for(tasks, item_id)
    assert following.name != task.name and following.name == item["task_name"]
    assert 0 <= following.delay_seconds <= 2 * engine.settings.retry_base_seconds
    emulator.set_faults(rate=0.0, outage=False)
    response = _deliver(url, following, 0)
    assert response.status_code == 200 and response.json()["outcome"] == "DONE"
    assert _item(engine, item_id)["status"] == "COMPLETED"
    assert emulator.values("companies", company)["warp_status"] == "SUSPENDED"
    # A late duplicate delivery finds nothing to do.
    assert _deliver(url, task, 2).json()["outcome"] == "DONE"


def test_retries_go_on_past_the_attempt_count_until_the_window_is_spent(
    engine: Engine, emulator: Any, tasks: RecordingDispatcher, url: str
) -> None:
    _, _, item_id = _queued_customer(engine, emulator)
    emulator.set_faults(outage=True)
    # Far more failures than RETRY_MAX_ATTEMPTS: still within a day, still retried.
    _age(engine, item_id, hours=23, retry_count=engine.settings.retry_max_attempts * 5)
    response = _deliver(url, _task_for(tasks, item_id), engine.settings.retry_max_attempts)
    assert response.json()["outcome"] == "SCHEDULED"
    assert _item(engine, item_id)["status"] == "QUEUED"
    # A day after it was first queued, the next failure is its last.
    _age(engine, item_id, hours=24)
    response = _deliver(url, _task_for(tasks, item_id), 0)
    assert response.status_code == 200 and response.json()["outcome"] == "FAILED"
    item = _item(engine, item_id)
    assert item["status"] == "FAILED" and "503" in item["last_error"]


def _age(engine: Engine, item_id: str, *, hours: float, retry_count: int | None = None) -> None:
    """Move a row's first queueing ``hours`` into the past (and set its failure count)."""
    with engine.database.transaction() as tx:
        tx.execute(
            "UPDATE accounts.hubspot_sync_queue SET created_at = NOW() - make_interval("
            "secs => :secs), retry_count = COALESCE(:n, retry_count) WHERE id = CAST(:id AS uuid)",
            {"secs": hours * 3600, "n": retry_count, "id": item_id},
        )


def test_permanent_refusal_is_failed_and_answered_200(
    engine: Engine, emulator: Any, tasks: RecordingDispatcher, url: str
) -> None:
    broken = {
        "hubspot_property": "no_such_property",
        "warp_field": "legal_name",
        "sync_direction": "WARP_TO_HUBSPOT",
        "conflict_resolution": "WARP_WINS",
    }
    cid, _, item_id = _queued_customer(engine, emulator, legal_name=broken)
    response = _deliver(url, _task_for(tasks, item_id), 0)
    assert response.status_code == 200 and response.json()["outcome"] == "FAILED"
    item = _item(engine, item_id)
    assert item["status"] == "FAILED" and "no_such_property" in item["last_error"]
    with engine.database.transaction() as tx:
        assert sync_log.list_for_customer(tx, cid)[0]["status"] == "FAILED"


def test_replay_runs_a_failed_item_again(
    engine: Engine, emulator: Any, tasks: RecordingDispatcher, url: str
) -> None:
    _, company, item_id = _queued_customer(engine, emulator)
    emulator.set_faults(outage=True)
    _age(engine, item_id, hours=24)
    _deliver(url, _task_for(tasks, item_id), 0)
    assert _item(engine, item_id)["status"] == "FAILED"
    emulator.set_faults(outage=False)
    replayed = replay(engine, item_id)
    assert replayed is not None and replayed["status"] == "QUEUED"
    assert replay(engine, item_id) is None  # only FAILED or CANCELLED rows replay
    task = _task_for(tasks, item_id)
    assert _deliver(url, task, 0).json()["outcome"] == "DONE"
    assert _item(engine, item_id)["status"] == "COMPLETED"
    assert emulator.values("companies", company)["warp_status"] == "SUSPENDED"


def test_bad_bodies_and_unknown_kinds(url: str, tasks: RecordingDispatcher) -> None:
    assert httpx.post(url, content=b"[]").status_code == 400
    response = _deliver(url, Task("no_such_kind", {}), 0)
    assert response.status_code == 200 and response.json()["outcome"] == "FAILED"


def test_only_the_oidc_caller_is_accepted(
    engine: Engine, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer = OidcIssuer()
    try:
        monkeypatch.setattr(engine.settings, "oidc_audience", url)
        caller = "tasks@p.iam.gserviceaccount.com"
        monkeypatch.setattr(engine.settings, "oidc_allowed_emails", caller)
        monkeypatch.setattr(engine.settings, "google_certs_url", issuer.certs_url)
        task = Task("queue_item", {"id": str(uuid.uuid4())})
        assert _deliver(url, task, 0).status_code == 401
        stranger = issuer.token(audience=url, email="someone@p.iam.gserviceaccount.com")
        assert _deliver(url, task, 0, Authorization=f"Bearer {stranger}").status_code == 403
        token = issuer.token(audience=url, email=caller)
        response = _deliver(url, task, 0, Authorization=f"Bearer {token}")
        assert response.status_code == 200 and response.json()["outcome"] == "DONE"
    finally:
        issuer.close()
