"""The worker side of queued work: claim a row, run it, record how it went.

``retry_worker`` receives ``{"kind": ..., "payload": {...}}`` from Cloud Tasks (or
the in-process stand-in) and :func:`handle_task` runs it through the task
registry. A ``queue_item`` task names a ``hubspot_sync_queue`` row; its runner is
picked by the row's ``kind`` (``outbound``, or whatever another flow registers
with :func:`register_runner`). A runner raises on failure; ``shared.errors.retry_verdict``
decides between another attempt and FAILED.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.db import Row
from shared.db.repositories import sync_queue
from shared.engine.deps import Engine
from shared.errors import Retry, first_problem, retry_verdict
from shared.observability.redaction import describe_error
from shared.retry.items import submit_item_task
from shared.tasks import TaskOutcome, retry_delay_within, run_task
from shared.tasks.kinds import QueueItemPayload  # (importing it registers every kind)
from shared.tasks.registry import InvalidTaskPayload, UnknownTaskKind

log = logging.getLogger("warp_hubspot_sync.retry")

Runner = Callable[[Engine, Row], None]

# row kind -> "module:function" taking (engine, row); raises on failure.
_RUNNERS: dict[str, str] = {
    "outbound": "shared.outbound.flush:retry_customer",
    "inbound_batch": "shared.inbound.process:retry_queue_row",
}

# A claimed row is held this long; a worker that died leaves it claimable again after.
LEASE_SECONDS = 600.0


def register_runner(kind: str, target: str) -> None:
    """Name the runner of queue rows of ``kind`` as ``"module:function"``."""
    _RUNNERS[kind] = target


def _resolve(kind: str | None) -> Runner:
    target = _RUNNERS.get(kind or "")
    if target is None:
        raise UnknownTaskKind(f"no runner for queue rows of kind {kind!r}")
    module_name, _, attribute = target.partition(":")
    runner: Runner = getattr(importlib.import_module(module_name), attribute)
    return runner


def run_queue_task(engine: Engine, payload: QueueItemPayload, attempt: int) -> TaskOutcome:
    """Task handler of ``queue_item``: process the row ``payload.id``."""
    return process_item(engine, str(payload.id), attempt)


def process_item(engine: Engine, item_id: str, attempt: int = 0) -> TaskOutcome:
    """Claim queue row ``item_id``, run it, and mark it COMPLETED, QUEUED again or FAILED.

    ``attempt`` is Cloud Tasks' retry count (0 on the task's first delivery). A row
    that is missing, finished or held by a live worker is DONE: nothing to do. A
    retryable failure schedules the next attempt (capped backoff) while
    ``RETRY_WINDOW_SECONDS`` since the row was first queued (``created_at``); after that, or on a
    permanent failure, the row is FAILED.
    """
    with engine.database.transaction() as tx:
        row = sync_queue.claim(tx, item_id, lease_seconds=LEASE_SECONDS)
    if row is None:
        log.info("queue item has nothing to run", extra={"fields": {"queue_id": item_id}})
        return TaskOutcome.DONE
    fields = {"queue_id": item_id, "kind": row["kind"], "attempt": attempt}
    try:
        _resolve(row["kind"])(engine, row)
    except Exception as exc:
        return _record_failure(engine, row, exc, attempt, fields)
    with engine.database.transaction() as tx:
        sync_queue.complete(tx, item_id)
    log.info("queue item completed", extra={"fields": fields})
    return TaskOutcome.DONE


def _record_failure(
    engine: Engine, row: Row, exc: Exception, attempt: int, fields: dict[str, Any]
) -> TaskOutcome:
    settings = engine.settings
    # An unexpected exception (a bug) is treated like a 500: retried within the window.
    retryable = retry_verdict(exc) is not Retry.NEVER
    failures = int(row["retry_count"] or 0) + 1
    message = f"{type(exc).__name__}: {exc}"[:2000]
    now = engine.now()
    # A retryable failure is retried until the window since the row was first queued is
    # spent (HubSpot retries its webhooks for 24 h): an outage of hours heals by itself.
    delay = None
    if retryable:
        delay = retry_delay_within(
            failures,
            first_failed_at=row["created_at"],
            now=now,
            base=settings.retry_base_seconds,
            cap=settings.retry_cap_seconds,
            window=settings.retry_window_seconds,
        )
    retry_at = None if delay is None else now + timedelta(seconds=delay)
    with engine.database.transaction() as tx:
        failed = sync_queue.fail(tx, str(row["id"]), message, retry_at=retry_at)
    fields = {**fields, "error": describe_error(exc), "retryable": retryable, "failures": failures}
    if failed is not None and delay is not None:
        log.warning("queue item failed; it will be retried", extra={"fields": fields})
        # The next attempt is a task of its own, named after it: Cloud Tasks' retry_config
        # (an hour) cannot cover a day, and the row, not the task, carries the count.
        submit_item_task(engine, failed, delay_seconds=delay, attempt=failures + 1)
        return TaskOutcome.SCHEDULED
    log.error("queue item failed for good (FAILED)", extra={"fields": fields})
    return TaskOutcome.FAILED


class TaskBody(BaseModel):
    """What ``retry_worker`` receives: ``{"kind": ..., "payload": {...}}``."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    kind: str = Field(min_length=1, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)


def handle_task(engine: Engine, body: Any, attempt: int) -> tuple[int, dict[str, Any]]:
    """Run a task body as ``retry_worker`` received it: (HTTP status, JSON answer).

    200 for DONE, SCHEDULED and FAILED (a FAILED row is the dead letter, a SCHEDULED
    one has its next task already: Cloud Tasks must not retry either), 503 for RETRY
    so Cloud Tasks backs off and delivers again. A body or payload its model refuses
    is a 400 naming the field (logged; the queue's retry_config bounds what Cloud
    Tasks does with it). A body naming no known kind, or a permanent failure a
    handler raised, is answered 200 with the error (logged): retrying cannot fix it.
    """
    try:
        task = TaskBody.model_validate(body)
    except ValidationError as exc:
        return _refused(f"task body: {first_problem(exc)}", attempt)
    kind = task.kind
    try:
        outcome = run_task(engine, kind, task.payload, attempt)
    except InvalidTaskPayload as exc:
        return _refused(str(exc), attempt)
    except Exception as exc:
        if retry_verdict(exc) is not Retry.NEVER:
            raise  # the adapter answers 503/500 and Cloud Tasks tries again
        log.error(
            "task failed permanently",
            extra={"fields": {"kind": kind, "attempt": attempt, "error": describe_error(exc)}},
        )
        return 200, {"outcome": TaskOutcome.FAILED.value, "kind": kind, "error": str(exc)}
    status = 503 if outcome is TaskOutcome.RETRY else 200
    return status, {"outcome": outcome.value, "kind": kind, "attempt": attempt}


def _refused(problem: str, attempt: int) -> tuple[int, dict[str, Any]]:
    fields = {"error": problem, "attempt": attempt}
    log.error("task refused: malformed body", extra={"fields": fields})
    return 400, {"error": problem}
