"""``/metrics``: Prometheus text computed from the database on each scrape.

Every instance answers the same numbers, because they come from the shared
tables, not from process memory; each scrape builds a fresh ``CollectorRegistry``
so nothing is carried from one scrape (or one test) to the next.

Metrics (names are what WARP's Prometheus rules use):

- ``hubspot_sync_duration_seconds{entity_type,direction,status}``: a histogram of the
  sync log's operations, from each row's ``started_at`` to its ``completed_at``
  (``rate(_sum[5m]) / rate(_count[5m])`` is the mean duration);
- ``hubspot_sync_conflicts_total{entity_type,field_name,resolution,kind}``: fields whose
  rule settled (or MANUAL held) a conflict, counted once each; ``kind`` is ``edited``
  (both sides changed) or ``first_sync`` (the sides differed when first linked: a
  backfill, not something to page about);
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
  24 hours over its daily budget (``shared/hubspot/ratelimit.py``);
- ``hubspot_sync_inbound_failed_events``: HubSpot edits that could not be applied to
  WARP (stored webhook events closed with an error; each also has a FAILED queue row
  of kind ``inbound_batch`` to replay);
- ``hubspot_sync_paused``: 1 while the sync is paused (``shared/pause.py``), else 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shared import pause
from shared.db import Database, Session
from shared.db.repositories import field_state, outbound_dirty, sync_queue
from shared.hubspot.ratelimit import daily_budget_used
from shared.inbound.events import INVALID_EVENT_TYPE

QUEUE_STATUSES = ("QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED")
DIRECTIONS = ("WARP_TO_HUBSPOT", "HUBSPOT_TO_WARP", "BIDIRECTIONAL")
# Upper bounds (seconds) of the duration histogram: a one-record flush takes tens of
# milliseconds, a batch of 100 a second or two, a retried one up to minutes.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True)
class Durations:
    """One label set of the duration histogram: cumulative bucket counts, sum, count."""

    buckets: tuple[int, ...]
    total_seconds: float
    count: int


@dataclass
class Snapshot:
    """The numbers of one scrape, read in one transaction."""

    queue_depth: dict[str, int] = field(default_factory=dict)
    durations: dict[tuple[str, str, str], Durations] = field(default_factory=dict)
    conflicts_total: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    conflicts_open: int = 0
    operations_total: dict[tuple[str, str], int] = field(default_factory=dict)
    operations_last_hour: dict[tuple[str, str], int] = field(default_factory=dict)
    webhook_backlog: int = 0
    webhook_oldest_age_seconds: float = 0.0
    webhook_invalid_events: int = 0
    outbound_pending: int = 0
    last_reconcile: dict[str, float] = field(default_factory=dict)
    daily_budget_used: dict[str, float] = field(default_factory=dict)
    inbound_failed: int = 0
    paused: bool = False


def read_snapshot(database: Database) -> Snapshot:
    """Read every metric's value from the database (one short read-only transaction)."""
    snap = Snapshot()
    with database.transaction() as tx:
        snap.queue_depth = sync_queue.depth(tx)
        snap.durations = _durations(tx)
        snap.conflicts_total = _conflicts(tx)
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
        snap.inbound_failed = int(
            tx.fetch_value(
                "SELECT count(*) FROM accounts.hubspot_webhook_events "
                "WHERE processed IS TRUE AND processing_error IS NOT NULL"
            )
        )
        snap.paused = pause.read(tx).paused
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


# One count per bucket in a single scan; the bounds are this module's constants.
_BUCKET_COUNTS = ", ".join(f"count(*) FILTER (WHERE d <= {b})" for b in DURATION_BUCKETS)


def _durations(tx: Session) -> dict[tuple[str, str, str], Durations]:
    rows = tx.fetch(
        f"SELECT entity_type, direction, status, count(*) AS n, COALESCE(sum(d), 0) AS total, "
        f"ARRAY[{_BUCKET_COUNTS}] AS buckets FROM ("
        "SELECT entity_type, direction, status, "
        "GREATEST(extract(epoch FROM completed_at - started_at), 0) AS d "
        "FROM accounts.hubspot_sync_log WHERE completed_at IS NOT NULL) AS l "
        "GROUP BY entity_type, direction, status"
    )
    return {
        (str(r["entity_type"]), str(r["direction"]), str(r["status"])): Durations(
            tuple(int(n) for n in r["buckets"]), float(r["total"]), int(r["n"])
        )
        for r in rows
    }


def _conflicts(tx: Session) -> dict[tuple[str, str, str, str], int]:
    # The sync log marks each field a rule settled with its rule and kind
    # (shared/engine/record.py); rows WARP's own code wrote may hold any JSON.
    rows = tx.fetch(
        "SELECT l.entity_type, c.key AS field_name, c.value->>'resolution' AS resolution, "
        "COALESCE(c.value->>'conflict_kind', 'edited') AS kind, count(*) AS n "
        "FROM accounts.hubspot_sync_log AS l CROSS JOIN LATERAL jsonb_each(CASE WHEN "
        "jsonb_typeof(l.field_changes) = 'object' THEN l.field_changes ELSE '{}' END) AS c "
        "WHERE jsonb_typeof(c.value) = 'object' AND c.value ? 'resolution' "
        "GROUP BY 1, 2, 3, 4"
    )
    return {
        (str(r["entity_type"]), str(r["field_name"]), str(r["resolution"]), str(r["kind"])): int(
            r["n"]
        )
        for r in rows
    }


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
        durations = HistogramMetricFamily(
            "hubspot_sync_duration_seconds",
            "Duration of sync operations",
            labels=["entity_type", "direction", "status"],
        )
        for labels, d in sorted(s.durations.items()):
            bounds = [*(str(b) for b in DURATION_BUCKETS), "+Inf"]
            durations.add_metric(
                list(labels), list(zip(bounds, [*d.buckets, d.count], strict=True)), d.total_seconds
            )
        yield durations
        conflicts = CounterMetricFamily(
            "hubspot_sync_conflicts",
            "Conflicts settled by a rule or held for a person, by field",
            labels=["entity_type", "field_name", "resolution", "kind"],
        )
        for conflict_labels, n in sorted(s.conflicts_total.items()):
            conflicts.add_metric(list(conflict_labels), n)
        yield conflicts
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
        yield GaugeMetricFamily(
            "hubspot_sync_inbound_failed_events",
            "HubSpot edits that could not be applied to WARP (replayable from the queue)",
            value=s.inbound_failed,
        )
        yield GaugeMetricFamily(
            "hubspot_sync_paused",
            "1 while the sync is paused: nothing is written to WARP or HubSpot",
            value=int(s.paused),
        )


def _add_pairs(family: Metric, values: dict[tuple[str, str], int]) -> None:
    pairs: Iterable[tuple[str, str]] = sorted(values)
    for direction, status in pairs:
        family.add_metric([direction, status], values[(direction, status)])  # type: ignore[attr-defined]


def render(snap: Snapshot) -> bytes:
    """The snapshot in Prometheus text format, through a registry made for this scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snap))
    return generate_latest(registry)
