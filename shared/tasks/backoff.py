"""Retry schedules (pure): exponential backoff with full jitter, and task names.

Full jitter (a random delay between 0 and the exponential ceiling) spreads the
retries of many failed items over time instead of sending them back together,
which matters when they all failed on the same HubSpot rate limit or outage.
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta


def backoff_ceiling(attempt: int, *, base: float, cap: float) -> float:
    """The largest delay for retry number ``attempt`` (1-based): min(cap, base * 2**(attempt-1))."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    # Bound the exponent so huge attempt numbers cannot overflow a float.
    return float(min(cap, base * 2 ** min(attempt - 1, 62)))


def backoff_delay(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """A delay drawn uniformly from [0, ceiling] for retry number ``attempt``."""
    return (rng or random).uniform(0.0, backoff_ceiling(attempt, base=base, cap=cap))


def retry_delay_within(
    failures: int,
    *,
    first_failed_at: datetime,
    now: datetime,
    base: float,
    cap: float,
    window: float,
    rng: random.Random | None = None,
) -> float | None:
    """The delay before retry number ``failures + 1``, or None when the window is spent.

    Work keeps being retried, with capped backoff, until ``window`` seconds after its
    first failure: an outage of hours then ends in recovered work, not in FAILED
    rows waiting for a person. A retry that would fall after the window is not made.
    """
    delay = backoff_delay(failures, base=base, cap=cap, rng=rng)
    if now + timedelta(seconds=delay) > first_failed_at + timedelta(seconds=window):
        return None
    return delay


def task_name(*parts: object) -> str:
    """A Cloud Tasks task id derived from ``parts`` (e.g. queue row id and attempt).

    The same parts always give the same name, so creating the task twice is
    harmless (the second create gets ALREADY_EXISTS). Google advises hashed,
    not sequential, ids for even load across the queue's key space.
    """
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:40]
