"""The pause switch: while paused nothing is written to WARP or HubSpot.

Operators pause before a HubSpot portal migration, a WARP data fix or an incident
(``POST /v1/sync/pause``, ``hubspot-sync pause``). The state is one row in
``accounts.hubspot_sync_pause``, so every instance of every function sees it.

What still happens while paused: webhook deliveries are verified, stored and
deduplicated; change messages are validated, deduplicated and marked dirty; failed
work stays in the queue. What does not: applying stored events, flushing dirty
customers, running queued work or reconcile continuations (every task of a writing
kind answers DONE without running and is kept in ``hubspot_sync_held_tasks``), and
the API's writing routes (409). :func:`check` is the one gate, called where work
starts, not inside it, so a flow that began before the pause finishes as it would
have.

:func:`resume` clears the row and drains what waited, in order: the stored webhook
events oldest first (one sweep task), the dirty customers (a flush), the queued rows
(their tasks again), then the held tasks (a reconcile run's continuation is carried
by nothing else). Each of these is safe to run twice: a flush, a claim of a queue row,
a continuation whose run moved on, each finds nothing left to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db import Database, Session
from shared.db.repositories._json import to_json
from shared.engine.deps import Engine
from shared.errors import SyncError

log = logging.getLogger("warp_hubspot_sync.pause")

TABLE = "accounts.hubspot_sync_pause"
HELD = "accounts.hubspot_sync_held_tasks"
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
    held_tasks: int  # tasks that arrived while paused, submitted again


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


def hold(engine: Engine, kind: str, payload: Mapping[str, Any]) -> bool:
    """Keep a task that arrived while paused, for the resume; False when not paused.

    The check and the insert are one statement, so a task racing a resume either
    runs or is held, never lost.
    """
    with engine.database.transaction() as tx:
        held = tx.execute(
            f"INSERT INTO {HELD} (kind, payload) SELECT :kind, CAST(:payload AS jsonb) "
            f"WHERE EXISTS (SELECT 1 FROM {TABLE})",
            {"kind": kind, "payload": to_json(dict(payload))},
        )
    return bool(held)


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
        was_paused = bool(tx.execute(f"DELETE FROM {TABLE}"))
    drained = drain(engine)
    log.warning(
        "sync resumed" if was_paused else "resume while not paused: waiting work handed on",
        extra={"fields": {"by": by, **drained.__dict__}},
    )
    return was_paused, drained


def drain(engine: Engine) -> Drained:
    """Hand every piece of work that waited to the workers, oldest webhook events first."""
    # Imported here: the flows' modules are heavy, and only a resume needs them.
    from shared.db.repositories import outbound_dirty, sync_queue
    from shared.outbound.receive import FLUSH_KIND
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
        held = tx.fetch(f"DELETE FROM {HELD} RETURNING id, kind, payload")
    if events:
        payload = {"received_before": now.isoformat(), "limit": DRAIN_EVENTS}
        engine.submit(
            Task("inbound_batch", payload, name=task_name("inbound_batch", "resume", stamp))
        )
    if customers:
        engine.submit(Task(FLUSH_KIND, {}, name=task_name(FLUSH_KIND, "resume", stamp)))
    for row in reversed(queued):  # oldest first
        due = row["scheduled_for"]
        delay = max(0.0, (due - now).total_seconds()) if due is not None else 0.0
        submit_item_task(engine, row, delay_seconds=delay, attempt=f"resume-{stamp}")
    for task in sorted(held, key=lambda r: int(r["id"])):
        name = task_name("held", task["id"], stamp)
        engine.submit(Task(task["kind"], task["payload"] or {}, name=name))
    return Drained(events, customers, len(queued), len(held))
