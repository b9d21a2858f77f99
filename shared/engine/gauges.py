"""Point-in-time readings logged for the log-based metrics (queue backlog, HubSpot budget).

Cloud Monitoring's backlog and budget alerts read ``event="gauge"`` log lines
(``terraform/monitoring.tf``); nothing else would tell them. The retry worker and
the reconciler emit them, at most once a minute per instance, so the readings
keep coming while work flows and cost one short query when they do.
"""

from __future__ import annotations

import threading
import time

from shared.db.repositories import sync_queue
from shared.engine.deps import Engine
from shared.hubspot.ratelimit import daily_budget_used
from shared.observability import BUDGET_USED_METRIC, QUEUE_DEPTH_METRIC, log_gauge

INTERVAL_SECONDS = 60.0
# Work waiting or dead-lettered: what the backlog alert is about.
BACKLOG_STATUSES = ("QUEUED", "PROCESSING", "FAILED")

_last = float("-inf")
_lock = threading.Lock()


def emit_gauges(engine: Engine, *, force: bool = False) -> bool:
    """Log the queue backlog and budget readings unless this instance did within a minute."""
    global _last
    with _lock:
        now = time.monotonic()
        if not force and now - _last < INTERVAL_SECONDS:
            return False
        _last = now
    with engine.database.transaction() as tx:
        depth = sync_queue.depth(tx)
        budget = daily_budget_used(tx)
    log_gauge(QUEUE_DEPTH_METRIC, sum(depth.get(s, 0) for s in BACKLOG_STATUSES))
    log_gauge(BUDGET_USED_METRIC, round(max(budget.values(), default=0.0), 4))
    return True
