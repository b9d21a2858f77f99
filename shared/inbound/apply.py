"""Applying stored HubSpot events to WARP: one chunk of events, one transaction.

Order of work (each event ends with an outcome: a counted category and a note):

1. Before the transaction: find the customers the events touch (linked to a
   company or contact they name) and, for company creations of unknown
   companies, the customer to link (name and domain from the batch's own
   propertyChange events, else one HubSpot read). Nothing is locked yet.
2. In the transaction: ``lock_customers`` on all of them in sorted order (every
   flow writing a customer takes these locks first), re-read their rows and field
   states, then
   - link events in ``occurredAt`` order: creations (link an unlinked customer
     whose contact-email domain or exact name matches exactly one), merges (move
     the link to the surviving record), association changes between a linked
     company and a contact (the customer's primary contact link);
   - property changes grouped by object, ordered by ``occurredAt``, only the
     newest change per property counting (older ones are *superseded*). Ignored:
     echoes (``changeSource`` INTEGRATION from our app id, or the value we last
     wrote there), stale changes (not newer than the field's last HubSpot change
     on record: the newest event judged so far, written or not), unmapped
     properties and ``WARP_TO_HUBSPOT`` fields, and LATEST_WINS fields that WARP
     changed too before its change message came
     (*awaits_warp*: WARP's time is unknown until then). A change HubSpot made
     itself (``changeSource`` HUBSPOT_INTERNAL, DATA_ENRICHMENT) to a field it does
     not own is not applied: WARP's value stands, and the customer is marked for
     the outbound flush, which writes it back (*hubspot_automatic*; no WARP change
     message would ever carry it). The rest is
     planned with a snapshot built from the events (value, ``occurredAt`` as its
     time), allowing only WARP writes: a WRITE_HUBSPOT decision means WARP holds
     the newer value and outbound sync carries it. ``commit_plans`` then writes
     the chunk's columns, field states, a sync-log row per plan and
     ``last_synced_from_hubspot`` (a few statements for the whole chunk);
   - deletions last, so a batch's earlier property changes still land: the
     customer is unlinked and a CONFLICT sync-log row flags it for review. A
     WARP customer is never deleted.
   Every event of the chunk is then marked processed, in the same transaction.
   Under the customers' locks the chunk's events are locked too, and those another
   worker processed meanwhile (a late task, the sweep) are left out: each once.

Echoes are counted, not written to the sync log: the write they echo is logged
already. Unmapped, ``WARP_TO_HUBSPOT`` and stale changes of a linked customer are
logged as skipped fields with their reasons. Events about objects no customer is
linked to are processed with a note; they are not errors.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.conflicts import Action, Decision, FieldState, awaits_warp_time, written_by_hubspot
from shared.db import Row, Session
from shared.db.repositories import (
    customers,
    field_state,
    outbound_dirty,
    webhook_events,
)
from shared.engine.deps import Engine
from shared.engine.plan import FieldResult, HubSpotSnapshot, Plan, plan_sync
from shared.engine.record import PlanCommit, commit_plans, states_by_field
from shared.engine.relink import LINK_KEY, OBJECT_NAME, decide_merge_links, record_link
from shared.engine.snapshots import warp_snapshot
from shared.engine.sync import FROM_HUBSPOT, lock_customers
from shared.errors import SyncError, WarpChangedDuringSync
from shared.hubspot.errors import NotFound
from shared.inbound.queries import customers_linked_to
from shared.inbound.receive import StoredEvent
from shared.mapping import Direction, EntityType, MappingSet

log = logging.getLogger("warp_hubspot_sync.inbound")

ENTITY = {"company": EntityType.CUSTOMER, "contact": EntityType.CONTACT}
LINK_EVENTS = ("creation", "restore", "merge", "associationChange")
DELETIONS = ("deletion", "privacyDeletion")
# What a company creation is matched on (hubspot-api.md §3: standard properties).
MATCH_PROPERTIES = ("name", "domain")
TRIGGERED_BY = "webhook"
# Categories of events whose value was judged against the field ("": planned). Their
# time then counts as HubSpot's newest change on record. Not awaits_warp: that event
# is left for outbound sync to decide, and a later delivery of it is judged then.
JUDGED = frozenset({"", "echo"})


@dataclass(frozen=True)
class Outcome:
    """How one event ended: a category (counted in reports) and a note for people."""

    category: str
    note: str = ""


@dataclass
class ChunkResult:
    """What applying a chunk did: outcomes of processed events, failures, plans to log."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)
    failed: dict[str, BaseException] = field(default_factory=dict)
    plans: list[tuple[Plan, EntityType, str]] = field(default_factory=list)
    follow_up: bool = False
    """Customers were marked for outbound sync: values derived from what was written, or
    WARP's values to write back over HubSpot's own writes."""


@dataclass
class _Prepared:
    customer_ids: set[str]
    # company id -> (customer to link or None, note)
    matches: dict[str, tuple[str | None, str]]
    failed: dict[str, BaseException]


def apply_chunk(
    engine: Engine, events: Sequence[StoredEvent], *, lock_timeout_ms: int | None = None
) -> ChunkResult:
    """Apply ``events`` (see the module docstring) and mark them processed.

    Raises when the transaction fails: then nothing of the chunk was written and
    the caller decides about retrying or isolating the bad event.
    ``lock_timeout_ms`` bounds the wait for customer locks (the webhook's time budget).
    """
    app_id = engine.settings.hubspot_app_id
    ordered = sorted(events, key=lambda s: (s.event.occurred_at_ms, s.event.rank, s.event.event_id))
    prepared = _prepare(engine, ordered, app_id)
    result = ChunkResult(failed=dict(prepared.failed))
    work = [s for s in ordered if s.row_id not in prepared.failed]
    with engine.database.transaction() as tx:
        if lock_timeout_ms is not None:
            # SET cannot take a parameter; the value is an int computed here.
            tx.execute(f"SET LOCAL lock_timeout = '{max(1, int(lock_timeout_ms))}ms'")
        lock_customers(tx, prepared.customer_ids)
        # The time of the chunk's writes (field states, sync log) is read under the locks:
        # read before, a chunk that then waited for a connection or a lock was stamped
        # before the chunk it waited for, and the log showed the older edit as the latest.
        now = engine.now()
        pending = webhook_events.lock_unprocessed(tx, [s.row_id for s in work])
        work = [s for s in work if s.row_id in pending]
        ctx = _Context(engine, tx, now, customers.get_many(tx, sorted(prepared.customer_ids)))
        ctx.state_rows.update(field_state.decision_states(tx, sorted(ctx.rows)))

        properties: dict[tuple[str, str], list[StoredEvent]] = defaultdict(list)
        deletions: list[StoredEvent] = []
        for stored in work:
            event = stored.event
            if event.object_type not in ENTITY:
                result.outcomes[stored.row_id] = Outcome(
                    "unsupported", f"{event.object_type} events are not synced"
                )
            elif event.is_echo_of(app_id):
                result.outcomes[stored.row_id] = Outcome("echo", "echo of our own write")
            elif event.kind == "propertyChange":
                properties[(event.object_type, str(event.object_id))].append(stored)
            elif event.kind in DELETIONS:
                deletions.append(stored)
            elif event.kind in LINK_EVENTS:
                result.outcomes[stored.row_id] = ctx.link_event(stored, prepared.matches)
            else:
                result.outcomes[stored.row_id] = Outcome(
                    "unsupported", f"{event.kind} events are not synced"
                )
        for (object_type, object_id), group in properties.items():
            result.outcomes.update(ctx.property_changes(ENTITY[object_type], object_id, group))
        result.plans = ctx.commit()
        derived = ctx.mark_derived()
        result.follow_up = derived or ctx.restored
        for row_id, cid in ctx.changed_events():
            # WARP's application wrote the customer after it was read: nothing of it was
            # recorded, and its events are tried again later on a fresh read.
            result.outcomes.pop(row_id, None)
            result.failed[row_id] = WarpChangedDuringSync(cid)
        for stored in deletions:
            result.outcomes[stored.row_id] = ctx.deletion(stored)
        webhook_events.mark_processed(tx, list(result.outcomes))
    if result.follow_up:  # after the commit: the flush must see the dirty marks
        # Imported here: only a chunk that marks customers for outbound sync pays for it.
        from shared.outbound.receive import schedule_flush

        schedule_flush(engine)
    return result


def _prepare(engine: Engine, events: Sequence[StoredEvent], app_id: int | None) -> _Prepared:
    """Find the customers to lock, and the customer each new company should link to."""
    companies: set[str] = set()
    contacts: set[str] = set()
    for stored in events:
        event = stored.event
        if event.object_type not in ENTITY or event.is_echo_of(app_id):
            continue
        ids = contacts if event.object_type == "contact" else companies
        ids.add(str(event.object_id))
        for other in (
            event.primary_object_id,
            event.new_object_id,
            *(event.merged_object_ids or ()),
        ):
            if other is not None:
                ids.add(str(other))
        pair = _association_pair(event.association_type)
        if pair is not None and event.kind == "associationChange":
            company_id, contact_id = _association_ids(event, pair)
            companies.add(company_id)
            contacts.add(contact_id)
    with engine.database.transaction() as tx:
        linked = customers_linked_to(tx, sorted(companies), sorted(contacts))
    customer_ids = {str(r["id"]) for r in linked}
    linked_companies = {
        str((r["external_ids"] or {}).get(LINK_KEY[EntityType.CUSTOMER])) for r in linked
    }
    creations = [
        s
        for s in events
        if s.event.object_type == "company"
        and s.event.kind == "creation"
        and not s.event.is_echo_of(app_id)
        and str(s.event.object_id) not in linked_companies
    ]
    matches: dict[str, tuple[str | None, str]] = {}
    failed: dict[str, BaseException] = {}
    if creations:
        values = {
            str(s.event.object_id): _creation_values(engine, s, events, failed) for s in creations
        }
        with engine.database.transaction() as tx:
            for object_id, found in values.items():
                if found is not None:
                    matches[object_id] = _match_company(tx, found)
        customer_ids.update(cid for cid, _ in matches.values() if cid is not None)
    return _Prepared(customer_ids, matches, failed)


def _creation_values(
    engine: Engine,
    creation: StoredEvent,
    events: Sequence[StoredEvent],
    failed: dict[str, BaseException],
) -> dict[str, str] | None:
    """Name and domain of a new company: from the batch, else read from HubSpot."""
    object_id = creation.event.object_id
    values = {
        s.event.property_name: s.event.property_value or ""
        for s in events
        if s.event.object_type == "company"
        and s.event.object_id == object_id
        and s.event.kind == "propertyChange"
        and s.event.property_name in MATCH_PROPERTIES
    }
    if values:
        return {k: v for k, v in values.items() if k is not None}
    try:
        record = engine.hubspot.companies.get(str(object_id), properties=MATCH_PROPERTIES)
    except NotFound:
        return {}
    except SyncError as exc:
        if not exc.retryable:
            raise
        failed[creation.row_id] = exc
        return None
    return {k: str(record.properties.get(k) or "") for k in MATCH_PROPERTIES}


def _match_company(tx: Session, values: Mapping[str, str]) -> tuple[str | None, str]:
    """The one unlinked customer a new company belongs to, or None and why not.

    Candidates are customers with no company link and sync enabled whose contact
    email is at the company's domain, or whose name equals the company's (ignoring
    case). Both given: their common customer when there is exactly one; else the
    single candidate of either. Anything else is ambiguous and left for a person.
    """
    domain = (values.get("domain") or "").strip().lower()
    name = (values.get("name") or "").strip()
    by_domain = _unlinked(customers.find_by_domain(tx, domain)) if domain else set()
    by_name = _unlinked(customers.find_by_name(tx, name)) if name else set()
    if by_domain and by_name:
        both = by_domain & by_name
        chosen = both if both else set()
    else:
        chosen = by_domain or by_name
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


def _unlinked(rows: Iterable[Row]) -> set[str]:
    return {
        str(r["id"])
        for r in rows
        if not (r.get("external_ids") or {}).get(LINK_KEY[EntityType.CUSTOMER])
        and r.get("hubspot_sync_enabled") is not False
    }


def _association_pair(association_type: str | None) -> tuple[str, str] | None:
    """(from, to) object names of a company-contact association type, else None."""
    kind = (association_type or "").upper()
    if kind.startswith("CONTACT_TO_COMPANY"):
        return "contact", "company"
    if kind.startswith("COMPANY_TO_CONTACT"):
        return "company", "contact"
    return None


def _association_ids(event: Any, pair: tuple[str, str]) -> tuple[str, str]:
    """(company id, contact id) of an association event."""
    ids = {pair[0]: str(event.from_object_id), pair[1]: str(event.to_object_id)}
    return ids["company"], ids["contact"]


class _Context:
    """The transaction's working state: locked rows, link index, field states, plans."""

    def __init__(self, engine: Engine, tx: Session, now: datetime, rows: Sequence[Row]) -> None:
        self.engine, self.tx, self.now = engine, tx, now
        self.rows: dict[str, Row] = {str(r["id"]): r for r in rows}
        # The rows as the database holds them: self.rows also carries the chunk's own
        # planned writes, which a later object's plan composes with.
        self.read: dict[str, Row] = dict(self.rows)
        self.links: dict[tuple[EntityType, str], str] = {}
        for cid, row in self.rows.items():
            for et, key in LINK_KEY.items():
                value = (row.get("external_ids") or {}).get(key)
                if value:
                    self.links.setdefault((et, str(value)), cid)
        self.state_rows: dict[tuple[str, str], list[list[Any]]] = defaultdict(list)
        self.commits: list[PlanCommit] = []
        self.planned_events: dict[str, list[str]] = defaultdict(list)
        # Per customer, the HubSpot change time of every field an event was judged for.
        self.judged: dict[str, list[field_state.ChangeTime]] = defaultdict(list)
        self.changed: list[str] = []
        # Fields HubSpot wrote itself, whose WARP value the outbound flush writes back.
        self.restore: dict[str, set[str]] = defaultdict(set)
        self.restored = False

    def commit(self) -> list[tuple[Plan, EntityType, str]]:
        """Record every plan of the chunk (few statements for all); the plans to log."""
        committed = commit_plans(
            self.tx,
            self.commits,
            now=self.now,
            operation="UPDATE",
            triggered_by=TRIGGERED_BY,
            started_at=self.now,
        )
        self.changed = committed.changed
        left_out = set(committed.changed)
        for cid, names in self.restore.items():
            if cid not in left_out:
                outbound_dirty.mark(self.tx, cid, sorted(names))
                self.restored = True
        # A judged event moves its field's HubSpot time even when it wrote nothing (the
        # value was in sync, or the echo of our write): an older event of that field
        # delivered after it is then stale, and cannot undo the newer value. Not for a
        # customer left out: its events are tried again, and must not find themselves stale.
        field_state.advance_times(
            self.tx,
            "last_modified_at_hubspot",
            [t for cid, times in self.judged.items() if cid not in left_out for t in times],
        )
        return [
            (c.plan, c.entity_type, c.customer_id)
            for c in self.commits
            if c.customer_id not in left_out
        ]

    def mark_derived(self) -> bool:
        """Mark for outbound sync the fields of other entities derived from WARP writes here.

        This flow writes WARP only. A value another entity's field derives from what it
        wrote (the company's domain from the contact's email) must still reach HubSpot,
        and no change message follows the sync's own writes: the customer is marked dirty
        for those fields, as a change message would, and the coalesced flush carries them.
        True when any customer was marked.
        """
        feeding: list[tuple[str, MappingSet, set[str]]] = []
        left_out = set(self.changed)
        for item in self.commits:
            if item.customer_id in left_out or not item.plan.warp_updates:
                continue
            written = {
                item.mappings.fields[r.field].warp_field
                for r in item.plan.changed
                if r.action is Action.WRITE_WARP
            }
            for et in ENTITY.values():
                others = self.engine.mapping_for(item.customer_id, et)
                if written and et is not item.entity_type and item.mappings.feeds(others):
                    feeding.append((item.customer_id, others, written))
        if not feeding:
            return False
        # Imported here: the outbound package is not part of this function's cold start.
        from shared.outbound.fields import outbound_fields, stored_fields

        derived: dict[str, set[str]] = defaultdict(set)
        for cid, others, written in feeding:
            derived[cid] |= outbound_fields([others], written) or set()  # None: nothing written
        for cid, names in derived.items():
            if names:
                outbound_dirty.mark(self.tx, cid, stored_fields(names))
        return any(derived.values())

    def changed_events(self) -> list[tuple[str, str]]:
        """(event row id, customer id) of the planned events whose customer was left out."""
        return [(row_id, cid) for cid in self.changed for row_id in self.planned_events[cid]]

    # -- links ---------------------------------------------------------------------

    def link_event(
        self, stored: StoredEvent, matches: Mapping[str, tuple[str | None, str]]
    ) -> Outcome:
        event = stored.event
        et = ENTITY[event.object_type]
        object_id = str(event.object_id)
        if event.kind == "creation":
            if et is EntityType.CONTACT:
                return Outcome(
                    "recorded", "a contact is linked when associated with a linked company"
                )
            if (et, object_id) in self.links:
                return Outcome("link_unchanged", "company already linked")
            cid, note = matches.get(object_id, (None, "no name or domain to match on"))
            if cid is None or cid not in self.rows or self._linked_id(cid, et):
                return Outcome("not_linked", note if cid is None else "customer linked meanwhile")
            self._set_link(cid, et, object_id, operation="CREATE", why=note)
            return Outcome("linked", note)
        if event.kind == "merge":
            return self._merge(et, event)
        if event.kind == "associationChange":
            return self._association(event)
        return Outcome("recorded", "restore recorded; links are not restored automatically")

    def _merge(self, et: EntityType, event: Any) -> Outcome:
        survivor = str(event.new_object_id or event.primary_object_id or event.object_id)
        # The primary's customer first: it keeps the merged record if both were linked.
        old_ids = dict.fromkeys(
            str(i)
            for i in (event.primary_object_id, *(event.merged_object_ids or ()), event.object_id)
            if i is not None and str(i) != survivor
        )
        owner = self.links.get((et, survivor))
        claims = [(old, cid) for old in old_ids if (cid := self.links.get((et, old))) is not None]
        decided = decide_merge_links(survivor, owner, claims)
        for link in decided:
            self._set_link(
                link.customer_id,
                et,
                survivor if link.keep else None,
                operation="UPDATE",
                why=link.why(et, owner),
                review=not link.keep,
            )
            if link.keep:
                owner = link.customer_id
        if decided:
            moved = sum(1 for link in decided if link.keep)
            return Outcome(
                "merged", f"{moved} link(s) moved to {survivor}, {len(decided) - moved} flagged"
            )
        return Outcome("no_customer", "no customer is linked to the merged records")

    def _association(self, event: Any) -> Outcome:
        pair = _association_pair(event.association_type)
        if pair is None:
            return Outcome("unsupported", "not a company-contact association")
        company_id, contact_id = _association_ids(event, pair)
        cid = self.links.get((EntityType.CUSTOMER, company_id))
        if cid is None:
            return Outcome("no_customer", f"no customer is linked to company {company_id}")
        current = self._linked_id(cid, EntityType.CONTACT)
        if event.association_removed:
            if current != contact_id:
                return Outcome("link_unchanged", "removed contact is not the primary contact")
            self._set_link(
                cid, EntityType.CONTACT, None, operation="UPDATE", why="association removed"
            )
            return Outcome("unlinked", "primary contact association removed")
        other = self.links.get((EntityType.CONTACT, contact_id))
        if other is not None and other != cid:
            return Outcome("link_unchanged", "contact is another customer's primary contact")
        if current == contact_id:
            return Outcome("link_unchanged", "already the primary contact")
        if current is not None:
            # isPrimaryAssociation says the company is the *contact's* primary company
            # (HubSpot has no primary contact of a company): HubSpot's auto-association
            # sets it for every colleague at the company's domain. It never replaces
            # the customer's contact.
            return Outcome("link_unchanged", "customer already has a primary contact")
        self._set_link(cid, EntityType.CONTACT, contact_id, operation="UPDATE", why="associated")
        return Outcome("linked", "primary contact linked")

    def deletion(self, stored: StoredEvent) -> Outcome:
        event = stored.event
        et = ENTITY[event.object_type]
        object_id = str(event.object_id)
        cid = self.links.get((et, object_id))
        if cid is None:
            return Outcome("no_customer", f"no customer is linked to {event.object_type}")
        self._set_link(
            cid,
            et,
            None,
            operation="DELETE",
            why=f"HubSpot {OBJECT_NAME[et]} {object_id} was deleted; the customer was "
            "unlinked (not deleted) and needs review",
            review=True,
        )
        return Outcome("unlinked", "deleted in HubSpot: unlinked and flagged for review")

    def _linked_id(self, cid: str, et: EntityType) -> str | None:
        value = (self.rows[cid].get("external_ids") or {}).get(LINK_KEY[et])
        return str(value) if value else None

    def _set_link(
        self,
        cid: str,
        et: EntityType,
        object_id: str | None,
        *,
        operation: str,
        why: str,
        review: bool = False,
    ) -> None:
        old = self._linked_id(cid, et)
        row = record_link(
            self.tx,
            customer_id=cid,
            entity_type=et,
            object_id=object_id,
            old_id=old,
            operation=operation,
            why=why,
            now=self.now,
            triggered_by=TRIGGERED_BY,
            review=review,
        )
        if row is not None:
            self.rows[cid] = self.read[cid] = row
        if old is not None:
            self.links.pop((et, old), None)
        if object_id is not None:
            self.links[(et, object_id)] = cid

    # -- property changes ----------------------------------------------------------

    def property_changes(
        self, et: EntityType, object_id: str, group: Sequence[StoredEvent]
    ) -> dict[str, Outcome]:
        """Plan and commit one object's property changes; the outcome of each event."""
        cid = self.links.get((et, object_id))
        if cid is None:
            return {
                s.row_id: Outcome("no_customer", f"no customer is linked to this {OBJECT_NAME[et]}")
                for s in group
            }
        if self.rows[cid].get("hubspot_sync_enabled") is False:
            return {
                s.row_id: Outcome("sync_disabled", "sync is off for this customer") for s in group
            }
        outcomes: dict[str, Outcome] = {}
        newest: dict[str, StoredEvent] = {}
        for stored in group:  # occurredAt order: a later change replaces an earlier one
            prop = str(stored.event.property_name)
            if prop in newest:
                outcomes[newest[prop].row_id] = Outcome("superseded", "a newer change followed")
            newest[prop] = stored
        mappings = self.engine.mapping_for(cid, et)
        states = states_by_field(self.state_rows.get((cid, et.value), []))
        values: dict[str, str | None] = {}
        times: dict[str, datetime] = {}
        sources: dict[str, str] = {}
        by_property: dict[str, StoredEvent] = {}
        skipped: list[FieldResult] = []
        for prop, stored in newest.items():
            event = stored.event
            reason, category = _ignore_reason(mappings, states, self.rows[cid], prop, event)
            if category in JUDGED:
                self.judged[cid].extend(
                    field_state.ChangeTime(et.value, cid, object_id, m.name, event.occurred_at)
                    for m in mappings.by_property(prop)
                    if m.direction.allows_inbound
                )
            if category == "echo":
                outcomes[stored.row_id] = Outcome(category, reason)
                continue
            if reason:
                outcomes[stored.row_id] = Outcome(category, reason)
                skipped.append(_skip(prop, mappings, reason))
                continue
            values[prop] = event.property_value
            times[prop] = event.occurred_at
            if event.change_source is not None:
                sources[prop] = event.change_source
            by_property[prop] = stored
        if not values and not skipped:
            return outcomes
        row = self.rows[cid]
        plan = (
            plan_sync(
                mappings,
                warp_snapshot(row, states),
                HubSpotSnapshot(object_id, values, times, property_sources=sources),
                states,
                now=self.now,
                allowed=FROM_HUBSPOT,
            )
            if values
            else Plan(object_id)
        )
        for result in skipped:
            plan.add(result)
        self.commits.append(PlanCommit(plan, mappings, et, cid, states, self.read[cid]))
        self.planned_events[cid].extend(stored.row_id for stored in group)
        if plan.warp_updates:
            self.rows[cid] = {**row, **plan.warp_updates}
        for prop, stored in by_property.items():
            outcomes[stored.row_id] = _planned_outcome(plan, prop)
            source = stored.event.change_source
            if not written_by_hubspot(source):
                continue
            restored = [
                r.field
                for r in plan.results
                if r.hubspot_property == prop and r.action is Action.WRITE_HUBSPOT
            ]
            if restored:
                self.restore[cid].update(restored)
                outcomes[stored.row_id] = Outcome(
                    "hubspot_automatic",
                    f"HubSpot's own write ({source}) not applied; WARP's value is written back",
                )
        return outcomes


def _ignore_reason(
    mappings: MappingSet,
    states: Mapping[str, FieldState],
    row: Mapping[str, Any],
    prop: str,
    event: Any,
) -> tuple[str, str]:
    """Why a property change is not planned ("" when it is), and its category."""
    fields = mappings.by_property(prop)
    if not fields:
        return f"property {prop} is not mapped", "unmapped"
    if not any(f.direction.allows_inbound for f in fields):
        return "WARP_TO_HUBSPOT field: WARP is authoritative, not applied", "outbound_only"
    for mapping in fields:
        state = states.get(mapping.name)
        if state is None:
            continue
        seen = state.last_modified_at_hubspot
        if seen is not None and event.occurred_at <= seen:
            return "stale: not newer than the last HubSpot change applied", "stale"
        if (
            state.last_synced_direction is Direction.WARP_TO_HUBSPOT
            and not state.is_in_conflict
            and mapping.canonical_hubspot(event.property_value)
            == mapping.canonical_hubspot(state.hubspot_value)
        ):
            return "echo of our own write (the value we last wrote)", "echo"
    if any(awaits_warp_time(m, states.get(m.name), m.read_warp(row)) for m in fields):
        return (
            "WARP changed this field too and its change message has not arrived: "
            "outbound sync decides by both times when it does",
            "awaits_warp",
        )
    return "", ""


def _skip(prop: str, mappings: MappingSet, reason: str) -> FieldResult:
    """A skipped-field entry for the sync log (keyed by field name, else property)."""
    fields = mappings.by_property(prop)
    name = fields[0].name if fields else prop
    return FieldResult(
        name,
        prop,
        Decision(Action.NOTHING, reason=reason),
        warp_before=None,
        hubspot_before=None,
        applied=False,
        note=reason,
    )


def _planned_outcome(plan: Plan, prop: str) -> Outcome:
    results = [r for r in plan.results if r.hubspot_property == prop]
    if any(r.applied and r.action is Action.WRITE_WARP for r in results):
        return Outcome("applied", "applied to WARP")
    if any(r.action is Action.CONFLICT for r in results):
        return Outcome("conflict", "held for manual resolution")
    skipped = [r for r in results if not r.applied]
    if skipped:
        return Outcome("warp_newer", skipped[0].note or skipped[0].decision.reason)
    return Outcome("in_sync", "WARP already holds this value")
