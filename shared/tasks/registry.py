"""Which code runs a task of each ``kind``, and what the outcome means for the caller.

Handlers are named as ``"module:function"`` and imported on first use, so the
retry worker's cold start pays only for the kinds it actually runs, and the
engine modules can register work without importing each other.
"""

from __future__ import annotations

import enum
import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from shared.errors import SyncError, first_problem

if TYPE_CHECKING:
    from shared.engine.deps import Engine

log = logging.getLogger("warp_hubspot_sync.tasks")


class TaskOutcome(enum.StrEnum):
    """What a handler reports. The worker maps it to an HTTP status for Cloud Tasks."""

    DONE = "DONE"  # finished (or nothing to do): 200
    RETRY = "RETRY"  # retryable failure, try again later: 503, Cloud Tasks backs off
    FAILED = "FAILED"  # permanent failure or last attempt, recorded as FAILED: 200
    # failed, and the handler scheduled the next attempt as a new task itself (a queue
    # row retried for hours, beyond what a queue's own redelivery covers): 200
    SCHEDULED = "SCHEDULED"


# A handler takes (engine, payload, attempt): the engine its caller built (retry_worker's,
# or the one that submitted the task to the in-process stand-in), attempt 0-based as
# Cloud Tasks counts it in X-CloudTasks-TaskRetryCount, the payload as the kind's model
# when it has one.
Handler = Callable[["Engine", Any, int], TaskOutcome]


@dataclass(frozen=True)
class _Registration:
    target: str  # "module:function"
    payload: type[BaseModel] | None
    writes: bool  # writes WARP or HubSpot: held while the sync is paused


_HANDLERS: dict[str, _Registration] = {}


class UnknownTaskKind(SyncError):
    """A task names a kind nobody registered: permanent, retrying cannot help."""


class InvalidTaskPayload(SyncError):
    """A payload its kind's model refuses: permanent, the same bytes can never succeed."""


def register(
    kind: str, target: str, payload: type[BaseModel] | None = None, *, writes: bool = False
) -> None:
    """Name the handler of ``kind`` as ``"module:function"``, and the model of its payload.

    ``writes``: the handler writes WARP or HubSpot, so it does not run while paused.
    """
    _HANDLERS[kind] = _Registration(target, payload, writes)


def _registration(kind: str) -> _Registration:
    registration = _HANDLERS.get(kind)
    if registration is None:
        raise UnknownTaskKind(f"no handler for task kind {kind!r}")
    return registration


def resolve(kind: str) -> Handler:
    """Import and return the handler of ``kind``."""
    module_name, _, attribute = _registration(kind).target.partition(":")
    handler: Handler = getattr(importlib.import_module(module_name), attribute)
    return handler


def validate_payload(kind: str, payload: Mapping[str, Any]) -> Any:
    """``payload`` as its kind's model; raises UnknownTaskKind or InvalidTaskPayload."""
    model = _registration(kind).payload
    if model is None:
        return payload
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidTaskPayload(f"{kind} payload: {first_problem(exc)}") from None


def run_task(engine: Engine, kind: str, payload: Mapping[str, Any], attempt: int) -> TaskOutcome:
    """Validate the payload and run the task; an unknown kind or a bad payload is permanent.

    While the sync is paused a task of a writing kind is not run: it is kept, answers
    DONE, and the resume submits it again (``shared/pause.py``).
    """
    validated = validate_payload(kind, payload)
    if _registration(kind).writes and _held(engine, kind, payload):
        return TaskOutcome.DONE
    return resolve(kind)(engine, validated, attempt)


def _held(engine: Engine, kind: str, payload: Mapping[str, Any]) -> bool:
    """Keep the task for the resume when the sync is paused (``shared/pause.py``)."""
    # Imported here: the registry is loaded by every function before any engine exists.
    from shared.pause import hold

    if not hold(engine, kind, payload):
        return False
    log.info("sync paused: task held until resume", extra={"fields": {"kind": kind}})
    return True
