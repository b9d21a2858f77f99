"""Change capture (issue 16): the trigger on accounts.customers and the sweep that drains it.

Over a real PostgreSQL and the HubSpot emulator. WARP's edits are plain SQL on a
connection of their own, as ``psql`` or WARP's application would make them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pg8000.dbapi
import pytest

from localdev.drain import wait_drained
from shared.capture import install
from shared.capture.watch import CHANGES, ERRORS, Watched, install_sql, watched_fields
from shared.db.repositories import customers, field_state, outbound_dirty, sync_config
from shared.db.repositories import sync_queue as queue_repo
from shared.engine import Engine
from shared.engine.sync import FROM_HUBSPOT, sync_customers
from shared.mapping import EntityType
from shared.messages import ChangeMessage
from shared.messages.envelope import encode_push_envelope
from shared.outbound import sweep as sweep_module
from shared.outbound.flush import flush
from shared.outbound.sweep import SweepReport
from shared.outbound.sweep import sweep as one_sweep
from tests.helpers.customers import acme_customer
from tests.helpers.functions import serve_function
from tests.helpers.inbound import change, process

COMPANY_UPDATES = "POST /crm/v3/objects/companies/batch/update"


# --- what is watched (pure) -------------------------------------------------------------


def test_watched_fields_are_the_outbound_columns_and_keys_once(engine: Engine) -> None:
    sets = [engine.mapping_for(None, et) for et in EntityType]
    watched = watched_fields(sets)
    names = [w.name for w in watched]
    assert "company_name" in names
    assert "contact.email" in names and "contact.phone" in names
    assert "contact" not in names  # the keys, not the whole document
    assert len(names) == len(set(names))
    inbound_only = {
        f.warp_field for m in sets for f in m.fields.values() if not f.direction.allows_outbound
    } - {f.warp_field for m in sets for f in m.outbound()}
    assert not inbound_only & set(names)


def test_a_key_inside_a_watched_key_is_not_watched_twice() -> None:
    class _Field:
        def __init__(self, column: str, *path: str) -> None:
            self.warp_column, self.warp_path = column, path

    class _Set:
        def outbound(self) -> list[_Field]:
            return [_Field("address"), _Field("address", "city"), _Field("status")]

    assert watched_fields([_Set()]) == [Watched("address"), Watched("status")]  # type: ignore[list-item]


def test_generated_sql_quotes_keys_it_cannot_trust() -> None:
    sql = "\n".join(install_sql([Watched("custom_fields", ("it's", "a\\b"))]))
    assert "E'it''s'" in sql and "E'a\\\\b'" in sql
    with pytest.raises(ValueError, match="unknown column"):
        install_sql([Watched("no_such_column; DROP TABLE x")])


# --- the trigger and the sweep over PostgreSQL ------------------------------------------


@pytest.fixture(scope="module")
def capture(engine: Engine) -> Iterator[None]:
    install.enable(engine.database)
    yield
    install.disable(engine.database)


@pytest.fixture(scope="module")
def warp(database_url: str) -> Iterator[pg8000.dbapi.Connection]:
    """WARP's own connection: autocommit, like psql; nothing of the sync's on it."""
    from shared.db.connection import url_connector

    connection = url_connector(database_url)()
    connection.autocommit = True
    yield connection
    connection.close()


def _sql(warp: pg8000.dbapi.Connection, sql: str, *params: Any) -> list[Any]:
    """Run ``sql`` with ``%s`` placeholders (the project sets pg8000's paramstyle to named)."""
    parts = sql.split("%s")
    named = "".join(f"{part}:p{i}" for i, part in enumerate(parts[:-1])) + parts[-1]
    cursor = warp.cursor()
    cursor.execute(named, {f"p{i}": p for i, p in enumerate(params)})
    return list(cursor.fetchall()) if cursor.description else []


def _captured(engine: Engine, customer_id: str) -> list[dict[str, Any]]:
    with engine.database.transaction() as tx:
        return tx.fetch(
            f"SELECT operation, changed_fields, changed_at FROM {CHANGES} "
            "WHERE customer_id = CAST(:id AS uuid) ORDER BY id",
            {"id": customer_id},
        )


def sweep(engine: Engine) -> SweepReport:
    """One sweep, and the flush it scheduled for what it took (as a message would)."""
    report = one_sweep(engine)
    assert wait_drained(engine, timeout=30)
    return report


def _writes(emulator: Any) -> int:
    return int(emulator.stats()["calls"].get(COMPANY_UPDATES, 0))


def _row(engine: Engine, customer_id: str) -> dict[str, Any]:
    with engine.database.transaction() as tx:
        row = customers.get(tx, customer_id)
    assert row is not None
    return dict(row)


def _linked(engine: Engine, emulator: Any) -> tuple[str, str]:
    """A linked customer in step with its company, its field states recorded."""
    cid, company = acme_customer(engine, emulator)
    sync_customers(engine, [cid], triggered_by="test")
    sweep(engine)  # the customer's INSERT, captured: nothing left to push
    return cid, company


@pytest.mark.usefixtures("capture")
def test_a_plain_sql_update_reaches_hubspot_after_one_sweep(
    engine: Engine, emulator: Any, warp: Any
) -> None:
    cid, company = _linked(engine, emulator)
    _sql(warp, "UPDATE accounts.customers SET company_name = 'Renamed by psql' WHERE id = %s", cid)
    (change,) = _captured(engine, cid)
    assert change["operation"] == "UPDATE" and change["changed_fields"] == ["company_name"]
    report = sweep(engine)
    assert report.captured >= 1
    assert emulator.values("companies", company)["name"] == "Renamed by psql"
    assert _captured(engine, cid) == []


@pytest.mark.usefixtures("capture")
def test_rollbacks_unmapped_columns_and_the_syncs_own_writes_record_nothing(
    engine: Engine, emulator: Any, warp: Any
) -> None:
    cid, company = _linked(engine, emulator)
    warp.autocommit = False
    try:
        _sql(warp, "UPDATE accounts.customers SET company_name = 'Never' WHERE id = %s", cid)
        warp.rollback()
    finally:
        warp.autocommit = True
    _sql(warp, "UPDATE accounts.customers SET billing_cycle = 'QUARTERLY' WHERE id = %s", cid)
    _sql(warp, "UPDATE accounts.customers SET company_name = company_name WHERE id = %s", cid)
    # The sync's own write to WARP: a HubSpot edit carried in by the inbound direction.
    emulator.ui_change("companies", company, {"name": "From HubSpot"})
    sync_customers(engine, [cid], allowed=FROM_HUBSPOT, triggered_by="test")
    assert _row(engine, cid)["company_name"] == "From HubSpot"
    assert _captured(engine, cid) == []
    before = _writes(emulator)
    sweep(engine)
    assert _writes(emulator) == before


@pytest.mark.usefixtures("capture")
def test_a_jsonb_key_change_pushes_only_that_field(
    engine: Engine, emulator: Any, warp: Any
) -> None:
    cid, _ = _linked(engine, emulator)
    _sql(
        warp,
        "UPDATE accounts.customers SET contact = jsonb_set(contact, '{phone}', '\"+1 555 0199\"') "
        "WHERE id = %s",
        cid,
    )
    (change,) = _captured(engine, cid)
    assert change["changed_fields"] == ["contact.phone"]
    assert sweep_module._take_captured(engine) == 1  # into the dirty set, not pushed yet
    with engine.database.transaction() as tx:
        dirty = tx.fetch_one(
            f"SELECT changed_fields FROM {outbound_dirty.TABLE} "
            "WHERE customer_id = CAST(:id AS uuid)",
            {"id": cid},
        )
    phone_fields = {
        f.name
        for et in EntityType
        for f in engine.mapping_for(cid, et).outbound()
        if f.warp_field == "contact.phone"
    }
    assert dirty is not None and set(dirty["changed_fields"]) == phone_fields
    sweep_module.schedule_flush(engine)  # what the sweep does after taking its changes
    assert wait_drained(engine, timeout=30)


@pytest.mark.usefixtures("capture")
def test_an_insert_by_sql_links_or_creates_the_company(
    engine: Engine, emulator: Any, warp: Any
) -> None:
    ban = f"B-{uuid.uuid4().hex[:8]}"
    (row,) = _sql(
        warp,
        "INSERT INTO accounts.customers (ban, company_name, customer_type, status, contact) "
        "VALUES (%s, %s, 'POSTPAID', 'ACTIVE', %s) RETURNING id",
        ban,
        f"Inserted {ban}",
        f'{{"name": "Ann", "email": "ann@{ban.lower()}.example"}}',
    )
    cid = str(row[0])
    assert [c["operation"] for c in _captured(engine, cid)] == ["INSERT"]
    sweep(engine)
    company = _row(engine, cid)["external_ids"]["hubspot_company_id"]
    assert emulator.values("companies", company)["name"] == f"Inserted {ban}"


@pytest.mark.usefixtures("capture")
def test_a_delete_by_sql_closes_the_company(engine: Engine, emulator: Any, warp: Any) -> None:
    cid, company = _linked(engine, emulator)
    _sql(warp, "DELETE FROM accounts.customers WHERE id = %s", cid)
    assert [c["operation"] for c in _captured(engine, cid)] == ["DELETE"]
    assert sweep(engine).deleted == 1
    assert (
        emulator.values("companies", company)["warp_status"]
        == engine.settings.deleted_customer_status
    )
    assert _captured(engine, cid) == []


@pytest.mark.usefixtures("capture")
def test_warp_queue_rows_are_taken_and_completed(engine: Engine, emulator: Any, warp: Any) -> None:
    cid, company = _linked(engine, emulator)
    # An edit the trigger does not see (made as the sync's own), then WARP's
    # QueueCustomerSync row for it, exactly as WARP's application inserts it.
    warp.autocommit = False
    _sql(warp, "SELECT set_config('hubspot_sync.writer', 'sync', true)")
    _sql(warp, "UPDATE accounts.customers SET status = 'SUSPENDED' WHERE id = %s", cid)
    (queued,) = _sql(
        warp,
        "INSERT INTO accounts.hubspot_sync_queue (entity_type, entity_id, operation, direction, "
        "payload, status, max_retries) VALUES ('customer', %s, 'UPDATE', 'WARP_TO_HUBSPOT', "
        "'{}', 'QUEUED', 3) RETURNING id",
        cid,
    )
    warp.commit()
    warp.autocommit = True
    assert _captured(engine, cid) == []
    assert sweep(engine).warp_queue == 1
    assert emulator.values("companies", company)["warp_status"] == "SUSPENDED"
    with engine.database.transaction() as tx:
        row = queue_repo.get(tx, str(queued[0]))
    assert row is not None and row["status"] == "COMPLETED" and row["processed_at"] is not None


@pytest.mark.usefixtures("capture")
def test_a_message_and_a_capture_of_one_change_write_hubspot_once(
    engine: Engine, emulator: Any, warp: Any
) -> None:
    cid, company = _linked(engine, emulator)
    (at,) = _sql(
        warp,
        "UPDATE accounts.customers SET company_name = 'Both ways', updated_at = NOW() "
        "WHERE id = %s RETURNING updated_at",
        cid,
    )[0]
    change = ChangeMessage.model_validate(
        {
            "entity_type": "customer",
            "entity_id": cid,
            "operation": "UPDATE",
            "changed_fields": ["company_name"],
            "occurred_at": at.isoformat(),
            "trigger_source": "admin_ui",
        }
    )
    before = _writes(emulator)
    with serve_function("outbound_sync") as url:
        answer = httpx.post(
            url,
            content=encode_push_envelope(change, uuid.uuid4().hex),
            headers={"Content-Type": "application/json"},
        )
    assert answer.status_code == 200 and answer.json()["outcome"] == "accepted"
    sweep(engine)
    engine.dispatcher.run_due_now()  # type: ignore[attr-defined]
    sweep(engine)
    assert emulator.values("companies", company)["name"] == "Both ways"
    assert _writes(emulator) - before == 1


@pytest.mark.usefixtures("capture")
def test_latest_wins_decides_by_the_captured_times_not_updated_at(
    engine: Engine, emulator: Any, warp: Any
) -> None:
    """company_name is LATEST_WINS. WARP renames it (captured at t1), HubSpot renames it
    later (t2), then WARP edits another column, moving the row's updated_at past t2.
    HubSpot's later name must win: by updated_at WARP's older name would."""
    cid, company = _linked(engine, emulator)
    _sql(warp, "UPDATE accounts.customers SET company_name = 'WARP first' WHERE id = %s", cid)
    # HubSpot keeps milliseconds: the WARP edit is put a second earlier, so the order
    # of the two edits never hangs on the clock's resolution.
    _sql(warp, f"UPDATE {CHANGES} SET changed_at = changed_at - interval '1 second'")
    emulator.ui_change("companies", company, {"name": "HubSpot later"})
    _sql(
        warp,
        "UPDATE accounts.customers SET billing_cycle = 'ANNUAL', updated_at = NOW() WHERE id = %s",
        cid,
    )
    assert _row(engine, cid)["updated_at"] > _captured(engine, cid)[0]["changed_at"]
    sweep(engine)
    with engine.database.transaction() as tx:
        state = field_state.get(tx, "customer", cid, "company_name")
    assert emulator.values("companies", company)["name"] == "HubSpot later"
    assert _row(engine, cid)["company_name"] == "HubSpot later"
    assert state is not None and state["warp_changed_at"] < datetime.now(UTC)


@pytest.mark.usefixtures("capture")
@pytest.mark.parametrize("first", ["webhook", "flush"])
def test_a_newer_warp_edit_not_swept_yet_outranks_an_older_hubspot_edit(
    engine: Engine, emulator: Any, warp: Any, first: str
) -> None:
    """company_name is LATEST_WINS. WARP renames it (swept: that time is on record, its
    flush not run yet), HubSpot renames it later, WARP renames it again (captured, not
    swept). Neither HubSpot's webhook nor the first rename's flush may put HubSpot's
    older name over WARP's newer one: WARP's time of the value it holds is its newest
    captured change, not the one on record (test_convergence[capture-on] found it)."""
    cid, company = _linked(engine, emulator)
    # Linked a minute ago; HubSpot keeps milliseconds, so the first rename is put a
    # second earlier: the three edits' order never hangs on the clock's resolution.
    _sql(
        warp,
        "UPDATE accounts.hubspot_field_state SET last_synced_at = last_synced_at - "
        "interval '1 minute' WHERE entity_id = %s",
        cid,
    )
    _sql(warp, "UPDATE accounts.customers SET company_name = 'WARP first' WHERE id = %s", cid)
    _sql(warp, f"UPDATE {CHANGES} SET changed_at = changed_at - interval '1 second'")
    assert sweep_module._take_captured(engine) == 1  # on record, and dirty
    emulator.ui_change("companies", company, {"name": "HubSpot between"})
    (newest,) = emulator.snapshot("companies", company)["propertiesWithHistory"]["name"][:1]
    hubspot_at = int(datetime.fromisoformat(newest["timestamp"]).timestamp() * 1000)
    _sql(warp, "UPDATE accounts.customers SET company_name = 'WARP last' WHERE id = %s", cid)
    if first == "webhook":
        process(engine, change(company, "name", "HubSpot between", at=hubspot_at))
    else:
        flush(engine)
    assert _row(engine, cid)["company_name"] == "WARP last"
    sweep(engine)
    assert emulator.values("companies", company)["name"] == "WARP last"
    assert _row(engine, cid)["company_name"] == "WARP last"


# --- a broken capture never breaks WARP --------------------------------------------------


@pytest.mark.usefixtures("capture")
def test_a_broken_capture_leaves_warps_write_committed_and_the_problem_visible(
    engine: Engine, emulator: Any, warp: Any
) -> None:
    cid, company = _linked(engine, emulator)
    # Any failure of ours: here every insert into the capture table is refused.
    _sql(warp, f"ALTER TABLE {CHANGES} ADD CONSTRAINT broken CHECK (false) NOT VALID")
    try:
        _sql(warp, "UPDATE accounts.customers SET company_name = 'Still saved' WHERE id = %s", cid)
    finally:
        _sql(warp, f"ALTER TABLE {CHANGES} DROP CONSTRAINT broken")
    assert _row(engine, cid)["company_name"] == "Still saved"
    report = install.status(engine.database)
    assert report.errors >= 1 and "broken" in (report.last_error or "")
    assert any("could not be captured" in p for p in report.problems)
    swept = sweep(engine)
    assert swept.capture_errors >= 1
    assert emulator.values("companies", company)["name"] == "Still saved"  # pushed whole
    assert install.status(engine.database).errors == 0


@pytest.mark.usefixtures("capture")
def test_capture_tables_gone_still_commit_warps_write_with_a_warning(
    engine: Engine, emulator: Any, warp: Any
) -> None:
    cid, _ = _linked(engine, emulator)
    for table in (CHANGES, ERRORS):
        _sql(warp, f"ALTER TABLE {table} RENAME TO {table.split('.')[1]}_away")
    try:
        warp.notices.clear()
        _sql(warp, "UPDATE accounts.customers SET company_name = 'Kept' WHERE id = %s", cid)
        report = install.status(engine.database)
    finally:
        _sql(
            warp,
            "ALTER TABLE accounts.hubspot_captured_changes_away RENAME TO hubspot_captured_changes",
        )
        _sql(
            warp,
            "ALTER TABLE accounts.hubspot_capture_errors_away RENAME TO hubspot_capture_errors",
        )
    assert _row(engine, cid)["company_name"] == "Kept"
    assert any("hubspot-sync capture" in str(n.get(b"M", n)) for n in warp.notices)
    assert any("missing" in p for p in report.problems)


# --- enable, disable, status ---------------------------------------------------------------


def test_enable_refreshes_what_is_watched_when_the_mapping_changes(
    engine: Engine, warp: Any
) -> None:
    install.enable(engine.database)
    try:
        assert not install.status(engine.database).stale
        with engine.database.transaction() as tx:
            sync_config.save(
                tx,
                config_name="capture_test_extra",
                field_mappings={
                    "currency": {
                        "hubspot_property": "warp_currency",
                        "warp_field": "currency",
                        "sync_direction": "WARP_TO_HUBSPOT",
                        "conflict_resolution": "WARP_WINS",
                    }
                },
            )
        engine.reload_mappings()
        assert install.status(engine.database).stale
        assert "currency" in [w.name for w in install.enable(engine.database)]
        assert not install.status(engine.database).stale
    finally:
        with engine.database.transaction() as tx:
            tx.execute(
                "DELETE FROM accounts.hubspot_sync_config WHERE config_name = 'capture_test_extra'"
            )
        engine.reload_mappings()
        install.enable(engine.database)
    install.disable(engine.database)
    report = install.status(engine.database)
    assert not report.enabled and report.triggers == []
    cid = str(_sql(warp, "SELECT id FROM accounts.customers LIMIT 1")[0][0])
    _sql(warp, "UPDATE accounts.customers SET company_name = 'Off' WHERE id = %s", cid)
    assert _captured(engine, cid) == []
    install.enable(engine.database)


# --- the scheduled sweep ------------------------------------------------------------------


def test_the_scheduler_calls_retry_worker_with_a_sweep_it_runs(
    engine: Engine, emulator: Any, warp: Any
) -> None:
    """terraform/capture.tf's job body, POSTed to retry_worker over HTTP, runs one sweep."""
    import io
    import json
    from pathlib import Path

    import hcl2
    from hcl2.utils import SerializationOptions

    tf = Path(__file__).resolve().parents[2] / "terraform" / "capture.tf"
    options = SerializationOptions(
        with_comments=False, explicit_blocks=False, strip_string_quotes=True
    )
    document = hcl2.load(io.StringIO(tf.read_text()), serialization_options=options)
    body = document["locals"][0]["outbound_sweep_body"]
    job = document["resource"][0]["google_cloud_scheduler_job"]["outbound_sweep"]
    assert job["schedule"] == "* * * * *"
    target = job["http_target"][0]
    assert "outbound_sweep_body" in target["body"]
    assert target["oidc_token"][0]["audience"] == "${local.function_urls.retry_worker}"
    install.enable(engine.database)
    cid, company = _linked(engine, emulator)
    _sql(
        warp, "UPDATE accounts.customers SET company_name = 'Swept on schedule' WHERE id = %s", cid
    )
    with serve_function("retry_worker") as url:
        answer = httpx.post(
            url, content=json.dumps(body), headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 200 and answer.json()["outcome"] == "DONE", answer.text
    assert _captured(engine, cid) == []
    assert wait_drained(engine, timeout=30)
    assert emulator.values("companies", company)["name"] == "Swept on schedule"
