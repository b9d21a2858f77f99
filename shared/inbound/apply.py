"""Applying stored HubSpot events to WARP: one chunk of events, one transaction.

The reads and writes; what becomes of each event is decided by the pure rules of
:mod:`shared.inbound.rules` (each event ends with an outcome: a counted category and
a note).

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
     company and a contact (the customer's primary contact link); each decided on
     the links the previous ones left, and written by ``set_link``;
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.capture.pending import Pending, field_times, pending_changes
from shared.conflicts import Action, Decision
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
from shared.engine.relink import set_link
from shared.engine.snapshots import warp_snapshot
from shared.engine.sync import FROM_HUBSPOT, lock_customers
from shared.errors import SyncError, WarpChangedDuringSync
from shared.hubspot.errors import NotFound
from shared.inbound import rules
from shared.inbound.queries import customers_linked_to
from shared.inbound.receive import StoredEvent
from shared.inbound.rules import Category, LinkChange, Outcome, Route
from shared.links import linked_id
from shared.mapping import EntityType, MappingSet

log = logging.getLogger("warp_hubspot_sync.inbound")

TRIGGERED_BY = "webhook"


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
        ctx.captured = pending_changes(tx, ctx.rows)  # after the rows: shared.capture.pending

        properties: dict[tuple[EntityType, str], list[StoredEvent]] = defaultdict(list)
        deletions: list[StoredEvent] = []
        for stored in work:
            event = stored.event
            routed = rules.route(event, app_id)
            if isinstance(routed, Outcome):
                result.outcomes[stored.row_id] = routed
            elif routed is Route.PROPERTY:
                properties[(rules.entity_of(event), str(event.object_id))].append(stored)
            elif routed is Route.DELETION:
                deletions.append(stored)
            else:
                outcome, changes = rules.link_event(event, ctx.links, ctx.rows, prepared.matches)
                ctx.set_links(changes)
                result.outcomes[stored.row_id] = outcome
        for (et, object_id), group in properties.items():
            result.outcomes.update(ctx.property_changes(et, object_id, group))
        result.plans = ctx.commit()
        derived = ctx.mark_derived()
        result.follow_up = derived or ctx.restored
        for row_id, cid in ctx.changed_events():
            # WARP's application wrote the customer after it was read: nothing of it was
            # recorded, and its events are tried again later on a fresh read.
            result.outcomes.pop(row_id, None)
            result.failed[row_id] = WarpChangedDuringSync(cid)
        for stored in deletions:
            outcome, changes = rules.deletion(stored.event, ctx.links)
            ctx.set_links(changes)
            result.outcomes[stored.row_id] = outcome
        webhook_events.mark_processed(tx, list(result.outcomes))
    if result.follow_up:  # after the commit: the flush must see the dirty marks
        # Imported here: only a chunk that marks customers for outbound sync pays for it.
        from shared.outbound.receive import schedule_flush

        schedule_flush(engine)
    return result


def _prepare(engine: Engine, events: Sequence[StoredEvent], app_id: int | None) -> _Prepared:
    """Find the customers to lock, and the customer each new company should link to."""
    companies, contacts = rules.touched_ids((s.event for s in events), app_id)
    with engine.database.transaction() as tx:
        linked = customers_linked_to(tx, sorted(companies), sorted(contacts))
    customer_ids = {str(r["id"]) for r in linked}
    linked_companies = {i for r in linked if (i := linked_id(r, EntityType.CUSTOMER))}
    creations = [s for s in events if rules.needs_match(s.event, app_id, linked_companies)]
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
    values = rules.creation_values(creation.event, (s.event for s in events))
    if values:
        return values
    try:
        record = engine.hubspot.companies.get(
            str(creation.event.object_id), properties=rules.MATCH_PROPERTIES
        )
    except NotFound:
        return {}
    except SyncError as exc:
        if not exc.retryable:
            raise
        failed[creation.row_id] = exc
        return None
    return {k: str(record.properties.get(k) or "") for k in rules.MATCH_PROPERTIES}


def _match_company(tx: Session, values: Mapping[str, str]) -> tuple[str | None, str]:
    """The one unlinked customer a new company belongs to (:func:`rules.choose_match`)."""
    domain = (values.get("domain") or "").strip().lower()
    name = (values.get("name") or "").strip()
    by_domain = rules.unlinked(customers.find_by_domain(tx, domain)) if domain else set()
    by_name = rules.unlinked(customers.find_by_name(tx, name)) if name else set()
    return rules.choose_match(by_domain, by_name)


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
            for et in EntityType:
                value = linked_id(row, et)
                if value:
                    self.links.setdefault((et, value), cid)
        self.state_rows: dict[tuple[str, str], list[list[Any]]] = defaultdict(list)
        self.captured: Mapping[str, Pending] = {}
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
            sealer=self.engine.sealer,
            read_hubspot=False,  # planned from the events, not from HubSpot's values
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
            if not written:
                continue
            for et in EntityType:
                others = self.engine.mapping_for(item.customer_id, et)
                if et is not item.entity_type and item.mappings.feeds(others):
                    feeding.append((item.customer_id, others, written))
        if not feeding:
            return False
        # Imported here: the outbound package is not part of this function's cold start.
        from shared.outbound.fields import outbound_fields, stored_fields

        derived: dict[str, set[str]] = defaultdict(set)
        for cid, others, written in feeding:
            names = outbound_fields([others], written)
            assert names is not None  # None stands for "every field": written is never empty
            derived[cid] |= names
        for cid, names in derived.items():
            if names:
                outbound_dirty.mark(self.tx, cid, stored_fields(names))
        return any(derived.values())

    def changed_events(self) -> list[tuple[str, str]]:
        """(event row id, customer id) of the planned events whose customer was left out."""
        return [(row_id, cid) for cid in self.changed for row_id in self.planned_events[cid]]

    # -- links ---------------------------------------------------------------------

    def set_links(self, changes: Sequence[LinkChange]) -> None:
        """Carry out the link changes a rule decided, keeping rows and link index current."""
        for change in changes:
            cid, et = change.customer_id, change.entity_type
            old = linked_id(self.rows[cid], et)
            row = set_link(
                self.tx,
                customer_id=cid,
                entity_type=et,
                object_id=change.object_id,
                old_id=old,
                operation=change.operation,
                why=change.why,
                now=self.now,
                triggered_by=TRIGGERED_BY,
                review=change.review,
            )
            if row is not None:
                self.rows[cid] = self.read[cid] = row
            if old is not None:
                self.links.pop((et, old), None)
            if change.object_id is not None:
                self.links[(et, change.object_id)] = cid

    # -- property changes ----------------------------------------------------------

    def property_changes(
        self, et: EntityType, object_id: str, group: Sequence[StoredEvent]
    ) -> dict[str, Outcome]:
        """Plan and commit one object's property changes; the outcome of each event."""
        cid = self.links.get((et, object_id))
        unsynced = rules.unsynced_object(et, None if cid is None else self.rows[cid])
        if unsynced is not None:
            return {s.row_id: unsynced for s in group}
        assert cid is not None  # else unsynced: no customer
        newest, superseded = rules.newest_per_property(group)
        outcomes = {s.row_id: rules.SUPERSEDED for s in superseded}
        mappings = self.engine.mapping_for(cid, et)
        states = states_by_field(
            self.state_rows.get((cid, et.value), []),
            field_times(self.captured[cid], mappings) if cid in self.captured else None,
        )
        values: dict[str, str | None] = {}
        times: dict[str, datetime] = {}
        sources: dict[str, str] = {}
        by_property: dict[str, StoredEvent] = {}
        skipped: list[FieldResult] = []
        for prop, stored in newest.items():
            event = stored.event
            ignored = rules.ignore_reason(mappings, states, self.rows[cid], event)
            if rules.judged(ignored):
                self.judged[cid].extend(
                    field_state.ChangeTime(et.value, cid, object_id, m.name, event.occurred_at)
                    for m in mappings.by_property(prop)
                    if m.direction.allows_inbound
                )
            if ignored is not None:
                outcomes[stored.row_id] = ignored
                if ignored.category is not Category.ECHO:
                    skipped.append(_skip(prop, mappings, ignored.note))
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
            outcomes[stored.row_id] = rules.planned_outcome(plan.results, prop)
            automatic = rules.hubspot_automatic(plan.results, stored.event)
            if automatic is not None:
                restored, outcomes[stored.row_id] = automatic
                self.restore[cid].update(restored)
        return outcomes


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
