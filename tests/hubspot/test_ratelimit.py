"""The shared rate limiter on a real PostgreSQL: several OS processes never draw more
than the budget in any window; pauses and the daily budget hold for everyone."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shared.db import Database
from shared.db.connection import url_connector
from shared.hubspot.errors import DailyBudgetExhausted, RateLimited
from shared.hubspot.models import RateLimitStatus
from shared.hubspot.ratelimit import (
    SLOT_SECONDS,
    SLOTS_PER_DAY,
    Bucket,
    SharedRateLimiter,
    daily_reset_time,
    search_window,
)

pytestmark = pytest.mark.integration


def _draw(url: str, key: str, budget: int, window_ms: int, seconds: float) -> list[float]:
    """Child process: take grants for ``seconds``; return the database times of each."""
    database = Database(url_connector(url), pool_size=1)
    limiter = SharedRateLimiter(database, key=key, rate_limit=budget, window_ms=window_ms)
    granted: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        grant = limiter.try_acquire(Bucket.BURST)
        if grant.granted:
            assert grant.at is not None
            granted.append(grant.at.timestamp())
        else:
            time.sleep(min(grant.wait_seconds, max(0.0, deadline - time.monotonic())))
    database.close()
    return granted


def max_in_any_window(times: list[float], window_s: float) -> int:
    """The most grants any half-open window [t, t + window_s) holds."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_processes_sharing_a_budget_never_exceed_it(database_url: str) -> None:
    budget, window_ms, seconds = 20, 1_000, 3.5
    key = uuid.uuid4().hex
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        parts = pool.starmap(_draw, [(database_url, key, budget, window_ms, seconds)] * 4)
    times = [t for part in parts for t in part]
    assert all(parts), "every process got grants"
    assert max_in_any_window(times, window_ms / 1000) <= budget
    # and the budget is used, not starved: 3 full windows fit in the run at least
    assert len(times) >= 3 * budget


def test_refusal_says_when_the_oldest_grant_leaves_the_window(database: Database) -> None:
    limiter = SharedRateLimiter(database, key=uuid.uuid4().hex, rate_limit=3, window_ms=2_000)
    assert all(limiter.try_acquire(Bucket.BURST).granted for _ in range(3))
    refused = limiter.try_acquire(Bucket.BURST)
    assert not refused.granted and not refused.paused
    assert 1.5 < refused.wait_seconds <= 2.0
    with pytest.raises(RateLimited) as limited:
        limiter.acquire(Bucket.BURST, max_wait=0.2)
    assert limited.value.retryable and limited.value.retry_after is not None


def test_acquire_waits_for_a_slot(database: Database) -> None:
    limiter = SharedRateLimiter(database, key=uuid.uuid4().hex, rate_limit=2, window_ms=300)
    limiter.acquire(Bucket.BURST)
    limiter.acquire(Bucket.BURST)
    waited = limiter.acquire(Bucket.BURST, max_wait=1.0)
    assert 0.15 < waited < 1.0


def test_pause_is_seen_by_another_instance(database_url: str, database: Database) -> None:
    key = uuid.uuid4().hex
    other_pool = Database(url_connector(database_url), pool_size=1)
    try:
        here = SharedRateLimiter(database, key=key)
        there = SharedRateLimiter(other_pool, key=key)
        here.ensure()
        here.pause(Bucket.SEARCH, 3.0, "SECONDLY")
        grant = there.try_acquire(Bucket.SEARCH)
        assert not grant.granted and grant.paused and 2.5 < grant.wait_seconds <= 3.0
        assert there.try_acquire(Bucket.BURST).granted  # only the named bucket stops
    finally:
        other_pool.close()


def test_observe_adds_phantoms_so_we_never_count_more_left_than_hubspot(
    database: Database,
) -> None:
    limiter = SharedRateLimiter(database, key=uuid.uuid4().hex, rate_limit=10, window_ms=10_000)
    limiter.try_acquire(Bucket.BURST)
    limiter.observe(RateLimitStatus(max=12, remaining=0, interval_ms=10_000, daily=None,
                                    daily_remaining=None))  # fmt: skip
    grant = limiter.try_acquire(Bucket.BURST)
    assert not grant.granted and grant.wait_seconds > 9
    with database.transaction() as tx:
        count = tx.fetch_value(
            "SELECT cardinality(grants) FROM accounts.hubspot_rate_windows WHERE name = :n",
            {"n": limiter.window_name(Bucket.BURST)},
        )
    assert count == 10


def test_daily_budget_raises_with_the_time_it_frees(database: Database) -> None:
    limiter = SharedRateLimiter(database, key=uuid.uuid4().hex, daily_budget=3)
    for _ in range(3):
        assert limiter.try_acquire(Bucket.SEARCH).granted
    with pytest.raises(DailyBudgetExhausted) as spent:
        limiter.try_acquire(Bucket.BURST)
    assert spent.value.retryable and spent.value.used == 3 and spent.value.budget == 3
    until = spent.value.resets_at - datetime.now(UTC)
    assert timedelta(hours=23, minutes=44) < until <= timedelta(hours=24)


def test_rows_deleted_under_the_limiter_are_recreated(database: Database) -> None:
    limiter = SharedRateLimiter(database, key=uuid.uuid4().hex)
    assert limiter.try_acquire(Bucket.BURST).granted
    with database.transaction() as tx:
        tx.execute("DELETE FROM accounts.hubspot_rate_windows WHERE name LIKE :k",
                   {"k": limiter.key + ":%"})  # fmt: skip
    assert limiter.try_acquire(Bucket.BURST).granted


def test_search_window_keeps_the_rate() -> None:
    assert search_window(4.0) == (4, 1000)
    assert search_window(4.5) == (4, 889)
    assert search_window(0.5) == (1, 2000)


@given(
    counts=st.lists(st.integers(0, 50), min_size=SLOTS_PER_DAY, max_size=SLOTS_PER_DAY),
    budget=st.integers(1, 2_000),
    slot=st.integers(1_000_000, 2_000_000),
)
def test_daily_reset_is_the_first_moment_a_request_fits(
    counts: list[int], budget: int, slot: int
) -> None:
    assume(sum(counts) >= budget)  # it is asked only when the day is spent
    resets_at = daily_reset_time(slot, counts, budget)
    new_slot = int(resets_at.timestamp()) // SLOT_SECONDS
    assert slot < new_slot <= slot + SLOTS_PER_DAY
    dropped = new_slot - slot  # the oldest ``dropped`` counters have left the rolling day
    assert sum(counts[dropped:]) < budget
    if dropped > 1:  # and one slot earlier it did not fit yet
        assert sum(counts[dropped - 1 :]) >= budget
