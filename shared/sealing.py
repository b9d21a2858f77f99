"""Sealing sensitive values in the sync log with AES-GCM, and opening them for authorised readers.

``hubspot_sync_log.field_changes`` keeps the old and new value of every field
that crossed. For contact details and money that is personal and financial data
sitting in an audit table, so those values are stored sealed::

    {"sealed": "v1", "kid": "k1", "nonce": "<b64>", "ct": "<b64>"}

AES-256-GCM with a random 96-bit nonce; the field name is bound in as associated
data, so a sealed value copied onto another field does not open. The key id
(``kid``) names which key sealed it: ``ENCRYPTION_KEY`` / ``ENCRYPTION_KEY_ID``
seal, and ``ENCRYPTION_OLD_KEYS`` (``id:base64,...``) still open values sealed
before a rotation. Without any key, sensitive values are not stored at all (a
marker says so): the log never holds them in clear.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from shared.config.settings import Settings
from shared.errors import ConfigurationError

log = logging.getLogger("warp_hubspot_sync.sealing")

SEALED = "v1"
WITHHELD = {"withheld": "no encryption key configured"}


def _decode_key(text: str, name: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{name}: not base64") from None
    if len(key) != 32:
        raise ConfigurationError(f"{name}: must be 32 bytes (AES-256), got {len(key)}")
    return key


class Sealer:
    """Seals and opens values with a current key and any older keys kept for reading."""

    def __init__(
        self,
        keys: Mapping[str, bytes],
        current: str | None,
        sensitive_columns: frozenset[str] = frozenset(),
    ) -> None:
        # cryptography loads here, not at import: a request that seals nothing (an
        # echo, an API read) does not pay for it in its cold start.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self.current = current if current in self._keys else None
        self.sensitive_columns = sensitive_columns

    @classmethod
    def from_settings(cls, settings: Settings) -> Sealer:
        """The keyring the settings describe (possibly empty)."""
        keys: dict[str, bytes] = {}
        old = settings.encryption_old_keys
        for entry in (old.get_secret_value() if old else "").split(","):
            if entry.strip():
                kid, _, text = entry.strip().partition(":")
                keys[kid] = _decode_key(text, f"ENCRYPTION_OLD_KEYS[{kid}]")
        current = None
        if settings.encryption_key is not None:
            current = settings.encryption_key_id
            secret = settings.encryption_key.get_secret_value()
            keys[current] = _decode_key(secret, "ENCRYPTION_KEY")
        columns = frozenset(c.strip() for c in settings.sensitive_columns.split(",") if c.strip())
        if current is None:
            log.warning("no ENCRYPTION_KEY: sensitive values withheld from the sync log")
        return cls(keys, current, columns)

    def seal(self, value: Any, *, field: str) -> Any:
        """``value`` sealed for ``field``, or a withheld marker when no key is configured."""
        if value is None:
            return None
        if self.current is None:
            return dict(WITHHELD)
        nonce = os.urandom(12)
        plain = json.dumps(value, default=str).encode()
        ciphertext = self._keys[self.current].encrypt(nonce, plain, field.encode())
        return {
            "sealed": SEALED,
            "kid": self.current,
            "nonce": base64.b64encode(nonce).decode(),
            "ct": base64.b64encode(ciphertext).decode(),
        }

    def open(self, value: Any, *, field: str) -> Any:
        """The plain value of a sealed one (anything else is returned as it is).

        A value sealed with an unknown key, or altered, opens to a marker that says
        so rather than raising: one unreadable entry must not hide a whole log.
        """
        if not is_sealed(value):
            return value
        from cryptography.exceptions import InvalidTag

        aead = self._keys.get(value["kid"])
        if aead is None:
            return {"unreadable": f"sealed with key {value['kid']!r}, which is not configured"}
        try:
            plain = aead.decrypt(
                base64.b64decode(value["nonce"]), base64.b64decode(value["ct"]), field.encode()
            )
        except (InvalidTag, binascii.Error, ValueError):
            return {"unreadable": "sealed value does not open (altered or wrong field)"}
        return json.loads(plain)

    def seal_changes(self, changes: Mapping[str, Any], sensitive: frozenset[str]) -> dict[str, Any]:
        """``field_changes`` with every value of a sensitive field sealed."""
        out: dict[str, Any] = {}
        for name, entry in changes.items():
            if name in sensitive and isinstance(entry, Mapping):
                out[name] = {
                    k: (self.seal(v, field=name) if k in _VALUE_KEYS else v)
                    for k, v in entry.items()
                }
            else:
                out[name] = entry
        return out

    def open_changes(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """``field_changes`` with every sealed value opened."""
        out: dict[str, Any] = {}
        for name, entry in changes.items():
            if isinstance(entry, Mapping):
                out[name] = {k: self.open(v, field=name) for k, v in entry.items()}
            else:
                out[name] = entry
        return out


# The keys of a field_changes entry that hold values (the rest are labels and reasons).
_VALUE_KEYS = frozenset({"old", "new", "warp", "hubspot", "value"})


def is_sealed(value: Any) -> bool:
    """Whether ``value`` is a sealed envelope."""
    return isinstance(value, Mapping) and value.get("sealed") == SEALED and "kid" in value
