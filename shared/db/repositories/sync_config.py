"""``accounts.hubspot_sync_config``: field mappings in WARP's JSON format."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.db.connection import Row, Session
from shared.db.repositories._json import to_json

TABLE = "accounts.hubspot_sync_config"
_COLUMNS = "config_name, customer_id, is_global, field_mappings, auto_sync_enabled, updated_at"


def load_rows(tx: Session, customer_id: str | None) -> list[Row]:
    """The global rows plus this customer's own rows (only global ones for None).

    Each row has ``config_name``, ``customer_id`` (str or None), ``is_global``,
    ``field_mappings`` (a dict), ``auto_sync_enabled`` and ``updated_at``; global
    rows come first, then by name.
    """
    params: dict[str, Any] = {}
    condition = "is_global = TRUE"
    if customer_id is not None:
        condition += " OR customer_id = CAST(:customer_id AS uuid)"
        params["customer_id"] = str(customer_id)
    rows = tx.fetch(
        f"SELECT {_COLUMNS} FROM {TABLE} WHERE {condition} "
        "ORDER BY is_global DESC NULLS LAST, config_name, updated_at",
        params,
    )
    for row in rows:
        row["customer_id"] = None if row["customer_id"] is None else str(row["customer_id"])
        row["is_global"] = bool(row["is_global"])
    return rows


def save(
    tx: Session,
    *,
    config_name: str,
    field_mappings: Mapping[str, Any],
    customer_id: str | None = None,
    created_by: str | None = None,
) -> Row:
    """Create or replace a mapping row: global when ``customer_id`` is None.

    A row with the same name and scope is updated in place (its id kept).
    """
    params = {
        "config_name": config_name,
        "field_mappings": to_json(dict(field_mappings)),
        "customer_id": None if customer_id is None else str(customer_id),
        "created_by": created_by,
    }
    scope = (
        "is_global = TRUE"
        if customer_id is None
        else "customer_id = CAST(:customer_id AS uuid) AND is_global IS NOT TRUE"
    )
    row = tx.fetch_one(
        f"UPDATE {TABLE} SET field_mappings = CAST(:field_mappings AS jsonb), updated_at = NOW() "
        f"WHERE config_name = :config_name AND {scope} RETURNING *",
        params,
    )
    if row is None:
        row = tx.fetch_one(
            f"INSERT INTO {TABLE} (config_name, customer_id, is_global, field_mappings, "
            "created_by) VALUES (:config_name, CAST(:customer_id AS uuid), "
            "CAST(:customer_id AS uuid) IS NULL, CAST(:field_mappings AS jsonb), :created_by) "
            "RETURNING *",
            params,
        )
    assert row is not None
    return row


def customers_with_configs(tx: Session) -> set[str]:
    """The ids of customers that have rows of their own (everyone else uses the global set)."""
    rows = tx.fetch(
        f"SELECT DISTINCT customer_id FROM {TABLE} "
        "WHERE customer_id IS NOT NULL AND is_global IS NOT TRUE"
    )
    return {str(row["customer_id"]) for row in rows}
