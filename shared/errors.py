"""The exception hierarchy every part of the package raises.

Each failure is either *retryable* (the work is queued and tried again later)
or *permanent* (recorded as FAILED and left for a person). Callers decide what
to do from :attr:`SyncError.retryable` alone, never from the concrete class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


def first_problem(exc: ValidationError) -> str:
    """``where: why`` of a validation error's first problem, never the input itself."""
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ())) or "body"
    return f"{where}: {str(error.get('msg', 'invalid')).removeprefix('Value error, ')}"


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
