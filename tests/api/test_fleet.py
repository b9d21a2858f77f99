"""Fleet-wide views over real HTTP (issue 17): the fleet list, BAN ids, the change feed,
inbound failures, bulk replay, and the pause switch, against the real database, the
emulator and the functions served by functions-framework."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from shared.db.repositories import customers, outbound_dirty, sync_queue
from shared.engine import Engine
from shared.fleet import SyncState, crossed_fields, states_of
from shared.sealing import Sealer
from tests.api.test_api import (  # noqa: F401
    AUDIENCE,
    CALLER,
    _in_conflict,
    api,
    client,
    issuer,
    served,
)
from tests.helpers.customers import acme_customer
from tests.helpers.functions import serve_function
from tests.helpers.inbound import change, now_ms
from tests.helpers.oidc_issuer import OidcIssuer
from tests.inbound.test_webhook_receiver import COMPANY_PATH, deliver
from tests.outbound.test_outbound_sync import _change

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def receiver(api: str) -> Iterator[str]:  # noqa: F811  (after api: it uses the API's engine)
    with serve_function("webhook_receiver") as url:
        yield url


@pytest.fixture(scope="module")
def outbound(api: str) -> Iterator[str]:  # noqa: F811
    with serve_function("outbound_sync") as url:
        yield url


@pytest.fixture(autouse=True)
def _resumed(client: httpx.Client, engine: Engine) -> Iterator[None]:  # noqa: F811
    yield
    client.post("/v1/sync/resume")
    assert engine.dispatcher.wait_idle(30)  # type: ignore[attr-defined]


def _ban(engine: Engine, customer_id: str) -> str:
    with engine.database.transaction() as tx:
        row = customers.get(tx, customer_id)
    assert row is not None
    return str(row["ban"])


def _failed_item(engine: Engine, customer_id: str, error: str, kind: str = "api_test") -> str:
    with engine.database.transaction() as tx:
        row = sync_queue.enqueue(
            tx,
            kind=kind,
            entity_type="customer",
            entity_id=customer_id,
            operation="UPDATE",
            direction="WARP_TO_HUBSPOT",
            payload={"customer_id": customer_id},
        )
        sync_queue.fail(tx, str(row["id"]), error, retry_at=None)
    return str(row["id"])


def _all_pages(client: httpx.Client, state: str) -> list[dict[str, Any]]:  # noqa: F811
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"state": state, "limit": 2}
    while True:
        page = client.get("/v1/sync/customers", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        items.extend(body["items"])
        if body["next_cursor"] is None:
            return items
        params["cursor"] = body["next_cursor"]


# --- the fleet list -------------------------------------------------------------------


def test_customers_listed_by_state_with_counts_and_what_is_wrong(
    served: Engine,  # noqa: F811
    client: httpx.Client,  # noqa: F811
    engine: Engine,
    emulator: Any,
) -> None:
    well, company_id = acme_customer(engine, emulator)
    unlinked, _ = acme_customer(engine, emulator, link=False)
    conflicted, _ = _in_conflict(served, emulator)
    failing, _ = acme_customer(engine, emulator)
    item_id = _failed_item(engine, failing, "HubSpot said no")
    waiting, _ = acme_customer(engine, emulator)
    with engine.database.transaction() as tx:
        outbound_dirty.mark(tx, waiting, ["company_name"], "m-1")

    by_state = {
        s.value: {i["customer_id"]: i for i in _all_pages(client, s.value)} for s in SyncState
    }
    counts = client.get("/v1/sync/customers").json()["counts"]
    for state, found in by_state.items():
        assert counts[state] == len(found), state  # counts agree with the paged lists
    assert well in by_state["in_sync"]
    assert unlinked in by_state["unlinked"] and unlinked not in by_state["in_sync"]
    assert conflicted in by_state["in_conflict"]
    assert failing in by_state["failed"] and waiting in by_state["pending"]

    row = by_state["in_sync"][well]
    assert row["ban"] == _ban(engine, well)
    assert row["hubspot_company_id"] == company_id
    assert row["states"] == ["in_sync"] and row["problems"] == []
    failed_row = by_state["failed"][failing]
    assert item_id in failed_row["problems"][0] and "HubSpot said no" in failed_row["problems"][0]
    assert "company_name" in by_state["in_conflict"][conflicted]["problems"][0]
    assert "waiting to be pushed" in by_state["pending"][waiting]["problems"][0]
    assert "not linked" in by_state["unlinked"][unlinked]["problems"][0]

    bad = client.get("/v1/sync/customers", params={"state": "broken"})
    assert bad.status_code == 400 and bad.json()["field"] == "state"
    bad = client.get("/v1/sync/customers", params={"cursor": "nonsense"})
    assert bad.status_code == 400 and bad.json()["field"] == "cursor"


def test_states_of_is_most_urgent_first() -> None:
    assert states_of({}) == [SyncState.IN_SYNC]
    assert states_of({"is_pending": True, "is_failed": True, "is_unlinked": True}) == [
        SyncState.FAILED,
        SyncState.UNLINKED,
        SyncState.PENDING,
    ]


def test_a_ban_is_accepted_wherever_a_customer_id_is(
    client: httpx.Client,  # noqa: F811
    engine: Engine,
    emulator: Any,
) -> None:
    customer_id, _ = acme_customer(engine, emulator)
    ban = _ban(engine, customer_id)
    by_id = client.get(f"/v1/sync/customers/{customer_id}/status").json()
    by_ban = client.get(f"/v1/sync/customers/ban:{ban}/status")
    assert by_ban.status_code == 200, by_ban.text
    assert by_ban.json()["customer_id"] == customer_id == by_id["customer_id"]
    assert client.get(f"/v1/sync/customers/ban:{ban}/logs").status_code == 200
    assert client.post(f"/v1/sync/customers/ban:{ban}/to-hubspot").status_code == 200
    missing = client.get("/v1/sync/customers/ban:NO-SUCH/status")
    assert missing.status_code == 404 and missing.json()["field"] == "id"
    empty = client.get("/v1/sync/customers/ban:/status")
    assert empty.status_code == 400
    assert client.get("/v1/sync/customers/not-an-id/status").status_code == 400


# --- the change feed ------------------------------------------------------------------


def test_change_feed_newest_first_with_values_rule_and_reason(
    client: httpx.Client,  # noqa: F811
    engine: Engine,
    emulator: Any,
) -> None:
    customer_id, _ = acme_customer(engine, emulator)
    ban = _ban(engine, customer_id)
    for name in ("Acme One", "Acme Two"):
        with engine.database.transaction() as tx:
            customers.update_columns(tx, customer_id, {"company_name": name})
        assert client.post(f"/v1/sync/customers/{customer_id}/to-hubspot").status_code == 200

    page = client.get("/v1/sync/changes", params={"customer": f"ban:{ban}", "limit": 1})
    assert page.status_code == 200, page.text
    first = page.json()
    (newest,) = first["items"]
    assert newest["customer_id"] == customer_id and newest["ban"] == ban
    name = next(f for f in newest["fields"] if f["field"] == "company_name")
    assert (name["old"], name["new"], name["source"]) == ("Acme One", "Acme Two", "warp")
    assert name["reason"] and "WARP" in name["reason"] and name["sealed"] is False
    older = client.get(
        "/v1/sync/changes",
        params={"customer": customer_id, "limit": 1, "cursor": first["next_cursor"]},
    ).json()["items"][0]
    assert older["at"] <= newest["at"]
    assert next(f for f in older["fields"] if f["field"] == "company_name")["new"] == "Acme One"

    inbound = client.get(
        "/v1/sync/changes", params={"customer": customer_id, "direction": "HUBSPOT_TO_WARP"}
    ).json()["items"]
    assert all(f["source"] != "warp" for i in inbound for f in i["fields"])
    later = client.get(
        "/v1/sync/changes", params={"customer": customer_id, "since": "2999-01-01T00:00:00Z"}
    )
    assert later.status_code == 200 and later.json()["items"] == []
    assert client.get("/v1/sync/changes", params={"customer": "ban:NOPE"}).status_code == 404
    assert client.get("/v1/sync/changes", params={"direction": "UP"}).status_code == 400


def test_sealed_values_stay_sealed_in_the_feed() -> None:
    sealer = Sealer({"k1": b"k" * 32}, "k1")
    changes = sealer.seal_changes(
        {
            "credit_limit": {"old": "5000", "new": "7500", "source": "hubspot", "reason": "r"},
            "company_name": {"warp": "A", "hubspot": "B", "conflict": "MANUAL: waiting"},
            "_skipped": {"x": "y"},
        },
        frozenset({"credit_limit"}),
    )
    credit, name = sorted(crossed_fields(changes), key=lambda f: f.field, reverse=True)
    assert (credit.old, credit.new, credit.sealed) == (None, None, True)
    assert "5000" not in json.dumps(credit.__dict__)
    assert (name.kind, name.old, name.new, name.reason) == ("conflict", "A", "B", "MANUAL: waiting")


# --- failures and replay --------------------------------------------------------------


def test_bulk_replay_by_filter_is_idempotent_and_says_what_it_queued(
    client: httpx.Client,  # noqa: F811
    engine: Engine,
    emulator: Any,
) -> None:
    one, _ = acme_customer(engine, emulator)
    other, _ = acme_customer(engine, emulator)
    said_no = _failed_item(engine, one, "HubSpot said NO to this")
    timeout = _failed_item(engine, one, "timeout")
    elsewhere = _failed_item(engine, other, "HubSpot said no")

    body = {"error_contains": "said no", "customer": f"ban:{_ban(engine, one)}"}
    first = client.post("/v1/sync/queue/replay", json=body)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["matched"] == 1
    assert [i["id"] for i in answer["replayed"]] == [said_no]
    again = client.post("/v1/sync/queue/replay", json=body).json()
    assert again["matched"] == 0 and again["replayed"] == []
    with engine.database.transaction() as tx:
        assert sync_queue.get(tx, timeout)["status"] == "FAILED"  # type: ignore[index]
        assert sync_queue.get(tx, elsewhere)["status"] == "FAILED"  # type: ignore[index]

    young = client.post("/v1/sync/queue/replay", json={"older_than_seconds": 3600}).json()
    assert young["matched"] == 0  # every row here is younger than an hour
    by_kind = client.post(
        "/v1/sync/queue/replay", json={"kind": "api_test", "customer": other}
    ).json()
    assert [i["id"] for i in by_kind["replayed"]] == [elsewhere]
    bad = client.post("/v1/sync/queue/replay", json={"status": "COMPLETED"})
    assert bad.status_code == 400 and bad.json()["field"] == "status"


def test_an_inbound_edit_that_cannot_be_applied_is_a_replayable_queue_failure(
    client: httpx.Client,  # noqa: F811
    receiver: str,
    engine: Engine,
    emulator: Any,
) -> None:
    customer_id, company_id = acme_customer(engine, emulator)
    # warp_credit_limit is HUBSPOT_WINS; 10**14 overflows WARP's DECIMAL(12, 2): a value
    # WARP refuses, so the edit fails for good.
    events = [change(company_id, "warp_credit_limit", "100000000000000")]
    delivered = deliver(receiver, COMPANY_PATH, events)
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["failed"] == 1

    ban = f"ban:{_ban(engine, customer_id)}"
    failed = client.get("/v1/sync/queue", params={"status": "FAILED", "customer_id": ban})
    (item,) = [i for i in failed.json()["items"] if i["kind"] == "inbound_batch"]
    assert item["hubspot_object_id"] == company_id
    assert "warp_credit_limit" in item["last_error"]
    listed = client.get("/v1/sync/customers", params={"state": "failed"}).json()["items"]
    assert customer_id in {i["customer_id"] for i in listed}
    metrics = client.get("/metrics").text
    assert "hubspot_sync_inbound_failed_events 1.0" in metrics

    # Replayed as it is, it fails again: the same row, FAILED, no second row.
    replay = client.post(f"/v1/sync/queue/{item['id']}/replay")
    assert replay.status_code == 202, replay.text
    assert engine.dispatcher.wait_idle(30)  # type: ignore[attr-defined]
    again = client.get("/v1/sync/queue", params={"status": "FAILED", "customer_id": customer_id})
    assert [i["id"] for i in again.json()["items"] if i["kind"] == "inbound_batch"] == [item["id"]]

    # A later edit WARP can take applies as usual; the failed one stays listed.
    ok = deliver(receiver, COMPANY_PATH, [change(company_id, "warp_credit_limit", "7500")])
    assert ok.json()["failed"] == 0


# --- pause and resume -----------------------------------------------------------------


def _push(url: str, issuer: OidcIssuer, message: Any, message_id: str) -> httpx.Response:  # noqa: F811
    """A Pub/Sub push with the OIDC token the push subscription sends."""
    from shared.messages.envelope import encode_push_envelope

    token = issuer.token(audience=AUDIENCE, email=CALLER)
    return httpx.post(
        url,
        content=encode_push_envelope(message, message_id),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )


def _send(url: str, issuer: OidcIssuer, message: Any, message_id: str) -> dict[str, Any]:  # noqa: F811
    response = _push(url, issuer, message, message_id)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _company_name(engine: Engine, customer_id: str) -> str:
    with engine.database.transaction() as tx:
        row = customers.get(tx, customer_id)
    assert row is not None
    return str(row["company_name"])


def test_pause_stores_everything_writes_nothing_and_resume_drains_in_order(
    client: httpx.Client,  # noqa: F811
    receiver: str,
    outbound: str,
    issuer: OidcIssuer,  # noqa: F811
    engine: Engine,
    emulator: Any,
) -> None:
    inbound_id, company_id = acme_customer(engine, emulator)
    outbound_id, outbound_company = acme_customer(engine, emulator)
    paused = client.post("/v1/sync/pause", json={"reason": "portal migration"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["pause"]["paused"] is True and paused.json()["changed"] is True
    assert client.post("/v1/sync/pause", json={}).json()["changed"] is False  # idempotent

    # Shown by the fleet view, the customer status and /metrics.
    assert client.get("/v1/sync/customers").json()["pause"]["reason"] == "portal migration"
    assert client.get(f"/v1/sync/customers/{inbound_id}/status").json()["pause"]["paused"]
    assert "hubspot_sync_paused 1.0" in client.get("/metrics").text

    # The writing routes refuse; reading ones answer.
    refused = client.post(f"/v1/sync/customers/{inbound_id}/to-hubspot")
    assert refused.status_code == 409 and "paused" in refused.json()["error"]
    assert client.post("/v1/sync/reconcile", json={"entity_type": "customer"}).status_code == 409

    # Webhooks: stored, deduplicated, not applied. Two edits of one property arrive
    # newest first; the drain applies them in occurrence order, so the newest wins.
    at = now_ms()
    newer = change(company_id, "name", "Acme Newer", at=at + 1)
    older = change(company_id, "name", "Acme Older", at=at)
    assert deliver(receiver, COMPANY_PATH, [newer]).json()["stored"] == 1
    assert deliver(receiver, COMPANY_PATH, [older]).json()["stored"] == 1
    assert deliver(receiver, COMPANY_PATH, [newer]).json()["duplicates"] == 1
    # Change messages: deduplicated, the customer marked dirty, HubSpot not written.
    with engine.database.transaction() as tx:
        customers.update_columns(tx, outbound_id, {"company_name": "Acme From WARP"})
    message = _change(outbound_id, "company_name")
    assert _send(outbound, issuer, message, "paused-1")["outcome"] == "accepted"
    assert _send(outbound, issuer, message, "paused-1")["outcome"] == "duplicate"
    # A delete writes HubSpot at once and has nowhere to wait: refused for redelivery.
    deleted = _push(outbound, issuer, _change(inbound_id, operation="DELETE"), "paused-del")
    assert deleted.status_code == 503 and "paused" in deleted.json()["error"]
    assert engine.dispatcher.wait_idle(30)  # type: ignore[attr-defined]
    assert _company_name(engine, inbound_id) == "Acme Telecom"
    assert emulator.values("companies", outbound_company)["name"] == "Acme Telecom"
    with engine.database.transaction() as tx:
        assert outbound_dirty.pending_count(tx) >= 1

    resumed = client.post("/v1/sync/resume")
    assert resumed.status_code == 200, resumed.text
    answer = resumed.json()
    assert answer["was_paused"] is True and answer["pause"]["paused"] is False
    assert answer["drained"]["events"] >= 2 and answer["drained"]["customers"] >= 1
    assert engine.dispatcher.wait_idle(30)  # type: ignore[attr-defined]
    assert _company_name(engine, inbound_id) == "Acme Newer"
    assert emulator.values("companies", outbound_company)["name"] == "Acme From WARP"
    assert "hubspot_sync_paused 0.0" in client.get("/metrics").text
    assert client.post("/v1/sync/resume").json()["was_paused"] is False


def test_cli_status_changes_pause_resume(
    client: httpx.Client,  # noqa: F811
    engine: Engine,
    emulator: Any,
) -> None:
    from shared.cli.main import cli

    customer_id, _ = acme_customer(engine, emulator, link=False)
    runner = CliRunner()
    paused = runner.invoke(cli, ["pause", "--reason", "cli test"])
    assert paused.exit_code == 0, paused.output
    assert "paused" in paused.output

    shown = runner.invoke(cli, ["status", "--state", "unlinked", "--output", "json"])
    assert shown.exit_code == 0, shown.output
    page = json.loads(shown.stdout)  # stderr names the database used
    assert customer_id in {i["customer_id"] for i in page["items"]}
    assert page["pause"]["paused"] is True
    piped = runner.invoke(cli, ["status", "--state", "unlinked"])
    assert piped.exit_code == 0 and customer_id in piped.output  # full ids when piped
    assert "PAUSED" in piped.output

    feed = runner.invoke(cli, ["changes", "--output", "json", "--limit", "5"])
    assert feed.exit_code == 0, feed.output
    assert "items" in json.loads(feed.stdout)
    resumed = runner.invoke(cli, ["resume"])
    assert resumed.exit_code == 0, resumed.output
    assert client.get("/v1/sync/customers").json()["pause"]["paused"] is False
    wrong = runner.invoke(cli, ["status", "--state", "nope"])
    assert wrong.exit_code == 2


def test_queued_work_is_held_while_paused_and_run_once_on_resume(
    client: httpx.Client,  # noqa: F811
    engine: Engine,
    emulator: Any,
) -> None:
    from tests.api.test_api import ran

    customer_id, _ = acme_customer(engine, emulator)
    item_id = _failed_item(engine, customer_id, "held while paused")
    assert client.post("/v1/sync/pause", json={"reason": "hold"}).status_code == 200
    # A replay while paused queues the row; its task answers without running it.
    replayed = client.post("/v1/sync/queue/replay", json={"customer": customer_id})
    assert [i["id"] for i in replayed.json()["replayed"]] == [item_id]
    assert engine.dispatcher.wait_idle(30)  # type: ignore[attr-defined]
    assert item_id not in ran
    with engine.database.transaction() as tx:
        assert sync_queue.get(tx, item_id)["status"] == "QUEUED"  # type: ignore[index]

    resumed = client.post("/v1/sync/resume").json()
    assert resumed["drained"]["queue_items"] >= 1
    assert engine.dispatcher.wait_idle(30)  # type: ignore[attr-defined]
    assert ran.count(item_id) == 1
    with engine.database.transaction() as tx:
        assert sync_queue.get(tx, item_id)["status"] == "COMPLETED"  # type: ignore[index]


def test_a_reconcile_continuation_is_held_while_paused_and_runs_on_resume(
    client: httpx.Client,  # noqa: F811
    engine: Engine,
    emulator: Any,
) -> None:
    acme_customer(engine, emulator)
    assert client.post("/v1/sync/pause", json={}).status_code == 200
    # A dry run writes nothing, so it may start while paused; its continuation is held.
    started = client.post("/v1/sync/reconcile", json={"entity_type": "customer", "dry_run": True})
    assert started.status_code == 202, started.text
    run_id = started.json()["run"]["id"]
    assert engine.dispatcher.wait_idle(30)  # type: ignore[attr-defined]
    run = client.get(f"/v1/sync/reconciliation-runs/{run_id}").json()
    assert run["status"] == "RUNNING"

    resumed = client.post("/v1/sync/resume").json()
    assert resumed["drained"]["held_tasks"] >= 1
    assert engine.dispatcher.wait_idle(30)  # type: ignore[attr-defined]
    assert client.get(f"/v1/sync/reconciliation-runs/{run_id}").json()["status"] == "COMPLETED"
