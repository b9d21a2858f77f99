"""The client's retry policy: pure decisions about one failed attempt, no I/O.

:func:`decide` says whether a failed HubSpot call is tried again (after how many
seconds) or raised for the caller (Cloud Tasks) to retry later; :func:`pause_for_429`
says what a 429 pauses in the shared limiter. The jitter of the backoff is an input,
so both are tested directly (tests/hubspot/test_hubspot_retry.py) and the request loop in
:mod:`shared.hubspot.client` only carries them out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from shared.hubspot.errors import POLICY_DAILY, POLICY_SECONDLY, HubSpotError, Locked, RateLimited
from shared.hubspot.ratelimit import Bucket

DAILY_429_PAUSE_SECONDS = 900.0  # HubSpot's reset hour is the account's midnight: probe each 15 min
LOCKED_MIN_WAIT = 2.0  # HubSpot asks for at least 2 s after a 423


@dataclass(frozen=True)
class RetryLimits:
    """The client's bounds on retrying in-process."""

    max_transient_retries: int = 3
    max_retry_wait: float = 5.0  # total seconds slept between attempts of one call
    max_rate_wait: float = 11.0  # the longest 429 pause waited for here, not by the caller


@dataclass(frozen=True)
class Attempt:
    """The outcome of one failed attempt, as the policy sees it.

    ``number`` is 0 for the first attempt; ``waited`` the seconds already slept between
    attempts of this call; ``maybe_applied`` whether HubSpot may have carried it out.
    """

    error: HubSpotError
    number: int
    waited: float
    maybe_applied: bool
    idempotent: bool


class Action(enum.Enum):
    RETRY = "retry"
    RAISE = "raise"


@dataclass(frozen=True)
class RetryDecision:
    """Retry after ``delay`` seconds, or raise the error for the caller to retry later."""

    action: Action
    delay: float = 0.0


RAISE = RetryDecision(Action.RAISE)


def backoff(attempt: int, jitter: float, *, base: float = 0.2, cap: float = 2.0) -> float:
    """Full-jitter exponential backoff for retry number ``attempt`` (0-based), jitter in [0, 1)."""
    return jitter * min(cap, base * 2**attempt)


def decide(attempt: Attempt, limits: RetryLimits, jitter: float) -> RetryDecision:
    """Whether to try a failed call again here, and after how long.

    Not-retryable errors and spent budgets raise. A call that may have been applied
    is not resent unless it is idempotent: sending a create twice makes two records.
    A 429 the limiter pauses for at most ``max_rate_wait`` is retried at once (the
    limiter's pause does the waiting, for every instance); a daily or longer one raises.
    """
    error = attempt.error
    if attempt.number >= limits.max_transient_retries or not error.retryable:
        return RAISE
    if attempt.maybe_applied and not attempt.idempotent:
        return RAISE
    delay = _delay(error, attempt.number, limits, jitter)
    if delay is None or attempt.waited + delay > limits.max_retry_wait:
        return RAISE
    return RetryDecision(Action.RETRY, delay)


def _delay(error: HubSpotError, number: int, limits: RetryLimits, jitter: float) -> float | None:
    if isinstance(error, RateLimited):
        if error.policy == POLICY_DAILY or (error.retry_after or 0) > limits.max_rate_wait:
            return None
        return 0.0
    if error.retry_after is not None:
        return error.retry_after
    if isinstance(error, Locked):
        return LOCKED_MIN_WAIT + backoff(number, jitter)
    return backoff(number, jitter)


@dataclass(frozen=True)
class Pause:
    """What a 429 pauses: a bucket (None: every call, the daily limit), how long, and why."""

    bucket: Bucket | None
    seconds: float
    reason: str


def pause_for_429(
    policy: str | None, bucket: Bucket, retry_after: float | None, interval_ms: int | None
) -> Pause:
    """The pause a 429 calls for, given its policy and the bucket of the refused request.

    The daily policy stops every call. Otherwise the refused request's own bucket
    pauses, whatever the policy says: search has its own budget, and a burst call
    refused with the legacy ``SECONDLY`` policy (HubSpot's old per-second limit, still
    named in some answers) must not stop searches that were never over theirs. A
    per-second policy pauses a second; the rolling one the window HubSpot reports.
    """
    if policy == POLICY_DAILY:
        return Pause(None, retry_after or DAILY_429_PAUSE_SECONDS, POLICY_DAILY)
    if bucket is Bucket.SEARCH or policy == POLICY_SECONDLY:
        return Pause(bucket, retry_after or 1.0, policy or POLICY_SECONDLY)
    return Pause(bucket, retry_after or (interval_ms or 10_000) / 1000, policy or "429")
