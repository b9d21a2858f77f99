"""One page of a reconciliation: sync up to 100 customers, or look for companies of unlinked ones.

Linked customers go through the engine's batch sync (two batch reads, at most
two batch updates, one WARP statement per page); the page's report and the run's
checkpoint are saved inside the same transaction as its WARP writes, so a run
that dies between pages resumes exactly where the database says it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from shared.db import Row, Session
from shared.db.repositories import customers
from shared.engine.deps import Engine
from shared.engine.sync import BOTH_WAYS, CustomerSync, sync_customers
from shared.hubspot.errors import HubSpotError
from shared.links import linked_id
from shared.mapping import EntityType
from shared.reconcile.report import DriftReport

log = logging.getLogger("warp_hubspot_sync.reconcile")

PAGE = 100


def sync_page(
    engine: Engine,
    customer_ids: Sequence[str],
    report: DriftReport,
    *,
    dry_run: bool,
    fields: Collection[str] | None,
    save: Callable[[Session], None],
    on_outcomes: Callable[[Sequence[CustomerSync]], None] | None = None,
) -> list[CustomerSync]:
    """Reconcile these linked customers, count them in ``report``, then ``save(tx)``.

    ``save`` runs in the page's transaction after its writes (the checkpoint);
    ``on_outcomes`` sees each chunk's outcomes (the CLI lists the records).
    Linked records HubSpot no longer returns are looked up once more to say
    whether they were archived, merged or never existed.
    """

    def on_chunk(tx: Session, outcomes: Sequence[CustomerSync]) -> None:
        report.add_outcomes(outcomes)
        if on_outcomes is not None:
            on_outcomes(outcomes)
        missing = [o for o in outcomes if o.missing]
        if missing:
            rows = {str(r["id"]): r for r in _rows(tx, [o.customer_id for o in missing])}
            for outcome in missing:
                for entity_type in outcome.missing:
                    object_id = linked_id(rows.get(outcome.customer_id, {}), entity_type)
                    if object_id is not None:
                        _report_missing(engine, report, outcome.customer_id, entity_type, object_id)
        save(tx)

    return sync_customers(
        engine,
        customer_ids,
        allowed=BOTH_WAYS,
        triggered_by="reconciliation",
        operation="RECONCILE",
        dry_run=dry_run,
        fields={cid: fields for cid in customer_ids} if fields is not None else None,
        on_chunk=on_chunk,
        # One transaction per window: sparse drift (a few percent) then fills whole
        # 100-record batch updates instead of one small update per 100 customers.
        # The window's advisory locks stay well inside PostgreSQL's lock table.
        batch_size=max(len(customer_ids), 1),
    )


def _rows(tx: Session, ids: Sequence[str]) -> list[Row]:
    return customers.get_many(tx, ids)


def _report_missing(
    engine: Engine, report: DriftReport, customer_id: str, entity_type: EntityType, object_id: str
) -> None:
    """Say why a linked record was not returned: merged (a read follows merges), archived, gone."""
    object_type = entity_type.object_type
    api = engine.hubspot.objects(object_type)
    state, merged_into = "missing", None
    try:
        record = api.get(object_id, properties=["hs_object_id"])
        if record.id != object_id:
            state, merged_into = "merged", record.id
    except HubSpotError as exc:
        if exc.status != 404:
            raise
        try:
            api.get(object_id, properties=["hs_object_id"], archived=True)
            state = "archived"
        except HubSpotError as again:
            if again.status != 404:
                raise
    report.add_missing(customer_id, object_type, object_id, state, merged_into)


def match_unlinked(engine: Engine, rows: Iterable[Mapping[str, Any]], report: DriftReport) -> None:
    """Report customers without a company and whether one matches by domain or, else, by name.

    Two searches per 100 customers at most (``IN`` over lower-cased domains, then
    names), so the search budget (a few per second) is never the bottleneck.
    """
    rows = list(rows)
    domains = {str(r["id"]): d for r in rows if (d := _domain(r))}
    names = {
        str(r["id"]): str(r["company_name"]).strip().lower() for r in rows if r.get("company_name")
    }
    by_domain = _search(engine, "domain", set(domains.values()))
    by_name = _search(engine, "name", set(names.values()))
    for row in rows:
        cid = str(row["id"])
        match: dict[str, Any] | None = None
        if cid in domains and by_domain.get(domains[cid]):
            match = {"by": "domain", "company_ids": sorted(by_domain[domains[cid]])[:3]}
        elif cid in names and by_name.get(names[cid]):
            match = {"by": "name", "company_ids": sorted(by_name[names[cid]])[:3]}
        report.add_unlinked(cid, row.get("ban"), match)


def _domain(row: Mapping[str, Any]) -> str | None:
    contact = row.get("contact") or {}
    email = contact.get("email") if isinstance(contact, Mapping) else None
    _, at, domain = str(email or "").strip().rpartition("@")
    domain = domain.strip().lower()
    return domain if at and domain and " " not in domain else None


def _search(engine: Engine, prop: str, values: set[str]) -> dict[str, set[str]]:
    """Company ids by lower-cased ``prop`` value, for every company whose value is in ``values``."""
    found: dict[str, set[str]] = {}
    for record in engine.hubspot.companies.search_in(prop, values, properties=[prop]):
        value = (record.properties.get(prop) or "").strip().lower()
        if value in values:
            found.setdefault(value, set()).add(record.id)
    return found
