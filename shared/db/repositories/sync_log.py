"""``accounts.hubspot_sync_log``: one row per sync operation, for audit and the API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.db.connection import Row, Session
from shared.db.repositories._json import to_json

TABLE = "accounts.hubspot_sync_log"


def record(
    tx: Session,
    *,
    entity_type: str,
    entity_id: str,
    operation: str,
    direction: str,
    status: str,
    hubspot_object_id: str | None = None,
    fields_synced: Sequence[str] = (),
    field_changes: Mapping[str, Any] | None = None,
    error_message: str | None = None,
    retry_count: int = 0,
    started_at: datetime | None = None,
    completed_at: datetime | None = None,
    triggered_by: str | None = None,
    triggered_by_user: str | None = None,
) -> str:
    """Write one log row and return its id.

    ``field_changes`` is ``{field: {"old": ..., "new": ..., "source": ...}}``, stored
    as given: the caller encrypts sensitive values first. ``started_at`` defaults to
    now; ``completed_at`` stays empty while the operation runs.
    """
    value = tx.fetch_value(
        f"INSERT INTO {TABLE} (entity_type, entity_id, hubspot_object_id, operation, direction, "
        "fields_synced, field_changes, status, error_message, retry_count, started_at, "
        "completed_at, triggered_by, triggered_by_user) VALUES (:entity_type, "
        "CAST(:entity_id AS uuid), :hubspot_object_id, :operation, :direction, "
        "CAST(:fields_synced AS jsonb), CAST(:field_changes AS jsonb), :status, :error_message, "
        ":retry_count, COALESCE(CAST(:started_at AS timestamptz), NOW()), "
        "CAST(:completed_at AS timestamptz), :triggered_by, :triggered_by_user) RETURNING id",
        {
            "entity_type": entity_type,
            "entity_id": str(entity_id),
            "hubspot_object_id": hubspot_object_id,
            "operation": operation,
            "direction": direction,
            "fields_synced": to_json(list(fields_synced)),
            "field_changes": to_json(dict(field_changes or {})),
            "status": status,
            "error_message": error_message,
            "retry_count": retry_count,
            "started_at": started_at,
            "completed_at": completed_at,
            "triggered_by": triggered_by,
            "triggered_by_user": triggered_by_user,
        },
    )
    return str(value)


def finish(
    tx: Session,
    log_id: str,
    *,
    status: str,
    fields_synced: Sequence[str] | None = None,
    field_changes: Mapping[str, Any] | None = None,
    error_message: str | None = None,
) -> None:
    """Close an open log row: its final status, now as ``completed_at``, and what crossed."""
    tx.execute(
        f"UPDATE {TABLE} SET status = :status, completed_at = NOW(), "
        "error_message = COALESCE(:error_message, error_message), "
        "fields_synced = COALESCE(CAST(:fields_synced AS jsonb), fields_synced), "
        "field_changes = COALESCE(CAST(:field_changes AS jsonb), field_changes) "
        "WHERE id = CAST(:id AS uuid)",
        {
            "id": str(log_id),
            "status": status,
            "error_message": error_message,
            "fields_synced": None if fields_synced is None else to_json(list(fields_synced)),
            "field_changes": None if field_changes is None else to_json(dict(field_changes)),
        },
    )


def get(tx: Session, log_id: str) -> Row | None:
    """One log row, or None."""
    return tx.fetch_one(f"SELECT * FROM {TABLE} WHERE id = CAST(:id AS uuid)", {"id": str(log_id)})


def list_for_customer(
    tx: Session,
    customer_id: str,
    *,
    limit: int = 50,
    before: tuple[datetime, str] | None = None,
    status: str | None = None,
    direction: str | None = None,
    entity_type: str | None = None,
) -> list[Row]:
    """A customer's log rows, newest first, optionally filtered.

    Paging is by keyset: pass the last row's ``(started_at, id)`` as ``before``
    to get the next page.
    """
    conditions = ["entity_id = CAST(:customer_id AS uuid)"]
    params: dict[str, Any] = {"customer_id": str(customer_id), "limit": limit}
    for column, value in (
        ("status", status),
        ("direction", direction),
        ("entity_type", entity_type),
    ):
        if value is not None:
            conditions.append(f"{column} = :{column}")
            params[column] = value
    if before is not None:
        conditions.append(
            "(started_at, id) < (CAST(:before_at AS timestamptz), CAST(:before_id AS uuid))"
        )
        params["before_at"], params["before_id"] = before[0], str(before[1])
    return tx.fetch(
        f"SELECT * FROM {TABLE} WHERE {' AND '.join(conditions)} "
        "ORDER BY started_at DESC, id DESC LIMIT :limit",
        params,
    )
