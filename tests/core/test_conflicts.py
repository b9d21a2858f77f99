"""Per-field decisions: every rule and direction by example, the invariants as properties."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shared.conflicts import (
    Action,
    ConflictKind,
    FieldState,
    Side,
    SideValue,
    awaits_warp_time,
    decide,
    state_after,
    warp_time,
)
from shared.engine.plan import HubSpotSnapshot, plan_sync
from shared.engine.snapshots import warp_snapshot
from shared.mapping import ConflictRule, Direction, EntityType, FieldMapping, MappingSet

T0 = datetime(2024, 1, 1, tzinfo=UTC)
EARLY, LATE = T0 + timedelta(hours=1), T0 + timedelta(hours=2)


def mapping(
    direction: Direction = Direction.BIDIRECTIONAL,
    rule: ConflictRule = ConflictRule.LATEST_WINS,
    *,
    unless_blank: bool = False,
    kind: str = "text",
) -> FieldMapping:
    column, path, transform, args = {
        "text": ("company_name", (), None, {}),
        "cents": ("credit_limit", (), "multiply_by_100", {}),
        "enum": ("status", (), "enum_map", {"map": {"ACTIVE": "active", "CLOSED": "closed"}}),
        "last_name": ("contact", ("name",), "last_name", {}),
    }[kind]
    return FieldMapping(
        name="f",
        entity_type=EntityType.CUSTOMER,
        hubspot_property="p",
        warp_column=column,
        warp_path=path,
        direction=direction,
        rule=rule,
        transform=transform,
        transform_args=args,
        unless_blank=unless_blank,
    )


def synced(warp: Any, hubspot: str | None, direction: Direction | None = None) -> FieldState:
    return FieldState(warp, hubspot, T0, direction, T0, T0)


def test_equal_values_are_in_sync() -> None:
    cents = mapping(kind="cents")
    decision = decide(cents, None, SideValue(Decimal("15.00")), SideValue("1500"))
    assert (decision.action, decision.reason) == (Action.NOTHING, "in sync")
    assert decide(mapping(), None, SideValue(None), SideValue("")).action is Action.NOTHING


def test_echo_of_our_own_write_is_recognised() -> None:
    state = synced("Acme", "Acme", Direction.WARP_TO_HUBSPOT)
    echo = decide(mapping(), state, SideValue("Acme"), SideValue("Acme"))
    assert echo.action is Action.NOTHING and "echo" in echo.reason
    # WARP moved on while HubSpot still holds what we wrote: WARP changed, not a conflict.
    moved = decide(mapping(), state, SideValue("Acme Ltd"), SideValue("Acme"))
    assert moved.action is Action.WRITE_HUBSPOT and moved.value == "Acme Ltd"
    assert "echo" in moved.reason


def test_direction_none_does_nothing() -> None:
    decision = decide(mapping(Direction.NONE), None, SideValue("a"), SideValue("b"))
    assert decision.action is Action.NOTHING and "NONE" in decision.reason


@pytest.mark.parametrize("rule", list(ConflictRule))
def test_one_way_fields_follow_their_authoritative_side(rule: ConflictRule) -> None:
    both_changed = synced("old", "old")
    out = decide(
        mapping(Direction.WARP_TO_HUBSPOT, rule), both_changed, SideValue("w"), SideValue("h", LATE)
    )
    assert (out.action, out.value, out.winner) == (Action.WRITE_HUBSPOT, "w", Side.WARP)
    inbound = decide(
        mapping(Direction.HUBSPOT_TO_WARP, rule), both_changed, SideValue("w", LATE), SideValue("h")
    )
    assert (inbound.action, inbound.value, inbound.winner) == (Action.WRITE_WARP, "h", Side.HUBSPOT)


@pytest.mark.parametrize("rule", list(ConflictRule))
def test_one_sided_change_is_written_across_whatever_the_rule(rule: ConflictRule) -> None:
    state = synced("old", "old")
    warp_side = decide(mapping(rule=rule), state, SideValue("new"), SideValue("old"))
    assert (warp_side.action, warp_side.value, warp_side.reason) == (
        Action.WRITE_HUBSPOT,
        "new",
        "changed in WARP",
    )
    hub_side = decide(mapping(rule=rule), state, SideValue("old"), SideValue("new"))
    assert (hub_side.action, hub_side.value) == (Action.WRITE_WARP, "new")


@pytest.mark.parametrize(
    ("rule", "warp_at", "hub_at", "action", "winner"),
    [
        (ConflictRule.WARP_WINS, EARLY, LATE, Action.WRITE_HUBSPOT, Side.WARP),
        (ConflictRule.HUBSPOT_WINS, LATE, EARLY, Action.WRITE_WARP, Side.HUBSPOT),
        (ConflictRule.LATEST_WINS, EARLY, LATE, Action.WRITE_WARP, Side.HUBSPOT),
        (ConflictRule.LATEST_WINS, LATE, EARLY, Action.WRITE_HUBSPOT, Side.WARP),
        (ConflictRule.LATEST_WINS, LATE, LATE, Action.WRITE_HUBSPOT, Side.WARP),  # tie: WARP
        (ConflictRule.LATEST_WINS, None, EARLY, Action.WRITE_WARP, Side.HUBSPOT),  # None oldest
        (ConflictRule.LATEST_WINS, EARLY, None, Action.WRITE_HUBSPOT, Side.WARP),
        (ConflictRule.LATEST_WINS, None, None, Action.WRITE_HUBSPOT, Side.WARP),
        (ConflictRule.MANUAL, EARLY, LATE, Action.CONFLICT, None),
    ],
)
def test_both_changed_is_resolved_by_the_rule(
    rule: ConflictRule,
    warp_at: datetime | None,
    hub_at: datetime | None,
    action: Action,
    winner: Side | None,
) -> None:
    state = synced("old", "old")
    decision = decide(mapping(rule=rule), state, SideValue("w", warp_at), SideValue("h", hub_at))
    assert (decision.action, decision.winner) == (action, winner)
    assert "both sides changed" in decision.reason and rule in decision.reason
    # Without any state the same rule decides.
    assert (
        decide(mapping(rule=rule), None, SideValue("w", warp_at), SideValue("h", hub_at)).action
        is action
    )


def test_latest_wins_compares_naive_times_as_utc() -> None:
    naive_late = datetime(2024, 1, 1, 2)
    decision = decide(mapping(), None, SideValue("w", EARLY), SideValue("h", naive_late))
    assert decision.winner is Side.HUBSPOT


def test_values_differ_though_neither_changed_uses_the_rule() -> None:
    # e.g. a transform was added to the mapping after the field last crossed
    state = synced(Decimal("15.00"), "15")
    decision = decide(
        mapping(rule=ConflictRule.WARP_WINS, kind="cents"),
        state,
        SideValue(Decimal("15.00")),
        SideValue("15"),
    )
    assert (decision.action, decision.value) == (Action.WRITE_HUBSPOT, "1500")
    assert "neither changed" in decision.reason


def test_unless_blank_keeps_filled_values() -> None:
    keep = mapping(rule=ConflictRule.WARP_WINS, unless_blank=True)
    blank_warp = decide(keep, synced("x", "x"), SideValue(None), SideValue("x"))
    assert blank_warp.action is Action.NOTHING and "unless_blank" in blank_warp.reason
    blank_hub = decide(keep, synced("x", "x"), SideValue("x"), SideValue(""))
    assert blank_hub.action is Action.NOTHING
    one_way = mapping(Direction.WARP_TO_HUBSPOT, unless_blank=True)
    assert decide(one_way, None, SideValue(""), SideValue("filled")).action is Action.NOTHING
    # A filled value still overwrites a blank one.
    assert decide(keep, None, SideValue("w"), SideValue(None)).action is Action.WRITE_HUBSPOT


def test_manual_conflict_stays_until_resolved_or_sides_agree() -> None:
    manual = mapping(rule=ConflictRule.MANUAL)
    first = decide(manual, synced("old", "old"), SideValue("w"), SideValue("h"))
    assert first.action is Action.CONFLICT
    state = state_after(
        first, manual, SideValue("w"), SideValue("h"), LATE, previous=synced("old", "old")
    )
    assert state.is_in_conflict and state.warp_value == "old"
    # HubSpot changes again; WARP does not: still a conflict, not a one-sided change.
    again = decide(manual, state, SideValue("w"), SideValue("h2"))
    assert again.action is Action.CONFLICT and "unresolved" in again.reason
    agreed = decide(manual, state, SideValue("same"), SideValue("same"))
    assert agreed.action is Action.NOTHING
    cleared = state_after(
        agreed, manual, SideValue("same"), SideValue("same"), LATE, previous=state
    )
    assert not cleared.is_in_conflict and cleared.warp_value == "same"


@pytest.mark.parametrize("rule", list(ConflictRule))
def test_a_conflict_says_whether_it_came_from_edits_or_a_first_sync(rule: ConflictRule) -> None:
    field = mapping(rule=rule)
    first = decide(field, None, SideValue("w", EARLY), SideValue("h", LATE))
    edited = decide(field, synced("old", "old"), SideValue("w", EARLY), SideValue("h", LATE))
    one_sided = decide(field, synced("old", "old"), SideValue("w", EARLY), SideValue("old"))
    assert (first.conflict, edited.conflict) == (ConflictKind.FIRST_SYNC, ConflictKind.EDITED)
    assert first.new_conflict and edited.new_conflict
    assert one_sided.conflict is None and not one_sided.new_conflict


def test_an_open_manual_conflict_seen_again_is_not_a_new_one() -> None:
    manual = mapping(rule=ConflictRule.MANUAL)
    first = decide(manual, synced("old", "old"), SideValue("w"), SideValue("h"))
    state = state_after(
        first, manual, SideValue("w"), SideValue("h"), LATE, previous=synced("old", "old")
    )
    again = decide(manual, state, SideValue("w"), SideValue("h2"))
    assert again.conflict is ConflictKind.OPEN and not again.new_conflict


def test_write_warp_value_keeps_the_rest_of_a_name() -> None:
    last = mapping(kind="last_name")
    decision = decide(last, synced("Jane Doe", "Doe"), SideValue("Jane Doe"), SideValue("Roe"))
    assert (decision.action, decision.value) == (Action.WRITE_WARP, "Jane Roe")


def test_state_after_records_what_crossed() -> None:
    m = mapping()
    warp, hub = SideValue("w", EARLY), SideValue("h", LATE)
    out = decide(m, synced("old", "h"), warp, hub)
    state = state_after(out, m, warp, hub, LATE)
    assert state == FieldState("w", "w", LATE, Direction.WARP_TO_HUBSPOT, EARLY, LATE)
    inbound = decide(m, synced("w", "old"), warp, hub)
    state = state_after(inbound, m, warp, hub, LATE)
    assert state == FieldState("h", "h", LATE, Direction.HUBSPOT_TO_WARP, LATE, LATE)


# -- properties ------------------------------------------------------------------------

KINDS: dict[str, st.SearchStrategy[Any]] = {
    "text": st.one_of(st.none(), st.text(max_size=8)),
    "cents": st.one_of(st.none(), st.decimals(min_value=-1000, max_value=1000, places=2)),
    "enum": st.sampled_from([None, "ACTIVE", "CLOSED"]),
    # Two-word names: a blank or one-word name cannot hold a last name alone (documented).
    "last_name": st.tuples(
        st.sampled_from(["Ann", "Bo"]), st.sampled_from(["Lee", "Roe", "Ng"])
    ).map(" ".join),
}
times = st.one_of(st.none(), st.datetimes(timezones=st.just(UTC)))


@st.composite
def scenarios(
    draw: st.DrawFn, rule: ConflictRule | None = None, direction: Direction | None = None
) -> tuple[FieldMapping, FieldState | None, SideValue, SideValue]:
    kind = draw(st.sampled_from(sorted(KINDS)))
    m = mapping(
        direction or draw(st.sampled_from(list(Direction))),
        rule or draw(st.sampled_from(list(ConflictRule))),
        unless_blank=draw(st.booleans()),
        kind=kind,
    )
    values = KINDS[kind]
    # HubSpot values are what WARP values look like in HubSpot, so both sides share a domain.
    warp = SideValue(draw(values), draw(times))
    hubspot = SideValue(m.to_hubspot(draw(values)), draw(times))
    state = None
    if draw(st.booleans()):
        state = FieldState(
            draw(values),
            m.to_hubspot(draw(values)),
            draw(times),
            draw(st.sampled_from([None, Direction.WARP_TO_HUBSPOT, Direction.HUBSPOT_TO_WARP])),
            draw(times),
            draw(times),
            draw(st.booleans()),
        )
    return m, state, warp, hubspot


@given(scenarios())
def test_never_writes_toward_a_forbidden_side(scenario: tuple) -> None:
    m, state, warp, hubspot = scenario
    decision = decide(m, state, warp, hubspot)
    if decision.action is Action.WRITE_HUBSPOT:
        assert m.direction.allows_outbound
    if decision.action is Action.WRITE_WARP:
        assert m.direction.allows_inbound


@given(scenarios(ConflictRule.MANUAL, Direction.BIDIRECTIONAL))
def test_manual_never_writes_when_both_sides_changed(scenario: tuple) -> None:
    m, state, warp, hubspot = scenario
    if state is not None:
        assume(
            m.canonical_hubspot(m.to_hubspot(state.warp_value))
            != m.canonical_hubspot(m.to_hubspot(warp.value))
        )
        assume(m.canonical_hubspot(state.hubspot_value) != m.canonical_hubspot(hubspot.value))
    assert decide(m, state, warp, hubspot).action in (Action.CONFLICT, Action.NOTHING)


@given(scenarios(), st.datetimes(timezones=st.just(UTC)))
def test_deciding_again_after_applying_a_decision_does_nothing(
    scenario: tuple, now: datetime
) -> None:
    m, state, warp, hubspot = scenario
    decision = decide(m, state, warp, hubspot)
    assume(decision.action is not Action.CONFLICT)
    if decision.action is Action.WRITE_HUBSPOT:
        hubspot = SideValue(decision.value, now)
    elif decision.action is Action.WRITE_WARP:
        warp = SideValue(decision.value, now)
    new_state = state_after(decision, m, warp, hubspot, now, previous=state)
    assert decide(m, new_state, warp, hubspot).action is Action.NOTHING


# -- WARP's time of a field --------------------------------------------------------------


def test_warp_time_is_the_newest_message_or_the_last_crossing() -> None:
    crossed = synced("a", "a")  # crossed at T0
    assert warp_time(replace(crossed, warp_changed_at=LATE)) == LATE
    assert warp_time(replace(crossed, warp_changed_at=T0 - timedelta(hours=1))) == T0
    assert warp_time(crossed) == T0
    # Only a write-ahead record: nothing crossed, so only a message can tell.
    pending = replace(crossed, recorded=False, last_synced_at=None)
    assert warp_time(pending) is None
    assert warp_time(replace(pending, warp_changed_at=EARLY)) == EARLY
    assert warp_time(None) is None


def test_a_decision_waits_for_warps_message_only_when_its_time_matters() -> None:
    latest, crossed = mapping(), synced("a", "a")  # crossed at T0
    assert awaits_warp_time(latest, crossed, "b")  # WARP changed, no message since
    assert not awaits_warp_time(latest, replace(crossed, warp_changed_at=EARLY), "b")
    assert not awaits_warp_time(latest, crossed, "a")  # WARP did not change
    assert not awaits_warp_time(latest, None, "b")  # nothing crossed: no baseline
    assert not awaits_warp_time(mapping(rule=ConflictRule.WARP_WINS), crossed, "b")
    assert not awaits_warp_time(mapping(Direction.WARP_TO_HUBSPOT), crossed, "b")


def _pair() -> MappingSet:
    """A LATEST_WINS name and a HUBSPOT_WINS credit limit of one company."""
    name = mapping()
    limit = replace(
        mapping(rule=ConflictRule.HUBSPOT_WINS, kind="cents"), name="g", hubspot_property="q"
    )
    return MappingSet(EntityType.CUSTOMER, {"f": name, "g": limit})


@given(
    agreed=st.datetimes(timezones=st.just(UTC)),
    message=times,
    hubspot_at=times,
    row_at=times,
    recorded_g=st.datetimes(timezones=st.just(UTC)),
)
def test_latest_wins_compares_the_fields_own_warp_time_not_the_rows(
    agreed: datetime,
    message: datetime | None,
    hubspot_at: datetime | None,
    row_at: datetime | None,
    recorded_g: datetime,
) -> None:
    # Both sides changed the name since it crossed at ``agreed``; the sync has since
    # written the credit limit to WARP at any time at all, so the row's time says nothing.
    pair = _pair()
    states = {
        "f": replace(synced("Old", "Old"), last_synced_at=agreed, warp_changed_at=message),
        "g": replace(
            synced(Decimal("10.00"), "1000", Direction.HUBSPOT_TO_WARP), last_synced_at=recorded_g
        ),
    }
    row = {"company_name": "WARP", "credit_limit": Decimal("10.00"), "updated_at": row_at}
    hubspot = HubSpotSnapshot(
        "1", {"p": "HubSpot", "q": "1000"}, {"p": hubspot_at} if hubspot_at else {}
    )
    plan = plan_sync(pair, warp_snapshot(row, states), hubspot, states, now=T0)
    warp_at = max(t for t in (agreed, message) if t is not None)
    hubspot_newer = hubspot_at is not None and hubspot_at > warp_at
    (result,) = [r for r in plan.results if r.field == "f"]
    assert result.action is (Action.WRITE_WARP if hubspot_newer else Action.WRITE_HUBSPOT)
    assert result.decision.resolved_by is ConflictRule.LATEST_WINS


# -- the unchanged-value shortcut ----------------------------------------------------------

# Values that compare equal across types and representations are where a shortcut
# taken on equality would go wrong: 1 = 1.0 = True = Decimal("1.00"), 0.0 = -0.0,
# one instant in two time zones.
tricky = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "0", "1", "1.0", "-0", "ACTIVE", "active", "Ann Lee", "Bo Ng"]),
    st.text(max_size=5),
    st.integers(-2, 2),
    st.booleans(),
    st.floats(),
    st.decimals(),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))])),
)


def _twins(value: Any) -> list[Any]:
    """``value`` and values equal to it: other types, other objects, other zones."""
    twins = [value, copy.copy(value)]
    if isinstance(value, str):
        twins.append("".join(list(value)))  # an equal string that is another object
    with contextlib.suppress(ValueError, ArithmeticError):  # none finite or in range
        if isinstance(value, bool | int | float | Decimal):
            twins += [int(value), float(value), Decimal(value), Decimal(value).scaleb(-2).scaleb(2)]
        if isinstance(value, datetime):
            twins.append(value.astimezone(timezone(timedelta(hours=-5))))
    return [t for t in twins if t is value or t == value]


@st.composite
def near_states(draw: st.DrawFn) -> tuple[FieldMapping, FieldState | None, SideValue, SideValue]:
    """Scenarios whose recorded values are mostly the current ones, or equal to them."""
    m = mapping(
        draw(st.sampled_from(list(Direction))),
        draw(st.sampled_from(list(ConflictRule))),
        unless_blank=draw(st.booleans()),
        kind=draw(st.sampled_from(sorted(KINDS))),
    )
    warp = SideValue(draw(tricky), draw(times))
    hubspot = SideValue(draw(st.one_of(tricky, st.text(max_size=5))), draw(times))

    def recorded(current: Any) -> Any:
        return draw(st.one_of(st.sampled_from(_twins(current)), tricky))

    state = None
    if draw(st.integers(0, 4)):
        state = FieldState(
            recorded(warp.value),
            recorded(hubspot.value),
            draw(times),
            draw(st.sampled_from([None, Direction.WARP_TO_HUBSPOT, Direction.HUBSPOT_TO_WARP])),
            draw(times),
            draw(times),
            is_in_conflict=draw(st.booleans()),
            hubspot_pending=draw(st.one_of(st.none(), st.sampled_from(_twins(hubspot.value)))),
            recorded=draw(st.integers(0, 4)) > 0,
        )
    return m, state, warp, hubspot


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:  # the slow path must fail alike, with the same error
        return type(exc), str(exc)


@given(near_states())
def test_the_unchanged_shortcut_decides_as_comparing_forms_does(scenario: tuple) -> None:
    m, state, warp, hubspot = scenario
    row = {m.warp_column: {m.warp_path[0]: warp.value} if m.warp_path else warp.value}
    states = {m.name: state} if state is not None else {}
    one = MappingSet(EntityType.CUSTOMER, {m.name: m})
    snapshot = HubSpotSnapshot("1", {m.hubspot_property: hubspot.value})

    def both() -> tuple[Any, Any]:
        return (
            _outcome(lambda: decide(m, state, warp, hubspot)),
            _outcome(lambda: plan_sync(one, warp_snapshot(row, states), snapshot, states, now=T0)),
        )

    fast = both()
    with patch("shared.conflicts._same_value", lambda a, b: False):
        slow = both()
    assert fast == slow


# -- which plans need HubSpot's per-property times ------------------------------------------


@pytest.mark.parametrize(
    ("rule", "state", "hubspot", "compared"),
    [
        (ConflictRule.LATEST_WINS, None, "HubSpot", True),  # no state, values differ
        (ConflictRule.LATEST_WINS, synced("Old", "Old"), "HubSpot", True),  # both changed
        # HubSpot alone changed: whether HubSpot itself wrote it decides (its own writes
        # are not edits), unless HubSpot owns the field.
        (ConflictRule.LATEST_WINS, synced("WARP", "Old"), "HubSpot", True),
        (ConflictRule.HUBSPOT_WINS, synced("WARP", "Old"), "HubSpot", False),
        (ConflictRule.LATEST_WINS, synced("Old", "Old"), "WARP", False),  # in sync
        (ConflictRule.WARP_WINS, None, "HubSpot", False),
        (ConflictRule.MANUAL, synced("Old", "Old"), "HubSpot", False),
    ],
)
def test_a_plan_needs_history_only_where_a_time_or_hubspots_writer_decides(
    rule: ConflictRule, state: FieldState | None, hubspot: str, compared: bool
) -> None:
    one = MappingSet(EntityType.CUSTOMER, {"f": mapping(rule=rule)})
    states = {"f": state} if state else {}
    row = {"company_name": "WARP", "updated_at": LATE}
    snapshot = HubSpotSnapshot("1", {"p": hubspot}, modified_at=EARLY)
    plan = plan_sync(one, warp_snapshot(row, states), snapshot, states, now=T0)
    assert plan.needs_history is compared


# --- HubSpot's own writes (issue 15 item 6, docs/sync-rules.md) ---------------------------


@pytest.mark.parametrize("source", ["HUBSPOT_INTERNAL", "DATA_ENRICHMENT"])
@pytest.mark.parametrize(
    "rule", [ConflictRule.LATEST_WINS, ConflictRule.WARP_WINS, ConflictRule.MANUAL]
)
def test_hubspots_own_write_is_not_an_edit_warp_value_written_back(
    source: str, rule: ConflictRule
) -> None:
    state = synced("WARP Legal Name GmbH", "WARP Legal Name GmbH")
    guess = SideValue("Warp Legal", LATE, source)  # newer than WARP's: still not an edit
    decision = decide(mapping(rule=rule), state, SideValue("WARP Legal Name GmbH", EARLY), guess)
    assert (decision.action, decision.value) == (Action.WRITE_HUBSPOT, "WARP Legal Name GmbH")
    assert decision.winner is Side.WARP and source in decision.reason
    # Without any state yet (never crossed), the same.
    fresh = decide(mapping(rule=rule), None, SideValue("WARP Legal Name GmbH", EARLY), guess)
    assert fresh.action is Action.WRITE_HUBSPOT


def test_hubspots_own_write_stands_where_hubspot_is_authoritative() -> None:
    state = synced("Acme", "Acme")
    guess = SideValue("Acme Inc", LATE, "HUBSPOT_INTERNAL")
    for field in (
        mapping(rule=ConflictRule.HUBSPOT_WINS),
        mapping(Direction.HUBSPOT_TO_WARP, ConflictRule.LATEST_WINS),
    ):
        assert decide(field, state, SideValue("Acme", EARLY), guess).action is Action.WRITE_WARP
    # A person's edit (or another integration's) is an edit, as before.
    person = SideValue("Acme Inc", LATE, "CRM_UI")
    assert decide(mapping(), state, SideValue("Acme", EARLY), person).action is Action.WRITE_WARP
    # unless_blank: a blank WARP value is not written over HubSpot's guess.
    blank = decide(mapping(unless_blank=True), synced("", ""), SideValue("", EARLY), guess)
    assert blank.action is Action.NOTHING


def test_snapshot_carries_the_writer_of_each_property() -> None:
    snapshot = HubSpotSnapshot(
        "1", {"p": "Guess"}, {"p": LATE}, property_sources={"p": "HUBSPOT_INTERNAL"}
    )
    assert snapshot.side(mapping()) == SideValue("Guess", LATE, "HUBSPOT_INTERNAL")
