"""Each repository against the migrated schema: what goes in comes back out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pg8000.dbapi
import pytest

from shared.conflicts import FieldState
from shared.db import Database, Session
from shared.db.repositories import (
    customers,
    field_state,
    outbound_dirty,
    reconciliation_runs,
    sync_config,
    sync_log,
    sync_queue,
    webhook_events,
)
from shared.engine.record import states_by_field
from shared.mapping import Direction, EntityType

pytestmark = pytest.mark.integration


@pytest.fixture
def tx(database: Database) -> Iterator[Session]:
    """A transaction rolled back after the test, so tests do not see each other's rows."""
    rollback = RuntimeError("roll back the test's rows")
    with pytest.raises(RuntimeError), database.transaction() as session:
        yield session
        raise rollback


def new_customer(tx: Session, **values: Any) -> dict[str, Any]:
    base = {
        "ban": f"B-{uuid.uuid4().hex[:10]}",
        "company_name": "Globex",
        "customer_type": "POSTPAID",
        "contact": {"name": "Ann Lee", "email": "ann@globex.example", "phone": "+1-555-0100"},
    }
    return customers.insert(tx, {**base, **values})


# --- customers --------------------------------------------------------------------


def test_customer_insert_get_and_many(tx: Session) -> None:
    a = new_customer(tx, credit_limit=Decimal("5000.00"))
    b = new_customer(tx)
    assert customers.get(tx, a["id"])["credit_limit"] == Decimal("5000.00")
    assert customers.get(tx, str(uuid.uuid4())) is None
    assert {r["id"] for r in customers.get_many(tx, [a["id"], b["id"], uuid.uuid4()])} == {
        a["id"],
        b["id"],
    }
    assert customers.get_many(tx, []) == []
    (narrow,) = customers.get_many(tx, [a["id"]], ["credit_limit"])
    assert narrow == {"id": a["id"], "credit_limit": Decimal("5000.00")}
    with pytest.raises(ValueError, match="not a column this statement may use"):
        customers.get_many(tx, [a["id"]], ["credit_limit; DROP TABLE x"])


def test_company_and_contact_links(tx: Session) -> None:
    c = new_customer(tx, external_ids={"billing_system": "X-9"})
    customers.set_link_id(tx, c["id"], EntityType.CUSTOMER, "777")
    customers.set_link_id(tx, c["id"], EntityType.CONTACT, "888")
    assert customers.find_linked(tx, EntityType.CUSTOMER, "777")["id"] == c["id"]
    assert customers.find_linked(tx, EntityType.CONTACT, "888")["id"] == c["id"]
    row = customers.set_link_id(tx, c["id"], EntityType.CUSTOMER, None)
    # Removing one link keeps the other keys, WARP's included.
    assert row["external_ids"] == {"billing_system": "X-9", "hubspot_contact_id": "888"}
    assert customers.find_linked(tx, EntityType.CUSTOMER, "777") is None


def test_find_by_domain_and_name(tx: Session) -> None:
    c = new_customer(tx, company_name="Initech LLC", contact={"email": "Bob@Initech.Example"})
    assert [r["id"] for r in customers.find_by_domain(tx, "initech.example")] == [c["id"]]
    assert [r["id"] for r in customers.find_by_name(tx, "initech llc")] == [c["id"]]
    assert customers.find_by_name(tx, "Initech") == []


def test_keyset_pages_of_linked_customers(tx: Session) -> None:
    tx.execute("DELETE FROM accounts.customers")
    linked = sorted(
        new_customer(tx, external_ids={"hubspot_company_id": str(n)})["id"] for n in range(5)
    )
    unlinked = new_customer(tx)["id"]
    new_customer(tx, external_ids={"hubspot_company_id": "99"}, hubspot_sync_enabled=False)
    seen, after = [], None
    while page := customers.page_linked(tx, after, 2):
        seen += [r["id"] for r in page]
        after = page[-1]["id"]
    assert seen == linked
    assert [r["id"] for r in customers.page_unlinked(tx, None, 10)] == [unlinked]


def test_update_columns_checks_names_and_writes_jsonb(tx: Session) -> None:
    c = new_customer(tx)
    row = customers.update_columns(
        tx, c["id"], {"company_name": "Globex Corp", "contact": {"email": "new@globex.example"}}
    )
    assert row["company_name"] == "Globex Corp"
    assert row["contact"] == {"email": "new@globex.example"}
    assert row["updated_at"] >= c["updated_at"]
    with pytest.raises(ValueError, match="id"):
        customers.update_columns(tx, c["id"], {"id": str(uuid.uuid4())})
    with pytest.raises(ValueError, match="not a column this statement may use"):
        customers.update_columns(tx, c["id"], {"company_name = 'x'; --": 1})


def test_update_many_writes_only_columns_that_still_hold_what_was_read(tx: Session) -> None:
    # Read as pg8000 gives them: a Decimal, a document, a JSON null and a SQL NULL
    # (both None in Python) compare equal to what the row holds.
    same = new_customer(tx, credit_limit=Decimal("5000.00"), custom_fields=None)
    tx.execute(
        "UPDATE accounts.customers SET kyc_data = NULL WHERE id = CAST(:id AS uuid)",
        {"id": same["id"]},
    )
    moved = new_customer(tx)
    read = {cid: customers.get(tx, cid) for cid in (same["id"], moved["id"])}
    assert read[same["id"]]["custom_fields"] is None and read[same["id"]]["kyc_data"] is None
    customers.update_columns(tx, moved["id"], {"contact": {**moved["contact"], "phone": "+9"}})
    writes = {
        same["id"]: {
            "credit_limit": Decimal("6000.00"),
            "contact": {**same["contact"], "email": "new@globex.example"},
            "custom_fields": {"tier": "gold"},
            "kyc_data": {"checked": True},
        },
        moved["id"]: {"contact": {**moved["contact"], "email": "lost@globex.example"}},
    }
    reads = {cid: {c: read[cid][c] for c in columns} for cid, columns in writes.items()}
    assert customers.update_many(tx, writes, reads) == [str(moved["id"])]
    after = customers.get(tx, same["id"])
    assert after["credit_limit"] == Decimal("6000.00")
    assert after["contact"]["email"] == "new@globex.example"
    assert (after["custom_fields"], after["kyc_data"]) == ({"tier": "gold"}, {"checked": True})
    kept = customers.get(tx, moved["id"])["contact"]
    assert (kept["phone"], kept["email"]) == ("+9", "ann@globex.example")  # nothing undone


def test_mark_synced(tx: Session) -> None:
    c = new_customer(tx)
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    customers.mark_synced_to(tx, c["id"], at)
    customers.mark_synced_from(tx, c["id"])
    row = customers.get(tx, c["id"])
    assert row["last_synced_to_hubspot"] == at
    assert row["last_synced_from_hubspot"] is not None


# --- field state ------------------------------------------------------------------


def test_field_state_upsert_partial_and_many(tx: Session) -> None:
    c = new_customer(tx)
    key = {"entity_type": "customer", "entity_id": c["id"], "hubspot_object_id": "1"}
    at = datetime(2026, 3, 1, tzinfo=UTC)
    first = field_state.upsert(
        tx,
        {**key, "field_name": "company_name", "warp_value": "Globex", "last_synced_at": at},
    )
    assert first["warp_value"] == "Globex" and first["sync_direction"] == "BIDIRECTIONAL"
    # Only the keys given are written; the rest stay.
    field_state.upsert(tx, {**key, "field_name": "company_name", "hubspot_value": {"a": [1]}})
    row = field_state.get(tx, "customer", c["id"], "company_name")
    assert (row["warp_value"], row["hubspot_value"], row["last_synced_at"]) == (
        "Globex",
        {"a": [1]},
        at,
    )
    assert row["id"] == first["id"]

    written = field_state.upsert_many(
        tx,
        [
            {**key, "field_name": "status", "warp_value": "ACTIVE", "is_in_conflict": True},
            {**key, "field_name": "credit_limit", "warp_value": None},
        ],
    )
    assert len(written) == 2
    names = [r["field_name"] for r in field_state.get_for_entity(tx, "customer", c["id"])]
    assert names == ["company_name", "credit_limit", "status"]
    assert field_state.get(tx, "customer", c["id"], "credit_limit")["warp_value"] is None
    assert [r["field_name"] for r in field_state.open_conflicts(tx, c["id"])] == ["status"]
    assert len(field_state.get_for_entities(tx, [c["id"]])) == 3


def test_decision_states_hold_every_column_in_its_place(tx: Session) -> None:
    # decision_states hands each state over as an array (DECISION_COLUMNS order) and
    # states_by_field unpacks it by position: every column must land where it belongs.
    c = new_customer(tx)
    base = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    field_state.upsert(
        tx,
        {
            "entity_type": "customer",
            "entity_id": c["id"],
            "hubspot_object_id": "1",
            "field_name": "credit_limit",
            "warp_value": {"amount": "5000.00"},
            "hubspot_value": "5000",
            "hubspot_pending_value": "6000",
            "last_synced_at": base,
            "last_synced_direction": "WARP_TO_HUBSPOT",
            "last_modified_at_warp": base - timedelta(seconds=1),
            "last_modified_at_hubspot": base - timedelta(seconds=2),
            "is_in_conflict": True,
        },
    )
    field_state.record_warp_changes(
        tx, "customer", c["id"], "1", ["credit_limit"], base + timedelta(seconds=3)
    )
    field_state.record_warp_changes(tx, "contact", c["id"], "2", ["phone"], base)
    found = field_state.decision_states(tx, [c["id"]])
    assert set(found) == {(str(c["id"]), "customer"), (str(c["id"]), "contact")}
    state = states_by_field(found[(str(c["id"]), "customer")])["credit_limit"]
    assert state == FieldState(
        warp_value={"amount": "5000.00"},
        hubspot_value="5000",
        last_synced_at=base,
        last_synced_direction=Direction.WARP_TO_HUBSPOT,
        last_modified_at_warp=base - timedelta(seconds=1),
        last_modified_at_hubspot=base - timedelta(seconds=2),
        is_in_conflict=True,
        hubspot_pending="6000",
        recorded=True,
        warp_changed_at=base + timedelta(seconds=3),
    )
    # Only a WARP change time: nothing crossed yet.
    only_time = states_by_field(found[(str(c["id"]), "contact")])["phone"]
    assert (only_time.recorded, only_time.warp_changed_at, only_time.last_synced_direction) == (
        False,
        base,
        None,
    )
    assert field_state.decision_states(tx, []) == {}


def test_field_state_rejects_bad_input(tx: Session) -> None:
    c = new_customer(tx)
    key = {"entity_type": "customer", "entity_id": c["id"], "field_name": "x"}
    with pytest.raises(ValueError, match="hubspot_object_id"):
        field_state.upsert(tx, key)
    with pytest.raises(ValueError, match="twice"):
        field_state.upsert_many(tx, [{**key, "hubspot_object_id": "1"}] * 2)
    with pytest.raises(ValueError, match="not a column this statement may use"):
        field_state.upsert(tx, {**key, "hubspot_object_id": "1", "bogus": 1})


# --- sync log ---------------------------------------------------------------------


def test_sync_log_record_finish_and_pages(tx: Session) -> None:
    c = new_customer(tx)
    ids = [
        sync_log.record(
            tx,
            entity_type="customer",
            entity_id=c["id"],
            operation="UPDATE",
            direction="WARP_TO_HUBSPOT",
            status="IN_PROGRESS",
            started_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n),
            triggered_by="webhook",
        )
        for n in range(3)
    ]
    sync_log.finish(
        tx, ids[0], status="SUCCESS", fields_synced=["status"], field_changes={"status": {}}
    )
    done = sync_log.get(tx, ids[0])
    assert done["status"] == "SUCCESS" and done["completed_at"] is not None
    assert done["fields_synced"] == ["status"]

    page1 = sync_log.list_for_customer(tx, c["id"], limit=2)
    assert [str(r["id"]) for r in page1] == [ids[2], ids[1]]
    last = page1[-1]
    page2 = sync_log.list_for_customer(
        tx, c["id"], limit=2, before=(last["started_at"], last["id"])
    )
    assert [str(r["id"]) for r in page2] == [ids[0]]
    assert [str(r["id"]) for r in sync_log.list_for_customer(tx, c["id"], status="SUCCESS")] == [
        ids[0]
    ]


# --- sync queue -------------------------------------------------------------------


def test_queue_lifecycle(tx: Session) -> None:
    c = new_customer(tx)
    item = sync_queue.enqueue(
        tx,
        kind="outbound",
        entity_type="customer",
        entity_id=c["id"],
        operation="UPDATE",
        direction="WARP_TO_HUBSPOT",
        payload={"changed_fields": ["status"]},
    )
    assert item["status"] == "QUEUED" and item["payload"] == {"changed_fields": ["status"]}
    claimed = sync_queue.claim(tx, item["id"])
    assert claimed["status"] == "PROCESSING"
    assert sync_queue.claim(tx, item["id"]) is None, "a live claim is not taken twice"

    retry_at = datetime.now(UTC) + timedelta(minutes=5)
    again = sync_queue.fail(tx, item["id"], "HTTP 503", retry_at=retry_at)
    assert (again["status"], again["retry_count"], again["last_error"]) == ("QUEUED", 1, "HTTP 503")
    assert sync_queue.claim_due(tx) == [], "not due before retry_at"

    sync_queue.claim(tx, item["id"])
    failed = sync_queue.fail(tx, item["id"], "HTTP 400", retry_at=None)
    assert failed["status"] == "FAILED" and failed["retry_count"] == 2
    assert [r["id"] for r in sync_queue.list_items(tx, statuses=["FAILED"])] == [item["id"]]
    assert sync_queue.depth(tx)["FAILED"] >= 1

    replayed = sync_queue.replay(tx, item["id"])
    assert (replayed["status"], replayed["retry_count"]) == ("QUEUED", 0)
    assert sync_queue.replay(tx, item["id"]) is None, "only FAILED or CANCELLED rows replay"
    assert [r["id"] for r in sync_queue.claim_due(tx, kinds=["outbound"])] == [item["id"]]
    sync_queue.complete(tx, item["id"])
    assert sync_queue.get(tx, item["id"])["status"] == "COMPLETED"


def test_queue_expired_lease_is_claimed_again(tx: Session) -> None:
    item = sync_queue.enqueue(
        tx,
        kind="inbound_batch",
        entity_type="company",
        entity_id=None,
        operation="UPDATE",
        direction="HUBSPOT_TO_WARP",
        payload={"event_ids": []},
    )
    assert sync_queue.claim(tx, item["id"], lease_seconds=60) is not None
    assert sync_queue.claim(tx, item["id"]) is None
    # The worker died and its lease ran out.
    tx.execute(
        "UPDATE accounts.hubspot_sync_queue SET locked_until = NOW() - interval '1 second' "
        "WHERE id = :id",
        {"id": str(item["id"])},
    )
    assert sync_queue.claim(tx, item["id"]) is not None


def test_queue_rows_without_kind_still_need_a_customer(database: Database) -> None:
    violation = pytest.raises(
        pg8000.dbapi.DatabaseError, match="hubspot_sync_queue_entity_required"
    )
    with violation, database.transaction() as session:
        session.execute(
            "INSERT INTO accounts.hubspot_sync_queue (entity_type, operation, direction, "
            "payload) VALUES ('customer', 'UPDATE', 'WARP_TO_HUBSPOT', '{}')"
        )


# --- sync config ------------------------------------------------------------------


def test_sync_config_load_and_save(tx: Session) -> None:
    c = new_customer(tx)
    global_names = [r["config_name"] for r in sync_config.load_rows(tx, None)]
    assert global_names == ["default_contact_sync", "default_customer_sync"]
    own = sync_config.save(
        tx, config_name="acme_override", field_mappings={"x": {}}, customer_id=c["id"]
    )
    saved_again = sync_config.save(
        tx, config_name="acme_override", field_mappings={"y": {}}, customer_id=c["id"]
    )
    assert saved_again["id"] == own["id"]
    rows = sync_config.load_rows(tx, c["id"])
    assert [r["config_name"] for r in rows][-1] == "acme_override"
    last = rows[-1]
    assert last["customer_id"] == str(c["id"]) and last["is_global"] is False
    assert last["field_mappings"] == {"y": {}}
    assert set(last) >= {"config_name", "customer_id", "is_global", "field_mappings", "updated_at"}
    assert all(r["is_global"] for r in rows[:-1])


# --- webhook events ---------------------------------------------------------------


def event(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"11:{n}:1760000000000",
        "event_type": "company.propertyChange",
        "object_type": "company",
        "object_id": "555",
        "property_name": "name",
        "property_value": "Acme",
        "raw_payload": {"eventId": n},
        "occurred_at": datetime(2026, 5, 1, tzinfo=UTC) + timedelta(seconds=n),
        "subscription_id": 11,
        "hubspot_event_id": n,
        **extra,
    }


def test_webhook_insert_batch_is_idempotent(tx: Session) -> None:
    first = webhook_events.insert_batch(tx, [event(1), event(2), event(2)])
    assert sorted(r["event_id"] for r in first) == ["11:1:1760000000000", "11:2:1760000000000"]
    again = webhook_events.insert_batch(tx, [event(2), event(3, signature_valid=True)])
    assert [r["event_id"] for r in again] == ["11:3:1760000000000"]
    stored = webhook_events.get_many(tx, [r["id"] for r in first + again])
    assert [s["hubspot_event_id"] for s in stored] == [1, 2, 3]
    assert [s["signature_valid"] for s in stored] == [False, False, True]
    assert stored[0]["property_value"] == "Acme"


def test_webhook_processing_marks(tx: Session) -> None:
    tx.execute("DELETE FROM accounts.hubspot_webhook_events")
    ids = [r["id"] for r in webhook_events.insert_batch(tx, [event(n) for n in range(4)])]
    by_id = {r["id"]: r["event_id"] for r in webhook_events.get_many(tx, ids)}
    webhook_events.mark_processed(tx, [ids[0]])
    webhook_events.mark_failed(tx, ids[1], "HTTP 503", final=False)
    webhook_events.mark_failed(tx, ids[2], "unknown property", final=True)
    pending = webhook_events.unprocessed(tx)
    assert [r["event_id"] for r in pending] == [by_id[ids[1]], by_id[ids[3]]]
    assert pending[0]["processing_error"] == "HTTP 503" and pending[0]["processing_attempts"] == 1
    assert webhook_events.unprocessed(tx, received_before_seconds=3600) == []
    with pytest.raises(ValueError, match="raw_payload"):
        webhook_events.insert_batch(tx, [{k: v for k, v in event(9).items() if k != "raw_payload"}])


# --- reconciliation runs ----------------------------------------------------------


def test_reconciliation_run_lifecycle(tx: Session) -> None:
    run, created = reconciliation_runs.start(
        tx, run_type="FULL", entity_type="customer", triggered_by="scheduler", idempotency_key="k1"
    )
    assert created and run["status"] == "RUNNING" and run["dry_run"] is False
    same, created_again = reconciliation_runs.start(
        tx, run_type="FULL", entity_type="customer", idempotency_key="k1"
    )
    assert (same["id"], created_again) == (run["id"], False)

    reconciliation_runs.checkpoint(tx, run["id"], {"after_id": "abc"}, {"total_records": 100})
    mid = reconciliation_runs.get(tx, run["id"])
    assert mid["checkpoint"] == {"after_id": "abc"} and mid["total_records"] == 100
    done = reconciliation_runs.finish(
        tx,
        run["id"],
        status="COMPLETED",
        counts={"records_in_sync": 98, "records_updated": 2},
        report={"missing_companies": []},
    )
    assert done["status"] == "COMPLETED" and done["duration_seconds"] >= 0
    assert (done["total_records"], done["records_updated"]) == (100, 2)
    assert run["id"] in [r["id"] for r in reconciliation_runs.list_runs(tx, status="COMPLETED")]
    with pytest.raises(ValueError):
        reconciliation_runs.checkpoint(tx, run["id"], {}, {"status": 1})


def test_stale_running_runs(tx: Session) -> None:
    run, _ = reconciliation_runs.start(tx, run_type="FULL", entity_type="customer")
    tx.execute(
        "UPDATE accounts.hubspot_reconciliation_runs "
        "SET heartbeat_at = NOW() - interval '1 hour' WHERE id = :id",
        {"id": str(run["id"])},
    )
    assert run["id"] in [
        r["id"] for r in reconciliation_runs.stale_running(tx, silent_for_seconds=60)
    ]


# --- outbound dirty set -----------------------------------------------------------


def test_dirty_set_coalesces_and_takes(tx: Session) -> None:
    c = new_customer(tx)
    outbound_dirty.mark(tx, c["id"], ["status"], "m1")
    merged = outbound_dirty.mark(tx, c["id"], ["company_name", "status"], "m2")
    assert merged["changed_fields"] == ["company_name", "status"]
    assert merged["message_ids"] == ["m1", "m2"] and merged["message_count"] == 2
    assert outbound_dirty.take(tx, marked_before=datetime(2000, 1, 1, tzinfo=UTC)) == []
    taken = outbound_dirty.take(tx, marked_before=datetime.now(UTC) + timedelta(seconds=1))
    assert [r["customer_id"] for r in taken] == [c["id"]]
    # Taken rows stay, leased, until the push is recorded.
    assert outbound_dirty.take(tx, marked_before=datetime.now(UTC) + timedelta(seconds=1)) == []
    assert outbound_dirty.pending_count(tx) == 1
    assert outbound_dirty.settle(tx, taken) == []
    assert outbound_dirty.pending_count(tx) == 0
