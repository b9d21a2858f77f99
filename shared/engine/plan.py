"""Planning one record's sync (pure): both sides in, the writes and new field states out.

Every flow (outbound messages, inbound webhooks, reconciliation, the API's
"sync now") builds a :class:`WarpSnapshot` and a :class:`HubSpotSnapshot`, loads
the field states, and calls :func:`plan_sync`. The plan says what to write to
HubSpot (property strings), what to write to WARP (whole column values, JSONB
documents merged key by key) and the state to record per field. A flow passes
the actions it may carry out (``allowed``); a decision outside them is reported
as skipped with the reason, so nothing is silently dropped.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from shared.conflicts import (
    Action,
    Decision,
    FieldState,
    Side,
    SideValue,
    decide,
    lost_write,
    same_form,
    state_after,
)
from shared.mapping import ConflictRule, FieldMapping, MappingError, MappingSet

ALL_ACTIONS = frozenset(Action)
_RECOVERED = "our write reached HubSpot, and the transaction recording it did not commit"
_WRITES = (Action.WRITE_HUBSPOT, Action.WRITE_WARP)


@dataclass(frozen=True)
class WarpSnapshot:
    """A ``accounts.customers`` row and when its values last changed in WARP.

    ``field_times`` holds each field's own time (its newest change message, else when
    it last crossed: :func:`shared.conflicts.warp_time`); ``modified_at`` stands in
    for a field without one (the change message's ``occurred_at`` in outbound flows,
    else the row's ``updated_at``).
    """

    row: Mapping[str, Any]
    modified_at: datetime | None
    field_times: Mapping[str, datetime] = field(default_factory=dict)

    def side(self, mapping: FieldMapping, row: Mapping[str, Any] | None = None) -> SideValue:
        """The field's current value and time (from ``row`` when given: a working copy)."""
        value = mapping.read_warp(self.row if row is None else row)
        return SideValue(value, self.field_times.get(mapping.name, self.modified_at))


@dataclass(frozen=True)
class HubSpotSnapshot:
    """A HubSpot record's property strings and, where known, when each last changed.

    Per-property times come from ``propertiesWithHistory`` (newest entry) or a
    webhook's ``occurredAt``; ``modified_at`` (``hs_lastmodifieddate``) stands in
    for properties without one. ``property_sources`` says who wrote a value, from
    the same places (``sourceType``, ``changeSource``).
    """

    object_id: str
    values: Mapping[str, str | None]
    property_times: Mapping[str, datetime] = field(default_factory=dict)
    modified_at: datetime | None = None
    property_sources: Mapping[str, str] = field(default_factory=dict)

    def side(self, mapping: FieldMapping) -> SideValue:
        """The property's value, time and writer for ``mapping``."""
        prop = mapping.hubspot_property
        return SideValue(
            self.values.get(prop),
            self.property_times.get(prop, self.modified_at),
            self.property_sources.get(prop),
        )

    def has(self, mapping: FieldMapping) -> bool:
        """Whether the snapshot carries the property at all (a webhook carries one)."""
        return mapping.hubspot_property in self.values


@dataclass(frozen=True)
class FieldResult:
    """What happened to one field: the decision, and whether this flow carried it out."""

    field: str
    hubspot_property: str
    decision: Decision
    warp_before: Any
    hubspot_before: str | None
    applied: bool
    note: str = ""

    @property
    def action(self) -> Action:
        return self.decision.action


@dataclass
class Plan:
    """The writes and states that bring one record in step.

    Results go in through :meth:`add`, which also files them as changed, conflict
    or skipped: those lists are read several times per record (report, log, sync
    log), so they are kept rather than filtered again each time.
    """

    object_id: str
    results: list[FieldResult] = field(default_factory=list)
    hubspot_updates: dict[str, str] = field(default_factory=dict)
    warp_updates: dict[str, Any] = field(default_factory=dict)
    states: dict[str, FieldState] = field(default_factory=dict)
    changed: list[FieldResult] = field(default_factory=list)
    """Fields written to either side."""
    conflicts: list[FieldResult] = field(default_factory=list)
    """Fields held for manual resolution."""
    skipped: list[FieldResult] = field(default_factory=list)
    """Fields this flow decided not to write, with their reasons."""
    recovered: list[FieldResult] = field(default_factory=list)
    """Earlier HubSpot writes of ours that were never recorded (the connection died
    after HubSpot accepted them): logged when this plan records their fields."""

    def add(self, result: FieldResult) -> None:
        """Record one field's result."""
        self.results.append(result)
        if not result.applied:
            self.skipped.append(result)
        elif result.action in _WRITES:
            self.changed.append(result)
        if result.action is Action.CONFLICT:
            self.conflicts.append(result)

    @property
    def is_noop(self) -> bool:
        return not self.hubspot_updates and not self.warp_updates

    @property
    def needs_history(self) -> bool:
        """Whether a decision here depends on what only HubSpot's property history says.

        A LATEST_WINS rule that compared modification times needs each property's own
        time; a HubSpot value taken without knowing its writer needs the writer
        (HubSpot's own writes are not edits). Every other decision is the same
        whatever the history, so only these records are read again with it.
        """
        return any(
            r.decision.resolved_by is ConflictRule.LATEST_WINS or r.decision.writer_unknown
            for r in self.results
        )


def plan_sync(
    mappings: MappingSet,
    warp: WarpSnapshot,
    hubspot: HubSpotSnapshot,
    states: Mapping[str, FieldState],
    *,
    now: datetime,
    fields: Collection[str] | None = None,
    allowed: Collection[Action] = ALL_ACTIONS,
) -> Plan:
    """Decide every mapped field (or just ``fields``) and collect the writes.

    Fields whose HubSpot property the snapshot does not carry are left out: a
    webhook speaks for one property, and "absent" is not "blank". WARP writes are
    applied to a working copy of the row one after the other, so two fields that
    share a JSONB column (or a name split into first and last) compose.
    """
    plan = Plan(object_id=hubspot.object_id)
    working: dict[str, Any] | None = None  # a copy of the row once a field writes WARP
    for mapping in mappings.active():
        if fields is not None and mapping.name not in fields:
            continue
        if not hubspot.has(mapping):
            continue
        warp_side = warp.side(mapping)
        hub_side = hubspot.side(mapping)
        previous = states.get(mapping.name)
        try:
            decision = decide(mapping, previous, warp_side, hub_side)
        except MappingError as exc:
            decision = Decision(Action.NOTHING, reason=f"cannot map value: {exc}")
            plan.add(_result(mapping, warp_side, hub_side, decision, False, decision.reason))
            continue
        if decision.action in _WRITES and decision.action not in allowed:
            note = _not_here(decision.action)
            plan.add(_result(mapping, warp_side, hub_side, decision, False, note))
            continue
        if decision.action is Action.WRITE_HUBSPOT:
            plan.hubspot_updates[mapping.hubspot_property] = decision.value
        elif decision.action is Action.WRITE_WARP:
            if working is None:
                working = dict(warp.row)
            # Recompute against the working copy: an earlier field may have changed it.
            value = mapping.to_warp(hub_side.value, mapping.read_warp(working))
            column, column_value = mapping.write_warp(working, value)
            working[column] = column_value
            plan.warp_updates[column] = column_value
            decision = replace(decision, value=value)
        plan.add(_result(mapping, warp_side, hub_side, decision, True))
        if decision.action is Action.NOTHING and _unchanged(mapping, previous, warp_side, hub_side):
            continue  # in sync and already recorded so: no state write
        if previous is not None and lost_write(mapping, previous, hub_side.value):
            # Recording this field's state clears the write-ahead value: log its write
            # in the same transaction, or no row would ever say it happened.
            written = Decision(Action.WRITE_HUBSPOT, hub_side.value, _RECOVERED, Side.WARP)
            plan.recovered.append(
                FieldResult(
                    mapping.name,
                    mapping.hubspot_property,
                    written,
                    warp_side.value,
                    previous.hubspot_value,
                    True,
                    _RECOVERED,
                )
            )
        plan.states[mapping.name] = state_after(
            decision, mapping, warp_side, hub_side, now, previous
        )
    return plan


K = TypeVar("K")


def plan_order(sets: Mapping[K, MappingSet]) -> list[K]:
    """The order to plan one customer's entities in (the keys of ``sets``).

    A plan decides from the WARP row it is given, and each plan is given the row with
    the earlier plans' WARP writes. So an entity that reads a WARP value another
    entity's plan may write (the company's domain derives from the contact's email)
    is planned after that entity, and one sync reaches the fixed point instead of
    leaving the derived value for the next one. Entities that feed each other
    (each writes a value the other reads) keep their given order: no order serves
    both, and the next sync carries what this one could not.
    """
    order: list[K] = []
    left = list(sets)
    while left:
        ready = [k for k in left if not any(sets[o].feeds(sets[k]) for o in left if o != k)]
        chosen = ready[0] if ready else left[0]
        order.append(chosen)
        left.remove(chosen)
    return order


def _result(
    mapping: FieldMapping,
    warp: SideValue,
    hubspot: SideValue,
    decision: Decision,
    applied: bool,
    note: str = "",
) -> FieldResult:
    return FieldResult(
        mapping.name, mapping.hubspot_property, decision, warp.value, hubspot.value, applied, note
    )


def _unchanged(
    mapping: FieldMapping, previous: FieldState | None, warp: SideValue, hubspot: SideValue
) -> bool:
    """Both values equal what the state recorded (and the state is not a conflict)."""
    if previous is None or previous.is_in_conflict:
        return False
    return same_form(mapping.canonical_warp, previous.warp_value, warp.value) and same_form(
        mapping.canonical_hubspot, previous.hubspot_value, hubspot.value
    )


def _not_here(action: Action) -> str:
    if action is Action.WRITE_HUBSPOT:
        return "WARP holds the newer value; outbound sync carries it to HubSpot"
    if action is Action.WRITE_WARP:
        return "HubSpot holds the newer value; inbound sync carries it to WARP"
    return f"{action} not carried out by this flow"
