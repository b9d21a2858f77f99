"""``accounts.hubspot_sync_queue``: work to run again, and work that failed for good.

Statuses: QUEUED (waiting for ``scheduled_for``), PROCESSING (claimed, with a lease in
``locked_until``), COMPLETED, FAILED (visible and replayable), CANCELLED. ``kind``
says what the payload is (``outbound``, ``inbound_batch``, ``reconcile``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.db.connection import Row, Session
from shared.db.repositories._json import to_json

TABLE = "accounts.hubspot_sync_queue"

# A claimed row whose lease ran out (its worker died) can be claimed again.
_CLAIMABLE = (
    "(status = 'QUEUED' OR (status = 'PROCESSING' AND locked_until IS NOT NULL "
    "AND locked_until < NOW()))"
)


def enqueue(
    tx: Session,
    *,
    kind: str,
    entity_type: str,
    entity_id: str | None,
    operation: str,
    direction: str,
    payload: Mapping[str, Any],
    hubspot_object_id: str | None = None,
    priority: int = 5,
    scheduled_for: datetime | None = None,
    max_retries: int = 3,
    retry_count: int = 0,
    task_name: str | None = None,
    last_error: str | None = None,
    created_at: datetime | None = None,
) -> Row:
    """Add a QUEUED row (due now unless ``scheduled_for`` is given) and return it.

    ``created_at`` (default now) starts the row's retry window.
    """
    row = tx.fetch_one(
        f"INSERT INTO {TABLE} (kind, entity_type, entity_id, hubspot_object_id, operation, "
        "direction, payload, priority, scheduled_for, max_retries, retry_count, task_name, "
        "last_error, created_at) VALUES (:kind, :entity_type, CAST(:entity_id AS uuid), "
        ":hubspot_object_id, :operation, :direction, CAST(:payload AS jsonb), :priority, "
        "COALESCE(CAST(:scheduled_for AS timestamptz), NOW()), :max_retries, :retry_count, "
        ":task_name, :last_error, COALESCE(CAST(:created_at AS timestamptz), NOW())) RETURNING *",
        {
            "kind": kind,
            "entity_type": entity_type,
            "entity_id": None if entity_id is None else str(entity_id),
            "hubspot_object_id": hubspot_object_id,
            "operation": operation,
            "direction": direction,
            "payload": to_json(dict(payload)),
            "priority": priority,
            "scheduled_for": scheduled_for,
            "max_retries": max_retries,
            "retry_count": retry_count,
            "task_name": task_name,
            "last_error": last_error,
            "created_at": created_at,
        },
    )
    assert row is not None
    return row


def get(tx: Session, item_id: str) -> Row | None:
    """One queue row, or None."""
    return tx.fetch_one(f"SELECT * FROM {TABLE} WHERE id = CAST(:id AS uuid)", {"id": str(item_id)})


def claim(tx: Session, item_id: str, *, lease_seconds: float = 600) -> Row | None:
    """Take one row for processing (QUEUED, or PROCESSING with an expired lease).

    None when the row is missing, finished, or held by a live worker: the caller
    then has nothing to do. The claim holds for ``lease_seconds``.
    """
    return tx.fetch_one(
        f"UPDATE {TABLE} SET status = 'PROCESSING', "
        "locked_until = NOW() + make_interval(secs => :lease) "
        f"WHERE id = CAST(:id AS uuid) AND {_CLAIMABLE} RETURNING *",
        {"id": str(item_id), "lease": float(lease_seconds)},
    )


def claim_due(
    tx: Session, *, limit: int = 10, kinds: Sequence[str] | None = None, lease_seconds: float = 600
) -> list[Row]:
    """Claim up to ``limit`` rows that are due, highest priority first.

    Rows other workers are claiming at the same moment are skipped, not waited for.
    """
    params: dict[str, Any] = {"limit": limit, "lease": float(lease_seconds)}
    kind_condition = ""
    if kinds is not None:
        kind_condition = " AND kind = ANY(CAST(:kinds AS text[]))"
        params["kinds"] = list(kinds)
    return tx.fetch(
        f"UPDATE {TABLE} SET status = 'PROCESSING', "
        "locked_until = NOW() + make_interval(secs => :lease) "
        f"WHERE id IN (SELECT id FROM {TABLE} WHERE {_CLAIMABLE} AND scheduled_for <= NOW()"
        f"{kind_condition} ORDER BY priority, scheduled_for LIMIT :limit "
        "FOR UPDATE SKIP LOCKED) RETURNING *",
        params,
    )


def complete(tx: Session, item_id: str) -> None:
    """Mark a row COMPLETED."""
    tx.execute(
        f"UPDATE {TABLE} SET status = 'COMPLETED', processed_at = NOW(), locked_until = NULL "
        "WHERE id = CAST(:id AS uuid)",
        {"id": str(item_id)},
    )


def fail(tx: Session, item_id: str, error: str, *, retry_at: datetime | None) -> Row | None:
    """Record a failed attempt: QUEUED again for ``retry_at``, or FAILED when it is None.

    Either way ``retry_count`` grows by one and ``last_error`` holds ``error``; whether
    to retry is the caller's decision.
    """
    return tx.fetch_one(
        f"UPDATE {TABLE} SET retry_count = COALESCE(retry_count, 0) + 1, last_error = :error, "
        "locked_until = NULL, "
        "status = CASE WHEN CAST(:retry_at AS timestamptz) IS NULL "
        "THEN 'FAILED' ELSE 'QUEUED' END, "
        "scheduled_for = COALESCE(CAST(:retry_at AS timestamptz), scheduled_for), "
        "processed_at = CASE WHEN CAST(:retry_at AS timestamptz) IS NULL THEN NOW() END "
        "WHERE id = CAST(:id AS uuid) RETURNING *",
        {"id": str(item_id), "error": error, "retry_at": retry_at},
    )


def supersede(
    tx: Session,
    synced: Mapping[str, Sequence[str] | None],
    *,
    kinds: Sequence[str],
    before: datetime,
    note: str,
) -> list[Row]:
    """Close as COMPLETED the FAILED rows a later clean sync made pointless.

    ``synced`` maps a customer to the fields a sync just brought in step (None: every
    mapped field). A FAILED row of one of ``kinds`` for that customer, failed before
    ``before`` (when that sync began reading), is closed when its payload's
    ``fields`` are among them (a row without a field list needs a sync of every
    field). ``last_error`` keeps the old error after ``note``. Returns the rows closed.
    """
    if not synced:
        return []
    entries = [
        {"customer_id": cid, "fields": None if fields is None else sorted(fields)}
        for cid, fields in synced.items()
    ]
    return tx.fetch(
        f"UPDATE {TABLE} q SET status = 'COMPLETED', processed_at = NOW(), "
        "last_error = LEFT(:note || ' (was: ' || COALESCE(q.last_error, '') || ')', 2000) "
        "FROM jsonb_to_recordset(CAST(:synced AS jsonb)) AS s(customer_id uuid, fields jsonb) "
        "WHERE q.entity_id = s.customer_id AND q.status = 'FAILED' "
        "AND q.kind = ANY(CAST(:kinds AS text[])) AND q.processed_at < :before "
        "AND (s.fields IS NULL OR (jsonb_typeof(q.payload -> 'fields') = 'array' "
        "AND (q.payload -> 'fields') <@ s.fields)) RETURNING q.*",
        {"synced": to_json(entries), "kinds": list(kinds), "before": before, "note": note},
    )


def set_task_name(tx: Session, item_id: str, task_name: str) -> None:
    """Remember the Cloud Task that carries this row."""
    tx.execute(
        f"UPDATE {TABLE} SET task_name = :task_name WHERE id = CAST(:id AS uuid)",
        {"id": str(item_id), "task_name": task_name},
    )


def list_items(
    tx: Session,
    *,
    statuses: Sequence[str] = ("QUEUED", "PROCESSING", "FAILED"),
    entity_id: str | None = None,
    limit: int = 100,
) -> list[Row]:
    """Rows in the given statuses (default: everything not finished well), newest first."""
    params: dict[str, Any] = {"statuses": list(statuses), "limit": limit}
    condition = ""
    if entity_id is not None:
        condition = " AND entity_id = CAST(:entity_id AS uuid)"
        params["entity_id"] = str(entity_id)
    return tx.fetch(
        f"SELECT * FROM {TABLE} WHERE status = ANY(CAST(:statuses AS text[])){condition} "
        "ORDER BY created_at DESC, id DESC LIMIT :limit",
        params,
    )


def replay(tx: Session, item_id: str) -> Row | None:
    """Put a FAILED or CANCELLED row back in the queue, due now, with its retries reset.

    None when the row is missing or not in one of those states. ``last_error`` is
    kept until the next attempt replaces it.
    """
    return tx.fetch_one(
        f"UPDATE {TABLE} SET status = 'QUEUED', retry_count = 0, scheduled_for = NOW(), "
        "processed_at = NULL, locked_until = NULL "
        "WHERE id = CAST(:id AS uuid) AND status IN ('FAILED', 'CANCELLED') RETURNING *",
        {"id": str(item_id)},
    )


def depth(tx: Session) -> dict[str, int]:
    """Row counts by status (for the queue-depth metric)."""
    rows = tx.fetch(f"SELECT status, count(*) AS n FROM {TABLE} GROUP BY status")
    return {r["status"]: int(r["n"]) for r in rows}
