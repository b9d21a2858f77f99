"""The reconciler against a real database and the HubSpot emulator over HTTP.

Drift in each direction and rule is repaired, MANUAL fields are left alone and
reported, a dry run writes nowhere, a run resumed after a crash ends as an
uninterrupted one does, and a retried Scheduler call does not start a second run.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from shared.db import Database
from shared.db.connection import url_connector
from shared.db.migrate import upgrade
from shared.db.repositories import (
    customers,
    reconciliation_runs,
    sync_config,
)
from shared.engine import Engine
from shared.mapping import EntityType
from shared.reconcile import RunInProgress, RunRequest, recover_stale, start_run
from shared.reconcile.incremental import changed_in_hubspot, since
from shared.reconcile.report import RECORD_COLUMNS, DriftReport
from tests.conftest import engine_settings
from tests.helpers.functions import serve_function

pytestmark = pytest.mark.integration


def linked_customer(
    engine: Engine,
    emulator: Any,
    *,
    ban: str | None = None,
    name: str = "Acme Telecom",
    company: dict[str, str] | None = None,
    contact: dict[str, str] | None = None,
) -> dict[str, str]:
    """A WARP customer linked to a seeded company and contact equal to it, then ``company``
    and ``contact`` property overrides applied in HubSpot (drift on HubSpot's side)."""
    ban = ban or f"B-{uuid.uuid4().hex[:10]}"
    domain = f"{ban.lower()}.example"
    company_values = {
        "name": name,
        "domain": domain,
        "warp_ban": ban,
        "warp_status": "ACTIVE",
        "warp_credit_limit": "5000",
        **(company or {}),
    }
    contact_values = {
        "firstname": "Jane",
        "lastname": "Doe",
        "email": f"jane@{domain}",
        "phone": "+1 555 0100",
        **(contact or {}),
    }
    (company_id,) = emulator.seed("companies", [company_values])
    (contact_id,) = emulator.seed("contacts", [contact_values])
    with engine.database.transaction() as tx:
        row = customers.insert(
            tx,
            {
                "ban": ban,
                "company_name": name,
                "customer_type": "POSTPAID",
                "status": "ACTIVE",
                "credit_limit": Decimal("5000.00"),
                "contact": {"name": "Jane Doe", "email": f"jane@{domain}", "phone": "+1 555 0100"},
                "external_ids": {
                    "hubspot_company_id": company_id,
                    "hubspot_contact_id": contact_id,
                },
            },
        )
    return {"id": str(row["id"]), "ban": ban, "company_id": company_id, "contact_id": contact_id}


def both_sides(engine: Engine, emulator: Any, customer: dict[str, str]) -> dict[str, Any]:
    """The mapped values of a customer on both sides, for before/after comparisons."""
    with engine.database.transaction() as tx:
        row = customers.get(tx, customer["id"])
    assert row is not None
    company = emulator.values("companies", customer["company_id"])
    contact = emulator.values("contacts", customer["contact_id"])
    return {
        "warp": {
            "company_name": row["company_name"],
            "status": row["status"],
            "credit_limit": str(row["credit_limit"]),
            "contact": dict(row["contact"]),
        },
        "company": {
            k: company.get(k) for k in ("name", "warp_status", "warp_credit_limit", "domain")
        },
        "contact": {k: contact.get(k) for k in ("firstname", "lastname", "email", "phone")},
    }


def _full(engine: Engine, **kwargs: Any) -> Any:
    return start_run(engine, RunRequest(force=True, triggered_by="test", **kwargs))


def _counts(engine: Engine) -> dict[str, int]:
    with engine.database.transaction() as tx:
        return {
            "logs": int(tx.fetch_value("SELECT count(*) FROM accounts.hubspot_sync_log")),
            "states": int(tx.fetch_value("SELECT count(*) FROM accounts.hubspot_field_state")),
        }


# --- drift repaired per rule and direction ----------------------------------------------


def test_drift_in_each_direction_and_rule_is_repaired(engine: Engine, emulator: Any) -> None:
    # No field state yet: each rule decides. status WARP_WINS, credit_limit HUBSPOT_WINS,
    # company_name LATEST_WINS (HubSpot's edit is newer than WARP's row).
    warp_wins = linked_customer(engine, emulator, company={"warp_status": "SUSPENDED"})
    hub_wins = linked_customer(engine, emulator, company={"warp_credit_limit": "7500"})
    latest = linked_customer(engine, emulator)
    emulator.ui_change("companies", latest["company_id"], {"name": "Acme Renamed"})
    in_step = linked_customer(engine, emulator)

    result = _full(engine)

    assert result.status == "COMPLETED"
    assert both_sides(engine, emulator, warp_wins)["company"]["warp_status"] == "ACTIVE"
    assert both_sides(engine, emulator, hub_wins)["warp"]["credit_limit"] == "7500.00"
    assert both_sides(engine, emulator, latest)["warp"]["company_name"] == "Acme Renamed"
    fields = result.report["fields"]
    assert fields["status"]["to_hubspot"] >= 1
    assert fields["credit_limit"]["to_warp"] >= 1
    assert fields["company_name"]["to_warp"] >= 1
    assert result.run["records_updated"] >= 3
    assert result.run["total_records"] >= 4

    # Now with states recorded: a change on either side since travels the other way.
    with engine.database.transaction() as tx:
        customers.update_columns(tx, in_step["id"], {"status": "TRIAL"})
    emulator.ui_change("contacts", hub_wins["contact_id"], {"phone": "+1 555 0199"})
    again = _full(engine)
    assert both_sides(engine, emulator, in_step)["company"]["warp_status"] == "TRIAL"
    assert both_sides(engine, emulator, hub_wins)["warp"]["contact"]["phone"] == "+1 555 0199"
    assert again.report["fields"]["contact_phone"]["to_warp"] == 1
    assert again.report["fields"]["status"]["to_hubspot"] == 1

    # A third run finds everything in step and writes nothing.
    calls = dict(emulator.stats()["calls"])
    third = _full(engine)
    assert third.report["records"]["updated"] == 0
    assert third.run["records_in_sync"] == third.report["records"]["checked"]
    after = emulator.stats()["calls"]
    assert not any("batch/update" in k and after[k] != calls.get(k, 0) for k in after)


def _writes(emulator: Any) -> int:
    """Our HubSpot write calls so far (batch or single, companies and contacts)."""
    calls = emulator.stats()["calls"]
    return sum(int(n) for k, n in calls.items() if "batch/update" in k or k.startswith("PATCH"))


def test_one_reconcile_carries_a_contact_edit_on_to_the_company_derived_from_it(
    engine: Engine, emulator: Any
) -> None:
    # The company's domain derives from the contact's email (email_to_domain, WARP to
    # HubSpot). A HubSpot edit of the email (its webhook lost) reaches WARP through the
    # contact's plan; the same reconcile must carry the new domain on to the company,
    # and a reconcile right after must write nothing (issue 22).
    made = linked_customer(engine, emulator)
    with serve_function("reconciler") as url:

        def reconcile() -> dict[str, Any]:
            response = httpx.post(url, json={"force": True}, timeout=120)
            assert response.status_code == 200, response.text
            run: dict[str, Any] = response.json()["run"]
            assert run["status"] == "COMPLETED", run
            return run

        reconcile()  # the field states recorded, everything in step
        emulator.ui_change("contacts", made["contact_id"], {"email": "pat@newco.example"})
        reconcile()
        sides = both_sides(engine, emulator, made)
        assert sides["warp"]["contact"]["email"] == "pat@newco.example"
        assert sides["company"]["domain"] == "newco.example"
        before = _writes(emulator)
        again = reconcile()
    assert _writes(emulator) == before
    assert again["records_updated"] == 0


def test_manual_field_is_left_alone_and_reported(engine: Engine, emulator: Any) -> None:
    customer = linked_customer(engine, emulator, company={"warp_credit_limit": "9999"})
    with engine.database.transaction() as tx:
        sync_config.save(
            tx,
            config_name="manual_credit",
            customer_id=customer["id"],
            field_mappings={
                "credit_limit": {
                    "hubspot_property": "warp_credit_limit",
                    "warp_field": "credit_limit",
                    "sync_direction": "BIDIRECTIONAL",
                    "conflict_resolution": "MANUAL",
                }
            },
        )
    engine.reload_mappings()
    before = both_sides(engine, emulator, customer)

    result = start_run(engine, RunRequest(run_type="CUSTOMER_SPECIFIC", customer_id=customer["id"]))

    assert both_sides(engine, emulator, customer) == before
    assert result.report["fields"]["credit_limit"]["conflict"] == 1
    assert result.run["conflicts_detected"] == 1
    conflicts = result.report["open_conflicts"]
    assert conflicts["count"] == 1
    assert conflicts["samples"][0]["field_name"] == "credit_limit"
    assert conflicts["samples"][0]["rule"] == "MANUAL"
    # The next run leaves it alone again and still reports it.
    rerun = _full(engine)
    assert both_sides(engine, emulator, customer) == before
    assert any(
        s["customer_id"] == customer["id"] for s in rerun.report["open_conflicts"]["samples"]
    )


def test_dry_run_writes_nowhere(engine: Engine, emulator: Any) -> None:
    drifting = [
        linked_customer(engine, emulator, company={"warp_status": "TRIAL"}),
        linked_customer(engine, emulator, company={"warp_credit_limit": "123"}),
        linked_customer(engine, emulator, contact={"phone": "+44 20 7946 0000"}),
    ]
    with engine.database.transaction() as tx:
        table_before = tx.fetch("SELECT * FROM accounts.customers ORDER BY id")
    sides_before = [both_sides(engine, emulator, c) for c in drifting]
    counts_before = _counts(engine)
    updates_before = {
        k: v for k, v in emulator.stats()["calls"].items() if "batch/update" in k or "PATCH" in k
    }

    result = _full(engine, dry_run=True)

    assert result.status == "COMPLETED" and result.run["dry_run"] is True
    with engine.database.transaction() as tx:
        assert tx.fetch("SELECT * FROM accounts.customers ORDER BY id") == table_before
    assert [both_sides(engine, emulator, c) for c in drifting] == sides_before
    assert _counts(engine) == counts_before
    updates_after = {
        k: v for k, v in emulator.stats()["calls"].items() if "batch/update" in k or "PATCH" in k
    }
    assert updates_after == updates_before
    report = result.report
    assert report["dry_run"] is True
    assert report["fields"]["status"]["to_hubspot"] >= 1
    assert report["fields"]["credit_limit"]["to_warp"] >= 1
    assert (
        report["fields"]["contact_phone"]["to_hubspot"]
        + report["fields"]["contact_phone"]["to_warp"]
        >= 1
    )
    # The same run for real repairs what the dry run reported.
    real = _full(engine)
    assert real.report["fields"]["status"]["to_hubspot"] >= 1
    assert both_sides(engine, emulator, drifting[0])["company"]["warp_status"] == "ACTIVE"


def test_unlinked_and_missing_records_are_reported(engine: Engine, emulator: Any) -> None:
    archived = linked_customer(engine, emulator)
    emulator.ui_delete("companies", archived["company_id"])
    ghost = linked_customer(engine, emulator)
    with engine.database.transaction() as tx:
        customers.set_link_id(tx, ghost["id"], EntityType.CUSTOMER, "987654321")
    domain_match = f"match-{uuid.uuid4().hex[:6]}.example"
    (matching_company,) = emulator.seed("companies", [{"name": "Other", "domain": domain_match}])
    with engine.database.transaction() as tx:
        unlinked = customers.insert(
            tx,
            {
                "ban": f"U-{uuid.uuid4().hex[:8]}",
                "company_name": "Unlinked Co",
                "customer_type": "PREPAID",
                "contact": {"email": f"ops@{domain_match}"},
            },
        )
        lonely = customers.insert(
            tx,
            {
                "ban": f"U-{uuid.uuid4().hex[:8]}",
                "company_name": f"Nobody {uuid.uuid4().hex[:6]}",
                "customer_type": "PREPAID",
            },
        )

    report = _full(engine).report

    missing = {s["customer_id"]: s for s in report["missing_objects"]["samples"]}
    assert missing[archived["id"]]["state"] == "archived"
    assert missing[ghost["id"]]["state"] == "missing"
    unlinked_samples = {s["customer_id"]: s for s in report["unlinked_customers"]["samples"]}
    assert unlinked_samples[str(unlinked["id"])]["match"] == {
        "by": "domain",
        "company_ids": [matching_company],
    }
    assert "match" not in unlinked_samples[str(lonely["id"])]


def test_incremental_run_checks_only_what_changed(engine: Engine, emulator: Any) -> None:
    _full(engine)
    warp_side = linked_customer(engine, emulator)
    hub_side = linked_customer(engine, emulator)
    _full(engine)
    quick = Engine(
        settings=engine.settings.model_copy(update={"reconcile_overlap_seconds": 0.0}),
        database=engine.database,
        hubspot=engine.hubspot,
        dispatcher=engine.dispatcher,
    )
    with engine.database.transaction() as tx:
        customers.update_columns(tx, warp_side["id"], {"status": "SUSPENDED"})
    emulator.ui_change("companies", hub_side["company_id"], {"warp_credit_limit": "4321"})
    emulator.state.index_now()  # about what a run selects, not the index's lag (next test)
    with engine.database.transaction() as tx:
        linked = int(
            tx.fetch_value(
                "SELECT count(*) FROM accounts.customers "
                "WHERE external_ids ->> 'hubspot_company_id' IS NOT NULL"
            )
        )

    result = start_run(quick, RunRequest(run_type="INCREMENTAL"))

    assert result.status == "COMPLETED"
    assert both_sides(engine, emulator, warp_side)["company"]["warp_status"] == "SUSPENDED"
    assert both_sides(engine, emulator, hub_side)["warp"]["credit_limit"] == "4321.00"
    assert 2 <= result.report["records"]["checked"] < linked


@pytest.mark.parametrize("overlap", [60.0, 0.0])
def test_incremental_search_finds_what_the_lagging_index_hid_from_the_last_run(
    engine: Engine, emulator: Any, overlap: float
) -> None:
    company = linked_customer(engine, emulator)["company_id"]
    previous_start = datetime.now(UTC)  # the last run started before the change

    def found(since_at: datetime) -> bool:
        after = str(int(company) - 1)  # only this company's page, however many others changed
        return company in changed_in_hubspot(engine, EntityType.CUSTOMER, since_at, after, 10).ids

    lag = emulator.state.search_delay_ms
    emulator.state.search_delay_ms = 60_000  # the index stays behind until caught up below
    try:
        emulator.ui_change("companies", company, {"warp_credit_limit": "4321"})
        changed = datetime.fromisoformat(
            emulator.values("companies", company)["hs_lastmodifieddate"].replace("Z", "+00:00")
        )
        this_start = changed + timedelta(milliseconds=1)  # a run starting right after it
        assert not found(previous_start)  # searching from before the change: not indexed yet
        emulator.state.index_now()  # later, the index has caught up
        next_run = found(since(this_start, overlap))
    finally:
        emulator.state.search_delay_ms = lag
    # Only an overlap at least as long as the lag makes the next run look back far enough.
    assert next_run is (overlap >= 60)


def test_incremental_calls_grow_with_the_changes_not_with_their_sides(
    engine: Engine, emulator: Any
) -> None:
    # Issue 20: both object types searched in one step, 200 a page, no empty last search,
    # and the customers behind HubSpot's changes read once for both types.
    warp_side = [linked_customer(engine, emulator) for _ in range(3)]
    company_side = [linked_customer(engine, emulator) for _ in range(2)]
    contact_side = [linked_customer(engine, emulator) for _ in range(2)]
    quick = Engine(
        settings=engine.settings.model_copy(update={"reconcile_overlap_seconds": 0.0}),
        database=engine.database,
        hubspot=engine.hubspot,
        dispatcher=engine.dispatcher,
    )
    _full(engine)
    emulator.state.index_now()
    # What the FULL run wrote comes after its start: a first INCREMENTAL run sees it.
    assert start_run(quick, RunRequest(run_type="INCREMENTAL")).status == "COMPLETED"
    with engine.database.transaction() as tx:
        for row in warp_side:
            customers.update_columns(tx, row["id"], {"status": "SUSPENDED"})
    for n, row in enumerate(company_side):
        emulator.ui_change("companies", row["company_id"], {"warp_credit_limit": str(4100 + n)})
    for n, row in enumerate(contact_side):
        emulator.ui_change("contacts", row["contact_id"], {"phone": f"+1 555 02{n:02d}"})
    emulator.state.index_now()  # search lags writes; this test counts calls, not lag
    before = dict(emulator.stats()["calls"])

    result = start_run(quick, RunRequest(run_type="INCREMENTAL"))

    after = emulator.stats()["calls"]
    calls = {k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)}
    assert result.status == "COMPLETED"
    assert result.report["records"]["checked"] == 7, (calls, result.report)
    # WARP's changes: one read per type, one write. HubSpot's: one search per type (its
    # own writes above among the companies found), one read per type for the four
    # customers, and one contact read with history (a HubSpot phone whose writer counts).
    assert calls == {
        "POST /crm/v3/objects/companies/search": 1,
        "POST /crm/v3/objects/contacts/search": 1,
        "POST /crm/v3/objects/companies/batch/read": 2,
        "POST /crm/v3/objects/contacts/batch/read": 3,
        "POST /crm/v3/objects/companies/batch/update": 1,
    }
    assert [both_sides(engine, emulator, row)["company"]["warp_status"] for row in warp_side] == [
        "SUSPENDED"
    ] * 3
    assert [both_sides(engine, emulator, row)["warp"]["credit_limit"] for row in company_side] == [
        "4100.00",
        "4101.00",
    ]


# --- one run per trigger, one FULL at a time ---------------------------------------------


def test_scheduler_retry_does_not_start_a_second_run(engine: Engine, emulator: Any) -> None:
    linked_customer(engine, emulator, company={"warp_status": "TRIAL"})
    headers = {"X-CloudScheduler-ScheduleTime": f"2030-01-0{uuid.uuid4().int % 9 + 1}T02:00:00Z"}
    body = {"run_type": "FULL", "entity_type": "customer", "force": True}
    with serve_function("reconciler") as url:
        first = httpx.post(url, json=body, headers=headers, timeout=60)
        second = httpx.post(url, json=body, headers=headers, timeout=60)
        bad = httpx.post(url, json={"run_type": "SOMETIMES"}, timeout=10)
    assert first.status_code == 200, first.text
    assert first.json()["started"] is True
    assert first.json()["run"]["status"] == "COMPLETED"
    assert second.status_code == 200 and second.json()["started"] is False
    assert second.json()["run"]["id"] == first.json()["run"]["id"]
    assert bad.status_code == 400 and "run_type" in bad.json()["error"]
    with engine.database.transaction() as tx:
        runs = tx.fetch(
            "SELECT id FROM accounts.hubspot_reconciliation_runs WHERE idempotency_key LIKE :k",
            {"k": f"%{headers['X-CloudScheduler-ScheduleTime']}"},
        )
    assert len(runs) == 1


def test_one_full_run_at_a_time_unless_forced(engine: Engine, emulator: Any) -> None:
    with engine.database.transaction() as tx:
        running, _ = reconciliation_runs.start(tx, run_type="FULL", entity_type="customer")
    try:
        with pytest.raises(RunInProgress):
            start_run(engine, RunRequest())
        with serve_function("reconciler") as url:
            refused = httpx.post(url, json={}, timeout=30)
            forced = httpx.post(url, json={"force": True}, timeout=60)
        assert refused.status_code == 409
        assert refused.json()["run_id"] == str(running["id"])
        assert forced.status_code == 200 and forced.json()["run"]["status"] == "COMPLETED"
    finally:
        with engine.database.transaction() as tx:
            reconciliation_runs.finish(tx, str(running["id"]), status="CANCELLED")


def test_time_budget_hands_the_run_to_continuation_tasks(engine: Engine, emulator: Any) -> None:
    for _ in range(3):
        linked_customer(engine, emulator, company={"warp_status": "TRIAL"})
    # A zero budget: the first invocation only starts the run; tasks do every page.
    result = start_run(engine, RunRequest(force=True), budget_seconds=0.0)
    assert result.status == "RUNNING" and result.continued
    assert engine.dispatcher.wait_idle(60)  # type: ignore[attr-defined]
    with engine.database.transaction() as tx:
        done = reconciliation_runs.get(tx, str(result.run["id"]))
    assert done is not None and done["status"] == "COMPLETED"
    assert done["report"]["fields"]["status"]["to_hubspot"] >= 3


def test_silent_old_run_is_marked_failed(engine: Engine) -> None:
    with engine.database.transaction() as tx:
        run, _ = reconciliation_runs.start(tx, run_type="INCREMENTAL", entity_type="customer")
        tx.execute(
            "UPDATE accounts.hubspot_reconciliation_runs SET "
            "started_at = NOW() - interval '2 days', heartbeat_at = NOW() - interval '2 days' "
            "WHERE id = CAST(:id AS uuid)",
            {"id": str(run["id"])},
        )
    actions = recover_stale(engine)
    assert actions == {str(run["id"]): "failed"}
    with engine.database.transaction() as tx:
        failed = reconciliation_runs.get(tx, str(run["id"]))
    assert failed is not None and failed["status"] == "FAILED" and "heartbeat" in failed["notes"]


# --- resuming after a crash ---------------------------------------------------------------


class Crash(Exception):
    """The process dying between two pages."""


@pytest.fixture
def new_world(create_database: Callable[[str], str]) -> Iterator[Callable[[], tuple[Engine, Any]]]:
    """Factory of worlds (a fresh database and emulator each) for runs compared side by side."""
    from localdev.emulator import Emulator
    from shared.hubspot import HubSpotClient
    from shared.hubspot.properties import setup_properties
    from shared.tasks import InProcessDispatcher

    closers: list[Callable[[], None]] = []

    def make() -> tuple[Engine, Any]:
        url = create_database("reconcile_world")
        database = Database(url_connector(url), pool_size=4, description="world")
        upgrade(database)
        emu = Emulator(rate_limit=10_000, access_token="emulator-token", seed=7).start()
        settings = engine_settings(url, emu.url, reconcile_window=100)
        client = HubSpotClient.from_settings(settings, database)
        setup_properties(client)
        dispatcher = InProcessDispatcher(base=0.01, cap=0.05, max_attempts=5)
        world = Engine(settings=settings, database=database, hubspot=client, dispatcher=dispatcher)
        closers.extend([dispatcher.stop, client.close, emu.stop, database.close])
        return world, emu

    try:
        yield make
    finally:
        for close in closers:
            close()


def _seed_world(engine: Engine, emulator: Any, count: int) -> list[dict[str, str]]:
    made = []
    for i in range(count):
        company: dict[str, str] = {}
        contact: dict[str, str] = {}
        if i % 5 == 0:
            company["warp_status"] = "SUSPENDED"
        if i % 7 == 0:
            company["warp_credit_limit"] = str(6000 + i)
        if i % 11 == 0:
            contact["phone"] = f"+1 555 {i:04d}"
        made.append(
            linked_customer(engine, emulator, ban=f"W-{i:05d}", company=company, contact=contact)
        )
    return made


def _world_state(engine: Engine, emulator: Any, made: list[dict[str, str]]) -> dict[str, Any]:
    return {c["ban"]: both_sides(engine, emulator, c) for c in made}


def test_resume_after_crash_matches_an_uninterrupted_run(
    new_world: Callable[[], tuple[Engine, Any]],
) -> None:
    count = 350  # four pages of linked customers
    world, world_emulator = new_world()
    clean = _seed_world(world, world_emulator, count)
    crash_world, crash_emulator = new_world()
    crashed = _seed_world(crash_world, crash_emulator, count)

    # Each world's tasks run with the world's engine: the one that submitted them.
    uninterrupted = start_run(world, RunRequest())
    resumed = _crash_and_resume(crash_world)
    assert uninterrupted.status == "COMPLETED"

    # Same data on both sides, and the same report and counts, as the uninterrupted run.
    assert _world_state(crash_world, crash_emulator, crashed) == _world_state(
        world, world_emulator, clean
    )
    assert resumed["report"]["fields"] == uninterrupted.report["fields"]
    for column in (
        "total_records",
        "records_in_sync",
        "records_updated",
        "conflicts_detected",
        "errors_encountered",
    ):
        assert resumed[column] == uninterrupted.run[column], column


def _crash_and_resume(engine: Engine) -> Any:
    """Run a FULL reconciliation that dies after two pages, then recover it; the run row."""
    # The interrupted one: the process dies after two pages are committed.
    pages: list[int] = []

    def die_after_two_pages(done: int, total: int | None) -> None:
        pages.append(done)
        if len(pages) == 3:  # the first report comes before any page: the bar's total
            raise Crash()

    before = _counts(engine)
    with pytest.raises(Crash):
        start_run(engine, RunRequest(), progress=die_after_two_pages)
    with engine.database.transaction() as tx:
        (run,) = tx.fetch(
            "SELECT * FROM accounts.hubspot_reconciliation_runs WHERE status = 'RUNNING'"
        )
    assert run["checkpoint"]["seq"] == 2 and run["checkpoint"]["after"] is not None
    assert _counts(engine)["states"] > before["states"]  # the two pages were committed

    # Its heartbeat goes silent; recovery resumes it from the checkpoint.
    assert recover_stale(engine, silent_for_seconds=0.0) == {str(run["id"]): "resumed"}
    assert engine.dispatcher.wait_idle(120)  # type: ignore[attr-defined]
    with engine.database.transaction() as tx:
        resumed = reconciliation_runs.get(tx, str(run["id"]))
    assert resumed is not None and resumed["status"] == "COMPLETED"

    return resumed


def test_progress_knows_its_total_from_the_start_and_never_passes_it(
    engine: Engine, emulator: Any
) -> None:
    linked_customer(engine, emulator)
    with engine.database.transaction() as tx:
        customers.insert(
            tx,
            {
                "ban": f"B-{uuid.uuid4().hex[:8]}",
                "company_name": "No Link",
                "customer_type": "PREPAID",
                "status": "ACTIVE",
            },
        )
        expected = int(
            tx.fetch_value(
                "SELECT count(*) FROM accounts.customers WHERE hubspot_sync_enabled IS NOT FALSE"
            )
        )
    seen: list[tuple[int, int | None]] = []
    result = start_run(
        engine, RunRequest(force=True, dry_run=True), progress=lambda d, t: seen.append((d, t))
    )
    assert result.status == "COMPLETED"
    assert seen[0] == (0, expected)  # before the first page: the whole count, unlinked too
    assert all(total == expected and done <= expected for done, total in seen), seen
    assert seen[-1] == (expected, expected)


# --- the report, pure ---------------------------------------------------------------------


def test_report_round_trips_through_json() -> None:
    report = DriftReport(dry_run=True)
    report.add_missing("c1", "companies", "1", "merged", "2")
    report.add_unlinked("c2", "B-1", {"by": "name", "company_ids": ["3"]})
    report.add_error("c3", "refused")
    report.notes.append("n")
    again = DriftReport.from_json(report.to_json())
    assert again.to_json() == report.to_json()
    assert again.run_counts()["errors_encountered"] == 1
    assert again.run_counts()["total_records"] == 1  # the unlinked customer was checked


def test_cli_prints_the_drift_report(engine: Engine, emulator: Any) -> None:
    from click.testing import CliRunner

    from shared.cli.main import cli

    customer = linked_customer(engine, emulator, company={"warp_status": "TRIAL"})
    wide = {"COLUMNS": "200"}  # rich wraps at the terminal width
    result = CliRunner().invoke(
        cli, ["reconcile", "--dry-run", "--customer", customer["id"]], env=wide
    )
    assert result.exit_code == 0, result.output
    assert "dry run: nothing written" in result.output
    assert "drift per field (would write)" in result.output
    assert "status" in result.output
    assert both_sides(engine, emulator, customer)["company"]["warp_status"] == "TRIAL"
    # The records themselves, for a script: which customer, field, side and values.
    as_json = CliRunner().invoke(
        cli, ["reconcile", "--dry-run", "--customer", customer["id"], "--output", "json"]
    )
    assert as_json.exit_code == 0, as_json.output
    # (Other tests may have routed the service's JSON log lines to stdout in this process.)
    start = as_json.stdout.index('{\n  "run_id"')
    document, _ = json.JSONDecoder().raw_decode(as_json.stdout[start:])
    assert document["dry_run"] is True and document["status"] == "COMPLETED"
    (status,) = [r for r in document["records"] if r["field"] == "status"]
    assert status["customer_id"] == customer["id"] and status["direction"] == "to_hubspot"
    assert (status["warp_value"], status["hubspot_value"], status["new_value"]) == (
        "ACTIVE",
        "TRIAL",
        "ACTIVE",
    )
    as_csv = CliRunner().invoke(
        cli, ["reconcile", "--dry-run", "--customer", customer["id"], "--output", "csv"]
    )
    assert as_csv.exit_code == 0, as_csv.output
    header = ",".join(RECORD_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout[as_csv.stdout.index(header) :])))
    assert next(r for r in rows if r["field"] == "status")["new_value"] == "ACTIVE"
    assert both_sides(engine, emulator, customer)["company"]["warp_status"] == "TRIAL"
    refused = CliRunner().invoke(cli, ["reconcile", "--customer", "not-a-uuid"])
    assert refused.exit_code != 0 and "UUID" in refused.output
