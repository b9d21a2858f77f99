"""The one rule for "may the same work be retried?", class by class."""

from __future__ import annotations

import pg8000.exceptions
import pytest

from shared.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    Retry,
    SyncError,
    WarpChangedDuringSync,
    retry_after,
    retry_verdict,
)
from shared.tasks.registry import UnknownTaskKind


def _pg(code: str) -> pg8000.exceptions.DatabaseError:
    return pg8000.exceptions.DatabaseError({"S": "ERROR", "C": code, "M": "x"})


class _RateLimited(SyncError):
    retryable = True

    def __init__(self, wait: float | None) -> None:
        super().__init__("429")
        self.retry_after = wait


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (DatabaseUnavailableError("gone"), Retry.HELPS),
        (WarpChangedDuringSync("c1"), Retry.HELPS),
        (ConfigurationError("bad"), Retry.NEVER),
        (UnknownTaskKind("nope"), Retry.NEVER),
        (_pg("40001"), Retry.HELPS),  # serialization failure
        (_pg("40P01"), Retry.HELPS),  # deadlock
        (_pg("55P03"), Retry.HELPS),  # lock timeout
        (_pg("57014"), Retry.HELPS),  # statement cancelled (time budget)
        (_pg("23505"), Retry.NEVER),  # unique violation: the same insert fails again
        (pg8000.exceptions.DatabaseError("no sqlstate"), Retry.NEVER),
        (pg8000.exceptions.InterfaceError("network error"), Retry.HELPS),
        (ConnectionResetError(), Retry.HELPS),
        (TimeoutError(), Retry.HELPS),
        (KeyError("bug"), Retry.UNKNOWN),
        (ValueError("bug"), Retry.UNKNOWN),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_retry_verdict(exc: BaseException, verdict: Retry) -> None:
    assert retry_verdict(exc) is verdict


@pytest.mark.parametrize(
    ("exc", "seconds"),
    [
        (_RateLimited(12), 12.0),
        (_RateLimited(None), None),
        (_RateLimited(0), None),
        (KeyError(), None),
    ],
)
def test_retry_after(exc: BaseException, seconds: float | None) -> None:
    assert retry_after(exc) == seconds
