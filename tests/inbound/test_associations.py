"""Primary associations and HubSpot's company auto-association never mislink a customer.

The emulator plays the portal setting "Create and associate companies with
contacts" (docs/hubspot.md, "Associations"): HubSpot then associates contacts with
the company of their email domain as *primary*, and creates a company itself when
it finds none. Webhooks go from the emulator to the receiver over HTTP; WARP's
changes go through the outbound function over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.engine import Engine
from shared.hubspot import primary_association_type
from tests.helpers.functions import serve_function
from tests.inbound.test_webhook_receiver import CONTACT_PATH
from tests.outbound.test_outbound_sync import _change, _customer, _drain, _row, _send

pytestmark = pytest.mark.integration

PRIMARY = primary_association_type("contacts", "companies")


@pytest.fixture(scope="module")
def receiver(engine: Engine) -> Iterator[str]:
    with serve_function("webhook_receiver") as base:
        yield base


@pytest.fixture(scope="module")
def url(engine: Engine) -> Iterator[str]:
    with serve_function("outbound_sync") as base:
        yield base


@pytest.fixture
def auto_association(emulator: Any, receiver: str) -> Iterator[None]:
    """The portal setting on, webhooks delivered to the receiver; both off afterwards."""
    emulator.state.auto_create_companies = True
    emulator.webhooks.configure(url=receiver + CONTACT_PATH)
    yield
    emulator.state.auto_create_companies = False
    emulator.webhooks.configure(url=None)


def primary_company(emulator: Any, contact_id: str) -> list[int]:
    links = emulator.state.associations("contacts", int(contact_id), "companies")
    return [company for company, types in links if PRIMARY in types]


def test_a_colleague_made_primary_by_hubspot_does_not_replace_the_customers_contact(
    engine: Engine, emulator: Any, url: str, auto_association: None
) -> None:
    cid = _customer(engine, emulator, linked=False)
    _send(url, _change(cid, operation="CREATE"))
    _drain(engine)
    assert emulator.webhooks.wait_idle(20)
    linked = _row(engine, cid)["external_ids"]
    domain = _row(engine, cid)["contact"]["email"].split("@")[1]
    emulator.state.index_now()  # later: the index shows our company
    # A user adds a colleague in HubSpot: HubSpot makes our company their primary one.
    colleague = emulator.ui_create("contacts", {"email": f"colleague@{domain}"})
    assert primary_company(emulator, colleague) == [int(linked["hubspot_company_id"])]
    assert emulator.webhooks.wait_idle(20)
    assert _row(engine, cid)["external_ids"] == linked  # still the customer's own contact


def test_a_company_hubspot_creates_for_our_contact_is_not_linked_and_ours_stays_primary(
    engine: Engine, emulator: Any, url: str, auto_association: None
) -> None:
    lag = emulator.state.search_delay_ms
    emulator.state.search_delay_ms = 60_000  # HubSpot's associator cannot see our new company
    emulator.webhooks.pause()  # deliveries wait until linking is done
    try:
        cid = _customer(engine, emulator, linked=False)
        _send(url, _change(cid, operation="CREATE"))
        _drain(engine)
    finally:
        emulator.state.search_delay_ms = lag
        emulator.webhooks.resume()
    assert emulator.webhooks.wait_idle(20)
    row = _row(engine, cid)
    ours = row["external_ids"]["hubspot_company_id"]
    contact = row["external_ids"]["hubspot_contact_id"]
    assert emulator.values("companies", ours)["warp_ban"] == row["ban"]
    domain = row["contact"]["email"].split("@")[1]
    [made_by_hubspot] = [
        r.id
        for r in emulator.state.live("companies")
        if r.values.get("domain") == domain and str(r.id) != ours
    ]
    # Our company is the contact's primary one; HubSpot's twin is linked to no customer.
    assert primary_company(emulator, contact) == [int(ours)]
    with engine.database.transaction() as tx:
        owners = tx.fetch(
            "SELECT id FROM accounts.customers WHERE external_ids ->> 'hubspot_company_id' = :id",
            {"id": str(made_by_hubspot)},
        )
    assert owners == []


def test_hubspots_company_for_our_new_contact_never_takes_the_customer(
    engine: Engine,
    emulator: Any,
    url: str,
    auto_association: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lag = emulator.state.search_delay_ms
    emulator.state.search_delay_ms = 60_000  # HubSpot's associator cannot see our new company
    emulator.webhooks.pause()
    associate = engine.hubspot.associate

    def webhooks_arrive_first(*args: Any, **kwargs: Any) -> None:
        # Mid-linking, right after our contact is written: HubSpot has made its own
        # company for it, and that company's creation webhook is processed now.
        emulator.webhooks.resume()
        assert emulator.webhooks.wait_idle(20)
        associate(*args, **kwargs)

    monkeypatch.setattr(engine.hubspot, "associate", webhooks_arrive_first)
    try:
        cid = _customer(engine, emulator, linked=False)
        _send(url, _change(cid, operation="CREATE"))
        _drain(engine)
    finally:
        emulator.state.search_delay_ms = lag
        emulator.webhooks.resume()
    row = _row(engine, cid)
    company = row["external_ids"]["hubspot_company_id"]
    assert emulator.values("companies", company).get("warp_ban") == row["ban"]  # ours
