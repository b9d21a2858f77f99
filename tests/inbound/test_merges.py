"""HubSpot merges make a new record with a new id: links follow it, end to end.

The emulator merges as HubSpot does now (docs/hubspot.md, "Merges"): both old ids
resolve to a new record. A customer linked to either old id ends linked to the new
one, by the merge webhook (delivered by the emulator to the receiver over HTTP) or,
when that webhook was missed, by the next reconcile or sync that reads the old id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.db.repositories import customers, sync_log
from shared.engine import Engine
from shared.engine.sync import TO_HUBSPOT, sync_customers
from shared.hubspot.models import HubSpotObject
from shared.links import MergeLink, carries_customer, decide_merge_links
from shared.mapping import EntityType
from tests.engine.test_reconcile import _full, linked_customer
from tests.helpers.functions import serve_function
from tests.inbound.test_webhook_receiver import COMPANY_PATH

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def receiver(engine: Engine) -> Iterator[str]:
    """webhook_receiver served over HTTP (it uses the engine fixture through get_engine)."""
    with serve_function("webhook_receiver") as url:
        yield url


@pytest.fixture(autouse=True)
def no_webhooks(emulator: Any) -> Iterator[None]:
    """Each test starts with webhooks going nowhere (a missed merge webhook)."""
    emulator.webhooks.configure(url=None)
    yield
    emulator.webhooks.configure(url=None)


def ui_merge(emulator: Any, object_type: str, primary: str, other: str) -> str:
    """A HubSpot user merges two records (the emulator's control API, over HTTP)."""
    answer = httpx.post(
        f"{emulator.url}/_emulator/merge/{object_type}",
        json={"primaryObjectId": primary, "objectIdToMerge": other, "userId": 5},
    )
    answer.raise_for_status()
    new_id = str(answer.json()["id"])
    assert new_id not in (primary, other)
    return new_id


def links(engine: Engine, cid: str) -> dict[str, str]:
    with engine.database.transaction() as tx:
        row = customers.get(tx, cid)
    assert row is not None
    return dict(row["external_ids"] or {})


def live_companies_with_ban(emulator: Any, ban: str) -> list[int]:
    return [r.id for r in emulator.state.live("companies") if r.values.get("warp_ban") == ban]


def test_the_owner_or_the_first_claim_keeps_a_merged_record() -> None:
    claims = [("1", "c-primary"), ("2", "c-other")]
    assert decide_merge_links("9", None, claims) == [
        MergeLink("c-primary", "1", "9", keep=True, owner="c-primary"),
        MergeLink("c-other", "2", "9", keep=False, owner="c-primary"),
    ]
    # A customer already linked to the new record keeps it; every claimant is flagged.
    assert [m.keep for m in decide_merge_links("9", "c-owner", claims)] == [False, False]
    assert [m.keep for m in decide_merge_links("9", "c-other", claims)] == [False, True]


def test_the_merged_record_carries_the_primarys_customer_key() -> None:
    record = HubSpotObject("9", {"warp_ban": "B-1", "email": "Jane@X.example"})
    assert carries_customer(record, {"ban": "B-1"}, EntityType.CUSTOMER)
    assert not carries_customer(record, {"ban": "B-2"}, EntityType.CUSTOMER)
    assert carries_customer(record, {"contact": {"email": "jane@x.example"}}, EntityType.CONTACT)
    assert not carries_customer(record, {"contact": {}}, EntityType.CONTACT)


def test_merge_webhook_moves_the_link_to_the_new_record(
    engine: Engine, emulator: Any, receiver: str
) -> None:
    customer = linked_customer(engine, emulator)
    (duplicate,) = emulator.seed("companies", [{"name": "Acme (duplicate)", "city": "Oslo"}])
    emulator.webhooks.configure(url=receiver + COMPANY_PATH)
    new_id = ui_merge(emulator, "companies", customer["company_id"], duplicate)
    assert emulator.webhooks.wait_idle(20)

    assert links(engine, customer["id"])["hubspot_company_id"] == new_id
    with engine.database.transaction() as tx:
        [entry] = [
            e
            for e in sync_log.list_for_customer(tx, customer["id"])
            if e["hubspot_object_id"] == new_id
        ]
    assert entry["status"] == "SUCCESS" and entry["triggered_by"] == "webhook"
    # The next WARP change lands on the new record; no company is created.
    with engine.database.transaction() as tx:
        customers.update_columns(tx, customer["id"], {"company_name": "Acme Renamed"})
    [outcome] = sync_customers(engine, [customer["id"]], allowed=TO_HUBSPOT, triggered_by="api")
    assert outcome.error is None and not outcome.missing
    assert emulator.values("companies", new_id)["name"] == "Acme Renamed"
    assert live_companies_with_ban(emulator, customer["ban"]) == [int(new_id)]


def test_reconcile_follows_merges_whose_webhook_was_missed(engine: Engine, emulator: Any) -> None:
    kept = linked_customer(engine, emulator, company={"name": "HubSpot Name"})
    other = linked_customer(engine, emulator)
    (twin_contact,) = emulator.seed("contacts", [{"email": "twin@elsewhere.example"}])
    company = ui_merge(emulator, "companies", kept["company_id"], other["company_id"])
    contact = ui_merge(emulator, "contacts", twin_contact, kept["contact_id"])

    report = _full(engine).report

    missing = {s["customer_id"] for s in report["missing_objects"]["samples"]}
    assert kept["id"] not in missing  # found under its new id, not reported missing
    assert links(engine, kept["id"]) == {
        "hubspot_company_id": company,
        "hubspot_contact_id": contact,
    }
    # The company drift is repaired on the new record: both sides agree afterwards.
    with engine.database.transaction() as tx:
        row = customers.get(tx, kept["id"])
        assert row is not None
        assert emulator.values("companies", company)["name"] == row["company_name"]
        # The other customer was linked to the record merged away: the merged company is
        # one customer's, so it is unlinked and flagged for a person, never linked twice.
        assert "hubspot_company_id" not in links(engine, other["id"])
        flagged = [
            e for e in sync_log.list_for_customer(tx, other["id"]) if e["status"] == "CONFLICT"
        ]
    assert len(flagged) == 1 and company in flagged[0]["error_message"]
    assert live_companies_with_ban(emulator, kept["ban"]) == [int(company)]

    again = _full(engine).report  # a second run finds the relinked customer in step
    assert kept["id"] not in {s["customer_id"] for s in again["missing_objects"]["samples"]}
    assert links(engine, kept["id"])["hubspot_company_id"] == company


def test_outbound_sync_of_an_old_id_relinks_and_creates_nothing(
    engine: Engine, emulator: Any
) -> None:
    customer = linked_customer(engine, emulator)
    # The customer's company is merged *into* another one: its id is not even the primary.
    (primary,) = emulator.seed("companies", [{"name": "Acme Holding", "city": "Bergen"}])
    new_id = ui_merge(emulator, "companies", primary, customer["company_id"])
    before = len(emulator.state.live("companies"))
    with engine.database.transaction() as tx:
        customers.update_columns(tx, customer["id"], {"company_name": "Acme From WARP"})

    [outcome] = sync_customers(engine, [customer["id"]], allowed=TO_HUBSPOT, triggered_by="api")

    assert outcome.error is None and not outcome.missing, outcome
    assert outcome.relinked and links(engine, customer["id"])["hubspot_company_id"] == new_id
    assert emulator.values("companies", new_id)["name"] == "Acme From WARP"
    assert len(emulator.state.live("companies")) == before
