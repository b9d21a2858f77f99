"""``accounts.hubspot_outbound_dirty``: customers changed in WARP and not pushed yet.

Change messages for one customer that arrive close together collapse into one row
(the union of their changed fields and their message ids), later taken as a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared.db.connection import Row, Session
from shared.db.repositories._json import to_json

TABLE = "accounts.hubspot_outbound_dirty"


def mark(
    tx: Session, customer_id: str, changed_fields: Sequence[str], message_id: str | None = None
) -> Row:
    """Add one change message to the customer's pending set; return the merged row."""
    row = tx.fetch_one(
        f"INSERT INTO {TABLE} AS d (customer_id, changed_fields, message_ids, message_count) "
        "VALUES (CAST(:customer_id AS uuid), CAST(:fields AS jsonb), CAST(:ids AS jsonb), 1) "
        "ON CONFLICT (customer_id) DO UPDATE SET last_marked_at = NOW(), "
        "message_count = d.message_count + 1, "
        "changed_fields = (SELECT COALESCE(jsonb_agg(DISTINCT f ORDER BY f), '[]'::jsonb) "
        "FROM jsonb_array_elements_text(d.changed_fields || EXCLUDED.changed_fields) AS f), "
        "message_ids = (SELECT COALESCE(jsonb_agg(DISTINCT m ORDER BY m), '[]'::jsonb) "
        "FROM jsonb_array_elements_text(d.message_ids || EXCLUDED.message_ids) AS m) "
        "RETURNING *",
        {
            "customer_id": str(customer_id),
            "fields": to_json(sorted(set(changed_fields))),
            "ids": to_json([] if message_id is None else [message_id]),
        },
    )
    assert row is not None
    return row


def take(tx: Session, *, marked_before: datetime, limit: int = 100) -> list[Row]:
    """Remove and return up to ``limit`` rows first marked before ``marked_before``.

    Rows another worker is taking at the same moment are skipped. If the push
    that follows fails, the caller marks the customers again (or rolls back).
    """
    return tx.fetch(
        f"DELETE FROM {TABLE} WHERE customer_id IN (SELECT customer_id FROM {TABLE} "
        "WHERE first_marked_at <= CAST(:before AS timestamptz) "
        "ORDER BY first_marked_at LIMIT :limit FOR UPDATE SKIP LOCKED) RETURNING *",
        {"before": marked_before, "limit": limit},
    )


def pending_count(tx: Session) -> int:
    """How many customers wait to be pushed."""
    return int(tx.fetch_value(f"SELECT count(*) FROM {TABLE}"))
