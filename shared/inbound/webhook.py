"""One webhook delivery from HubSpot, start to answer (no Flask here: the adapter translates).

Steps 1-2 are :func:`verify_delivery` (settings only, no database work, so a forged
flood takes no connection: ``shared/inbound/gate.py``), 3-6 :func:`handle_delivery`.

1. Body larger than ``WEBHOOK_MAX_BODY_BYTES``: 413.
2. Signature (``verify.check_signature``) over the raw body: 401, nothing stored.
3. JSON array of objects (``events.parse_batch``): else 400 naming the problem. An
   object that is not a valid event is set aside with its reason; the others go on.
4. Store the batch in one transaction, idempotently (``receive.store_batch``), each
   invalid event as a closed row carrying its reason (logged as a WARNING too). A
   database failure raises :class:`DatabaseUnavailableError` (retryable): the
   adapter answers 503, HubSpot redelivers, and no partial rows exist.
5. Process inline while within ``WEBHOOK_TIME_BUDGET_SECONDS`` from the request's
   start; what is left (not started, or failed retryably) goes to one named task
   of kind ``inbound_batch``. If that hand-off fails the answer is 503: the events
   are stored, and HubSpot's redelivery processes them (``store_batch`` returns
   stored-but-unprocessed events of a redelivered batch).
6. Answer 200 with the counts. Nothing keeps running after the answer, except the
   local in-process task stand-in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import shared.tasks.kinds  # noqa: F401  (the inbound_batch handler, for the in-process stand-in)
from shared.config.settings import Settings
from shared.engine.deps import Engine
from shared.errors import SyncError
from shared.inbound.events import EventProblem, parse_batch
from shared.inbound.process import KIND, process_events, task_payload
from shared.inbound.receive import store_batch
from shared.inbound.verify import TIMESTAMP_HEADER, check_signature, signed_uri
from shared.tasks import Task, task_name
from shared.untrusted_json import UnreadableJson, loads_untrusted

log = logging.getLogger("warp_hubspot_sync.inbound")


class DeliveryRejected(SyncError):
    """The delivery itself is unacceptable; ``status`` is the answer (400 or 413)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class HandOffFailed(SyncError):
    """Stored events could not be handed to a task: 503, HubSpot redelivers."""

    retryable = True


@dataclass(frozen=True)
class Delivery:
    """What the adapter read from the HTTP request.

    ``target`` is the raw path and query as sent, ``host_url`` the request's own
    ``scheme://host/`` (used only without ``WEBHOOK_PUBLIC_URL``), ``started`` the
    ``time.monotonic()`` at which the request arrived (the time budget counts from it).
    """

    method: str
    target: str
    host_url: str
    headers: Mapping[str, str]
    body: bytes
    started: float


@dataclass(frozen=True)
class VerifiedDelivery:
    """A delivery whose size and signature passed (only :func:`verify_delivery` makes one)."""

    delivery: Delivery


def verify_delivery(settings: Settings, delivery: Delivery) -> VerifiedDelivery:
    """Steps 1-2 of the module docstring, with the settings alone: no engine, no database.

    Raises :class:`DeliveryRejected` (413) or ``verify.SignatureRejected`` (401).
    """
    limit = settings.webhook_max_body_bytes
    if len(delivery.body) > limit:
        raise DeliveryRejected(f"body larger than {limit} bytes", status=413)
    check_signature(
        settings,
        method=delivery.method,
        uri=signed_uri(settings, delivery.target, delivery.host_url),
        headers=delivery.headers,
        body=delivery.body,
        now_ms=int(time.time() * 1000),
    )
    return VerifiedDelivery(delivery)


def handle_delivery(engine: Engine, verified: VerifiedDelivery) -> dict[str, Any]:
    """Run steps 3-5 of the module docstring; the 200 answer's body.

    Raises :class:`DeliveryRejected` (400) or a retryable :class:`SyncError` (503).
    """
    settings = engine.settings
    delivery = verified.delivery
    try:
        # Strict and bounded: what json.loads lets through (deep nesting, NaN, huge
        # integers, NUL in a string) used to fail later as a 500.
        data = loads_untrusted(delivery.body)
    except UnreadableJson as exc:
        raise DeliveryRejected(f"body is not JSON: {exc}") from None
    try:
        events = parse_batch(data)
    except EventProblem as exc:
        raise DeliveryRejected(str(exc)) from None

    stored = store_batch(engine.database, events)
    if events.invalid:
        log.warning(
            "webhook delivery carried invalid events; stored with their reasons, not applied",
            extra={
                "fields": {
                    "invalid": len(events.invalid),
                    "reasons": [invalid.reason for invalid in events.invalid[:10]],
                }
            },
        )
    deadline = delivery.started + settings.webhook_time_budget_seconds
    report = process_events(engine, stored.to_process, deadline=deadline)
    remaining = report.remaining
    if remaining:
        _hand_off(
            engine, remaining, delivery, delay=settings.retry_base_seconds if report.retry else 0.0
        )
    answer = {
        "received": stored.received,
        "stored": stored.stored,
        "duplicates": stored.duplicates,
        "invalid": stored.invalid,
        "handed_off": len(remaining),
        **report.as_dict(),
    }
    log.info(
        "webhook delivery handled",
        extra={
            "fields": {
                "received": stored.received,
                "stored": stored.stored,
                "duplicates": stored.duplicates,
                "handed_off": len(remaining),
                "echoes": report.echoes,
                "ms": int((time.monotonic() - delivery.started) * 1000),
            }
        },
    )
    return answer


def _hand_off(engine: Engine, row_ids: list[str], delivery: Delivery, *, delay: float) -> None:
    """One named task for the events left; the name is per delivery and event set."""
    stamp = delivery.headers.get(TIMESTAMP_HEADER) or ""
    task = Task(
        KIND,
        task_payload(row_ids),
        delay_seconds=delay,
        name=task_name(KIND, stamp, *sorted(row_ids)),
    )
    try:
        engine.submit(task)
    except Exception as exc:
        log.error(
            "could not hand stored events to a task; HubSpot will redeliver",
            extra={"fields": {"events": len(row_ids), "error_type": type(exc).__name__}},
        )
        raise HandOffFailed("stored events could not be handed to a task") from exc
