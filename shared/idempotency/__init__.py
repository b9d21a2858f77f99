"""Idempotency records: claim a key, complete it, or forget it (the Powertools persistence layer).

>>> persistence = PostgresPersistence(engine.database)
>>> claim = persistence.claim("pubsub:" + message_id, payload_hash(payload), ...)

A claim marks the key IN_PROGRESS for a lease; completing it stores a JSON record
kept until it expires; deleting an IN_PROGRESS claim lets a retry claim it again;
a claim whose invocation died runs out after its lease and a retry takes it over.
What a repeat or a busy key means is the caller's business: a change message's
redelivery is acknowledged as a duplicate (:mod:`shared.outbound.receive`), a
coalescing window's claim decides who flushes.
"""

from __future__ import annotations

from shared.idempotency.exceptions import AlreadyInProgress
from shared.idempotency.persistence import BasePersistence, Claim, PostgresPersistence
from shared.idempotency.record import IdempotencyRecord, Status, payload_hash

__all__ = [
    "AlreadyInProgress",
    "BasePersistence",
    "Claim",
    "IdempotencyRecord",
    "PostgresPersistence",
    "Status",
    "payload_hash",
]
