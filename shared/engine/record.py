"""Recording a carried-out plan: WARP's columns, field states, the sync log, sync stamps.

Everything here runs inside the caller's transaction, so a plan's WARP writes and
the state that says they happened commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.conflicts import Action, ConflictKind, FieldState
from shared.db import Database, Session
from shared.db.repositories import customers, field_state, sync_log
from shared.engine.plan import FieldResult, Plan
from shared.mapping import Direction, EntityType, MappingSet
from shared.observability import Conflict, log_operation
from shared.sealing import Sealer


def states_by_field(
    states: Iterable[Sequence[Any]], captured: Mapping[str, datetime] | None = None
) -> dict[str, FieldState]:
    """Field states as :func:`field_state.decision_states` reads them, keyed by field name.

    Each state is unpacked by position (``field_state.DECISION_COLUMNS``), not looked
    up by name: a reconciliation of 10,000 customers builds 90,000 of them.
    ``captured``: WARP changes not swept yet (:func:`shared.capture.pending.field_times`);
    a field's WARP change time is the newer of its recorded one and these.
    """
    found = {}
    for (
        name,
        warp_value,
        hubspot_value,
        pending,
        synced_at,
        direction,
        modified_warp,
        modified_hubspot,
        in_conflict,
        warp_changed_at,
    ) in states:
        if captured and (at := captured.get(name)) is not None:
            warp_changed_at = at if warp_changed_at is None else max(at, warp_changed_at)
        found[name] = FieldState(
            warp_value,
            hubspot_value,
            synced_at,
            Direction(direction) if direction else None,
            modified_warp,
            modified_hubspot,
            is_in_conflict=bool(in_conflict),
            hubspot_pending=pending,
            recorded=synced_at is not None or bool(in_conflict),
            warp_changed_at=warp_changed_at,
        )
    return found


def state_rows(
    plan: Plan,
    mappings: MappingSet,
    *,
    entity_type: EntityType,
    customer_id: str,
    previous: Mapping[str, FieldState],
    now: datetime,
    read_hubspot: bool = True,
) -> list[dict[str, Any]]:
    """The ``hubspot_field_state`` rows to upsert for ``plan``.

    ``read_hubspot``: the plan was made from HubSpot's current values (a read), which
    settle any write-ahead value of a field (:func:`shared.conflicts.lost_write`). A
    webhook's plan was not, and leaves it: a write that landed and was never recorded
    is still known as ours afterwards.
    """
    rows = []
    for name, state in plan.states.items():
        mapping = mappings.fields[name]
        before = previous.get(name)
        row: dict[str, Any] = {
            "entity_type": entity_type.value,
            "entity_id": customer_id,
            "hubspot_object_id": plan.object_id,
            "field_name": name,
            "field_path": mapping.warp_field,
            "warp_value": state.warp_value,
            "hubspot_value": state.hubspot_value,
            "last_synced_at": state.last_synced_at,
            "last_synced_direction": (
                state.last_synced_direction.value if state.last_synced_direction else None
            ),
            "last_modified_at_warp": state.last_modified_at_warp,
            "last_modified_at_hubspot": state.last_modified_at_hubspot,
            "sync_direction": mapping.direction.value,
            "conflict_resolution": mapping.rule.value,
            "is_in_conflict": state.is_in_conflict,
        }
        if read_hubspot:  # recorded from HubSpot's value: any write-ahead record is settled
            row["hubspot_pending_value"] = row["hubspot_pending_at"] = None
        if state.is_in_conflict and not (before and before.is_in_conflict):
            row["conflict_detected_at"] = now
        if before and before.is_in_conflict and not state.is_in_conflict:
            row["conflict_resolved_at"] = now
        rows.append(row)
    return rows


def record_pending_writes(
    database: Database,
    entity_type: EntityType,
    writes: Iterable[tuple[str, Plan]],
    *,
    now: datetime,
) -> None:
    """Commit, before calling HubSpot, the values about to be written there.

    HubSpot's write and our record of it cannot share a transaction. If the call
    succeeds and the recording transaction then fails (the process dies, the
    database connection drops), the next sync would see HubSpot "changed" and,
    under a HubSpot-wins rule, write our own older value back over a newer WARP
    edit. This write-ahead record, committed in its own short transaction and
    cleared when the field state is recorded, tells it the value is ours.
    """
    rows = [
        {
            "entity_type": entity_type.value,
            "entity_id": customer_id,
            "field_name": result.field,
            "hubspot_object_id": plan.object_id,
            "hubspot_pending_value": result.decision.value,
            "hubspot_pending_at": now,
        }
        for customer_id, plan in writes
        for result in plan.results
        if result.applied and result.action is Action.WRITE_HUBSPOT
    ]
    if rows:
        with database.transaction() as tx:
            field_state.upsert_many(tx, rows)


def field_changes(results: Iterable[FieldResult]) -> dict[str, dict[str, Any]]:
    """The sync log's ``{field: {old, new, source, reason}}`` for the fields that were written."""
    changes: dict[str, dict[str, Any]] = {}
    for result in results:
        if not result.applied:
            continue
        if result.action is Action.WRITE_HUBSPOT:
            changes[result.field] = {
                "old": result.hubspot_before,
                "new": result.decision.value,
                "source": "warp",
                "reason": result.decision.reason,  # the change feed's "why"
            }
        elif result.action is Action.WRITE_WARP:
            changes[result.field] = {
                "old": result.warp_before,
                "new": result.decision.value,
                "source": "hubspot",
                "reason": result.decision.reason,
            }
    return changes


def log_plan(
    plan: Plan,
    *,
    entity_type: EntityType,
    customer_id: str,
    operation: str,
    duration_ms: float,
    error: BaseException | None = None,
    **extra: Any,
) -> None:
    """Emit the one ``sync_operation`` log line (and its conflict lines) for a plan."""
    if error is not None:
        outcome = "failed"
    elif plan.conflicts:
        outcome = "conflict"
    elif plan.changed:
        outcome = "success"
    else:
        outcome = "skipped"
    conflicts = [
        Conflict(r.field, r.decision.resolved_by.value, _conflict_kind(r))
        for r in _new_conflicts(plan.results)
        if r.decision.resolved_by is not None
    ]
    log_operation(
        entity_type=entity_type.value,
        direction=log_direction(plan),
        operation=operation,
        entity_id=customer_id,
        outcome=outcome,
        duration_ms=duration_ms,
        fields=[r.field for r in plan.changed],
        conflicts=conflicts,
        error=error,
        hubspot_object_id=plan.object_id,
        **extra,
    )


def _new_conflicts(results: Iterable[FieldResult]) -> list[FieldResult]:
    """Conflicts settled or held by this plan; a MANUAL one already open is not new."""
    return [
        r for r in results if r.decision.new_conflict and (r.applied or r.action is Action.CONFLICT)
    ]


def _conflict_kind(result: FieldResult) -> str:
    kind = result.decision.conflict
    return (kind or ConflictKind.EDITED).value


def log_direction(plan: Plan) -> str:
    """WARP's direction value for a log row: which way values moved."""
    if plan.hubspot_updates and not plan.warp_updates:
        return Direction.WARP_TO_HUBSPOT.value
    if plan.warp_updates and not plan.hubspot_updates:
        return Direction.HUBSPOT_TO_WARP.value
    return Direction.BIDIRECTIONAL.value


@dataclass(frozen=True)
class PlanCommit:
    """One carried-out plan to record: whose it is, and the row and states it was decided from.

    ``read`` is the customer's row as the flow read it from the database (before any
    plan's writes): WARP's columns are written only where they still hold that.
    """

    plan: Plan
    mappings: MappingSet
    entity_type: EntityType
    customer_id: str
    previous: Mapping[str, FieldState]
    read: Mapping[str, Any]


@dataclass
class Committed:
    """What :func:`commit_plans` recorded."""

    log_ids: list[str | None]
    """Per item, its sync-log row (None: no row needed, or the customer is in ``changed``)."""
    changed: list[str]
    """Customers WARP's application changed since they were read: nothing of theirs was
    written, their plans are to be made again from a fresh read."""


def commit_plans(
    tx: Session,
    items: Sequence[PlanCommit],
    *,
    now: datetime,
    operation: str = "UPDATE",
    triggered_by: str,
    triggered_by_user: str | None = None,
    started_at: datetime | None = None,
    record_noop: bool = False,
    sealer: Sealer,
    read_hubspot: bool = True,
) -> Committed:
    """Write WARP's columns, the field states and the sync-log rows of these plans.

    HubSpot must already hold each plan's ``hubspot_updates`` (the caller wrote
    them), so the recorded state never claims a value HubSpot does not have. A batch
    sync records a page of plans this way: WARP's columns of every customer in one
    statement, the sync stamps in one, the field states grouped by column set, and
    the log rows of the plans that need one in one statement. A plan that changed
    nothing, held no conflict and skipped nothing writes no log row unless
    ``record_noop`` (reconciliation wants one per record checked). Values of
    sensitive fields are sealed before they reach the log (``shared.sealing``).

    WARP's application takes none of the sync's locks: a customer whose written
    columns it changed since ``read`` is left out whole (``Committed.changed``), so
    its edit is never undone and no state claims a value WARP does not hold.
    ``read_hubspot``: see :func:`state_rows` (False for a webhook's plans).
    """
    warp_updates: dict[str, dict[str, Any]] = {}
    warp_read: dict[str, dict[str, Any]] = {}
    for item in items:
        if item.plan.warp_updates:
            warp_updates.setdefault(item.customer_id, {}).update(item.plan.warp_updates)
            read = {c: item.read[c] for c in item.plan.warp_updates}
            warp_read.setdefault(item.customer_id, {}).update(read)
    changed = customers.update_many(tx, warp_updates, warp_read)
    left_out = set(changed)
    kept = [i for i in items if i.customer_id not in left_out]
    customers.mark_synced_many(
        tx,
        from_hubspot=[cid for cid in warp_updates if cid not in left_out],
        to_hubspot=[i.customer_id for i in kept if i.plan.hubspot_updates],
        at=now,
    )
    rows: list[dict[str, Any]] = []
    for item in kept:
        rows.extend(
            state_rows(
                item.plan,
                item.mappings,
                entity_type=item.entity_type,
                customer_id=item.customer_id,
                previous=item.previous,
                now=now,
                read_hubspot=read_hubspot,
            )
        )
    if rows:
        field_state.upsert_many(tx, rows)
    entries = [
        _log_entry(
            item,
            sealer,
            now=now,
            operation=operation,
            triggered_by=triggered_by,
            triggered_by_user=triggered_by_user,
            started_at=started_at,
            record_noop=record_noop,
        )
        for item in kept
    ]
    # Earlier writes whose record was lost come first: they happened first.
    lost = [_lost_writes_entry(item, sealer, now=now, triggered_by=triggered_by) for item in kept]
    sync_log.record_many(tx, [e for e in lost if e is not None])
    written = iter(sync_log.record_many(tx, [e for e in entries if e is not None]))
    kept_ids = iter([None if e is None else next(written) for e in entries])
    log_ids = [None if i.customer_id in left_out else next(kept_ids) for i in items]
    return Committed(log_ids, changed)


def _lost_writes_entry(
    item: PlanCommit, sealer: Sealer, *, now: datetime, triggered_by: str
) -> sync_log.LogEntry | None:
    """The log row of the plan's recovered writes (``Plan.recovered``); None without any."""
    plan = item.plan
    if not plan.recovered:
        return None
    changes = sealer.seal_changes(
        field_changes(plan.recovered), _sensitive_fields(item.mappings, sealer)
    )
    return sync_log.LogEntry(
        entity_type=item.entity_type.value,
        entity_id=item.customer_id,
        hubspot_object_id=plan.object_id,
        operation="UPDATE",
        direction=Direction.WARP_TO_HUBSPOT.value,
        status="SUCCESS",
        fields_synced=[r.field for r in plan.recovered],
        field_changes={**changes, "_recorded_late": plan.recovered[0].note},
        completed_at=now,
        triggered_by=triggered_by,
    )


def _sensitive_fields(mappings: MappingSet, sealer: Sealer) -> frozenset[str]:
    return frozenset(
        name for name, m in mappings.fields.items() if m.warp_column in sealer.sensitive_columns
    )


def _log_entry(
    item: PlanCommit,
    sealer: Sealer,
    *,
    now: datetime,
    operation: str,
    triggered_by: str,
    triggered_by_user: str | None,
    started_at: datetime | None,
    record_noop: bool,
) -> sync_log.LogEntry | None:
    """The log row a plan needs; None for a no-op, unless ``record_noop``."""
    plan = item.plan
    if plan.is_noop and not plan.conflicts and not plan.skipped and not record_noop:
        return None
    skipped = {r.field: r.note or r.decision.reason for r in plan.skipped}
    changes: dict[str, Any] = field_changes(plan.results)
    for result in plan.conflicts:
        changes[result.field] = {
            "warp": result.warp_before,
            "hubspot": result.hubspot_before,
            "conflict": result.decision.reason,
        }
    changes = sealer.seal_changes(changes, _sensitive_fields(item.mappings, sealer))
    # The conflicts metric counts these keys (shared/api/metrics.py): rule and kind.
    for result in _new_conflicts(plan.results):
        if result.field in changes and result.decision.resolved_by is not None:
            changes[result.field] = {
                **changes[result.field],
                "resolution": result.decision.resolved_by.value,
                "conflict_kind": _conflict_kind(result),
            }
    if skipped:
        changes["_skipped"] = skipped
    return sync_log.LogEntry(
        entity_type=item.entity_type.value,
        entity_id=item.customer_id,
        hubspot_object_id=plan.object_id,
        operation=operation,
        direction=log_direction(plan),
        status="CONFLICT" if plan.conflicts else "SUCCESS",
        fields_synced=[r.field for r in plan.changed],
        field_changes=changes,
        started_at=started_at,
        completed_at=now,
        triggered_by=triggered_by,
        triggered_by_user=triggered_by_user,
    )
