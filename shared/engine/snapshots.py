"""Turning what each side returned into the snapshots :func:`plan_sync` compares."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from shared.conflicts import FieldState, warp_time
from shared.engine.plan import HubSpotSnapshot, WarpSnapshot
from shared.hubspot.models import HubSpotObject, parse_datetime
from shared.links import linked_id
from shared.mapping import ConflictRule, Direction, EntityType, MappingSet

# HubSpot's last-modified property differs by object type (hubspot-api.md §3.3).
LAST_MODIFIED_PROPERTY = {
    EntityType.CUSTOMER: "hs_lastmodifieddate",
    EntityType.CONTACT: "lastmodifieddate",
}


def read_properties(mappings: MappingSet, entity_type: EntityType) -> list[str]:
    """Every property a sync of these fields reads, plus the last-modified one."""
    return sorted({*mappings.hubspot_properties(), LAST_MODIFIED_PROPERTY[entity_type]})


def history_properties(mappings: MappingSet) -> list[str]:
    """Properties whose history a decision may need: a LATEST_WINS field's own change
    time, or the writer of a two-way field HubSpot does not own (its own writes are not
    edits: ``shared.conflicts.decide``).

    Asking for history costs response size, so only these get it; the others
    fall back to the record's last-modified time.
    """
    return sorted(
        {
            m.hubspot_property
            for m in mappings.active()
            if m.rule is ConflictRule.LATEST_WINS
            or (m.direction is Direction.BIDIRECTIONAL and m.rule is not ConflictRule.HUBSPOT_WINS)
        }
    )


def hubspot_snapshot(record: HubSpotObject, entity_type: EntityType) -> HubSpotSnapshot:
    """A snapshot of a record read with properties (and history where requested)."""
    times: dict[str, datetime] = {}
    sources: dict[str, str] = {}
    for name in record.properties_with_history:
        latest = record.latest_change(name)
        if latest is not None and latest.timestamp is not None:
            times[name] = latest.timestamp
        if latest is not None and latest.source_type is not None:
            sources[name] = latest.source_type
    modified = parse_datetime(record.properties.get(LAST_MODIFIED_PROPERTY[entity_type]))
    return HubSpotSnapshot(
        object_id=record.id,
        values=dict(record.properties),
        property_times=times,
        modified_at=modified or record.updated_at,
        property_sources=sources,
    )


def warp_snapshot(
    row: Mapping[str, Any],
    states: Mapping[str, FieldState],
    *,
    modified_at: datetime | None = None,
) -> WarpSnapshot:
    """A snapshot of a customers row, each field timed from its recorded state.

    A field's time is its own (:func:`shared.conflicts.warp_time`: its newest change
    message, else when it last crossed). Only a field that never crossed and was never
    named by a change message takes ``modified_at``, by default the row's
    ``updated_at``: with no agreement on record there is nothing better to go by.
    """
    times = {name: t for name, state in states.items() if (t := warp_time(state)) is not None}
    return WarpSnapshot(
        row=row, modified_at=modified_at or row.get("updated_at"), field_times=times
    )


def ids_to_read(rows: Iterable[Mapping[str, Any]], entity_type: EntityType) -> list[str]:
    """The linked HubSpot ids of these rows, for one batch read."""
    return [i for i in (linked_id(r, entity_type) for r in rows) if i]
