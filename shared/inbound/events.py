"""HubSpot's webhook event objects, validated (pure).

A delivery is a JSON array of events (hubspot-api.md §1.2). Each is checked with
pydantic in strict mode: HubSpot sends ids and times as JSON numbers and flags as
booleans, so a string where a number belongs is an error, not something to guess
at. :func:`parse_batch` keeps the valid events of a delivery and sets each invalid
one aside as an :class:`InvalidEvent` whose reason names the event (its position and
``eventId``) and the field, never the values, which may be personal data. Only a body
that is not a JSON array of objects is refused as a whole: one malformed event must
not make HubSpot retry, and finally drop, its 99 neighbours (issue 15 item 4).

Decisions:

- ``subscriptionType`` is required; the older documented name ``eventType`` is
  accepted for it. Any ``<object>.<kind>`` is accepted and stored; object types
  other than company and contact are recorded and ignored when processed, so one
  stray subscription does not make HubSpot retry whole batches forever.
- Generic ``object.<kind>`` events name their object with ``objectTypeId``
  (``0-1`` contact, ``0-2`` company).
- ``propertyChange`` needs ``propertyName`` and ``propertyValue`` (HubSpot always
  sends both; ``""`` is a cleared value); ``associationChange`` needs
  ``associationType``, ``fromObjectId`` and ``toObjectId``.
- Unknown extra fields are kept (HubSpot adds fields over time); the whole event
  object is stored as ``raw_payload``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.untrusted_time import LATEST_EPOCH_MS

# Structural events are applied before property changes and deletions after them
# (see shared/inbound/apply.py); within one kind, occurredAt orders.
KIND_RANK = {
    "creation": 0,
    "restore": 1,
    "merge": 2,
    "associationChange": 3,
    "propertyChange": 4,
    "deletion": 5,
    "privacyDeletion": 6,
}
_GENERIC_OBJECT_TYPES = {"0-1": "contact", "0-2": "company"}

# Bounds of the columns the event is stored in (BIGINT ids, INTEGER attempt, a
# timestamp in shared/untrusted_time.py's range): beyond them a valid-looking event
# used to fail at INSERT as a 500 instead of a 400 (found by tests/inbound/test_fuzz_webhook.py).
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
# HubSpot sends at most 100 events a request (docs/hubspot.md, "Webhook batch size"); a
# bigger batch is not HubSpot's, and would only stretch one delivery's transaction.
MAX_BATCH_EVENTS = 100


class EventProblem(ValueError):
    """A body that is not a JSON array of objects; the message names the problem."""


class WebhookEvent(BaseModel):
    """One HubSpot webhook event (camelCase on the wire)."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True, populate_by_name=True)

    event_id: Int64 = Field(alias="eventId")
    subscription_id: Int64 = Field(alias="subscriptionId")
    portal_id: Int64 = Field(alias="portalId")
    occurred_at_ms: int = Field(alias="occurredAt", ge=0, le=LATEST_EPOCH_MS)
    subscription_type: str = Field(
        validation_alias=AliasChoices("subscriptionType", "eventType"),
        serialization_alias="subscriptionType",
        # The object part is stored in object_type, VARCHAR(50).
        pattern=r"^[A-Za-z_]{1,50}\.[A-Za-z_]+$",
        max_length=100,
    )
    object_id: Int64 = Field(alias="objectId")
    app_id: Int64 | None = Field(None, alias="appId")
    attempt_number: int | None = Field(None, alias="attemptNumber", ge=0, le=2**31 - 1)
    property_name: str | None = Field(None, alias="propertyName", max_length=100)
    property_value: str | None = Field(None, alias="propertyValue")
    change_source: str | None = Field(None, alias="changeSource", max_length=100)
    source_id: str | None = Field(None, alias="sourceId", max_length=100)
    change_flag: str | None = Field(None, alias="changeFlag")
    # "object:<objectTypeId>" is stored in object_type, VARCHAR(50).
    object_type_id: str | None = Field(None, alias="objectTypeId", max_length=40)
    # merge events
    primary_object_id: Int64 | None = Field(None, alias="primaryObjectId")
    merged_object_ids: list[Int64] | None = Field(None, alias="mergedObjectIds")
    new_object_id: Int64 | None = Field(None, alias="newObjectId")
    # association changes
    association_type: str | None = Field(None, alias="associationType")
    from_object_id: Int64 | None = Field(None, alias="fromObjectId")
    to_object_id: Int64 | None = Field(None, alias="toObjectId")
    association_removed: bool | None = Field(None, alias="associationRemoved")
    is_primary_association: bool | None = Field(None, alias="isPrimaryAssociation")

    @model_validator(mode="after")
    def _kind_fields(self) -> WebhookEvent:
        if self.kind == "propertyChange":
            missing = [
                name
                for name, value in (
                    ("propertyName", self.property_name),
                    ("propertyValue", self.property_value),
                )
                if value is None
            ]
            if missing:
                raise ValueError(f"a propertyChange event needs {' and '.join(missing)}")
        if self.kind == "associationChange":
            missing = [
                name
                for name, value in (
                    ("associationType", self.association_type),
                    ("fromObjectId", self.from_object_id),
                    ("toObjectId", self.to_object_id),
                )
                if value is None
            ]
            if missing:
                raise ValueError(f"an associationChange event needs {', '.join(missing)}")
        return self

    @property
    def kind(self) -> str:
        """``propertyChange``, ``creation``, ... (the part after the dot)."""
        return self.subscription_type.partition(".")[2]

    @property
    def object_type(self) -> str:
        """``company``, ``contact``, or another HubSpot object name as sent."""
        prefix = self.subscription_type.partition(".")[0].lower()
        if prefix == "object":
            return _GENERIC_OBJECT_TYPES.get(
                self.object_type_id or "", f"object:{self.object_type_id}"
            )
        return prefix

    @property
    def occurred_at(self) -> datetime:
        """``occurredAt`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.occurred_at_ms / 1000, tz=UTC)

    @property
    def key(self) -> str:
        """The idempotency key: HubSpot's eventId alone is not unique (hubspot-api.md §1.2)."""
        return f"{self.subscription_id}:{self.event_id}:{self.occurred_at_ms}"

    @property
    def rank(self) -> int:
        """Where the event's kind goes in processing order."""
        return KIND_RANK.get(self.kind, len(KIND_RANK))

    def is_echo_of(self, app_id: int | None) -> bool:
        """Written by our own app: ``changeSource`` INTEGRATION and ``sourceId`` our app id."""
        return (
            app_id is not None
            and self.change_source == "INTEGRATION"
            and self.source_id == str(app_id)
        )

    def to_row(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """The ``hubspot_webhook_events`` row storing this event (``raw``: the JSON object)."""
        return {
            "event_id": self.key,
            "event_type": self.subscription_type,
            "object_type": self.object_type,
            "object_id": str(self.object_id),
            "property_name": self.property_name,
            "property_value": self.property_value,
            "raw_payload": dict(raw),
            "occurred_at": self.occurred_at,
            "signature_valid": True,
            "hubspot_event_id": self.event_id,
            "subscription_id": self.subscription_id,
            "portal_id": self.portal_id,
            "attempt_number": self.attempt_number,
            "change_source": self.change_source,
            "source_id": self.source_id,
        }


def parse_event(raw: Mapping[str, Any]) -> WebhookEvent:
    """One event from its JSON object (raises pydantic's ValidationError)."""
    return WebhookEvent.model_validate(raw)


# The stored row of an invalid event: the event type marks it (the metrics count it
# through a partial index on it), its reason is the row's processing_error.
INVALID_EVENT_TYPE = "invalid"


@dataclass(frozen=True)
class InvalidEvent:
    """An event object of a delivery that is not a valid event, and why."""

    raw: Mapping[str, Any]
    reason: str

    @property
    def key(self) -> str:
        """Its idempotency key: the object's digest without ``attemptNumber``.

        A redelivery of the batch (HubSpot increments ``attemptNumber`` on each attempt)
        therefore records the same invalid event once.
        """
        body = {k: v for k, v in self.raw.items() if k != "attemptNumber"}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return "invalid:" + hashlib.sha256(text.encode()).hexdigest()

    def to_row(self, received_at: datetime) -> dict[str, Any]:
        """The ``hubspot_webhook_events`` row recording it, closed with its reason."""
        object_id = self.raw.get("objectId")
        return {
            "event_id": self.key,
            "event_type": INVALID_EVENT_TYPE,
            "object_type": INVALID_EVENT_TYPE,
            "object_id": str(object_id) if type(object_id) is int else "",
            "raw_payload": dict(self.raw),
            "occurred_at": received_at,
            "signature_valid": True,
            "processed": True,
            "processing_error": f"invalid event: {self.reason}",
        }


@dataclass(frozen=True)
class ParsedBatch:
    """A delivery's valid events (each with its JSON object) and its invalid ones."""

    events: list[tuple[WebhookEvent, Mapping[str, Any]]] = field(default_factory=list)
    invalid: list[InvalidEvent] = field(default_factory=list)


def parse_batch(data: Any) -> ParsedBatch:
    """Validate a decoded delivery body: its valid events and its invalid ones.

    Raises :class:`EventProblem` when ``data`` is not an array of objects.
    """
    if not isinstance(data, list):
        raise EventProblem(f"body must be a JSON array of events, not {_json_type(data)}")
    if len(data) > MAX_BATCH_EVENTS:
        raise EventProblem(
            f"a batch holds at most {MAX_BATCH_EVENTS} events (HubSpot sends at most "
            f"{MAX_BATCH_EVENTS}); this one has {len(data)}"
        )
    not_objects = [
        f"event {index}: must be an object, not {_json_type(item)}"
        for index, item in enumerate(data)
        if not isinstance(item, dict)
    ]
    if not_objects:
        more = f"; and {len(not_objects) - 10} more" if len(not_objects) > 10 else ""
        raise EventProblem(
            "body must be a JSON array of objects: " + "; ".join(not_objects[:10]) + more
        )
    batch = ParsedBatch()
    for index, item in enumerate(data):
        try:
            batch.events.append((parse_event(item), item))
        except ValidationError as exc:
            batch.invalid.append(InvalidEvent(item, _describe(index, item, exc)))
    return batch


def _describe(index: int, item: Mapping[str, Any], exc: ValidationError) -> str:
    """``event 3 (eventId 17): occurredAt: Field required, ...`` without input values."""
    event_id = item.get("eventId")
    label = f"event {index}" + (f" (eventId {event_id})" if isinstance(event_id, int) else "")
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        location = ".".join(str(p) for p in error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return f"{label}: " + ", ".join(parts)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
