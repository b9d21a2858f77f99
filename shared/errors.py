"""The exception hierarchy every part of the package raises.

Each failure is either *retryable* (the work is queued and tried again later)
or *permanent* (recorded as FAILED and left for a person). Callers decide what
to do from :attr:`SyncError.retryable` alone, never from the concrete class.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


def first_problem(exc: ValidationError) -> str:
    """``where: why`` of a validation error's first problem, never the input itself."""
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ())) or "body"
    return f"{where}: {str(error.get('msg', 'invalid')).removeprefix('Value error, ')}"


class Retry(Enum):
    """What trying the same work again may do, as :func:`retry_verdict` decides it."""

    HELPS = "helps"  # a transient condition: the same work may succeed later
    NEVER = "never"  # a permanent failure we recognised: retrying cannot help
    UNKNOWN = "unknown"  # an unexpected exception, a bug: nobody knows


# SQLSTATEs after which the same work can succeed later: serialization failure,
# deadlock, lock wait timeout (our lock budget), statement cancelled (our time budget).
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014"})


def retry_verdict(exc: BaseException) -> Retry:
    """The one rule for "may trying the same work again help?"; pure, no I/O.

    - a :class:`SyncError` says so itself: ``retryable`` gives HELPS or NEVER;
    - a pg8000 database error with a transient SQLSTATE (serialization failure,
      deadlock, lock timeout, statement cancelled) is HELPS, any other SQLSTATE
      (a constraint, a syntax error) is NEVER;
    - a lost connection (pg8000's ``InterfaceError``, an ``OSError``) is HELPS;
    - anything else is UNKNOWN: a bug, which the same code on the same input will
      most likely hit again. Each flow maps UNKNOWN to a *bounded* behaviour:
      Cloud Tasks and the queue worker retry it (bounded by attempts or the retry
      window, as a 500 would be), an inbound event fails for good (the per-minute
      sweep must not retry it forever), and the log line is an ERROR.
    """
    if isinstance(exc, SyncError):
        return Retry.HELPS if exc.retryable else Retry.NEVER
    # pg8000 is imported lazily: errors.py is loaded by every function's cold start.
    import pg8000.exceptions

    if isinstance(exc, pg8000.exceptions.InterfaceError | OSError):
        return Retry.HELPS
    if isinstance(exc, pg8000.exceptions.DatabaseError):
        info = exc.args[0] if exc.args else None
        code = info.get("C", "") if isinstance(info, dict) else ""
        return Retry.HELPS if code in _TRANSIENT_SQLSTATES else Retry.NEVER
    return Retry.UNKNOWN


def retry_after(exc: BaseException) -> float | None:
    """Seconds the failing party asked us to wait before trying again (a 429's), if any."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) and value > 0 else None


class SyncError(Exception):
    """Base class. ``retryable`` tells the caller whether trying again can help."""

    retryable: bool = False

    def loggable(self) -> str:
        """What a log line may say about this error: our own words, no outside content.

        A subclass whose message can quote what a party sent (HubSpot's validation
        messages quote property values) overrides this to leave that out.
        """
        return str(self)


class ConfigurationError(SyncError):
    """A setting or a mapping configuration is missing or invalid."""


class DatabaseUnavailableError(SyncError):
    """The database connection failed or dropped; the work can be retried."""

    retryable = True


class WarpChangedDuringSync(SyncError):
    """WARP's application changed a customer between a flow's read and its write.

    Nothing of that customer was written; the work is tried again on a fresh read.
    """

    retryable = True

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"customer {customer_id} changed in WARP during the sync")
