"""Linking unlinked customers to a HubSpot company and contact, never creating a duplicate.

For a batch of customers without ``external_ids.hubspot_company_id``:

1. a company whose unique ``warp_ban`` is the customer's BAN (one batch read by
   ``idProperty=warp_ban``): ours already, e.g. created by an earlier attempt whose
   answer was lost;
2. else a company with the customer's domain, 3. else with exactly its name (one
   ``IN`` search per property for the whole batch), neither carrying another
   customer's BAN nor linked to another customer;
4. else one is created by a batch *upsert* keyed on ``warp_ban``: the BAN is the
   idempotency key, so a retry after a timeout updates what the first attempt
   created instead of making a second company.

The primary contact goes the same way keyed on its email (a unique property):
found, or upserted, then associated with the company. A contact without an email
is left unlinked (nothing identifies it safely). Ids are stored in
``external_ids`` under the customers' advisory locks, company links before any
contact is written; a link another flow stored meanwhile is kept. A record
HubSpot refused is reported on that customer alone; a failure of a whole call
raises.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from shared.db import Row
from shared.db.repositories import customers, webhook_events
from shared.engine.deps import Engine
from shared.engine.relink import set_link
from shared.engine.sync import lock_customers
from shared.errors import SyncError
from shared.hubspot import ObjectsApi
from shared.hubspot.errors import HubSpotError
from shared.links import BAN_PROPERTY, EMAIL_PROPERTY, linked_id
from shared.mapping import Direction, EntityType, MappingError, MappingSet

log = logging.getLogger("warp_hubspot_sync.outbound")

# How far back creation webhooks stand in for search: well past the index's lag.
RECENT_CREATIONS = timedelta(minutes=10)


@dataclass
class LinkOutcome:
    """How one customer got (or did not get) its company and contact."""

    customer_id: str
    company_id: str | None = None
    contact_id: str | None = None
    company_via: str | None = None  # linked | warp_ban | domain | name | created
    contact_via: str | None = None  # linked | email | created
    error: SyncError | None = None
    notes: list[str] = field(default_factory=list)

    def link(self, entity: EntityType) -> tuple[str | None, str | None]:
        """The id found for ``entity`` and how it was found."""
        if entity is EntityType.CUSTOMER:
            return self.company_id, self.company_via
        return self.contact_id, self.contact_via

    def found(self, entity: EntityType, object_id: str, via: str) -> None:
        """Record the id found for ``entity`` and how."""
        if entity is EntityType.CUSTOMER:
            self.company_id, self.company_via = str(object_id), via
        else:
            self.contact_id, self.contact_via = str(object_id), via


def link_customers(
    engine: Engine,
    rows: Sequence[Row],
    *,
    triggered_by: str,
    triggered_by_user: str | None = None,
) -> dict[str, LinkOutcome]:
    """Find or create the company and contact of every unlinked customer in ``rows``."""
    outcomes = {str(r["id"]): _start(r) for r in rows}
    by_id = {str(r["id"]): r for r in rows}
    unlinked = [r for r in rows if outcomes[str(r["id"])].company_id is None]
    if unlinked:
        _link_companies(engine, unlinked, outcomes)
        # Stored before any contact is written: HubSpot may create a company of its own
        # for a new contact (auto-association), and that company's creation webhook
        # must find the customer linked already, not match it by the email domain.
        _store(
            engine,
            outcomes,
            EntityType.CUSTOMER,
            triggered_by=triggered_by,
            triggered_by_user=triggered_by_user,
        )
    contactless = [
        by_id[cid]
        for cid, o in outcomes.items()
        if o.company_id and not o.contact_id and o.error is None
    ]
    if contactless:
        _link_contacts(engine, contactless, outcomes)
        _store(
            engine,
            outcomes,
            EntityType.CONTACT,
            triggered_by=triggered_by,
            triggered_by_user=triggered_by_user,
        )
    return outcomes


def _start(row: Row) -> LinkOutcome:
    outcome = LinkOutcome(str(row["id"]))
    outcome.company_id = linked_id(row, EntityType.CUSTOMER)
    outcome.contact_id = linked_id(row, EntityType.CONTACT)
    if outcome.company_id:
        outcome.company_via = "linked"
    if outcome.contact_id:
        outcome.contact_via = "linked"
    return outcome


# --- companies ------------------------------------------------------------------------


def _link_companies(engine: Engine, rows: list[Row], outcomes: dict[str, LinkOutcome]) -> None:
    companies = engine.hubspot.companies
    values = {
        str(r["id"]): _values(engine.mapping_for(r["id"], EntityType.CUSTOMER), r) for r in rows
    }
    bans = {str(r["ban"]): str(r["id"]) for r in rows if r.get("ban")}
    # 1. Ours already: the BAN is unique in HubSpot.
    if bans:
        found = companies.batch_read(
            list(bans), properties=[BAN_PROPERTY], id_property=BAN_PROPERTY
        )
        for key, record in found.results.items():
            outcomes[bans[key]].found(EntityType.CUSTOMER, record.id, "warp_ban")
    claimed = {o.company_id for o in outcomes.values() if o.company_id}
    # 2. and 3. An unclaimed company with the same domain, then the same name: what
    # search finds, and what it may not show yet (its index lags writes by moments).
    recent: list[dict[str, str]] | None = None
    for prop in ("domain", "name"):
        wanted = {
            cid: values[cid][prop].strip().lower()
            for cid in values
            if outcomes[cid].company_id is None and values[cid].get(prop, "").strip()
        }
        if not wanted:
            continue
        if recent is None:
            recent = _recently_created(engine)
        candidates = _search_in(companies, prop, set(wanted.values()))
        seen = {c["id"] for c in candidates}
        candidates += [c for c in recent if c["id"] not in seen]
        linked_elsewhere = _linked_company_ids(engine, [c["id"] for c in candidates])
        for cid in sorted(wanted):
            match = _choose(candidates, prop, wanted[cid], claimed | linked_elsewhere)
            if match is not None:
                claimed.add(match)
                outcomes[cid].found(EntityType.CUSTOMER, match, prop)
    # 4. Create, keyed on the BAN so that a retry cannot create a second one.
    creatable: dict[str, dict[str, str]] = {}
    for ban, cid in bans.items():
        if outcomes[cid].company_id is None:
            creatable[ban] = {k: v for k, v in values[cid].items() if k != BAN_PROPERTY}
    for cid in values:
        if outcomes[cid].company_id is None and cid not in bans.values():
            outcomes[cid].error = SyncError("customer has no BAN: cannot create its company safely")
    if creatable:
        result = companies.batch_upsert(creatable, id_property=BAN_PROPERTY)
        for key, record in result.results.items():
            via = "created" if record.new is not False else "warp_ban"
            outcomes[bans[key]].found(EntityType.CUSTOMER, record.id, via)
        _refused(result.errors, bans, outcomes, EntityType.CUSTOMER)


def _search_in(api: ObjectsApi, prop: str, wanted: set[str]) -> list[dict[str, str]]:
    """Every record whose ``prop`` is one of ``wanted`` (lowercase), as few searches as fit."""
    found: dict[str, dict[str, str]] = {}
    for record in api.search_in(prop, wanted, properties=["domain", "name", BAN_PROPERTY]):
        found[record.id] = {"id": record.id, **{k: v or "" for k, v in record.properties.items()}}
    return list(found.values())


def _recently_created(engine: Engine) -> list[dict[str, str]]:
    """Companies created in HubSpot lately, as their stored creation webhooks name them.

    A company a user created seconds ago may be missing from search results; its
    creation webhook is not. Read by id (no index lag): one call, none when there
    were no creations in the window.
    """
    since = engine.now() - RECENT_CREATIONS
    with engine.database.transaction() as tx:
        ids = webhook_events.recent_object_ids(tx, "company.creation", since, limit=100)
    if not ids:
        return []
    found = engine.hubspot.companies.batch_read(ids, properties=["domain", "name", BAN_PROPERTY])
    return [
        {"id": r.id, **{k: v or "" for k, v in r.properties.items()}}
        for r in {r.id: r for r in found.results.values()}.values()
    ]


def _choose(
    candidates: list[dict[str, str]], prop: str, wanted: str, taken: set[str]
) -> str | None:
    """The oldest free candidate whose ``prop`` is ``wanted`` and that no customer owns."""
    free = [
        c["id"]
        for c in candidates
        if c.get(prop, "").strip().lower() == wanted
        and not c.get(BAN_PROPERTY)
        and c["id"] not in taken
    ]
    return min(free, key=lambda i: (len(i), i)) if free else None


def _linked_company_ids(engine: Engine, company_ids: list[str]) -> set[str]:
    if not company_ids:
        return set()
    with engine.database.transaction() as tx:
        return {
            i for i in company_ids if customers.find_linked(tx, EntityType.CUSTOMER, i) is not None
        }


# --- contacts -------------------------------------------------------------------------


def _link_contacts(engine: Engine, rows: list[Row], outcomes: dict[str, LinkOutcome]) -> None:
    contacts = engine.hubspot.contacts
    by_email: dict[str, str] = {}
    props: dict[str, dict[str, str]] = {}
    for row in rows:
        cid = str(row["id"])
        values = _values(engine.mapping_for(cid, EntityType.CONTACT), row)
        email = values.get(EMAIL_PROPERTY, "").strip().lower()
        if not email:
            outcomes[cid].notes.append("primary contact has no email: contact left unlinked")
            continue
        if email in by_email:
            outcomes[cid].notes.append("primary contact's email belongs to another customer")
            continue
        by_email[email] = cid
        props[email] = {k: v for k, v in values.items() if k != EMAIL_PROPERTY}
    if not by_email:
        return
    found = contacts.batch_read(
        list(by_email), properties=[EMAIL_PROPERTY], id_property=EMAIL_PROPERTY
    )
    contact_ids: dict[str, tuple[str, str]] = {}
    for email, record in found.results.items():
        contact_ids[by_email[email.lower()]] = (record.id, "email")
    missing = {e: props[e] for e, cid in by_email.items() if cid not in contact_ids}
    if missing:
        result = contacts.batch_upsert(missing, id_property=EMAIL_PROPERTY)
        for email, record in result.results.items():
            via = "created" if record.new is not False else "email"
            contact_ids[by_email[email.lower()]] = (record.id, via)
        _refused(result.errors, by_email, outcomes, EntityType.CONTACT)
    # The contact counts as linked only once it is associated with the company, so a
    # retry after a failed association finds the contact by email and associates again.
    for cid, (contact_id, via) in sorted(contact_ids.items()):
        company_id = outcomes[cid].company_id
        assert company_id is not None
        try:
            # Primary: the contact's company in HubSpot's UI is ours, even where HubSpot's
            # auto-association made another one primary first.
            engine.hubspot.associate("contacts", contact_id, "companies", company_id, primary=True)
        except HubSpotError as exc:
            outcomes[cid].error = exc
            continue
        outcomes[cid].found(EntityType.CONTACT, contact_id, via)


# --- shared -----------------------------------------------------------------------------


def _values(mapping: MappingSet, row: Row) -> dict[str, str]:
    """The HubSpot values of the outbound fields that hold something in WARP."""
    values: dict[str, str] = {}
    for f in mapping.outbound():
        try:
            value = f.to_hubspot(f.read_warp(row))
        except MappingError:
            continue  # the sync that follows reports the field with its reason
        if value != "":
            values[f.hubspot_property] = value
    return values


def _refused(
    errors: Iterable[HubSpotError],
    by_key: Mapping[Any, str],
    outcomes: dict[str, LinkOutcome],
    entity: EntityType,
) -> None:
    for error in errors:
        context = error.context or {}
        keys = [
            str(k)
            for name in ("ids", "objectWriteTraceId", "keys")
            for k in context.get(name) or []
        ]
        for key in keys:
            cid = by_key.get(key) or by_key.get(key.lower())
            if cid is not None and outcomes[cid].error is None:
                outcomes[cid].error = error
                outcomes[cid].notes.append(f"HubSpot refused the {entity.object_name}")


def _store(
    engine: Engine,
    outcomes: dict[str, LinkOutcome],
    entity: EntityType,
    *,
    triggered_by: str,
    triggered_by_user: str | None,
) -> None:
    """Record new company (or contact) links; keep any link another flow stored meanwhile."""
    new = {
        cid: o for cid, o in outcomes.items() if o.link(entity)[0] and o.link(entity)[1] != "linked"
    }
    if not new:
        return
    with engine.database.transaction() as tx:
        lock_customers(tx, new)
        for cid, outcome in sorted(new.items()):
            row = customers.get(tx, cid)
            object_id, via = outcome.link(entity)
            if row is None or object_id is None or via is None:
                continue
            current = linked_id(row, entity)
            if current and current != object_id:
                outcome.notes.append(f"{entity.value} linked meanwhile by another flow")
                outcome.found(entity, current, via)
                continue
            # Only a created record is logged: a found one was HubSpot's already.
            set_link(
                tx,
                customer_id=cid,
                entity_type=entity,
                object_id=object_id,
                old_id=current,
                operation="CREATE",
                direction=Direction.WARP_TO_HUBSPOT,
                now=engine.now(),
                triggered_by=triggered_by,
                triggered_by_user=triggered_by_user,
                logged=via == "created",
            )
            log.info(
                "customer linked",
                extra={
                    "fields": {
                        "customer_id": cid,
                        "entity_type": entity.value,
                        "hubspot_object_id": object_id,
                        "via": via,
                    }
                },
            )
