"""A flood of unsigned or forged webhook requests over real HTTP (functions-framework) on a
real PostgreSQL: refused before any database work, a repeating source refused unread
with 429, and genuine deliveries succeeding throughout.

No assertion depends on timing: the flood is known to be under way by counting its
answers, and "takes no database connection" is shown by holding the pool's only
connection while the flood is answered.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.db import Database
from shared.db.connection import url_connector
from shared.engine import Engine
from shared.inbound.gate import SourceGate, source_of
from tests.conftest import serving
from tests.helpers.functions import serve_function
from tests.helpers.inbound import change
from tests.inbound.test_inbound_processing import customer, new_customer
from tests.inbound.test_webhook_receiver import COMPANY_PATH, signed_headers, stored_count

pytestmark = pytest.mark.integration

LIMIT = 5
WINDOW_S = 3600.0  # longer than any test: the window never ends inside one
HUBSPOT_IP = "54.174.60.10"
TIMEOUT = httpx.Timeout(30.0)  # only a request stuck on the database would reach it


# --- the gate, directly ------------------------------------------------------------------


def test_a_source_is_refused_after_the_limit_until_its_window_ends() -> None:
    now = [100.0]
    gate = SourceGate(3, 60.0, clock=lambda: now[0])
    for _ in range(2):
        gate.failed("198.51.100.7")
    assert gate.retry_after("198.51.100.7") is None
    gate.failed("198.51.100.7")
    now[0] = 110.0
    assert gate.retry_after("198.51.100.7") == pytest.approx(50.0)
    assert gate.retry_after("198.51.100.8") is None  # another source is not touched
    now[0] = 160.0
    assert gate.retry_after("198.51.100.7") is None
    gate.failed("198.51.100.7")  # a new window: one failure is not the limit
    assert gate.retry_after("198.51.100.7") is None


def test_failures_spread_over_windows_never_trip_the_limit() -> None:
    now = [0.0]
    gate = SourceGate(3, 10.0, clock=lambda: now[0])
    for step in range(10):
        now[0] = step * 6.0  # two failures per window at most
        gate.failed("198.51.100.7")
        assert gate.retry_after("198.51.100.7") is None, step


def test_a_flood_from_many_sources_is_remembered_in_bounded_memory() -> None:
    gate = SourceGate(1, 60.0, max_sources=100)
    for n in range(1_000):
        gate.failed(f"10.0.{n // 256}.{n % 256}")
    assert gate.retry_after("10.0.3.231") is not None  # the newest are remembered
    assert gate.retry_after("10.0.0.0") is None  # the oldest were forgotten
    assert len(gate._failures) == 100


def test_the_source_is_the_last_forwarded_address_never_the_callers_claim() -> None:
    # Cloud Run replaces X-Forwarded-For with the caller's address; a load balancer
    # appends it. What the caller wrote comes first, so it is never the source.
    assert source_of({"X-Forwarded-For": "54.174.60.10, 203.0.113.9"}, "10.1.1.1") == "203.0.113.9"
    assert source_of({"X-Forwarded-For": "203.0.113.9"}, "10.1.1.1") == "203.0.113.9"
    assert source_of({}, "10.1.1.1") == "10.1.1.1"
    assert source_of({"X-Forwarded-For": " , "}, None) == "unknown"


# --- over HTTP ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_pool(database_url: str) -> Iterator[Database]:
    """A pool of one connection: a request that needed it would wait while a test holds it."""
    pool = Database(url_connector(database_url), pool_size=1)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def gated(engine: Engine, small_pool: Database) -> Iterator[Engine]:
    """The engine with a low webhook limit and a one-connection pool, installed process-wide."""
    settings = engine.settings.model_copy(
        update={
            "webhook_source_failure_limit": LIMIT,
            "webhook_source_failure_window_seconds": WINDOW_S,
        }
    )
    flood_engine = dataclasses.replace(engine, settings=settings, database=small_pool)
    with serving(flood_engine):
        yield flood_engine


@pytest.fixture(scope="module")
def receiver(gated: Engine) -> Iterator[str]:
    with serve_function("webhook_receiver") as url:
        yield url


_addresses = itertools.count(1)


def fresh_source() -> str:
    """An address no earlier request came from (TEST-NET-3)."""
    n = next(_addresses)
    return f"203.0.{113 + n // 250}.{n % 250 + 1}"


def post(
    client: httpx.Client,
    base: str,
    events: list[dict[str, Any]],
    *,
    source: str,
    secret: str | None = None,
) -> httpx.Response:
    """One delivery from ``source``: signed with ``secret`` (default: ours), or unsigned
    when ``secret`` is the empty string."""
    body = json.dumps(events, separators=(",", ":")).encode()
    uri = base + COMPANY_PATH
    if secret == "":
        headers = {"Content-Type": "application/json"}
    elif secret is None:
        headers = signed_headers(uri, body)
    else:
        headers = signed_headers(uri, body, secret=secret)
    headers["X-Forwarded-For"] = source
    return client.post(uri, content=body, headers=headers)


def test_a_source_sending_bad_signatures_is_refused_unread_with_429(
    gated: Engine, emulator: Any, receiver: str
) -> None:
    attacker, other = fresh_source(), fresh_source()
    events = [change(900_101, "name", "Forged")]
    with httpx.Client(timeout=TIMEOUT) as client:
        answers = [
            post(client, receiver, events, source=attacker, secret="forged").status_code
            for _ in range(LIMIT)
        ]
        assert answers == [401] * LIMIT
        refused = post(client, receiver, events, source=attacker, secret="forged")
        assert refused.status_code == 429, refused.text
        assert 0 < int(refused.headers["Retry-After"]) <= WINDOW_S
        assert "bad signatures" in refused.json()["error"]
        # Unsigned requests count the same; the limit is per source.
        assert post(client, receiver, events, source=other, secret="").status_code == 401

        cid, company = new_customer(gated, emulator)
        genuine = [change(company, "name", "Renamed During The Flood")]
        delivered = post(client, receiver, genuine, source=HUBSPOT_IP)
        assert delivered.status_code == 200, delivered.text
    assert customer(gated, cid)["company_name"] == "Renamed During The Flood"
    assert stored_count(gated, events) == 0


class Flood:
    """Threads sending forged and unsigned requests until stopped; counts every answer."""

    def __init__(self, base: str, *, senders: int = 4) -> None:
        self.base = base
        self.answers: Counter[int] = Counter()
        self.failures: list[str] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send, args=(n,), daemon=True) for n in range(senders)
        ]

    def _send(self, n: int) -> None:
        events = [change(900_200 + n, "name", "Forged")]
        # One sender repeats its address (it meets the 429); the others never do, so
        # each of their requests is read and its signature checked.
        repeated = fresh_source()
        with httpx.Client(timeout=TIMEOUT) as client:
            for count in itertools.count():
                if self._stop.is_set():
                    return
                source = repeated if n == 0 else fresh_source()
                secret = "" if count % 2 else "forged"
                try:
                    answer = post(client, self.base, events, source=source, secret=secret)
                except httpx.HTTPError as exc:
                    with self._changed:
                        self.failures.append(repr(exc))
                        self._changed.notify_all()
                    return
                with self._changed:
                    self.answers[answer.status_code] += 1
                    self._changed.notify_all()

    def __enter__(self) -> Flood:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def wait_for(self, answered: int) -> None:
        """Block until the flood has had ``answered`` answers (or a failure) in all."""
        with self._changed:
            self._changed.wait_for(
                lambda: bool(self.failures) or sum(self.answers.values()) >= answered
            )

    def total(self) -> int:
        with self._changed:
            return sum(self.answers.values())


def test_a_forged_flood_takes_no_database_connection(gated: Engine, receiver: str) -> None:
    taken, release = threading.Event(), threading.Event()

    def hold_the_only_connection() -> None:
        with gated.database.transaction() as tx:
            tx.fetch_value("SELECT 1")
            taken.set()
            release.wait()

    holder = threading.Thread(target=hold_the_only_connection)
    holder.start()
    taken.wait()
    try:
        # Had a refused request needed a connection, it would wait for the one held
        # here, and the flood would never reach its count (the client would time out).
        with Flood(receiver) as flood:
            flood.wait_for(60)
    finally:
        release.set()
        holder.join()
    assert flood.failures == []
    assert set(flood.answers) <= {401, 429} and flood.answers[401] > 0
    assert flood.answers[429] > 0  # the repeating sender met the limit


def test_genuine_deliveries_succeed_during_a_forged_flood(
    gated: Engine, emulator: Any, receiver: str
) -> None:
    linked = [new_customer(gated, emulator) for _ in range(10)]
    with Flood(receiver) as flood, httpx.Client(timeout=TIMEOUT) as client:
        flood.wait_for(20)  # under way before the first genuine delivery...
        for n, (_, company) in enumerate(linked):
            events = [change(company, "name", f"Genuine {n}")]
            response = post(client, receiver, events, source=HUBSPOT_IP)
            assert response.status_code == 200, response.text
            assert response.json()["outcomes"]["applied"] == 1
        during = flood.total()
        flood.wait_for(during + 4)  # ...and still under way after the last one
    assert flood.failures == []
    assert set(flood.answers) <= {401, 429}
    assert [customer(gated, cid)["company_name"] for cid, _ in linked] == [
        f"Genuine {n}" for n in range(10)
    ]
