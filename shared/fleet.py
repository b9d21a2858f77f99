"""Fleet-wide views: every customer's sync state, and the feed of changes that crossed.

Read by the API (``GET /v1/sync/customers``, ``GET /v1/sync/changes``) and the CLI
(``hubspot-sync status``, ``hubspot-sync changes``) alike. The queries are here; what a
customer's state is and how it is told to a person are pure functions
(:func:`states_of`, :func:`problems_of`, :func:`crossed_fields`).

A customer's states (it may have several; ``in_sync`` only when it has no other):

- ``in_conflict``: a field waits for ``resolve-conflict``;
- ``failed``: a FAILED queue row names it (an outbound push, or a HubSpot edit that
  could not be applied to it);
- ``unlinked``: no HubSpot company id;
- ``pending``: changed in WARP and not pushed yet, or a queue row waits or runs;
- ``in_sync``: none of these.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db import Row, Session
from shared.db.repositories.customers import link_sql
from shared.mapping import EntityType
from shared.sealing import is_sealed


class SyncState(enum.StrEnum):
    IN_CONFLICT = "in_conflict"
    FAILED = "failed"
    UNLINKED = "unlinked"
    PENDING = "pending"
    IN_SYNC = "in_sync"


# One row per customer with what the states are computed from. Each CTE reads its
# table once, so the counts over a whole book cost one scan of each table.
_FLAGS = f"""
WITH conflicts AS (
    SELECT entity_id, array_agg(field_name ORDER BY field_name) AS fields,
           min(conflict_detected_at) AS since
    FROM accounts.hubspot_field_state WHERE is_in_conflict GROUP BY entity_id
), failed AS (
    SELECT entity_id, count(*) AS n,
           (array_agg(id ORDER BY created_at DESC, id DESC))[1] AS last_id,
           (array_agg(last_error ORDER BY created_at DESC, id DESC))[1] AS last_error
    FROM accounts.hubspot_sync_queue
    WHERE status = 'FAILED' AND entity_id IS NOT NULL GROUP BY entity_id
), queued AS (
    SELECT entity_id, count(*) AS n, min(scheduled_for) AS next_at
    FROM accounts.hubspot_sync_queue
    WHERE status IN ('QUEUED', 'PROCESSING') AND entity_id IS NOT NULL GROUP BY entity_id
), flags AS (
    SELECT c.id, c.ban, c.company_name, c.hubspot_sync_enabled,
           NULLIF({link_sql(EntityType.CUSTOMER, "c")}, '') AS hubspot_company_id,
           NULLIF({link_sql(EntityType.CONTACT, "c")}, '') AS hubspot_contact_id,
           c.last_synced_to_hubspot, c.last_synced_from_hubspot,
           cf.fields AS conflict_fields, cf.since AS conflict_since,
           COALESCE(f.n, 0) AS failed_count, f.last_id AS failed_last_id,
           f.last_error AS failed_last_error,
           COALESCE(q.n, 0) AS queued_count, q.next_at AS queued_next_at,
           d.first_marked_at AS dirty_since,
           cf.entity_id IS NOT NULL AS is_in_conflict,
           f.entity_id IS NOT NULL AS is_failed,
           NULLIF({link_sql(EntityType.CUSTOMER, "c")}, '') IS NULL AS is_unlinked,
           (d.customer_id IS NOT NULL OR q.entity_id IS NOT NULL) AS is_pending
    FROM accounts.customers AS c
    LEFT JOIN conflicts AS cf ON cf.entity_id = c.id
    LEFT JOIN failed AS f ON f.entity_id = c.id
    LEFT JOIN queued AS q ON q.entity_id = c.id
    LEFT JOIN accounts.hubspot_outbound_dirty AS d ON d.customer_id = c.id
)
"""
_IN_SYNC = "NOT (is_in_conflict OR is_failed OR is_unlinked OR is_pending)"
_CONDITION = {
    SyncState.IN_CONFLICT: "is_in_conflict",
    SyncState.FAILED: "is_failed",
    SyncState.UNLINKED: "is_unlinked",
    SyncState.PENDING: "is_pending",
    SyncState.IN_SYNC: _IN_SYNC,
}


def states_of(flags: Mapping[str, Any]) -> list[SyncState]:
    """The states of one customer row of the flags query, most urgent first."""
    found = [
        state
        for state, key in (
            (SyncState.FAILED, "is_failed"),
            (SyncState.IN_CONFLICT, "is_in_conflict"),
            (SyncState.UNLINKED, "is_unlinked"),
            (SyncState.PENDING, "is_pending"),
        )
        if flags.get(key)
    ]
    return found or [SyncState.IN_SYNC]


def problems_of(flags: Mapping[str, Any]) -> list[str]:
    """What is wrong with one customer, in words a person acts on."""
    problems = []
    if flags.get("is_failed"):
        n = int(flags.get("failed_count") or 0)
        problems.append(
            f"{n} FAILED queue item(s); latest {flags.get('failed_last_id')}: "
            f"{flags.get('failed_last_error') or 'no error recorded'} "
            "(POST /v1/sync/queue/{id}/replay, or /v1/sync/queue/replay)"
        )
    if flags.get("is_in_conflict"):
        fields = ", ".join(flags.get("conflict_fields") or [])
        problems.append(
            f"in conflict since {_when(flags.get('conflict_since'))}: {fields} "
            "(GET .../conflicts, then POST .../resolve-conflict)"
        )
    if flags.get("is_unlinked"):
        problems.append("not linked to a HubSpot company (POST .../to-hubspot links it)")
    if flags.get("is_pending"):
        if flags.get("dirty_since") is not None:
            problems.append(
                f"changed in WARP, waiting to be pushed since {_when(flags['dirty_since'])}"
            )
        n = int(flags.get("queued_count") or 0)
        if n:
            problems.append(
                f"{n} queue item(s) waiting or running, next at {_when(flags['queued_next_at'])}"
            )
    return problems


def _when(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def count_states(tx: Session) -> dict[str, int]:
    """Customers per state (one may count under several), and ``total``."""
    columns = ", ".join(f"count(*) FILTER (WHERE {_CONDITION[s]}) AS {s.value}" for s in SyncState)
    row = tx.fetch_one(f"{_FLAGS} SELECT {columns}, count(*) AS total FROM flags")
    assert row is not None
    return {key: int(value) for key, value in row.items()}


def list_customers(
    tx: Session, *, state: SyncState | None, after: str | None, limit: int
) -> list[Row]:
    """Customers with ``state`` (all without), ordered by id, after the id ``after``."""
    conditions = ["TRUE"]
    params: dict[str, Any] = {"limit": limit}
    if state is not None:
        conditions.append(_CONDITION[state])
    if after is not None:
        conditions.append("id > CAST(:after AS uuid)")
        params["after"] = after
    return tx.fetch(
        f"{_FLAGS} SELECT * FROM flags WHERE {' AND '.join(conditions)} ORDER BY id LIMIT :limit",
        params,
    )


def customer_flags(tx: Session, customer_id: str) -> Row | None:
    """The flags row of one customer."""
    return tx.fetch_one(
        f"{_FLAGS} SELECT * FROM flags WHERE id = CAST(:id AS uuid)", {"id": customer_id}
    )


# --- the change feed --------------------------------------------------------------------


@dataclass(frozen=True)
class CrossedField:
    """One field of a sync-log row: what crossed (or was held), decided by what and why."""

    field: str
    kind: str  # "written" | "conflict"
    source: str | None  # "warp" | "hubspot": the side whose value was written
    old: Any
    new: Any
    sealed: bool
    rule: str | None
    reason: str | None


_SIDE = {"WARP_TO_HUBSPOT": "warp", "HUBSPOT_TO_WARP": "hubspot"}


def crossed_fields(changes: Any, *, direction: str | None = None) -> list[CrossedField]:
    """The fields of a sync log's ``field_changes``; sealed values stay sealed (None).

    ``direction`` keeps only fields written that way (a held conflict went nowhere
    and is kept with either).
    """
    if not isinstance(changes, Mapping):
        return []
    wanted = _SIDE.get(direction or "")
    out = []
    for name, entry in sorted(changes.items()):
        if name.startswith("_") or not isinstance(entry, Mapping):
            continue  # "_skipped", "_recorded_late": notes, not fields
        if "conflict" in entry and "new" not in entry:
            old, new = entry.get("warp"), entry.get("hubspot")
            kind, source, reason = "conflict", None, entry.get("conflict")
        else:
            old, new = entry.get("old"), entry.get("new")
            kind, source, reason = "written", entry.get("source"), entry.get("reason")
        if wanted is not None and source not in (None, wanted):
            continue
        sealed = is_sealed(old) or is_sealed(new)
        out.append(
            CrossedField(
                field=name,
                kind=kind,
                source=source,
                old=None if is_sealed(old) else old,
                new=None if is_sealed(new) else new,
                sealed=sealed,
                rule=entry.get("resolution"),
                reason=None if reason is None else str(reason),
            )
        )
    return out


def list_changes(
    tx: Session,
    *,
    since: datetime | None,
    direction: str | None,
    customer_id: str | None,
    before: str | None,
    limit: int,
) -> list[Row]:
    """Sync-log rows with at least one field, newest first, older than log row ``before``.

    A ``before`` row that no longer exists matches nothing (its time is unknown).
    """
    conditions = [
        "jsonb_typeof(l.field_changes) = 'object'",
        "EXISTS (SELECT 1 FROM jsonb_object_keys(l.field_changes) AS k WHERE left(k, 1) <> '_')",
    ]
    params: dict[str, Any] = {"limit": limit}
    if since is not None:
        conditions.append("l.started_at >= :since")
        params["since"] = since
    if direction is not None:
        conditions.append("l.direction IN (:direction, 'BIDIRECTIONAL')")
        params["direction"] = direction
    if customer_id is not None:
        conditions.append("l.entity_id = CAST(:customer AS uuid)")
        params["customer"] = customer_id
    if before is not None:
        conditions.append(
            "(l.started_at, l.id) < ((SELECT b.started_at FROM accounts.hubspot_sync_log AS b "
            "WHERE b.id = CAST(:before AS uuid)), CAST(:before AS uuid))"
        )
        params["before"] = before
    return tx.fetch(
        "SELECT l.id, l.entity_type, l.entity_id, c.ban, c.company_name, l.hubspot_object_id, "
        "l.operation, l.direction, l.status, l.field_changes, l.started_at, l.completed_at, "
        "l.triggered_by, l.triggered_by_user "
        "FROM accounts.hubspot_sync_log AS l "
        "LEFT JOIN accounts.customers AS c ON c.id = l.entity_id "
        f"WHERE {' AND '.join(conditions)} "
        "ORDER BY l.started_at DESC, l.id DESC LIMIT :limit",
        params,
    )


def customer_id_by_ban(tx: Session, ban: str) -> str | None:
    """The id of the customer with this BAN (WARP's ``ban`` is unique), or None."""
    value = tx.fetch_value("SELECT id FROM accounts.customers WHERE ban = :ban", {"ban": ban})
    return None if value is None else str(value)


def queue_ids_matching(
    tx: Session,
    *,
    statuses: Sequence[str],
    kind: str | None,
    error_contains: str | None,
    customer_id: str | None,
    older_than_seconds: float | None,
    newer_than_seconds: float | None,
    limit: int,
) -> list[str]:
    """Ids of queue rows matching a bulk-replay filter, oldest first."""
    conditions = ["status = ANY(CAST(:statuses AS text[]))"]
    params: dict[str, Any] = {"statuses": list(statuses), "limit": limit}
    if kind is not None:
        conditions.append("kind = :kind")
        params["kind"] = kind
    if error_contains is not None:
        # strpos, not LIKE: the operator's text is matched as it is, % and _ included.
        conditions.append("strpos(lower(COALESCE(last_error, '')), lower(:error)) > 0")
        params["error"] = error_contains
    if customer_id is not None:
        conditions.append("entity_id = CAST(:customer AS uuid)")
        params["customer"] = customer_id
    if older_than_seconds is not None:
        conditions.append("created_at <= NOW() - make_interval(secs => :older)")
        params["older"] = float(older_than_seconds)
    if newer_than_seconds is not None:
        conditions.append("created_at >= NOW() - make_interval(secs => :newer)")
        params["newer"] = float(newer_than_seconds)
    rows = tx.fetch(
        f"SELECT id FROM accounts.hubspot_sync_queue WHERE {' AND '.join(conditions)} "
        "ORDER BY created_at, id LIMIT :limit",
        params,
    )
    return [str(r["id"]) for r in rows]
