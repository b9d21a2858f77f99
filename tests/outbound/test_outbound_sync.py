"""outbound_sync over real HTTP: a real database, the HubSpot emulator, the in-process task runner.

Each test pushes Pub/Sub push envelopes to the function served by functions-framework's
app, waits until the outbound backlog has drained, and checks HubSpot and WARP.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from localdev.drain import wait_drained
from shared.db.repositories import (
    customers,
    field_state,
    outbound_dirty,
    sync_config,
    sync_log,
    sync_queue,
)
from shared.engine import Engine
from shared.engine.sync import FROM_HUBSPOT, sync_customers
from shared.idempotency import AlreadyInProgress, PostgresPersistence
from shared.messages import ChangeMessage
from shared.messages.envelope import encode_push_envelope
from shared.outbound.flush import flush
from shared.outbound.receive import KEY_PREFIX, receive
from tests.helpers import inbound
from tests.helpers.functions import serve_function

pytestmark = pytest.mark.integration

UPDATE = "POST /crm/v3/objects/companies/batch/update"
UPSERT = "POST /crm/v3/objects/companies/batch/upsert"


@pytest.fixture(scope="module")
def url(engine: Engine) -> Iterator[str]:
    # Failures reach the flow at once instead of after the client's own short retries.
    engine.hubspot.max_transient_retries = 0
    with serve_function("outbound_sync") as base:
        yield base


@pytest.fixture(autouse=True)
def _healthy(emulator: Any) -> Iterator[None]:
    yield
    emulator.set_faults(rate=0.0, outage=False)


def _customer(engine: Engine, emulator: Any, *, linked: bool = True, **fields: Any) -> str:
    """A WARP customer; linked to a seeded company that holds WARP's values when ``linked``."""
    ban = f"B-{uuid.uuid4().hex[:10]}"
    name = fields.pop("company_name", f"Acme {ban}")
    email = fields.pop("email", f"jane@{ban.lower()}.example")
    values: dict[str, Any] = {
        "ban": ban,
        "company_name": name,
        "customer_type": "POSTPAID",
        "status": "ACTIVE",
        "credit_limit": Decimal("5000.00"),
        "contact": {"name": "Jane Doe", "email": email, "phone": "+1 555 0100"},
        **fields,
    }
    if linked:
        (company_id,) = emulator.seed(
            "companies",
            [
                {
                    "name": name,
                    "domain": email.split("@")[1],
                    "warp_ban": ban,
                    "warp_status": values["status"],
                    "warp_credit_limit": str(values["credit_limit"]),
                }
            ],
        )
        values["external_ids"] = {"hubspot_company_id": company_id}
    with engine.database.transaction() as tx:
        return str(customers.insert(tx, values)["id"])


def _row(engine: Engine, customer_id: str) -> dict[str, Any]:
    with engine.database.transaction() as tx:
        row = customers.get(tx, customer_id)
    assert row is not None
    return dict(row)


def _change(customer_id: str, *fields: str, **extra: Any) -> ChangeMessage:
    return ChangeMessage.model_validate(
        {
            "entity_type": "customer",
            "entity_id": customer_id,
            "operation": extra.pop("operation", "UPDATE"),
            "changed_fields": list(fields),
            "occurred_at": extra.pop("occurred_at", datetime.now(UTC)).isoformat(),
            "trigger_source": extra.pop("trigger_source", "admin_ui"),
            **extra,
        }
    )


def _push(url: str, body: bytes) -> dict[str, Any]:
    response = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _send(url: str, change: ChangeMessage, message_id: str | None = None) -> dict[str, Any]:
    return _push(url, encode_push_envelope(change, message_id or uuid.uuid4().hex))


def _calls(emulator: Any, key: str) -> int:
    return int(emulator.stats()["calls"].get(key, 0))


def _update(engine: Engine, customer_id: str, **values: Any) -> None:
    with engine.database.transaction() as tx:
        customers.update_columns(tx, customer_id, values)


def _drain(engine: Engine) -> None:
    assert wait_drained(engine, timeout=30), "outbound work did not drain"


# --- field updates, duplicates, poison ---------------------------------------------------


def test_changed_field_reaches_hubspot_and_is_recorded(
    engine: Engine, emulator: Any, url: str
) -> None:
    cid = _customer(engine, emulator)
    company = _row(engine, cid)["external_ids"]["hubspot_company_id"]
    _update(engine, cid, status="SUSPENDED")
    answer = _send(url, _change(cid, "status", triggered_by_user="u-7"))
    assert answer["outcome"] == "accepted"
    _drain(engine)
    assert emulator.values("companies", company)["warp_status"] == "SUSPENDED"
    with engine.database.transaction() as tx:
        state = field_state.get(tx, "customer", cid, "status")
        logs = sync_log.list_for_customer(tx, cid)
    assert state is not None and state["hubspot_value"] == "SUSPENDED"
    assert state["last_synced_direction"] == "WARP_TO_HUBSPOT"
    assert logs[0]["fields_synced"] == ["status"]
    assert logs[0]["triggered_by"] == "pubsub:admin_ui"
    assert logs[0]["triggered_by_user"] == "u-7"
    assert _row(engine, cid)["last_synced_to_hubspot"] is not None


def test_redelivered_message_id_is_processed_once(engine: Engine, emulator: Any, url: str) -> None:
    cid = _customer(engine, emulator)
    _update(engine, cid, status="TRIAL")
    body = encode_push_envelope(_change(cid, "status"), "dup-" + uuid.uuid4().hex)
    first = _push(url, body)
    second = _push(url, body)
    assert first["outcome"] == "accepted"
    assert second["outcome"] == "duplicate"
    _drain(engine)
    with engine.database.transaction() as tx:
        logs = sync_log.list_for_customer(tx, cid)
    updates = [r for r in logs if r["operation"] == "UPDATE"]
    assert len(updates) == 1  # one sync, not two


def test_message_id_reused_with_another_payload_is_a_duplicate(
    engine: Engine, emulator: Any, url: str
) -> None:
    cid = _customer(engine, emulator)
    message_id = "reuse-" + uuid.uuid4().hex
    assert _send(url, _change(cid, "status"), message_id)["outcome"] == "accepted"
    again = _send(url, _change(cid, "credit_limit"), message_id)
    assert again["outcome"] == "duplicate" and "different payload" in again["reason"]
    _drain(engine)


def test_message_another_instance_holds_is_refused_for_redelivery(
    engine: Engine, emulator: Any
) -> None:
    cid = _customer(engine, emulator)
    message_id = "held-" + uuid.uuid4().hex
    persistence = PostgresPersistence(engine.database)
    key = KEY_PREFIX + message_id
    hour = timedelta(hours=1)
    assert persistence.claim(key, None, expires_after=hour, lease=hour).claimed
    body = encode_push_envelope(_change(cid, "status"), message_id)
    with pytest.raises(AlreadyInProgress):
        receive(engine, body, {"Content-Type": "application/json"})
    with engine.database.transaction() as tx:
        pending = tx.fetch_value(
            "SELECT count(*) FROM accounts.hubspot_outbound_dirty "
            "WHERE customer_id = CAST(:id AS uuid)",
            {"id": cid},
        )
    assert pending == 0  # nothing handed over


def test_a_flush_that_cannot_be_asked_for_leaves_the_change_dirty_for_the_sweep(
    engine: Engine, emulator: Any
) -> None:
    """The change is handed off once its dirty mark is committed: a task queue that is
    down afterwards is logged, and the sweep's flush of overdue customers pushes it."""

    class TasksDown:
        def submit(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("Cloud Tasks unavailable")

    cid = _customer(engine, emulator)
    down = dataclasses.replace(engine, dispatcher=TasksDown())
    body = encode_push_envelope(_change(cid, "status"), uuid.uuid4().hex)
    assert receive(down, body, {"Content-Type": "application/json"}).outcome == "accepted"
    assert receive(down, body, {"Content-Type": "application/json"}).outcome == "duplicate"
    with engine.database.transaction() as tx:
        assert outbound_dirty.pending_count(tx) >= 1
    flush(engine)  # what the sweep runs for customers whose own flush never came
    with engine.database.transaction() as tx:
        still = tx.fetch_value(
            "SELECT count(*) FROM accounts.hubspot_outbound_dirty "
            "WHERE customer_id = CAST(:id AS uuid)",
            {"id": cid},
        )
    assert still == 0


def test_poison_messages_are_acknowledged_and_recorded(engine: Engine, url: str) -> None:
    assert _push(url, b"not json")["outcome"] == "rejected"
    bad = {"entity_type": "planet", "entity_id": str(uuid.uuid4())}
    envelope = {
        "message": {
            "data": base64.b64encode(json.dumps(bad).encode()).decode(),
            "messageId": "poison-1",
        },
        "subscription": "projects/p/subscriptions/s",
    }
    body = json.dumps(envelope).encode()
    answer = _push(url, body)
    assert answer["outcome"] == "rejected" and "entity_type" in answer["reason"]
    record = PostgresPersistence(engine.database).get("pubsub:poison-1")
    assert record is not None and record.response["outcome"] == "rejected"
    assert _push(url, body)["outcome"] in ("rejected", "duplicate")  # acknowledged again


def test_cloudevent_delivery_is_read_too(engine: Engine, emulator: Any, url: str) -> None:
    cid = _customer(engine, emulator)
    company = _row(engine, cid)["external_ids"]["hubspot_company_id"]
    _update(engine, cid, status="TRIAL")
    envelope = json.loads(encode_push_envelope(_change(cid, "status"), uuid.uuid4().hex))
    event = {
        "specversion": "1.0",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/p/topics/t",
        "id": "1",
        "data": envelope,
    }
    response = httpx.post(
        url, content=json.dumps(event), headers={"Content-Type": "application/cloudevents+json"}
    )
    assert response.status_code == 200 and response.json()["outcome"] == "accepted"
    _drain(engine)
    assert emulator.values("companies", company)["warp_status"] == "TRIAL"


def test_disabled_missing_and_unmapped_changes_are_skipped(
    engine: Engine, emulator: Any, url: str
) -> None:
    cid = _customer(engine, emulator, hubspot_sync_enabled=False)
    assert _send(url, _change(cid))["reason"] == "hubspot_sync_enabled is false"
    assert _send(url, _change(str(uuid.uuid4())))["reason"] == "customer not found in WARP"
    other = _customer(engine, emulator)
    answer = _send(url, _change(other, "current_balance"))
    assert answer["outcome"] == "skipped" and "no outbound field" in answer["reason"]


# --- coalescing -----------------------------------------------------------------------


def test_a_burst_becomes_at_most_two_batch_writes(
    engine: Engine, emulator: Any, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A window far longer than the burst, then fast-forwarded once every message is
    # in: however slowly the machine delivers the pushes, the first change flushes at
    # once and every later one meets the others in the window's one flush.
    monkeypatch.setattr(engine.settings, "coalesce_delay_seconds", 60.0)
    ids = [_customer(engine, emulator) for _ in range(40)]
    for cid in ids:
        _update(engine, cid, status="SUSPENDED")
    before = _calls(emulator, UPDATE)
    first_window = _window(60.0)
    # Pub/Sub pushes concurrently; two messages per customer.
    changes = [_change(cid, f) for cid in ids for f in ("status", "company_name")]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda c: _send(url, c), changes))
    windows = _window(60.0) - first_window + 1  # 2 if the burst crossed a window's end
    assert {a["outcome"] for a in answers} == {"accepted"}
    engine.dispatcher.run_due_now()  # type: ignore[attr-defined]
    _drain(engine)
    # 80 messages, 40 customers: the first change's flush and the window's one flush.
    assert _calls(emulator, UPDATE) - before <= 2 * windows
    for cid in ids:
        company = _row(engine, cid)["external_ids"]["hubspot_company_id"]
        assert emulator.values("companies", company)["warp_status"] == "SUSPENDED"


def _window(seconds: float) -> int:
    """The coalescing window a change made now falls in (``schedule_flush``'s bucket)."""
    return math.floor(time.time() / seconds)


def _no_change_yet_in_this_window(engine: Engine) -> None:
    """Forget which windows already had their first change (earlier tests' claims)."""
    with engine.database.transaction() as tx:
        tx.execute(
            f"DELETE FROM {PostgresPersistence.table} WHERE key LIKE :prefix",
            {"prefix": "outbound_flush:%"},
        )


def test_a_lone_change_is_flushed_at_once_not_after_the_window(
    engine: Engine, emulator: Any, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine.settings, "coalesce_delay_seconds", 60.0)
    _no_change_yet_in_this_window(engine)
    cid = _customer(engine, emulator)
    _update(engine, cid, status="SUSPENDED")
    assert _send(url, _change(cid, "status"))["outcome"] == "accepted"
    # No fast-forward: with a 60 s window only a leading-edge flush can drain this.
    _drain(engine)
    company = _row(engine, cid)["external_ids"]["hubspot_company_id"]
    assert emulator.values("companies", company)["warp_status"] == "SUSPENDED"


def test_one_refused_value_does_not_sink_the_other_99_of_its_flush(
    engine: Engine, emulator: Any, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One window for the 100 (fast-forwarded below), of a length no other test uses: a
    # flush task's name holds the window, and a name spent earlier would not run again.
    monkeypatch.setattr(engine.settings, "coalesce_delay_seconds", 5_400.0)
    ids = [_customer(engine, emulator) for _ in range(100)]
    poisoned = ids[42]
    for cid in ids:
        _update(engine, cid, status="CLOSED" if cid == poisoned else "SUSPENDED")
    # Someone deleted the CLOSED option in HubSpot: HubSpot refuses the whole batch
    # update that carries it (the emulator's default).
    status = emulator.properties.get("companies", "warp_status")
    options = list(status.options)
    status.options = [o for o in options if o["value"] != "CLOSED"]
    before = _calls(emulator, UPDATE)
    try:
        for cid in ids:
            _send(url, _change(cid, "status"))
        engine.dispatcher.run_due_now()  # type: ignore[attr-defined]
        _drain(engine)
    finally:
        status.options = options
    companies = {cid: _row(engine, cid)["external_ids"]["hubspot_company_id"] for cid in ids}
    landed = [
        c for c in ids if emulator.values("companies", companies[c])["warp_status"] == "SUSPENDED"
    ]
    assert len(landed) == 99 and poisoned not in landed
    assert emulator.values("companies", companies[poisoned])["warp_status"] == "ACTIVE"
    # The window's first change flushes alone at once; then one flush: the batch, then
    # halves down to the refused record (1 + 2 per level).
    assert _calls(emulator, UPDATE) - before <= 1 + 1 + 2 * 7
    with engine.database.transaction() as tx:
        failed = sync_queue.list_items(tx, statuses=("FAILED",), entity_id=poisoned)
        waiting = sync_queue.list_items(tx, statuses=("QUEUED",), entity_id=poisoned)
        others = [r for cid in landed for r in sync_queue.list_items(tx, entity_id=cid)]
    assert len(failed) == 1 and not waiting and not others  # refused once, not retried
    assert "CLOSED was not one of the allowed options" in failed[0]["last_error"]
    assert failed[0]["payload"]["fields"] == ["status"]


# --- linking --------------------------------------------------------------------------


def test_unlinked_customers_link_by_domain_then_name_else_create(
    engine: Engine, emulator: Any, url: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    (by_domain,) = emulator.seed("companies", [{"name": "Other name", "domain": f"d{tag}.example"}])
    (by_name,) = emulator.seed("companies", [{"name": f"Name {tag}", "domain": "x.example"}])
    c1 = _customer(engine, emulator, linked=False, email=f"a@d{tag}.example")
    c2 = _customer(engine, emulator, linked=False, company_name=f"Name {tag}")
    c3 = _customer(engine, emulator, linked=False, company_name=f"New {tag}")
    for cid in (c1, c2, c3):
        _send(url, _change(cid, operation="CREATE"))
    _drain(engine)
    ids = {cid: _row(engine, cid)["external_ids"] for cid in (c1, c2, c3)}
    assert ids[c1]["hubspot_company_id"] == by_domain
    assert ids[c2]["hubspot_company_id"] == by_name
    created = ids[c3]["hubspot_company_id"]
    assert created not in (by_domain, by_name)
    assert emulator.values("companies", created)["warp_ban"] == _row(engine, c3)["ban"]
    # The matched companies now carry their customer's BAN (WARP_TO_HUBSPOT).
    assert emulator.values("companies", by_domain)["warp_ban"] == _row(engine, c1)["ban"]
    # Each primary contact was created and associated with its company.
    for cid, external in ids.items():
        contact = external["hubspot_contact_id"]
        assert (
            emulator.values("contacts", contact)["email"] == _row(engine, cid)["contact"]["email"]
        )
        links = engine.hubspot.associations("contacts", contact, "companies")
        assert external["hubspot_company_id"] in {a.to_object_id for a in links}
    with engine.database.transaction() as tx:
        created_logs = [r for r in sync_log.list_for_customer(tx, c3) if r["operation"] == "CREATE"]
    assert {r["entity_type"] for r in created_logs} == {"customer", "contact"}


def test_linking_again_never_creates_a_second_company(
    engine: Engine, emulator: Any, url: str
) -> None:
    cid = _customer(engine, emulator, linked=False)
    ban = _row(engine, cid)["ban"]
    # An earlier attempt created the company but its answer was lost: only HubSpot knows.
    (earlier,) = emulator.seed("companies", [{"name": "Half done", "warp_ban": ban}])
    before = _calls(emulator, UPSERT)
    _send(url, _change(cid))
    _drain(engine)
    assert _row(engine, cid)["external_ids"]["hubspot_company_id"] == earlier
    assert _calls(emulator, UPSERT) == before
    # A second customer with the same domain does not steal the company.
    email = _row(engine, cid)["contact"]["email"]
    twin = _customer(engine, emulator, linked=False, email="other@" + email.split("@")[1])
    _send(url, _change(twin))
    _drain(engine)
    assert _row(engine, twin)["external_ids"]["hubspot_company_id"] != earlier


def test_a_company_created_moments_ago_is_linked_though_search_cannot_see_it_yet(
    engine: Engine, emulator: Any, url: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    lag = emulator.state.search_delay_ms
    emulator.state.search_delay_ms = 60_000  # the index stays behind for the whole test
    try:
        company = emulator.ui_create(
            "companies", {"name": f"Fresh {tag}", "domain": f"f{tag}.example"}
        )
        report = inbound.process(
            engine, inbound.event("company.creation", company)
        )  # no customer yet
        assert report.counts["not_linked"] == 1
        cid = _customer(engine, emulator, linked=False, email=f"ops@f{tag}.example")
        _send(url, _change(cid, operation="CREATE"))
        _drain(engine)
    finally:
        emulator.state.search_delay_ms = lag
    assert _row(engine, cid)["external_ids"]["hubspot_company_id"] == company
    same_domain = [
        r.id
        for r in emulator.state.live("companies")
        if r.values.get("domain") == f"f{tag}.example"
    ]
    assert same_domain == [int(company)]  # no duplicate created beside the user's company


# --- conflicts and echoes -------------------------------------------------------------


def test_conflicts_resolve_per_rule(engine: Engine, emulator: Any, url: str) -> None:
    cid = _customer(engine, emulator)
    company = _row(engine, cid)["external_ids"]["hubspot_company_id"]
    sync_customers(engine, [cid], triggered_by="test")  # establish the field states
    # Both sides change three fields since they last crossed.
    emulator.ui_change(
        "companies",
        company,
        {"warp_status": "TRIAL", "warp_credit_limit": "9000", "name": "HubSpot Name"},
    )
    _update(engine, cid, status="SUSPENDED", credit_limit=Decimal("6000"), company_name="WARP Name")
    later = datetime.now(UTC) + timedelta(minutes=5)  # WARP's change is the newer one
    _send(url, _change(cid, "status", "credit_limit", "company_name", occurred_at=later))
    _drain(engine)
    hub = emulator.values("companies", company)
    row = _row(engine, cid)
    assert hub["warp_status"] == "SUSPENDED"  # WARP_WINS
    assert row["credit_limit"] == Decimal("9000.00") and hub["warp_credit_limit"] == "9000"
    assert hub["name"] == "WARP Name" and row["company_name"] == "WARP Name"  # LATEST_WINS


def test_manual_conflict_writes_neither_side(engine: Engine, emulator: Any, url: str) -> None:
    cid = _customer(engine, emulator)
    mappings = {
        "status": {
            "hubspot_property": "warp_status",
            "warp_field": "status",
            "sync_direction": "BIDIRECTIONAL",
            "conflict_resolution": "MANUAL",
        }
    }
    with engine.database.transaction() as tx:
        sync_config.save(tx, config_name="manual_status", field_mappings=mappings, customer_id=cid)
    engine.reload_mappings()
    company = _row(engine, cid)["external_ids"]["hubspot_company_id"]
    sync_customers(engine, [cid], triggered_by="test")
    emulator.ui_change("companies", company, {"warp_status": "TRIAL"})
    _update(engine, cid, status="SUSPENDED")
    _send(url, _change(cid, "status"))
    _drain(engine)
    assert emulator.values("companies", company)["warp_status"] == "TRIAL"
    assert _row(engine, cid)["status"] == "SUSPENDED"
    with engine.database.transaction() as tx:
        state = field_state.get(tx, "customer", cid, "status")
    assert state is not None and state["is_in_conflict"] is True


def test_echo_of_our_inbound_write_writes_nothing(engine: Engine, emulator: Any, url: str) -> None:
    cid = _customer(engine, emulator)
    company = _row(engine, cid)["external_ids"]["hubspot_company_id"]
    sync_customers(engine, [cid], triggered_by="test")
    emulator.ui_change("companies", company, {"warp_credit_limit": "7777"})
    sync_customers(engine, [cid], allowed=FROM_HUBSPOT, triggered_by="webhook")  # inbound
    assert _row(engine, cid)["credit_limit"] == Decimal("7777.00")
    before = _calls(emulator, UPDATE)
    # WARP publishes the change our inbound write made: the echo.
    assert _send(url, _change(cid, "credit_limit"))["outcome"] == "accepted"
    _drain(engine)
    assert _calls(emulator, UPDATE) == before


def test_later_hubspot_edit_wins_though_the_sync_wrote_another_field_since(
    engine: Engine, emulator: Any, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/reliability.md, finding 3: a LATEST_WINS field is timed by its own WARP edit.

    company_name (LATEST_WINS) is edited in WARP, then later in HubSpot. Before either
    crosses, HubSpot's edit of credit_limit is applied to WARP by the inbound flow: that
    moves the row's ``updated_at`` past the HubSpot name edit, and WARP publishes its
    echo. The later HubSpot name must win on both sides.
    """
    cid = _customer(engine, emulator)
    company = _row(engine, cid)["external_ids"]["hubspot_company_id"]
    sync_customers(engine, [cid], triggered_by="test")  # both sides agree, states recorded
    # Both messages in one flush. A delay no other test uses: the flush task's name
    # holds it, and the task runner never takes a name twice.
    monkeypatch.setattr(engine.settings, "coalesce_delay_seconds", 3600.0)
    _update(engine, cid, company_name="WARP Name")
    _send(url, _change(cid, "company_name", occurred_at=_row(engine, cid)["updated_at"]))
    emulator.ui_change("companies", company, {"name": "HubSpot Name", "warp_credit_limit": "9000"})
    # The credit limit's webhook arrives first; the name's is still on its way.
    assert (
        inbound.process(engine, inbound.change(company, "warp_credit_limit", "9000")).counts[
            "applied"
        ]
        == 1
    )
    echo_at = _row(engine, cid)["updated_at"]  # our write: later than the HubSpot name edit
    _send(url, _change(cid, "credit_limit", occurred_at=echo_at))
    engine.dispatcher.run_due_now()  # type: ignore[attr-defined]
    _drain(engine)
    sync_customers(engine, [cid], triggered_by="reconciliation", operation="RECONCILE")
    assert emulator.values("companies", company)["name"] == "HubSpot Name"
    assert _row(engine, cid)["company_name"] == "HubSpot Name"
    assert _row(engine, cid)["credit_limit"] == Decimal("9000.00")


def test_change_messages_record_each_fields_newest_warp_time(
    engine: Engine, emulator: Any, url: str
) -> None:
    cid = _customer(engine, emulator)
    sync_customers(engine, [cid], triggered_by="test")
    newer = datetime.now(UTC) + timedelta(minutes=2)
    older = newer - timedelta(minutes=1)
    _send(url, _change(cid, "company_name", "status", occurred_at=newer))
    _send(url, _change(cid, "status", occurred_at=older))  # out of order
    duplicate = uuid.uuid4().hex
    _send(url, _change(cid, "credit_limit", occurred_at=older), duplicate)
    _send(url, _change(cid, "credit_limit", occurred_at=newer), duplicate)  # redelivery
    _drain(engine)
    with engine.database.transaction() as tx:
        times = {
            s["field_name"]: s["warp_changed_at"]
            for s in field_state.get_for_entity(tx, "customer", cid)
        }
    assert times["company_name"] == newer
    assert times["status"] == newer  # the older message changed nothing
    assert times["credit_limit"] == older  # a message id counts once
    assert times["ban"] is None  # named by no message


# --- deletes --------------------------------------------------------------------------


def test_deleted_customer_closes_its_company(
    engine: Engine, emulator: Any, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = _customer(engine, emulator)
    company = _row(engine, cid)["external_ids"]["hubspot_company_id"]
    monkeypatch.setattr(engine.settings, "coalesce_delay_seconds", 30.0)
    # The window's first change flushes at once; the next one waits in the window.
    _send(url, _change(_customer(engine, emulator), "status"))
    _send(url, _change(cid, "status"))  # a change still pending when the delete comes
    answer = _send(url, _change(cid, operation="DELETE"))
    assert answer["outcome"] == "closed"
    engine.dispatcher.run_due_now()  # type: ignore[attr-defined]
    _drain(engine)
    assert emulator.values("companies", company)["warp_status"] == "CLOSED"  # not archived
    with engine.database.transaction() as tx:
        logs = sync_log.list_for_customer(tx, cid)
    assert any(r["operation"] == "DELETE" and r["hubspot_object_id"] == company for r in logs)


# --- failures: outage, permanent refusal ----------------------------------------------


def test_outage_retries_the_flush_until_hubspot_is_back(
    engine: Engine, emulator: Any, url: str
) -> None:
    cid = _customer(engine, emulator)
    company = _row(engine, cid)["external_ids"]["hubspot_company_id"]
    _update(engine, cid, status="TRIAL")
    emulator.set_faults(outage=True)
    retried = engine.dispatcher.retried  # type: ignore[attr-defined]
    _send(url, _change(cid, "status"))
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    while engine.dispatcher.retried == retried:  # type: ignore[attr-defined]
        assert datetime.now(UTC) < deadline, "the flush never failed"
        engine.dispatcher.wait_idle(0.05)  # type: ignore[attr-defined]
    with engine.database.transaction() as tx:
        assert outbound_dirty.pending_count(tx) >= 0  # nothing lost: dirty or being flushed
    emulator.set_faults(outage=False)
    _drain(engine)
    assert emulator.values("companies", company)["warp_status"] == "TRIAL"


def test_permanent_refusal_is_failed_and_visible(engine: Engine, emulator: Any, url: str) -> None:
    cid = _customer(engine, emulator, legal_name="Acme Legal Ltd")
    mappings = {
        "legal_name": {
            "hubspot_property": "no_such_property",
            "warp_field": "legal_name",
            "sync_direction": "WARP_TO_HUBSPOT",
            "conflict_resolution": "WARP_WINS",
        }
    }
    with engine.database.transaction() as tx:
        sync_config.save(tx, config_name="broken", field_mappings=mappings, customer_id=cid)
    engine.reload_mappings()
    _send(url, _change(cid, "legal_name"))
    _drain(engine)
    with engine.database.transaction() as tx:
        items = sync_queue.list_items(tx, statuses=("FAILED",), entity_id=cid)
        logs = sync_log.list_for_customer(tx, cid)
    assert len(items) == 1 and items[0]["kind"] == "outbound"
    assert "no_such_property" in items[0]["last_error"]
    assert items[0]["payload"]["fields"] == ["legal_name"]
    assert logs[0]["status"] == "FAILED"


def test_a_flush_that_dies_mid_push_loses_nothing(url: str, engine: Engine, emulator: Any) -> None:
    from shared.outbound.flush import flush

    cid = _customer(engine, emulator)
    with engine.database.transaction() as tx:
        customers.update_columns(tx, cid, {"status": "SUSPENDED"})
        outbound_dirty.mark(tx, cid, ["status"], "m-dies")
        # A flush took the row and died before recording anything: its lease
        # is all that is left of it (already run out here).
        (taken,) = outbound_dirty.take(
            tx, marked_before=datetime.now(UTC) + timedelta(minutes=1), lease_seconds=-1
        )
    assert str(taken["customer_id"]) == cid
    report = flush(engine)
    assert report.taken == 1
    assert (
        emulator.values("companies", _row(engine, cid)["external_ids"]["hubspot_company_id"])[
            "warp_status"
        ]
        == "SUSPENDED"
    )
    with engine.database.transaction() as tx:
        assert outbound_dirty.pending_count(tx) == 0


def test_a_live_lease_is_not_taken_twice_and_a_change_during_a_push_survives(
    url: str, engine: Engine, emulator: Any
) -> None:
    cid = _customer(engine, emulator)
    cutoff = datetime.now(UTC) + timedelta(minutes=1)
    with engine.database.transaction() as tx:
        outbound_dirty.mark(tx, cid, ["status"], "m-1")
        (taken,) = outbound_dirty.take(tx, marked_before=cutoff, lease_seconds=300)
    with engine.database.transaction() as tx:
        assert outbound_dirty.take(tx, marked_before=cutoff) == []  # leased elsewhere
    with engine.database.transaction() as tx:
        outbound_dirty.mark(tx, cid, ["credit_limit"], "m-2")  # arrives during the push
    with engine.database.transaction() as tx:
        assert outbound_dirty.settle(tx, [taken]) == [cid]  # kept for the next flush
        (again,) = outbound_dirty.take(tx, marked_before=cutoff)
    assert set(again["changed_fields"]) == {"status", "credit_limit"}
    with engine.database.transaction() as tx:
        assert outbound_dirty.settle(tx, [again]) == []
        assert outbound_dirty.pending_count(tx) == 0
