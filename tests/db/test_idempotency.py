"""Idempotency records against the real table: claims, repeats, failures, crashes, races."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.db import Database
from shared.idempotency import PostgresPersistence, Status, payload_hash

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


HOUR = timedelta(hours=1)
LEASE = timedelta(minutes=5)


def _claim(persistence: PostgresPersistence, key: str, payload: Any = None) -> bool:
    claim = persistence.claim(key, payload_hash(payload), expires_after=HOUR, lease=LEASE)
    return claim.claimed


def _expire(database: Database, key: str, column: str) -> None:
    with database.transaction() as tx:
        tx.execute(
            f"UPDATE accounts.hubspot_idempotency SET {column} = NOW() - interval '1 second' "
            "WHERE key = :key",
            {"key": key},
        )


@pytest.mark.integration
def test_a_completed_key_is_not_claimed_again(persistence: PostgresPersistence) -> None:
    key = new_key()
    assert _claim(persistence, key, {"x": 1})
    persistence.complete(key, {"company_id": "42"}, expires_after=HOUR)
    claim = persistence.claim(key, payload_hash({"x": 1}), expires_after=HOUR, lease=LEASE)
    assert not claim.claimed and claim.existing is not None
    assert claim.existing.status is Status.COMPLETED
    assert claim.existing.response == {"company_id": "42"}
    assert claim.existing.payload_hash == payload_hash({"x": 1})
    assert claim.existing.in_progress_expires_at is None


@pytest.mark.integration
def test_deleting_a_claim_frees_the_key_but_not_a_completed_record(
    persistence: PostgresPersistence,
) -> None:
    key = new_key()
    assert _claim(persistence, key)
    persistence.delete(key)  # the work failed
    assert persistence.get(key) is None
    assert _claim(persistence, key)
    persistence.complete(key, 7, expires_after=HOUR)
    persistence.delete(key)
    record = persistence.get(key)
    assert record is not None and record.status is Status.COMPLETED and record.response == 7


@pytest.mark.integration
def test_claimed_key_is_in_progress_until_the_lease_runs_out(
    persistence: PostgresPersistence, database: Database
) -> None:
    key = new_key()
    # An invocation claims the key and then crashes: it never completes or deletes.
    assert _claim(persistence, key, {"p": 1})
    claim = persistence.claim(key, payload_hash({"p": 1}), expires_after=HOUR, lease=LEASE)
    assert not claim.claimed and claim.existing is not None
    assert claim.existing.status is Status.IN_PROGRESS
    _expire(database, key, "in_progress_expires_at")  # the crashed claim's lease runs out
    assert not _claim(persistence, key, {"p": 2}), "only a retry of the same payload takes over"
    assert _claim(persistence, key, {"p": 1})


@pytest.mark.integration
def test_expired_record_is_claimed_again_and_purged(
    persistence: PostgresPersistence, database: Database
) -> None:
    key = new_key()
    assert _claim(persistence, key)
    persistence.complete(key, 1, expires_after=HOUR)
    _expire(database, key, "expires_at")
    assert _claim(persistence, key)

    other = new_key()
    assert _claim(persistence, other)
    persistence.complete(other, 1, expires_after=HOUR)
    _expire(database, other, "expires_at")
    assert persistence.purge_expired() >= 1
    assert persistence.get(other) is None


@pytest.mark.integration
@pytest.mark.parametrize("round_", range(10))
def test_two_threads_racing_for_one_key_one_claims_it(
    persistence: PostgresPersistence, round_: int
) -> None:
    key = new_key()
    barrier = threading.Barrier(2)
    outcomes: dict[str, bool] = {}

    def contender(name: str) -> None:
        barrier.wait(timeout=30)
        outcomes[name] = _claim(persistence, key, {"k": 1})

    threads = [threading.Thread(target=contender, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert sorted(outcomes.values()) == [False, True], "exactly one contender claims the key"
