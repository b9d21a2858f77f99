"""Run a piece of work at most once per key (the AWS Lambda Powertools model).

>>> persistence = PostgresPersistence(engine.database)
>>> result = idempotent("pubsub:" + message_id, payload, persistence, lambda: handle(payload))

The first call claims the key IN_PROGRESS, runs the work and stores its JSON result
as COMPLETED; a repeat returns the stored result without running the work. A call
while another holds the key raises :class:`AlreadyInProgress` (retryable); a key
reused with a different payload raises :class:`PayloadMismatch`. When the work
raises, the claim is deleted so a retry runs it again; when the invocation dies,
the claim runs out after its lease and a retry takes the key over.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from shared.idempotency.exceptions import AlreadyInProgress, IdempotencyError, PayloadMismatch
from shared.idempotency.persistence import BasePersistence, Claim, PostgresPersistence
from shared.idempotency.record import IdempotencyRecord, Status, payload_hash

__all__ = [
    "AlreadyInProgress",
    "BasePersistence",
    "Claim",
    "IdempotencyError",
    "IdempotencyRecord",
    "PayloadMismatch",
    "PostgresPersistence",
    "Status",
    "idempotent",
    "payload_hash",
]

T = TypeVar("T")

DEFAULT_EXPIRES_AFTER = timedelta(hours=24)  # HubSpot retries a webhook for up to 24 h
DEFAULT_LEASE = timedelta(minutes=10)  # longer than any one function invocation here

# A claim can lose to a holder that deletes its record between our two statements;
# trying a few times turns that race into a normal claim.
_CLAIM_ATTEMPTS = 3


def idempotent(
    key: str,
    payload: Any,
    persistence: BasePersistence,
    fn: Callable[[], T],
    *,
    expires_after: timedelta = DEFAULT_EXPIRES_AFTER,
    lease: timedelta = DEFAULT_LEASE,
) -> T | Any:
    """Run ``fn`` once for ``key``; a repeat returns the first run's stored result.

    ``fn``'s result must be JSON-serializable: a repeat gets it back as stored
    (JSON types). ``payload`` (None: not checked) must be the same on every call
    with this key.
    """
    fingerprint = payload_hash(payload)
    for _ in range(_CLAIM_ATTEMPTS):
        claim = persistence.claim(key, fingerprint, expires_after=expires_after, lease=lease)
        if claim.claimed:
            break
        record = claim.existing
        if record is None:
            continue
        if record.payload_hash != fingerprint:
            raise PayloadMismatch(key)
        if record.status is Status.COMPLETED:
            return record.response
        raise AlreadyInProgress(key)
    else:
        raise AlreadyInProgress(key)
    try:
        result = fn()
    except BaseException:
        persistence.delete(key)
        raise
    persistence.complete(key, result, expires_after=expires_after)
    return result
