"""Why an idempotent call did not run."""

from __future__ import annotations

from shared.errors import SyncError


class IdempotencyError(SyncError):
    """Base class of the idempotency errors."""


class AlreadyInProgress(IdempotencyError):
    """Another invocation holds the key and has not finished: try again later."""

    retryable = True

    def __init__(self, key: str) -> None:
        super().__init__(f"work for idempotency key {key!r} is already in progress")
        self.key = key


class PayloadMismatch(IdempotencyError):
    """The key was used before with a different payload: a caller bug, not a retry."""

    retryable = False

    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency key {key!r} was used before with a different payload")
        self.key = key
