"""``accounts.customers``: WARP's customer rows, read and written by column.

A customer is linked to HubSpot through ``external_ids`` (``hubspot_company_id``
and ``hubspot_contact_id``); both are looked up through expression indexes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.db.connection import Row, Session
from shared.db.repositories._json import check_columns, to_json
from shared.mapping import EntityType

TABLE = "accounts.customers"
# Set (transaction-locally) by every transaction in which the sync writes customers:
# the capture trigger records nothing for them (``shared.capture``).
WRITER_SETTING = "hubspot_sync.writer"
WRITER_SYNC = "sync"

# Columns the sync may write. id, ban and the timestamps are WARP's to set.
WRITABLE_COLUMNS = frozenset(
    {
        "company_name",
        "legal_name",
        "status",
        "customer_type",
        "contact",
        "address",
        "credit_limit",
        "current_balance",
        "prepaid_balance",
        "payment_terms",
        "billing_cycle",
        "currency",
        "kyc_data",
        "business_info",
        "external_ids",
        "custom_fields",
        "hubspot_sync_enabled",
        "updated_by",
    }
)
JSONB_COLUMNS = frozenset(
    {"contact", "address", "kyc_data", "business_info", "external_ids", "custom_fields"}
)
# insert() also accepts the business key and the creator.
_INSERT_COLUMNS = WRITABLE_COLUMNS | {"ban", "created_by"}
# Every column, for readers that name the ones they need.
COLUMNS = _INSERT_COLUMNS | {
    "id",
    "created_at",
    "updated_at",
    "last_synced_to_hubspot",
    "last_synced_from_hubspot",
}


def _value_sql(column: str) -> str:
    return f"CAST(:{column} AS jsonb)" if column in JSONB_COLUMNS else f":{column}"


def _params(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_json(v) if k in JSONB_COLUMNS else v for k, v in values.items()}


def column_rules(tx: Session, column: str) -> Row | None:
    """Whether a column of ``accounts.customers`` takes NULL, and its character limit.

    Read from the catalog, so the limits WARP's own schema sets are the ones named.
    ``{"nullable": bool, "max_length": int | None}``, or None for no such column.
    """
    return tx.fetch_one(
        "SELECT is_nullable = 'YES' AS nullable, character_maximum_length AS max_length "
        "FROM information_schema.columns WHERE table_schema = 'accounts' "
        "AND table_name = 'customers' AND column_name = :column",
        {"column": column},
    )


def get(tx: Session, customer_id: str, *, lock: bool = False) -> Row | None:
    """The customer with this id, or None; ``lock`` takes a row lock until commit."""
    suffix = " FOR UPDATE" if lock else ""
    return tx.fetch_one(
        f"SELECT * FROM {TABLE} WHERE id = CAST(:id AS uuid){suffix}", {"id": str(customer_id)}
    )


def get_many(
    tx: Session, customer_ids: Sequence[str], columns: Collection[str] | None = None
) -> list[Row]:
    """The customers with these ids (missing ids are skipped), ordered by id.

    ``columns`` narrows each row to those (and ``id``): pg8000 decodes every value of
    every row in Python, so a reader of a few columns (the sync) skips the rest.
    """
    if not customer_ids:
        return []
    selected = "*"
    if columns is not None:
        selected = ", ".join(check_columns(sorted({"id", *columns}), COLUMNS, TABLE))
    return tx.fetch(
        f"SELECT {selected} FROM {TABLE} WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id",
        {"ids": [str(i) for i in customer_ids]},
    )


def insert(tx: Session, values: Mapping[str, Any]) -> Row:
    """Create a customer from ``values`` (``ban``, ``company_name``, ``customer_type`` at least)."""
    columns = check_columns(values, _INSERT_COLUMNS, TABLE)
    sql = (
        f"INSERT INTO {TABLE} ({', '.join(columns)}) "
        f"VALUES ({', '.join(_value_sql(c) for c in columns)}) RETURNING *"
    )
    row = tx.fetch_one(sql, _params(values))
    assert row is not None
    return row


def link_sql(entity_type: EntityType, table: str = "") -> str:
    """SQL for a row's ``entity_type`` link (text, NULL if none), as the indexes have it.

    ``table``: the alias of ``accounts.customers`` in the query, if any.
    """
    return f"{table + '.' if table else ''}external_ids ->> '{entity_type.link_key}'"


def linked_sql(table: str = "") -> str:
    """SQL condition: the row is linked to a HubSpot company (a linked customer)."""
    return f"COALESCE({link_sql(EntityType.CUSTOMER, table)}, '') <> ''"


def find_linked(tx: Session, entity_type: EntityType, object_id: str) -> Row | None:
    """The customer linked to this HubSpot company or contact (the oldest, should two claim it).

    The expression matches the ``external_ids`` indexes (migration 0003).
    """
    return tx.fetch_one(
        f"SELECT * FROM {TABLE} WHERE {link_sql(entity_type)} = :object_id "
        "ORDER BY created_at, id LIMIT 1",
        {"object_id": str(object_id)},
    )


def find_by_domain(tx: Session, domain: str) -> list[Row]:
    """Customers whose contact email is at ``domain`` (case-insensitive)."""
    return tx.fetch(
        f"SELECT * FROM {TABLE} "
        "WHERE lower(split_part(contact ->> 'email', '@', 2)) = lower(:domain) "
        "ORDER BY created_at, id",
        {"domain": domain},
    )


def find_by_name(tx: Session, company_name: str) -> list[Row]:
    """Customers with exactly this company name, ignoring case."""
    return tx.fetch(
        f"SELECT * FROM {TABLE} WHERE lower(company_name) = lower(:name) ORDER BY created_at, id",
        {"name": company_name},
    )


def page_linked(
    tx: Session, after_id: str | None, limit: int, *, sync_enabled_only: bool = True
) -> list[Row]:
    """One keyset page of customers linked to a company, ordered by id, after ``after_id``."""
    return _page(tx, after_id, limit, linked=True, sync_enabled_only=sync_enabled_only)


def page_unlinked(
    tx: Session, after_id: str | None, limit: int, *, sync_enabled_only: bool = True
) -> list[Row]:
    """One keyset page of customers with no company link, ordered by id."""
    return _page(tx, after_id, limit, linked=False, sync_enabled_only=sync_enabled_only)


def _page(
    tx: Session, after_id: str | None, limit: int, *, linked: bool, sync_enabled_only: bool
) -> list[Row]:
    link = linked_sql()
    conditions = [link if linked else f"NOT ({link})"]
    if sync_enabled_only:
        conditions.append("hubspot_sync_enabled IS NOT FALSE")
    if after_id is not None:
        conditions.append("id > CAST(:after_id AS uuid)")
    params: dict[str, Any] = {"limit": limit}
    if after_id is not None:
        params["after_id"] = str(after_id)
    return tx.fetch(
        f"SELECT * FROM {TABLE} WHERE {' AND '.join(conditions)} ORDER BY id LIMIT :limit", params
    )


def mark_own_write(tx: Session) -> None:
    """Mark this transaction as the sync's own, before it writes customers.

    The capture trigger (``shared.capture``) records nothing for such a transaction:
    our writes to WARP must not come back as WARP's changes. Transaction-local, so it
    ends with the transaction and never marks a pooled connection's next user.
    """
    tx.execute(
        f"SELECT set_config('{WRITER_SETTING}', '{WRITER_SYNC}', true)",
    )


def set_link_id(
    tx: Session, customer_id: str, entity_type: EntityType, object_id: str | None
) -> Row | None:
    """Record the ``entity_type`` link in ``external_ids`` (None removes it); other keys are
    kept. Flows record a link with its sync-log row: :func:`shared.engine.relink.set_link`."""
    return _set_external_id(tx, customer_id, entity_type.link_key, object_id)


def _set_external_id(tx: Session, customer_id: str, key: str, value: str | None) -> Row | None:
    mark_own_write(tx)
    return tx.fetch_one(
        f"UPDATE {TABLE} SET external_ids = CASE WHEN CAST(:value AS text) IS NULL "
        "THEN COALESCE(external_ids, '{}'::jsonb) - CAST(:key AS text) "
        "ELSE COALESCE(external_ids, '{}'::jsonb) "
        "|| jsonb_build_object(CAST(:key AS text), CAST(:value AS text)) END "
        "WHERE id = CAST(:id AS uuid) RETURNING *",
        {"id": str(customer_id), "key": key, "value": None if value is None else str(value)},
    )


def update_columns(
    tx: Session, customer_id: str, values: Mapping[str, Any], *, touch: bool = True
) -> Row | None:
    """Set the given columns (checked against :data:`WRITABLE_COLUMNS`); return the row.

    ``touch`` also sets ``updated_at`` to now. None when the customer does not exist.
    Not marked as the sync's own write (no flow uses it): it edits the way WARP's
    application does, so the capture trigger records it (the demo, tests).
    """
    columns = check_columns(values, WRITABLE_COLUMNS, TABLE)
    if not columns:
        return get(tx, customer_id)
    assignments = [f"{c} = {_value_sql(c)}" for c in columns]
    if touch:
        assignments.append("updated_at = NOW()")
    params = _params(values)
    params["id"] = str(customer_id)
    return tx.fetch_one(
        f"UPDATE {TABLE} SET {', '.join(assignments)} WHERE id = CAST(:id AS uuid) RETURNING *",
        params,
    )


def mark_synced_to(tx: Session, customer_id: str, at: datetime | None = None) -> None:
    """Stamp ``last_synced_to_hubspot`` (now unless ``at`` is given)."""
    _stamp(tx, customer_id, "last_synced_to_hubspot", at)


def mark_synced_from(tx: Session, customer_id: str, at: datetime | None = None) -> None:
    """Stamp ``last_synced_from_hubspot`` (now unless ``at`` is given)."""
    _stamp(tx, customer_id, "last_synced_from_hubspot", at)


def _stamp(tx: Session, customer_id: str, column: str, at: datetime | None) -> None:
    mark_own_write(tx)
    tx.execute(
        f"UPDATE {TABLE} SET {column} = COALESCE(CAST(:at AS timestamptz), NOW()) "
        "WHERE id = CAST(:id AS uuid)",
        {"id": str(customer_id), "at": at},
    )


def _still(column: str) -> str:
    """SQL: ``column`` of row ``c`` still holds the value read (``u.doc -> 'read'``)."""
    if column in JSONB_COLUMNS:
        # Compared as JSON: pg8000 reads SQL NULL and JSON null alike as None, and a
        # document is equal to itself whatever its key order.
        return (
            f"COALESCE(c.{column}, 'null'::jsonb) = "
            f"COALESCE(u.doc -> 'read' -> '{column}', 'null'::jsonb)"
        )
    return (
        f"c.{column} IS NOT DISTINCT FROM "
        f"(jsonb_populate_record(NULL::{TABLE}, u.doc -> 'read')).{column}"
    )


def update_many(
    tx: Session,
    values_by_id: Mapping[str, Mapping[str, Any]],
    read_by_id: Mapping[str, Mapping[str, Any]],
    *,
    touch: bool = True,
) -> list[str]:
    """Set columns of many customers in one statement, each customer its own columns.

    ``values_by_id`` maps a customer id to ``{column: value}`` as for
    :func:`update_columns`; ``read_by_id`` gives each written column's value as the
    caller read it. A customer is written only if every one of its columns still
    holds that value: WARP's application writes rows without the sync's locks, and a
    write planned from an older read would silently undo its edit (a JSONB column is
    written whole). Returns the ids left unwritten for that reason (or gone).
    The values travel as one JSON document and PostgreSQL converts each to its
    column's type (``jsonb_populate_record``), so a page of writes is one round trip.
    """
    if not values_by_id:
        return []
    columns = sorted(
        {
            c
            for values in values_by_id.values()
            for c in check_columns(values, WRITABLE_COLUMNS, TABLE)
        }
    )
    if not columns:
        return []
    # Column names are checked above; the values are one JSON parameter.
    assignments = [
        f"{c} = CASE WHEN jsonb_exists(u.doc -> 'new', '{c}') "
        f"THEN (jsonb_populate_record(NULL::{TABLE}, u.doc -> 'new')).{c} ELSE c.{c} END"
        for c in columns
    ]
    unchanged = [f"(NOT jsonb_exists(u.doc -> 'new', '{c}') OR {_still(c)})" for c in columns]
    if touch:
        assignments.append("updated_at = NOW()")
    docs = {
        # A written column with no value read is the caller's bug, not a NULL read.
        str(cid): {"new": dict(values), "read": {c: read_by_id[cid][c] for c in values}}
        for cid, values in values_by_id.items()
    }
    mark_own_write(tx)
    written = tx.fetch(
        f"UPDATE {TABLE} AS c SET {', '.join(assignments)} "
        "FROM jsonb_each(CAST(:docs AS jsonb)) AS u(id, doc) WHERE c.id = CAST(u.id AS uuid) "
        f"AND {' AND '.join(unchanged)} RETURNING c.id",
        {"docs": to_json(docs)},
    )
    done = {str(r["id"]) for r in written}
    return [cid for cid in docs if cid not in done]


def mark_synced_many(
    tx: Session,
    *,
    from_hubspot: Sequence[str] = (),
    to_hubspot: Sequence[str] = (),
    at: datetime | None = None,
) -> None:
    """Stamp ``last_synced_from_hubspot`` / ``last_synced_to_hubspot`` of many customers at once."""
    if not from_hubspot and not to_hubspot:
        return
    mark_own_write(tx)
    tx.execute(
        f"UPDATE {TABLE} SET "
        "last_synced_from_hubspot = CASE WHEN id = ANY(CAST(:from_ids AS uuid[])) "
        "THEN COALESCE(CAST(:at AS timestamptz), NOW()) ELSE last_synced_from_hubspot END, "
        "last_synced_to_hubspot = CASE WHEN id = ANY(CAST(:to_ids AS uuid[])) "
        "THEN COALESCE(CAST(:at AS timestamptz), NOW()) ELSE last_synced_to_hubspot END "
        "WHERE id = ANY(CAST(:from_ids AS uuid[])) OR id = ANY(CAST(:to_ids AS uuid[]))",
        {
            "from_ids": [str(i) for i in from_hubspot],
            "to_ids": [str(i) for i in to_hubspot],
            "at": at,
        },
    )
