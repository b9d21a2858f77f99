"""The inbound rules, event by event, without PostgreSQL or the emulator (pure)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.conflicts import Action, Decision, FieldState
from shared.engine.plan import FieldResult
from shared.inbound import rules
from shared.inbound.events import WebhookEvent
from shared.inbound.rules import Category, LinkChange, Outcome, Route
from shared.mapping import ConflictRule, Direction, EntityType, FieldMapping, MappingSet

APP_ID = 4242
T0 = datetime(2024, 1, 1, tzinfo=UTC)
_ids = iter(range(1, 1_000_000))


def event(kind: str, object_id: int = 100, *, obj: str = "company", **fields: Any) -> WebhookEvent:
    """One webhook event as HubSpot sends it (camelCase), parsed."""
    raw: dict[str, Any] = {
        "eventId": next(_ids),
        "subscriptionId": 1,
        "portalId": 7,
        "occurredAt": int(T0.timestamp() * 1000),
        "subscriptionType": f"{obj}.{kind}",
        "objectId": object_id,
        **fields,
    }
    return WebhookEvent.model_validate(raw)


def change(prop: str, value: str, *, at: datetime = T0, **fields: Any) -> WebhookEvent:
    return event(
        "propertyChange",
        propertyName=prop,
        propertyValue=value,
        occurredAt=int(at.timestamp() * 1000),
        **fields,
    )


def customer(cid: str, company: str | None = None, contact: str | None = None) -> dict[str, Any]:
    external = {}
    if company:
        external[EntityType.CUSTOMER.link_key] = company
    if contact:
        external[EntityType.CONTACT.link_key] = contact
    return {"id": cid, "external_ids": external, "hubspot_sync_enabled": True}


def links_of(*rows: dict[str, Any]) -> dict[tuple[EntityType, str], str]:
    return {
        (et, str(row["external_ids"][et.link_key])): row["id"]
        for row in rows
        for et in EntityType
        if row["external_ids"].get(et.link_key)
    }


# -- which events are synced -----------------------------------------------------------------


def test_route_sends_each_kind_on_and_ends_the_others() -> None:
    assert rules.route(change("name", "Acme"), APP_ID) is Route.PROPERTY
    assert rules.route(event("deletion"), APP_ID) is Route.DELETION
    assert rules.route(event("privacyDeletion", obj="contact"), APP_ID) is Route.DELETION
    for kind in ("creation", "restore", "merge"):
        assert rules.route(event(kind), APP_ID) is Route.LINK
    assert rules.route(event("deletion", obj="deal"), APP_ID) == Outcome(
        Category.UNSUPPORTED, "deal events are not synced"
    )
    assert rules.route(event("mystery"), APP_ID) == Outcome(
        Category.UNSUPPORTED, "mystery events are not synced"
    )
    ours = change("name", "Acme", changeSource="INTEGRATION", sourceId=str(APP_ID))
    assert rules.route(ours, APP_ID) == Outcome(Category.ECHO, "echo of our own write")
    assert rules.route(ours, None) is Route.PROPERTY  # no app id known: nothing is ours


def test_categories_are_the_strings_reports_count() -> None:
    assert Category.ECHO == "echo"
    assert json.dumps({Category.HUBSPOT_AUTOMATIC: 1}) == '{"hubspot_automatic": 1}'
    counts: dict[str, int] = {"echo": 0}
    counts[Category.ECHO] += 1
    assert counts == {"echo": 1}


def test_touched_ids_name_every_object_a_batch_may_change() -> None:
    merge = event("merge", 9, primaryObjectId=1, mergedObjectIds=[2, 3], newObjectId=9)
    assoc = event(
        "associationChange",
        55,
        obj="contact",
        associationType="CONTACT_TO_COMPANY",
        fromObjectId=55,
        toObjectId=66,
    )
    ours = change("name", "x", changeSource="INTEGRATION", sourceId=str(APP_ID))
    deal = event("creation", obj="deal")
    companies, contacts = rules.touched_ids([merge, assoc, ours, deal], APP_ID)
    assert companies == {"9", "1", "2", "3", "66"}
    assert contacts == {"55"}


# -- company creations -----------------------------------------------------------------------


def test_a_new_company_is_matched_to_exactly_one_unlinked_customer() -> None:
    assert rules.choose_match({"a"}, {"a"}) == ("a", "linked: domain and name match")
    assert rules.choose_match({"a"}, set()) == ("a", "linked: domain matches")
    assert rules.choose_match(set(), {"b"}) == ("b", "linked: name matches")
    assert rules.choose_match({"a", "b"}, {"b", "c"}) == ("b", "linked: domain and name match")
    assert rules.choose_match({"a"}, {"b"})[0] is None  # both given, nothing in common
    assert rules.choose_match({"a", "b"}, set())[1].startswith("ambiguous")
    assert rules.choose_match(set(), set())[1].startswith("no unlinked customer")


def test_unlinked_leaves_out_linked_and_disabled_customers() -> None:
    disabled = {**customer("c"), "hubspot_sync_enabled": False}
    rows = [customer("a"), customer("b", company="1"), disabled]
    assert rules.unlinked(rows) == {"a"}


def test_creation_values_come_from_the_batch() -> None:
    new = event("creation", 5)
    batch = [
        new,
        event("propertyChange", 5, propertyName="name", propertyValue="Acme"),
        event("propertyChange", 5, propertyName="domain", propertyValue="acme.example"),
        event("propertyChange", 5, propertyName="phone", propertyValue="1"),
        event("propertyChange", 6, propertyName="name", propertyValue="Other"),
    ]
    assert rules.creation_values(new, batch) == {"name": "Acme", "domain": "acme.example"}
    assert rules.needs_match(new, APP_ID, linked_companies=set())
    assert not rules.needs_match(new, APP_ID, linked_companies={"5"})
    assert not rules.needs_match(event("creation", 5, obj="contact"), APP_ID, set())


def test_creation_links_the_matched_customer_once() -> None:
    rows = {"a": customer("a"), "b": customer("b", company="7")}
    links = links_of(*rows.values())
    created = event("creation", 5)
    outcome, changes = rules.creation(created, links, rows, ("a", "linked: name matches"))
    assert outcome == Outcome(Category.LINKED, "linked: name matches")
    assert changes == [LinkChange("a", EntityType.CUSTOMER, "5", "CREATE", "linked: name matches")]
    assert rules.creation(event("creation", 7), links, rows, ("a", "x"))[0].category is (
        Category.LINK_UNCHANGED
    )
    assert rules.creation(created, links, rows, ("b", "x")) == (
        Outcome(Category.NOT_LINKED, "customer linked meanwhile"),
        [],
    )
    assert rules.creation(created, links, rows, None) == (
        Outcome(Category.NOT_LINKED, "no name or domain to match on"),
        [],
    )
    assert rules.creation(event("creation", obj="contact"), links, rows, None)[0].category is (
        Category.RECORDED
    )


# -- link events -----------------------------------------------------------------------------


def test_a_merge_moves_the_primary_customer_and_flags_the_other() -> None:
    rows = [customer("c-primary", company="1"), customer("c-other", company="2")]
    merged = event("merge", 1, primaryObjectId=1, mergedObjectIds=[2], newObjectId=9)
    outcome, changes = rules.merge(merged, links_of(*rows))
    assert outcome == Outcome(Category.MERGED, "1 link(s) moved to 9, 1 flagged")
    assert changes == [
        LinkChange("c-primary", EntityType.CUSTOMER, "9", "UPDATE", "merged company 1 into 9"),
        LinkChange(
            "c-other",
            EntityType.CUSTOMER,
            None,
            "UPDATE",
            "company 2 was merged into 9, which customer c-primary is linked to; "
            "unlinked, needs review",
            review=True,
        ),
    ]
    nobody, none = rules.merge(merged, {})
    assert nobody == Outcome(Category.NO_CUSTOMER, "no customer is linked to the merged records")
    assert none == []


def association(removed: bool = False, kind: str = "COMPANY_TO_CONTACT") -> WebhookEvent:
    return event(
        "associationChange",
        associationType=kind,
        fromObjectId=1,
        toObjectId=50,
        associationRemoved=removed,
    )


def test_an_association_links_the_first_primary_contact_only() -> None:
    rows = {"a": customer("a", company="1")}
    outcome, changes = rules.association(association(), links_of(*rows.values()), rows)
    assert outcome.category is Category.LINKED
    assert changes == [LinkChange("a", EntityType.CONTACT, "50", "UPDATE", "associated")]
    # From the contact's side the ids are the other way round.
    reverse = event(
        "associationChange",
        obj="contact",
        associationType="CONTACT_TO_COMPANY",
        fromObjectId=50,
        toObjectId=1,
    )
    assert rules.association(reverse, links_of(*rows.values()), rows)[1] == changes
    has_one = {"a": customer("a", company="1", contact="49")}
    assert rules.association(association(), links_of(*has_one.values()), has_one) == (
        Outcome(Category.LINK_UNCHANGED, "customer already has a primary contact"),
        [],
    )
    taken = {"a": customer("a", company="1"), "b": customer("b", company="2", contact="50")}
    assert rules.association(association(), links_of(*taken.values()), taken)[0].note == (
        "contact is another customer's primary contact"
    )
    assert rules.association(association(), {}, {})[0].category is Category.NO_CUSTOMER
    other_kind = association(kind="COMPANY_TO_DEAL")
    assert rules.association(other_kind, {}, {})[0].category is Category.UNSUPPORTED


def test_removing_the_primary_contact_association_unlinks_it() -> None:
    rows = {"a": customer("a", company="1", contact="50")}
    outcome, changes = rules.association(association(removed=True), links_of(*rows.values()), rows)
    assert outcome.category is Category.UNLINKED
    assert changes == [LinkChange("a", EntityType.CONTACT, None, "UPDATE", "association removed")]
    other = {"a": customer("a", company="1", contact="49")}
    assert rules.association(association(removed=True), links_of(*other.values()), other)[
        0
    ].category is (Category.LINK_UNCHANGED)


def test_a_deletion_unlinks_for_review_and_never_deletes() -> None:
    links = links_of(customer("a", contact="50"))
    outcome, changes = rules.deletion(event("deletion", 50, obj="contact"), links)
    assert outcome.category is Category.UNLINKED
    (unlink,) = changes
    assert (unlink.customer_id, unlink.object_id, unlink.operation, unlink.review) == (
        "a",
        None,
        "DELETE",
        True,
    )
    assert "HubSpot contact 50 was deleted" in unlink.why
    assert rules.deletion(event("deletion", 51, obj="contact"), links)[0].category is (
        Category.NO_CUSTOMER
    )


def test_a_restore_is_recorded_without_relinking() -> None:
    outcome, changes = rules.link_event(event("restore"), {}, {}, {})
    assert outcome.category is Category.RECORDED and changes == []


# -- property changes ------------------------------------------------------------------------


def field(direction: Direction = Direction.BIDIRECTIONAL, prop: str = "name") -> MappingSet:
    mapping = FieldMapping(
        name="company_name",
        entity_type=EntityType.CUSTOMER,
        hubspot_property=prop,
        warp_column="company_name",
        warp_path=(),
        direction=direction,
        rule=ConflictRule.LATEST_WINS,
    )
    return MappingSet(EntityType.CUSTOMER, {mapping.name: mapping})


def state(**changes: Any) -> dict[str, FieldState]:
    base = FieldState("Acme", "Acme", T0, Direction.HUBSPOT_TO_WARP, T0, T0)
    return {"company_name": FieldState(**{**base.__dict__, **changes})}


ROW = {"company_name": "Acme"}


def test_an_object_without_a_synced_customer_is_not_looked_at() -> None:
    assert rules.unsynced_object(EntityType.CONTACT, None) == Outcome(
        Category.NO_CUSTOMER, "no customer is linked to this contact"
    )
    off = {**customer("a"), "hubspot_sync_enabled": False}
    assert rules.unsynced_object(EntityType.CUSTOMER, off) == Outcome(
        Category.SYNC_DISABLED, "sync is off for this customer"
    )
    assert rules.unsynced_object(EntityType.CUSTOMER, customer("a")) is None


@dataclass
class Stored:
    row_id: str
    event: WebhookEvent


def test_only_the_newest_change_per_property_counts() -> None:
    group = [
        Stored("1", change("name", "A")),
        Stored("2", change("phone", "1")),
        Stored("3", change("name", "B")),
        Stored("4", change("name", "C")),
    ]
    newest, superseded = rules.newest_per_property(group)
    assert {p: s.row_id for p, s in newest.items()} == {"name": "4", "phone": "2"}
    assert [s.row_id for s in superseded] == ["1", "3"]


def test_ignore_reason_by_example() -> None:
    later = T0 + timedelta(minutes=1)
    new = change("name", "Beta", at=later)

    def reason(mappings: MappingSet, states: dict[str, FieldState], e: WebhookEvent = new) -> Any:
        found = rules.ignore_reason(mappings, states, ROW, e)
        return None if found is None else found.category

    assert reason(field(prop="other"), {}) is Category.UNMAPPED
    assert reason(field(Direction.WARP_TO_HUBSPOT), {}) is Category.OUTBOUND_ONLY
    assert reason(field(), state(), change("name", "Beta", at=T0)) is Category.STALE
    ours = state(last_synced_direction=Direction.WARP_TO_HUBSPOT, hubspot_value="Beta")
    assert reason(field(), ours) is Category.ECHO
    # WARP changed the field since it crossed, and its message has not come.
    assert reason(field(), state(warp_value="Older")) is Category.AWAITS_WARP
    assert reason(field(), state()) is None
    assert reason(field(), {}) is None
    assert rules.judged(None) and rules.judged(Outcome(Category.ECHO))
    assert not rules.judged(Outcome(Category.STALE))
    assert not rules.judged(Outcome(Category.AWAITS_WARP))


def result(action: Action, *, applied: bool, prop: str = "name", note: str = "") -> FieldResult:
    return FieldResult(
        "company_name", prop, Decision(action, reason="why"), None, None, applied, note
    )


HELD = "held for manual resolution"
HOLDS = "WARP already holds this value"


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([result(Action.WRITE_WARP, applied=True)], Outcome(Category.APPLIED, "applied to WARP")),
        ([result(Action.CONFLICT, applied=False)], Outcome(Category.CONFLICT, HELD)),
        (
            [result(Action.WRITE_HUBSPOT, applied=False, note="WARP is newer")],
            Outcome(Category.WARP_NEWER, "WARP is newer"),
        ),
        ([result(Action.WRITE_HUBSPOT, applied=False)], Outcome(Category.WARP_NEWER, "why")),
        ([result(Action.NOTHING, applied=True)], Outcome(Category.IN_SYNC, HOLDS)),
        ([result(Action.WRITE_WARP, applied=True, prop="other")], Outcome(Category.IN_SYNC, HOLDS)),
    ],
)
def test_a_planned_change_ends_by_its_plan(results: list[FieldResult], expected: Outcome) -> None:
    assert rules.planned_outcome(results, "name") == expected


def test_hubspot_own_write_is_not_applied_but_written_back() -> None:
    back = [result(Action.WRITE_HUBSPOT, applied=False)]
    own = change("name", "Enriched", changeSource="DATA_ENRICHMENT")
    found = rules.hubspot_automatic(back, own)
    assert found is not None
    fields, outcome = found
    assert fields == ["company_name"] and outcome.category is Category.HUBSPOT_AUTOMATIC
    assert "DATA_ENRICHMENT" in outcome.note
    assert rules.hubspot_automatic(back, change("name", "Typed", changeSource="CRM_UI")) is None
    applied = [result(Action.WRITE_WARP, applied=True)]
    assert rules.hubspot_automatic(applied, own) is None


# -- purity ----------------------------------------------------------------------------------


def test_the_rules_load_no_database_client_or_http() -> None:
    code = "import sys, shared.inbound.rules\nprint('\\n'.join(sorted(sys.modules)))\n"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "shared.inbound.rules" in loaded  # the check sees what the import loaded
    for module in ("shared.db", "shared.hubspot.client", "httpx", "shared.engine", "pg8000"):
        assert module not in loaded, module
