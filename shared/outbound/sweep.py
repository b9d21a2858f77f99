"""The sweep: every WARP change that came without a message, pushed through the flush.

Run every minute (Cloud Scheduler → ``retry_worker``, task kind ``outbound_sweep``),
by hand (``hubspot-sync outbound sweep``) or every second locally. One run:

1. changes the capture trigger could not record (``hubspot_capture_errors``): each
   customer is pushed whole, and the error is logged where a person looks;
2. captured changes (``hubspot_captured_changes``): each becomes a dirty mark with its
   fields and its trigger time as WARP's time of those fields, exactly as a change
   message would (:func:`shared.outbound.receive.accept_change`), so a message and a
   capture of one change merge into one dirty row and one HubSpot write; a captured
   DELETE closes the company;
3. rows WARP's application queued for a worker of its own (``QueueCustomerSync``:
   ``hubspot_sync_queue`` rows with no ``kind`` of ours) are marked dirty (every
   field: they name none) and COMPLETED in the same transaction; webhook events
   stored but left unprocessed past a grace period (their task lost) are applied;
4. a flush scheduled for what it marked (coalesced like the messages of that moment),
   and the flush run here, 100 customers per batch call, of every customer marked
   before its own flush should have run (a lost task, a flush that died), until none
   is left or the time budget is spent.

Every hand-off is one transaction (taking the rows and marking the customers dirty), so
a sweep that dies loses nothing: what it took is in the dirty set for the next flush.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.capture.watch import CHANGES, ERRORS
from shared.db import Session
from shared.engine.deps import Engine
from shared.engine.sync import lock_customers
from shared.errors import SyncError
from shared.inbound.process import process_pending
from shared.outbound.deletes import close_removed_customer
from shared.outbound.flush import BATCH, flush
from shared.outbound.receive import accept_change, mappings_of, schedule_flush
from shared.tasks import TaskOutcome
from shared.tasks.kinds import SweepPayload

log = logging.getLogger("warp_hubspot_sync.outbound")

SWEEP_KIND = "outbound_sweep"
# Customers (or rows) moved into the dirty set per pass.
TAKE = 500
# Flushing stops after this long; the next sweep (a minute later) goes on.
TIME_BUDGET_SECONDS = 50.0
QUEUE = "accounts.hubspot_sync_queue"
# WARP's QueueCustomerSync rows: no kind of ours (ours always have one), due, queued.
_WARP_QUEUE_ROW = (
    f"SELECT id FROM {QUEUE} WHERE kind IS NULL AND status = 'QUEUED' "
    "AND entity_type = 'customer' AND direction = 'WARP_TO_HUBSPOT' "
    "AND operation IN ('UPDATE', 'CREATE') AND entity_id IS NOT NULL "
    "AND COALESCE(scheduled_for, NOW()) <= NOW() "
    "ORDER BY priority, created_at LIMIT 1 FOR UPDATE SKIP LOCKED"
)


@dataclass
class SweepReport:
    """What one sweep did."""

    capture_errors: int = 0
    captured: int = 0
    deleted: int = 0
    warp_queue: int = 0
    webhook_events: int = 0  # stranded webhook events applied
    flushed: int = 0
    failed: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_sweep_task(engine: Engine, payload: SweepPayload, attempt: int) -> TaskOutcome:
    """Task handler of ``outbound_sweep`` (the scheduler's call to ``retry_worker``)."""
    sweep(engine)
    return TaskOutcome.DONE


def sweep(engine: Engine, *, time_budget: float = TIME_BUDGET_SECONDS) -> SweepReport:
    """One sweep (see the module docstring)."""
    report = SweepReport()
    started = time.monotonic()
    report.capture_errors = _take_capture_errors(engine)
    while time.monotonic() - started < time_budget and (taken := _take_captured(engine)) > 0:
        report.captured += taken
    report.deleted = _close_deleted(engine)
    while time.monotonic() - started < time_budget and (taken := _take_warp_queue(engine)) > 0:
        report.warp_queue += taken
    # Webhook events stored but left unprocessed past their grace period (their task
    # lost): a tenth of the budget, oldest first (issue 21 item 4).
    report.webhook_events = process_pending(engine, deadline=started + time_budget / 10).processed
    if report.captured or report.warp_queue or report.capture_errors:
        schedule_flush(engine)  # as for a message: the changes marked now, coalesced
    # Rows whose own flush should have run by now: lost tasks, flushes that died.
    due = datetime.now(UTC) - timedelta(seconds=2 * engine.settings.coalesce_delay_seconds)
    while time.monotonic() - started < time_budget:
        try:
            flushed = flush(engine, marked_before=due)
        except Exception as exc:
            # The flush gave its customers back: they stay dirty for the next sweep.
            report.error = f"{type(exc).__name__}: {exc}"
            log.warning("sweep: flush failed", extra={"fields": {"error": report.error}})
            break
        report.flushed += flushed.taken
        report.failed += flushed.failed
        if flushed.taken < BATCH:
            break
    log.info("outbound sweep done", extra={"fields": report.as_dict()})
    return report


def _take_captured(engine: Engine) -> int:
    """Move the captured INSERTs and UPDATEs of up to :data:`TAKE` customers into the
    dirty set; how many changes that was.

    One transaction per customer, like one change message: a transaction holding the
    rows of many customers at once deadlocked with flushes recording theirs.
    """
    with engine.database.transaction() as tx:
        waiting = tx.fetch(
            f"SELECT CAST(customer_id AS text) AS id FROM {CHANGES} WHERE operation <> 'DELETE' "
            "GROUP BY customer_id ORDER BY min(id) LIMIT :limit",
            {"limit": TAKE},
        )
    taken = 0
    for customer in waiting:
        cid = customer["id"]
        mappings = mappings_of(engine, cid)
        with engine.database.transaction() as tx:
            # The customer's turn, as every flow writing its field states takes it: a
            # captured INSERT names every field, and a sync recording the same rows in
            # its own order would otherwise deadlock with us.
            lock_customers(tx, [cid])
            rows = tx.fetch(
                f"DELETE FROM {CHANGES} WHERE customer_id = CAST(:id AS uuid) "
                "AND operation <> 'DELETE' RETURNING changed_fields, changed_at",
                {"id": cid},
            )
            for row in sorted(rows, key=lambda r: r["changed_at"]):
                accept_change(tx, mappings, cid, row["changed_fields"] or [], row["changed_at"])
        taken += len(rows)
    return taken


def _close_deleted(engine: Engine) -> int:
    """Close the company of each captured DELETE; a failure leaves the row for the next sweep."""
    closed = 0
    while True:
        with engine.database.transaction() as tx:
            row = tx.fetch_one(
                f"SELECT id, customer_id, hubspot_company_id FROM {CHANGES} "
                "WHERE operation = 'DELETE' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
            )
            if row is None:
                return closed
            try:
                close_removed_customer(engine, str(row["customer_id"]), row["hubspot_company_id"])
            except SyncError as exc:
                log.warning(
                    "sweep: closing a deleted customer's company failed; the next sweep retries",
                    extra={"fields": {"customer_id": str(row["customer_id"]), "error": str(exc)}},
                )
                return closed
            tx.execute(f"DELETE FROM {CHANGES} WHERE id = :id", {"id": row["id"]})
            closed += 1


def _take_warp_queue(engine: Engine) -> int:
    """Complete the rows of WARP's own queue one by one, each marking its customer dirty
    in the same transaction (one customer per transaction, as everywhere here)."""
    taken = 0
    while taken < TAKE:
        with engine.database.transaction() as tx:
            row = tx.fetch_one(
                f"UPDATE {QUEUE} SET status = 'COMPLETED', processed_at = NOW() "
                f"WHERE id IN ({_WARP_QUEUE_ROW}) RETURNING entity_id, created_at"
            )
            if row is None:
                break
            _mark_whole(engine, tx, row["entity_id"], row["created_at"])
        taken += 1
    return taken


def _take_capture_errors(engine: Engine) -> int:
    """Push whole each customer whose change the trigger could not record; log each."""
    with engine.database.transaction() as tx:
        if not tx.fetch_value(f"SELECT to_regclass('{ERRORS}') IS NOT NULL"):
            return 0
    taken = 0
    while taken < TAKE:
        with engine.database.transaction() as tx:
            row = tx.fetch_one(
                f"UPDATE {ERRORS} SET handled_at = NOW() WHERE id = (SELECT id FROM {ERRORS} "
                "WHERE handled_at IS NULL ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) "
                "RETURNING customer_id, operation, error, occurred_at"
            )
            if row is None:
                break
            log.error(
                "change capture failed; the customer is pushed whole",
                extra={
                    "fields": {
                        "customer_id": str(row["customer_id"]),
                        "operation": row["operation"],
                        "error": row["error"],
                    }
                },
            )
            if row["customer_id"] is not None and row["operation"] != "DELETE":
                _mark_whole(engine, tx, row["customer_id"], row["occurred_at"])
        taken += 1
    return taken


def _mark_whole(engine: Engine, tx: Session, customer_id: Any, changed_at: datetime) -> None:
    """Mark a customer dirty for every field; the time belongs to no field in particular."""
    cid = str(customer_id)
    accept_change(tx, mappings_of(engine, cid), cid, [], changed_at, field_times=False)
