"""Idempotent execution against the real table: repeats, failures, crashes, races."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.db import Database
from shared.idempotency import (
    AlreadyInProgress,
    PayloadMismatch,
    PostgresPersistence,
    Status,
    idempotent,
    payload_hash,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_payload_hash_ignores_key_order(payload: dict[str, Any]) -> None:
    reordered = dict(reversed(list(payload.items())))
    assert payload_hash(reordered) == payload_hash(payload)


def test_payload_hash_tells_payloads_apart() -> None:
    assert payload_hash({"a": 1}) != payload_hash({"a": 2})
    assert payload_hash(None) is None


@pytest.fixture
def persistence(database: Database) -> PostgresPersistence:
    return PostgresPersistence(database)


def new_key() -> str:
    return f"test:{uuid.uuid4()}"


class Counter:
    """A piece of work that counts its runs."""

    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self.runs = 0
        self.result = result
        self.error = error

    def __call__(self) -> Any:
        self.runs += 1
        if self.error is not None:
            raise self.error
        return self.result


@pytest.mark.integration
def test_second_call_returns_the_stored_result(persistence: PostgresPersistence) -> None:
    key, work = new_key(), Counter(result={"company_id": "42"})
    assert idempotent(key, {"x": 1}, persistence, work) == {"company_id": "42"}
    assert idempotent(key, {"x": 1}, persistence, work) == {"company_id": "42"}
    assert work.runs == 1
    record = persistence.get(key)
    assert record is not None and record.status is Status.COMPLETED
    assert record.in_progress_expires_at is None


@pytest.mark.integration
def test_failure_releases_the_key(persistence: PostgresPersistence) -> None:
    key = new_key()
    failing = Counter(error=ConnectionError("HubSpot down"))
    with pytest.raises(ConnectionError):
        idempotent(key, None, persistence, failing)
    assert persistence.get(key) is None
    assert idempotent(key, None, persistence, Counter(result=7)) == 7


@pytest.mark.integration
def test_claimed_key_is_in_progress_until_the_claim_expires(
    persistence: PostgresPersistence, database: Database
) -> None:
    key, work = new_key(), Counter(result="done")
    # An invocation claims the key and then crashes: it never completes or deletes.
    claim = persistence.claim(
        key, payload_hash({"p": 1}), expires_after=timedelta(hours=1), lease=timedelta(minutes=5)
    )
    assert claim.claimed
    with pytest.raises(AlreadyInProgress) as caught:
        idempotent(key, {"p": 1}, persistence, work)
    assert caught.value.retryable and work.runs == 0

    with database.transaction() as tx:  # the crashed claim's lease runs out
        tx.execute(
            "UPDATE accounts.hubspot_idempotency "
            "SET in_progress_expires_at = NOW() - interval '1 second' WHERE key = :key",
            {"key": key},
        )
    assert idempotent(key, {"p": 1}, persistence, work) == "done"
    assert work.runs == 1


@pytest.mark.integration
def test_payload_mismatch_is_permanent(persistence: PostgresPersistence) -> None:
    key = new_key()
    idempotent(key, {"amount": 1}, persistence, Counter(result=1))
    with pytest.raises(PayloadMismatch) as caught:
        idempotent(key, {"amount": 2}, persistence, Counter(result=2))
    assert not caught.value.retryable


@pytest.mark.integration
def test_expired_record_runs_again_and_is_purged(
    persistence: PostgresPersistence, database: Database
) -> None:
    key, work = new_key(), Counter(result=1)
    idempotent(key, None, persistence, work, expires_after=timedelta(hours=1))
    with database.transaction() as tx:
        tx.execute(
            "UPDATE accounts.hubspot_idempotency SET expires_at = NOW() - interval '1 second' "
            "WHERE key = :key",
            {"key": key},
        )
    idempotent(key, None, persistence, work)
    assert work.runs == 2

    other = new_key()
    idempotent(other, None, persistence, Counter(result=1))
    with database.transaction() as tx:
        tx.execute(
            "UPDATE accounts.hubspot_idempotency SET expires_at = NOW() - interval '1 second' "
            "WHERE key = :key",
            {"key": other},
        )
    assert persistence.purge_expired() >= 1
    assert persistence.get(other) is None


@pytest.mark.integration
@pytest.mark.parametrize("round_", range(10))
def test_two_threads_racing_for_one_key_run_it_once(
    persistence: PostgresPersistence, round_: int
) -> None:
    key = new_key()
    barrier = threading.Barrier(2)
    release = threading.Event()
    runs: list[str] = []
    outcomes: dict[str, Any] = {}

    def work(name: str) -> str:
        runs.append(name)
        # Hold the key until the other thread has had its answer.
        assert release.wait(timeout=30)
        return name

    def contender(name: str) -> None:
        barrier.wait(timeout=30)
        try:
            outcomes[name] = idempotent(key, {"k": 1}, persistence, lambda: work(name))
        except AlreadyInProgress as exc:
            outcomes[name] = exc
            release.set()

    threads = [threading.Thread(target=contender, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    assert len(runs) == 1, "exactly one contender runs the work"
    winner = runs[0]
    loser = "b" if winner == "a" else "a"
    assert outcomes[winner] == winner
    assert isinstance(outcomes[loser], AlreadyInProgress)
    # Once done, both see the winner's stored result.
    assert idempotent(key, {"k": 1}, persistence, lambda: work("late")) == winner
