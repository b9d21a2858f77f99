"""HubSpot webhook events as they arrive on the wire, stored and applied like the receiver does."""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

from shared.engine import Engine
from shared.inbound.events import parse_batch
from shared.inbound.process import ProcessReport, process_events
from shared.inbound.receive import store_batch
from tests.conftest import TEST_APP_ID

_ids = itertools.count(1_000)


def now_ms() -> int:
    """HubSpot's millisecond time of an edit made now, rounded up.

    A WARP write's time has microseconds; an edit made after it, truncated to the
    millisecond, can fall before it when both happen within one millisecond, and a
    LATEST_WINS test would then see WARP as newer on a fast run only. Rounded up, a
    time taken after a write is never earlier than the write.
    """
    return math.ceil(time.time() * 1000)


def event(
    kind: str, object_id: str | int, *, at: int | None = None, **extra: Any
) -> dict[str, Any]:
    """A HubSpot event object as it arrives on the wire (a user's change by default)."""
    return {
        "eventId": next(_ids),
        "subscriptionId": 7000 + len(kind),
        "portalId": 62515,
        "appId": TEST_APP_ID,
        "occurredAt": at if at is not None else now_ms(),
        "subscriptionType": kind,
        "attemptNumber": 0,
        "objectId": int(object_id),
        "changeSource": "CRM_UI",
        "sourceId": "userId:1",
        **extra,
    }


def change(object_id: str | int, prop: str, value: str, **extra: Any) -> dict[str, Any]:
    """A company.propertyChange event."""
    kind = extra.pop("kind", "company.propertyChange")
    return event(kind, object_id, propertyName=prop, propertyValue=value, **extra)


def process(engine: Engine, *events: dict[str, Any]) -> ProcessReport:
    """Store the events as the webhook receiver does and apply them now."""
    stored = store_batch(engine.database, parse_batch(list(events)))
    return process_events(engine, stored.to_process)
