"""``/metrics``: Prometheus text computed from the database on each scrape.

Every instance answers the same numbers, because they come from the shared
tables, not from process memory; each scrape builds a fresh ``CollectorRegistry``
so nothing is carried from one scrape (or one test) to the next.

Metrics (names are what WARP's Prometheus rules use):

- ``hubspot_sync_queue_depth{status}``: rows of ``hubspot_sync_queue`` by status;
- ``hubspot_sync_conflicts_open``: fields waiting for ``resolve-conflict``;
- ``hubspot_sync_operations_total{direction,status}``: sync-log rows ever written (a
  counter: use ``rate()``; it drops only if old log rows are deleted, which
  Prometheus treats as a reset);
- ``hubspot_sync_operations_last_hour{direction,status}`` and
  ``hubspot_sync_failures_last_hour{direction}``: the same over the last hour;
- ``hubspot_sync_webhook_backlog``: stored webhook events not processed yet, and
  ``hubspot_sync_webhook_oldest_unprocessed_age_seconds``;
- ``hubspot_sync_webhook_invalid_events_total``: webhook events refused one by one as
  invalid (stored with their reason, never applied; a counter, like the operations);
- ``hubspot_sync_outbound_pending``: customers changed in WARP waiting to be pushed;
- ``hubspot_sync_last_reconcile_timestamp_seconds{run_type}``: when the last
  completed run of each type finished;
- ``hubspot_api_daily_budget_used_ratio{limiter}``: requests in the limiter's rolling
  24 hours over its daily budget (``shared/hubspot/ratelimit.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.db import Database, Session
from shared.db.repositories import field_state, outbound_dirty, sync_queue
from shared.hubspot.ratelimit import daily_budget_used
from shared.inbound.events import INVALID_EVENT_TYPE

QUEUE_STATUSES = ("QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED")
DIRECTIONS = ("WARP_TO_HUBSPOT", "HUBSPOT_TO_WARP", "BIDIRECTIONAL")


@dataclass
class Snapshot:
    """The numbers of one scrape, read in one transaction."""

    queue_depth: dict[str, int] = field(default_factory=dict)
    conflicts_open: int = 0
    operations_total: dict[tuple[str, str], int] = field(default_factory=dict)
    operations_last_hour: dict[tuple[str, str], int] = field(default_factory=dict)
    webhook_backlog: int = 0
    webhook_oldest_age_seconds: float = 0.0
    webhook_invalid_events: int = 0
    outbound_pending: int = 0
    last_reconcile: dict[str, float] = field(default_factory=dict)
    daily_budget_used: dict[str, float] = field(default_factory=dict)


def read_snapshot(database: Database) -> Snapshot:
    """Read every metric's value from the database (one short read-only transaction)."""
    snap = Snapshot()
    with database.transaction() as tx:
        snap.queue_depth = sync_queue.depth(tx)
        snap.conflicts_open = field_state.count_open_conflicts(tx)
        snap.operations_total = _operations(tx, since_hours=None)
        snap.operations_last_hour = _operations(tx, since_hours=1)
        backlog = tx.fetch_one(
            "SELECT count(*) AS n, "
            "COALESCE(extract(epoch FROM NOW() - min(received_at)), 0) AS age "
            "FROM accounts.hubspot_webhook_events WHERE processed IS NOT TRUE"
        )
        assert backlog is not None
        snap.webhook_backlog = int(backlog["n"])
        snap.webhook_oldest_age_seconds = float(backlog["age"])
        # The literal matches the partial index idx_webhook_events_invalid.
        snap.webhook_invalid_events = int(
            tx.fetch_value(
                "SELECT count(*) FROM accounts.hubspot_webhook_events "
                f"WHERE event_type = '{INVALID_EVENT_TYPE}'"
            )
        )
        snap.outbound_pending = outbound_dirty.pending_count(tx)
        snap.last_reconcile = {
            r["run_type"]: float(r["at"])
            for r in tx.fetch(
                "SELECT run_type, extract(epoch FROM max(completed_at)) AS at "
                "FROM accounts.hubspot_reconciliation_runs "
                "WHERE status = 'COMPLETED' AND completed_at IS NOT NULL GROUP BY run_type"
            )
        }
        snap.daily_budget_used = daily_budget_used(tx)
    return snap


def _operations(tx: Session, *, since_hours: int | None) -> dict[tuple[str, str], int]:
    condition = ""
    params: dict[str, object] = {}
    if since_hours is not None:
        condition = " WHERE started_at >= NOW() - make_interval(hours => :hours)"
        params["hours"] = since_hours
    rows = tx.fetch(
        "SELECT direction, status, count(*) AS n FROM accounts.hubspot_sync_log"
        f"{condition} GROUP BY direction, status",
        params,
    )
    return {(r["direction"], r["status"]): int(r["n"]) for r in rows}


class _SnapshotCollector(Collector):
    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap

    def collect(self) -> Iterator[Metric]:
        s = self._snap
        depth = GaugeMetricFamily(
            "hubspot_sync_queue_depth", "Sync queue rows by status", labels=["status"]
        )
        for status in sorted(set(QUEUE_STATUSES) | set(s.queue_depth)):
            depth.add_metric([status], s.queue_depth.get(status, 0))
        yield depth
        yield GaugeMetricFamily(
            "hubspot_sync_conflicts_open",
            "Fields in conflict waiting for resolve-conflict",
            value=s.conflicts_open,
        )
        total = CounterMetricFamily(
            "hubspot_sync_operations",
            "Sync operations recorded in the sync log",
            labels=["direction", "status"],
        )
        _add_pairs(total, s.operations_total)
        yield total
        hour = GaugeMetricFamily(
            "hubspot_sync_operations_last_hour",
            "Sync operations started in the last hour",
            labels=["direction", "status"],
        )
        _add_pairs(hour, s.operations_last_hour)
        yield hour
        failures = GaugeMetricFamily(
            "hubspot_sync_failures_last_hour",
            "Failed sync operations started in the last hour",
            labels=["direction"],
        )
        for direction in DIRECTIONS:
            failures.add_metric([direction], s.operations_last_hour.get((direction, "FAILED"), 0))
        yield failures
        yield GaugeMetricFamily(
            "hubspot_sync_webhook_backlog",
            "Stored webhook events not processed yet",
            value=s.webhook_backlog,
        )
        yield GaugeMetricFamily(
            "hubspot_sync_webhook_oldest_unprocessed_age_seconds",
            "Age of the oldest unprocessed webhook event (0 without one)",
            value=s.webhook_oldest_age_seconds,
        )
        yield CounterMetricFamily(
            "hubspot_sync_webhook_invalid_events",
            "Webhook events refused one by one as invalid (stored with their reason)",
            value=s.webhook_invalid_events,
        )
        yield GaugeMetricFamily(
            "hubspot_sync_outbound_pending",
            "Customers changed in WARP not pushed to HubSpot yet",
            value=s.outbound_pending,
        )
        last = GaugeMetricFamily(
            "hubspot_sync_last_reconcile_timestamp_seconds",
            "When the last completed reconciliation run of each type finished (Unix time)",
            labels=["run_type"],
        )
        for run_type, at in sorted(s.last_reconcile.items()):
            last.add_metric([run_type], at)
        yield last
        budget = GaugeMetricFamily(
            "hubspot_api_daily_budget_used_ratio",
            "HubSpot requests in the rolling 24 hours over the daily budget",
            labels=["limiter"],
        )
        for key, ratio in sorted(s.daily_budget_used.items()):
            budget.add_metric([key], ratio)
        yield budget


def _add_pairs(family: Metric, values: dict[tuple[str, str], int]) -> None:
    pairs: Iterable[tuple[str, str]] = sorted(values)
    for direction, status in pairs:
        family.add_metric([direction, status], values[(direction, status)])  # type: ignore[attr-defined]


def render(snap: Snapshot) -> bytes:
    """The snapshot in Prometheus text format, through a registry made for this scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snap))
    return generate_latest(registry)
