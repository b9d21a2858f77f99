"""The reads a reconciliation needs beyond the repositories: counts, pages, reverse links."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared.db import Row, Session
from shared.db.repositories._json import to_json
from shared.db.repositories.customers import link_sql, linked_sql
from shared.mapping import EntityType

CUSTOMERS = "accounts.customers"
RUNS = "accounts.hubspot_reconciliation_runs"
_LINKED = linked_sql()
_ENABLED = "hubspot_sync_enabled IS NOT FALSE"


def count_linked(tx: Session) -> int:
    """How many linked customers a FULL run pages through (for progress and ETA)."""
    return int(tx.fetch_value(f"SELECT count(*) FROM {CUSTOMERS} WHERE {_LINKED} AND {_ENABLED}"))


def count_unlinked(tx: Session) -> int:
    """How many customers without a company a FULL run's last phase looks at."""
    return int(
        tx.fetch_value(f"SELECT count(*) FROM {CUSTOMERS} WHERE NOT ({_LINKED}) AND {_ENABLED}")
    )


def page_linked_ids(
    tx: Session, after_id: str | None, limit: int, *, changed_since: datetime | None = None
) -> list[str]:
    """Ids of linked customers by id after ``after_id``; only those WARP changed since then
    with ``changed_since``. The sync reads the rows itself, under its locks."""
    params: dict[str, Any] = {"limit": limit}
    conditions = [_LINKED, _ENABLED]
    if after_id is not None:
        conditions.append("id > CAST(:after_id AS uuid)")
        params["after_id"] = str(after_id)
    if changed_since is not None:
        conditions.append("updated_at >= :since")
        params["since"] = changed_since
    rows = tx.fetch(
        f"SELECT id FROM {CUSTOMERS} WHERE {' AND '.join(conditions)} ORDER BY id LIMIT :limit",
        params,
    )
    return [str(r["id"]) for r in rows]


def customers_linked_to(
    tx: Session, entity_type: EntityType, object_ids: Sequence[str], *, changed_before: datetime
) -> list[str]:
    """Customers linked to these companies (or contacts) that WARP did not change since then.

    Customers changed at or after ``changed_before`` were already checked in the
    run's WARP phase, so the HubSpot phase leaves them out.
    """
    if not object_ids:
        return []
    rows = tx.fetch(
        f"SELECT id FROM {CUSTOMERS} WHERE {link_sql(entity_type)} = ANY(CAST(:ids AS text[])) "
        f"AND {_LINKED} AND {_ENABLED} AND updated_at < :before ORDER BY id",
        {"ids": [str(i) for i in object_ids], "before": changed_before},
    )
    return [str(r["id"]) for r in rows]


def last_completed(tx: Session, entity_type: str) -> Row | None:
    """The newest completed, writing FULL or INCREMENTAL run of ``entity_type``."""
    return tx.fetch_one(
        f"SELECT * FROM {RUNS} WHERE status = 'COMPLETED' AND dry_run IS NOT TRUE "
        "AND run_type IN ('FULL', 'INCREMENTAL') AND entity_type = :entity_type "
        "ORDER BY started_at DESC LIMIT 1",
        {"entity_type": entity_type},
    )


def running_full(tx: Session) -> Row | None:
    """A FULL run still RUNNING, if any (the newest)."""
    return tx.fetch_one(
        f"SELECT * FROM {RUNS} WHERE status = 'RUNNING' AND run_type = 'FULL' "
        "ORDER BY started_at DESC LIMIT 1"
    )


def by_idempotency_key(tx: Session, key: str) -> Row | None:
    """The run started for this trigger, if any."""
    return tx.fetch_one(f"SELECT * FROM {RUNS} WHERE idempotency_key = :key", {"key": key})


def save_checkpoint(
    tx: Session, run_id: str, state: dict[str, Any], counts: dict[str, int], *, expected_seq: int
) -> bool:
    """Save the next checkpoint if the run is still where this worker left it.

    False when another worker moved the run on (or it is no longer RUNNING): the
    caller then stops, and its transaction rolls back.
    """
    touched = tx.execute(
        f"UPDATE {RUNS} SET checkpoint = CAST(:state AS jsonb), heartbeat_at = NOW(), "
        "total_records = :total_records, records_in_sync = :records_in_sync, "
        "records_updated = :records_updated, conflicts_detected = :conflicts_detected, "
        "errors_encountered = :errors_encountered "
        "WHERE id = CAST(:id AS uuid) AND status = 'RUNNING' "
        "AND COALESCE(CAST(checkpoint ->> 'seq' AS integer), 0) = :expected",
        {"id": str(run_id), "state": to_json(state), "expected": expected_seq, **counts},
    )
    return touched == 1


def claim_stale(tx: Session, run_id: str, heartbeat_at: datetime | None) -> bool:
    """Take over a silent run (beat its heartbeat) unless someone else just did."""
    touched = tx.execute(
        f"UPDATE {RUNS} SET heartbeat_at = NOW() WHERE id = CAST(:id AS uuid) "
        "AND status = 'RUNNING' AND heartbeat_at IS NOT DISTINCT FROM CAST(:beat AS timestamptz)",
        {"id": str(run_id), "beat": heartbeat_at},
    )
    return touched == 1
