"""Is the system quiet? What work is still pending, and waiting until none is.

The one answer the demo's story, the convergence test and the benchmarks share: work
is judged by the tables (customers waiting for a flush, open queue items, unprocessed
webhook events), not by the task runner, because flows also schedule safety-net tasks
minutes ahead that are not work waiting to be done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from shared.capture.watch import CHANGES
from shared.db import Database
from shared.db.repositories import outbound_dirty
from shared.engine.deps import Engine
from shared.tasks import InProcessDispatcher

OPEN = ("QUEUED", "PROCESSING")
OUTBOUND_KINDS = ("outbound",)


@dataclass(frozen=True)
class Backlog:
    """Pending work as the tables show it."""

    dirty: int  # customers waiting for a flush
    captured: int  # changes the capture trigger recorded, not swept yet
    queued: dict[str, int]  # open work-queue items by kind
    unprocessed_events: int  # stored webhook events not yet processed
    event_errors: tuple[str, ...]  # a few distinct processing errors of those events

    @property
    def outbound(self) -> dict[str, int]:
        """Customers waiting for a flush, and outbound queue rows waiting for a retry."""
        queued = sum(n for kind, n in self.queued.items() if kind in OUTBOUND_KINDS)
        return {"dirty": self.dirty, "queued": queued}

    @property
    def quiet(self) -> bool:
        return (
            not self.dirty
            and not self.captured
            and not sum(self.queued.values())
            and not self.unprocessed_events
        )

    def describe(self) -> list[str]:
        """One phrase per kind of pending work; empty when quiet."""
        waiting = []
        if self.dirty:
            waiting.append(f"{self.dirty} customers to push")
        if self.captured:
            waiting.append(f"{self.captured} captured changes to sweep")
        if open_items := sum(self.queued.values()):
            waiting.append(f"{open_items} queue items open {dict(self.queued)}")
        if self.unprocessed_events:
            errors = list(self.event_errors)[:2]
            waiting.append(f"{self.unprocessed_events} webhook events unprocessed {errors}")
        return waiting


def read_backlog(database: Database) -> Backlog:
    """The pending work now, read in one transaction."""
    with database.transaction() as tx:
        dirty = outbound_dirty.pending_count(tx)
        captured = int(tx.fetch_value(f"SELECT count(*) FROM {CHANGES}"))
        queued = tx.fetch(
            "SELECT kind, count(*) AS n FROM accounts.hubspot_sync_queue "
            "WHERE status = ANY(:open) GROUP BY kind",
            {"open": list(OPEN)},
        )
        events = tx.fetch(
            "SELECT count(*) AS n, array_agg(DISTINCT left(processing_error, 120)) "
            "FILTER (WHERE processing_error IS NOT NULL) AS errors "
            "FROM accounts.hubspot_webhook_events WHERE processed IS NOT TRUE"
        )[0]
    return Backlog(
        dirty=dirty,
        captured=captured,
        queued={str(r["kind"]): int(r["n"]) for r in queued},
        unprocessed_events=int(events["n"]),
        event_errors=tuple(sorted(events["errors"] or ())),
    )


def outbound_backlog(engine: Engine) -> dict[str, int]:
    """Customers waiting for a flush, and outbound queue rows waiting for a retry."""
    return read_backlog(engine.database).outbound


def wait_drained(engine: Engine, timeout: float = 60.0, *, poll: float = 0.05) -> bool:
    """Block until no customer is dirty, no captured change waits and no outbound retry
    is pending; False on timeout. Captured changes leave only through a sweep.

    With the in-process task runner it also waits for its tasks to finish; with
    Cloud Tasks a flush already running is not visible here (its customers have
    left the dirty set). FAILED rows do not count: they wait for a person.
    """
    deadline = time.monotonic() + timeout
    dispatcher = engine.dispatcher
    while True:
        if isinstance(dispatcher, InProcessDispatcher):
            dispatcher.wait_idle(max(0.0, deadline - time.monotonic()))
        backlog = read_backlog(engine.database)
        idle = not isinstance(dispatcher, InProcessDispatcher) or dispatcher.pending() == 0
        if not any(backlog.outbound.values()) and not backlog.captured and idle:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)  # the backlog lives in the database: poll it until the deadline
