"""Reading change messages from Pub/Sub push envelopes and CloudEvents."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.messages import ChangeMessage, MalformedMessage, parse_delivery
from shared.messages.envelope import encode_push_envelope

CHANGE = ChangeMessage(
    entity_type="customer",
    entity_id=uuid.uuid4(),
    operation="UPDATE",
    changed_fields=["company_name", "credit_limit"],
    occurred_at=datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
    trigger_source="warp-api",
    triggered_by_user="ops@warp.example",
)


def test_push_envelope_round_trip() -> None:
    body = encode_push_envelope(CHANGE, "m-1", delivery_attempt=3)
    delivery = parse_delivery(body, {"Content-Type": "application/json"})
    assert delivery.change == CHANGE
    assert delivery.message_id == "m-1"
    assert delivery.delivery_attempt == 3
    assert delivery.subscription and delivery.subscription.endswith("customer-changes-push")


def test_binary_cloudevent() -> None:
    body = encode_push_envelope(CHANGE, "m-2", delivery_attempt=None)
    headers = {"ce-type": "google.cloud.pubsub.topic.v1.messagePublished", "ce-id": "m-2"}
    assert parse_delivery(body, headers).change == CHANGE


def test_structured_cloudevent() -> None:
    data = json.loads(encode_push_envelope(CHANGE, "m-3"))
    event = {"specversion": "1.0", "id": "m-3", "type": "x", "source": "y", "data": data}
    headers = {"Content-Type": "application/cloudevents+json; charset=utf-8"}
    assert parse_delivery(json.dumps(event).encode(), headers).message_id == "m-3"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[]", "push envelope"),
        (b'{"message": {"data": "e30="}}', "messageId"),
        (b'{"message": {"data": "%%%", "messageId": "m"}}', "base64"),
    ],
)
def test_malformed_envelopes_name_the_problem(body: bytes, problem: str) -> None:
    with pytest.raises(MalformedMessage, match=problem) as info:
        parse_delivery(body, {})
    assert not info.value.retryable


def test_invalid_message_keeps_its_id() -> None:
    data = base64.b64encode(json.dumps({"entity_type": "trunk"}).encode()).decode()
    body = json.dumps({"message": {"data": data, "messageId": "poison-1"}}).encode()
    with pytest.raises(MalformedMessage, match="entity_type") as info:
        parse_delivery(body, {})
    assert info.value.message_id == "poison-1"  # type: ignore[attr-defined]


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(body: bytes) -> None:
    with contextlib.suppress(MalformedMessage):
        parse_delivery(body, {})
