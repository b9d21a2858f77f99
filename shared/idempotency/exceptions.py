"""Why work for an idempotency key did not run."""

from __future__ import annotations

from shared.errors import SyncError


class AlreadyInProgress(SyncError):
    """Another invocation holds the key and has not finished: try again later."""

    retryable = True

    def __init__(self, key: str) -> None:
        super().__init__(f"work for idempotency key {key!r} is already in progress")
        self.key = key
