"""``accounts.hubspot_outbound_dirty``: customers changed in WARP and not pushed yet.

Change messages for one customer that arrive close together collapse into one row
(the union of their changed fields and their message ids), later taken as a batch
under a lease and deleted only once the push is recorded (:func:`take`, :func:`settle`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared.db.connection import Row, Session
from shared.db.repositories._json import to_json

TABLE = "accounts.hubspot_outbound_dirty"


def mark(
    tx: Session,
    customer_id: str,
    changed_fields: Sequence[str],
    message_id: str | None = None,
    *,
    changed_at: datetime | None = None,
) -> Row:
    """Add one change (a message, or a captured change) to the customer's pending set.

    ``changed_at`` is when WARP made it; the row keeps the newest. Returns the merged row.
    """
    row = tx.fetch_one(
        f"INSERT INTO {TABLE} AS d (customer_id, changed_fields, message_ids, message_count, "
        "warp_changed_at) VALUES (CAST(:customer_id AS uuid), CAST(:fields AS jsonb), "
        "CAST(:ids AS jsonb), 1, CAST(:changed_at AS timestamptz)) "
        "ON CONFLICT (customer_id) DO UPDATE SET last_marked_at = NOW(), "
        "message_count = d.message_count + 1, "
        "warp_changed_at = GREATEST(d.warp_changed_at, EXCLUDED.warp_changed_at), "
        "changed_fields = (SELECT COALESCE(jsonb_agg(DISTINCT f ORDER BY f), '[]'::jsonb) "
        "FROM jsonb_array_elements_text(d.changed_fields || EXCLUDED.changed_fields) AS f), "
        "message_ids = (SELECT COALESCE(jsonb_agg(DISTINCT m ORDER BY m), '[]'::jsonb) "
        "FROM jsonb_array_elements_text(d.message_ids || EXCLUDED.message_ids) AS m) "
        "RETURNING *",
        {
            "customer_id": str(customer_id),
            "fields": to_json(sorted(set(changed_fields))),
            "ids": to_json([] if message_id is None else [message_id]),
            "changed_at": changed_at,
        },
    )
    assert row is not None
    return row


def take(
    tx: Session, *, marked_before: datetime, limit: int = 100, lease_seconds: float = 300
) -> list[Row]:
    """Lease and return up to ``limit`` rows first marked before ``marked_before``.

    The rows stay in the table, leased for ``lease_seconds``: rows another worker
    holds (a live lease or a row lock) are skipped, and if the worker that took
    them dies, they become takeable again when the lease ends. The caller ends the
    lease with :func:`settle` once the push is recorded, or :func:`release` to give
    the rows back at once.
    """
    return tx.fetch(
        f"UPDATE {TABLE} SET leased_until = NOW() + make_interval(secs => :lease) "
        f"WHERE customer_id IN (SELECT customer_id FROM {TABLE} "
        "WHERE first_marked_at <= CAST(:before AS timestamptz) "
        "AND (leased_until IS NULL OR leased_until < NOW()) "
        "ORDER BY first_marked_at LIMIT :limit FOR UPDATE SKIP LOCKED) RETURNING *",
        {"before": marked_before, "limit": limit, "lease": float(lease_seconds)},
    )


def settle(tx: Session, rows: Sequence[Row]) -> list[str]:
    """Delete the taken rows that were not marked again since; return the re-marked ids.

    A change message that arrived during the push is not covered by it: its row
    stays (lease ended) for the next flush, and the caller schedules one.
    """
    if not rows:
        return []
    taken = to_json({str(r["customer_id"]): r["last_marked_at"] for r in rows})
    tx.execute(
        f"DELETE FROM {TABLE} AS d USING jsonb_each_text(CAST(:taken AS jsonb)) AS t(id, marked) "
        "WHERE d.customer_id = CAST(t.id AS uuid) "
        "AND d.last_marked_at <= CAST(t.marked AS timestamptz)",
        {"taken": taken},
    )
    return release(tx, [str(r["customer_id"]) for r in rows])


def release(tx: Session, customer_ids: Sequence[str]) -> list[str]:
    """End the lease of these customers' rows (those still there); return their ids."""
    if not customer_ids:
        return []
    rows = tx.fetch(
        f"UPDATE {TABLE} SET leased_until = NULL "
        "WHERE customer_id = ANY(CAST(:ids AS uuid[])) RETURNING customer_id",
        {"ids": [str(i) for i in customer_ids]},
    )
    return [str(r["customer_id"]) for r in rows]


def pending_count(tx: Session) -> int:
    """How many customers wait to be pushed."""
    return int(tx.fetch_value(f"SELECT count(*) FROM {TABLE}"))
