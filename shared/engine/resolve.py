"""Manual conflicts: what is open (both sides' current values) and resolving one field.

A ``MANUAL`` field both sides changed stays ``is_in_conflict`` until a person picks
a value. Resolving writes that value to whichever side differs from it (HubSpot
first, then WARP in the transaction that records the outcome), clears the
conflict and writes a sync-log row naming who resolved it. The customer's
advisory lock is held throughout, so no sync interleaves with a resolution.

The field state recorded afterwards holds the chosen value on both sides, so the
echo of our HubSpot write, or a later sync, finds the field in step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import pg8000.exceptions

from shared.conflicts import FieldState, warp_time
from shared.db import Row, Session
from shared.db.repositories import customers, field_state, sync_log
from shared.engine.deps import Engine
from shared.engine.record import states_by_field
from shared.engine.snapshots import LAST_MODIFIED_PROPERTY
from shared.engine.sync import ENTITIES, lock_customers
from shared.errors import SyncError, WarpChangedDuringSync
from shared.hubspot.errors import NotFound
from shared.hubspot.models import HubSpotObject, parse_datetime
from shared.links import linked_id
from shared.mapping import Direction, EntityType, FieldMapping, MappingError
from shared.observability import log_operation
from shared.sealing import Sealer

log = logging.getLogger("warp_hubspot_sync.engine.resolve")


class Resolution(StrEnum):
    """Which value settles the conflict."""

    USE_WARP_VALUE = "use_warp_value"
    USE_HUBSPOT_VALUE = "use_hubspot_value"
    USE_CUSTOM_VALUE = "use_custom_value"


class ResolveError(SyncError):
    """The resolution cannot be carried out; ``kind`` says why (the API maps it to a status)."""

    kind = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class CustomerNotFound(ResolveError):
    kind = "customer_not_found"


class FieldNotMapped(ResolveError):
    kind = "field_not_mapped"


class NotLinked(ResolveError):
    kind = "not_linked"


class RecordMissing(ResolveError):
    kind = "record_missing"


class NotInConflict(ResolveError):
    kind = "not_in_conflict"


class InvalidValue(ResolveError):
    kind = "invalid_value"


@dataclass(frozen=True)
class OpenConflict:
    """One field waiting for a person: both current values, their times, the rule."""

    field: str
    entity_type: EntityType
    hubspot_object_id: str
    hubspot_property: str | None
    warp_field: str | None
    rule: str
    sync_direction: str
    warp_value: Any
    warp_modified_at: datetime | None
    hubspot_value: str | None
    hubspot_modified_at: datetime | None
    last_synced_warp_value: Any
    last_synced_hubspot_value: Any
    last_synced_at: datetime | None
    conflict_detected_at: datetime | None


@dataclass(frozen=True)
class Resolved:
    """What a resolution wrote."""

    customer_id: str
    field: str
    entity_type: EntityType
    resolution: Resolution
    warp_value: Any
    hubspot_value: str
    wrote_hubspot: bool
    wrote_warp: bool
    resolved_at: datetime
    resolved_by: str | None
    log_id: str


def find_field(engine: Engine, customer_id: str, field_name: str) -> FieldMapping | None:
    """The customer's mapped field of that name (names are unique across entity types)."""
    for entity_type in ENTITIES:
        mapping = engine.mapping_for(customer_id, entity_type).fields.get(field_name)
        if mapping is not None:
            return mapping
    return None


def open_conflicts(engine: Engine, customer_id: str) -> list[OpenConflict] | None:
    """The customer's open conflicts with HubSpot's current values; None for no such customer.

    HubSpot is read once per entity type that has a conflict (none without one):
    the recorded state holds the values of the last crossing, not the current ones.
    """
    with engine.database.transaction() as tx:
        row = customers.get(tx, customer_id)
        if row is None:
            return None
        states = field_state.open_conflicts(tx, customer_id, limit=1000)
    kinds = {EntityType(s["entity_type"]) for s in states}
    fields = {et: engine.mapping_for(customer_id, et).fields for et in kinds}
    records: dict[EntityType, HubSpotObject | None] = {}
    for et in kinds:
        mine = [s for s in states if s["entity_type"] == et.value]
        object_id = linked_id(row, et) or str(mine[0]["hubspot_object_id"])
        wanted = [fields[et][s["field_name"]] for s in mine if s["field_name"] in fields[et]]
        records[et] = _read(engine, et, object_id, wanted)
    out = []
    for state in states:
        entity_type = EntityType(state["entity_type"])
        mapping = fields[entity_type].get(state["field_name"])
        record = records[entity_type]
        hub_value: str | None = None
        hub_time = state.get("last_modified_at_hubspot")
        if record is not None and mapping is not None:
            hub_value = record.properties.get(mapping.hubspot_property)
            hub_time = _property_time(record, mapping, entity_type) or hub_time
        out.append(
            OpenConflict(
                field=state["field_name"],
                entity_type=entity_type,
                hubspot_object_id=str(state["hubspot_object_id"]),
                hubspot_property=mapping.hubspot_property if mapping else None,
                warp_field=mapping.warp_field if mapping else state.get("field_path"),
                rule=state["conflict_resolution"],
                sync_direction=state["sync_direction"],
                warp_value=mapping.read_warp(row) if mapping else None,
                # The field's own time, as the rules use it; the row's updated_at moves
                # with every column (and the sync's own writes), so it is not shown.
                warp_modified_at=(
                    warp_time(_field_state(state)) or state.get("last_modified_at_warp")
                ),
                hubspot_value=hub_value,
                hubspot_modified_at=hub_time,
                last_synced_warp_value=state.get("warp_value"),
                last_synced_hubspot_value=state.get("hubspot_value"),
                last_synced_at=state.get("last_synced_at"),
                conflict_detected_at=state.get("conflict_detected_at"),
            )
        )
    return out


def _field_state(row: Row) -> FieldState:
    """A ``hubspot_field_state`` row as the rules read it."""
    ((_, state),) = states_by_field([[row[c] for c in field_state.DECISION_COLUMNS]]).items()
    return state


def resolve_conflict(
    engine: Engine,
    customer_id: str,
    field_name: str,
    resolution: Resolution,
    *,
    value: Any = None,
    triggered_by: str = "manual",
    triggered_by_user: str | None = None,
) -> Resolved:
    """Settle one field's conflict with the chosen value; raise a :class:`ResolveError`.

    ``value`` (``use_custom_value`` only) is in WARP's terms; it is checked by
    converting it to HubSpot's form and back, which also gives WARP's typed value.
    """
    mapping = find_field(engine, customer_id, field_name)
    if mapping is None:
        raise FieldNotMapped(f"customer has no mapped field {field_name!r}", field="field_name")
    entity_type = mapping.entity_type
    started = engine.now()
    with engine.database.transaction() as tx:
        lock_customers(tx, [customer_id])
        row = customers.get(tx, customer_id)
        if row is None:
            raise CustomerNotFound(f"customer {customer_id} not found")
        object_id = linked_id(row, entity_type)
        if object_id is None:
            raise NotLinked(f"customer is not linked to a HubSpot {entity_type.object_name}")
        state = field_state.get(tx, entity_type.value, customer_id, field_name)
        if state is None or not state.get("is_in_conflict"):
            raise NotInConflict(f"field {field_name!r} is not in conflict", field="field_name")
        record = _read(engine, entity_type, object_id, [mapping])
        if record is None:
            raise RecordMissing(
                f"the linked HubSpot {entity_type.object_name} {object_id} no longer exists"
            )
        warp_now = mapping.read_warp(row)
        hub_now = record.properties.get(mapping.hubspot_property)
        warp_value, hub_value = _chosen(mapping, resolution, value, warp_now, hub_now)

        form = mapping.canonical_hubspot
        wrote_hubspot = form(hub_now) != form(hub_value)
        wrote_warp = form(mapping.to_hubspot(warp_now)) != form(hub_value)
        now = engine.now()
        if wrote_warp:
            # WARP first, uncommitted: a value its column refuses (too long, a CHECK)
            # stops the resolution before HubSpot is touched.
            _write_warp(tx, customer_id, mapping, row, warp_value)
            customers.mark_synced_from(tx, customer_id, now)
        else:
            warp_value = warp_now  # keep WARP's own representation of an equal value
        if wrote_hubspot:
            # Before the commit, as in every flow: the state we record must not claim
            # a value HubSpot lacks. A failure here rolls the WARP write back.
            api = engine.hubspot.objects(entity_type.object_type)
            api.update(object_id, {mapping.hubspot_property: hub_value})
            customers.mark_synced_to(tx, customer_id, now)
        direction = _direction(wrote_hubspot, wrote_warp)
        field_state.upsert(
            tx,
            {
                "entity_type": entity_type.value,
                "entity_id": customer_id,
                "hubspot_object_id": object_id,
                "field_name": field_name,
                "field_path": mapping.warp_field,
                "warp_value": warp_value,
                "hubspot_value": hub_value,
                "last_synced_at": now,
                "last_synced_direction": direction.value,
                "last_modified_at_warp": now if wrote_warp else state.get("last_modified_at_warp"),
                "last_modified_at_hubspot": (
                    now if wrote_hubspot else _property_time(record, mapping, entity_type)
                ),
                "sync_direction": mapping.direction.value,
                "conflict_resolution": mapping.rule.value,
                "is_in_conflict": False,
                "conflict_resolved_at": now,
            },
        )
        log_id = sync_log.record(
            tx,
            entity_type=entity_type.value,
            entity_id=customer_id,
            hubspot_object_id=object_id,
            operation="UPDATE",
            direction=direction.value,
            status="SUCCESS",
            fields_synced=[field_name] if (wrote_hubspot or wrote_warp) else [],
            field_changes=_sealed(
                engine.sealer,
                mapping,
                {"old": {"warp": warp_now, "hubspot": hub_now}, "new": hub_value},
                source=resolution.value,
            ),
            started_at=started,
            completed_at=now,
            triggered_by=triggered_by,
            triggered_by_user=triggered_by_user,
        )
    log_operation(
        entity_type=entity_type.value,
        direction=direction.value,
        operation="UPDATE",
        entity_id=customer_id,
        outcome="success" if (wrote_hubspot or wrote_warp) else "skipped",
        duration_ms=(engine.now() - started).total_seconds() * 1000,
        fields=[field_name],
        hubspot_object_id=object_id,
        reason="resolve_conflict",
        resolution=resolution.value,
        triggered_by=triggered_by,
    )
    return Resolved(
        customer_id=customer_id,
        field=field_name,
        entity_type=entity_type,
        resolution=resolution,
        warp_value=warp_value,
        hubspot_value=hub_value,
        wrote_hubspot=wrote_hubspot,
        wrote_warp=wrote_warp,
        resolved_at=now,
        resolved_by=triggered_by_user,
        log_id=log_id,
    )


def _chosen(
    mapping: FieldMapping, resolution: Resolution, value: Any, warp_now: Any, hub_now: str | None
) -> tuple[Any, str]:
    """(WARP value, HubSpot string) of the chosen value, checked against the mapping."""
    try:
        if resolution is Resolution.USE_WARP_VALUE:
            hub_value = mapping.to_hubspot(warp_now)
            return warp_now, hub_value
        if resolution is Resolution.USE_HUBSPOT_VALUE:
            hub_value = hub_now or ""
        else:
            hub_value = mapping.to_hubspot(value)
        return mapping.to_warp(hub_value, warp_now), hub_value
    except (MappingError, ValueError, TypeError, ArithmeticError) as exc:
        where = "value" if resolution is Resolution.USE_CUSTOM_VALUE else "resolution"
        raise InvalidValue(f"{mapping.name}: {exc}", field=where) from None


def _write_warp(tx: Session, customer_id: str, mapping: FieldMapping, row: Row, value: Any) -> None:
    try:
        column, column_value = mapping.write_warp(row, value)
    except MappingError as exc:
        raise InvalidValue(str(exc), field="value") from None
    _check_column(tx, mapping, column, column_value)
    try:
        # Only over the column as read: HubSpot was read since, and WARP's application
        # may have written the row meanwhile (a 503 then; the person tries again).
        changed = customers.update_many(
            tx, {customer_id: {column: column_value}}, {customer_id: {column: row[column]}}
        )
    except pg8000.exceptions.DatabaseError as exc:
        info = exc.args[0] if exc.args else {}
        code = str(info.get("C", "")) if isinstance(info, dict) else ""
        # Class 22 (data exception) and 23 (integrity constraint): the value, not the database.
        if not code.startswith(("22", "23")):
            raise
        # In our words: PostgreSQL's own text names internals and its detail quotes rows.
        reason = _REFUSALS.get(code, f"refused by WARP's database (SQLSTATE {code})")
        raise InvalidValue(f"{mapping.name}: {reason}", field="value") from None
    if changed:
        raise WarpChangedDuringSync(customer_id)


# What a refusal of WARP's database means for the value (SQLSTATEs of classes 22 and 23).
_REFUSALS = {
    "22001": "too long for WARP's column",
    "22003": "out of the range WARP's column holds",
    "22007": "not a valid date or time",
    "22008": "not a valid date or time",
    "22P02": "not a valid value for WARP's column type",
    "23502": "WARP requires a value",
    "23503": "refers to something WARP does not have",
    "23505": "another customer already has this value",
    "23514": "not allowed by a rule of WARP's schema",
}


def _check_column(tx: Session, mapping: FieldMapping, column: str, value: Any) -> None:
    """Refuse, naming the field and the limit, what the column's own rules would refuse."""
    rules = customers.column_rules(tx, column)
    if rules is None:
        return
    if value is None and not rules["nullable"]:
        raise InvalidValue(f"{mapping.name}: WARP requires a value", field="value")
    limit = rules["max_length"]
    if limit is not None and isinstance(value, str) and len(value) > limit:
        raise InvalidValue(
            f"{mapping.name}: at most {limit} characters (this value has {len(value)})",
            field="value",
        )


def _sealed(
    sealer: Sealer, mapping: FieldMapping, change: dict[str, Any], *, source: str
) -> dict[str, Any]:
    """The log's ``field_changes`` for one field, its values sealed if the field is sensitive."""
    sensitive = frozenset({mapping.name} if mapping.warp_column in sealer.sensitive_columns else ())
    return sealer.seal_changes({mapping.name: {**change, "source": source}}, sensitive)


def _direction(wrote_hubspot: bool, wrote_warp: bool) -> Direction:
    if wrote_hubspot and not wrote_warp:
        return Direction.WARP_TO_HUBSPOT
    if wrote_warp and not wrote_hubspot:
        return Direction.HUBSPOT_TO_WARP
    return Direction.BIDIRECTIONAL


def _read(
    engine: Engine, entity_type: EntityType, object_id: str, mappings: list[FieldMapping]
) -> HubSpotObject | None:
    """The record with these fields' properties and their history; None when gone."""
    properties = sorted(
        {m.hubspot_property for m in mappings} | {LAST_MODIFIED_PROPERTY[entity_type]}
    )
    api = engine.hubspot.objects(entity_type.object_type)
    try:
        record = api.get(
            object_id,
            properties=properties,
            properties_with_history=sorted({m.hubspot_property for m in mappings}),
        )
    except NotFound:
        return None
    return None if record.archived else record


def _property_time(
    record: HubSpotObject, mapping: FieldMapping, entity_type: EntityType
) -> datetime | None:
    latest = record.latest_change(mapping.hubspot_property)
    if latest is not None and latest.timestamp is not None:
        return latest.timestamp
    return parse_datetime(record.properties.get(LAST_MODIFIED_PROPERTY[entity_type])) or (
        record.updated_at
    )
