"""Static bearer tokens, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from shared.auth.errors import Forbidden, Unauthenticated


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def check_bearer(headers: Mapping[str, str], expected: str) -> None:
    """Raise Unauthenticated without a bearer token, Forbidden with a wrong one."""
    token = bearer_token(headers)
    if token is None:
        raise Unauthenticated("missing bearer token")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Forbidden("wrong bearer token")
