"""Inbound processing (shared/inbound) against a real database and the HubSpot emulator.

Events are stored with ``store_batch`` and applied with ``process_events``, the
same calls the webhook receiver makes, so each test names one processing rule.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from localdev.drain import wait_drained
from shared.db.connection import url_connector
from shared.db.repositories import customers, field_state, sync_log, sync_queue
from shared.engine import Engine
from shared.engine.sync import TO_HUBSPOT, sync_customers
from shared.inbound import apply
from shared.inbound.events import parse_batch
from shared.inbound.process import (
    process_events,
    process_pending,
)
from shared.inbound.receive import store_batch
from shared.mapping import EntityType
from shared.tasks import TaskOutcome, run_task
from tests.conftest import TEST_APP_ID
from tests.helpers.db_kill import lock_waiter
from tests.helpers.inbound import change, event, now_ms, process

pytestmark = pytest.mark.integration


def new_customer(
    engine: Engine, emulator: Any, *, link: bool = True, **values: Any
) -> tuple[str, str]:
    """A customer and a seeded company (linked unless told otherwise)."""
    ban = f"B-{uuid.uuid4().hex[:8]}"
    name = values.pop("company_name", f"Acme {ban}")
    (company_id,) = emulator.seed(
        "companies", [{"name": name, "domain": f"{ban.lower()}.example", "warp_ban": ban}]
    )
    row = {
        "ban": ban,
        "company_name": name,
        "customer_type": "POSTPAID",
        "status": "ACTIVE",
        "credit_limit": Decimal("5000.00"),
        "contact": {"name": "Jane Doe", "email": f"jane@{ban.lower()}.example", "phone": "+1 555"},
        "external_ids": {"hubspot_company_id": company_id} if link else {},
        **values,
    }
    with engine.database.transaction() as tx:
        created = customers.insert(tx, row)
    return str(created["id"]), company_id


def customer(engine: Engine, cid: str) -> dict[str, Any]:
    with engine.database.transaction() as tx:
        row = customers.get(tx, cid)
    assert row is not None
    return row


def logs(engine: Engine, cid: str) -> list[dict[str, Any]]:
    with engine.database.transaction() as tx:
        return sync_log.list_for_customer(tx, cid)


def stored_rows(engine: Engine, object_id: str) -> list[dict[str, Any]]:
    with engine.database.transaction() as tx:
        return tx.fetch(
            "SELECT * FROM accounts.hubspot_webhook_events WHERE object_id = :o "
            "ORDER BY occurred_at",
            {"o": str(object_id)},
        )


# --- property changes ----------------------------------------------------------------


def test_property_change_applied_with_state_log_and_stamp(engine: Engine, emulator: Any) -> None:
    cid, company = new_customer(engine, emulator)
    report = process(
        engine,
        change(company, "name", "Acme Renamed"),
        change(company, "warp_credit_limit", "7500"),
    )
    assert report.counts["applied"] == 2 and report.processed == 2
    row = customer(engine, cid)
    assert row["company_name"] == "Acme Renamed"
    assert row["credit_limit"] == Decimal("7500.00")
    assert row["last_synced_from_hubspot"] is not None
    with engine.database.transaction() as tx:
        state = field_state.get(tx, "customer", cid, "company_name")
    assert state is not None and state["hubspot_value"] == "Acme Renamed"
    assert state["last_synced_direction"] == "HUBSPOT_TO_WARP"
    (entry,) = logs(engine, cid)
    assert entry["direction"] == "HUBSPOT_TO_WARP" and entry["triggered_by"] == "webhook"
    assert entry["field_changes"]["company_name"]["source"] == "hubspot"
    assert all(
        r["processed"] and r["processing_error"] is None for r in stored_rows(engine, company)
    )


def test_warp_edit_committed_while_a_chunk_applies_is_kept_and_its_events_retried(
    engine: Engine, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    raced, raced_company = new_customer(engine, emulator)
    other, other_company = new_customer(engine, emulator)
    read_states = field_state.decision_states

    def states_after_an_application_edit(tx: Any, ids: Any) -> Any:
        # The chunk has read its rows; WARP's application renames one customer now.
        with engine.database.transaction() as edit:
            customers.update_columns(edit, raced, {"company_name": "WARP Renamed"})
        monkeypatch.setattr(field_state, "decision_states", read_states)
        return read_states(tx, ids)

    monkeypatch.setattr(field_state, "decision_states", states_after_an_application_edit)
    report = process(
        engine,
        change(raced_company, "name", "HubSpot Renamed"),
        change(other_company, "name", "Other Renamed"),
    )
    assert customer(engine, raced)["company_name"] == "WARP Renamed"  # not undone
    assert customer(engine, other)["company_name"] == "Other Renamed"  # the rest applied
    assert report.counts["applied"] == 1 and len(report.retry) == 1
    (pending,) = stored_rows(engine, raced_company)
    assert not pending["processed"] and "changed in WARP" in pending["processing_error"]


def test_a_chunk_that_waited_for_the_customer_is_recorded_after_the_one_it_waited_for(
    engine: Engine, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two deliveries of one customer at once; the newer edit's reaches the lock second.

    Found by tests/inbound/test_webhook_delivery.py under load: a chunk that read the clock,
    then waited for a connection or the customer's lock while another chunk applied an
    older edit, logged its newer edit as the earlier one ("Round 2" last, WARP on Round 9).
    """
    cid, company = new_customer(engine, emulator)
    at = now_ms()
    older = store_batch(engine.database, parse_batch([change(company, "name", "Older", at=at)]))
    newer = store_batch(engine.database, parse_batch([change(company, "name", "Newer", at=at + 1)]))
    start, ticks = datetime.now(UTC), iter(range(1_000))
    monkeypatch.setattr(engine, "clock", lambda: start + timedelta(seconds=next(ticks)))
    take_locks = apply.lock_customers

    def the_older_chunk_applies_first(tx: Any, ids: Any) -> None:
        monkeypatch.setattr(apply, "lock_customers", take_locks)
        other = threading.Thread(target=process_events, args=(engine, older.to_process))
        other.start()  # another request's worker, on its own connection
        other.join(30)
        take_locks(tx, ids)

    monkeypatch.setattr(apply, "lock_customers", the_older_chunk_applies_first)
    report = process_events(engine, newer.to_process)
    assert report.counts["applied"] == 1
    assert customer(engine, cid)["company_name"] == "Newer"
    entries = logs(engine, cid)  # newest first, as the API lists them
    assert [e["field_changes"]["company_name"]["new"] for e in entries] == ["Newer", "Older"]
    with engine.database.transaction() as tx:
        state = field_state.get(tx, "customer", cid, "company_name")
    assert state is not None and state["last_synced_at"] == entries[0]["completed_at"]


def test_echoes_of_our_writes_are_ignored_and_counted(engine: Engine, emulator: Any) -> None:
    cid, company = new_customer(engine, emulator)
    ours = change(
        company, "name", "Written By Us", changeSource="INTEGRATION", sourceId=str(TEST_APP_ID)
    )
    report = process(engine, ours)
    assert report.echoes == 1 and report.counts["applied"] == 0
    assert customer(engine, cid)["company_name"].startswith("Acme ")
    # Echo by value: after we push WARP's value, a webhook carrying it back changes nothing.
    with engine.database.transaction() as tx:
        customers.update_columns(tx, cid, {"company_name": "Pushed Name"})
    (result,) = sync_customers(engine, [cid], allowed=TO_HUBSPOT, triggered_by="test")
    assert result.status == "synced"
    later = int((datetime.now(UTC) + timedelta(seconds=5)).timestamp() * 1000)
    report = process(
        engine, change(company, "name", "Pushed Name", at=later, changeSource="API", sourceId="x")
    )
    assert report.echoes == 1
    assert len([e for e in logs(engine, cid) if e["triggered_by"] == "webhook"]) == 0


def test_stale_event_ignored_and_logged_as_skipped(engine: Engine, emulator: Any) -> None:
    cid, company = new_customer(engine, emulator)
    now = now_ms()
    process(engine, change(company, "name", "Newer", at=now))
    report = process(engine, change(company, "name", "Older", at=now - 60_000))
    assert report.counts["stale"] == 1
    assert customer(engine, cid)["company_name"] == "Newer"
    latest = logs(engine, cid)[0]
    assert "stale" in latest["field_changes"]["_skipped"]["company_name"]


def test_latest_wins_change_waits_for_warps_change_message(engine: Engine, emulator: Any) -> None:
    # company_name is LATEST_WINS. WARP changed it too, and WARP's time for it is its
    # change message's: until that arrives, deciding would have to guess WARP's time.
    cid, company = new_customer(engine, emulator)
    sync_customers(engine, [cid], triggered_by="test")  # the name crossed: state recorded
    with engine.database.transaction() as tx:
        customers.update_columns(tx, cid, {"company_name": "WARP Name"})
    hubspot_at = datetime.now(UTC)
    report = process(engine, change(company, "name", "HubSpot Name", at=_ms(hubspot_at)))
    assert report.counts["awaits_warp"] == 1
    assert customer(engine, cid)["company_name"] == "WARP Name"
    assert "change message" in logs(engine, cid)[0]["field_changes"]["_skipped"]["company_name"]
    # WARP's message arrives (outbound_sync records its time): WARP's edit was the later.
    with engine.database.transaction() as tx:
        field_state.record_warp_changes(
            tx, "customer", cid, company, ["company_name"], hubspot_at + timedelta(seconds=1)
        )
    report = process(engine, change(company, "name", "HubSpot Name", at=_ms(hubspot_at)))
    assert report.counts["warp_newer"] == 1
    assert customer(engine, cid)["company_name"] == "WARP Name"


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def test_only_the_newest_change_of_a_property_counts(engine: Engine, emulator: Any) -> None:
    cid, company = new_customer(engine, emulator)
    now = now_ms()
    # Delivered out of order, as HubSpot may.
    report = process(
        engine,
        change(company, "name", "Third", at=now + 2),
        change(company, "name", "First", at=now),
        change(company, "name", "Second", at=now + 1),
    )
    assert report.counts == {"applied": 1, "superseded": 2}
    assert customer(engine, cid)["company_name"] == "Third"


def test_unmapped_and_outbound_only_properties_skipped_with_reason(
    engine: Engine, emulator: Any
) -> None:
    cid, company = new_customer(engine, emulator)
    report = process(
        engine, change(company, "twitterhandle", "acme"), change(company, "warp_ban", "B-OTHER")
    )
    assert report.counts == {"unmapped": 1, "outbound_only": 1}
    row = customer(engine, cid)
    assert row["ban"] != "B-OTHER"
    skipped = logs(engine, cid)[0]["field_changes"]["_skipped"]
    assert "not mapped" in skipped["twitterhandle"]
    assert "WARP_TO_HUBSPOT" in skipped["ban"]


def test_manual_conflict_marks_state_and_changes_nothing(engine: Engine, emulator: Any) -> None:
    cid, company = new_customer(engine, emulator)
    with engine.database.transaction() as tx:
        tx.execute(
            "INSERT INTO accounts.hubspot_sync_config (customer_id, is_global, config_name, "
            "field_mappings) VALUES (CAST(:cid AS uuid), FALSE, 'manual_name', CAST(:m AS jsonb))",
            {
                "cid": cid,
                "m": '{"company_name": {"hubspot_property": "name", "warp_field": "company_name",'
                ' "sync_direction": "BIDIRECTIONAL", "conflict_resolution": "MANUAL"}}',
            },
        )
    engine.reload_mappings()
    before = customer(engine, cid)["company_name"]
    report = process(engine, change(company, "name", "HubSpot Name"))
    assert report.counts["conflict"] == 1
    assert customer(engine, cid)["company_name"] == before
    with engine.database.transaction() as tx:
        state = field_state.get(tx, "customer", cid, "company_name")
    assert state is not None and state["is_in_conflict"] is True
    assert logs(engine, cid)[0]["status"] == "CONFLICT"


def test_primary_contact_property_changes_update_contact_json(
    engine: Engine, emulator: Any
) -> None:
    (contact_id,) = emulator.seed(
        "contacts", [{"firstname": "Jane", "lastname": "Doe", "email": "j@x.example"}]
    )
    cid, _ = new_customer(engine, emulator)
    with engine.database.transaction() as tx:
        customers.set_link_id(tx, cid, EntityType.CONTACT, contact_id)
    kind = "contact.propertyChange"
    report = process(
        engine,
        change(contact_id, "firstname", "Janet", kind=kind),
        change(contact_id, "phone", "+44 20 7946 0000", kind=kind),
    )
    assert report.counts["applied"] == 2
    contact = customer(engine, cid)["contact"]
    assert contact["name"] == "Janet Doe" and contact["phone"] == "+44 20 7946 0000"
    assert contact["email"].startswith("jane@")  # untouched keys kept


def test_changes_of_unknown_objects_are_processed_with_a_note(
    engine: Engine, emulator: Any
) -> None:
    report = process(engine, change(987654321, "name", "Nobody's"))
    assert report.counts == {"no_customer": 1} and report.failed == 0
    (row,) = stored_rows(engine, "987654321")
    assert row["processed"] is True and row["processing_error"] is None


# --- creations, deletions, merges, associations --------------------------------------


def test_creation_links_the_one_matching_unlinked_customer(engine: Engine, emulator: Any) -> None:
    cid, _ = new_customer(engine, emulator, link=False, company_name="Zephyr Networks")
    new_id = emulator.ui_create("companies", {"name": "Zephyr Networks"})
    # The creation arrives alone: name and domain are read from HubSpot.
    report = process(engine, event("company.creation", new_id, changeFlag="CREATED"))
    assert report.counts["linked"] == 1
    assert customer(engine, cid)["external_ids"]["hubspot_company_id"] == new_id
    assert logs(engine, cid)[0]["operation"] == "CREATE"


def test_creation_with_properties_in_the_batch_then_applies_them(
    engine: Engine, emulator: Any
) -> None:
    cid, _ = new_customer(engine, emulator, link=False, company_name="Orbit Telecom")
    domain = customer(engine, cid)["contact"]["email"].split("@")[1]
    now = now_ms()
    report = process(
        engine,
        event("company.creation", 555001, at=now),
        change(555001, "domain", domain, at=now),
        change(555001, "warp_credit_limit", "9000", at=now),
    )
    assert report.counts["linked"] == 1 and report.counts["applied"] == 1
    row = customer(engine, cid)
    assert row["external_ids"]["hubspot_company_id"] == "555001"
    assert row["credit_limit"] == Decimal("9000.00")


def test_ambiguous_creation_is_recorded_not_linked(engine: Engine, emulator: Any) -> None:
    first, _ = new_customer(engine, emulator, link=False, company_name="Twin Corp")
    second, _ = new_customer(engine, emulator, link=False, company_name="twin corp")
    report = process(engine, event("company.creation", 555002), change(555002, "name", "Twin Corp"))
    assert report.counts["not_linked"] == 1
    assert (
        not customer(engine, first)["external_ids"] and not customer(engine, second)["external_ids"]
    )


def test_deletion_unlinks_and_flags_never_deletes(engine: Engine, emulator: Any) -> None:
    cid, company = new_customer(engine, emulator)
    report = process(engine, event("company.deletion", company, changeFlag="DELETED"))
    assert report.counts["unlinked"] == 1
    row = customer(engine, cid)  # still there
    assert "hubspot_company_id" not in row["external_ids"]
    entry = logs(engine, cid)[0]
    assert entry["operation"] == "DELETE" and entry["status"] == "CONFLICT"
    assert "review" in entry["error_message"]


def test_merge_moves_the_link_to_the_survivor(engine: Engine, emulator: Any) -> None:
    cid, merged = new_customer(engine, emulator)
    (survivor,) = emulator.seed("companies", [{"name": "Survivor"}])
    report = process(
        engine,
        event(
            "company.merge",
            survivor,
            primaryObjectId=int(survivor),
            mergedObjectIds=[int(merged)],
            newObjectId=int(survivor),
        ),
    )
    assert report.counts["merged"] == 1
    assert customer(engine, cid)["external_ids"]["hubspot_company_id"] == survivor


def test_primary_contact_association_sets_and_removes_the_link(
    engine: Engine, emulator: Any
) -> None:
    cid, company = new_customer(engine, emulator)
    (contact_id,) = emulator.seed("contacts", [{"email": "new@x.example"}])
    both = {"associationRemoved": False, "isPrimaryAssociation": True}
    report = process(
        engine,
        event(
            "company.associationChange",
            company,
            associationType="COMPANY_TO_CONTACT",
            fromObjectId=int(company),
            toObjectId=int(contact_id),
            **both,
        ),
        event(
            "contact.associationChange",
            contact_id,
            associationType="CONTACT_TO_COMPANY",
            fromObjectId=int(contact_id),
            toObjectId=int(company),
            **both,
        ),
    )
    assert report.counts == {"linked": 1, "link_unchanged": 1}
    assert customer(engine, cid)["external_ids"]["hubspot_contact_id"] == contact_id
    removed = {"associationRemoved": True, "isPrimaryAssociation": True}
    report = process(
        engine,
        event(
            "contact.associationChange",
            contact_id,
            associationType="CONTACT_TO_COMPANY",
            fromObjectId=int(contact_id),
            toObjectId=int(company),
            **removed,
        ),
    )
    assert report.counts == {"unlinked": 1}
    assert "hubspot_contact_id" not in customer(engine, cid)["external_ids"]


# --- failures ------------------------------------------------------------------------


def test_one_bad_event_does_not_stop_the_others(engine: Engine, emulator: Any) -> None:
    bad_cid, bad = new_customer(engine, emulator)
    good_cid, good = new_customer(engine, emulator)
    now = now_ms()
    # warp_credit_limit is HUBSPOT_WINS; 10**14 overflows WARP's DECIMAL(12, 2) column.
    report = process(
        engine,
        change(bad, "warp_credit_limit", "100000000000000", at=now),
        change(bad, "name", "Same Company Fine", at=now),
        change(good, "name", "Other Company Fine", at=now),
    )
    assert report.failed == 1 and report.counts["applied"] == 2
    assert customer(engine, good_cid)["company_name"] == "Other Company Fine"
    assert customer(engine, bad_cid)["company_name"] == "Same Company Fine"
    assert customer(engine, bad_cid)["credit_limit"] == Decimal("5000.00")
    (failed,) = [r for r in stored_rows(engine, bad) if r["property_name"] == "warp_credit_limit"]
    assert failed["processed"] is True and "22003" in failed["processing_error"]


@pytest.fixture
def customer_lock(engine: Engine) -> Iterator[Any]:
    """Hold a customer's advisory lock from another transaction until released."""
    release = threading.Event()
    taken = threading.Event()
    threads: list[threading.Thread] = []

    def hold(cid: str) -> None:
        def run() -> None:
            with engine.database.transaction() as tx:
                from shared.engine.sync import lock_customers

                lock_customers(tx, [cid])
                taken.set()
                release.wait(30)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        assert taken.wait(10)

    yield hold
    release.set()
    for thread in threads:
        thread.join(10)


def test_lock_wait_beyond_budget_leaves_events_for_the_task(
    engine: Engine, emulator: Any, customer_lock: Any
) -> None:
    cid, company = new_customer(engine, emulator)
    customer_lock(cid)
    stored = store_batch(engine.database, parse_batch([change(company, "name", "After The Lock")]))
    report = process_events(engine, stored.to_process, deadline=time.monotonic() + 0.3)
    assert report.retry == [s.row_id for s in stored.to_process]
    (row,) = stored_rows(engine, company)
    assert row["processed"] is False and "55P03" in row["processing_error"]


def test_task_and_sweep_pick_up_unprocessed_events(engine: Engine, emulator: Any) -> None:
    cid, company = new_customer(engine, emulator)
    stored = store_batch(engine.database, parse_batch([change(company, "name", "Via Task")]))
    ids = [s.row_id for s in stored.to_process]
    assert run_task(engine, "inbound_batch", {"event_ids": ids}, 0) is TaskOutcome.DONE
    assert customer(engine, cid)["company_name"] == "Via Task"
    # The sweep: stored and never processed (a lost task) is found by age.
    stored = store_batch(engine.database, parse_batch([change(company, "name", "Via Sweep")]))
    report = process_pending(engine, received_before=datetime.now(UTC) + timedelta(seconds=1))
    assert report.counts["applied"] >= 1 and not report.remaining
    assert customer(engine, cid)["company_name"] == "Via Sweep"
    assert all(r["processed"] for r in stored_rows(engine, company))


def test_last_attempt_leaves_a_queue_row_that_goes_on_retrying(
    engine: Engine, emulator: Any
) -> None:
    stored = store_batch(engine.database, parse_batch([event("company.creation", 555999)]))
    ids = [s.row_id for s in stored.to_process]
    emulator.set_faults(outage=True)  # the creation needs a HubSpot read: retryable failure
    try:
        assert run_task(engine, "inbound_batch", {"event_ids": ids}, 0) is TaskOutcome.RETRY
        last = engine.settings.retry_max_attempts - 1
        # Not FAILED: the events become a queue row retried within RETRY_WINDOW_SECONDS.
        assert run_task(engine, "inbound_batch", {"event_ids": ids}, last) is TaskOutcome.SCHEDULED
        with engine.database.transaction() as tx:
            (item,) = [
                r
                for r in sync_queue.list_items(tx, statuses=["QUEUED", "PROCESSING"])
                if r["kind"] == "inbound_batch" and r["payload"] == {"event_ids": ids}
            ]
        (row,) = stored_rows(engine, "555999")
        assert row["processed"] is False and row["processing_error"]
    finally:
        emulator.set_faults(outage=False)
    # After the outage the row's next attempt succeeds by itself.
    assert wait_drained(engine, timeout=30)
    with engine.database.transaction() as tx:
        assert sync_queue.get(tx, str(item["id"]))["status"] == "COMPLETED"
    (row,) = stored_rows(engine, "555999")
    assert row["processed"] is True


def test_events_another_worker_applies_meanwhile_are_applied_once(
    engine: Engine, emulator: Any, database_url: str
) -> None:
    """A late task and the sweep holding the same stored events: the second applies nothing."""
    cid, company = new_customer(engine, emulator)
    stored = store_batch(engine.database, parse_batch([change(company, "name", "Applied Once")]))
    ids = [s.row_id for s in stored.to_process]
    other = url_connector(database_url)()  # the other worker, inside its transaction
    try:
        cursor = other.cursor()
        cursor.execute(
            "SELECT id FROM accounts.hubspot_webhook_events "
            "WHERE id = ANY(CAST(:ids AS uuid[])) FOR UPDATE",
            {"ids": ids},
        )
        box: dict[str, Any] = {}
        worker = threading.Thread(
            target=lambda: box.update(report=process_events(engine, stored.to_process))
        )
        worker.start()
        lock_waiter(other)  # the sweep waits for the other worker's events
        cursor.execute(
            "UPDATE accounts.hubspot_webhook_events SET processed = TRUE "
            "WHERE id = ANY(CAST(:ids AS uuid[]))",
            {"ids": ids},
        )
        other.commit()
        worker.join(30)
    finally:
        other.close()
    assert box["report"].processed == 0 and not box["report"].remaining
    assert customer(engine, cid)["company_name"] != "Applied Once"
    assert logs(engine, cid) == []
