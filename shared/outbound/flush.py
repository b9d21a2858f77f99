"""The coalesced flush: up to 100 dirty customers per run, one batch of HubSpot calls.

A flush takes up to 100 customers from ``hubspot_outbound_dirty`` (schedules the
next flush at once when it took a full batch), links the unlinked, syncs them
(fields: the union of their messages' ``changed_fields``; WARP's time: the newest
``occurred_at``) and queues each customer HubSpot refused in
``hubspot_sync_queue`` (kind ``outbound``): retryable ones with a task for
``retry_worker``, permanent ones FAILED.

Taken rows are leased, not deleted, until the push is recorded, so a flush that
dies mid-way loses nothing (another flush takes them when the lease ends). A
failure of a whole call (HubSpot down, rate limit beyond the client's wait)
releases the customers back to the dirty set and raises, so the flush task is
retried with backoff; on its last attempt they become queue rows instead, retried
within the retry window and FAILED after it, visible and replayable. The outbound
flow may also carry a HubSpot value to WARP when a field's rule says HubSpot wins
(``allowed`` is both ways), so every flush leaves both sides and the field states
consistent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from shared.db import Row
from shared.db.repositories import outbound_dirty
from shared.engine.deps import Engine
from shared.errors import DatabaseUnavailableError, Retry, retry_verdict
from shared.observability.redaction import describe_error
from shared.outbound.fields import fields_from_stored
from shared.outbound.push import push_customers
from shared.outbound.receive import (
    FLUSH_KIND,
    delivery_records,
    schedule_flush,
    triggered_by,
    window_flushed,
)
from shared.retry import enqueue_failure
from shared.tasks import Task, TaskOutcome, task_name
from shared.tasks.kinds import FlushPayload

log = logging.getLogger("warp_hubspot_sync.outbound")

BATCH = 100
QUEUE_KIND = "outbound"
# The sync log's triggered_by for changes that came without a message.
SWEPT = "sweep"
# How long a flush holds the dirty rows it took; longer than any flush takes.
LEASE_SECONDS = 300
T = TypeVar("T")


@dataclass
class FlushReport:
    """What one flush did."""

    taken: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    queued: int = 0
    failed: int = 0
    more: bool = False
    gave_up: bool = False


def run_flush_task(engine: Engine, payload: FlushPayload, attempt: int) -> TaskOutcome:
    """Task handler of ``outbound_flush``."""
    report = flush(engine, attempt=attempt)
    if payload.trailing and payload.bucket is not None:
        window_flushed(engine, payload.bucket)  # the next window may lead again
    return TaskOutcome.FAILED if report.gave_up else TaskOutcome.DONE


def flush(
    engine: Engine,
    *,
    attempt: int = 0,
    limit: int = BATCH,
    marked_before: datetime | None = None,
) -> FlushReport:
    """Push up to ``limit`` dirty customers to HubSpot (see the module docstring).

    ``marked_before`` leaves younger rows to the flush task their mark scheduled (the
    sweep); by default every dirty row is due.
    """
    report = FlushReport()
    # The margin only absorbs clock skew with the database.
    cutoff = marked_before or datetime.now(UTC) + timedelta(minutes=1)
    with engine.database.transaction() as tx:
        rows = outbound_dirty.take(
            tx, marked_before=cutoff, limit=limit, lease_seconds=LEASE_SECONDS
        )
    report.taken = len(rows)
    if not rows:
        return report
    _check_after_lease(engine)
    if len(rows) >= limit:
        report.more = True
        ids = sorted(str(r["customer_id"]) for r in rows)
        engine.submit(Task(FLUSH_KIND, {}, name=task_name(FLUSH_KIND, "after", *ids)))
    try:
        work = _batch_work(engine, rows)
    except Exception:
        _release(engine, rows)
        raise
    try:
        results = push_customers(engine, list(work.fields), attempt=attempt, **work.kwargs())
    except Exception as exc:
        # A bug is retried too, bounded by retry_max_attempts.
        retryable = retry_verdict(exc) is not Retry.NEVER
        if retryable and attempt + 1 < engine.settings.retry_max_attempts:
            _release(engine, rows)
            log.warning(
                "flush failed as a whole; customers are dirty again and the flush retries",
                extra={
                    "fields": {
                        "customers": len(rows),
                        "attempt": attempt,
                        "error": describe_error(exc),
                    }
                },
            )
            raise
        for row in rows:
            cid = str(row["customer_id"])
            queued = enqueue_failure(
                engine,
                kind=QUEUE_KIND,
                entity_id=cid,
                payload=work.payload(cid),
                error=exc,
                # Still retryable (an outage): each customer's row goes on retrying.
                retryable=retryable,
            )
            if queued["status"] == "QUEUED":
                report.queued += 1
            else:
                report.failed += 1
        _settle(engine, rows)
        report.gave_up = report.failed > 0
        return report
    for result in results:
        report.statuses[result.status] = report.statuses.get(result.status, 0) + 1
        if result.error is None:
            continue
        queued = enqueue_failure(
            engine,
            kind=QUEUE_KIND,
            entity_id=result.customer_id,
            payload=work.payload(result.customer_id),
            error=result.error,
            retryable=result.error.retryable,
            hubspot_object_id=result.company_id,
        )
        if queued["status"] == "QUEUED":
            report.queued += 1
        else:
            report.failed += 1
    _settle(engine, rows)
    log.info(
        "outbound flush done",
        extra={"fields": {"taken": report.taken, **report.statuses, "queued": report.queued}},
    )
    return report


def _settle(engine: Engine, rows: Sequence[Row]) -> None:
    """Drop the pushed rows; a customer changed again meanwhile gets another flush.

    That flush is asked for as a new change asks for one: during a burst it joins
    the window's flush instead of chaining a flush per change that came in flight.
    """

    def settle() -> list[str]:
        with engine.database.transaction() as tx:
            return outbound_dirty.settle(tx, rows)

    if _on_fresh_connection(settle):
        schedule_flush(engine)


def _release(engine: Engine, rows: Sequence[Row]) -> None:
    """Give the taken rows back at once, so this task's retry can take them again.

    Without it a flush that failed after ``take`` (a lost database connection while
    reading its messages' records, a HubSpot failure, a failed release) left its
    rows leased: the retry found nothing to take and the customers waited for the
    lease to run out (``LEASE_SECONDS``), found by the convergence test.
    """

    def release() -> None:
        with engine.database.transaction() as tx:
            outbound_dirty.release(tx, [str(r["customer_id"]) for r in rows])

    _on_fresh_connection(release)


def _on_fresh_connection(action: Callable[[], T]) -> T:
    """Run ``action``, once more if the connection it got was dead.

    The failure that brought us here is often a dropped connection; the pool then
    discards its idle ones, so a second attempt gets a fresh connection. If that
    fails too the lease still runs out and ``_check_after_lease`` takes the rows.
    """
    try:
        return action()
    except DatabaseUnavailableError:
        return action()


def _check_after_lease(engine: Engine) -> None:
    """Schedule a flush for when this lease ends, named per lease period.

    If this invocation dies mid-push, nothing else would look at its leased rows
    again until the next change message: this flush takes them once the lease has
    run out. One per lease period is enough, so the name deduplicates it.
    """
    period = int(time.time() // LEASE_SECONDS)
    engine.submit(
        Task(
            FLUSH_KIND,
            {},
            delay_seconds=LEASE_SECONDS + 5,
            name=task_name(FLUSH_KIND, "lease", period),
        )
    )


def retry_customer(engine: Engine, row: Row) -> None:
    """Queue-row runner of kind ``outbound``: push the one customer again; raise on failure."""
    payload = row["payload"] or {}
    cid = str(payload.get("customer_id") or row["entity_id"])
    fields = payload.get("fields")
    (result,) = push_customers(
        engine,
        [cid],
        triggered_by=str(payload.get("triggered_by") or "retry"),
        triggered_by_user=payload.get("triggered_by_user"),
        fields={cid: set(fields) if fields is not None else None},
        attempt=int(row["retry_count"] or 0),
    )
    if result.error is not None:
        raise result.error
    if result.status in ("not_found", "skipped", "not_linked"):
        log.info(
            "queued customer needs no push",
            extra={
                "fields": {"customer_id": cid, "status": result.status, "reason": result.reason}
            },
        )


@dataclass
class _Work:
    """A batch's per-customer fields and times and its common trigger."""

    fields: dict[str, set[str] | None]
    warp_times: dict[str, datetime]
    triggered_by: str
    triggered_by_user: str | None

    def kwargs(self) -> dict[str, Any]:
        return {
            "fields": self.fields,
            "warp_times": self.warp_times,
            "triggered_by": self.triggered_by,
            "triggered_by_user": self.triggered_by_user,
        }

    def payload(self, customer_id: str) -> dict[str, Any]:
        """A queue row's payload: enough to push this customer again."""
        chosen = self.fields.get(customer_id)
        return {
            "customer_id": customer_id,
            "fields": None if chosen is None else sorted(chosen),
            "triggered_by": self.triggered_by,
            "triggered_by_user": self.triggered_by_user,
        }


def _batch_work(engine: Engine, rows: Sequence[Row]) -> _Work:
    records = delivery_records(engine, [m for r in rows for m in r["message_ids"] or []])
    fields: dict[str, set[str] | None] = {}
    times: dict[str, datetime] = {}
    sources: set[str] = set()
    users: set[str | None] = set()
    swept = False
    for row in rows:
        cid = str(row["customer_id"])
        fields[cid] = fields_from_stored(row["changed_fields"] or [])
        if row.get("warp_changed_at") is not None:
            times[cid] = row["warp_changed_at"]  # else the row's updated_at stands in
        swept = swept or not row["message_ids"]
        for mid in row["message_ids"] or []:
            record = records.get(mid)
            if record is None:
                continue  # completed after this flush began
            sources.add(str(record.get("trigger_source") or "warp"))
            users.add(record.get("triggered_by_user"))
    user = next(iter(users)) if len(users) == 1 else None
    # Marked by the sweep (a captured change, a row of WARP's queue): no message.
    label = triggered_by(sources) if sources else SWEPT if swept else "pubsub"
    return _Work(fields, times, label, user)
