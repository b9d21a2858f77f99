"""The client's retry policy, decided without HTTP: one row per kind of failed attempt."""

from __future__ import annotations

import pytest

from shared.hubspot._retry import (
    Action,
    Attempt,
    RetryDecision,
    RetryLimits,
    backoff,
    decide,
)
from shared.hubspot.errors import (
    POLICY_DAILY,
    AuthError,
    ConnectionFailed,
    HubSpotError,
    Locked,
    RateLimited,
    ServerError,
    Timeout,
    ValidationError,
)

LIMITS = RetryLimits(max_transient_retries=3, max_retry_wait=5.0, max_rate_wait=11.0)
RAISE = RetryDecision(Action.RAISE)
JITTER = 0.5  # backoff(0, 0.5) = 0.1, backoff(1, 0.5) = 0.2


def _attempt(
    error: HubSpotError,
    *,
    number: int = 0,
    waited: float = 0.0,
    maybe_applied: bool = False,
    idempotent: bool = True,
) -> Attempt:
    return Attempt(error, number, waited, maybe_applied, idempotent)


CASES = [
    # (what, attempt, decision)
    ("refused input is final", _attempt(ValidationError("bad")), RAISE),
    ("a bad token is final", _attempt(AuthError("no")), RAISE),
    ("5xx retried with backoff", _attempt(ServerError("x")), RetryDecision(Action.RETRY, 0.1)),
    ("backoff doubles", _attempt(ServerError("x"), number=1), RetryDecision(Action.RETRY, 0.2)),
    ("retries spent", _attempt(ServerError("x"), number=3), RAISE),
    ("connect failure retried", _attempt(ConnectionFailed("x")), RetryDecision(Action.RETRY, 0.1)),
    (
        "a write that may have been applied is not resent",
        _attempt(Timeout("x"), maybe_applied=True, idempotent=False),
        RAISE,
    ),
    (
        "an idempotent call that may have been applied is resent",
        _attempt(Timeout("x"), maybe_applied=True),
        RetryDecision(Action.RETRY, 0.1),
    ),
    (
        "Retry-After is obeyed",
        _attempt(ServerError("x", retry_after=1.5)),
        RetryDecision(Action.RETRY, 1.5),
    ),
    ("wait budget spent", _attempt(ServerError("x", retry_after=1.5), waited=4.0), RAISE),
    ("423 waits at least 2 s", _attempt(Locked("x")), RetryDecision(Action.RETRY, 2.1)),
    (
        "429 within the window: the limiter's pause does the waiting",
        _attempt(RateLimited("x", retry_after=10.0)),
        RetryDecision(Action.RETRY, 0.0),
    ),
    ("429 longer than the window", _attempt(RateLimited("x", retry_after=12.0)), RAISE),
    ("daily 429", _attempt(RateLimited("x", policy=POLICY_DAILY, retry_after=1.0)), RAISE),
]


@pytest.mark.parametrize(("what", "attempt", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decide(what: str, attempt: Attempt, expected: RetryDecision) -> None:
    decision = decide(attempt, LIMITS, JITTER)
    assert decision.action is expected.action, what
    assert decision.delay == pytest.approx(expected.delay), what


def test_backoff_is_capped_and_full_jitter() -> None:
    assert backoff(0, 0.0) == 0.0
    assert backoff(10, 0.999) == pytest.approx(2.0 * 0.999)
