"""Per-field sync decisions: which side to write, or none, or a conflict (pure).

Values are compared in the field's canonical HubSpot form, so "1500.00" in WARP
and "1500" in HubSpot are the same value. A side *changed* when its value differs
from the value recorded for it when the field last crossed (``FieldState``).

- equal values: nothing to do;
- direction ``NONE``: nothing; one-way fields: the authoritative side wins;
- ``BIDIRECTIONAL``: if only one side changed it is written to the other (the
  unchanged side may just hold the echo of our own last write). If both changed,
  there is no state yet, or neither changed yet they differ (a mapping edit),
  the conflict rule decides: ``WARP_WINS``, ``HUBSPOT_WINS``, ``LATEST_WINS``
  (later ``modified_at`` wins, unknown is oldest, a tie goes to WARP because WARP
  is the system of record; WARP's time is the field's own, :func:`warp_time`) or
  ``MANUAL`` (a CONFLICT, nothing written; it stays one while ``is_in_conflict``
  until someone resolves it or the sides agree);
- ``unless_blank``: a blank winner never overwrites a filled value;
- HubSpot's own writes (:data:`HUBSPOT_AUTOMATIC_SOURCES`: enrichment, internal
  mappings) are not edits: on a ``BIDIRECTIONAL`` field whose rule is not
  ``HUBSPOT_WINS`` WARP's value stands and is written back over them
  (docs/sync-rules.md, "HubSpot's own writes").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Any

from shared.mapping import ConflictRule, Direction, FieldMapping

# changeSource / property-history sourceType values of writes HubSpot makes itself
# (docs/hubspot.md, "HubSpot writes records itself"): a guess of HubSpot's, not an
# edit by a person or an integration.
HUBSPOT_AUTOMATIC_SOURCES = frozenset({"HUBSPOT_INTERNAL", "DATA_ENRICHMENT"})


def written_by_hubspot(source: str | None) -> bool:
    """Whether HubSpot itself wrote a value (``source``: its changeSource or sourceType)."""
    return source in HUBSPOT_AUTOMATIC_SOURCES


class Action(StrEnum):
    """What to do with one field."""

    WRITE_HUBSPOT = "WRITE_HUBSPOT"
    WRITE_WARP = "WRITE_WARP"
    NOTHING = "NOTHING"
    CONFLICT = "CONFLICT"


class Side(StrEnum):
    """One of the two systems."""

    WARP = "warp"
    HUBSPOT = "hubspot"


@dataclass(frozen=True)
class SideValue:
    """A field's current value on one side, when it was last modified there and by whom.

    ``source`` is HubSpot's ``changeSource`` (webhook) or ``sourceType`` (history) of
    the value, where known.
    """

    value: Any
    modified_at: datetime | None = None
    source: str | None = None


@dataclass(frozen=True)
class FieldState:
    """What was recorded when the field last crossed (a ``hubspot_field_state`` row).

    ``warp_value`` is in WARP's representation, ``hubspot_value`` a HubSpot string.
    """

    warp_value: Any
    hubspot_value: str | None
    last_synced_at: datetime | None
    last_synced_direction: Direction | None
    last_modified_at_warp: datetime | None
    last_modified_at_hubspot: datetime | None
    is_in_conflict: bool = False
    # A value we were about to write to HubSpot whose outcome was never recorded
    # (the write-ahead record); HubSpot holding it is our doing, not a HubSpot edit.
    hubspot_pending: str | None = None
    # False for a row holding only such a write-ahead record: nothing crossed yet.
    recorded: bool = True
    # The newest ``occurred_at`` of a WARP change message naming this field: WARP's own
    # edit time for it. The sync's writes to WARP never set it (migration 0013).
    warp_changed_at: datetime | None = None


class ConflictKind(StrEnum):
    """Why a field's rule had to decide: what the conflicts metric tells apart."""

    # Both sides changed since the field last crossed (or differ though neither did).
    EDITED = "edited"
    # No sync state yet: the sides differed when first linked, nobody edited against us.
    FIRST_SYNC = "first_sync"
    # A MANUAL conflict still waiting for a person, seen again: counted once, when new.
    OPEN = "open"


@dataclass(frozen=True)
class Decision:
    """The outcome: the action, the value to write (HubSpot string or WARP value), why, who won."""

    action: Action
    value: Any = None
    reason: str = ""
    winner: Side | None = None
    # The rule that settled a conflict (both sides changed, or no state and they differ);
    # None when only one side changed. Metrics count conflicts by field and rule.
    resolved_by: ConflictRule | None = None
    conflict: ConflictKind | None = None
    # HubSpot's value wins, and would not if HubSpot wrote it itself: who wrote it is
    # unknown here (read without property history). See :func:`decide`.
    writer_unknown: bool = False

    @property
    def new_conflict(self) -> bool:
        """A conflict the rule settled or held now, not one already open."""
        return self.resolved_by is not None and self.conflict is not ConflictKind.OPEN


_NAME = {Side.WARP: "WARP", Side.HUBSPOT: "HubSpot"}


def _later(a: datetime | None, b: datetime | None) -> bool:
    """a is strictly later than b; None is older than any time, naive times are UTC."""
    if a is None:
        return False
    if b is None:
        return True
    return a.replace(tzinfo=a.tzinfo or UTC) > b.replace(tzinfo=b.tzinfo or UTC)


def warp_time(state: FieldState | None) -> datetime | None:
    """WARP's modification time of a field, from its recorded state; None when unknown.

    The newest change message naming the field, or the time the field last crossed
    (the sides agreed then, so WARP's value is no older), whichever is later. Never
    the row's ``updated_at``: the sync's own writes move that too, and a write of
    another field would then make an older WARP value beat a later HubSpot edit.
    """
    if state is None:
        return None
    agreed = state.last_synced_at if state.recorded else None
    return state.warp_changed_at if _later(state.warp_changed_at, agreed) else agreed


def awaits_warp_time(mapping: FieldMapping, state: FieldState | None, warp_value: Any) -> bool:
    """Whether a LATEST_WINS decision must wait for WARP's change message of this field.

    True when WARP's value differs from the one recorded when the field last crossed
    but no change message naming the field has arrived since: WARP changed it at a
    time not known yet. Deciding now would put that edit at the crossing time and let
    an older HubSpot edit overwrite it; its message (outbound sync) or reconciliation
    decides instead.
    """
    if (
        mapping.rule is not ConflictRule.LATEST_WINS
        or mapping.direction is not Direction.BIDIRECTIONAL
    ):
        return False
    if state is None or not state.recorded or state.is_in_conflict:
        return False
    if _later(state.warp_changed_at, state.last_synced_at):
        return False
    return mapping.canonical_warp(warp_value) != mapping.canonical_warp(state.warp_value)


def _forms(mapping: FieldMapping, warp_value: Any, hubspot_value: str | None) -> tuple[str, str]:
    return mapping.canonical_warp(warp_value), mapping.canonical_hubspot(hubspot_value)


def _write(
    mapping: FieldMapping,
    winner: Side,
    warp: SideValue,
    hubspot: SideValue,
    why: str,
    resolved_by: ConflictRule | None = None,
    conflict: ConflictKind | None = None,
) -> Decision:
    warp_form, hub_form = _forms(mapping, warp.value, hubspot.value)
    if mapping.unless_blank and (warp_form if winner is Side.WARP else hub_form) == "":
        loser = Side.HUBSPOT if winner is Side.WARP else Side.WARP
        return Decision(
            Action.NOTHING,
            reason=f"{why}; unless_blank: blank {_NAME[winner]} value "
            f"does not overwrite {_NAME[loser]}'s",
            resolved_by=resolved_by,
            conflict=conflict,
        )
    if winner is Side.WARP:
        value = mapping.to_hubspot(warp.value)
        return Decision(Action.WRITE_HUBSPOT, value, why, Side.WARP, resolved_by, conflict)
    value = mapping.to_warp(hubspot.value, warp.value)
    return Decision(Action.WRITE_WARP, value, why, Side.HUBSPOT, resolved_by, conflict)


def _echo(state: FieldState | None, toward: Side, unchanged: bool) -> str:
    """A note when a side still holds what we last wrote there, else ""."""
    wrote = Direction.WARP_TO_HUBSPOT if toward is Side.HUBSPOT else Direction.HUBSPOT_TO_WARP
    if state is not None and unchanged and state.last_synced_direction is wrote:
        return f"{_NAME[toward]} value is the echo of our last write"
    return ""


# Types whose equal values are indistinguishable, so they have one canonical form under
# any mapping. Not Decimal ("1.0" = "1.00"), float (0.0 = -0.0), datetime (equal instants
# in other zones) or containers (key order): those are compared by their forms.
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})


def same_form(
    canonical: Callable[[Any], str], recorded: Any, value: Any, form: str | None = None
) -> bool:
    """Whether ``value`` has ``recorded``'s canonical form (``form``: ``value``'s, if known).

    Most fields of a sync hold what their state recorded, value for value; those are
    told unchanged without converting either (a third of planning a reconciliation).
    """
    if _same_value(recorded, value):
        return True
    return canonical(recorded) == (canonical(value) if form is None else form)


def _same_value(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and type(a) in _PLAIN_TYPES and a == b)


@cache
def _in_sync(echo: str) -> Decision:
    # One shared (frozen) decision per reason: nearly every field of a sync is in sync.
    return Decision(Action.NOTHING, reason=f"in sync: {echo}" if echo else "in sync")


def holds_pending_write(mapping: FieldMapping, state: FieldState | None, hub_form: Any) -> bool:
    """HubSpot's value (in canonical form) is the write-ahead value we were about to write."""
    return (
        state is not None
        and state.hubspot_pending is not None
        and hub_form == mapping.canonical_hubspot(state.hubspot_pending)
    )


def lost_write(mapping: FieldMapping, state: FieldState | None, hubspot_value: Any) -> bool:
    """HubSpot holds our write-ahead value and the recorded state does not: the write
    happened, and the transaction that was to record it (and log it) never committed."""
    if state is None or state.hubspot_pending is None:
        return False
    hub_form = mapping.canonical_hubspot(hubspot_value)
    return holds_pending_write(mapping, state, hub_form) and not same_form(
        mapping.canonical_hubspot, state.hubspot_value, hubspot_value, hub_form
    )


def decide(
    mapping: FieldMapping, state: FieldState | None, warp: SideValue, hubspot: SideValue
) -> Decision:
    """The decision for one field given its recorded state and both current values.

    A decision that takes HubSpot's value on a two-way field that HubSpot does not
    own, without knowing who wrote that value, says so (``writer_unknown``): had
    HubSpot written it itself, WARP's value would stand. Batch syncs read the
    writers (property history) for those records and decide again.
    """
    decision = _decide(mapping, state, warp, hubspot)
    if (
        decision.winner is Side.HUBSPOT
        and hubspot.source is None
        and mapping.direction is Direction.BIDIRECTIONAL
        and mapping.rule is not ConflictRule.HUBSPOT_WINS
    ):
        return replace(decision, writer_unknown=True)
    return decision


def _decide(
    mapping: FieldMapping, state: FieldState | None, warp: SideValue, hubspot: SideValue
) -> Decision:
    warp_form, hub_form = _forms(mapping, warp.value, hubspot.value)
    warp_changed = hub_changed = True
    if state is not None and state.recorded:
        warp_changed = not same_form(
            mapping.canonical_warp, state.warp_value, warp.value, warp_form
        )
        hub_changed = not same_form(
            mapping.canonical_hubspot, state.hubspot_value, hubspot.value, hub_form
        )
    if holds_pending_write(mapping, state, hub_form):
        # HubSpot holds a value we wrote and never recorded (the flow died first): not a
        # HubSpot edit. WARP's value, when it differs, changed after that write: a webhook
        # may have brought in a HubSpot edit our write then overwrote (HubSpot has no
        # conditional write), and WARP's value carries it back.
        hub_changed, warp_changed = False, True
    if state is not None and not state.recorded:
        state = None  # only a write-ahead record: no baseline for the rules below

    if warp_form == hub_form:
        echo = _echo(state, Side.HUBSPOT, not hub_changed) or _echo(
            state, Side.WARP, not warp_changed
        )
        return _in_sync(echo)
    if mapping.direction is Direction.NONE:
        return Decision(Action.NOTHING, reason="not synced (direction NONE)")
    if mapping.direction is Direction.WARP_TO_HUBSPOT:
        return _write(mapping, Side.WARP, warp, hubspot, "WARP is authoritative (WARP_TO_HUBSPOT)")
    if mapping.direction is Direction.HUBSPOT_TO_WARP:
        return _write(
            mapping, Side.HUBSPOT, warp, hubspot, "HubSpot is authoritative (HUBSPOT_TO_WARP)"
        )

    if state is not None and state.is_in_conflict and mapping.rule is ConflictRule.MANUAL:
        return Decision(
            Action.CONFLICT,
            reason="unresolved manual conflict",
            resolved_by=ConflictRule.MANUAL,
            conflict=ConflictKind.OPEN,
        )
    if (
        hub_changed
        and written_by_hubspot(hubspot.source)
        and mapping.rule is not ConflictRule.HUBSPOT_WINS
    ):
        why = f"HubSpot's own write ({hubspot.source}) is not an edit: WARP's value stands"
        return _write(mapping, Side.WARP, warp, hubspot, why)
    if warp_changed != hub_changed:
        winner = Side.WARP if warp_changed else Side.HUBSPOT
        other = Side.HUBSPOT if warp_changed else Side.WARP
        echo = _echo(state, other, unchanged=True)
        why = f"changed in {_NAME[winner]}" + (f" ({echo})" if echo else "")
        return _write(mapping, winner, warp, hubspot, why)

    kind = ConflictKind.FIRST_SYNC if state is None else ConflictKind.EDITED
    if state is None:
        why = "no sync state yet, values differ"
    elif warp_changed:
        why = "both sides changed since last sync"
    else:
        why = "values differ though neither changed since last sync"
    rule = mapping.rule
    if rule is ConflictRule.WARP_WINS:
        return _write(mapping, Side.WARP, warp, hubspot, f"{why}; WARP_WINS", rule, kind)
    if rule is ConflictRule.HUBSPOT_WINS:
        return _write(mapping, Side.HUBSPOT, warp, hubspot, f"{why}; HUBSPOT_WINS", rule, kind)
    if rule is ConflictRule.LATEST_WINS:
        if _later(hubspot.modified_at, warp.modified_at):
            why = f"{why}; LATEST_WINS: HubSpot is newer"
            return _write(mapping, Side.HUBSPOT, warp, hubspot, why, rule, kind)
        why = f"{why}; LATEST_WINS: WARP is newer or tied"
        return _write(mapping, Side.WARP, warp, hubspot, why, rule, kind)
    return Decision(
        Action.CONFLICT,
        reason=f"{why}; MANUAL: waiting for resolve-conflict",
        resolved_by=ConflictRule.MANUAL,
        conflict=kind,
    )


def state_after(
    decision: Decision,
    mapping: FieldMapping,
    warp: SideValue,
    hubspot: SideValue,
    now: datetime,
    previous: FieldState | None = None,
) -> FieldState:
    """The field state to record once ``decision`` has been applied at ``now``.

    ``previous`` is the state the decision was made from: a CONFLICT keeps its
    values (both sides still count as changed since then) and a NOTHING for
    differing values (direction NONE, ``unless_blank``) keeps it whole.
    """
    if decision.action is Action.WRITE_HUBSPOT:
        return FieldState(
            warp.value, decision.value, now, Direction.WARP_TO_HUBSPOT, warp.modified_at, now
        )
    if decision.action is Action.WRITE_WARP:
        return FieldState(
            decision.value, hubspot.value, now, Direction.HUBSPOT_TO_WARP, now, hubspot.modified_at
        )
    if decision.action is Action.CONFLICT:
        base = previous or FieldState(None, None, None, None, None, None)
        return replace(
            base,
            is_in_conflict=True,
            recorded=True,
            last_modified_at_warp=warp.modified_at,
            last_modified_at_hubspot=hubspot.modified_at,
        )
    warp_form, hub_form = _forms(mapping, warp.value, hubspot.value)
    if warp_form != hub_form and previous is not None:
        return previous
    return FieldState(
        warp.value,
        hubspot.value,
        now,
        previous.last_synced_direction if previous else None,
        warp.modified_at,
        hubspot.modified_at,
    )
