"""schemas/customer-change.schema.json: the contract WARP's publishers validate against.

The direction that matters is checked as a property: every message the schema accepts is
accepted by outbound_sync's model (shared/messages/change.py), so a publisher that
validates never has a message rejected by the consumer.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.messages.change import ChangeMessage

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "customer-change.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = jsonschema_rs.Draft202012Validator(SCHEMA, validate_formats=True)

VALID = {
    "entity_type": "customer",
    "entity_id": "3f2b8c1e-5d4a-4e7b-9c21-0a6f1e2d3c4b",
    "operation": "UPDATE",
    "changed_fields": ["company_name", "billing_email"],
    "occurred_at": "2026-03-01T09:15:27.123Z",
    "trigger_source": "admin_ui",
    "triggered_by_user": "u-1042",
}


def accepted_by_model(message: Any) -> bool:
    try:
        ChangeMessage.model_validate(message)
    except ValidationError:
        return False
    return True


_DROP = object()  # a variant() value that removes the key


def variant(**changes: Any) -> dict[str, Any]:
    message = {**VALID, **changes}
    return {k: v for k, v in message.items() if v is not _DROP}


def test_schema_is_valid_draft_2020_12() -> None:
    assert jsonschema_rs.meta.is_valid(SCHEMA)
    for example in SCHEMA["examples"]:
        assert VALIDATOR.is_valid(example)


def test_schema_and_model_name_the_same_fields() -> None:
    assert set(SCHEMA["properties"]) == set(ChangeMessage.model_fields)
    required_by_model = {n for n, f in ChangeMessage.model_fields.items() if f.is_required()}
    assert set(SCHEMA["required"]) == required_by_model


@pytest.mark.parametrize(
    "message",
    [
        VALID,
        variant(changed_fields=_DROP, triggered_by_user=_DROP),
        variant(entity_type="contact", operation="DELETE", triggered_by_user=None),
        variant(operation="CREATE", changed_fields=[]),
        variant(occurred_at="2026-03-01T10:15:27+01:00"),
        variant(schema_version=2, tenant="warp-eu"),  # unknown fields are allowed
    ],
    ids=["full", "minimal", "contact-delete", "create", "offset", "extra-fields"],
)
def test_valid_messages(message: dict[str, Any]) -> None:
    assert VALIDATOR.is_valid(message), list(VALIDATOR.iter_errors(message))
    assert accepted_by_model(message)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (variant(entity_id=_DROP), "required"),
        (variant(entity_id="customer-42"), "uuid"),
        (variant(entity_type="company"), "enum"),
        (variant(operation="MERGE"), "enum"),
        (variant(operation="update"), "enum"),
        (variant(occurred_at="2026-03-01T09:15:27"), "no time zone"),
        (variant(occurred_at="yesterday"), "date-time"),
        (variant(trigger_source=""), "minLength"),
        (variant(trigger_source=_DROP), "required"),
        (variant(changed_fields="company_name"), "array"),
        (variant(changed_fields=[f"f{i}" for i in range(201)]), "maxItems"),
        (variant(triggered_by_user="u" * 101), "maxLength"),
        ([VALID], "not an object"),
    ],
)
def test_invalid_messages_are_rejected_by_both(message: Any, reason: str) -> None:
    assert not VALIDATOR.is_valid(message), reason
    assert not accepted_by_model(message), reason


_text = st.text(min_size=0, max_size=120)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` four times in five, else ``bad``: both valid and invalid messages are common."""
    return st.integers(0, 4).flatmap(lambda i: good if i else bad)


_messages = st.fixed_dictionaries(
    {
        "entity_type": mostly(st.sampled_from(["customer", "contact"]), _text),
        "entity_id": mostly(st.uuids().map(str), st.one_of(st.uuids().map(lambda u: u.hex), _text)),
        "operation": mostly(st.sampled_from(["CREATE", "UPDATE", "DELETE"]), _text),
        "occurred_at": mostly(
            st.datetimes(timezones=st.one_of(st.just(UTC), st.timezones())).map(datetime.isoformat),
            st.one_of(st.datetimes().map(datetime.isoformat), _text),
        ),
        "trigger_source": mostly(st.text(min_size=1, max_size=100), _text),
    },
    optional={
        "changed_fields": st.lists(mostly(st.text(min_size=1, max_size=50), _text), max_size=5),
        "triggered_by_user": st.one_of(st.none(), _text),
        "extra": st.integers(),
    },
)


@settings(max_examples=300)
@given(_messages)
def test_everything_the_schema_accepts_the_consumer_accepts(message: dict[str, Any]) -> None:
    valid = VALIDATOR.is_valid(message)
    event(f"schema-valid: {valid}")  # `pytest --hypothesis-show-statistics` shows the mix
    if valid:
        assert accepted_by_model(message), message


def test_a_model_dump_is_valid_against_the_schema() -> None:
    message = ChangeMessage.model_validate(
        {
            "entity_type": "customer",
            "entity_id": uuid.uuid4(),
            "operation": "UPDATE",
            "changed_fields": ["company_name"],
            "occurred_at": datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
            "trigger_source": "api",
        }
    )
    assert VALIDATOR.is_valid(json.loads(message.model_dump_json()))
