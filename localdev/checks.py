"""The demo's final check: every mapped field of every linked customer equal on both sides.

It reads WARP rows and HubSpot records afresh (batch reads, 100 a call) and compares
each active field in the mapping's canonical form, the form the conflict rules
compare (``"1500.00"`` equals ``"1500"``, blank equals missing). A field left
unequal on purpose is not a failure: one in an open MANUAL conflict (it waits for a
person), and an ``unless_blank`` field whose one side is blank.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.db.repositories import customers, field_state
from shared.engine import Engine
from shared.links import linked_id
from shared.mapping import EntityType, FieldMapping

_PAGE = 500


@dataclass(frozen=True)
class Mismatch:
    """One field that differs (values in canonical form; no personal data is printed)."""

    customer_id: str
    entity_type: str
    field: str
    warp: str
    hubspot: str


@dataclass
class ConsistencyReport:
    """What :func:`check_consistency` compared and found."""

    customers: int = 0
    records: int = 0
    fields_compared: int = 0
    in_open_conflict: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    missing_records: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every compared field agreed and every linked record exists."""
        return not self.mismatches and not self.missing_records


def compare_field(
    mapping: FieldMapping, row: Mapping[str, Any], hubspot_value: str | None
) -> tuple[str, str] | None:
    """The two canonical forms when they differ in a way that counts, else None."""
    warp_form = mapping.canonical_hubspot(mapping.to_hubspot(mapping.read_warp(row)))
    hub_form = mapping.canonical_hubspot(hubspot_value)
    if warp_form == hub_form or (mapping.unless_blank and "" in (warp_form, hub_form)):
        return None
    return warp_form, hub_form


def linked_rows(engine: Engine, only: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Every customer linked to a company (sync enabled), or only those in ``only``."""
    with engine.database.transaction() as tx:
        if only is not None:
            chosen = customers.get_many(tx, list(only))
            return [r for r in chosen if linked_id(r, EntityType.CUSTOMER)]
        rows: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = customers.page_linked(tx, after, _PAGE)
            rows += page
            if len(page) < _PAGE:
                return rows
            after = str(page[-1]["id"])


def check_consistency(engine: Engine, only: Sequence[str] | None = None) -> ConsistencyReport:
    """Compare every active mapped field of every linked customer (or of ``only``)."""
    rows = linked_rows(engine, only)
    report = ConsistencyReport(customers=len(rows))
    with engine.database.transaction() as tx:
        conflicts = {
            (str(s["entity_id"]), str(s["field_name"]))
            for s in field_state.open_conflicts(tx, limit=100_000)
        }
    for entity_type in EntityType:
        object_type = entity_type.object_type
        by_object: dict[str, dict[str, Any]] = {}
        for row in rows:
            object_id = linked_id(row, entity_type)
            if object_id:
                by_object[str(object_id)] = row
        if not by_object:
            continue
        fields_of = {
            str(row["id"]): engine.mapping_for(str(row["id"]), entity_type)
            .for_entity(entity_type)
            .active()
            for row in by_object.values()
        }
        properties = sorted({f.hubspot_property for fs in fields_of.values() for f in fs})
        found = engine.hubspot.objects(object_type).batch_read(
            list(by_object), properties=properties
        )
        for object_id, row in by_object.items():
            customer_id = str(row["id"])
            record = found.results.get(object_id)
            if record is None or record.archived:
                report.missing_records.append((customer_id, entity_type.value, object_id))
                continue
            report.records += 1
            for mapping in fields_of[customer_id]:
                if (customer_id, mapping.name) in conflicts:
                    report.in_open_conflict += 1
                    continue
                report.fields_compared += 1
                differs = compare_field(
                    mapping, row, record.properties.get(mapping.hubspot_property)
                )
                if differs is not None:
                    report.mismatches.append(
                        Mismatch(customer_id, entity_type.value, mapping.name, *differs)
                    )
    return report
