"""The few statements inbound processing needs beyond the shared repositories.

They are batch forms (one statement for a whole delivery) the per-row repository
functions do not offer; each uses the indexes migration 0003 created.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared.db import Row, Session
from shared.db.repositories import webhook_events
from shared.db.repositories.customers import link_sql
from shared.mapping import EntityType

CUSTOMERS = "accounts.customers"


def customers_linked_to(
    tx: Session, company_ids: Sequence[str], contact_ids: Sequence[str]
) -> list[Row]:
    """Customers linked to any of these companies or contacts (ids only, no lock)."""
    if not company_ids and not contact_ids:
        return []
    return tx.fetch(
        f"SELECT id, external_ids FROM {CUSTOMERS} "
        f"WHERE {link_sql(EntityType.CUSTOMER)} = ANY(CAST(:companies AS text[])) "
        f"OR {link_sql(EntityType.CONTACT)} = ANY(CAST(:contacts AS text[]))",
        {"companies": list(company_ids), "contacts": list(contact_ids)},
    )


def pending_of_keys(tx: Session, keys: Sequence[str]) -> list[Row]:
    """Stored events with these idempotency keys that are not processed yet."""
    if not keys:
        return []
    return tx.fetch(
        f"SELECT id, event_id FROM {webhook_events.TABLE} "
        "WHERE event_id = ANY(CAST(:keys AS text[])) AND processed IS NOT TRUE",
        {"keys": list(keys)},
    )


def unprocessed_by_ids(tx: Session, ids: Sequence[str]) -> list[Row]:
    """Those of these stored events that are still unprocessed, in occurrence order."""
    if not ids:
        return []
    return tx.fetch(
        f"SELECT id, raw_payload FROM {webhook_events.TABLE} "
        "WHERE id = ANY(CAST(:ids AS uuid[])) AND processed IS NOT TRUE "
        "ORDER BY occurred_at, id",
        {"ids": [str(i) for i in ids]},
    )


def unprocessed_before(tx: Session, received_before: datetime, limit: int) -> list[Row]:
    """Unprocessed events received before ``received_before``, oldest first."""
    return tx.fetch(
        f"SELECT id, raw_payload FROM {webhook_events.TABLE} "
        "WHERE processed IS NOT TRUE AND received_at <= CAST(:before AS timestamptz) "
        "ORDER BY occurred_at, id LIMIT :limit",
        {"before": received_before, "limit": limit},
    )


def count_echoes(tx: Session, app_id: int, since: datetime | None = None) -> int:
    """Stored events that were echoes of our own writes (INTEGRATION from our app id)."""
    params: dict[str, Any] = {"app": str(app_id)}
    condition = ""
    if since is not None:
        condition = " AND received_at >= CAST(:since AS timestamptz)"
        params["since"] = since
    return int(
        tx.fetch_value(
            f"SELECT count(*) FROM {webhook_events.TABLE} "
            f"WHERE change_source = 'INTEGRATION' AND source_id = :app{condition}",
            params,
        )
    )
