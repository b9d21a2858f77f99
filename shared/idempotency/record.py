"""The stored state of one idempotency key, and the payload fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """IN_PROGRESS while an invocation works on the key, COMPLETED once it succeeded."""

    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"


@dataclass(frozen=True)
class IdempotencyRecord:
    """One key's record. ``response`` is the stored result of a COMPLETED call."""

    key: str
    status: Status
    expires_at: datetime
    in_progress_expires_at: datetime | None
    payload_hash: str | None
    response: Any = None


def payload_hash(payload: Any) -> str | None:
    """A stable SHA-256 of the payload's canonical JSON (None for no payload).

    Key order and whitespace do not matter, so equal payloads hash alike however
    they were built.
    """
    if payload is None:
        return None
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
