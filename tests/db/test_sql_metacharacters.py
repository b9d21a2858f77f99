"""Strings full of SQL metacharacters in every field that reaches the database, end to end.

Each value travels a real path (a signed webhook, a Pub/Sub push, the API) and must
come out of PostgreSQL and HubSpot byte for byte, with no table touched that the
flow does not own. Named parameters everywhere mean a quote is only a quote; these
tests keep it that way.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from localdev.drain import wait_drained
from shared.db.repositories import customers, sync_log
from shared.engine import Engine
from shared.messages.envelope import encode_push_envelope
from tests.api.test_api import configured
from tests.helpers.functions import serve_function
from tests.inbound.test_fuzz_webhook import signed
from tests.inbound.test_inbound_processing import change, new_customer
from tests.outbound.test_outbound_sync import _change

pytestmark = pytest.mark.integration

TOKEN = "metachar-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NASTY = [
    "O'Brien & Sons",
    "x'); DROP TABLE accounts.customers; --",
    'Robert"); DELETE FROM accounts.hubspot_sync_log WHERE (""="',
    "back\\slash \\' \\\\ end\\",
    "$$ dollar $tag$ quoted $$",
    "100% _wild_ LIKE %'",
    ":name :1 %s %(x)s ? $1",
    "/* comment */ -- line",
    "E'\\x41' U&'\\0041'",
    '{"jsonb": ["looks", "like"], "json": null}',
    "tab\there\nnew line\rreturn",
    "Zoë Ünïcødé ✓ 名前 🚀",
]


@pytest.fixture(scope="module")
def urls(engine: Engine, database_url: str, emulator: Any) -> Iterator[dict[str, str]]:
    engine.hubspot.max_transient_retries = 0
    with (
        configured(engine, database_url, emulator, sync_api_token=TOKEN),
        serve_function("webhook_receiver") as webhook,
        serve_function("outbound_sync") as outbound,
        serve_function("sync_api") as api,
    ):
        yield {"webhook": webhook, "outbound": outbound, "api": api}


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows per table of the accounts schema: nothing may vanish or appear unexpectedly."""
    with engine.database.transaction() as tx:
        names = [
            r["tablename"]
            for r in tx.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'accounts'")
        ]
        return {n: int(tx.fetch_value(f'SELECT count(*) FROM accounts."{n}"')) for n in names}


def row(engine: Engine, cid: str) -> dict[str, Any]:
    with engine.database.transaction() as tx:
        found = customers.get(tx, cid)
    assert found is not None
    return dict(found)


def test_webhook_values_land_verbatim_in_events_customers_and_the_log(
    engine: Engine, emulator: Any, urls: dict[str, str]
) -> None:
    for value in NASTY:
        cid, company = new_customer(engine, emulator)
        before = table_counts(engine)
        body = json.dumps([change(company, "name", value)]).encode()
        uri = urls["webhook"] + "/v1/webhooks/hubspot/company"
        answer = httpx.post(uri, content=body, headers=signed(uri, body), timeout=30)
        assert answer.status_code == 200, (value, answer.text)
        assert row(engine, cid)["company_name"] == value
        with engine.database.transaction() as tx:
            stored = tx.fetch_value(
                "SELECT property_value #>> '{}' FROM accounts.hubspot_webhook_events "
                "WHERE object_id = :o",
                {"o": str(company)},
            )
            (entry,) = sync_log.list_for_customer(tx, cid)
        assert stored == value
        assert entry["field_changes"]["company_name"]["new"] == value
        after = table_counts(engine)
        assert after["customers"] == before["customers"]
        assert after["hubspot_webhook_events"] == before["hubspot_webhook_events"] + 1


def test_warp_values_and_message_strings_reach_hubspot_and_the_log_verbatim(
    engine: Engine, emulator: Any, urls: dict[str, str]
) -> None:
    for value in NASTY:
        cid, company = new_customer(engine, emulator)
        with engine.database.transaction() as tx:
            customers.update_columns(tx, cid, {"company_name": value})
        message = _change(cid, "company_name", triggered_by_user=value[:100])
        answer = httpx.post(
            urls["outbound"], content=encode_push_envelope(message, value + uuid.uuid4().hex)
        )
        assert answer.status_code == 200 and answer.json()["outcome"] == "accepted", answer.text
        assert wait_drained(engine, timeout=30)
        assert emulator.values("companies", company)["name"] == value
        with engine.database.transaction() as tx:
            logs = sync_log.list_for_customer(tx, cid)
        assert logs and logs[0]["triggered_by_user"] == value[:100]


def test_api_paths_queries_and_bodies_with_metacharacters_never_reach_sql_as_text(
    engine: Engine, emulator: Any, urls: dict[str, str]
) -> None:
    cid, _ = new_customer(engine, emulator)
    before = table_counts(engine)
    api = urls["api"] + "/v1/sync"
    with httpx.Client(headers=AUTH, timeout=30) as http:
        for value in NASTY:
            path = quote(value, safe="")
            for response in (
                http.get(f"{api}/customers/{path}/status"),
                http.get(f"{api}/customers/{cid}/logs", params={"status": value}),
                http.get(f"{api}/customers/{cid}/logs", params={"cursor": value}),
                http.get(f"{api}/queue", params={"status": value}),
                http.post(f"{api}/queue/{path}/replay"),
                http.post(f"{api}/reconcile", json={"entity_type": value}),
                http.post(
                    f"{api}/customers/{cid}/resolve-conflict",
                    json={"field_name": value, "resolution": "use_warp_value"},
                ),
            ):
                assert response.status_code in (400, 404, 422), (value, response.text)
        assert table_counts(engine) == before
        # The customer those requests named is untouched and still answers.
        status = http.get(f"{api}/customers/{cid}/status")
        assert status.status_code == 200
