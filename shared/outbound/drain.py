"""Waiting until outbound work has run out (the demo, the bench and tests)."""

from __future__ import annotations

import time

from shared.db.repositories import outbound_dirty, sync_queue
from shared.engine.deps import Engine
from shared.tasks import InProcessDispatcher

QUEUE_KINDS = ("outbound",)


def outbound_backlog(engine: Engine) -> dict[str, int]:
    """Customers waiting for a flush, and outbound queue rows waiting for a retry."""
    with engine.database.transaction() as tx:
        dirty = outbound_dirty.pending_count(tx)
        waiting = sync_queue.list_items(tx, statuses=("QUEUED", "PROCESSING"), limit=10_000)
    return {"dirty": dirty, "queued": sum(1 for r in waiting if r["kind"] in QUEUE_KINDS)}


def wait_drained(engine: Engine, timeout: float = 60.0, *, poll: float = 0.05) -> bool:
    """Block until no customer is dirty and no outbound retry is pending; False on timeout.

    With the in-process task runner it also waits for its tasks to finish; with
    Cloud Tasks a flush already running is not visible here (its customers have
    left the dirty set). FAILED rows do not count: they wait for a person.
    """
    deadline = time.monotonic() + timeout
    dispatcher = engine.dispatcher
    while True:
        if isinstance(dispatcher, InProcessDispatcher):
            dispatcher.wait_idle(max(0.0, deadline - time.monotonic()))
        backlog = outbound_backlog(engine)
        idle = not isinstance(dispatcher, InProcessDispatcher) or dispatcher.pending() == 0
        if not backlog["dirty"] and not backlog["queued"] and idle:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)  # the backlog lives in the database: poll it until the deadline
