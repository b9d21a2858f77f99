"""``accounts.hubspot_webhook_events``: HubSpot's webhook events, stored once each.

``event_id`` (WARP's unique column) holds our idempotency key
``"subscriptionId:eventId:occurredAt"``: HubSpot's eventId alone is not unique.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.db.connection import Row, Session
from shared.db.repositories._json import check_columns, to_json

TABLE = "accounts.hubspot_webhook_events"

# Columns insert_batch accepts and their SQL types, for jsonb_to_recordset.
COLUMN_TYPES: dict[str, str] = {
    "event_id": "varchar",
    "event_type": "varchar",
    "object_type": "varchar",
    "object_id": "varchar",
    "property_name": "varchar",
    "property_value": "jsonb",
    "previous_value": "jsonb",
    "raw_payload": "jsonb",
    "occurred_at": "timestamptz",
    "signature_valid": "boolean",
    "hubspot_event_id": "bigint",
    "subscription_id": "bigint",
    "portal_id": "bigint",
    "attempt_number": "integer",
    "change_source": "varchar",
    "source_id": "varchar",
    "processed": "boolean",
    "processing_error": "text",
}
REQUIRED = frozenset(
    {"event_id", "event_type", "object_type", "object_id", "raw_payload", "occurred_at"}
)


def insert_batch(tx: Session, events: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Store the events not stored before; return ``id`` and ``event_id`` of the new ones.

    One statement for the whole batch. An event whose ``event_id`` is already in the
    table (a HubSpot retry), or repeated within the batch, is skipped. Missing
    optional keys are stored as NULL (``signature_valid`` and ``processed`` as false);
    a row stored ``processed`` (an invalid event, closed on arrival) gets ``processed_at``.
    """
    if not events:
        return []
    rows = []
    for event in events:
        check_columns(event, frozenset(COLUMN_TYPES), TABLE)
        missing = REQUIRED - set(event)
        if missing:
            raise ValueError(f"webhook event needs {', '.join(sorted(missing))}")
        rows.append({column: event.get(column) for column in COLUMN_TYPES})
    columns = list(COLUMN_TYPES)
    record = ", ".join(f"{c} {t}" for c, t in COLUMN_TYPES.items())
    selected = [
        f"COALESCE({c}, FALSE)" if c in ("signature_valid", "processed") else c for c in columns
    ]
    selected.append("CASE WHEN processed THEN NOW() END")
    return tx.fetch(
        f"INSERT INTO {TABLE} ({', '.join(columns)}, processed_at) "
        f"SELECT {', '.join(selected)} "
        f"FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({record}) "
        "ON CONFLICT (event_id) DO NOTHING RETURNING id, event_id",
        {"rows": to_json(rows)},
    )


def get_many(tx: Session, ids: Sequence[str]) -> list[Row]:
    """Stored events by their row ids, in occurrence order."""
    if not ids:
        return []
    return tx.fetch(
        f"SELECT * FROM {TABLE} WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY occurred_at, id",
        {"ids": [str(i) for i in ids]},
    )


def lock_unprocessed(tx: Session, ids: Sequence[str]) -> set[str]:
    """Those of these events still unprocessed, locked until the transaction ends.

    Two workers holding the same events (a late task and the sweep) then apply each
    once: the second waits for the first's commit and finds them processed.
    """
    if not ids:
        return set()
    rows = tx.fetch(
        f"SELECT id FROM {TABLE} WHERE id = ANY(CAST(:ids AS uuid[])) "
        "AND processed IS NOT TRUE ORDER BY id FOR UPDATE",
        {"ids": [str(i) for i in ids]},
    )
    return {str(row["id"]) for row in rows}


def mark_processed(tx: Session, ids: Sequence[str]) -> None:
    """Mark events processed successfully (clears any earlier error)."""
    if ids:
        tx.execute(
            f"UPDATE {TABLE} SET processed = TRUE, processed_at = NOW(), processing_error = NULL, "
            "processing_attempts = processing_attempts + 1 WHERE id = ANY(CAST(:ids AS uuid[]))",
            {"ids": [str(i) for i in ids]},
        )


def mark_failed(tx: Session, event_id: str, error: str, *, final: bool) -> None:
    """Record a failed attempt at one event.

    ``final`` (a permanent failure) closes the event as processed with its error, so
    it is not retried; otherwise it stays unprocessed for the next attempt.
    """
    tx.execute(
        f"UPDATE {TABLE} SET processing_error = :error, "
        "processing_attempts = processing_attempts + 1, "
        "processed = CASE WHEN :final THEN TRUE ELSE processed END, "
        "processed_at = CASE WHEN :final THEN NOW() ELSE processed_at END "
        "WHERE id = CAST(:id AS uuid)",
        {"id": str(event_id), "error": error, "final": final},
    )


def unprocessed(
    tx: Session, *, limit: int = 100, received_before_seconds: float | None = None
) -> list[Row]:
    """Events not processed yet, oldest first.

    ``received_before_seconds`` skips events younger than that, which the request
    that stored them may still be processing.
    """
    params: dict[str, Any] = {"limit": limit}
    condition = ""
    if received_before_seconds is not None:
        condition = " AND received_at <= NOW() - make_interval(secs => :age)"
        params["age"] = float(received_before_seconds)
    return tx.fetch(
        f"SELECT * FROM {TABLE} WHERE processed IS NOT TRUE{condition} "
        "ORDER BY occurred_at, id LIMIT :limit",
        params,
    )


def recent_object_ids(tx: Session, event_type: str, since: datetime, *, limit: int) -> list[str]:
    """Ids of objects with an ``event_type`` event received since ``since``, newest first."""
    # processed = ANY(...) lets the (processed, received_at) index serve the time range.
    rows = tx.fetch(
        f"SELECT object_id, max(received_at) AS at FROM {TABLE} "
        "WHERE processed = ANY(ARRAY[TRUE, FALSE]) AND received_at >= :since "
        "AND event_type = :type GROUP BY object_id ORDER BY at DESC LIMIT :limit",
        {"since": since, "type": event_type, "limit": limit},
    )
    return [str(r["object_id"]) for r in rows]
