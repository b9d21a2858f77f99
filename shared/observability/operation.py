"""The one log line per sync operation that the log-based metrics are built from.

Terraform (``terraform/monitoring.tf``) extracts its metrics from these ``jsonPayload``
fields; renaming any of them is a change to both places:

``event="sync_operation"``
    ``entity_type``, ``entity_id``, ``direction`` (WARP_TO_HUBSPOT | HUBSPOT_TO_WARP |
    BIDIRECTIONAL), ``operation`` (CREATE, UPDATE, ...), ``outcome`` (success | failed |
    conflict | skipped), ``duration_ms`` and ``duration_seconds``, ``fields`` (names
    only, never values), ``conflicts`` ([{field, resolution, kind}]), ``conflict_count``, and
    on failure ``error_type`` and ``retryable``.
``event="sync_conflict"``
    one line per conflicting field: ``entity_type``, ``entity_id``, ``direction``,
    ``field``, ``resolution`` (the rule that decided it, or MANUAL), ``kind`` (``edited``
    or ``first_sync``: sides that differed when first linked). A log-based metric
    labels by one value per entry, so conflicts get their own lines.
``event="gauge"``
    ``metric`` and ``reading`` plus labels: point-in-time readings such as
    ``hubspot_sync_queue_depth`` and ``hubspot_budget_used``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from shared.errors import Retry, retry_verdict

EVENT_SYNC_OPERATION: Final = "sync_operation"
EVENT_SYNC_CONFLICT: Final = "sync_conflict"
EVENT_GAUGE: Final = "gauge"

OUTCOMES: Final = frozenset({"success", "failed", "conflict", "skipped"})
DIRECTIONS: Final = frozenset({"WARP_TO_HUBSPOT", "HUBSPOT_TO_WARP", "BIDIRECTIONAL"})
# A conflict left for a person makes the operation's outcome "conflict".
MANUAL_RESOLUTION: Final = "MANUAL"

# Gauge names the Terraform dashboard and alerts read.
QUEUE_DEPTH_METRIC: Final = "hubspot_sync_queue_depth"
BUDGET_USED_METRIC: Final = "hubspot_budget_used"

_log = logging.getLogger("warp_hubspot_sync.sync")


@dataclass(frozen=True)
class Conflict:
    """A field both sides changed, and the rule that settled it (or MANUAL).

    ``kind`` tells edits on both sides (``edited``) from sides that merely differed when
    first linked (``first_sync``): nobody wants to be paged for a backfill.
    """

    field: str
    resolution: str
    kind: str = "edited"


def _check(value: str, allowed: frozenset[str], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {sorted(allowed)}, not {value!r}")
    return value


def log_operation(
    *,
    entity_type: str,
    direction: str,
    operation: str,
    entity_id: object,
    outcome: str,
    duration_ms: float,
    fields: Iterable[str] = (),
    conflicts: Iterable[Conflict] = (),
    error: BaseException | None = None,
    logger: logging.Logger | None = None,
    **extra: Any,
) -> None:
    """Emit the ``sync_operation`` line and one ``sync_conflict`` line per conflict.

    Severity: INFO, WARNING for a retryable failure, ERROR for a permanent one.
    ``extra`` adds ids (``hubspot_object_id``, ``reason``), never values: it passes
    through the same redaction as every field.
    """
    _check(direction, DIRECTIONS, "direction")
    _check(outcome, OUTCOMES, "outcome")
    target = logger or _log
    conflict_list = list(conflicts)
    line: dict[str, Any] = {
        "event": EVENT_SYNC_OPERATION,
        "entity_type": entity_type,
        "entity_id": str(entity_id),
        "direction": direction,
        "operation": operation,
        "outcome": outcome,
        "duration_ms": round(duration_ms, 3),
        "duration_seconds": round(duration_ms / 1000.0, 6),
        "fields": sorted(set(fields)),
        "conflicts": [
            {"field": c.field, "resolution": c.resolution, "kind": c.kind} for c in conflict_list
        ],
        "conflict_count": len(conflict_list),
        **extra,
    }
    level = logging.INFO
    if error is not None:
        retryable = retry_verdict(error) is Retry.HELPS
        line["error_type"] = type(error).__name__
        line["retryable"] = retryable
        level = logging.WARNING if retryable else logging.ERROR
    elif outcome == "failed":
        level = logging.ERROR
    target.log(
        level,
        "sync %s %s %s: %s",
        direction,
        entity_type,
        operation,
        outcome,
        extra={"fields": line},
    )
    for conflict in conflict_list:
        target.info(
            "sync conflict on %s.%s: %s",
            entity_type,
            conflict.field,
            conflict.resolution,
            extra={
                "fields": {
                    "event": EVENT_SYNC_CONFLICT,
                    "entity_type": entity_type,
                    "entity_id": str(entity_id),
                    "direction": direction,
                    "field": conflict.field,
                    "resolution": conflict.resolution,
                    "kind": conflict.kind,
                }
            },
        )


@dataclass
class SyncOperation:
    """What the body of :func:`sync_operation` reports while it runs."""

    fields: set[str] = field(default_factory=set)
    conflicts: list[Conflict] = field(default_factory=list)
    outcome: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def add_fields(self, *names: str) -> None:
        """Record the names of fields this operation touched."""
        self.fields.update(names)

    def add_conflict(self, field_name: str, resolution: str) -> None:
        """Record a conflict; a MANUAL one makes the outcome ``conflict``."""
        self.conflicts.append(Conflict(field_name, resolution))

    def skip(self, reason: str) -> None:
        """Mark the operation as skipped (echo, stale event, nothing mapped) and why."""
        self.outcome = "skipped"
        self.extra["reason"] = reason

    def final_outcome(self) -> str:
        """The explicit outcome, else ``conflict`` if one waits for a person, else success."""
        if self.outcome is not None:
            return self.outcome
        if any(c.resolution == MANUAL_RESOLUTION for c in self.conflicts):
            return "conflict"
        return "success"


@contextmanager
def sync_operation(
    entity_type: str,
    direction: str,
    operation: str,
    entity_id: object,
    *,
    logger: logging.Logger | None = None,
    **extra: Any,
) -> Iterator[SyncOperation]:
    """Time the block and log it as one sync operation when it ends.

    An exception marks the outcome ``failed`` (with ``error_type`` and ``retryable``)
    and propagates unchanged::

        with sync_operation("customer", "WARP_TO_HUBSPOT", "UPDATE", customer_id) as op:
            op.add_fields("name", "domain")
    """
    _check(direction, DIRECTIONS, "direction")
    op = SyncOperation(extra=dict(extra))
    started = time.perf_counter()
    try:
        yield op
    except Exception as exc:
        _emit(op, entity_type, direction, operation, entity_id, started, logger, exc)
        raise
    _emit(op, entity_type, direction, operation, entity_id, started, logger, None)


def _emit(
    op: SyncOperation,
    entity_type: str,
    direction: str,
    operation: str,
    entity_id: object,
    started: float,
    logger: logging.Logger | None,
    error: Exception | None,
) -> None:
    log_operation(
        entity_type=entity_type,
        direction=direction,
        operation=operation,
        entity_id=entity_id,
        outcome="failed" if error is not None else op.final_outcome(),
        duration_ms=(time.perf_counter() - started) * 1000.0,
        fields=op.fields,
        conflicts=op.conflicts,
        error=error,
        logger=logger,
        **op.extra,
    )


def log_gauge(
    metric: str, value: float, *, logger: logging.Logger | None = None, **labels: Any
) -> None:
    """Emit one ``event="gauge"`` reading (e.g. the queue depth) for log-based metrics."""
    (logger or _log).info(
        "%s=%s",
        metric,
        value,
        extra={"fields": {"event": EVENT_GAUGE, "metric": metric, "reading": value, **labels}},
    )
