"""HubSpot gone for a while, or our daily budget spent: work waits, visibly, and drains after.

Changes go in through outbound_sync over real HTTP. The task stand-in here backs off
30 s between attempts, so nothing drains by luck while HubSpot is away; when it is
back the test fast-forwards the scheduled retries (what Cloud Tasks does when the
backoff ends) and waits until the outbound backlog is empty.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from localdev.drain import outbound_backlog, wait_drained
from shared.engine import Engine
from shared.hubspot import HubSpotClient
from shared.messages.envelope import encode_push_envelope
from shared.tasks import InProcessDispatcher
from tests.conftest import engine_settings, serving
from tests.db.test_db_faults import hubspot_status, suspend
from tests.engine.test_reconcile import linked_customer
from tests.helpers.functions import serve_function
from tests.outbound.test_outbound_sync import _change

pytestmark = pytest.mark.integration

BACKOFF = 30.0


@pytest.fixture(scope="module")
def slow_retries(engine: Engine, database_url: str, emulator: Any) -> Iterator[Engine]:
    """The engine with a 30 s backoff (tasks and queue rows) installed process-wide."""
    settings = engine_settings(
        database_url, emulator.url, retry_base_seconds=BACKOFF, retry_cap_seconds=BACKOFF
    )
    dispatcher = InProcessDispatcher(
        base=BACKOFF, cap=BACKOFF, max_attempts=settings.retry_max_attempts
    )
    engine.hubspot.max_transient_retries = 0
    slowed = dataclasses.replace(engine, settings=settings, dispatcher=dispatcher)
    try:
        with serving(slowed):
            yield slowed
    finally:
        dispatcher.stop()


@pytest.fixture(scope="module")
def urls(slow_retries: Engine) -> Iterator[dict[str, str]]:
    with serve_function("outbound_sync") as outbound, serve_function("sync_api") as api:
        yield {"outbound_sync": outbound, "sync_api": api}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling a condition, with a deadline


def send_changes(url: str, engine: Engine, customers: list[dict[str, str]]) -> None:
    for customer in customers:
        suspend(engine, customer)
        body = encode_push_envelope(_change(customer["id"], "status"), uuid.uuid4().hex)
        answer = httpx.post(url, content=body, timeout=30)
        assert answer.status_code == 200 and answer.json()["outcome"] == "accepted"


def drain(engine: Engine) -> None:
    dispatcher = engine.dispatcher
    assert isinstance(dispatcher, InProcessDispatcher)
    dispatcher.run_due_now()  # the backoff has ended
    assert wait_drained(engine, timeout=30)


def test_outage_queues_the_work_and_it_drains_when_hubspot_returns(
    slow_retries: Engine, emulator: Any, urls: dict[str, str]
) -> None:
    engine = slow_retries
    dispatcher = engine.dispatcher
    assert isinstance(dispatcher, InProcessDispatcher)
    customers = [linked_customer(engine, emulator) for _ in range(5)]
    retried_before = dispatcher.retried
    emulator.set_faults(outage=True)
    try:
        send_changes(urls["outbound_sync"], engine, customers)  # acknowledged all the same
        wait_for(lambda: dispatcher.retried > retried_before, "the flush to fail and back off")
        assert outbound_backlog(engine)["dirty"] == len(customers)  # waiting, not lost
        assert {hubspot_status(emulator, c) for c in customers} == {"ACTIVE"}
    finally:
        emulator.set_faults(outage=False)
    drain(engine)
    assert {hubspot_status(emulator, c) for c in customers} == {"SUSPENDED"}
    assert outbound_backlog(engine) == {"dirty": 0, "queued": 0}


def _metric(api: str, name: str) -> float:
    text = httpx.get(f"{api}/metrics", timeout=30).text
    values = [float(m) for m in re.findall(rf"^{name}{{[^}}]*}} ([0-9.e+-]+)$", text, re.M)]
    assert values, f"{name} not in /metrics:\n{text[:2000]}"
    return max(values)


def _set_budget(
    engine: Engine, database_url: str, emulator: Any, budget: int, monkeypatch: pytest.MonkeyPatch
) -> HubSpotClient:
    """Give ``engine`` a HubSpot client whose shared daily budget is ``budget``; the client.

    In place, as a redeploy with another budget would: a task already submitted runs
    with the engine that submitted it, and must meet the new client too.
    """
    settings = engine_settings(
        database_url,
        emulator.url,
        retry_base_seconds=BACKOFF,
        retry_cap_seconds=BACKOFF,
        hubspot_daily_budget=budget,
    )
    client = HubSpotClient.from_settings(settings, engine.database)
    client.max_transient_retries = 0
    monkeypatch.setattr(engine, "settings", settings)
    monkeypatch.setattr(engine, "hubspot", client)
    return client


def test_daily_budget_exhausted_pauses_with_a_clear_status_and_resumes(
    slow_retries: Engine,
    emulator: Any,
    urls: dict[str, str],
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = slow_retries
    dispatcher = engine.dispatcher
    assert isinstance(dispatcher, InProcessDispatcher)
    customers = [linked_customer(engine, emulator) for _ in range(3)]
    # A budget of one request a day, already spent by the calls above.
    clients = [_set_budget(engine, database_url, emulator, 1, monkeypatch)]
    try:
        calls_before = sum(emulator.stats()["calls"].values())
        retried_before = dispatcher.retried
        with caplog.at_level(logging.WARNING, logger="warp_hubspot_sync"):
            send_changes(urls["outbound_sync"], engine, customers)
            wait_for(lambda: dispatcher.retried > retried_before, "the flush to pause")
        assert sum(emulator.stats()["calls"].values()) == calls_before  # paused, not hammering
        assert outbound_backlog(engine)["dirty"] == len(customers)
        said = " ".join(r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records)
        assert "daily HubSpot request budget exhausted" in said and "requests resume at" in said
        assert _metric(urls["sync_api"], "hubspot_api_daily_budget_used_ratio") >= 1.0
        clients.append(_set_budget(engine, database_url, emulator, 237_500, monkeypatch))
        drain(engine)
    finally:
        monkeypatch.undo()  # the engine's own client back before these are closed
        for client in clients:
            client.close()
    assert {hubspot_status(emulator, c) for c in customers} == {"SUSPENDED"}
    assert _metric(urls["sync_api"], "hubspot_api_daily_budget_used_ratio") < 1.0
