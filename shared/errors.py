"""The exception hierarchy every part of the package raises.

Each failure is either *retryable* (the work is queued and tried again later)
or *permanent* (recorded as FAILED and left for a person). Callers decide what
to do from :attr:`SyncError.retryable` alone, never from the concrete class.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base class. ``retryable`` tells the caller whether trying again can help."""

    retryable: bool = False


class ConfigurationError(SyncError):
    """A setting or a mapping configuration is missing or invalid."""


class DatabaseUnavailableError(SyncError):
    """The database connection failed or dropped; the work can be retried."""

    retryable = True


class WarpChangedDuringSync(SyncError):
    """WARP's application changed a row between the sync's read and its write.

    Nothing of the transaction is written; the work is planned again from fresh reads.
    """

    retryable = True

    def __init__(self, customer_ids: list[str]) -> None:
        super().__init__(f"{len(customer_ids)} customer(s) changed in WARP during the sync")
        self.customer_ids = customer_ids
