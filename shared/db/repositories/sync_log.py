"""``accounts.hubspot_sync_log``: one row per sync operation, for audit and the API."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db.connection import Row, Session
from shared.db.repositories._json import to_json

TABLE = "accounts.hubspot_sync_log"


# One statement for any number of rows: the rows travel as one JSONB array.
_INSERT_MANY = f"""
INSERT INTO {TABLE} (id, entity_type, entity_id, hubspot_object_id, operation, direction,
                     fields_synced, field_changes, status, error_message, retry_count,
                     started_at, completed_at, triggered_by, triggered_by_user)
SELECT r.id, r.entity_type, r.entity_id, r.hubspot_object_id, r.operation, r.direction,
       r.fields_synced, r.field_changes, r.status, r.error_message, r.retry_count,
       COALESCE(r.started_at, NOW()), r.completed_at, r.triggered_by, r.triggered_by_user
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
    id uuid, entity_type varchar, entity_id uuid, hubspot_object_id varchar,
    operation varchar, direction varchar, fields_synced jsonb, field_changes jsonb,
    status varchar, error_message text, retry_count integer, started_at timestamptz,
    completed_at timestamptz, triggered_by varchar, triggered_by_user varchar)
"""


@dataclass(frozen=True)
class LogEntry:
    """One log row to write with :func:`record_many` (the arguments of :func:`record`)."""

    entity_type: str
    entity_id: str
    operation: str
    direction: str
    status: str
    hubspot_object_id: str | None = None
    fields_synced: Sequence[str] = ()
    field_changes: Mapping[str, Any] | None = None
    error_message: str | None = None
    retry_count: int = 0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    triggered_by: str | None = None
    triggered_by_user: str | None = None


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
    (log_id,) = record_many(
        tx,
        [
            LogEntry(
                entity_type=entity_type,
                entity_id=entity_id,
                operation=operation,
                direction=direction,
                status=status,
                hubspot_object_id=hubspot_object_id,
                fields_synced=fields_synced,
                field_changes=field_changes,
                error_message=error_message,
                retry_count=retry_count,
                started_at=started_at,
                completed_at=completed_at,
                triggered_by=triggered_by,
                triggered_by_user=triggered_by_user,
            )
        ],
    )
    return log_id


def record_many(tx: Session, entries: Sequence[LogEntry]) -> list[str]:
    """Write many log rows in one statement; their ids, in the order of ``entries``.

    A batch sync records a row per customer: one INSERT per row was most of a
    webhook batch's database time. The ids are made here (random UUIDs, as the
    column's default makes) so that each entry knows its own without relying on
    the order of RETURNING.
    """
    if not entries:
        return []
    ids = [str(uuid.uuid4()) for _ in entries]
    rows = [
        {
            "id": log_id,
            "entity_type": e.entity_type,
            "entity_id": str(e.entity_id),
            "hubspot_object_id": e.hubspot_object_id,
            "operation": e.operation,
            "direction": e.direction,
            "fields_synced": list(e.fields_synced),
            "field_changes": dict(e.field_changes or {}),
            "status": e.status,
            "error_message": e.error_message,
            "retry_count": e.retry_count,
            "started_at": e.started_at,
            "completed_at": e.completed_at,
            "triggered_by": e.triggered_by,
            "triggered_by_user": e.triggered_by_user,
        }
        for log_id, e in zip(ids, entries, strict=True)
    ]
    tx.execute(_INSERT_MANY, {"rows": to_json(rows)})
    return ids


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
