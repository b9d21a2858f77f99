"""Backoff schedules (pure) and the in-process task stand-in."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.engine import Engine
from shared.tasks import (
    InProcessDispatcher,
    Task,
    TaskOutcome,
    backoff_ceiling,
    backoff_delay,
    register,
    task_name,
)
from shared.tasks.registry import UnknownTaskKind, run_task


@given(
    attempt=st.integers(min_value=1, max_value=500),
    base=st.floats(min_value=0.01, max_value=10),
    cap=st.floats(min_value=10, max_value=3600),
    seed=st.integers(),
)
def test_delay_within_full_jitter_bounds(attempt: int, base: float, cap: float, seed: int) -> None:
    delay = backoff_delay(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2 ** (attempt - 1))


def test_ceiling_doubles_until_cap() -> None:
    ceilings = [backoff_ceiling(a, base=2, cap=600) for a in range(1, 12)]
    assert ceilings[:5] == [2, 4, 8, 16, 32]
    assert ceilings[-1] == 600
    assert all(b >= a for a, b in itertools.pairwise(ceilings))


def test_task_names_are_stable_and_distinct() -> None:
    assert task_name("row-1", 3) == task_name("row-1", 3)
    assert task_name("row-1", 3) != task_name("row-1", 4)
    assert set(task_name("x", 1)) <= set("0123456789abcdef")


# --- the in-process stand-in --------------------------------------------------------------

_calls: list[tuple[str, int]] = []
_lock = threading.Lock()
_fail_first: dict[str, int] = {}


def record_handler(engine: Engine, payload: Mapping[str, Any], attempt: int) -> TaskOutcome:
    key = str(payload["key"])
    with _lock:
        _calls.append((key, attempt))
        remaining = _fail_first.get(key, 0)
        if remaining:
            _fail_first[key] = remaining - 1
            return TaskOutcome.RETRY
    return TaskOutcome.DONE


def crashing_handler(engine: Engine, payload: Mapping[str, Any], attempt: int) -> TaskOutcome:
    raise RuntimeError("boom")


# The stand-in hands its tasks the submitter's engine; these handlers use none.
NO_ENGINE = cast(Engine, None)

register("test.record", "tests.tasks.test_tasks:record_handler")
register("test.crash", "tests.tasks.test_tasks:crashing_handler")


@pytest.fixture
def stand_in() -> Iterator[InProcessDispatcher]:
    _calls.clear()
    _fail_first.clear()
    dispatcher = InProcessDispatcher(base=0.001, cap=0.01, max_attempts=4)
    yield dispatcher
    dispatcher.stop()


def test_runs_in_schedule_order(stand_in: InProcessDispatcher) -> None:
    stand_in.submit(Task("test.record", {"key": "late"}, delay_seconds=0.05), NO_ENGINE)
    stand_in.submit(Task("test.record", {"key": "early"}), NO_ENGINE)
    assert stand_in.wait_idle(5)
    assert [k for k, _ in _calls] == ["early", "late"]


def test_duplicate_names_run_once(stand_in: InProcessDispatcher) -> None:
    assert stand_in.submit(Task("test.record", {"key": "a"}, name="same"), NO_ENGINE)
    assert not stand_in.submit(Task("test.record", {"key": "a"}, name="same"), NO_ENGINE)
    assert stand_in.wait_idle(5)
    assert _calls == [("a", 0)]


def test_retry_until_done_counts_attempts(stand_in: InProcessDispatcher) -> None:
    _fail_first["flaky"] = 2
    stand_in.submit(Task("test.record", {"key": "flaky"}), NO_ENGINE)
    assert stand_in.wait_idle(5)
    assert _calls == [("flaky", 0), ("flaky", 1), ("flaky", 2)]
    assert (stand_in.completed, stand_in.retried, stand_in.failed) == (1, 2, 0)


def test_gives_up_after_max_attempts(stand_in: InProcessDispatcher) -> None:
    _fail_first["hopeless"] = 100
    stand_in.submit(Task("test.record", {"key": "hopeless"}), NO_ENGINE)
    assert stand_in.wait_idle(5)
    assert [a for _, a in _calls] == [0, 1, 2, 3]
    assert stand_in.failed == 1


def test_crash_is_retried_like_a_500(stand_in: InProcessDispatcher) -> None:
    stand_in.submit(Task("test.crash", {}), NO_ENGINE)
    assert stand_in.wait_idle(5)
    assert (stand_in.retried, stand_in.failed) == (3, 1)


def test_unknown_kind_is_permanent() -> None:
    with pytest.raises(UnknownTaskKind) as info:
        run_task(NO_ENGINE, "no.such.kind", {}, 0)
    assert not info.value.retryable


def test_tasks_due_beyond_the_horizon_do_not_keep_it_busy(stand_in: InProcessDispatcher) -> None:
    stand_in.submit(Task("test.record", {"key": "later"}, delay_seconds=300), NO_ENGINE)
    stand_in.submit(Task("test.record", {"key": "now"}), NO_ENGINE)
    assert stand_in.wait_idle(5, horizon=60)
    assert _calls == [("now", 0)]
    assert stand_in.pending(horizon=60) == 0 and stand_in.pending(horizon=600) == 1
