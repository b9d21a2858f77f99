"""HubSpot writing a synced field itself (issue 15 item 6; docs/sync-rules.md).

End to end: the emulator's control route makes the write as HubSpot's enrichment does
(``changeSource`` HUBSPOT_INTERNAL, ``sourceId`` CompanyInsightsPropertyMappings), the
webhook reaches ``webhook_receiver`` over HTTP, and reconciliation reads the property
history. WARP's legal name is replaced neither by the webhook nor by reconciliation,
and HubSpot gets it back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.engine import Engine
from shared.reconcile import RunRequest, start_run
from tests.conftest import TEST_APP_ID
from tests.helpers.functions import serve_function
from tests.inbound.test_inbound_processing import customer, logs, new_customer

pytestmark = pytest.mark.integration

LEGAL = "WARP Legal Name GmbH"
INTERNAL = {"changeSource": "HUBSPOT_INTERNAL", "sourceId": "CompanyInsightsPropertyMappings"}


@pytest.fixture(scope="module")
def receiver(engine: Engine) -> Iterator[str]:
    with serve_function("webhook_receiver") as url:
        yield url


def hubspot_writes(emulator: Any, company: str, properties: dict[str, str], **source: str) -> Any:
    """HubSpot writes the company itself, through the emulator's control API."""
    answer = httpx.post(
        f"{emulator.url}/_emulator/hubspot/companies/{company}",
        json={"properties": properties, **source},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def name_history(emulator: Any, company: str) -> list[dict[str, Any]]:
    """The company name's history, newest first, as the CRM API answers it."""
    return list(emulator.snapshot("companies", company)["propertiesWithHistory"]["name"])


def reconcile(engine: Engine, cid: str) -> Any:
    return start_run(
        engine,
        RunRequest(run_type="CUSTOMER_SPECIFIC", customer_id=cid, force=True, triggered_by="test"),
    )


def linked_in_sync(engine: Engine, emulator: Any) -> tuple[str, str]:
    cid, company = new_customer(engine, emulator, company_name=LEGAL)
    assert reconcile(engine, cid).status == "COMPLETED"  # the name crossed: state recorded
    return cid, company


def test_emulator_writes_as_hubspot_with_its_source_in_webhooks_and_history(
    engine: Engine, emulator: Any, receiver: str
) -> None:
    _, company = new_customer(engine, emulator)
    before = emulator.snapshot("companies", company)["properties"]["hs_lastmodifieddate"]
    emulator.webhooks.configure(url=receiver + "/v1/webhooks/hubspot/company")
    try:
        answer = hubspot_writes(emulator, company, {"website": "https://acme.example"})
        assert emulator.webhooks.wait_idle(20)
    finally:
        emulator.webhooks.configure(url=None)
    assert answer == {"changed": ["website"]}
    record = emulator.snapshot("companies", company)
    assert record["properties"]["hs_lastmodifieddate"] > before
    newest = record["propertiesWithHistory"]["website"][0]
    assert (newest["sourceType"], newest["sourceId"]) == (
        "HUBSPOT_INTERNAL",
        "CompanyInsightsPropertyMappings",
    )
    with engine.database.transaction() as tx:
        row = tx.fetch_one(
            "SELECT change_source, source_id FROM accounts.hubspot_webhook_events "
            "WHERE object_id = :o AND property_name = 'website'",
            {"o": company},
        )
    assert row == {
        "change_source": "HUBSPOT_INTERNAL",
        "source_id": "CompanyInsightsPropertyMappings",
    }
    # Another source can be named (a calculated property's, say).
    other = hubspot_writes(emulator, company, {"phone": "+1 555"}, changeSource="CALCULATED")
    assert other == {"changed": ["phone"]}
    assert (
        emulator.snapshot("companies", company)["propertiesWithHistory"]["phone"][0]["sourceType"]
        == "CALCULATED"
    )


def test_enrichment_rename_by_webhook_is_not_applied_and_warp_name_written_back(
    engine: Engine, emulator: Any, receiver: str
) -> None:
    cid, company = linked_in_sync(engine, emulator)
    emulator.webhooks.configure(url=receiver + "/v1/webhooks/hubspot/company")
    try:
        hubspot_writes(emulator, company, {"name": "Warp Legal"}, **INTERNAL)
        # The webhook, the flush it asks for, and the echo of the flush's write.
        assert emulator.webhooks.wait_idle(20)
        assert engine.dispatcher.wait_idle(20)  # type: ignore[attr-defined]
        assert emulator.webhooks.wait_idle(20)
    finally:
        emulator.webhooks.configure(url=None)
    assert customer(engine, cid)["company_name"] == LEGAL
    restored, guess, *_ = name_history(emulator, company)
    assert (guess["value"], guess["sourceType"]) == ("Warp Legal", "HUBSPOT_INTERNAL")
    assert (restored["value"], restored["sourceType"]) == (LEGAL, "INTEGRATION")
    assert restored["sourceId"] == str(TEST_APP_ID)
    with engine.database.transaction() as tx:
        applied = tx.fetch_value(
            "SELECT count(*) FROM accounts.hubspot_sync_log WHERE entity_id = CAST(:c AS uuid) "
            "AND direction = 'HUBSPOT_TO_WARP' AND field_changes ? 'company_name'",
            {"c": cid},
        )
    assert applied == 0
    # Later reconciliation finds both sides in step and leaves WARP's name.
    again = reconcile(engine, cid)
    assert again.report["records"]["updated"] == 0
    assert customer(engine, cid)["company_name"] == LEGAL


def test_enrichment_rename_with_webhook_missed_is_undone_by_reconciliation(
    engine: Engine, emulator: Any
) -> None:
    cid, company = linked_in_sync(engine, emulator)
    hubspot_writes(emulator, company, {"name": "Warp Legal Guess"}, **INTERNAL)  # no webhook
    result = reconcile(engine, cid)
    assert result.status == "COMPLETED"
    assert customer(engine, cid)["company_name"] == LEGAL
    assert name_history(emulator, company)[0]["value"] == LEGAL
    assert result.report["fields"]["company_name"]["to_hubspot"] == 1
    assert not any(
        (entry.get("field_changes") or {}).get("company_name", {}).get("new") == "Warp Legal Guess"
        for entry in logs(engine, cid)
    )


def test_a_person_renaming_in_hubspot_still_wins_by_webhook(
    engine: Engine, emulator: Any, receiver: str
) -> None:
    cid, company = linked_in_sync(engine, emulator)
    emulator.webhooks.configure(url=receiver + "/v1/webhooks/hubspot/company")
    try:
        emulator.ui_change("companies", company, {"name": "Renamed By Sales"})
        assert emulator.webhooks.wait_idle(20)
    finally:
        emulator.webhooks.configure(url=None)
    assert customer(engine, cid)["company_name"] == "Renamed By Sales"
