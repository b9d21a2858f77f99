"""``accounts.hubspot_field_state``: per customer and field, the last value that crossed.

A row is keyed by ``(entity_type, entity_id, field_name)``; ``entity_id`` is the
customer's id for company and contact fields alike.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from shared.db.connection import Row, Session
from shared.db.connection import _timestamptz_in as read_timestamptz
from shared.db.repositories._json import check_columns, to_json

TABLE = "accounts.hubspot_field_state"

# Writable columns and their SQL types, for jsonb_to_recordset.
COLUMN_TYPES: dict[str, str] = {
    "entity_type": "varchar",
    "entity_id": "uuid",
    "hubspot_object_id": "varchar",
    "field_name": "varchar",
    "field_path": "varchar",
    "warp_value": "jsonb",
    "hubspot_value": "jsonb",
    "hubspot_pending_value": "jsonb",
    "hubspot_pending_at": "timestamptz",
    "last_synced_at": "timestamptz",
    "last_synced_direction": "varchar",
    "last_modified_at_warp": "timestamptz",
    "last_modified_at_hubspot": "timestamptz",
    "sync_direction": "varchar",
    "conflict_resolution": "varchar",
    "is_in_conflict": "boolean",
    "conflict_detected_at": "timestamptz",
    "conflict_resolved_at": "timestamptz",
}
_KEY = ("entity_type", "entity_id", "field_name")
# A new row cannot be written without these (hubspot_object_id is NOT NULL in WARP's table).
REQUIRED = frozenset({*_KEY, "hubspot_object_id"})


def get(tx: Session, entity_type: str, entity_id: str, field_name: str) -> Row | None:
    """The state of one field, or None when it never crossed."""
    return tx.fetch_one(
        f"SELECT * FROM {TABLE} WHERE entity_type = :entity_type "
        "AND entity_id = CAST(:entity_id AS uuid) AND field_name = :field_name",
        {"entity_type": entity_type, "entity_id": str(entity_id), "field_name": field_name},
    )


def get_for_entity(
    tx: Session, entity_type: str | None, entity_id: str, *, lock: bool = False
) -> list[Row]:
    """Every field state of a customer (of one entity type, or all with None), by field name.

    ``lock`` takes row locks until commit, so two writers of one customer's fields
    take turns instead of overwriting each other's state.
    """
    params: dict[str, Any] = {"entity_id": str(entity_id)}
    condition = ""
    if entity_type is not None:
        condition = " AND entity_type = :entity_type"
        params["entity_type"] = entity_type
    suffix = " FOR UPDATE" if lock else ""
    return tx.fetch(
        f"SELECT * FROM {TABLE} WHERE entity_id = CAST(:entity_id AS uuid){condition} "
        f"ORDER BY entity_type, field_name{suffix}",
        params,
    )


def get_for_entities(tx: Session, entity_ids: Sequence[str]) -> list[Row]:
    """Every field state of these customers (a reconciliation batch)."""
    if not entity_ids:
        return []
    return tx.fetch(
        f"SELECT * FROM {TABLE} WHERE entity_id = ANY(CAST(:ids AS uuid[])) "
        "ORDER BY entity_id, entity_type, field_name",
        {"ids": [str(i) for i in entity_ids]},
    )


# What a sync decides from (``shared.engine.record.states_by_field``): one JSON array
# per customer and entity type instead of a row per field. pg8000 decodes every
# value of every row in Python; one json.loads per array is C. For a 2,000-customer
# reconciliation window (16,000 states) that is ~0.1 s instead of ~0.33 s for
# ``SELECT *`` (measured). Each state is an array of these columns in this order,
# not an object: the keys repeated per state were most of the bytes to build, send
# and parse (10,000 customers' 90,000 states: 0.71 -> 0.51 s with the times below).
# Times travel as their text form and are read with the connection's own timestamptz
# reader, so they come out exactly as columns do.
DECISION_COLUMNS = (
    "field_name",
    "warp_value",
    "hubspot_value",
    "hubspot_pending_value",
    "last_synced_at",
    "last_synced_direction",
    "last_modified_at_warp",
    "last_modified_at_hubspot",
    "is_in_conflict",
    "warp_changed_at",
)
_TIME_COLUMNS = frozenset(
    {"last_synced_at", "last_modified_at_warp", "last_modified_at_hubspot", "warp_changed_at"}
)
_TIME_POSITIONS = tuple(i for i, c in enumerate(DECISION_COLUMNS) if c in _TIME_COLUMNS)
_STATE_VALUES = ", ".join(
    f"CAST({c} AS text)" if c in _TIME_COLUMNS else c for c in DECISION_COLUMNS
)
_DECISION_STATES_SQL = f"""
SELECT CAST(entity_id AS text) AS entity_id, entity_type,
       json_agg(json_build_array({_STATE_VALUES})) AS states
FROM {TABLE} WHERE entity_id = ANY(CAST(:ids AS uuid[]))
GROUP BY entity_id, entity_type
"""


def decision_states(
    tx: Session, entity_ids: Sequence[str]
) -> dict[tuple[str, str], list[list[Any]]]:
    """The field states of these customers, by ``(customer id, entity type)``.

    Each state is a list of the :data:`DECISION_COLUMNS` (what a sync decides from:
    the field's name, both values, the sync and modification times, WARP's change
    time, direction, ``is_in_conflict``), times read as datetimes; not every column.
    """
    if not entity_ids:
        return {}
    # A window's states were mostly recorded by a few syncs, so a few distinct times
    # stand for tens of thousands: each text form is read once.
    times: dict[str, Any] = {}
    found: dict[tuple[str, str], list[list[Any]]] = {}
    for row in tx.fetch(_DECISION_STATES_SQL, {"ids": [str(i) for i in entity_ids]}):
        states: list[list[Any]] = row["states"]
        for state in states:
            for i in _TIME_POSITIONS:
                text = state[i]
                if text is not None:
                    when = times.get(text)
                    if when is None:
                        when = times[text] = read_timestamptz(text)
                    state[i] = when
        found[(row["entity_id"], row["entity_type"])] = states
    return found


def upsert(tx: Session, state: Mapping[str, Any]) -> Row:
    """Insert or update one field's state; only the keys given are written."""
    return upsert_many(tx, [state])[0]


def upsert_many(tx: Session, states: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Insert or update many field states, one statement per set of keys given.

    Each mapping needs :data:`REQUIRED` keys; other columns are written only where
    present, so a caller can update ``hubspot_value`` without touching the rest.
    JSONB values are any JSON-able value; None stores SQL NULL. Rows are written in
    key order, so concurrent batches lock rows in the same order and cannot deadlock.
    """
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    seen: set[tuple[str, str, str]] = set()
    for state in states:
        columns = tuple(sorted(check_columns(state, frozenset(COLUMN_TYPES), TABLE)))
        missing = REQUIRED - set(columns)
        if missing:
            raise ValueError(f"field state needs {', '.join(sorted(missing))}")
        key = (str(state["entity_type"]), str(state["entity_id"]), str(state["field_name"]))
        if key in seen:
            raise ValueError(f"field state {key} appears twice in one batch")
        seen.add(key)
        groups.setdefault(columns, []).append(state)
    written: list[Row] = []
    for columns, rows in groups.items():
        rows = sorted(rows, key=lambda r: tuple(str(r[k]) for k in _KEY))
        record = ", ".join(f"{c} {COLUMN_TYPES[c]}" for c in columns)
        updates = [f"{c} = EXCLUDED.{c}" for c in columns if c not in _KEY]
        updates.append("updated_at = NOW()")
        sql = (
            f"INSERT INTO {TABLE} ({', '.join(columns)}) "
            f"SELECT {', '.join(columns)} FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
            f"AS r({record}) "
            f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET {', '.join(updates)} RETURNING *"
        )
        written.extend(tx.fetch(sql, {"rows": to_json([dict(r) for r in rows])}))
    return written


def record_warp_changes(
    tx: Session,
    entity_type: str,
    entity_id: str,
    hubspot_object_id: str,
    field_names: Collection[str],
    changed_at: datetime,
) -> None:
    """Record that WARP changed these fields at ``changed_at`` (a change message's time).

    Each field keeps the newest time it was given (:func:`advance_times`), so a message
    delivered twice or after a newer one changes nothing. A field that never crossed
    gets a row holding only this time (no baseline yet: ``last_synced_at`` stays NULL).
    """
    advance_times(
        tx,
        "warp_changed_at",
        [
            ChangeTime(entity_type, str(entity_id), str(hubspot_object_id), name, changed_at)
            for name in field_names
        ],
    )


class ChangeTime(NamedTuple):
    """One field's change time on one side, for :func:`advance_times`."""

    entity_type: str
    entity_id: str
    hubspot_object_id: str
    field_name: str
    at: datetime


# The columns :func:`advance_times` may move: WARP's change time (from change messages)
# and the time of the newest HubSpot change judged (what the stale check compares).
_TIME_COLUMN_NAMES = frozenset({"warp_changed_at", "last_modified_at_hubspot"})


def advance_times(tx: Session, column: str, times: Sequence[ChangeTime]) -> None:
    """Move each field's ``column`` forward to its given time; never back.

    A field keeps the newest time it was ever given, so a delivery repeated or
    reordered changes nothing. A field without a row gets one holding only this time
    (no baseline: ``last_synced_at`` stays NULL). One statement for all fields, written
    in key order like :func:`upsert_many`, so concurrent writers cannot deadlock; a
    row whose time is already as new is left alone (not rewritten).
    """
    if column not in _TIME_COLUMN_NAMES:
        raise ValueError(f"{column} is not a change-time column of {TABLE}")
    newest: dict[tuple[str, str, str], ChangeTime] = {}
    for t in times:
        key = (t.entity_type, t.entity_id, t.field_name)
        if key not in newest or t.at > newest[key].at:
            newest[key] = t
    if not newest:
        return
    rows = [t._asdict() for _, t in sorted(newest.items())]
    tx.execute(
        f"INSERT INTO {TABLE} AS s "
        f"(entity_type, entity_id, hubspot_object_id, field_name, {column}) "
        "SELECT r.entity_type, r.entity_id, r.hubspot_object_id, r.field_name, r.at "
        "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(entity_type varchar, "
        "entity_id uuid, hubspot_object_id varchar, field_name varchar, at timestamptz) "
        # The key order upsert_many writes in (Python's, i.e. "C" collation): concurrent
        # writers then lock rows in one order and cannot deadlock.
        'ORDER BY r.entity_type COLLATE "C", r.entity_id, r.field_name COLLATE "C" '
        f"ON CONFLICT (entity_type, entity_id, field_name) DO UPDATE SET "
        f"{column} = EXCLUDED.{column}, updated_at = NOW() "
        f"WHERE s.{column} IS NULL OR s.{column} < EXCLUDED.{column}",
        {"rows": to_json(rows)},
    )


def open_conflicts(tx: Session, entity_id: str | None = None, *, limit: int = 100) -> list[Row]:
    """Fields waiting for a person (``is_in_conflict``), oldest first; one customer's or all."""
    params: dict[str, Any] = {"limit": limit}
    condition = ""
    if entity_id is not None:
        condition = " AND entity_id = CAST(:entity_id AS uuid)"
        params["entity_id"] = str(entity_id)
    return tx.fetch(
        f"SELECT * FROM {TABLE} WHERE is_in_conflict = TRUE{condition} "
        "ORDER BY conflict_detected_at NULLS LAST, id LIMIT :limit",
        params,
    )


def count_open_conflicts(tx: Session) -> int:
    """How many fields are in conflict now (for metrics)."""
    return int(tx.fetch_value(f"SELECT count(*) FROM {TABLE} WHERE is_in_conflict = TRUE"))
