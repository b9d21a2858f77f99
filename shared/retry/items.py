"""Queueing failed work: a ``hubspot_sync_queue`` row and the Cloud Task that runs it again."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from shared.db import Row
from shared.db.repositories import sync_queue
from shared.engine.deps import Engine
from shared.observability.redaction import describe_error
from shared.tasks import Task, backoff_delay, task_name

log = logging.getLogger("warp_hubspot_sync.retry")

QUEUE_TASK_KIND = "queue_item"


def enqueue_failure(
    engine: Engine,
    *,
    kind: str,
    entity_id: str | None,
    payload: Mapping[str, Any],
    error: BaseException | str,
    retryable: bool,
    entity_type: str = "customer",
    operation: str = "UPDATE",
    direction: str = "WARP_TO_HUBSPOT",
    hubspot_object_id: str | None = None,
) -> Row:
    """Record work that failed once: QUEUED with a task at the backoff time, or FAILED.

    The row counts the failed attempt (``retry_count`` 1) and its ``created_at`` (the
    engine's clock) starts its retry window. A retryable failure gets a task named
    after the row and attempt, so creating it twice is harmless; a permanent failure
    is FAILED at once. Returns the row as stored.
    """
    settings = engine.settings
    message = _describe(error)
    delay = backoff_delay(1, base=settings.retry_base_seconds, cap=settings.retry_cap_seconds)
    now = engine.now()
    with engine.database.transaction() as tx:
        row = sync_queue.enqueue(
            tx,
            kind=kind,
            entity_type=entity_type,
            entity_id=entity_id,
            operation=operation,
            direction=direction,
            payload=payload,
            hubspot_object_id=hubspot_object_id,
            max_retries=settings.retry_max_attempts,
            created_at=now,
        )
        retry_at = now + timedelta(seconds=delay) if retryable else None
        failed = sync_queue.fail(tx, str(row["id"]), message, retry_at=retry_at)
        assert failed is not None
        row = failed
    log.warning(
        "work queued for retry" if retryable else "work failed permanently",
        extra={
            "fields": {
                "queue_id": str(row["id"]),
                "kind": kind,
                "entity_id": entity_id,
                "status": row["status"],
                "error": error if isinstance(error, str) else describe_error(error),
            }
        },
    )
    if retryable:
        return submit_item_task(engine, row, delay_seconds=delay, attempt=1)
    return row


def submit_item_task(engine: Engine, row: Row, *, delay_seconds: float, attempt: int | str) -> Row:
    """Create the task that runs queue row ``row`` after ``delay_seconds``.

    If the task cannot be created the row is marked FAILED with the reason, so it
    shows in the API's queue listing and can be replayed: nothing waits unseen.
    """
    item_id = str(row["id"])
    name = task_name(QUEUE_TASK_KIND, item_id, attempt)
    task = Task(QUEUE_TASK_KIND, {"id": item_id}, delay_seconds=delay_seconds, name=name)
    try:
        engine.submit(task)
    except Exception as exc:
        log.exception(
            "could not create the retry task; the queue row is FAILED",
            extra={"fields": {"queue_id": item_id}},
        )
        with engine.database.transaction() as tx:
            failed = sync_queue.fail(
                tx, item_id, f"could not schedule the retry: {_describe(exc)}", retry_at=None
            )
        return failed or row
    with engine.database.transaction() as tx:
        sync_queue.set_task_name(tx, item_id, name)
        stored = sync_queue.get(tx, item_id)
    return stored or row


def replay(engine: Engine, item_id: str) -> Row | None:
    """Run a FAILED or CANCELLED row again now (the API's ``POST /queue/{id}/replay``).

    Returns the row, QUEUED with its retry count reset and a new task (its retry window
    still runs from when it was first queued), or None when
    the row does not exist or is not FAILED or CANCELLED.
    """
    with engine.database.transaction() as tx:
        row = sync_queue.replay(tx, item_id)
    if row is None:
        return None
    # A fresh name per replay: the names of earlier attempts are spent.
    log.info("queue item replayed", extra={"fields": {"queue_id": item_id, "kind": row["kind"]}})
    return submit_item_task(engine, row, delay_seconds=0, attempt=f"replay-{time.time_ns()}")


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:2000]
