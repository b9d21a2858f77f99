"""Which code runs a task of each ``kind``, and what the outcome means for the caller.

Handlers are named as ``"module:function"`` and imported on first use, so the
retry worker's cold start pays only for the kinds it actually runs, and the
engine modules can register work without importing each other.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from shared.errors import SyncError


class TaskOutcome(enum.StrEnum):
    """What a handler reports. The worker maps it to an HTTP status for Cloud Tasks."""

    DONE = "DONE"  # finished (or nothing to do): 200
    RETRY = "RETRY"  # retryable failure, try again later: 503, Cloud Tasks backs off
    FAILED = "FAILED"  # permanent failure or last attempt, recorded as FAILED: 200


Handler = Callable[[Mapping[str, Any], int], TaskOutcome]

# kind -> "module:function"; a handler takes (payload, attempt) with attempt 0-based,
# as Cloud Tasks counts it in X-CloudTasks-TaskRetryCount.
_HANDLERS: dict[str, str] = {}


class UnknownTaskKind(SyncError):
    """A task names a kind nobody registered: permanent, retrying cannot help."""


def register(kind: str, target: str) -> None:
    """Name the handler of ``kind`` as ``"module:function"``."""
    _HANDLERS[kind] = target


def resolve(kind: str) -> Handler:
    """Import and return the handler of ``kind``."""
    target = _HANDLERS.get(kind)
    if target is None:
        raise UnknownTaskKind(f"no handler for task kind {kind!r}")
    module_name, _, attribute = target.partition(":")
    handler: Handler = getattr(importlib.import_module(module_name), attribute)
    return handler


def run_task(kind: str, payload: Mapping[str, Any], attempt: int) -> TaskOutcome:
    """Run one task through its handler; an unknown kind is a permanent failure."""
    return resolve(kind)(payload, attempt)
