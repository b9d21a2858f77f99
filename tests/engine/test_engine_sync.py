"""The batch sync core against a real database and the HubSpot emulator over HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from shared.db.connection import url_connector
from shared.db.repositories import customers, field_state, sync_config, sync_log
from shared.engine import Engine
from shared.engine.sync import BOTH_WAYS, FROM_HUBSPOT, TO_HUBSPOT, sync_customers
from shared.mapping import EntityType
from tests.helpers.customers import acme_customer
from tests.helpers.db_kill import kill_open_transactions
from tests.helpers.inbound import change, process
from tests.helpers.races import after_first_write, edit_during_first_call

pytestmark = pytest.mark.integration

READ = "POST /crm/v3/objects/companies/batch/read"
UPDATE = "POST /crm/v3/objects/companies/batch/update"


def test_in_sync_customer_writes_nothing(engine: Engine, emulator: Any) -> None:
    customer_id, _company_id = acme_customer(engine, emulator)
    before = dict(emulator.stats()["calls"])
    (result,) = sync_customers(engine, [customer_id], triggered_by="test")
    assert result.status == "in_sync"
    calls = emulator.stats()["calls"]
    assert calls.get(UPDATE, 0) == before.get(UPDATE, 0)


def test_drift_repaired_per_rule(engine: Engine, emulator: Any) -> None:
    # warp_status is WARP_WINS, warp_credit_limit HUBSPOT_WINS; no state yet: rules decide.
    customer_id, company_id = acme_customer(
        engine, emulator, warp_status="SUSPENDED", warp_credit_limit="7500"
    )
    (result,) = sync_customers(engine, [customer_id], allowed=BOTH_WAYS, triggered_by="test")
    assert result.status == "synced", result
    assert emulator.values("companies", company_id)["warp_status"] == "ACTIVE"
    with engine.database.transaction() as tx:
        row = customers.get(tx, customer_id)
        assert row is not None and row["credit_limit"] == Decimal("7500.00")
        states = {
            s["field_name"]: s for s in field_state.get_for_entity(tx, "customer", customer_id)
        }
        logs = sync_log.list_for_customer(tx, customer_id)
    assert states["status"]["hubspot_value"] == "ACTIVE"
    assert states["credit_limit"]["last_synced_direction"] == "HUBSPOT_TO_WARP"
    assert logs and logs[0]["direction"] == "BIDIRECTIONAL"
    # Syncing again finds nothing to do: the recorded state matches both sides.
    (again,) = sync_customers(engine, [customer_id], triggered_by="test")
    assert again.status == "in_sync"


def test_allowed_actions_limit_the_flow(engine: Engine, emulator: Any) -> None:
    customer_id, company_id = acme_customer(
        engine, emulator, warp_status="TRIAL", warp_credit_limit="9000"
    )
    (out,) = sync_customers(engine, [customer_id], allowed=TO_HUBSPOT, triggered_by="test")
    assert emulator.values("companies", company_id)["warp_status"] == "ACTIVE"
    skipped = {r.field: r.note for p in out.plans.values() for r in p.skipped}
    assert "credit_limit" in skipped and "inbound" in skipped["credit_limit"]
    with engine.database.transaction() as tx:
        assert customers.get(tx, customer_id)["credit_limit"] == Decimal("5000.00")  # type: ignore[index]
    sync_customers(engine, [customer_id], allowed=FROM_HUBSPOT, triggered_by="test")
    with engine.database.transaction() as tx:
        assert customers.get(tx, customer_id)["credit_limit"] == Decimal("9000.00")  # type: ignore[index]


def test_dry_run_writes_nowhere(engine: Engine, emulator: Any) -> None:
    customer_id, company_id = acme_customer(engine, emulator, warp_status="CLOSED")
    (out,) = sync_customers(engine, [customer_id], triggered_by="test", dry_run=True)
    assert [r.field for p in out.plans.values() for r in p.changed] == ["status"]
    assert emulator.values("companies", company_id)["warp_status"] == "CLOSED"
    with engine.database.transaction() as tx:
        assert field_state.get_for_entity(tx, "customer", customer_id) == []


def test_missing_company_and_unknown_customer(engine: Engine, emulator: Any) -> None:
    customer_id, company_id = acme_customer(engine, emulator)
    emulator.ui_delete("companies", company_id)
    unknown = str(uuid.uuid4())
    results = {
        r.customer_id: r for r in sync_customers(engine, [customer_id, unknown], triggered_by="t")
    }
    assert results[customer_id].status == "missing"
    assert results[unknown].status == "not_found"


def test_many_customers_use_one_read_and_one_write(engine: Engine, emulator: Any) -> None:
    ids = [acme_customer(engine, emulator, warp_status="TRIAL")[0] for _ in range(30)]
    before = dict(emulator.stats()["calls"])
    results = sync_customers(engine, ids, triggered_by="test")
    assert {r.status for r in results} == {"synced"}
    after = emulator.stats()["calls"]
    assert after[READ] - before.get(READ, 0) == 1
    assert after[UPDATE] - before.get(UPDATE, 0) == 1


def test_sensitive_values_sealed_in_the_log(
    engine: Engine, emulator: Any, database_url: str
) -> None:
    import base64
    import dataclasses
    import os

    from shared.sealing import is_sealed
    from tests.conftest import engine_settings

    settings = engine_settings(
        database_url,
        emulator.url,
        encryption_key=base64.b64encode(os.urandom(32)).decode(),
        encryption_key_id="k9",
        sensitive_columns="credit_limit,contact",
    )
    sealing = dataclasses.replace(engine, settings=settings)
    customer_id, _ = acme_customer(sealing, emulator, warp_credit_limit="6100", warp_status="TRIAL")
    sync_customers(sealing, [customer_id], triggered_by="test")
    with engine.database.transaction() as tx:
        (entry,) = sync_log.list_for_customer(tx, customer_id)
    sealer = sealing.sealer
    changes = entry["field_changes"]
    assert is_sealed(changes["credit_limit"]["new"]) and "6100" not in str(changes)
    # Money is stored as its decimal string, as the repositories store Decimals in JSON.
    assert sealer.open_changes(changes)["credit_limit"]["new"] == "6100"
    assert changes["status"]["new"] == "ACTIVE"  # not sensitive: stored as it is


def test_a_write_whose_record_was_lost_is_still_known_as_ours(
    engine: Engine, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # credit_limit is BIDIRECTIONAL with HUBSPOT_WINS: the rule that would write our
    # own older value back over a newer WARP edit if HubSpot's value looked like an edit.
    import shared.engine.sync as sync_module
    from shared.errors import DatabaseUnavailableError

    customer_id, company_id = acme_customer(engine, emulator)
    sync_customers(engine, [customer_id], triggered_by="test")  # records the state
    with engine.database.transaction() as tx:
        customers.update_columns(tx, customer_id, {"credit_limit": Decimal("5100")})

    def connection_lost(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseUnavailableError("connection lost while recording")

    with monkeypatch.context() as patch:
        patch.setattr(sync_module, "commit_plans", connection_lost)
        with pytest.raises(DatabaseUnavailableError):
            sync_customers(engine, [customer_id], triggered_by="test")
    assert emulator.values("companies", company_id)["warp_credit_limit"] == "5100"

    with engine.database.transaction() as tx:
        customers.update_columns(tx, customer_id, {"credit_limit": Decimal("5200")})
    (result,) = sync_customers(engine, [customer_id], triggered_by="test")
    assert result.status == "synced"
    assert emulator.values("companies", company_id)["warp_credit_limit"] == "5200"
    with engine.database.transaction() as tx:
        assert customers.get(tx, customer_id)["credit_limit"] == Decimal("5200")  # type: ignore[index]
        (state,) = [
            s
            for s in field_state.get_for_entity(tx, "customer", customer_id)
            if s["field_name"] == "credit_limit"
        ]
    assert state["hubspot_pending_value"] is None  # settled by the recorded sync


def test_a_hubspot_edit_our_unrecorded_write_overwrote_is_written_back(
    engine: Engine, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """credit_limit is BIDIRECTIONAL with HUBSPOT_WINS. A sync reads HubSpot, a person
    edits the field there, our write (WARP's older edit) lands over theirs, and the sync
    dies before recording it. The person's webhook brings their edit into WARP; the next
    sync must write it back to HubSpot, not take our unrecorded write for a HubSpot edit
    and put it over WARP (test_convergence found it: the webhook's record had erased our
    write-ahead value, and the write then passed for the newest HubSpot edit)."""
    import shared.engine.sync as sync_module
    from shared.errors import DatabaseUnavailableError

    customer_id, company_id = acme_customer(engine, emulator)
    sync_customers(engine, [customer_id], triggered_by="test")  # records the state
    with engine.database.transaction() as tx:
        customers.update_columns(tx, customer_id, {"credit_limit": Decimal("5100")})
    write_hubspot = sync_module._write_hubspot

    def person_edits_first(*args: Any, **kwargs: Any) -> Any:
        emulator.ui_change("companies", company_id, {"warp_credit_limit": "5300"})
        return write_hubspot(*args, **kwargs)

    def connection_lost(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseUnavailableError("connection lost while recording")

    with monkeypatch.context() as patch:
        patch.setattr(sync_module, "_write_hubspot", person_edits_first)
        patch.setattr(sync_module, "commit_plans", connection_lost)
        with pytest.raises(DatabaseUnavailableError):
            sync_customers(engine, [customer_id], triggered_by="test")
    assert emulator.values("companies", company_id)["warp_credit_limit"] == "5100"  # ours
    (edit, *_) = [
        h
        for h in emulator.snapshot("companies", company_id)["propertiesWithHistory"][
            "warp_credit_limit"
        ]
        if h["value"] == "5300"
    ]
    at = int(datetime.fromisoformat(edit["timestamp"]).timestamp() * 1000)
    process(engine, change(company_id, "warp_credit_limit", "5300", at=at))
    with engine.database.transaction() as tx:
        assert customers.get(tx, customer_id)["credit_limit"] == Decimal("5300")  # type: ignore[index]

    sync_customers(engine, [customer_id], triggered_by="test")
    assert emulator.values("companies", company_id)["warp_credit_limit"] == "5300"
    with engine.database.transaction() as tx:
        assert customers.get(tx, customer_id)["credit_limit"] == Decimal("5300")  # type: ignore[index]


def test_warp_edit_committed_during_a_sync_is_not_overwritten(
    engine: Engine, emulator: Any
) -> None:
    # warp_status is BIDIRECTIONAL WARP_WINS. HubSpot changes it, then WARP's application
    # changes it too while the sync is reading HubSpot: both changed, so WARP's value
    # wins on both sides. Written from the row as first read, HubSpot's value would
    # silently replace the application's edit in WARP. Another customer of the same
    # chunk, untouched by the application, is recorded on the first pass.
    raced, raced_company = acme_customer(engine, emulator)
    other, other_company = acme_customer(engine, emulator)
    sync_customers(engine, [raced, other], triggered_by="test")  # records the baseline
    emulator.ui_change("companies", raced_company, {"warp_status": "SUSPENDED"})
    emulator.ui_change("companies", other_company, {"warp_credit_limit": "7000"})

    def application_edit() -> None:
        with engine.database.transaction() as tx:
            customers.update_columns(tx, raced, {"status": "CLOSED"})

    before = dict(emulator.stats()["calls"])
    with edit_during_first_call(engine, application_edit) as racing:
        results = sync_customers(racing, [raced, other], triggered_by="test")
    assert [r.error for r in results] == [None, None]
    with engine.database.transaction() as tx:
        rows = {cid: customers.get(tx, cid) for cid in (raced, other)}
    assert rows[raced]["status"] == "CLOSED"  # type: ignore[index]
    assert emulator.values("companies", raced_company)["warp_status"] == "CLOSED"
    assert rows[other]["credit_limit"] == Decimal("7000.00")  # type: ignore[index]
    calls = emulator.stats()["calls"]
    # One write: the raced customer's WARP value, planned again; the other needed none.
    assert calls.get(UPDATE, 0) - before.get(UPDATE, 0) == 1


def test_company_and_contact_fields_sharing_a_jsonb_column_both_land(
    engine: Engine, emulator: Any
) -> None:
    # A customer's own configuration maps the company's phone into the contact column,
    # where the contact's phone lives too. Both change in HubSpot; the company's plan
    # and the contact's plan each write that column, and neither may drop the other's key.
    customer_id, company_id = acme_customer(engine, emulator)
    (contact_id,) = emulator.seed(
        "contacts", [{"firstname": "Jane", "lastname": "Doe", "email": "jane@acme.example"}]
    )
    with engine.database.transaction() as tx:
        customers.set_link_id(tx, customer_id, EntityType.CONTACT, contact_id)
        sync_config.save(
            tx,
            config_name=f"shared-column-{customer_id[:8]}",
            customer_id=customer_id,
            field_mappings={
                "company_phone": {
                    "hubspot_property": "phone",
                    "warp_field": "contact.company_phone",
                    "sync_direction": "BIDIRECTIONAL",
                    "conflict_resolution": "HUBSPOT_WINS",
                }
            },
        )
    engine.reload_mappings()
    sync_customers(engine, [customer_id], triggered_by="test")  # records the baseline
    emulator.ui_change("companies", company_id, {"phone": "+1 555 0199"})
    emulator.ui_change("contacts", contact_id, {"phone": "+1 555 0142"})
    (result,) = sync_customers(engine, [customer_id], triggered_by="test")
    assert result.error is None, result.error
    with engine.database.transaction() as tx:
        row = customers.get(tx, customer_id)
    assert row is not None
    assert (row["contact"]["company_phone"], row["contact"]["phone"]) == (
        "+1 555 0199",
        "+1 555 0142",
    )


def test_a_write_whose_connection_died_after_hubspot_accepted_it_is_logged_once(
    engine: Engine, emulator: Any, database_url: str
) -> None:
    """Issue 21 (5): the retry finds both sides equal; the write still gets its log row."""
    from shared.errors import DatabaseUnavailableError

    customer_id, company_id = acme_customer(engine, emulator)
    sync_customers(engine, [customer_id], triggered_by="test")  # records the state
    with engine.database.transaction() as tx:
        customers.update_columns(tx, customer_id, {"credit_limit": Decimal("5100")})
    killer = url_connector(database_url)()
    try:
        # The flow holds its transaction across the HubSpot call: killed right after it.
        with (
            after_first_write(engine, lambda: kill_open_transactions(killer)) as dying,
            pytest.raises(DatabaseUnavailableError),
        ):
            sync_customers(dying, [customer_id], triggered_by="test")
    finally:
        killer.close()
    assert emulator.values("companies", company_id)["warp_credit_limit"] == "5100"

    def credit_limit_writes() -> list[dict[str, Any]]:
        with engine.database.transaction() as tx:
            rows = sync_log.list_for_customer(tx, customer_id)
        return [r for r in rows if "credit_limit" in (r["fields_synced"] or [])]

    before = len(credit_limit_writes())
    sync_customers(engine, [customer_id], triggered_by="test")  # both sides hold 5100
    sync_customers(engine, [customer_id], triggered_by="test")  # settled: nothing more
    (logged,) = credit_limit_writes()[before:]
    assert logged["direction"] == "WARP_TO_HUBSPOT" and logged["status"] == "SUCCESS"
    assert "_recorded_late" in logged["field_changes"]


def test_in_sync_customers_are_read_100_a_call_without_history(
    engine: Engine, emulator: Any
) -> None:
    # The company name is LATEST_WINS; HubSpot answers history for 50 records at most.
    ids = [acme_customer(engine, emulator)[0] for _ in range(120)]
    before = emulator.stats()
    results = sync_customers(engine, ids, triggered_by="test")
    assert {r.status for r in results} == {"in_sync"}
    after = emulator.stats()
    assert after["calls"][READ] - before["calls"].get(READ, 0) == 2  # 100 + 20
    assert after["historyReads"] == before["historyReads"]


def test_latest_wins_decides_on_the_property_time_read_50_a_call(
    engine: Engine, emulator: Any
) -> None:
    linked = [acme_customer(engine, emulator) for _ in range(60)]
    ids = [cid for cid, _ in linked]
    sync_customers(engine, ids, triggered_by="test")  # states recorded: both sides agree
    for _, company in linked:
        emulator.ui_change("companies", company, {"name": "HubSpot Name"})
    # WARP renames every customer after those HubSpot edits ...
    warp_edit = datetime.now(UTC)
    with engine.database.transaction() as tx:
        for cid, company in linked:
            customers.update_columns(tx, cid, {"company_name": "WARP Name"})
            field_state.record_warp_changes(
                tx, "customer", cid, company, {"company_name"}, warp_edit
            )
    # ... and HubSpot then changes an unmapped property, which moves hs_lastmodifieddate
    # past WARP's edit: only the name's own time tells that WARP's name is the later one.
    for _, company in linked:
        emulator.ui_change("companies", company, {"description": "enriched"})
    before = emulator.stats()
    results = sync_customers(engine, ids, triggered_by="test")
    assert {r.status for r in results} == {"synced"}
    assert {emulator.values("companies", c)["name"] for _, c in linked} == {"WARP Name"}
    # one read of the 60 without history, then the 60 whose rule compared times, 50 a call
    after = emulator.stats()
    assert after["calls"][READ] - before["calls"].get(READ, 0) == 1 + 2
    assert after["historyReads"][READ] - before["historyReads"].get(READ, 0) == 2
