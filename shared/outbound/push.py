"""Pushing WARP customers to HubSpot: link the unlinked, then sync, per customer outcomes.

The flush, the retry of one queued customer and the API's "sync this customer
to HubSpot" all come through :func:`push_customers`, so they link and decide
alike. Customers that are gone or have ``hubspot_sync_enabled`` false are
skipped with the reason; a customer HubSpot refused carries its error (and a
FAILED sync-log row); a failure of a whole HubSpot call raises.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.conflicts import Action
from shared.db.repositories import customers, sync_log
from shared.engine.deps import Engine
from shared.engine.sync import BOTH_WAYS, CustomerSync, sync_customers
from shared.errors import SyncError
from shared.links import linked_id
from shared.mapping import EntityType
from shared.outbound.linking import LinkOutcome, link_customers

log = logging.getLogger("warp_hubspot_sync.outbound")


@dataclass
class PushResult:
    """One customer's outcome. ``status``: skipped, not_found, or a CustomerSync status."""

    customer_id: str
    status: str
    reason: str = ""
    link: LinkOutcome | None = None
    sync: CustomerSync | None = None
    error: SyncError | None = None

    @property
    def company_id(self) -> str | None:
        """The company the customer is linked to, if any."""
        return self.link.company_id if self.link else None


def push_customers(
    engine: Engine,
    customer_ids: Sequence[str],
    *,
    triggered_by: str,
    triggered_by_user: str | None = None,
    fields: Mapping[str, Collection[str] | None] | None = None,
    warp_times: Mapping[str, datetime] | None = None,
    allowed: Collection[Action] = BOTH_WAYS,
    operation: str = "UPDATE",
    attempt: int = 0,
) -> list[PushResult]:
    """Link (when needed) and sync these customers; one result per id, in order.

    ``fields`` limits a customer to some mapped fields (None or absent: all).
    ``attempt`` is written to the FAILED sync-log rows of refused customers.
    """
    ids = list(dict.fromkeys(str(i) for i in customer_ids))
    with engine.database.transaction() as tx:
        rows = {str(r["id"]): r for r in customers.get_many(tx, ids)}
    results: dict[str, PushResult] = {}
    eligible = []
    for cid in ids:
        row = rows.get(cid)
        if row is None:
            results[cid] = PushResult(cid, "not_found", "customer not found in WARP")
        elif row.get("hubspot_sync_enabled") is False:
            results[cid] = PushResult(cid, "skipped", "hubspot_sync_enabled is false")
        else:
            eligible.append(row)
    needs_link = [
        r
        for r in eligible
        if linked_id(r, EntityType.CUSTOMER) is None or linked_id(r, EntityType.CONTACT) is None
    ]
    links = (
        link_customers(
            engine, needs_link, triggered_by=triggered_by, triggered_by_user=triggered_by_user
        )
        if needs_link
        else {}
    )
    to_sync = []
    for row in eligible:
        cid = str(row["id"])
        link = links.get(cid)
        if link is not None and link.error is not None:
            results[cid] = PushResult(cid, "failed", "linking failed", link=link, error=link.error)
        elif link is not None and link.company_id is None:
            results[cid] = PushResult(cid, "not_linked", "; ".join(link.notes), link=link)
        else:
            to_sync.append(cid)
    limited = {cid: f for cid, f in (fields or {}).items() if f is not None}
    for sync in sync_customers(
        engine,
        to_sync,
        allowed=allowed,
        triggered_by=triggered_by,
        triggered_by_user=triggered_by_user,
        fields=limited,
        warp_times=warp_times,
        operation=operation,
    ):
        cid = sync.customer_id
        link = links.get(cid) or LinkOutcome(
            cid,
            company_id=linked_id(rows[cid], EntityType.CUSTOMER),
            contact_id=linked_id(rows[cid], EntityType.CONTACT),
        )
        results[cid] = PushResult(cid, sync.status, link=link, sync=sync, error=sync.error)
    failed = [r for r in results.values() if r.error is not None]
    if failed:
        _log_failures(engine, failed, triggered_by, triggered_by_user, attempt)
    return [results[cid] for cid in ids]


def push_customer(
    engine: Engine,
    customer_id: str,
    *,
    triggered_by: str = "api",
    triggered_by_user: str | None = None,
    fields: Collection[str] | None = None,
    allowed: Collection[Action] = BOTH_WAYS,
) -> PushResult:
    """Link and sync one customer now (the API's ``POST /customers/{id}/to-hubspot``)."""
    (result,) = push_customers(
        engine,
        [customer_id],
        triggered_by=triggered_by,
        triggered_by_user=triggered_by_user,
        fields={str(customer_id): fields},
        allowed=allowed,
    )
    return result


def _log_failures(
    engine: Engine,
    failed: list[PushResult],
    triggered_by: str,
    triggered_by_user: str | None,
    attempt: int,
) -> None:
    """A FAILED sync-log row per refused customer, so its history shows every attempt."""
    with engine.database.transaction() as tx:
        for result in failed:
            sync_log.record(
                tx,
                entity_type=EntityType.CUSTOMER.value,
                entity_id=result.customer_id,
                hubspot_object_id=result.company_id,
                operation="UPDATE",
                direction="WARP_TO_HUBSPOT",
                status="FAILED",
                error_message=str(result.error)[:2000],
                retry_count=attempt,
                completed_at=engine.now(),
                triggered_by=triggered_by,
                triggered_by_user=triggered_by_user,
            )
    for result in failed:
        log.warning(
            "customer not pushed to HubSpot",
            extra={
                "fields": {
                    "customer_id": result.customer_id,
                    "reason": result.reason or "HubSpot refused the record",
                    "retryable": bool(result.error and result.error.retryable),
                }
            },
        )
