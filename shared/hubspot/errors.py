"""HubSpot failures as :class:`~shared.errors.SyncError` subclasses.

Every error carries what HubSpot said (status, category, message, correlation
id, context) so a log line or a FAILED queue row is enough to open a support
ticket. Callers decide from ``.retryable`` alone: retryable errors go back to
Cloud Tasks with a backoff (``retry_after`` when HubSpot or our limiter named
one), permanent ones are recorded as FAILED.

Messages never contain the access token. HubSpot's own messages can quote
property values ("Property values were not valid: ..."), which may be personal
data: log :meth:`HubSpotError.as_dict` (status, category, correlation id,
retryability), which leaves the message out; the message itself (cut to 200
characters) belongs in the sync log, whose sensitive columns are encrypted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from shared.errors import SyncError

# The policies HubSpot names in a 429 body; search 429s name none (hubspot-api.md §4).
POLICY_TEN_SECONDLY = "TEN_SECONDLY_ROLLING"
POLICY_DAILY = "DAILY"
POLICY_SECONDLY = "SECONDLY"
_SECONDLY_MESSAGE = "You have reached your secondly limit."


class HubSpotError(SyncError):
    """A HubSpot call failed. ``status`` is the HTTP status (0 when no answer came)."""

    status_code: ClassVar[int] = 0

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        category: str | None = None,
        correlation_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = self.status_code if status is None else status
        self.category = category
        self.correlation_id = correlation_id
        self.context: dict[str, Any] = dict(context or {})
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [self.message]
        if self.status:
            parts.append(f"status={self.status}")
        if self.category:
            parts.append(f"category={self.category}")
        if self.correlation_id:
            parts.append(f"correlation_id={self.correlation_id}")
        return " ".join(parts)

    # True when the message is HubSpot's own text, which can quote property values.
    quotes_hubspot: bool = False

    def loggable(self) -> str:
        """Our own message, or for HubSpot's text only status, category and correlation id."""
        if not self.quotes_hubspot:
            return str(self)
        return " ".join(f"{k}={v}" for k, v in self.as_dict().items() if v is not None)

    def as_dict(self) -> dict[str, Any]:
        """The fields a log line or a queue row keeps (no token, no property values)."""
        return {
            "error": type(self).__name__,
            "status": self.status,
            "category": self.category,
            "correlation_id": self.correlation_id,
            "retryable": self.retryable,
            "retry_after": self.retry_after,
        }

    @classmethod
    def from_response(
        cls,
        status: int,
        body: Any,
        *,
        correlation_id: str | None = None,
        retry_after: float | None = None,
    ) -> HubSpotError:
        """The error class and fields for a non-2xx answer (``body`` decoded JSON or text)."""
        data: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
        message = str(data.get("message") or (body if isinstance(body, str) else "") or "")
        message = message[:200] or f"HTTP {status}"
        fields: dict[str, Any] = {
            "status": status,
            "category": data.get("category") or data.get("errorType"),
            "correlation_id": data.get("correlationId") or correlation_id,
            "context": data.get("context") if isinstance(data.get("context"), Mapping) else None,
            "retry_after": retry_after,
        }
        if status == 429:
            policy = data.get("policyName")
            if not policy and message == _SECONDLY_MESSAGE:
                policy = POLICY_SECONDLY
            error: HubSpotError = RateLimited(message, policy=policy, **fields)
        else:
            klass = _BY_STATUS.get(status)
            if klass is None:
                klass = ServerError if status >= 500 else HubSpotError
            error = klass(message, **fields)
        error.quotes_hubspot = True
        return error

    @classmethod
    def from_batch_error(cls, error: Mapping[str, Any]) -> HubSpotError:
        """One per-record error of a 207 answer (its ``status`` is a word, not a code)."""
        category = error.get("category")
        klass = _BY_CATEGORY.get(str(category), HubSpotError)
        refused = klass(
            str(error.get("message") or "batch input failed")[:200],
            status=klass.status_code,
            category=category,
            context=error.get("context") if isinstance(error.get("context"), Mapping) else None,
        )
        refused.quotes_hubspot = True
        return refused


class RateLimited(HubSpotError):
    """429: a HubSpot rate limit (``policy``) or our shared limiter could not grant in time."""

    status_code = 429
    retryable = True

    def __init__(self, message: str, *, policy: str | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.policy = policy

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "policy": self.policy}


class ServerError(HubSpotError):
    """5xx (including Cloudflare's 52x): HubSpot failed; try again shortly."""

    status_code = 500
    retryable = True


class Locked(HubSpotError):
    """423: too many writes to the same record; HubSpot asks for a pause of at least 2 s."""

    status_code = 423
    retryable = True


class MigrationInProgress(HubSpotError):
    """477: the account is being migrated between data centres; honour Retry-After."""

    status_code = 477
    retryable = True


class Timeout(HubSpotError):
    """No answer within the configured connect or read timeout."""

    retryable = True


class ConnectionFailed(HubSpotError):
    """The connection could not be made or broke before an answer arrived."""

    retryable = True


class ValidationError(HubSpotError):
    """400: the request is wrong (unknown property, bad value, bad filter); fix the input."""

    status_code = 400


class AuthError(HubSpotError):
    """401/403: the token is invalid, expired or lacks a scope."""

    status_code = 401


class NotFound(HubSpotError):
    """404: the record (or path) does not exist."""

    status_code = 404


class AlreadyExists(HubSpotError):
    """409: what the call would create exists already.

    A contact with that email (HubSpot names its id), a property or group of that
    name. HubSpot's 409 status; named for what it means here, so it is not taken
    for a sync conflict (:mod:`shared.conflicts`).
    """

    status_code = 409


class DailyBudgetExhausted(HubSpotError):
    """Our own daily budget (below HubSpot's cap) is spent; ``resets_at`` says when it frees."""

    status_code = 0
    retryable = True

    def __init__(self, resets_at: datetime, *, used: int, budget: int) -> None:
        super().__init__(
            f"daily HubSpot request budget exhausted ({used}/{budget} in the last 24 h); "
            f"requests resume at {resets_at.isoformat(timespec='seconds')}",
            category="DAILY_BUDGET",
        )
        self.resets_at = resets_at
        self.used = used
        self.budget = budget


_BY_STATUS: dict[int, type[HubSpotError]] = {
    400: ValidationError,
    401: AuthError,
    403: AuthError,
    404: NotFound,
    409: AlreadyExists,
    423: Locked,
    477: MigrationInProgress,
}

_BY_CATEGORY: dict[str, type[HubSpotError]] = {
    "VALIDATION_ERROR": ValidationError,
    "OBJECT_NOT_FOUND": NotFound,
    "CONFLICT": AlreadyExists,
    "OBJECT_ALREADY_EXISTS": AlreadyExists,
    "RATE_LIMITS": RateLimited,
    "LOCKED": Locked,
}
