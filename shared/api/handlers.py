"""The management API's handlers: translate a validated call into engine and repository calls.

Each takes a :class:`~shared.api.context.Call` and answers ``(status, model)``;
refusals are :class:`~shared.api.context.ApiError`. No HTTP parsing happens here
(the router did it) and no sync logic (the engine does it).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NoReturn
from uuid import UUID

from shared import fleet, pause, reconcile, retry
from shared.api import models
from shared.api.context import ApiError, Call, Reply
from shared.conflicts import Action
from shared.db import Database, Row
from shared.db.repositories import customers, field_state, reconciliation_runs, sync_log, sync_queue
from shared.engine import resolve
from shared.engine.sync import ENTITIES, FROM_HUBSPOT, TO_HUBSPOT, CustomerSync, sync_customers
from shared.errors import SyncError
from shared.links import linked_id
from shared.mapping import EntityType
from shared.outbound.linking import link_customers
from shared.untrusted_time import parse_time

TRIGGERED_BY = "api"  # hubspot_sync_log.triggered_by of syncs started through the API
RESOLVED_BY = "manual"  # ... and of conflicts a person resolved


def _customer(call: Call) -> Row:
    with call.engine.database.transaction() as tx:
        row = customers.get(tx, call.path["id"])
    if row is None:
        raise ApiError(404, f"customer {call.path['id']} not found", field="id")
    return row


# --- sync now -------------------------------------------------------------------------


def sync_to_hubspot(call: Call) -> Reply:
    """POST /customers/{id}/to-hubspot: push every field WARP may write to HubSpot now."""
    return _sync_now(call, "to-hubspot")


def sync_from_hubspot(call: Call) -> Reply:
    """POST /customers/{id}/from-hubspot: pull every field HubSpot may write to WARP now."""
    return _sync_now(call, "from-hubspot")


def _sync_now(call: Call, direction: str) -> Reply:
    row = _customer(call)
    linked: list[EntityType] = []
    if direction == "to-hubspot" and any(linked_id(row, et) is None for et in ENTITIES):
        linked = _link(call, row)
    elif linked_id(row, EntityType.CUSTOMER) is None:
        raise ApiError(409, "customer is not linked to a HubSpot company")
    (result,) = sync_customers(
        call.engine,
        [call.path["id"]],
        allowed=TO_HUBSPOT if direction == "to-hubspot" else FROM_HUBSPOT,
        triggered_by=TRIGGERED_BY,
        triggered_by_user=call.user,
        record_noop=True,
    )
    if result.status == "not_found":  # deleted between the two reads
        raise ApiError(404, f"customer {call.path['id']} not found", field="id")
    if result.error is not None:
        _refused("HubSpot refused the update", result.error)
    return 200, _sync_answer(result, direction, linked)


def _link(call: Call, row: Row) -> list[EntityType]:
    """Find or create the customer's company and contact (outbound's linking); what got linked."""
    outcome = link_customers(
        call.engine, [row], triggered_by=TRIGGERED_BY, triggered_by_user=call.user
    )[str(row["id"])]
    if outcome.error is not None:
        _refused("HubSpot refused linking the customer", outcome.error)
    if outcome.company_id is None:
        raise ApiError(409, "customer is not linked to a HubSpot company")
    return [et for et in ENTITIES if outcome.link(et)[1] not in (None, "linked")]


def _refused(what: str, error: SyncError) -> NoReturn:
    retryable = bool(error.retryable)
    raise ApiError(503 if retryable else 422, f"{what}: {error}", retryable=retryable)


def _sync_answer(
    result: CustomerSync, direction: str, linked: list[EntityType]
) -> models.SyncResult:
    changed, skipped, conflicts = [], [], []
    for entity_type, plan in result.plans.items():
        for r in plan.changed:
            to_hubspot = r.action is Action.WRITE_HUBSPOT
            changed.append(
                models.ChangedField(
                    field=r.field,
                    entity_type=entity_type,
                    hubspot_property=r.hubspot_property,
                    action="WRITE_HUBSPOT" if to_hubspot else "WRITE_WARP",
                    old=r.hubspot_before if to_hubspot else r.warp_before,
                    new=r.decision.value,
                    reason=r.decision.reason,
                )
            )
        for r in plan.skipped:
            skipped.append(
                models.SkippedField(
                    field=r.field,
                    entity_type=entity_type,
                    hubspot_property=r.hubspot_property,
                    reason=r.note or r.decision.reason,
                )
            )
        for r in plan.conflicts:
            conflicts.append(
                models.ConflictField(
                    field=r.field,
                    entity_type=entity_type,
                    hubspot_property=r.hubspot_property,
                    warp_value=r.warp_before,
                    hubspot_value=r.hubspot_before,
                    reason=r.decision.reason,
                )
            )
    return models.SyncResult(
        customer_id=UUID(result.customer_id),
        direction=direction,  # type: ignore[arg-type]
        status=result.status,  # type: ignore[arg-type]
        changed=changed,
        skipped=skipped,
        conflicts=conflicts,
        missing=list(result.missing),
        linked=linked,
        error=None,
        log_ids=[UUID(i) for i in result.log_ids],
    )


# --- status, logs, conflicts ----------------------------------------------------------


def customer_status(call: Call) -> Reply:
    """GET /customers/{id}/status: links, last sync times, every mapped field's state."""
    row = _customer(call)
    customer_id = call.path["id"]
    with call.engine.database.transaction() as tx:
        states = field_state.get_for_entity(tx, None, customer_id)
    recorded = {(s["entity_type"], s["field_name"]): s for s in states}
    fields: list[models.FieldStatus] = []
    for entity_type in ENTITIES:
        for mapping in call.engine.mapping_for(customer_id, entity_type).fields.values():
            state = recorded.pop((entity_type.value, mapping.name), None) or {}
            fields.append(
                _field_status(
                    state,
                    field=mapping.name,
                    entity_type=entity_type,
                    mapped=True,
                    hubspot_property=mapping.hubspot_property,
                    warp_field=mapping.warp_field,
                    sync_direction=mapping.direction.value,
                    conflict_resolution=mapping.rule.value,
                )
            )
    for (entity_type_name, name), state in recorded.items():
        fields.append(
            _field_status(
                state,
                field=name,
                entity_type=EntityType(entity_type_name),
                mapped=False,
                hubspot_property=None,
                warp_field=state.get("field_path"),
                sync_direction=state.get("sync_direction"),
                conflict_resolution=state.get("conflict_resolution"),
            )
        )
    return 200, models.CustomerStatus(
        customer_id=UUID(customer_id),
        company_name=row.get("company_name"),
        hubspot_sync_enabled=row.get("hubspot_sync_enabled"),
        links=models.Links(
            hubspot_company_id=linked_id(row, EntityType.CUSTOMER),
            hubspot_contact_id=linked_id(row, EntityType.CONTACT),
        ),
        last_synced_to_hubspot=row.get("last_synced_to_hubspot"),
        last_synced_from_hubspot=row.get("last_synced_from_hubspot"),
        updated_at=row.get("updated_at"),
        open_conflicts=sum(1 for f in fields if f.is_in_conflict),
        fields=fields,
        pause=_pause_state(pause.state(call.engine)),
    )


def _field_status(state: Mapping[str, Any], **known: Any) -> models.FieldStatus:
    copied = (
        "warp_value",
        "hubspot_value",
        "last_synced_at",
        "last_synced_direction",
        "last_modified_at_warp",
        "last_modified_at_hubspot",
        "conflict_detected_at",
        "conflict_resolved_at",
    )
    values = {**known, **{k: state.get(k) for k in copied}}
    in_conflict = bool(state.get("is_in_conflict"))
    if in_conflict:
        where = models.FieldSyncState.IN_CONFLICT
    elif state.get("last_synced_at") is None:
        where = models.FieldSyncState.NOT_CROSSED_YET
    else:
        where = models.FieldSyncState.CROSSED
    return models.FieldStatus.model_validate(
        {**values, "is_in_conflict": in_conflict, "state": where}
    )


def customer_logs(call: Call) -> Reply:
    """GET /customers/{id}/logs: the sync log, newest first, keyset-paged, filtered."""
    _customer(call)
    query: models.LogQuery = call.query
    before = _decode_cursor(query.cursor) if query.cursor else None
    with call.engine.database.transaction() as tx:
        rows = sync_log.list_for_customer(
            tx,
            call.path["id"],
            limit=query.limit + 1,
            before=before,
            status=query.status,
            direction=query.direction,
            entity_type=query.entity_type.value if query.entity_type else None,
        )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    sealer = call.engine.sealer
    items = [
        models.LogEntry.model_validate(
            {**row, "field_changes": sealer.open_changes(row.get("field_changes") or {})}
        )
        for row in rows
    ]
    cursor = _encode_cursor(rows[-1]["started_at"], str(rows[-1]["id"])) if more else None
    return 200, models.LogPage(items=items, next_cursor=cursor)


def _encode_cursor(started_at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{started_at.isoformat()}|{row_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        when, _, row_id = text.partition("|")
        return parse_time(when), str(UUID(row_id))
    except (binascii.Error, UnicodeError, ValueError):  # UnacceptableTime is a ValueError
        raise ApiError(400, "cursor is not one this API gave out", field="cursor") from None


def customer_conflicts(call: Call) -> Reply:
    """GET /customers/{id}/conflicts: open conflicts with both current values and times."""
    found = resolve.open_conflicts(call.engine, call.path["id"])
    if found is None:
        raise ApiError(404, f"customer {call.path['id']} not found", field="id")
    return 200, models.ConflictList(
        customer_id=UUID(call.path["id"]),
        conflicts=[models.OpenConflictOut.model_validate(c, from_attributes=True) for c in found],
    )


_RESOLVE_STATUS = {
    resolve.CustomerNotFound: 404,
    resolve.FieldNotMapped: 404,  # the customer has no such field (mappings vary per customer)
    resolve.InvalidValue: 400,
    resolve.NotLinked: 409,
    resolve.RecordMissing: 409,
    resolve.NotInConflict: 409,
}


def resolve_conflict(call: Call) -> Reply:
    """POST /customers/{id}/resolve-conflict: settle one field with the chosen value."""
    body: models.ResolveConflictRequest = call.body
    try:
        done = resolve.resolve_conflict(
            call.engine,
            call.path["id"],
            body.field_name,
            body.resolution,
            value=body.value,
            triggered_by=RESOLVED_BY,
            triggered_by_user=call.user,
        )
    except resolve.ResolveError as exc:
        status = _RESOLVE_STATUS.get(type(exc), 400)
        field = "id" if isinstance(exc, resolve.CustomerNotFound) else exc.field
        raise ApiError(status, str(exc), field=field) from None
    return 200, models.ResolveConflictResult.model_validate(done, from_attributes=True)


# --- reconciliation runs --------------------------------------------------------------


def list_runs(call: Call) -> Reply:
    """GET /reconciliation-runs: runs with their counts, newest first."""
    query: models.RunQuery = call.query
    with call.engine.database.transaction() as tx:
        rows = reconciliation_runs.list_runs(
            tx,
            limit=query.limit,
            status=query.status,
            customer_id=str(query.customer_id) if query.customer_id else None,
        )
    return 200, models.RunList(items=[models.RunSummary.model_validate(r) for r in rows])


def get_run(call: Call) -> Reply:
    """GET /reconciliation-runs/{id}: one run with its report."""
    with call.engine.database.transaction() as tx:
        row = reconciliation_runs.get(tx, call.path["id"])
    if row is None:
        raise ApiError(404, f"reconciliation run {call.path['id']} not found", field="id")
    return 200, models.RunDetail.model_validate(reconcile.describe_run(row))


# --- queue ----------------------------------------------------------------------------


def list_queue(call: Call) -> Reply:
    """GET /queue: work waiting, running or failed (or of one status), newest first."""
    query: models.QueueQuery = call.query
    statuses = (query.status,) if query.status else ("QUEUED", "PROCESSING", "FAILED")
    customer_id = None
    if query.customer_id:
        customer_id = customer_ref(call.engine.database, query.customer_id, field="customer_id")
    with call.engine.database.transaction() as tx:
        rows = sync_queue.list_items(
            tx,
            statuses=statuses,
            entity_id=customer_id,
            limit=query.limit,
        )
    return 200, models.QueueList(items=[models.QueueItem.model_validate(r) for r in rows])


def replay_queue_item(call: Call) -> Reply:
    """POST /queue/{id}/replay: queue a FAILED (or CANCELLED) item again; idempotent.

    Replaying an item already queued or running changes nothing and says so; a
    completed item is not run twice (409).
    """
    item_id = call.path["id"]
    row = retry.replay(call.engine, item_id)
    if row is not None:
        return 202, models.ReplayResult(item=models.QueueItem.model_validate(row), replayed=True)
    with call.engine.database.transaction() as tx:
        row = sync_queue.get(tx, item_id)
    if row is None:
        raise ApiError(404, f"queue item {item_id} not found", field="id")
    if row["status"] == "COMPLETED":
        raise ApiError(409, "the item completed; it is not run again")
    return 200, models.ReplayResult(item=models.QueueItem.model_validate(row), replayed=False)


def start_reconcile(call: Call) -> Reply:
    """POST /reconcile: one customer is reconciled inline; other runs continue as tasks.

    The answer is the run: 200 when it finished within the call, 202 while a task
    carries it on (poll ``GET /reconciliation-runs/{id}``).
    """
    request = reconcile.RunRequest.from_model(
        call.body,
        triggered_by=f"{TRIGGERED_BY}:{call.user}"[:100] if call.user else TRIGGERED_BY,
    )
    try:
        # Inline for one customer; otherwise start it and hand it to a task at once,
        # so the call answers well inside the function's timeout.
        result = reconcile.start_run(
            call.engine, request, budget_seconds=None if request.customer_id else 0.0
        )
    except reconcile.UnknownCustomer as exc:
        raise ApiError(404, str(exc), field="customer_id") from None
    except reconcile.InvalidRunRequest as exc:
        raise ApiError(400, str(exc), field=_named_field(str(exc))) from None
    except reconcile.RunInProgress as exc:
        raise ApiError(409, str(exc)) from None
    run = models.RunDetail.model_validate(reconcile.describe_run(result.run))
    status = 202 if run.status == "RUNNING" else 200
    return status, models.ReconcileStarted(run=run, started=result.started)


def _named_field(message: str) -> str | None:
    return next((f for f in models.ReconcileRequest.model_fields if message.startswith(f)), None)


# --- customers by BAN -----------------------------------------------------------------

BAN_PREFIX = "ban:"


def customer_ref(database: Database, ref: str, *, field: str) -> str:
    """A customer named by UUID or ``ban:<BAN>``, as its id (UUID form); 404 for no such BAN."""
    if not ref.startswith(BAN_PREFIX):
        try:
            return str(UUID(ref))
        except ValueError:
            raise ApiError(
                400, f"{field} {ref!r} is not a UUID nor ban:<BAN>", field=field
            ) from None
    ban = ref[len(BAN_PREFIX) :]
    if not ban:
        raise ApiError(400, f"{field}: ban: needs a BAN after it", field=field)
    with database.transaction() as tx:
        found = fleet.customer_id_by_ban(tx, ban)
    if found is None:
        raise ApiError(404, f"no customer with BAN {ban!r}", field=field)
    return found


# --- the fleet ------------------------------------------------------------------------


def _pause_state(state: pause.PauseState) -> models.PauseState:
    return models.PauseState(
        paused=state.paused, since=state.since, by=state.by, reason=state.reason
    )


def fleet_row(row: Mapping[str, Any]) -> models.FleetCustomer:
    """One customer of the fleet view, from its flags row."""
    return models.FleetCustomer(
        customer_id=UUID(str(row["id"])),
        ban=row.get("ban"),
        company_name=row.get("company_name"),
        hubspot_company_id=row.get("hubspot_company_id"),
        hubspot_contact_id=row.get("hubspot_contact_id"),
        hubspot_sync_enabled=row.get("hubspot_sync_enabled"),
        states=fleet.states_of(row),
        problems=fleet.problems_of(row),
        last_synced_to_hubspot=row.get("last_synced_to_hubspot"),
        last_synced_from_hubspot=row.get("last_synced_from_hubspot"),
    )


def customer_page(
    database: Database, state: fleet.SyncState | None, *, cursor: UUID | None, limit: int
) -> models.CustomerPage:
    """One page of the fleet view (the API's and the CLI's); the cursor is the last id."""
    with database.transaction() as tx:
        rows = fleet.list_customers(
            tx, state=state, after=str(cursor) if cursor else None, limit=limit + 1
        )
        counts = fleet.count_states(tx)
        paused = pause.read(tx)
    more = len(rows) > limit
    rows = rows[:limit]
    return models.CustomerPage(
        items=[fleet_row(r) for r in rows],
        counts=models.StateCounts.model_validate(counts),
        next_cursor=UUID(str(rows[-1]["id"])) if more else None,
        pause=_pause_state(paused),
    )


def list_customers(call: Call) -> Reply:
    """GET /customers: customers by sync state, with counts per state; paged."""
    query: models.CustomerListQuery = call.query
    return 200, customer_page(
        call.engine.database, query.state, cursor=query.cursor, limit=query.limit
    )


def change_page(
    database: Database,
    *,
    since: datetime | None,
    direction: str | None,
    customer_id: str | None,
    cursor: UUID | None,
    limit: int,
) -> models.ChangePage:
    """One page of the change feed, newest first (the API's and the CLI's)."""
    with database.transaction() as tx:
        rows = fleet.list_changes(
            tx,
            since=since,
            direction=direction,
            customer_id=customer_id,
            before=str(cursor) if cursor else None,
            limit=limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    items = []
    for row in rows:
        fields = fleet.crossed_fields(row["field_changes"], direction=direction)
        items.append(
            models.Change(
                log_id=row["id"],
                customer_id=row.get("entity_id"),
                ban=row.get("ban"),
                company_name=row.get("company_name"),
                entity_type=row["entity_type"],
                hubspot_object_id=row.get("hubspot_object_id"),
                operation=row["operation"],
                direction=row["direction"],
                status=row["status"],
                at=row.get("started_at"),
                triggered_by=row.get("triggered_by"),
                triggered_by_user=row.get("triggered_by_user"),
                fields=[models.CrossedField.model_validate(f.__dict__) for f in fields],
            )
        )
    return models.ChangePage(items=items, next_cursor=UUID(str(rows[-1]["id"])) if more else None)


def list_changes(call: Call) -> Reply:
    """GET /changes: every field that crossed, newest first, with the rule and why."""
    query: models.ChangeQuery = call.query
    customer_id = (
        customer_ref(call.engine.database, query.customer, field="customer")
        if query.customer
        else None
    )
    return 200, change_page(
        call.engine.database,
        since=query.since,
        direction=query.direction,
        customer_id=customer_id,
        cursor=query.cursor,
        limit=query.limit,
    )


def replay_queue_items(call: Call) -> Reply:
    """POST /queue/replay: replay every row a filter matches; idempotent, answers what it did."""
    body: models.BulkReplayRequest = call.body
    customer_id = (
        customer_ref(call.engine.database, body.customer, field="customer")
        if body.customer
        else None
    )
    with call.engine.database.transaction() as tx:
        ids = fleet.queue_ids_matching(
            tx,
            statuses=(body.status,),
            kind=body.kind,
            error_contains=body.error_contains,
            customer_id=customer_id,
            older_than_seconds=body.older_than_seconds,
            newer_than_seconds=body.newer_than_seconds,
            limit=body.limit,
        )
    replayed, unchanged = [], []
    for item_id in ids:
        row = retry.replay(call.engine, item_id)
        if row is None:
            unchanged.append(UUID(item_id))
        else:
            replayed.append(models.QueueItem.model_validate(row))
    return 200, models.BulkReplayResult(matched=len(ids), replayed=replayed, unchanged=unchanged)


def pause_sync(call: Call) -> Reply:
    """POST /pause: stop every write to either side; idempotent."""
    body: models.PauseRequest = call.body
    state, changed = pause.pause(call.engine.database, by=call.user, reason=body.reason)
    return 200, models.PauseResult(pause=_pause_state(state), changed=changed)


def resume_sync(call: Call) -> Reply:
    """POST /resume: clear the pause and drain what waited, in order."""
    was_paused, drained = pause.resume(call.engine, by=call.user)
    return 200, models.ResumeResult(
        pause=_pause_state(pause.state(call.engine)),
        was_paused=was_paused,
        drained=models.Drained.model_validate(drained.__dict__),
    )
