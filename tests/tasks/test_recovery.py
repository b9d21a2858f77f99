"""Recovering without hand work: hours of HubSpot outage end converged, nothing FAILED.

The outage is time-scaled, not slept through: the engine runs on a clock the test
moves, and a stand-in for Cloud Tasks keeps each task with its due time on that
clock. The test always delivers the earliest task next (over real HTTP to
``retry_worker``, with Cloud Tasks' headers), moving the clock to its due time, and
ends HubSpot's outage when the clock passes two hours. A 503 answer is redelivered
the way the Terraform queue's retry_config does it. The outcome does not depend on
the machine's speed: the order of deliveries follows the clock alone.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.db.repositories import sync_queue
from shared.engine import Engine
from shared.messages.envelope import encode_push_envelope
from shared.outbound.push import push_customers
from shared.retry import enqueue_failure
from shared.tasks import Task, backoff_ceiling
from tests.conftest import engine_settings, serving
from tests.db.test_db_faults import hubspot_status, suspend
from tests.engine.test_reconcile import linked_customer
from tests.helpers.functions import serve_function
from tests.outbound.test_outbound_sync import _change

pytestmark = pytest.mark.integration

OUTAGE = timedelta(hours=2)
# terraform/tasks.tf: the queue's redelivery of a task that answered 5xx.
QUEUE_MIN_BACKOFF, QUEUE_MAX_BACKOFF = 10.0, 600.0


class Clock:
    """The engine's clock; only the test moves it."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclasses.dataclass(order=True)
class _Due:
    at: datetime
    seq: int
    task: Task = dataclasses.field(compare=False)
    attempt: int = dataclasses.field(compare=False, default=0)


class ClockedTasks:
    """Cloud Tasks on the test's clock: tasks wait for their due time; names dedupe."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.heap: list[_Due] = []
        self.names: set[str] = set()
        self.seq = itertools.count()

    def submit(self, task: Task, engine: Engine) -> bool:
        if task.name is not None:
            if task.name in self.names:
                return False
            self.names.add(task.name)
        self.push(task, task.delay_seconds, 0)
        return True

    def push(self, task: Task, delay: float, attempt: int) -> None:
        at = self.clock.now + timedelta(seconds=delay)
        heapq.heappush(self.heap, _Due(at, next(self.seq), task, attempt))


@pytest.fixture
def clocked(engine: Engine, database_url: str, emulator: Any) -> Iterator[Engine]:
    """The engine with production's retry settings, on the test's clock and task queue."""
    clock = Clock()
    tasks = ClockedTasks(clock)
    settings = engine_settings(
        database_url,
        emulator.url,
        retry_base_seconds=2.0,
        retry_cap_seconds=600.0,
        retry_max_attempts=5,
        coalesce_delay_seconds=2.0,
    )
    engine.hubspot.max_transient_retries = 0  # the outage is the tasks' to ride out
    built = dataclasses.replace(engine, settings=settings, dispatcher=tasks, clock=clock)
    with serving(built):
        try:
            yield built
        finally:
            emulator.set_faults(outage=False)


def _deliver(url: str, due: _Due) -> httpx.Response:
    return httpx.post(
        url,
        content=due.task.body(),
        headers={
            "Content-Type": "application/json",
            "X-CloudTasks-TaskRetryCount": str(due.attempt),
            "X-CloudTasks-TaskName": due.task.name or "",
        },
        timeout=30,
    )


def _queue(engine: Engine, entity_ids: list[str]) -> list[dict[str, Any]]:
    with engine.database.transaction() as tx:
        return [
            dict(r)
            for cid in entity_ids
            for r in sync_queue.list_items(
                tx, statuses=("QUEUED", "PROCESSING", "FAILED", "COMPLETED"), entity_id=cid
            )
        ]


def test_two_hour_outage_ends_converged_with_nothing_failed(clocked: Engine, emulator: Any) -> None:
    engine = clocked
    clock = engine.clock
    tasks = engine.dispatcher
    assert isinstance(clock, Clock) and isinstance(tasks, ClockedTasks)
    customers = [linked_customer(engine, emulator) for _ in range(6)]
    started = clock.now
    emulator.set_faults(outage=True)
    deliveries = answered_503 = 0
    with serve_function("outbound_sync") as outbound, serve_function("retry_worker") as worker:
        for customer in customers:
            suspend(engine, customer)
            body = encode_push_envelope(_change(customer["id"], "status"), uuid.uuid4().hex)
            assert httpx.post(outbound, content=body, timeout=30).json()["outcome"] == "accepted"
        while tasks.heap:
            due = heapq.heappop(tasks.heap)
            clock.now = max(clock.now, due.at)
            if clock.now - started >= OUTAGE:
                emulator.set_faults(outage=False)
            answer = _deliver(worker, due)
            deliveries += 1
            assert deliveries < 5_000, "the retries never settle"
            if answer.status_code == 503 and due.attempt + 1 < engine.settings.retry_max_attempts:
                answered_503 += 1
                delay = backoff_ceiling(
                    due.attempt + 1, base=QUEUE_MIN_BACKOFF, cap=QUEUE_MAX_BACKOFF
                )
                tasks.push(due.task, delay, due.attempt + 1)
            else:
                assert answer.status_code == 200, answer.text
    assert clock.now - started >= OUTAGE  # the work really waited out the outage
    assert answered_503 > 0  # the flush itself was retried first
    rows = _queue(engine, [c["id"] for c in customers])
    assert {r["status"] for r in rows} == {"COMPLETED"}, rows
    assert len(rows) == len(customers)
    assert max(r["retry_count"] for r in rows) > engine.settings.retry_max_attempts
    assert {hubspot_status(emulator, c) for c in customers} == {"SUSPENDED"}


def test_a_failed_item_is_closed_when_its_customer_syncs_cleanly(
    engine: Engine, emulator: Any, database_url: str
) -> None:
    whole, partial, untouched = (linked_customer(engine, emulator) for _ in range(3))
    items = {}
    for customer, fields in ((whole, None), (partial, ["status"]), (untouched, None)):
        items[customer["id"]] = enqueue_failure(
            engine,
            kind="outbound",
            entity_id=customer["id"],
            payload={"customer_id": customer["id"], "fields": fields, "triggered_by": "pubsub"},
            error="ValidationError: 400 from HubSpot",
            retryable=False,
        )
    assert {str(r["status"]) for r in items.values()} == {"FAILED"}
    settings = engine_settings(database_url, emulator.url, sync_api_token="ops-token")
    with serving(dataclasses.replace(engine, settings=settings)), serve_function("sync_api") as api:
        answer = httpx.post(
            f"{api}/v1/sync/customers/{whole['id']}/to-hubspot",
            headers={"Authorization": "Bearer ops-token"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
    # A clean sync of other fields says nothing about the failed one's.
    push_customers(engine, [partial["id"]], triggered_by="test", fields={partial["id"]: ["name"]})
    rows = {str(r["entity_id"]): r for r in _queue(engine, list(items))}
    assert rows[whole["id"]]["status"] == "COMPLETED"
    assert rows[whole["id"]]["last_error"].startswith("superseded: the customer synced cleanly")
    assert "400 from HubSpot" in rows[whole["id"]]["last_error"]
    assert rows[partial["id"]]["status"] == "FAILED"
    assert rows[untouched["id"]]["status"] == "FAILED"
