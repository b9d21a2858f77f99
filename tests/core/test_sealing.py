"""Sealing sensitive sync-log values: AES-GCM, key rotation, tamper evidence, nothing in clear."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.config.settings import load_settings
from shared.errors import ConfigurationError
from shared.sealing import WITHHELD, Sealer, is_sealed

KEY = os.urandom(32)
OLD = os.urandom(32)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(json_values.filter(lambda v: v is not None), st.text(min_size=1))
def test_round_trip(value: Any, field: str) -> None:
    sealer = Sealer({"k2": KEY}, "k2")
    sealed = sealer.seal(value, field=field)
    assert is_sealed(sealed) and sealed["kid"] == "k2"
    assert sealer.open(sealed, field=field) == value


def test_plain_value_never_in_the_envelope() -> None:
    sealed = Sealer({"k": KEY}, "k").seal("jane@acme.example", field="contact_email")
    assert "jane" not in str(sealed)


def test_bound_to_its_field_and_tamper_evident() -> None:
    sealer = Sealer({"k": KEY}, "k")
    sealed = sealer.seal("5000", field="credit_limit")
    assert "unreadable" in sealer.open(sealed, field="contact_phone")
    tampered = {**sealed, "ct": base64.b64encode(b"x" * 20).decode()}
    assert "unreadable" in sealer.open(tampered, field="credit_limit")


def test_rotation_keeps_old_values_readable() -> None:
    before = Sealer({"k1": OLD}, "k1").seal("old secret", field="f")
    after = Sealer({"k1": OLD, "k2": KEY}, "k2")
    assert after.open(before, field="f") == "old secret"
    assert after.seal("new", field="f")["kid"] == "k2"
    assert "not configured" in Sealer({"k2": KEY}, "k2").open(before, field="f")["unreadable"]


def test_without_a_key_values_are_withheld() -> None:
    assert Sealer({}, None).seal("+1 555 0100", field="contact_phone") == WITHHELD


def test_only_sensitive_fields_are_sealed() -> None:
    sealer = Sealer({"k": KEY}, "k")
    changes = {
        "credit_limit": {"old": "5000", "new": "7500", "source": "hubspot"},
        "company_name": {"old": "Acme", "new": "Acme Inc", "source": "warp"},
    }
    sealed = sealer.seal_changes(changes, frozenset({"credit_limit"}))
    assert is_sealed(sealed["credit_limit"]["new"])
    assert sealed["credit_limit"]["source"] == "hubspot"
    assert sealed["company_name"] == changes["company_name"]
    assert sealer.open_changes(sealed) == changes


def test_settings_build_the_keyring() -> None:
    settings = load_settings(
        encryption_key=base64.b64encode(KEY).decode(),
        encryption_key_id="k2",
        encryption_old_keys=f"k1:{base64.b64encode(OLD).decode()}",
    )
    sealer = Sealer.from_settings(settings)
    old = Sealer({"k1": OLD}, "k1").seal(1, field="x")
    assert sealer.current == "k2" and sealer.open(old, field="x") == 1
    assert "contact" in sealer.sensitive_columns


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"short").decode()])
def test_bad_keys_name_the_variable(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="ENCRYPTION_KEY"):
        Sealer.from_settings(load_settings(encryption_key=bad))
