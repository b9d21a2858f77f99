"""What becomes of a HubSpot event: the inbound decisions, free of I/O (pure).

:mod:`shared.inbound.apply` reads the rows, field states and plans, asks these
rules, and writes what they decide. Each event ends with an :class:`Outcome`: a
:class:`Category` counted in reports (its value is the report's key) and a note
for people.

Which events are synced at all (:func:`route`): objects other than companies and
contacts, and kinds other than property changes, deletions and link events, are
*unsupported*; an event our own app caused is an *echo*.

Link events, in ``occurredAt`` order, each decided on the links as the previous
ones left them: a company creation links the one unlinked customer it matches
(:func:`choose_match`, :func:`creation`); a merge moves the links to the surviving
record (:func:`merge`, after :func:`shared.links.decide_merge_links`); an
association between a linked company and a contact sets or clears the customer's
primary contact (:func:`association`); a deletion unlinks and flags for review
(:func:`deletion`). A decision returns the :class:`LinkChange` to carry out.

Property changes, per object: only the newest change per property counts (older
ones are *superseded*, :func:`newest_per_property`); :func:`ignore_reason` says why
one is not planned (unmapped, outbound only, stale, echo, awaits WARP); a planned
one ends by its plan (:func:`planned_outcome`), or, written by HubSpot itself into
a field HubSpot does not own, is not applied and WARP's value is written back
(:func:`hubspot_automatic`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from shared.conflicts import Action, FieldState, awaits_warp_time, written_by_hubspot
from shared.inbound.events import WebhookEvent
from shared.links import decide_merge_links, linked_id
from shared.mapping import Direction, EntityType, MappingSet

if TYPE_CHECKING:  # types only: the planner's package loads the engine's I/O
    from shared.engine.plan import FieldResult

LINK_EVENTS = ("creation", "restore", "merge", "associationChange")
DELETIONS = ("deletion", "privacyDeletion")
# What a company creation is matched on (hubspot-api.md §3: standard properties).
MATCH_PROPERTIES = ("name", "domain")

# A customer row, as read: column -> value.
Row = Mapping[str, Any]
# The link index: (entity, HubSpot id) -> the customer linked to it.
Links = Mapping[tuple[EntityType, str], str]


class Category(StrEnum):
    """How an event ended, as reports count it."""

    APPLIED = "applied"
    IN_SYNC = "in_sync"
    WARP_NEWER = "warp_newer"
    CONFLICT = "conflict"
    ECHO = "echo"
    STALE = "stale"
    SUPERSEDED = "superseded"
    UNMAPPED = "unmapped"
    OUTBOUND_ONLY = "outbound_only"
    AWAITS_WARP = "awaits_warp"
    HUBSPOT_AUTOMATIC = "hubspot_automatic"
    SYNC_DISABLED = "sync_disabled"
    NO_CUSTOMER = "no_customer"
    LINKED = "linked"
    NOT_LINKED = "not_linked"
    LINK_UNCHANGED = "link_unchanged"
    UNLINKED = "unlinked"
    MERGED = "merged"
    RECORDED = "recorded"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class Outcome:
    """How one event ended: a category (counted in reports) and a note for people."""

    category: Category
    note: str = ""


class Route(Enum):
    """Where a synced event goes next."""

    PROPERTY = "property"
    DELETION = "deletion"
    LINK = "link"


@dataclass(frozen=True)
class LinkChange:
    """A customer's link to set (``object_id``) or clear (None), and why, for its log."""

    customer_id: str
    entity_type: EntityType
    object_id: str | None
    operation: str
    why: str
    review: bool = False  # logged as a CONFLICT, for a person


LinkDecision = tuple[Outcome, list[LinkChange]]


class _HasEvent(Protocol):
    """An event with what the caller keeps beside it (a stored event's row id)."""

    @property
    def event(self) -> WebhookEvent: ...


E = TypeVar("E", bound=_HasEvent)


# -- which events are synced ---------------------------------------------------------------


def route(event: WebhookEvent, app_id: int | None) -> Route | Outcome:
    """Where a synced event goes, or how an event not synced ends."""
    if EntityType.of_object_name(event.object_type) is None:
        return Outcome(Category.UNSUPPORTED, f"{event.object_type} events are not synced")
    if event.is_echo_of(app_id):
        return Outcome(Category.ECHO, "echo of our own write")
    if event.kind == "propertyChange":
        return Route.PROPERTY
    if event.kind in DELETIONS:
        return Route.DELETION
    if event.kind in LINK_EVENTS:
        return Route.LINK
    return Outcome(Category.UNSUPPORTED, f"{event.kind} events are not synced")


def entity_of(event: WebhookEvent) -> EntityType:
    """The entity of an event :func:`route` let through."""
    et = EntityType.of_object_name(event.object_type)
    if et is None:
        raise ValueError(f"{event.object_type} events are not synced")
    return et


def touched_ids(events: Iterable[WebhookEvent], app_id: int | None) -> tuple[set[str], set[str]]:
    """(company ids, contact ids) the events name: their customers are locked and read."""
    ids: dict[EntityType, set[str]] = {et: set() for et in EntityType}
    for event in events:
        et = EntityType.of_object_name(event.object_type)
        if et is None or event.is_echo_of(app_id):
            continue
        for object_id in (
            event.object_id,
            event.primary_object_id,
            event.new_object_id,
            *(event.merged_object_ids or ()),
        ):
            if object_id is not None:
                ids[et].add(str(object_id))
        pair = association_ids(event)
        if pair is not None:
            ids[EntityType.CUSTOMER].add(pair[0])
            ids[EntityType.CONTACT].add(pair[1])
    return ids[EntityType.CUSTOMER], ids[EntityType.CONTACT]


# -- company creations -------------------------------------------------------------------------


def needs_match(event: WebhookEvent, app_id: int | None, linked_companies: set[str]) -> bool:
    """A creation of a company no customer is linked to: a customer may be matched to it."""
    return (
        event.object_type == EntityType.CUSTOMER.object_name
        and event.kind == "creation"
        and not event.is_echo_of(app_id)
        and str(event.object_id) not in linked_companies
    )


def creation_values(creation: WebhookEvent, events: Iterable[WebhookEvent]) -> dict[str, str]:
    """A new company's name and domain as the batch's own property changes carry them."""
    return {
        str(e.property_name): e.property_value or ""
        for e in events
        if e.object_type == creation.object_type
        and e.object_id == creation.object_id
        and e.kind == "propertyChange"
        and e.property_name in MATCH_PROPERTIES
    }


def unlinked(rows: Iterable[Row]) -> set[str]:
    """The customers among ``rows`` a company may be linked to: no company, sync enabled."""
    return {
        str(r["id"])
        for r in rows
        if not linked_id(r, EntityType.CUSTOMER) and r.get("hubspot_sync_enabled") is not False
    }


def choose_match(by_domain: set[str], by_name: set[str]) -> tuple[str | None, str]:
    """The one unlinked customer a new company belongs to, or None and why not.

    Candidates are the unlinked customers whose contact email is at the company's
    domain (``by_domain``), or whose name equals the company's (``by_name``). Both
    given: their common customer when there is exactly one; else the single candidate
    of either. Anything else is ambiguous and left for a person.
    """
    chosen = (by_domain & by_name) if by_domain and by_name else (by_domain or by_name)
    if len(chosen) == 1:
        (cid,) = chosen
        return cid, "linked: " + (
            "domain and name match"
            if by_domain and by_name
            else "domain matches"
            if by_domain
            else "name matches"
        )
    if not by_domain and not by_name:
        return None, "no unlinked customer matches the company's domain or name"
    return None, "ambiguous: several unlinked customers match; left for review"


# -- link events -------------------------------------------------------------------------------


def creation(
    event: WebhookEvent,
    links: Links,
    rows: Mapping[str, Row],
    match: tuple[str | None, str] | None,
) -> LinkDecision:
    """A creation: a new company is linked to the customer it matched (``match``)."""
    et = entity_of(event)
    object_id = str(event.object_id)
    if et is EntityType.CONTACT:
        return Outcome(
            Category.RECORDED, "a contact is linked when associated with a linked company"
        ), []
    if (et, object_id) in links:
        return Outcome(Category.LINK_UNCHANGED, "company already linked"), []
    cid, note = match or (None, "no name or domain to match on")
    if cid is None or cid not in rows or linked_id(rows[cid], et):
        return Outcome(
            Category.NOT_LINKED, note if cid is None else "customer linked meanwhile"
        ), []
    return Outcome(Category.LINKED, note), [LinkChange(cid, et, object_id, "CREATE", note)]


def merge(event: WebhookEvent, links: Links) -> LinkDecision:
    """A merge: the merged records' customers move to the survivor, or are flagged."""
    et = entity_of(event)
    survivor = str(event.new_object_id or event.primary_object_id or event.object_id)
    # The primary's customer first: it keeps the merged record if both were linked.
    old_ids = dict.fromkeys(
        str(i)
        for i in (event.primary_object_id, *(event.merged_object_ids or ()), event.object_id)
        if i is not None and str(i) != survivor
    )
    claims = [(old, cid) for old in old_ids if (cid := links.get((et, old))) is not None]
    changes = [
        LinkChange(
            link.customer_id,
            et,
            survivor if link.keep else None,
            "UPDATE",
            link.why(et),
            review=not link.keep,
        )
        for link in decide_merge_links(survivor, links.get((et, survivor)), claims)
    ]
    if not changes:
        return Outcome(Category.NO_CUSTOMER, "no customer is linked to the merged records"), []
    moved = sum(1 for c in changes if not c.review)
    note = f"{moved} link(s) moved to {survivor}, {len(changes) - moved} flagged"
    return Outcome(Category.MERGED, note), changes


def association_ids(event: WebhookEvent) -> tuple[str, str] | None:
    """(company id, contact id) of a company-contact association change, else None."""
    if event.kind != "associationChange":
        return None
    kind = (event.association_type or "").upper()
    if kind.startswith("CONTACT_TO_COMPANY"):
        return str(event.to_object_id), str(event.from_object_id)
    if kind.startswith("COMPANY_TO_CONTACT"):
        return str(event.from_object_id), str(event.to_object_id)
    return None


def association(event: WebhookEvent, links: Links, rows: Mapping[str, Row]) -> LinkDecision:
    """An association change: the linked company's customer gains or loses its contact."""
    pair = association_ids(event)
    if pair is None:
        return Outcome(Category.UNSUPPORTED, "not a company-contact association"), []
    company_id, contact_id = pair
    cid = links.get((EntityType.CUSTOMER, company_id))
    if cid is None:
        return Outcome(Category.NO_CUSTOMER, f"no customer is linked to company {company_id}"), []
    current = linked_id(rows[cid], EntityType.CONTACT)
    if event.association_removed:
        if current != contact_id:
            return Outcome(
                Category.LINK_UNCHANGED, "removed contact is not the primary contact"
            ), []
        change = LinkChange(cid, EntityType.CONTACT, None, "UPDATE", "association removed")
        return Outcome(Category.UNLINKED, "primary contact association removed"), [change]
    other = links.get((EntityType.CONTACT, contact_id))
    if other is not None and other != cid:
        return Outcome(Category.LINK_UNCHANGED, "contact is another customer's primary contact"), []
    if current == contact_id:
        return Outcome(Category.LINK_UNCHANGED, "already the primary contact"), []
    if current is not None:
        # isPrimaryAssociation says the company is the *contact's* primary company
        # (HubSpot has no primary contact of a company): HubSpot's auto-association
        # sets it for every colleague at the company's domain. It never replaces
        # the customer's contact.
        return Outcome(Category.LINK_UNCHANGED, "customer already has a primary contact"), []
    change = LinkChange(cid, EntityType.CONTACT, contact_id, "UPDATE", "associated")
    return Outcome(Category.LINKED, "primary contact linked"), [change]


def link_event(
    event: WebhookEvent,
    links: Links,
    rows: Mapping[str, Row],
    matches: Mapping[str, tuple[str | None, str]],
) -> LinkDecision:
    """A creation, restore, merge or association change (:data:`LINK_EVENTS`)."""
    if event.kind == "creation":
        return creation(event, links, rows, matches.get(str(event.object_id)))
    if event.kind == "merge":
        return merge(event, links)
    if event.kind == "associationChange":
        return association(event, links, rows)
    return Outcome(Category.RECORDED, "restore recorded; links are not restored automatically"), []


def deletion(event: WebhookEvent, links: Links) -> LinkDecision:
    """A deletion: the customer is unlinked (never deleted) and flagged for review."""
    et = entity_of(event)
    object_id = str(event.object_id)
    cid = links.get((et, object_id))
    if cid is None:
        return Outcome(Category.NO_CUSTOMER, f"no customer is linked to {event.object_type}"), []
    why = (
        f"HubSpot {et.object_name} {object_id} was deleted; the customer was "
        "unlinked (not deleted) and needs review"
    )
    return Outcome(Category.UNLINKED, "deleted in HubSpot: unlinked and flagged for review"), [
        LinkChange(cid, et, None, "DELETE", why, review=True)
    ]


# -- property changes --------------------------------------------------------------------------


def unsynced_object(et: EntityType, customer: Row | None) -> Outcome | None:
    """Why none of an object's property changes is looked at, if so."""
    if customer is None:
        return Outcome(Category.NO_CUSTOMER, f"no customer is linked to this {et.object_name}")
    if customer.get("hubspot_sync_enabled") is False:
        return Outcome(Category.SYNC_DISABLED, "sync is off for this customer")
    return None


def newest_per_property(group: Sequence[E]) -> tuple[dict[str, E], list[E]]:
    """The newest change of each property, and the superseded ones (``group`` in
    ``occurredAt`` order: a later change replaces an earlier one)."""
    newest: dict[str, E] = {}
    superseded: list[E] = []
    for item in group:
        prop = str(item.event.property_name)
        if prop in newest:
            superseded.append(newest[prop])
        newest[prop] = item
    return newest, superseded


SUPERSEDED = Outcome(Category.SUPERSEDED, "a newer change followed")


def ignore_reason(
    mappings: MappingSet,
    states: Mapping[str, FieldState],
    row: Row,
    event: WebhookEvent,
) -> Outcome | None:
    """Why a property change is not planned; None when it is."""
    prop = str(event.property_name)
    fields = mappings.by_property(prop)
    if not fields:
        return Outcome(Category.UNMAPPED, f"property {prop} is not mapped")
    if not any(f.direction.allows_inbound for f in fields):
        return Outcome(
            Category.OUTBOUND_ONLY, "WARP_TO_HUBSPOT field: WARP is authoritative, not applied"
        )
    for mapping in fields:
        state = states.get(mapping.name)
        if state is None:
            continue
        seen = state.last_modified_at_hubspot
        if seen is not None and event.occurred_at <= seen:
            return Outcome(Category.STALE, "stale: not newer than the last HubSpot change applied")
        if (
            state.last_synced_direction is Direction.WARP_TO_HUBSPOT
            and not state.is_in_conflict
            and mapping.canonical_hubspot(event.property_value)
            == mapping.canonical_hubspot(state.hubspot_value)
        ):
            return Outcome(Category.ECHO, "echo of our own write (the value we last wrote)")
    if any(awaits_warp_time(m, states.get(m.name), m.read_warp(row)) for m in fields):
        return Outcome(
            Category.AWAITS_WARP,
            "WARP changed this field too and its change message has not arrived: "
            "outbound sync decides by both times when it does",
        )
    return None


def judged(ignored: Outcome | None) -> bool:
    """Whether a change's value was judged against its field: planned (``ignored`` None),
    or the echo of our own write.

    Its time then counts as HubSpot's newest change on record. Not awaits_warp: that
    event is left for outbound sync to decide, and a later delivery of it is judged then.
    """
    return ignored is None or ignored.category is Category.ECHO


def planned_outcome(results: Sequence[FieldResult], prop: str) -> Outcome:
    """How a planned change of ``prop`` ended, by the plan's results."""
    mine = [r for r in results if r.hubspot_property == prop]
    if any(r.applied and r.action is Action.WRITE_WARP for r in mine):
        return Outcome(Category.APPLIED, "applied to WARP")
    if any(r.action is Action.CONFLICT for r in mine):
        return Outcome(Category.CONFLICT, "held for manual resolution")
    skipped = [r for r in mine if not r.applied]
    if skipped:
        return Outcome(Category.WARP_NEWER, skipped[0].note or skipped[0].decision.reason)
    return Outcome(Category.IN_SYNC, "WARP already holds this value")


def hubspot_automatic(
    results: Sequence[FieldResult], event: WebhookEvent
) -> tuple[list[str], Outcome] | None:
    """A change HubSpot made itself (``changeSource`` HUBSPOT_INTERNAL, DATA_ENRICHMENT)
    to fields whose plan writes WARP's value back: those fields, and the outcome.

    WARP's value stands, and the outbound flush writes it back: no WARP change
    message would ever carry it.
    """
    source = event.change_source
    if not written_by_hubspot(source):
        return None
    restored = [
        r.field
        for r in results
        if r.hubspot_property == event.property_name and r.action is Action.WRITE_HUBSPOT
    ]
    if not restored:
        return None
    return restored, Outcome(
        Category.HUBSPOT_AUTOMATIC,
        f"HubSpot's own write ({source}) not applied; WARP's value is written back",
    )
