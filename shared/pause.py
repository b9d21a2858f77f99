"""The pause switch: while paused nothing is written to WARP or HubSpot.

Operators pause before a HubSpot portal migration, a WARP data fix or an incident
(``POST /v1/sync/pause``, ``hubspot-sync pause``). The state is one row in
``accounts.hubspot_sync_pause``, so every instance of every function sees it.

What still happens while paused: webhook deliveries are verified, stored and
deduplicated; change messages are validated, deduplicated and marked dirty; failed
work stays in the queue. What does not: applying stored events, flushing dirty
customers, running queued work or reconcile continuations (every task answers DONE
without running, the work itself stays where it was stored), and the API's writing
routes (409). :func:`check` is the one gate, called where work starts, not inside it,
so a flow that began before the pause finishes as it would have.

:func:`resume` clears the row and drains what waited, in order: the stored webhook
events oldest first (one sweep task), then the dirty customers (a flush), the
queued rows (their tasks again) and reconciliation runs left RUNNING (their
continuations).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from shared.db import Database, Session
from shared.engine.deps import Engine
from shared.errors import SyncError

log = logging.getLogger("warp_hubspot_sync.pause")

TABLE = "accounts.hubspot_sync_pause"
# One sweep task takes every event stored while paused (the payload's upper bound).
DRAIN_EVENTS = 10_000
DRAIN_QUEUE_ROWS = 10_000


@dataclass(frozen=True)
class PauseState:
    """Whether the sync is paused, since when, by whom and why."""

    paused: bool
    since: datetime | None = None
    by: str | None = None
    reason: str | None = None


class SyncPaused(SyncError):
    """Work that would write was asked for while paused: it may run after resume."""

    retryable = True

    def __init__(self, state: PauseState) -> None:
        since = state.since.isoformat() if state.since else "?"
        super().__init__(
            f"sync is paused (since {since}, by {state.by or 'unknown'}): nothing is written "
            "to WARP or HubSpot until POST /v1/sync/resume (hubspot-sync resume)"
        )
        self.state = state


@dataclass(frozen=True)
class Drained:
    """What :func:`resume` handed to the workers."""

    events: int  # stored webhook events waiting to be applied
    customers: int  # customers changed in WARP waiting to be pushed
    queue_items: int  # queued rows whose task was submitted again
    runs: int  # reconciliation runs continued


def read(tx: Session) -> PauseState:
    """The pause state as stored."""
    row = tx.fetch_one(f"SELECT paused_at, paused_by, reason FROM {TABLE}")
    if row is None:
        return PauseState(False)
    return PauseState(True, row["paused_at"], row["paused_by"], row["reason"])


def state(engine: Engine) -> PauseState:
    """The pause state now (one short read)."""
    with engine.database.transaction() as tx:
        return read(tx)


def check(engine: Engine) -> None:
    """The gate at every write point: raise :class:`SyncPaused` while paused."""
    current = state(engine)
    if current.paused:
        raise SyncPaused(current)


def pause(database: Database, *, by: str | None, reason: str | None) -> tuple[PauseState, bool]:
    """Pause (idempotent: a second pause keeps the first one's time, author and reason).

    Returns the state and whether this call paused. Only the database is needed: a
    pause must work when HubSpot is what is broken.
    """
    with database.transaction() as tx:
        inserted = tx.execute(
            f"INSERT INTO {TABLE} (paused_by, reason) VALUES (:by, :reason) "
            "ON CONFLICT (singleton) DO NOTHING",
            {"by": by, "reason": reason},
        )
        current = read(tx)
    if inserted:
        log.warning("sync paused", extra={"fields": {"by": by, "reason": reason}})
    return current, bool(inserted)


def resume(engine: Engine, *, by: str | None) -> tuple[bool, Drained]:
    """Resume and drain (see the module docstring); whether it was paused, and what drained.

    Draining when not paused is harmless (each piece of work runs once), so a
    resume also serves to kick work that waits.
    """
    with engine.database.transaction() as tx:
        row = tx.fetch_one(
            f"DELETE FROM {TABLE} RETURNING extract(epoch FROM NOW() - paused_at) AS seconds"
        )
    was_paused = row is not None
    drained = drain(engine, paused_for_seconds=float(row["seconds"]) if row else None)
    log.warning(
        "sync resumed" if was_paused else "resume while not paused: waiting work handed on",
        extra={"fields": {"by": by, **drained.__dict__}},
    )
    return was_paused, drained


def drain(engine: Engine, *, paused_for_seconds: float | None = None) -> Drained:
    """Hand every piece of work that waited to the workers, oldest webhook events first.

    Reconciliation runs are continued when silent for the whole pause
    (``paused_for_seconds``): their continuation task was held. A run that beat its
    heartbeat meanwhile (a foreground run started before the pause) is left alone.
    """
    # Imported here: the flows' modules are heavy, and only a resume needs them.
    from shared.db.repositories import outbound_dirty, sync_queue
    from shared.outbound.receive import FLUSH_KIND
    from shared.reconcile.run import recover_stale
    from shared.retry import submit_item_task
    from shared.tasks import Task, task_name

    stamp = time.time_ns()
    now = engine.now()
    with engine.database.transaction() as tx:
        events = int(
            tx.fetch_value(
                "SELECT count(*) FROM accounts.hubspot_webhook_events WHERE processed IS NOT TRUE"
            )
        )
        customers = outbound_dirty.pending_count(tx)
        queued = sync_queue.list_items(tx, statuses=("QUEUED",), limit=DRAIN_QUEUE_ROWS)
    if events:
        payload = {"received_before": now.isoformat(), "limit": DRAIN_EVENTS}
        engine.dispatcher.submit(
            Task("inbound_batch", payload, name=task_name("inbound_batch", "resume", stamp))
        )
    if customers:
        engine.dispatcher.submit(Task(FLUSH_KIND, {}, name=task_name(FLUSH_KIND, "resume", stamp)))
    for row in reversed(queued):  # oldest first
        due = row["scheduled_for"]
        delay = max(0.0, (due - now).total_seconds()) if due is not None else 0.0
        submit_item_task(engine, row, delay_seconds=delay, attempt=f"resume-{stamp}")
    runs: dict[str, str] = {}
    if paused_for_seconds is not None:
        runs = recover_stale(engine, silent_for_seconds=paused_for_seconds)
    return Drained(events, customers, len(queued), sum(a == "resumed" for a in runs.values()))
