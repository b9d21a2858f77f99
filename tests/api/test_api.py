"""The management API over real HTTP: a real database, the HubSpot emulator, real tokens."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.api.openapi import render_document
from shared.api.routes import DOCUMENT_PATH, ROUTES
from shared.db.repositories import (
    customers,
    field_state,
    reconciliation_runs,
    sync_config,
    sync_log,
    sync_queue,
)
from shared.engine import Engine, resolve
from shared.engine.sync import BOTH_WAYS, sync_customers
from shared.errors import WarpChangedDuringSync
from shared.retry import register_runner
from tests.conftest import engine_settings, serving
from tests.helpers.customers import acme_customer
from tests.helpers.functions import FunctionProcess, serve_function
from tests.helpers.oidc_issuer import OidcIssuer
from tests.helpers.races import edit_during_first_call

pytestmark = pytest.mark.integration

TOKEN = "api-token-for-tests"
AUDIENCE = "https://sync-api.example.run.app"
CALLER = "warp-backend@warp-prod.iam.gserviceaccount.com"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

ran: list[str] = []


def _test_runner(engine: Engine, row: Any) -> None:
    """Runner of ``api_test`` queue rows: records that it ran."""
    ran.append(str(row["id"]))


register_runner("api_test", "tests.api.test_api:_test_runner")


@pytest.fixture(scope="module")
def issuer() -> Iterator[OidcIssuer]:
    server = OidcIssuer()
    yield server
    server.close()


@contextlib.contextmanager
def configured(
    engine: Engine, database_url: str, emulator: Any, **overrides: Any
) -> Iterator[Engine]:
    """The process-wide engine with these settings for the duration (restored after)."""
    settings = engine_settings(database_url, emulator.url, **overrides)
    with serving(dataclasses.replace(engine, settings=settings)) as replaced:
        yield replaced


@pytest.fixture(scope="module")
def served(
    engine: Engine, database_url: str, emulator: Any, issuer: OidcIssuer
) -> Iterator[Engine]:
    """The engine the served sync_api uses: token and OIDC both configured.

    Its mappings are cached apart from ``engine``'s: a test that saves a mapping and
    syncs uses this one, as the API does.
    """
    with configured(
        engine,
        database_url,
        emulator,
        sync_api_token=TOKEN,
        oidc_audience=AUDIENCE,
        oidc_allowed_emails=CALLER,
        google_certs_url=issuer.certs_url,
    ) as replaced:
        yield replaced


@pytest.fixture(scope="module")
def api(served: Engine) -> Iterator[str]:
    """The sync_api function served in-process, with the ``served`` engine."""
    with serve_function("sync_api") as url:
        yield url


@pytest.fixture(scope="module")
def client(api: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api, headers=AUTH, timeout=30) as http:
        yield http


def _in_conflict(
    engine: Engine, emulator: Any, hubspot_name: str = "Acme HubSpot"
) -> tuple[str, str]:
    """A customer whose company_name is MANUAL and differs on both sides: a conflict.

    ``engine`` is the one whose mappings the API reads (``served``).
    """
    customer_id, company_id = acme_customer(engine, emulator, name=hubspot_name)
    with engine.database.transaction() as tx:
        sync_config.save(
            tx,
            config_name=f"manual-{customer_id[:8]}",
            customer_id=customer_id,
            field_mappings={
                "company_name": {
                    "hubspot_property": "name",
                    "warp_field": "company_name",
                    "sync_direction": "BIDIRECTIONAL",
                    "conflict_resolution": "MANUAL",
                }
            },
        )
    engine.reload_mappings()
    (result,) = sync_customers(engine, [customer_id], allowed=BOTH_WAYS, triggered_by="test")
    assert result.status == "conflict", result
    return customer_id, company_id


# --- auth -----------------------------------------------------------------------------


def test_bearer_token_right_wrong_missing(api: str, engine: Engine, emulator: Any) -> None:
    customer_id, _ = acme_customer(engine, emulator)
    url = f"{api}/v1/sync/customers/{customer_id}/status"
    assert httpx.get(url, headers=AUTH).status_code == 200
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert "error" in missing.json()
    assert httpx.get(url, headers={"Authorization": "Bearer not-the-token"}).status_code == 403
    assert httpx.get(url, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401


def test_google_identity_token(api: str, issuer: OidcIssuer, engine: Engine, emulator: Any) -> None:
    customer_id, _ = acme_customer(engine, emulator)
    url = f"{api}/v1/sync/customers/{customer_id}/status"

    def call(token: str) -> httpx.Response:
        return httpx.get(url, headers={"Authorization": f"Bearer {token}"})

    assert call(issuer.token(audience=AUDIENCE, email=CALLER)).status_code == 200
    assert call(issuer.token(audience="https://other.example", email=CALLER)).status_code == 403
    assert call(issuer.token(audience=AUDIENCE, email="someone@else.example")).status_code == 403
    unverified = issuer.token(audience=AUDIENCE, email=CALLER, email_verified=False)
    assert call(unverified).status_code == 403
    other_issuer = OidcIssuer()  # a valid-looking token signed by a key Google never had
    try:
        assert call(other_issuer.token(audience=AUDIENCE, email=CALLER)).status_code == 403
    finally:
        other_issuer.close()


def test_metrics_open_or_with_its_own_token(
    served: Engine, api: str, database_url: str, emulator: Any
) -> None:
    opened = httpx.get(f"{api}/metrics")
    assert opened.status_code == 200
    assert opened.headers["Content-Type"].startswith("text/plain")
    with configured(
        served, database_url, emulator, sync_api_token=TOKEN, metrics_token="scrape-me"
    ):
        assert httpx.get(f"{api}/metrics").status_code == 401
        wrong = httpx.get(f"{api}/metrics", headers=AUTH)
        assert wrong.status_code == 403
        good = httpx.get(f"{api}/v1/sync/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert good.status_code == 200


def test_no_credentials_configured_refuses_everything(
    served: Engine, api: str, database_url: str, emulator: Any
) -> None:
    with configured(served, database_url, emulator):
        answer = httpx.get(f"{api}/v1/sync/queue", headers=AUTH)
    assert answer.status_code == 503
    assert "SYNC_API_TOKEN" in answer.json()["error"]


# --- routing and input errors ---------------------------------------------------------


def test_unknown_route_wrong_method_bad_ids(client: httpx.Client) -> None:
    assert client.get("/v1/sync/nowhere").status_code == 404
    wrong = client.get(f"/v1/sync/customers/{uuid.uuid4()}/to-hubspot")
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "POST"
    assert client.delete("/v1/sync/queue").status_code == 405
    bad = client.get("/v1/sync/customers/not-a-uuid/status")
    assert bad.status_code == 400
    assert bad.json()["field"] == "id"
    unknown = client.get(f"/v1/sync/customers/{uuid.uuid4()}/status")
    assert unknown.status_code == 404


def test_bad_query_and_body_name_the_field(
    client: httpx.Client, engine: Engine, emulator: Any
) -> None:
    customer_id, _ = acme_customer(engine, emulator)
    base = f"/v1/sync/customers/{customer_id}"
    assert client.get(f"{base}/logs", params={"limit": "0"}).json()["field"] == "limit"
    assert client.get(f"{base}/logs", params={"status": "NOPE"}).json()["field"] == "status"
    assert client.get(f"{base}/logs", params={"cursor": "%%%"}).json()["field"] == "cursor"
    assert client.get("/v1/sync/queue", params={"status": "DONE"}).json()["field"] == "status"
    resolve = f"{base}/resolve-conflict"
    not_json = client.post(resolve, content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    assert client.post(resolve, json=[1]).status_code == 400
    assert client.post(resolve, json={}).json()["field"] == "field_name"
    bad = client.post(resolve, json={"field_name": "company_name", "resolution": "flip_a_coin"})
    assert bad.status_code == 400 and bad.json()["field"] == "resolution"
    no_value = client.post(
        resolve, json={"field_name": "company_name", "resolution": "use_custom_value"}
    )
    assert no_value.status_code == 400 and no_value.json()["field"] == "value"
    extra = client.post(
        resolve,
        json={"field_name": "company_name", "resolution": "use_warp_value", "colour": "red"},
    )
    assert extra.status_code == 400 and extra.json()["field"] == "colour"
    huge = client.post(resolve, content=b'{"x": "' + b"a" * 70_000 + b'"}')
    assert huge.status_code == 413
    user = client.get(f"{base}/status", headers={"X-Triggered-By-User": "x" * 101})
    assert user.status_code == 400 and user.json()["field"] == "X-Triggered-By-User"
    # Booleans are JSON booleans: pydantic's lax mode read "yes", "on" and 1 as true.
    for flag, value in (("dry_run", "yes"), ("dry_run", 1), ("force", "on")):
        run = client.post("/v1/sync/reconcile", json={"customer_id": customer_id, flag: value})
        assert run.status_code == 400 and run.json()["field"] == flag, run.text
    unknown = client.post("/v1/sync/reconcile", json={"customer_id": str(uuid.uuid4())})
    assert unknown.status_code == 404 and unknown.json()["field"] == "customer_id"


_BAD_TIMES = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "1969-12-31T23:59:59Z",
    "2024-01-01T00:00:00",
]


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(["resolve", "reconcile"]),
    field=st.sampled_from(
        ["field_name", "resolution", "value", "customer_id", "dry_run", "force", "run_type"]
    ),
    raw=st.sampled_from(["1e400", "-1e400", "1E+309", *(json.dumps(t) for t in _BAD_TIMES)]),
)
def test_non_finite_numbers_and_bad_times_in_bodies_are_400(
    client: httpx.Client, route: str, field: str, raw: str
) -> None:
    customer_id = str(uuid.uuid4())
    if route == "resolve":
        url = f"/v1/sync/customers/{customer_id}/resolve-conflict"
        body = {"field_name": "company_name", "resolution": "use_custom_value", "value": "x"}
    else:
        url, body = "/v1/sync/reconcile", {"customer_id": customer_id, "dry_run": True}
    text = json.dumps({**body, field: "__raw__"}).replace('"__raw__"', raw)
    response = client.post(url, content=text, headers={"Content-Type": "application/json"})
    # A time is text to these fields (400 or 404 for the unknown customer), a huge number
    # is never JSON this API reads.
    allowed = {400} if raw[0] != '"' else {400, 404}
    assert response.status_code in allowed, response.text


def test_log_cursors_with_times_out_of_range_are_400(
    client: httpx.Client, engine: Engine, emulator: Any
) -> None:
    customer_id, _ = acme_customer(engine, emulator)
    for when in _BAD_TIMES:
        cursor = base64.urlsafe_b64encode(f"{when}|{uuid.uuid4()}".encode()).decode()
        response = client.get(f"/v1/sync/customers/{customer_id}/logs", params={"cursor": cursor})
        assert response.status_code == 400 and response.json()["field"] == "cursor", response.text


# --- sync now -------------------------------------------------------------------------


def test_to_hubspot_and_from_hubspot(client: httpx.Client, engine: Engine, emulator: Any) -> None:
    # warp_status is WARP_WINS, warp_credit_limit HUBSPOT_WINS: each side holds one newer value.
    customer_id, company_id = acme_customer(
        engine, emulator, warp_status="SUSPENDED", warp_credit_limit="7500"
    )
    out = client.post(
        f"/v1/sync/customers/{customer_id}/to-hubspot", headers={"X-Triggered-By-User": "ops@warp"}
    )
    assert out.status_code == 200, out.text
    body = out.json()
    assert body["status"] == "synced"
    assert [(c["field"], c["action"], c["old"], c["new"]) for c in body["changed"]] == [
        ("status", "WRITE_HUBSPOT", "SUSPENDED", "ACTIVE")
    ]
    skipped = {s["field"]: s["reason"] for s in body["skipped"]}
    assert "inbound" in skipped["credit_limit"]
    assert emulator.values("companies", company_id)["warp_status"] == "ACTIVE"

    back = client.post(f"/v1/sync/customers/{customer_id}/from-hubspot")
    assert back.status_code == 200
    assert [c["field"] for c in back.json()["changed"]] == ["credit_limit"]
    with engine.database.transaction() as tx:
        row = customers.get(tx, customer_id)
        logs = sync_log.list_for_customer(tx, customer_id)
    assert row is not None and row["credit_limit"] == Decimal("7500.00")
    assert {log["triggered_by"] for log in logs} == {"api"}
    assert "ops@warp" in {log["triggered_by_user"] for log in logs}

    again = client.post(f"/v1/sync/customers/{customer_id}/to-hubspot").json()
    assert again["status"] == "in_sync" and again["changed"] == []


def test_to_hubspot_links_an_unlinked_customer(
    client: httpx.Client, engine: Engine, emulator: Any
) -> None:
    customer_id, _ = acme_customer(engine, emulator, link=False)
    pulled = client.post(f"/v1/sync/customers/{customer_id}/from-hubspot")
    assert pulled.status_code == 409
    assert pulled.json()["error"] == "customer is not linked to a HubSpot company"
    pushed = client.post(f"/v1/sync/customers/{customer_id}/to-hubspot")
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["linked"]  # found or created through outbound's linking
    with engine.database.transaction() as tx:
        row = customers.get(tx, customer_id)
    assert row is not None and row["external_ids"].get("hubspot_company_id")
    again = client.post(f"/v1/sync/customers/{customer_id}/to-hubspot").json()
    assert again["linked"] == [] and again["status"] == "in_sync"
    assert client.post(f"/v1/sync/customers/{customer_id}/from-hubspot").status_code == 200
    for direction in ("to-hubspot", "from-hubspot"):
        assert client.post(f"/v1/sync/customers/{uuid.uuid4()}/{direction}").status_code == 404


def test_hubspot_outage_is_503(client: httpx.Client, engine: Engine, emulator: Any) -> None:
    customer_id, _ = acme_customer(engine, emulator, warp_status="TRIAL")
    emulator.set_faults(outage=True)
    try:
        answer = client.post(f"/v1/sync/customers/{customer_id}/to-hubspot")
    finally:
        emulator.set_faults(outage=False)
    assert answer.status_code == 503
    assert answer.json()["retryable"] is True


# --- status, logs, conflicts, resolution ----------------------------------------------


def test_status_shows_links_times_and_field_states(
    client: httpx.Client, engine: Engine, emulator: Any
) -> None:
    customer_id, company_id = acme_customer(engine, emulator, warp_status="TRIAL")
    before = client.get(f"/v1/sync/customers/{customer_id}/status").json()
    # Nothing has crossed yet: the answer says so rather than leave null values to read.
    assert {f["state"] for f in before["fields"]} == {"not_crossed_yet"}
    client.post(f"/v1/sync/customers/{customer_id}/to-hubspot")
    body = client.get(f"/v1/sync/customers/{customer_id}/status").json()
    assert {f["field"]: f["state"] for f in body["fields"]}["status"] == "crossed"
    # The company was linked already; the contact was linked by to-hubspot.
    assert body["links"]["hubspot_company_id"] == company_id
    assert body["links"]["hubspot_contact_id"]
    assert body["last_synced_to_hubspot"] is not None
    fields = {f["field"]: f for f in body["fields"]}
    assert fields["status"]["last_synced_direction"] == "WARP_TO_HUBSPOT"
    assert fields["status"]["hubspot_value"] == "ACTIVE"
    assert fields["status"]["conflict_resolution"] == "WARP_WINS"
    email = fields["contact_email_address"]
    assert (email["entity_type"], email["hubspot_value"]) == ("contact", "jane@acme.example")
    assert body["open_conflicts"] == 0


def test_logs_are_paged_newest_first_and_filtered(
    client: httpx.Client, engine: Engine, emulator: Any
) -> None:
    customer_id, _ = acme_customer(engine, emulator)
    with engine.database.transaction() as tx:
        for i, status in enumerate(["SUCCESS", "FAILED", "SUCCESS", "CONFLICT", "SUCCESS"]):
            sync_log.record(
                tx,
                entity_type="customer",
                entity_id=customer_id,
                operation="UPDATE",
                direction="HUBSPOT_TO_WARP" if i % 2 else "WARP_TO_HUBSPOT",
                status=status,
                error_message=f"entry {i}",
                started_at=datetime(2026, 1, 1, 12, i, tzinfo=UTC),
            )
    url = f"/v1/sync/customers/{customer_id}/logs"
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(url, params=params).json()
        seen += [item["error_message"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"entry {i}" for i in range(4, -1, -1)]
    failed = client.get(url, params={"status": "FAILED"}).json()["items"]
    assert [i["error_message"] for i in failed] == ["entry 1"]
    inbound = client.get(url, params={"direction": "HUBSPOT_TO_WARP"}).json()["items"]
    assert [i["error_message"] for i in inbound] == ["entry 3", "entry 1"]


def test_conflicts_show_both_values_and_rule(
    served: Engine, client: httpx.Client, engine: Engine, emulator: Any
) -> None:
    customer_id, _ = _in_conflict(served, emulator)
    body = client.get(f"/v1/sync/customers/{customer_id}/conflicts").json()
    (conflict,) = body["conflicts"]
    assert conflict["field"] == "company_name"
    assert conflict["warp_value"] == "Acme Telecom"
    assert conflict["hubspot_value"] == "Acme HubSpot"
    assert conflict["rule"] == "MANUAL"
    assert conflict["conflict_detected_at"] is not None
    assert conflict["hubspot_modified_at"] is not None
    # WARP's time is the field's own, as the rules use it: a write of another column
    # (which moves the row's updated_at) leaves it alone, a change message naming the
    # field moves it.
    detected_with = conflict["warp_modified_at"]
    changed_at = datetime.now(UTC) + timedelta(hours=1)
    with engine.database.transaction() as tx:
        tx.execute(
            "UPDATE accounts.customers SET status = 'SUSPENDED', updated_at = NOW() + "
            "interval '1 day' WHERE id = CAST(:id AS uuid)",
            {"id": customer_id},
        )
    (other,) = client.get(f"/v1/sync/customers/{customer_id}/conflicts").json()["conflicts"]
    assert other["warp_modified_at"] == detected_with
    with engine.database.transaction() as tx:
        field_state.record_warp_changes(
            tx,
            conflict["entity_type"],
            customer_id,
            conflict["hubspot_object_id"],
            ["company_name"],
            changed_at,
        )
    (later,) = client.get(f"/v1/sync/customers/{customer_id}/conflicts").json()["conflicts"]
    assert datetime.fromisoformat(later["warp_modified_at"]) == changed_at
    assert client.get(f"/v1/sync/customers/{uuid.uuid4()}/conflicts").status_code == 404


@pytest.mark.parametrize(
    ("resolution", "value", "warp_after", "hubspot_after", "writes"),
    [
        ("use_hubspot_value", None, "Acme HubSpot", "Acme HubSpot", (False, True)),
        ("use_warp_value", None, "Acme Telecom", "Acme Telecom", (True, False)),
        ("use_custom_value", "Acme Holdings", "Acme Holdings", "Acme Holdings", (True, True)),
    ],
)
def test_resolve_conflict(
    served: Engine,
    client: httpx.Client,
    engine: Engine,
    emulator: Any,
    resolution: str,
    value: str | None,
    warp_after: str,
    hubspot_after: str,
    writes: tuple[bool, bool],
) -> None:
    customer_id, company_id = _in_conflict(served, emulator)
    body: dict[str, Any] = {"field_name": "company_name", "resolution": resolution}
    if value is not None:
        body["value"] = value
    url = f"/v1/sync/customers/{customer_id}/resolve-conflict"
    answer = client.post(url, json=body, headers={"X-Triggered-By-User": "alice@warp"})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["wrote_hubspot"], result["wrote_warp"]) == writes
    assert result["resolved_by"] == "alice@warp"
    assert emulator.values("companies", company_id)["name"] == hubspot_after
    with engine.database.transaction() as tx:
        row = customers.get(tx, customer_id)
        state = field_state.get(tx, "customer", customer_id, "company_name")
        log = sync_log.get(tx, result["log_id"])
    assert row is not None and row["company_name"] == warp_after
    assert state is not None and state["is_in_conflict"] is False
    assert state["conflict_resolved_at"] is not None
    assert log is not None and log["triggered_by_user"] == "alice@warp"
    assert log["triggered_by"] == "manual"
    assert log["field_changes"]["company_name"]["source"] == resolution
    assert client.get(f"/v1/sync/customers/{customer_id}/conflicts").json()["conflicts"] == []
    # Resolved means in step: a sync afterwards finds nothing to do, and a second
    # resolution finds no conflict.
    assert client.post(f"/v1/sync/customers/{customer_id}/from-hubspot").json()["status"] == (
        "in_sync"
    )
    assert client.post(url, json=body).status_code == 409


def test_resolution_does_not_overwrite_a_warp_edit_made_meanwhile(
    served: Engine, engine: Engine, emulator: Any
) -> None:
    customer_id, company_id = _in_conflict(served, emulator)

    def application_edit() -> None:
        with engine.database.transaction() as tx:
            customers.update_columns(tx, customer_id, {"company_name": "Acme Renamed"})

    # The resolution reads the row, then HubSpot; WARP's application renames meanwhile.
    with (
        edit_during_first_call(served, application_edit) as racing,
        pytest.raises(WarpChangedDuringSync) as raised,
    ):
        resolve.resolve_conflict(
            racing, customer_id, "company_name", resolve.Resolution.USE_HUBSPOT_VALUE
        )
    assert raised.value.retryable  # the API answers 503: try again, with the new value shown
    with engine.database.transaction() as tx:
        row = customers.get(tx, customer_id)
        state = field_state.get(tx, "customer", customer_id, "company_name")
    assert row is not None and row["company_name"] == "Acme Renamed"
    assert state is not None and state["is_in_conflict"] is True
    assert emulator.values("companies", company_id)["name"] == "Acme HubSpot"


def test_resolve_refusals(
    served: Engine, client: httpx.Client, engine: Engine, emulator: Any
) -> None:
    customer_id, company_id = _in_conflict(served, emulator)
    url = f"/v1/sync/customers/{customer_id}/resolve-conflict"
    unknown_field = client.post(
        url, json={"field_name": "shoe_size", "resolution": "use_warp_value"}
    )
    assert unknown_field.status_code == 404 and unknown_field.json()["field"] == "field_name"
    calm = client.post(url, json={"field_name": "status", "resolution": "use_warp_value"})
    assert calm.status_code == 409
    too_long = client.post(
        url,
        json={"field_name": "company_name", "resolution": "use_custom_value", "value": "x" * 300},
    )
    # WARP's column refuses it before HubSpot is touched: a 400, HubSpot unchanged, and
    # the answer in our words, naming the field and the limit (never PostgreSQL's text).
    assert too_long.status_code == 400 and too_long.json()["field"] == "value"
    assert too_long.json()["error"] == "company_name: at most 255 characters (this value has 300)"
    empty = client.post(
        url, json={"field_name": "company_name", "resolution": "use_custom_value", "value": None}
    )
    assert empty.status_code == 400, empty.text
    assert empty.json()["error"] == "company_name: WARP requires a value"
    assert emulator.values("companies", company_id)["name"] == "Acme HubSpot"
    nobody = f"/v1/sync/customers/{uuid.uuid4()}/resolve-conflict"
    assert (
        client.post(
            nobody, json={"field_name": "status", "resolution": "use_warp_value"}
        ).status_code
        == 404
    )


def test_a_value_warp_schema_refuses_is_400_in_our_words(
    client: httpx.Client, engine: Engine, emulator: Any
) -> None:
    customer_id, company_id = acme_customer(engine, emulator, warp_status="TRIAL")
    with engine.database.transaction() as tx:
        sync_config.save(
            tx,
            config_name=f"manual-status-{customer_id[:8]}",
            customer_id=customer_id,
            field_mappings={
                "status": {
                    "hubspot_property": "warp_status",
                    "warp_field": "status",
                    "sync_direction": "BIDIRECTIONAL",
                    "conflict_resolution": "MANUAL",
                }
            },
        )
    engine.reload_mappings()
    (result,) = sync_customers(engine, [customer_id], allowed=BOTH_WAYS, triggered_by="test")
    assert result.status == "conflict", result
    refused = client.post(
        f"/v1/sync/customers/{customer_id}/resolve-conflict",
        json={"field_name": "status", "resolution": "use_custom_value", "value": "DELETED"},
    )
    # The status CHECK constraint refuses it: no PostgreSQL text, no constraint internals.
    assert refused.status_code == 400, refused.text
    assert refused.json() == {
        "error": "status: not allowed by a rule of WARP's schema",
        "field": "value",
    }
    assert emulator.values("companies", company_id)["warp_status"] == "TRIAL"


def test_oidc_email_is_the_resolver(
    served: Engine, api: str, issuer: OidcIssuer, engine: Engine, emulator: Any
) -> None:
    customer_id, _ = _in_conflict(served, emulator)
    token = issuer.token(audience=AUDIENCE, email=CALLER)
    answer = httpx.post(
        f"{api}/v1/sync/customers/{customer_id}/resolve-conflict",
        json={"field_name": "company_name", "resolution": "use_warp_value"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200
    assert answer.json()["resolved_by"] == CALLER


# --- reconciliation runs and the queue ------------------------------------------------


def test_runs_listed_and_read_by_id(client: httpx.Client, engine: Engine, emulator: Any) -> None:
    customer_id, _ = acme_customer(engine, emulator)
    with engine.database.transaction() as tx:
        full, _ = reconciliation_runs.start(tx, run_type="FULL", entity_type="customer")
        reconciliation_runs.finish(
            tx,
            str(full["id"]),
            status="COMPLETED",
            counts={"total_records": 10, "records_in_sync": 8, "records_updated": 2},
            report={"drift": {"status": 2}},
        )
        one, _ = reconciliation_runs.start(
            tx, run_type="CUSTOMER_SPECIFIC", entity_type="customer", customer_id=customer_id
        )
    runs = client.get("/v1/sync/reconciliation-runs").json()["items"]
    by_id = {r["id"]: r for r in runs}
    assert by_id[str(full["id"])]["records_updated"] == 2
    assert by_id[str(one["id"])]["status"] == "RUNNING"
    mine = client.get("/v1/sync/reconciliation-runs", params={"customer_id": customer_id}).json()
    assert [r["id"] for r in mine["items"]] == [str(one["id"])]
    detail = client.get(f"/v1/sync/reconciliation-runs/{full['id']}").json()
    assert detail["report"] == {"drift": {"status": 2}}
    assert client.get(f"/v1/sync/reconciliation-runs/{uuid.uuid4()}").status_code == 404


def test_reconcile_one_customer_inline_and_all_as_a_task(
    served: Engine, client: httpx.Client, engine: Engine, emulator: Any
) -> None:
    customer_id, company_id = acme_customer(engine, emulator, warp_status="TRIAL")
    one = client.post("/v1/sync/reconcile", json={"customer_id": customer_id})
    assert one.status_code == 200, one.text
    run = one.json()["run"]
    assert (run["run_type"], run["status"], run["customer_id"]) == (
        "CUSTOMER_SPECIFIC",
        "COMPLETED",
        customer_id,
    )
    assert run["records_updated"] == 1
    assert emulator.values("companies", company_id)["warp_status"] == "ACTIVE"

    dry = client.post("/v1/sync/reconcile", json={"dry_run": True, "force": True})
    assert dry.status_code == 202, dry.text
    run_id = dry.json()["run"]["id"]
    assert dry.json()["run"]["status"] == "RUNNING"
    assert served.dispatcher.wait_idle(60)  # type: ignore[attr-defined]
    done = client.get(f"/v1/sync/reconciliation-runs/{run_id}").json()
    assert done["status"] == "COMPLETED" and done["dry_run"] is True
    assert done["total_records"] >= 1
    assert run_id in {r["id"] for r in client.get("/v1/sync/reconciliation-runs").json()["items"]}

    unknown = client.post("/v1/sync/reconcile", json={"customer_id": str(uuid.uuid4())})
    assert unknown.status_code == 404
    wrong = client.post("/v1/sync/reconcile", json={"run_type": "CUSTOMER_SPECIFIC"})
    assert wrong.status_code == 400 and wrong.json()["field"] == "customer_id"
    mixed = client.post("/v1/sync/reconcile", json={"run_type": "FULL", "customer_id": customer_id})
    assert mixed.status_code == 400 and mixed.json()["field"] == "run_type"
    assert client.post("/v1/sync/reconcile", json={"entity_type": "deal"}).json()["field"] == (
        "entity_type"
    )


def _queue_item(tx: Any, customer_id: str, payload: dict[str, Any] | None = None) -> Any:
    """A QUEUED outbound item of the test's own kind for ``customer_id``."""
    return sync_queue.enqueue(
        tx,
        kind="api_test",
        entity_type="customer",
        entity_id=customer_id,
        operation="UPDATE",
        direction="WARP_TO_HUBSPOT",
        payload=payload or {},
    )


def test_queue_listing_and_replay(
    served: Engine, client: httpx.Client, engine: Engine, emulator: Any
) -> None:
    customer_id, _ = acme_customer(engine, emulator)
    with engine.database.transaction() as tx:
        row = _queue_item(tx, customer_id, payload={"customer_id": customer_id})
        item_id = str(row["id"])
        sync_queue.fail(tx, item_id, "HubSpot said no", retry_at=None)
    failed = client.get("/v1/sync/queue", params={"status": "FAILED"}).json()["items"]
    assert item_id in {i["id"] for i in failed}
    listed = next(i for i in failed if i["id"] == item_id)
    assert listed["last_error"] == "HubSpot said no"
    assert item_id in {i["id"] for i in client.get("/v1/sync/queue").json()["items"]}

    replay = client.post(f"/v1/sync/queue/{item_id}/replay")
    assert replay.status_code == 202, replay.text
    assert replay.json()["replayed"] is True
    assert served.dispatcher.wait_idle(10)  # type: ignore[attr-defined]
    assert ran.count(item_id) == 1
    with engine.database.transaction() as tx:
        assert sync_queue.get(tx, item_id)["status"] == "COMPLETED"  # type: ignore[index]
    done = client.post(f"/v1/sync/queue/{item_id}/replay")
    assert done.status_code == 409
    assert client.post(f"/v1/sync/queue/{uuid.uuid4()}/replay").status_code == 404


def test_replay_of_queued_item_changes_nothing(
    client: httpx.Client, engine: Engine, emulator: Any
) -> None:
    customer_id, _ = acme_customer(engine, emulator)
    with engine.database.transaction() as tx:
        row = _queue_item(tx, customer_id)
    first = client.post(f"/v1/sync/queue/{row['id']}/replay")
    second = client.post(f"/v1/sync/queue/{row['id']}/replay")
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["replayed"] is False and first.json()["item"]["status"] == "QUEUED"
    assert str(row["id"]) not in ran


# --- metrics --------------------------------------------------------------------------


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_come_from_the_database(
    served: Engine, client: httpx.Client, engine: Engine, emulator: Any
) -> None:
    before = _samples(client.get("/metrics").text)
    customer_id, _ = _in_conflict(served, emulator)
    with engine.database.transaction() as tx:
        _queue_item(tx, customer_id)
        sync_log.record(
            tx,
            entity_type="customer",
            entity_id=customer_id,
            operation="UPDATE",
            direction="WARP_TO_HUBSPOT",
            status="FAILED",
        )
        run, _ = reconciliation_runs.start(tx, run_type="FULL", entity_type="customer")
        reconciliation_runs.finish(tx, str(run["id"]), status="COMPLETED")
        finished = reconciliation_runs.get(tx, str(run["id"]))
    after = _samples(client.get("/metrics").text)
    queued = 'hubspot_sync_queue_depth{status="QUEUED"}'
    assert after[queued] == before.get(queued, 0) + 1
    assert after["hubspot_sync_conflicts_open"] == before["hubspot_sync_conflicts_open"] + 1
    failures = 'hubspot_sync_failures_last_hour{direction="WARP_TO_HUBSPOT"}'
    assert after[failures] == before[failures] + 1
    total = 'hubspot_sync_operations_total{direction="WARP_TO_HUBSPOT",status="FAILED"}'
    assert after[total] == before.get(total, 0) + 1
    last = 'hubspot_sync_last_reconcile_timestamp_seconds{run_type="FULL"}'
    assert finished is not None
    assert after[last] == pytest.approx(finished["completed_at"].timestamp(), abs=1)
    assert after["hubspot_sync_webhook_backlog"] == 0
    budget = [v for k, v in after.items() if k.startswith("hubspot_api_daily_budget_used_ratio")]
    assert budget and 0 < budget[0] < 1  # the emulator calls above drew on the daily budget


def _sample(name: str, **labels: str) -> str:
    """A sample's key as the exposition writes it (labels sorted by name)."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def test_duration_histogram_from_the_sync_log(
    client: httpx.Client, engine: Engine, emulator: Any
) -> None:
    labels = {"entity_type": "customer", "direction": "WARP_TO_HUBSPOT", "status": "SUCCESS"}
    before = _samples(client.get("/metrics").text)
    started = datetime.now(UTC)
    customer_id, _ = acme_customer(engine, emulator)
    with engine.database.transaction() as tx:
        sync_log.record(
            tx,
            entity_type="customer",
            entity_id=customer_id,
            operation="UPDATE",
            direction="WARP_TO_HUBSPOT",
            status="SUCCESS",
            started_at=started,
            completed_at=started + timedelta(milliseconds=300),
        )
    after = _samples(client.get("/metrics").text)

    def grew(name: str, **extra: str) -> float:
        key = _sample(name, **labels, **extra)
        return after[key] - before.get(key, 0)

    assert grew("hubspot_sync_duration_seconds_count") == 1
    assert grew("hubspot_sync_duration_seconds_sum") == pytest.approx(0.3)
    assert grew("hubspot_sync_duration_seconds_bucket", le="0.25") == 0
    assert grew("hubspot_sync_duration_seconds_bucket", le="0.5") == 1
    assert grew("hubspot_sync_duration_seconds_bucket", le="+Inf") == 1


def test_conflicts_counted_once_and_first_syncs_told_apart(
    served: Engine, client: httpx.Client, engine: Engine, emulator: Any
) -> None:
    counter = _sample(
        "hubspot_sync_conflicts_total",
        entity_type="customer",
        field_name="company_name",
        resolution="MANUAL",
        kind="first_sync",
    )
    before = _samples(client.get("/metrics").text).get(counter, 0)
    customer_id, _ = _in_conflict(served, emulator)  # linked with differing names: a backfill
    assert _samples(client.get("/metrics").text)[counter] == before + 1
    # Syncing again finds the same conflict still open: not a new one.
    sync_customers(served, [customer_id], allowed=BOTH_WAYS, triggered_by="test")
    assert _samples(client.get("/metrics").text)[counter] == before + 1


# --- the OpenAPI document -------------------------------------------------------------


def test_committed_document_is_generated_from_the_routes() -> None:
    assert DOCUMENT_PATH.read_text(encoding="utf-8") == render_document(), (
        "run: python -m shared.api.openapi"
    )


def test_routes_and_document_agree_both_ways(client: httpx.Client) -> None:
    served = client.get("/v1/sync/openapi.json")
    assert served.status_code == 200
    document = served.json()
    assert document["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    routed = {(r.method, r.path) for r in ROUTES}
    assert documented == routed
    # Every documented operation is answered by its route (not 404-no-route / 405) ...
    for method, path in sorted(documented):
        concrete = path.replace("{id}", str(uuid.uuid4()))
        answer = client.request(method, concrete, json={} if method == "POST" else None)
        assert answer.status_code != 405, (method, path)
        assert not (answer.status_code == 404 and "no route" in answer.text), (method, path)
        assert str(answer.status_code) in document["paths"][path][method.lower()]["responses"]
    # ... and every other method on a documented path is a 405.
    for path in {p for _, p in documented}:
        concrete = path.replace("{id}", str(uuid.uuid4()))
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - {
            m for m, p in documented if p == path
        }:
            assert client.request(method, concrete).status_code == 405, (method, path)


def test_error_bodies_match_the_error_schema(client: httpx.Client) -> None:
    answer = client.get("/v1/sync/customers/nope/status")
    assert set(json.loads(answer.text)) <= {"error", "field", "retryable"}


# --- as deployed ----------------------------------------------------------------------


def test_functions_framework_process_reads_its_settings_from_the_environment(
    database_url: str, emulator: Any, engine: Engine
) -> None:
    customer_id, _ = acme_customer(engine, emulator)
    env = {
        "DATABASE_URL": database_url,
        "HUBSPOT_BASE_URL": emulator.url,
        "HUBSPOT_ACCESS_TOKEN": "emulator-token",
        "SYNC_API_TOKEN": TOKEN,
        "METRICS_TOKEN": "scrape-me",
    }
    with FunctionProcess("sync_api", env) as process:
        status = httpx.get(f"{process.url}/v1/sync/customers/{customer_id}/status", headers=AUTH)
        assert status.status_code == 200, status.text
        assert status.json()["customer_id"] == customer_id
        assert httpx.get(f"{process.url}/v1/sync/queue").status_code == 401
        metrics = httpx.get(f"{process.url}/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert metrics.status_code == 200
        assert "hubspot_sync_queue_depth" in metrics.text
