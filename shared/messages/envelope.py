"""Reading a change message out of whatever carried it to ``outbound_sync``.

Two deployments are supported (gcp-notes §1.2, §1.5): a plain Pub/Sub push
subscription (Google's recommendation; the body is the push envelope and carries
``deliveryAttempt`` and ``subscription``), and an Eventarc trigger (a CloudEvent in
binary mode, ``ce-*`` headers, or structured mode, ``application/cloudevents+json``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import SyncError, first_problem
from shared.messages.change import ChangeMessage
from shared.untrusted_json import UnreadableJson, loads_untrusted
from shared.untrusted_time import UntrustedTime


class MalformedMessage(SyncError):
    """The delivery cannot be read. Permanent: redelivering the same bytes cannot help."""


class _PubsubMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    data: str = ""
    attributes: dict[str, str] = Field(default_factory=dict)
    # Pub/Sub ids are short decimal strings; the bound keeps the idempotency key
    # indexable (a btree entry holds at most ~2.7 kB).
    message_id: str = Field(alias="messageId", min_length=1, max_length=256)
    publish_time: UntrustedTime | None = Field(None, alias="publishTime")


class _PushEnvelope(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    message: _PubsubMessage
    subscription: str | None = None
    delivery_attempt: int | None = Field(None, alias="deliveryAttempt")


@dataclass(frozen=True)
class MessageDelivery:
    """One delivered change message and what its carrier said about it."""

    message_id: str
    change: ChangeMessage
    attributes: Mapping[str, str]
    publish_time: datetime | None
    delivery_attempt: int | None
    subscription: str | None


def parse_delivery(body: bytes, headers: Mapping[str, str]) -> MessageDelivery:
    """Parse a push envelope or a CloudEvent; raise MalformedMessage naming the problem.

    When the envelope is readable but the message inside is not, the error carries
    the message id (``exc.message_id``) so the caller can record it before acking.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        # Strict and bounded (see shared/untrusted_json.py): deep nesting, huge
        # integers and NUL in a string used to end as a 500 and a redelivery loop.
        document = loads_untrusted(body)
    except UnreadableJson as exc:
        raise MalformedMessage(f"body is not JSON: {exc}") from None
    if lowered.get("content-type", "").startswith("application/cloudevents+json"):
        if not isinstance(document, dict) or not isinstance(document.get("data"), dict):
            raise MalformedMessage("structured CloudEvent without an object in 'data'")
        document = document["data"]
    elif "ce-type" in lowered and isinstance(document, dict) and "message" not in document:
        raise MalformedMessage("binary CloudEvent whose data has no 'message'")
    try:
        envelope = _PushEnvelope.model_validate(document)
    except ValidationError as exc:
        raise MalformedMessage(f"not a Pub/Sub push envelope: {first_problem(exc)}") from None
    message = envelope.message
    try:
        payload: Any = loads_untrusted(base64.b64decode(message.data, validate=True))
    except (binascii.Error, ValueError) as exc:  # UnreadableJson is a ValueError
        problem = f"message.data is not base64 JSON: {exc}"
        raise _with_id(MalformedMessage(problem), message) from None
    try:
        change = ChangeMessage.model_validate(payload)
    except ValidationError as exc:
        problem = f"invalid change message: {first_problem(exc)}"
        raise _with_id(MalformedMessage(problem), message) from None
    return MessageDelivery(
        message_id=message.message_id,
        change=change,
        attributes=message.attributes,
        publish_time=message.publish_time,
        delivery_attempt=envelope.delivery_attempt,
        subscription=envelope.subscription,
    )


def encode_push_envelope(
    change: ChangeMessage,
    message_id: str,
    *,
    subscription: str = "projects/local/subscriptions/customer-changes-push",
    delivery_attempt: int | None = 1,
    attributes: Mapping[str, str] | None = None,
) -> bytes:
    """The push body Pub/Sub would POST for ``change`` (the demo and tests send this)."""
    envelope: dict[str, Any] = {
        "message": {
            "data": base64.b64encode(change.model_dump_json().encode()).decode(),
            "attributes": dict(attributes or {}),
            "messageId": message_id,
            "publishTime": datetime.now().astimezone().isoformat(),
        },
        "subscription": subscription,
    }
    if delivery_attempt is not None:
        envelope["deliveryAttempt"] = delivery_attempt
    return json.dumps(envelope).encode()


def _with_id(exc: MalformedMessage, message: _PubsubMessage) -> MalformedMessage:
    exc.message_id = message.message_id  # type: ignore[attr-defined]
    return exc
