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
   field: they name none) and COMPLETED in the same transaction;
4. the coalesced flush, 100 customers per batch call, until nothing is dirty or the
   time budget is spent: this also takes customers whose flush task was lost.

Every hand-off is one transaction (taking the rows and marking the customers dirty), so
a sweep that dies loses nothing: what it took is in the dirty set for the next flush.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from shared.capture.watch import CHANGES, ERRORS
from shared.db import Row
from shared.engine.deps import Engine, get_engine
from shared.errors import SyncError
from shared.mapping import EntityType, MappingSet
from shared.outbound.deletes import close_removed_customer
from shared.outbound.flush import BATCH, flush
from shared.outbound.receive import accept_change, mappings_of
from shared.tasks import TaskOutcome

log = logging.getLogger("warp_hubspot_sync.outbound")

SWEEP_KIND = "outbound_sweep"
# Rows moved into the dirty set per transaction.
TAKE = 500
# Flushing stops after this long; the next sweep (a minute later) goes on.
TIME_BUDGET_SECONDS = 50.0
QUEUE = "accounts.hubspot_sync_queue"
# WARP's QueueCustomerSync rows: no kind of ours (ours always have one), due, queued.
_WARP_QUEUE_ROWS = (
    f"SELECT id FROM {QUEUE} WHERE kind IS NULL AND status = 'QUEUED' "
    "AND entity_type = 'customer' AND direction = 'WARP_TO_HUBSPOT' "
    "AND operation IN ('UPDATE', 'CREATE') AND entity_id IS NOT NULL "
    "AND COALESCE(scheduled_for, NOW()) <= NOW() "
    "ORDER BY priority, created_at LIMIT :limit FOR UPDATE SKIP LOCKED"
)


@dataclass
class SweepReport:
    """What one sweep did."""

    capture_errors: int = 0
    captured: int = 0
    deleted: int = 0
    warp_queue: int = 0
    flushed: int = 0
    failed: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_sweep_task(payload: Mapping[str, Any], attempt: int) -> TaskOutcome:
    """Task handler of ``outbound_sweep`` (the scheduler's call to ``retry_worker``)."""
    sweep(get_engine())
    return TaskOutcome.DONE


def sweep(engine: Engine, *, time_budget: float = TIME_BUDGET_SECONDS) -> SweepReport:
    """One sweep (see the module docstring)."""
    report = SweepReport()
    started = time.monotonic()
    report.capture_errors = _take_capture_errors(engine)
    while (taken := _take_captured(engine)) > 0:
        report.captured += taken
    report.deleted = _close_deleted(engine)
    while (taken := _take_warp_queue(engine)) > 0:
        report.warp_queue += taken
    # TODO(lead, issue 21 item 4): call the webhook-events sweep here (stored events
    # left unprocessed past their grace period), e.g.
    #     report.webhook_events = sweep_webhook_events(engine)
    # once that branch is merged; its count belongs in SweepReport.
    while time.monotonic() - started < time_budget:
        try:
            flushed = flush(engine)
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
    """Move up to :data:`TAKE` captured INSERTs and UPDATEs into the dirty set."""
    with engine.database.transaction() as tx:
        waiting = tx.fetch(
            f"SELECT DISTINCT customer_id FROM (SELECT customer_id FROM {CHANGES} "
            "WHERE operation <> 'DELETE' ORDER BY id LIMIT :limit) AS c",
            {"limit": TAKE},
        )
    # Resolved before the transaction below, which then finds them cached.
    mappings = {str(r["customer_id"]): mappings_of(engine, str(r["customer_id"])) for r in waiting}
    with engine.database.transaction() as tx:
        rows = tx.fetch(
            f"DELETE FROM {CHANGES} WHERE id IN (SELECT id FROM {CHANGES} "
            "WHERE operation <> 'DELETE' ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED) "
            "RETURNING customer_id, changed_fields, changed_at",
            {"limit": TAKE},
        )
        for row in sorted(rows, key=lambda r: r["changed_at"]):
            cid = str(row["customer_id"])
            accept_change(
                tx,
                _mappings(engine, mappings, cid),
                cid,
                row["changed_fields"] or [],
                row["changed_at"],
            )
    return len(rows)


def _mappings(
    engine: Engine, known: dict[str, dict[EntityType, MappingSet]], customer_id: str
) -> dict[EntityType, MappingSet]:
    found = known.get(customer_id)
    if found is None:
        found = known[customer_id] = mappings_of(engine, customer_id)
    return found


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
    """Complete up to :data:`TAKE` rows of WARP's own queue, marking their customers dirty."""
    with engine.database.transaction() as tx:
        rows = tx.fetch(
            f"UPDATE {QUEUE} SET status = 'COMPLETED', processed_at = NOW() "
            f"WHERE id IN ({_WARP_QUEUE_ROWS}) RETURNING entity_id, created_at",
            {"limit": TAKE},
        )
        _mark_whole(engine, tx, rows, time_column="created_at")
    return len(rows)


def _take_capture_errors(engine: Engine) -> int:
    """Push whole each customer whose change the trigger could not record; log each."""
    with engine.database.transaction() as tx:
        if not tx.fetch_value(f"SELECT to_regclass('{ERRORS}') IS NOT NULL"):
            return 0
        rows = tx.fetch(
            f"UPDATE {ERRORS} SET handled_at = NOW() WHERE id IN (SELECT id FROM {ERRORS} "
            "WHERE handled_at IS NULL ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED) "
            "RETURNING customer_id AS entity_id, operation, error, occurred_at",
            {"limit": TAKE},
        )
        for row in rows:
            log.error(
                "change capture failed; the customer is pushed whole",
                extra={
                    "fields": {
                        "customer_id": str(row["entity_id"]),
                        "operation": row["operation"],
                        "error": row["error"],
                    }
                },
            )
        _mark_whole(
            engine,
            tx,
            [r for r in rows if r["entity_id"] is not None and r["operation"] != "DELETE"],
            time_column="occurred_at",
        )
    return len(rows)


def _mark_whole(engine: Engine, tx: Any, rows: Sequence[Row], *, time_column: str) -> None:
    """Mark each row's customer dirty for every field, its time for none in particular."""
    for row in rows:
        cid = str(row["entity_id"])
        accept_change(tx, mappings_of(engine, cid), cid, [], row[time_column], field_times=False)
