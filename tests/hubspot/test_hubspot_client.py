"""The HubSpot client against the emulator over real HTTP, with the shared limiter on
a real PostgreSQL: every operation, 207 handling, error classes, 429s, timeouts, retries."""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import httpx
import pytest

from localdev.emulator import Emulator
from localdev.emulator.scopes import ALL_SCOPES, READ_SCOPES
from shared.config.settings import load_settings
from shared.db import Database
from shared.hubspot import HubSpotClient, PendingBatch
from shared.hubspot._retry import Pause, pause_for_429
from shared.hubspot._transport import is_read
from shared.hubspot.errors import (
    AlreadyExists,
    AuthError,
    ConnectionFailed,
    DailyBudgetExhausted,
    NotFound,
    RateLimited,
    ServerError,
    Timeout,
    ValidationError,
)
from shared.hubspot.models import BatchResult
from shared.hubspot.properties import COMPANY_PROPERTIES, setup_properties
from shared.hubspot.ratelimit import Bucket, SharedRateLimiter

pytestmark = pytest.mark.integration

TOKEN = "emulator-token"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(port=0, rate_limit=10_000, window_ms=1_000, search_rate_per_second=1_000) as e:
        yield e


@pytest.fixture
def fresh(emu: Emulator) -> Emulator:
    emu.reset()
    emu.set_faults(rate=0.0, latency_ms=0, outage=False)
    emu.limits.rate_limit, emu.limits.window_ms = 10_000, 1_000
    emu.limits.search_rate_per_second = 1_000
    return emu


MakeClient = Callable[..., HubSpotClient]


@pytest.fixture
def make_client(database: Database, fresh: Emulator) -> Iterator[MakeClient]:
    clients: list[HubSpotClient] = []

    def make(
        *,
        limiter: SharedRateLimiter | None = None,
        base_url: str | None = None,
        token: str = TOKEN,
        **kwargs: Any,
    ) -> HubSpotClient:
        limiter = limiter or SharedRateLimiter(
            database,
            key=uuid.uuid4().hex,
            rate_limit=1_000,
            window_ms=1_000,
            search_rate_per_second=500,
        )
        client = HubSpotClient(base_url or fresh.url, token, limiter=limiter, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def total_calls(emu: Emulator, key: str | None = None) -> int:
    calls: dict[str, int] = emu.stats()["calls"]
    return sum(v for k, v in calls.items() if key is None or k == key)


# --- single records ----------------------------------------------------------------------


def test_connection_pool_is_built_on_the_first_call_and_again_after_close(
    make_client: MakeClient,
) -> None:
    # An engine builds its client on every cold start; a request that never calls
    # HubSpot must not pay for the TLS context (~45 ms).
    client = make_client()
    assert not client._transport.is_open
    created = client.companies.create({"name": "Acme"})
    assert client._transport.is_open
    client.close()
    assert not client._transport.is_open
    assert client.companies.get(created.id, properties=["name"]).properties["name"] == "Acme"


def test_create_get_update_archive_company(make_client: MakeClient) -> None:
    client = make_client()
    created = client.companies.create({"name": "Acme", "domain": "acme.example"})
    assert created.id and created.properties["name"] == "Acme"
    assert created.created_at is not None

    client.companies.update(created.id, {"name": "Acme Ltd"})
    got = client.companies.get(
        created.id, properties=["name", "domain"], properties_with_history=["name"]
    )
    assert got.properties["name"] == "Acme Ltd"
    assert got.properties["domain"] == "acme.example"
    latest = got.latest_change("name")
    assert latest is not None and latest.value == "Acme Ltd"
    assert [v.value for v in got.properties_with_history["name"]] == ["Acme Ltd", "Acme"]

    client.companies.archive(created.id)
    with pytest.raises(NotFound):
        client.companies.get(created.id)
    assert client.companies.get(created.id, archived=True).archived


def test_get_by_unique_property_after_setup(make_client: MakeClient) -> None:
    client = make_client()
    setup_properties(client)
    created = client.companies.create(
        {"name": "B1", "warp_ban": "BAN-001", "warp_status": "ACTIVE"}
    )
    found = client.companies.get("BAN-001", id_property="warp_ban", properties=["warp_status"])
    assert found.id == created.id
    assert found.properties["warp_status"] == "ACTIVE"


def test_setup_properties_is_idempotent(make_client: MakeClient) -> None:
    client = make_client()
    first = setup_properties(client)
    assert first.group_created
    assert first.created == [p["name"] for p in COMPANY_PROPERTIES]
    second = setup_properties(client)
    assert not second.group_created and second.created == []
    assert second.existing == [p["name"] for p in COMPANY_PROPERTIES]
    assert second.differences == {}
    names = {p["name"]: p for p in client.list_properties("companies")}
    assert names["warp_status"]["type"] == "enumeration"
    assert {o["value"] for o in names["warp_status"]["options"]} == {
        "ACTIVE",
        "SUSPENDED",
        "TRIAL",
        "CLOSED",
    }


def test_setup_reports_a_property_defined_differently(
    make_client: MakeClient, fresh: Emulator
) -> None:
    fresh.define_property("companies", "warp_credit_limit", "string")
    report = setup_properties(make_client())
    assert "warp_credit_limit" in report.existing
    assert report.differences["warp_credit_limit"] == [
        "type is 'string', expected 'number'",
        "fieldType is 'text', expected 'number'",
    ]


def test_default_mappings_only_need_defined_custom_properties() -> None:
    from shared.mapping.config import DEFAULT_CUSTOMER_SYNC

    ours = {p["name"] for p in COMPANY_PROPERTIES}
    custom = {
        m["hubspot_property"]
        for m in DEFAULT_CUSTOMER_SYNC.values()
        if m["hubspot_property"].startswith("warp_")
    }
    assert custom <= ours


# --- batches -----------------------------------------------------------------------------


def test_batch_create_chunks_and_matches_by_trace_id_with_207(
    make_client: MakeClient, fresh: Emulator
) -> None:
    client = make_client()
    setup_properties(client)
    items = {f"k{i}": {"name": f"Co {i}", "warp_credit_limit": str(i)} for i in range(150)}
    items["bad"] = {"name": "Bad", "warp_credit_limit": "not a number"}
    outcome = client.companies.batch_create(items)
    assert total_calls(fresh, "POST /crm/v3/objects/companies/batch/create") == 2
    assert set(outcome.results) == set(items) - {"bad"}
    for key, record in outcome.results.items():  # matched by key, whatever the order
        assert record.properties["name"] == items[key]["name"]
    assert outcome.failed_keys() == {"bad"}
    assert isinstance(outcome.errors[0], ValidationError)
    assert outcome.errors[0].category == "VALIDATION_ERROR"


def test_batch_read_update_and_missing_ids(make_client: MakeClient, fresh: Emulator) -> None:
    client = make_client()
    ids = fresh.seed("companies", [{"name": f"N{i}"} for i in range(120)])
    outcome = client.companies.batch_read([*ids, "99999999999"], properties=["name"])
    assert set(outcome.results) == set(ids)
    assert all(outcome.results[i].id == i for i in ids)
    assert "99999999999" in outcome.failed_keys()
    assert isinstance(outcome.errors[0], NotFound)

    updated = client.companies.batch_update({i: {"name": f"U{i}"} for i in ids[:105]})
    assert not updated.errors
    assert {k: r.properties["name"] for k, r in updated.results.items()} == {
        i: f"U{i}" for i in ids[:105]
    }
    again = client.companies.batch_read(ids[:3], properties=["name"])
    assert again.results[ids[0]].properties["name"] == f"U{ids[0]}"


def test_batch_update_refused_whole_is_split_until_the_refused_inputs_stand_alone(
    make_client: MakeClient, fresh: Emulator
) -> None:
    client = make_client()
    setup_properties(client)
    ids = fresh.seed("companies", [{"name": f"N{i}"} for i in range(100)])
    items = {i: {"warp_credit_limit": "7000"} for i in ids}
    bad = {ids[17], ids[80]}
    for key in bad:
        items[key] = {"warp_status": "GONE"}  # an option HubSpot does not have
    outcome = client.companies.batch_update(items)
    assert set(outcome.results) == set(ids) - bad
    assert outcome.failed_keys() == bad
    assert {type(e) for e in outcome.errors} == {ValidationError}
    assert all("GONE was not one of the allowed options" in e.message for e in outcome.errors)
    assert all(not e.retryable and e.category == "VALIDATION_ERROR" for e in outcome.errors)
    assert all(
        fresh.values("companies", i).get("warp_credit_limit") == "7000" for i in outcome.results
    )
    assert all("warp_status" not in fresh.values("companies", i) for i in bad)
    # halving: 1 call for the 100, then about 2 per level for each refused input
    assert total_calls(fresh, "POST /crm/v3/objects/companies/batch/update") <= 1 + 2 * 2 * 7


def test_batch_read_answers_old_ids_with_the_record_they_were_merged_into(
    make_client: MakeClient, fresh: Emulator
) -> None:
    client = make_client()
    a, b, other = fresh.seed("companies", [{"name": "A"}, {"name": "B"}, {"name": "C"}])
    merged = fresh.merge("companies", a, b)
    # HubSpot answers both old ids with one record carrying the new id.
    outcome = client.companies.batch_read([a, b, other], properties=["name"])
    assert not outcome.errors
    assert {k: r.id for k, r in outcome.results.items()} == {a: merged, b: merged, other: other}
    assert sorted(outcome.results[a].merged_ids) == sorted([a, b])


def test_batch_upsert_by_unique_property(make_client: MakeClient) -> None:
    client = make_client()
    setup_properties(client)
    client.companies.create({"name": "Old", "warp_ban": "B-1"})
    outcome = client.companies.batch_upsert(
        {"B-1": {"name": "Old renamed"}, "B-2": {"name": "New"}}, id_property="warp_ban"
    )
    assert not outcome.errors
    assert outcome.results["B-1"].new is False
    assert outcome.results["B-2"].new is True
    assert client.companies.get("B-1", id_property="warp_ban").properties["name"] == "Old renamed"


# --- listing, search, associations ------------------------------------------------------


def test_list_iterates_every_page(make_client: MakeClient, fresh: Emulator) -> None:
    ids = fresh.seed("contacts", [{"email": f"p{i}@x.example"} for i in range(230)])
    seen = [r.id for r in make_client().contacts.iterate(properties=["email"])]
    assert sorted(seen) == sorted(ids)
    assert total_calls(fresh, "GET /crm/v3/objects/contacts") == 3


def test_search_pages_with_after(make_client: MakeClient, fresh: Emulator) -> None:
    fresh.seed("companies", [{"name": f"S{i}", "domain": f"s{i}.example"} for i in range(30)])
    fresh.seed("companies", [{"name": "Other"}])
    client = make_client()
    groups = [{"filters": [{"propertyName": "domain", "operator": "HAS_PROPERTY"}]}]
    first = client.companies.search(groups, sort=("name", "ASCENDING"), limit=20)
    assert first.total == 30 and len(first.results) == 20 and first.after == "20"
    second = client.companies.search(
        groups, sort=("name", "ASCENDING"), limit=20, after=first.after
    )
    assert len(second.results) == 10 and second.after is None
    with pytest.raises(ValueError):
        client.companies.search(groups, limit=201)


def test_search_all_goes_past_the_10000_cap(make_client: MakeClient, fresh: Emulator) -> None:
    ids = fresh.seed("contacts", [{"lastname": "Same"} for _ in range(10_150)])
    groups = [{"filters": [{"propertyName": "lastname", "operator": "EQ", "value": "Same"}]}]
    seen = [r.id for r in make_client().contacts.search_all(groups)]
    assert len(seen) == len(ids) and set(seen) == set(ids)
    assert [int(i) for i in seen] == sorted(int(i) for i in seen)


def test_associate_contact_with_company(make_client: MakeClient) -> None:
    client = make_client()
    company = client.companies.create({"name": "Assoc Co"})
    contact = client.contacts.create({"email": "a@assoc.example"})
    client.associate("contacts", contact.id, "companies", company.id)
    client.associate("contacts", contact.id, "companies", company.id)  # idempotent
    links = client.associations("contacts", contact.id, "companies")
    assert [a.to_object_id for a in links] == [company.id]
    assert 279 in links[0].type_ids
    back = client.associations("companies", company.id, "contacts")
    assert [a.to_object_id for a in back] == [contact.id]
    got = client.companies.get(company.id, associations=["contacts"])
    assert got.associations["contacts"] == [contact.id]
    second = client.contacts.create(
        {"email": "b@assoc.example"}, associate_with=[("companies", company.id)]
    )
    ids = {a.to_object_id for a in client.associations("companies", company.id, "contacts")}
    assert ids == {contact.id, second.id}


# --- errors ------------------------------------------------------------------------------


def test_error_classes_carry_status_category_and_correlation_id(
    make_client: MakeClient,
) -> None:
    client = make_client()
    with pytest.raises(NotFound) as missing:
        client.companies.get("12345678")
    assert missing.value.status == 404 and missing.value.category == "OBJECT_NOT_FOUND"
    assert missing.value.correlation_id and not missing.value.retryable

    with pytest.raises(ValidationError) as invalid:
        client.companies.create({"no_such_property": "x"})
    assert invalid.value.status == 400 and invalid.value.category == "VALIDATION_ERROR"
    assert invalid.value.correlation_id and not invalid.value.retryable

    client.contacts.create({"email": "dup@x.example"})
    with pytest.raises(AlreadyExists) as duplicate:
        client.contacts.create({"email": "dup@x.example"})
    assert duplicate.value.status == 409 and duplicate.value.category == "CONFLICT"

    with pytest.raises(AuthError) as denied:
        make_client(token="wrong-token").companies.get("1")
    assert denied.value.status == 401 and not denied.value.retryable
    assert "wrong-token" not in str(denied.value)


# --- read and write tokens ---------------------------------------------------------------

READ_TOKEN = "read-only-token"
WRITE_ONLY_TOKEN = "write-only-token"


def test_only_gets_batch_reads_and_searches_are_reads() -> None:
    assert is_read("GET", "/crm/v3/objects/companies/12")
    assert is_read("GET", "/crm/v3/properties/companies")
    assert is_read("POST", "/crm/v3/objects/companies/batch/read")
    assert is_read("POST", "/crm/v3/objects/contacts/search")
    for method, path in [
        ("POST", "/crm/v3/objects/companies"),
        ("POST", "/crm/v3/objects/companies/batch/update"),
        ("POST", "/crm/v3/objects/contacts/batch/upsert"),
        ("PATCH", "/crm/v3/objects/companies/12"),
        ("DELETE", "/crm/v3/objects/companies/12"),
        ("POST", "/crm/v3/properties/companies"),
        ("PUT", "/crm/v4/objects/contacts/1/associations/default/companies/2"),
    ]:
        assert not is_read(method, path), (method, path)


def test_reads_carry_the_read_token_and_writes_the_write_token(
    make_client: MakeClient, fresh: Emulator
) -> None:
    # The write token here may not read at all, and the read token may not write:
    # every call succeeds only if each went out with the right one.
    fresh.grant(READ_TOKEN, READ_SCOPES)
    fresh.grant(WRITE_ONLY_TOKEN, ALL_SCOPES - READ_SCOPES)
    client = make_client(token=WRITE_ONLY_TOKEN, read_access_token=READ_TOKEN)

    report = setup_properties(client)  # lists (read) then creates (write) properties
    assert report.created
    company = client.companies.create({"name": "Split", "domain": "split.example"})
    client.companies.update(company.id, {"name": "Split Ltd"})
    contact = client.contacts.create({"email": "split@x.example"})
    client.associate("contacts", contact.id, "companies", company.id)
    assert client.companies.get(company.id).properties["name"] == "Split Ltd"
    read = client.companies.batch_read([company.id], properties=["name"])
    assert read.results[company.id].properties["name"] == "Split Ltd"
    client.companies.batch_update({company.id: {"name": "Split plc"}})
    fresh.state.index_now()  # search lags writes; this test is about tokens
    assert [r.id for r in client.companies.search_all(properties=["name"])] == [company.id]
    assert client.associations("companies", company.id, "contacts")


def test_settings_give_reads_hubspot_read_access_token(database: Database, fresh: Emulator) -> None:
    fresh.grant(READ_TOKEN, READ_SCOPES)
    fresh.grant(WRITE_ONLY_TOKEN, ALL_SCOPES - READ_SCOPES)
    settings = load_settings(
        hubspot_base_url=fresh.url,
        hubspot_access_token=WRITE_ONLY_TOKEN,
        hubspot_read_access_token=READ_TOKEN,
    )
    client = HubSpotClient.from_settings(settings, database)
    try:
        company = client.companies.create({"name": "From settings"})
        assert client.companies.get(company.id).properties["name"] == "From settings"
    finally:
        client.close()


def test_a_read_only_token_gets_hubspots_403_on_a_write(
    make_client: MakeClient, fresh: Emulator
) -> None:
    fresh.grant(READ_TOKEN, READ_SCOPES)
    client = make_client(token=READ_TOKEN)
    assert client.companies.list_page(limit=1) == ([], None)
    with pytest.raises(AuthError) as refused:
        client.companies.create({"name": "Nope"})
    error = refused.value
    assert (error.status, error.category, error.retryable) == (403, "MISSING_SCOPES", False)
    assert fresh.state.live("companies") == []


def test_transient_5xx_is_retried_then_succeeds(make_client: MakeClient, fresh: Emulator) -> None:
    company_id = fresh.seed("companies", {"name": "R"})[0]
    fresh.set_faults(outage=True)

    def end_outage(seconds: float) -> None:  # the client's pause between attempts
        fresh.set_faults(outage=False)

    client = make_client(sleep=end_outage)
    assert client.companies.get(company_id).id == company_id
    assert total_calls(fresh) == 2


def test_5xx_with_html_body_after_retries_is_server_error(
    make_client: MakeClient, fresh: Emulator
) -> None:
    fresh.set_faults(rate=1.0, kinds=["502"])
    client = make_client(max_transient_retries=2, sleep=lambda s: None)
    with pytest.raises(ServerError) as failed:
        client.companies.get("1")
    assert failed.value.status == 502 and failed.value.retryable
    assert total_calls(fresh) == 3


def test_create_is_not_resent_after_a_5xx(make_client: MakeClient, fresh: Emulator) -> None:
    fresh.set_faults(outage=True)
    client = make_client(sleep=lambda s: None)
    with pytest.raises(ServerError) as failed:
        client.companies.create({"name": "Once"})
    assert failed.value.retryable
    assert total_calls(fresh) == 1  # a resent create could make two companies


def test_read_timeout_is_retryable_timeout(make_client: MakeClient, fresh: Emulator) -> None:
    fresh.set_faults(latency_ms=800)
    client = make_client(timeout=(1.0, 0.2), max_transient_retries=1, sleep=lambda s: None)
    with pytest.raises(Timeout) as slow:
        client.companies.list_page(limit=1)
    assert slow.value.retryable
    assert total_calls(fresh) == 2


def test_connection_refused_is_retryable(make_client: MakeClient) -> None:
    # port 9 (discard) has no listener on a test machine: the connection is refused
    client = make_client(base_url="http://127.0.0.1:9", max_transient_retries=1)
    with pytest.raises(ConnectionFailed) as refused:
        client.companies.get("1")
    assert refused.value.retryable


def test_429_pauses_the_shared_bucket_and_the_call_succeeds(
    make_client: MakeClient, database: Database
) -> None:
    # An emulator of its own: a request an earlier test abandoned (timed out, held) can
    # reach the shared one late and draw the one 429 meant for this call.
    with Emulator(port=0, rate_limit=10_000, window_ms=1_000) as own:
        # The next call, and only it, gets HubSpot's TEN_SECONDLY_ROLLING 429: however
        # long the machine stalls before the retry, the retry is not refused again.
        own.set_faults(rate=1.0, kinds=["429"], count=1)
        waits: list[float] = []

        def wait_out_the_pause(seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)

        limiter = SharedRateLimiter(database, key=uuid.uuid4().hex, sleep=wait_out_the_pause)
        client = make_client(limiter=limiter, base_url=own.url)
        company_id = own.seed("companies", {"name": "P"})[0]
        assert client.companies.get(company_id).id == company_id
        assert own.stats()["faults"]["injected"]["429"] == 1
    # Paused for what is left of the window the headers name (1 s here), for every
    # instance: nothing, if the machine stalled past it before asking again.
    assert len(waits) <= 1 and all(0 < w <= 1.05 for w in waits)
    with database.transaction() as tx:
        reason = tx.fetch_value(
            "SELECT pause_reason FROM accounts.hubspot_rate_windows WHERE name = :n",
            {"n": limiter.window_name(Bucket.BURST)},
        )
    assert reason == "TEN_SECONDLY_ROLLING"


def test_429_longer_than_the_call_may_wait_is_raised(
    make_client: MakeClient, fresh: Emulator, database: Database
) -> None:
    fresh.limits.window_ms = 5_000
    fresh.set_faults(rate=1.0, kinds=["429"])
    limiter = SharedRateLimiter(database, key=uuid.uuid4().hex)
    client = make_client(limiter=limiter, max_rate_wait=0.5)
    with pytest.raises(RateLimited) as limited:
        client.companies.list_page(limit=1)
    assert limited.value.retryable and limited.value.status == 429
    assert limited.value.policy == "TEN_SECONDLY_ROLLING"
    assert limited.value.retry_after == pytest.approx(5.0)
    assert limited.value.correlation_id
    # every other instance now waits too, without calling HubSpot
    with pytest.raises(RateLimited) as local:
        limiter.acquire(Bucket.BURST, max_wait=0.1)
    assert local.value.policy == "PAUSED" and local.value.retry_after > 4
    assert total_calls(fresh) == 1


def test_hubspot_remaining_zero_holds_us_back_before_any_429(
    make_client: MakeClient, fresh: Emulator, database: Database
) -> None:
    fresh.limits.rate_limit, fresh.limits.window_ms = 1, 5_000
    limiter = SharedRateLimiter(database, key=uuid.uuid4().hex, rate_limit=50, window_ms=5_000)
    client = make_client(limiter=limiter, max_rate_wait=0.5)
    client.companies.list_page(limit=1)  # HubSpot: remaining 0
    with pytest.raises(RateLimited) as local:
        client.companies.list_page(limit=1)
    assert local.value.category == "LOCAL_RATE_LIMIT" and local.value.retry_after > 4
    assert fresh.stats()["rateLimited"] == {} and total_calls(fresh) == 1


def test_search_429_pauses_search_for_a_second(
    make_client: MakeClient, fresh: Emulator, database: Database
) -> None:
    fresh.limits.search_rate_per_second = 1
    limiter = SharedRateLimiter(database, key=uuid.uuid4().hex, search_rate_per_second=50)
    client = make_client(limiter=limiter)
    for _ in range(3):
        client.companies.search(limit=1)
    assert sum(fresh.stats()["rateLimited"].values()) >= 1
    with database.transaction() as tx:
        reason = tx.fetch_value(
            "SELECT pause_reason FROM accounts.hubspot_rate_windows WHERE name = :n",
            {"n": limiter.window_name(Bucket.SEARCH)},
        )
    assert reason == "SECONDLY"


def test_a_legacy_secondly_429_on_a_burst_call_pauses_burst_not_search(
    make_client: MakeClient, fresh: Emulator, database: Database
) -> None:
    fresh.set_faults(rate=1.0, kinds=["429_secondly"])
    waits: list[float] = []

    def wait_out_the_pause(seconds: float) -> None:
        waits.append(seconds)
        fresh.set_faults(rate=0.0)
        time.sleep(seconds)

    limiter = SharedRateLimiter(database, key=uuid.uuid4().hex, sleep=wait_out_the_pause)
    client = make_client(limiter=limiter)
    company_id = fresh.seed("companies", {"name": "P"})[0]
    assert client.companies.get(company_id).id == company_id
    assert len(waits) == 1 and 0.9 < waits[0] <= 1.05  # a second, as the policy says
    with database.transaction() as tx:
        reasons = {
            r["name"]: r["pause_reason"]
            for r in tx.fetch(
                "SELECT name, pause_reason FROM accounts.hubspot_rate_windows"
                " WHERE name = ANY(CAST(:names AS text[]))",
                {"names": [limiter.window_name(b) for b in Bucket]},
            )
        }
    assert reasons.get(limiter.window_name(Bucket.BURST)) == "SECONDLY"
    assert reasons.get(limiter.window_name(Bucket.SEARCH)) is None
    assert limiter.try_acquire(Bucket.SEARCH).granted  # searches never stopped


@pytest.mark.parametrize(
    ("policy", "bucket", "expected"),
    [
        ("SECONDLY", Bucket.BURST, Pause(Bucket.BURST, 1.0, "SECONDLY")),
        ("SECONDLY", Bucket.SEARCH, Pause(Bucket.SEARCH, 1.0, "SECONDLY")),
        (None, Bucket.SEARCH, Pause(Bucket.SEARCH, 1.0, "SECONDLY")),
        ("TEN_SECONDLY_ROLLING", Bucket.BURST, Pause(Bucket.BURST, 10.0, "TEN_SECONDLY_ROLLING")),
        (None, Bucket.BURST, Pause(Bucket.BURST, 10.0, "429")),
        ("DAILY", Bucket.SEARCH, Pause(None, 900.0, "DAILY")),
    ],
)
def test_a_429_pauses_the_bucket_of_the_refused_request(
    policy: str | None, bucket: Bucket, expected: Pause
) -> None:
    assert pause_for_429(policy, bucket, None, 10_000) == expected
    assert pause_for_429(policy, bucket, 3.0, 10_000).seconds == 3.0  # Retry-After rules


def test_rate_headers_correct_our_count(
    make_client: MakeClient, fresh: Emulator, database: Database
) -> None:
    fresh.limits.rate_limit, fresh.limits.window_ms = 10, 10_000
    with httpx.Client(base_url=fresh.url, headers={"Authorization": f"Bearer {TOKEN}"}) as other:
        for _ in range(3):  # another client of the same app, outside our limiter
            other.get("/crm/v3/objects/companies").raise_for_status()
    limiter = SharedRateLimiter(database, key=uuid.uuid4().hex, rate_limit=10, window_ms=10_000)
    client = make_client(limiter=limiter)
    client.companies.list_page(limit=1)
    assert client.last_rate_limit is not None and client.last_rate_limit.remaining == 6
    with database.transaction() as tx:
        counted = tx.fetch_value(
            "SELECT cardinality(grants) FROM accounts.hubspot_rate_windows WHERE name = :n",
            {"n": limiter.window_name(Bucket.BURST)},
        )
    assert counted == 4  # our one grant plus three phantoms: our remaining == HubSpot's


def test_daily_budget_exhausted_before_hubspot(
    make_client: MakeClient, fresh: Emulator, database: Database
) -> None:
    limiter = SharedRateLimiter(database, key=uuid.uuid4().hex, daily_budget=2)
    client = make_client(limiter=limiter)
    client.companies.list_page(limit=1)
    client.companies.list_page(limit=1)
    with pytest.raises(DailyBudgetExhausted) as spent:
        client.companies.list_page(limit=1)
    assert spent.value.retryable and spent.value.used == 2
    assert "requests resume at" in str(spent.value)
    assert total_calls(fresh) == 2


class _MeetingTransport(httpx.HTTPTransport):
    """The real transport, except each request waits until ``parties`` are in flight.

    If the client sent the pages one after another, the first would wait alone and
    the barrier would break: concurrency is shown without timing anything.
    """

    def __init__(self, parties: int, seen: list[str]) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=10)
        self.seen = seen

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/batch/read"):
            self.seen.append(_REQUEST_TAG.get())
            self.barrier.wait()
        return super().handle_request(request)


_REQUEST_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("request_tag", default="")


def test_batch_read_pages_are_in_flight_together_and_merge_whole(
    make_client: MakeClient, fresh: Emulator
) -> None:
    seen: list[str] = []
    client = make_client(read_concurrency=3, transport=_MeetingTransport(3, seen))
    ids = fresh.seed("companies", [{"name": f"N{i}"} for i in range(300)])
    _REQUEST_TAG.set("run-42")
    outcome = client.companies.batch_read(ids, properties=["name"])
    assert sorted(outcome.results) == sorted(ids) and not outcome.errors  # every page merged
    assert {r.properties["name"] for r in outcome.results.values()} == {f"N{i}" for i in range(300)}
    assert seen == ["run-42"] * 3  # each page ran in the caller's context


def test_concurrent_calls_all_end_before_the_first_error_is_raised(
    make_client: MakeClient,
) -> None:
    client = make_client(read_concurrency=2)
    finished: list[int] = []

    def call(n: int) -> BatchResult:
        if n == 0:
            raise ValueError("page 0 failed")
        finished.append(n)
        return BatchResult()

    pages = [[str(n)] for n in range(4)]
    pending = PendingBatch(pages, client.start_concurrently([partial(call, n) for n in range(4)]))
    with pytest.raises(ValueError, match="page 0 failed"):
        pending.result()
    assert sorted(finished) == [1, 2, 3]
    futures = client.start_concurrently([partial(lambda n: n, n) for n in (3, 1, 2)])
    assert [f.result() for f in futures] == [3, 1, 2]


class _HoldingTransport(httpx.HTTPTransport):
    """The real transport, holding back the batch read that asks for ``held_id``."""

    def __init__(self, held_id: str) -> None:
        super().__init__()
        self.held_id = held_id
        self.release = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if f'"{self.held_id}"' in request.content.decode():
            assert self.release.wait(10), "never released"
        return super().handle_request(request)


def test_pending_batch_gives_a_page_while_a_later_one_is_still_on_its_way(
    make_client: MakeClient, fresh: Emulator
) -> None:
    ids = fresh.seed("companies", [{"name": f"N{i}"} for i in range(150)])
    transport = _HoldingTransport(held_id=ids[120])
    client = make_client(read_concurrency=2, transport=transport)
    pending = client.companies.start_batch_read(ids, properties=["name"])
    assert pending.get(ids[5]) is not None  # page 1 arrived; page 2 is held
    assert pending.get(ids[5]).properties["name"] == "N5"  # type: ignore[union-attr]
    assert pending.get("not-asked-for") is None
    transport.release.set()
    assert sorted(pending.result().results) == sorted(ids)
