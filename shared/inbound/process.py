"""Processing stored webhook events: chunks, time budget, failures, the task and the sweep.

:func:`process_events` applies events (``apply.apply_chunk``) in chunks of up to
:data:`CHUNK` events in ``occurredAt`` order, one transaction each, as long as the
deadline allows; the events it did not start are returned as *deferred*.

Failures never stop the other events:

- a retryable failure (database connection lost, lock wait beyond the budget,
  deadlock, HubSpot unavailable) marks the chunk's events with the error and
  leaves them unprocessed, for the task's next attempt;
- any other failure rolls the chunk back and applies it again in smaller units:
  object by object, then event by event, so only the event that cannot be applied
  ends failed (``processed`` with its ``processing_error``, visible, not retried).

The task (kind ``inbound_batch``, :func:`run_inbound_batch`) processes the events
its payload names (``{"event_ids": [...]}``) or every unprocessed event received
before a time (``{"received_before": iso}``). While events stay unprocessed it
asks to be retried; after the last attempt it leaves a QUEUED ``hubspot_sync_queue``
row naming them, retried within the retry window and FAILED after it (visible in the
API's queue, replayable).
:func:`process_pending` is the sweep: the reconciler function runs it before every
run (nightly from Scheduler), and any later scheduled sweep may call it too, so
events whose task was lost (the in-process stand-in died with its process, a
Cloud Task ran out of retries) are applied, once, instead of waiting for ever.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pg8000.exceptions

from shared import pause
from shared.db.repositories import webhook_events
from shared.engine.deps import Engine
from shared.engine.record import log_plan
from shared.errors import Retry, SyncError, retry_verdict
from shared.inbound import failures as failures_table
from shared.inbound.apply import ChunkResult, apply_chunk
from shared.inbound.events import parse_event
from shared.inbound.queries import unprocessed_before, unprocessed_by_ids
from shared.inbound.receive import StoredEvent
from shared.retry.items import enqueue_failure
from shared.tasks import TaskOutcome
from shared.tasks.kinds import InboundBatchPayload

log = logging.getLogger("warp_hubspot_sync.inbound")

KIND = "inbound_batch"
CHUNK = 100
# The sweep leaves younger events to the delivery or task still working on them.
SWEEP_GRACE_SECONDS = 60.0


@dataclass
class ProcessReport:
    """What a processing run did. ``counts`` holds event outcomes by category
    (``applied``, ``echo``, ``stale``, ``superseded``, ``unmapped``, ``outbound_only``,
    ``awaits_warp``, ``conflict``, ``warp_newer``, ``in_sync``, ``no_customer``, ``linked``,
    ``unlinked``, ``merged``, ...)."""

    processed: int = 0
    failed: int = 0
    retry: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def remaining(self) -> list[str]:
        """Row ids still unprocessed: to retry, or not started within the budget."""
        return [*self.retry, *self.deferred]

    @property
    def echoes(self) -> int:
        """Echoes of our own writes that were ignored."""
        return self.counts["echo"]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary (for HTTP answers and logs)."""
        return {
            "processed": self.processed,
            "failed": self.failed,
            "retry": len(self.retry),
            "deferred": len(self.deferred),
            "outcomes": dict(sorted(self.counts.items())),
        }


def process_events(
    engine: Engine, events: Sequence[StoredEvent], *, deadline: float | None = None
) -> ProcessReport:
    """Apply stored events in chunks until done or ``deadline`` (``time.monotonic()``)."""
    report = ProcessReport()
    if events and pause.state(engine).paused:
        # Stored and left unprocessed: the resume drains them (shared/pause.py).
        log.info("inbound events wait for resume", extra={"fields": {"events": len(events)}})
        return report
    ordered = sorted(events, key=lambda s: (s.event.occurred_at_ms, s.event.rank, s.event.event_id))
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start : start + CHUNK]
        if deadline is not None and time.monotonic() >= deadline:
            report.deferred.extend(s.row_id for s in ordered[start:])
            break
        _process_unit(engine, chunk, report, deadline, level=0)
    if events:
        log.info(
            "inbound events processed",
            extra={"fields": {"events": len(events), **report.as_dict()}},
        )
    return report


def _process_unit(
    engine: Engine,
    unit: Sequence[StoredEvent],
    report: ProcessReport,
    deadline: float | None,
    *,
    level: int,
) -> None:
    """Apply ``unit`` in one transaction; on a permanent failure, split it (see above)."""
    lock_timeout_ms = None
    if deadline is not None:
        lock_timeout_ms = max(1, int((deadline - time.monotonic()) * 1000))
    started = time.monotonic()
    try:
        result = apply_chunk(engine, unit, lock_timeout_ms=lock_timeout_ms)
    except Exception as exc:
        if is_retryable(exc):
            _record_failures(engine, {s.row_id: exc for s in unit}, report)
            return
        parts = _split(unit, level)
        if parts is None:
            _record_failures(engine, {s.row_id: exc for s in unit}, report)
            return
        log.warning(
            "inbound events failed together; applying them apart",
            extra={"fields": {"events": len(unit), "error_type": type(exc).__name__}},
        )
        for part in parts:
            _process_unit(engine, part, report, deadline, level=level + 1)
        return
    _finish(result, report, (time.monotonic() - started) * 1000)
    if result.failed:
        _record_failures(engine, result.failed, report)


def _split(unit: Sequence[StoredEvent], level: int) -> list[list[StoredEvent]] | None:
    """The next smaller units: by object, then single events; None for a single event."""
    if len(unit) <= 1:
        return None
    if level == 0:
        groups: dict[tuple[str, int], list[StoredEvent]] = {}
        for stored in unit:
            groups.setdefault((stored.event.object_type, stored.event.object_id), []).append(stored)
        if len(groups) > 1:
            return list(groups.values())
    return [[s] for s in unit]


def _finish(result: ChunkResult, report: ProcessReport, duration_ms: float) -> None:
    for outcome in result.outcomes.values():
        report.counts[outcome.category] += 1
    report.processed += len(result.outcomes)
    for plan, entity_type, customer_id in result.plans:
        log_plan(
            plan,
            entity_type=entity_type,
            customer_id=customer_id,
            operation="UPDATE",
            duration_ms=duration_ms,
            triggered_by="webhook",
        )


def _record_failures(
    engine: Engine, failures: Mapping[str, BaseException], report: ProcessReport
) -> None:
    """Store each failure on its event: retryable ones stay unprocessed, others close."""
    for row_id, exc in failures.items():
        retryable = is_retryable(exc)
        if retryable:
            report.retry.append(row_id)
        else:
            report.failed += 1
        log.warning(
            "inbound event failed",
            extra={
                "fields": {
                    "event_row_id": row_id,
                    "error_type": type(exc).__name__,
                    "retryable": retryable,
                }
            },
        )
    try:
        with engine.database.transaction() as tx:
            for row_id, exc in failures.items():
                final = not is_retryable(exc)
                webhook_events.mark_failed(tx, row_id, _error_text(exc), final=final)
                if final:
                    failures_table.record(
                        tx,
                        row_id,
                        _error_text(exc),
                        max_retries=engine.settings.retry_max_attempts,
                    )
    except Exception as exc:  # the database itself may be what failed
        log.warning(
            "could not record inbound failures; the events stay unprocessed",
            extra={"fields": {"events": len(failures), "error_type": type(exc).__name__}},
        )


def is_retryable(exc: BaseException) -> bool:
    """Whether the event stays pending for a later attempt.

    Only a failure known to be transient: an unexpected one (a bug) fails the event
    for good, so the per-minute sweep does not retry it forever.
    """
    return retry_verdict(exc) is Retry.HELPS


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, pg8000.exceptions.DatabaseError) and exc.args:
        info = exc.args[0]
        if isinstance(info, dict):
            return f"{type(exc).__name__} {info.get('C', '')}: {info.get('M', '')}"[:1000]
    return f"{type(exc).__name__}: {exc}"[:1000]


# -- loading stored events ------------------------------------------------------------


def _stored(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> list[StoredEvent]:
    """Stored rows back to events; a row that no longer parses is closed as failed."""
    stored: list[StoredEvent] = []
    broken: dict[str, BaseException] = {}
    for row in rows:
        try:
            stored.append(StoredEvent(str(row["id"]), parse_event(row["raw_payload"])))
        except ValueError as exc:
            broken[str(row["id"])] = exc
    if broken:
        _record_failures(engine, broken, ProcessReport())
    return stored


def process_ids(
    engine: Engine, row_ids: Sequence[str], *, deadline: float | None = None
) -> ProcessReport:
    """Process those of these stored events that are still unprocessed."""
    with engine.database.transaction() as tx:
        rows = unprocessed_by_ids(tx, row_ids)
    return process_events(engine, _stored(engine, rows), deadline=deadline)


def process_pending(
    engine: Engine,
    limit: int = 1000,
    *,
    older_than_seconds: float = SWEEP_GRACE_SECONDS,
    received_before: datetime | None = None,
    deadline: float | None = None,
) -> ProcessReport:
    """The sweep: process up to ``limit`` unprocessed events, oldest first, until ``deadline``.

    Only events received ``older_than_seconds`` ago (or before ``received_before``)
    are taken, so the sweep does not race a delivery still processing its own.
    Events that failed for good are processed-with-error and not picked up again;
    the events not started by ``deadline`` (``time.monotonic()``) wait for the next
    sweep. Applying an event marks it processed in the same transaction, so a
    sweep racing a late task applies each event once.
    """
    before = received_before or engine.now() - timedelta(seconds=older_than_seconds)
    with engine.database.transaction() as tx:
        rows = unprocessed_before(tx, before, limit)
    return process_events(engine, _stored(engine, rows), deadline=deadline)


# -- the task ----------------------------------------------------------------------


def task_payload(row_ids: Sequence[str]) -> dict[str, Any]:
    """The ``inbound_batch`` payload naming these stored events."""
    return {"event_ids": [str(i) for i in row_ids]}


def run_inbound_batch(engine: Engine, payload: InboundBatchPayload, attempt: int) -> TaskOutcome:
    """Task handler of kind ``inbound_batch`` (registered in shared/tasks/kinds.py)."""
    if payload.event_ids is not None:
        report = process_ids(engine, [str(i) for i in payload.event_ids])
    else:
        report = process_pending(
            engine, limit=payload.limit, received_before=payload.received_before
        )
    if not report.remaining:
        return TaskOutcome.DONE
    if attempt + 1 < engine.settings.retry_max_attempts:
        return TaskOutcome.RETRY
    # Events still pending are retryable work: the row goes on retrying within the window.
    row = enqueue_failure(
        engine,
        kind=KIND,
        entity_type="webhook_event",
        entity_id=None,
        direction="HUBSPOT_TO_WARP",
        payload=task_payload(report.remaining),
        error=f"{len(report.remaining)} event(s) still unprocessed after {attempt + 1} attempts",
        retryable=True,
    )
    return TaskOutcome.FAILED if row["status"] == "FAILED" else TaskOutcome.SCHEDULED


class EventsStillPending(SyncError):
    """Some events of a replayed queue row are still unprocessed (retryable)."""

    retryable = True


class EventsFailedAgain(SyncError):
    """Replayed events failed for good again: the queue row stays FAILED (permanent)."""


def retry_queue_row(engine: Engine, row: Mapping[str, Any]) -> None:
    """Runner of ``hubspot_sync_queue`` rows of kind ``inbound_batch`` (a replay).

    Processes the events the row's payload names; raises :class:`EventsStillPending`
    while some stay unprocessed, so the retry worker schedules the row again.
    """
    payload = row.get("payload") or {}
    event_ids = [str(i) for i in payload.get("event_ids", [])]
    with engine.database.transaction() as tx:
        failures_table.reopen(tx, event_ids)  # a replay applies failed events again
    report = process_ids(engine, event_ids)
    if report.remaining:
        raise EventsStillPending(f"{len(report.remaining)} event(s) still unprocessed")
    if report.failed:
        raise EventsFailedAgain(f"{report.failed} event(s) failed again (see the event errors)")
