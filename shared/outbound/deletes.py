"""A customer deleted in WARP: its company is marked closed in HubSpot, never deleted.

Sales keeps the company's history; ``warp_status`` becomes
``DELETED_CUSTOMER_STATUS`` (CLOSED by default) and the sync log keeps the link
(customer id, company id). The customer's pending coalesced changes are dropped,
so a flush that follows cannot write its old status back.

The company is found through the customer's row. WARP's sync tables cascade on
the customer's deletion, so WARP must publish the DELETE while the row still
exists (or soft-delete it); a message for a row already gone is skipped with
that reason.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from shared.db.repositories import customers, outbound_dirty, sync_log
from shared.engine.deps import Engine
from shared.engine.sync import lock_customers
from shared.hubspot.errors import HubSpotError
from shared.links import linked_id
from shared.mapping import EntityType
from shared.observability import log_operation

log = logging.getLogger("warp_hubspot_sync.outbound")

STATUS_PROPERTY = "warp_status"


def close_deleted_customer(
    engine: Engine,
    customer_id: str,
    *,
    triggered_by: str,
    triggered_by_user: str | None = None,
) -> dict[str, Any]:
    """Mark the company of deleted customer ``customer_id`` closed; return what happened.

    A retryable HubSpot failure raises (the delivery is answered 503 and Pub/Sub
    redelivers); a permanent one is recorded as a FAILED sync-log row and returned.
    """
    started = time.monotonic()
    # One transaction under the customer's lock, HubSpot write included, as every flow
    # writing a customer's fields does: a flush cannot interleave with the close.
    with engine.database.transaction() as tx:
        lock_customers(tx, [customer_id])
        row = customers.get(tx, customer_id)
        # Pending changes of a deleted customer must not revive its company's status.
        tx.execute(
            f"DELETE FROM {outbound_dirty.TABLE} WHERE customer_id = CAST(:id AS uuid)",
            {"id": customer_id},
        )
        if row is None:
            return _skipped(customer_id, "customer row already removed: its company is unknown")
        if row.get("hubspot_sync_enabled") is False:
            return _skipped(customer_id, "hubspot_sync_enabled is false")
        company_id = linked_id(row, EntityType.CUSTOMER)
        if company_id is None:
            return _skipped(customer_id, "customer was never linked to a company")
        prop, value, error = _close_company(engine, customer_id, company_id)
        sync_log.record(
            tx,
            entity_type=EntityType.CUSTOMER.value,
            entity_id=customer_id,
            hubspot_object_id=company_id,
            operation="DELETE",
            direction="WARP_TO_HUBSPOT",
            status="FAILED" if error else "SUCCESS",
            fields_synced=[] if error else [prop],
            field_changes={} if error else {prop: {"new": value, "source": "warp"}},
            error_message=str(error) if error else None,
            completed_at=engine.now(),
            triggered_by=triggered_by,
            triggered_by_user=triggered_by_user,
        )
        if error is None:
            customers.mark_synced_to(tx, customer_id, engine.now())
    return _report(customer_id, company_id, prop, value, error, started)


def close_removed_customer(
    engine: Engine, customer_id: str, company_id: str | None
) -> dict[str, Any]:
    """Close the company of a customer whose row is gone (a captured DELETE).

    The capture read the company id from the row on its way out. No sync-log row: the
    log's customer reference cannot outlive the customer; the log line records it.
    """
    if company_id is None:
        return _skipped(customer_id, "customer was never linked to a company")
    started = time.monotonic()
    with engine.database.transaction() as tx:
        lock_customers(tx, [customer_id])
        prop, value, error = _close_company(engine, customer_id, company_id)
    return _report(customer_id, company_id, prop, value, error, started)


def _report(
    customer_id: str,
    company_id: str,
    prop: str,
    value: str,
    error: HubSpotError | None,
    started: float,
) -> dict[str, Any]:
    """The close's log line and its answer."""
    log_operation(
        entity_type=EntityType.CUSTOMER.value,
        direction="WARP_TO_HUBSPOT",
        operation="DELETE",
        entity_id=customer_id,
        outcome="failed" if error else "success",
        duration_ms=(time.monotonic() - started) * 1000,
        fields=[] if error else [prop],
        error=error,
        hubspot_object_id=company_id,
    )
    if error is not None:
        return {"outcome": "failed", "company_id": company_id, "reason": str(error)}
    return {"outcome": "closed", "company_id": company_id, "status": value}


def _close_company(
    engine: Engine, customer_id: str, company_id: str
) -> tuple[str, str, HubSpotError | None]:
    """Write the closed status; a retryable failure raises, a permanent one is returned."""
    prop, value = _status_property(engine, customer_id)
    try:
        engine.hubspot.companies.update(company_id, {prop: value})
    except HubSpotError as exc:
        if exc.retryable:
            raise  # rolled back: the pending changes stay until the redelivery
        return prop, value, exc
    return prop, value, None


def _status_property(engine: Engine, customer_id: str) -> tuple[str, str]:
    """The property WARP's status maps to, and the closed status in its HubSpot form."""
    status = engine.settings.deleted_customer_status
    mapping = engine.mapping_for(customer_id, EntityType.CUSTOMER)
    for f in mapping.outbound():
        if f.warp_field == "status":
            return f.hubspot_property, f.to_hubspot(status)
    return STATUS_PROPERTY, status


def _skipped(customer_id: str, reason: str) -> dict[str, Any]:
    log.info(
        "deleted customer skipped",
        extra={"fields": {"customer_id": customer_id, "reason": reason}},
    )
    return {"outcome": "skipped", "reason": reason}
