"""The migrations on an empty database and beside WARP's own schema, run again and at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.db import Database
from shared.db.connection import url_connector
from shared.db.migrate import applied_versions, available_migrations, upgrade
from shared.errors import ConfigurationError

pytestmark = pytest.mark.integration

WARP_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "warp_schema"

# WARP's published contact_email entry, and the one 0002 puts in its place.
WARP_CONTACT_EMAIL = {
    "hubspot_property": "domain",
    "warp_field": "contact.email",
    "warp_field_path": "contact->>'email'",
    "sync_direction": "BIDIRECTIONAL",
    "conflict_resolution": "LATEST_WINS",
}
CORRECTED_CONTACT_EMAIL = {
    **WARP_CONTACT_EMAIL,
    "sync_direction": "WARP_TO_HUBSPOT",
    "conflict_resolution": "WARP_WINS",
    "transform": "email_to_domain",
}

# DESIGN.md section 10 (plus WARP's three customer columns): table -> columns.
SECTION_10: dict[str, set[str]] = {
    "hubspot_sync_log": {
        "id", "entity_type", "entity_id", "hubspot_object_id", "operation", "direction",
        "fields_synced", "field_changes", "status", "error_message", "retry_count",
        "started_at", "completed_at", "triggered_by", "triggered_by_user",
    },
    "hubspot_field_state": {
        "id", "entity_type", "entity_id", "hubspot_object_id", "field_name", "field_path",
        "warp_value", "hubspot_value", "last_synced_at", "last_synced_direction",
        "last_modified_at_warp", "last_modified_at_hubspot", "sync_direction",
        "conflict_resolution", "is_in_conflict", "conflict_detected_at",
        "conflict_resolved_at", "created_at", "updated_at",
    },
    "hubspot_sync_queue": {
        "id", "entity_type", "entity_id", "hubspot_object_id", "operation", "direction",
        "payload", "priority", "scheduled_for", "max_retries", "retry_count", "status",
        "last_error", "created_at", "processed_at",
    },
    "hubspot_sync_config": {
        "id", "customer_id", "is_global", "config_name", "field_mappings",
        "auto_sync_enabled", "sync_frequency_minutes", "batch_size", "created_at",
        "updated_at", "created_by",
    },
    "hubspot_webhook_events": {
        "id", "event_id", "event_type", "object_type", "object_id", "property_name",
        "property_value", "previous_value", "raw_payload", "processed", "processed_at",
        "processing_error", "occurred_at", "received_at", "signature_valid",
    },
    "hubspot_reconciliation_runs": {
        "id", "run_type", "entity_type", "customer_id", "total_records", "records_in_sync",
        "records_updated", "conflicts_detected", "errors_encountered", "status",
        "started_at", "completed_at", "duration_seconds", "triggered_by", "notes",
    },
    "customers": {
        "id", "ban", "company_name", "legal_name", "status", "customer_type", "contact",
        "address", "credit_limit", "current_balance", "prepaid_balance", "payment_terms",
        "billing_cycle", "currency", "external_ids", "custom_fields", "created_at",
        "updated_at", "last_synced_to_hubspot", "last_synced_from_hubspot",
        "hubspot_sync_enabled",
    },
}  # fmt: skip
# A few types that code relies on.
TYPES = {
    ("customers", "id"): "uuid",
    ("customers", "external_ids"): "jsonb",
    ("customers", "contact"): "jsonb",
    ("customers", "credit_limit"): "numeric",
    ("hubspot_sync_config", "field_mappings"): "jsonb",
    ("hubspot_webhook_events", "event_id"): "character varying",
    ("hubspot_webhook_events", "occurred_at"): "timestamp with time zone",
    ("hubspot_field_state", "warp_value"): "jsonb",
}


@pytest.fixture
def open_pool() -> Iterator[Callable[[str], Database]]:
    """Factory of pools on a database URL, each closed after the test."""
    opened: list[Database] = []

    def make(url: str) -> Database:
        db = Database(url_connector(url), pool_size=3)
        opened.append(db)
        return db

    yield make
    for db in opened:
        db.close()


@pytest.fixture
def new_database(
    create_database: Callable[[str], str], open_pool: Callable[[str], Database]
) -> Callable[[], Database]:
    """Factory of pools, each on a new empty database."""
    return lambda: open_pool(create_database("migrations"))


def run_warp_fixture(db: Database) -> None:
    """Apply WARP's own schema files, as a WARP deployment would have."""
    with db.transaction() as tx:
        for path in sorted(WARP_FIXTURE.glob("*.sql")):
            tx.execute(path.read_text())


def config_rows(db: Database) -> dict[str, dict[str, Any]]:
    with db.transaction() as tx:
        rows = tx.fetch("SELECT * FROM accounts.hubspot_sync_config WHERE is_global")
    return {r["config_name"]: r for r in rows}


def index_definitions(db: Database) -> list[tuple[str, str]]:
    """(table, definition without the index name) of every index in the schema."""
    with db.transaction() as tx:
        rows = tx.fetch(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'accounts'"
        )
    return sorted(
        (r["tablename"], r["indexdef"].replace(f" {r['indexname']} ", " <name> ")) for r in rows
    )


def test_empty_database_twice(new_database: Callable[[], Database]) -> None:
    db = new_database()
    first = upgrade(db)
    assert [m.version for m in first] == [m.version for m in available_migrations()]
    assert upgrade(db) == []
    assert applied_versions(db) == [m.version for m in available_migrations()]

    # The SQL itself is idempotent, not just the ledger: run every file again.
    with db.transaction() as tx:
        for migration in available_migrations():
            tx.execute(migration.sql)
    configs = config_rows(db)
    assert set(configs) == {"default_customer_sync", "default_contact_sync"}
    assert configs["default_customer_sync"]["field_mappings"]["contact_email"] == (
        CORRECTED_CONTACT_EMAIL
    )
    with db.transaction() as tx:
        assert tx.fetch_value("SELECT count(*) FROM accounts.hubspot_sync_config") == 2


def test_beside_warp_schema_twice(new_database: Callable[[], Database]) -> None:
    db = new_database()
    run_warp_fixture(db)
    warp_row = config_rows(db)["default_customer_sync"]
    with db.transaction() as tx:
        customer = tx.fetch_one("SELECT * FROM accounts.customers WHERE ban = 'AC-64428714'")
    indexes_before = index_definitions(db)

    assert len(upgrade(db)) == len(available_migrations())
    assert upgrade(db) == []
    with db.transaction() as tx:
        for migration in available_migrations():
            tx.execute(migration.sql)

    configs = config_rows(db)
    ours = configs["default_customer_sync"]
    assert ours["id"] == warp_row["id"], "WARP's row must survive with its id"
    assert ours["field_mappings"]["contact_email"] == CORRECTED_CONTACT_EMAIL
    untouched = {k: v for k, v in warp_row["field_mappings"].items() if k != "contact_email"}
    assert {k: v for k, v in ours["field_mappings"].items() if k != "contact_email"} == untouched
    assert "default_contact_sync" in configs

    with db.transaction() as tx:
        kept = tx.fetch_one("SELECT * FROM accounts.customers WHERE ban = 'AC-64428714'")
        assert tx.fetch_value("SELECT count(*) FROM accounts.customers") == 1
    assert kept is not None and customer is not None
    assert {k: kept[k] for k in customer} == customer
    assert kept["external_ids"] == {"hubspot_company_id": "12345"}

    # WARP's indexes are reused by name, so none we add duplicates one of WARP's.
    # (WARP itself indexes event_id twice, a UNIQUE column and a unique index; that
    # pair is WARP's own and the only duplicate allowed.)
    after = index_definitions(db)
    assert set(indexes_before) <= set(after)
    assert _duplicates(after) == _duplicates(indexes_before)


def _duplicates(definitions: list[tuple[str, str]]) -> int:
    return len(definitions) - len(set(definitions))


def test_warp_row_edited_by_an_operator_is_left_alone(new_database: Callable[[], Database]) -> None:
    db = new_database()
    run_warp_fixture(db)
    edited = {**WARP_CONTACT_EMAIL, "sync_direction": "NONE"}
    with db.transaction() as tx:
        tx.execute(
            "UPDATE accounts.hubspot_sync_config SET field_mappings = jsonb_set(field_mappings, "
            "'{contact_email}', CAST(:entry AS jsonb)) WHERE config_name = 'default_customer_sync'",
            {"entry": json.dumps(edited)},
        )
    upgrade(db)
    assert config_rows(db)["default_customer_sync"]["field_mappings"]["contact_email"] == edited


@pytest.mark.parametrize("start", ["empty", "warp"])
def test_columns_match_section_10(new_database: Callable[[], Database], start: str) -> None:
    db = new_database()
    if start == "warp":
        run_warp_fixture(db)
    upgrade(db)
    with db.transaction() as tx:
        rows = tx.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'accounts'"
        )
    columns: dict[str, set[str]] = {}
    types = {}
    for r in rows:
        columns.setdefault(r["table_name"], set()).add(r["column_name"])
        types[(r["table_name"], r["column_name"])] = r["data_type"]
    for table, expected in SECTION_10.items():
        assert expected <= columns.get(table, set()), (table, expected - columns.get(table, set()))
    for key, data_type in TYPES.items():
        assert types[key] == data_type, key
    # 0003's additions are there too.
    assert {"idempotency_key", "checkpoint", "heartbeat_at", "report", "dry_run"} <= columns[
        "hubspot_reconciliation_runs"
    ]
    assert {"kind", "task_name", "locked_until"} <= columns["hubspot_sync_queue"]
    assert "hubspot_idempotency" in columns and "hubspot_outbound_dirty" in columns


def test_two_upgrades_at_once_apply_each_migration_once(
    create_database: Callable[[str], str], open_pool: Callable[[str], Database]
) -> None:
    url = create_database("concurrent")
    first, twin = open_pool(url), open_pool(url)  # as two processes starting together
    barrier = threading.Barrier(2)
    results: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def run(name: str, db: Database) -> None:
        try:
            barrier.wait(timeout=30)
            results[name] = [m.version for m in upgrade(db)]
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=("a", first)),
        threading.Thread(target=run, args=("b", twin)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    everything = [m.version for m in available_migrations()]
    assert sorted([results["a"], results["b"]]) == [[], everything]
    with first.transaction() as tx:
        assert tx.fetch_value("SELECT count(*) FROM accounts.hubspot_sync_migrations") == len(
            everything
        )
        assert tx.fetch_value("SELECT count(*) FROM accounts.hubspot_sync_config") == 2


def test_edited_migration_is_detected(new_database: Callable[[], Database]) -> None:
    db = new_database()
    upgrade(db)
    with db.transaction() as tx:
        tx.execute("UPDATE accounts.hubspot_sync_migrations SET checksum = 'x' WHERE version = 2")
    with pytest.raises(ConfigurationError, match="0002_seed_configs was edited"):
        upgrade(db)


def test_failed_upgrade_leaves_database_as_it_was(new_database: Callable[[], Database]) -> None:
    db = new_database()
    with db.transaction() as tx:
        # A table in the way of 0001 (same name, unrelated shape) makes the upgrade fail.
        tx.execute("CREATE SCHEMA accounts")
        tx.execute("CREATE TABLE accounts.hubspot_sync_log (id INTEGER PRIMARY KEY)")
    with pytest.raises(Exception, match="entity_type"):
        upgrade(db)
    with db.transaction() as tx:
        assert tx.fetch_value("SELECT to_regclass('accounts.customers')") is None
        assert tx.fetch_value("SELECT to_regclass('accounts.hubspot_sync_migrations')") is None
