"""Who may call the management API, and who they say they act for.

Two kinds of credentials, either accepted, both configurable:

- ``Authorization: Bearer <SYNC_API_TOKEN>`` (compared in constant time): WARP's
  backend and operators;
- a Google-signed identity token whose audience is ``OIDC_AUDIENCE`` and whose
  email is in ``OIDC_ALLOWED_EMAILS``: service-to-service calls.

No credentials: 401. Credentials that are not accepted (a wrong token, an identity
token for another audience or caller, an expired one): 403. With neither kind
configured the API refuses every call rather than open itself.

``/metrics`` has its own optional token (``METRICS_TOKEN``); without one it is open,
since Cloud Run's IAM check already stands in front of it.

The user a change is made for (``triggered_by_user`` in the sync log) is the
``X-Triggered-By-User`` header when given (WARP's backend acts for a person),
else the identity token's email.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared.auth import Forbidden, Unauthenticated, bearer_token, verifier_for
from shared.config.settings import Settings

USER_HEADER = "X-Triggered-By-User"
USER_MAX_LENGTH = 100  # hubspot_sync_log.triggered_by_user is VARCHAR(100)
# Printable ASCII, not blank (an e-mail address or a user name); spaces around are dropped.
USER_PATTERN = re.compile(r"[!-~](?:[ -~]*[!-~])?")


class NotConfigured(Exception):
    """Neither SYNC_API_TOKEN nor OIDC_AUDIENCE is set: nobody can be let in."""


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: how it proved itself and, for OIDC, its email."""

    method: str  # "token" | "oidc" | "open"
    email: str | None = None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def authenticate(headers: Mapping[str, str], settings: Settings) -> Caller:
    """The caller of an API route, or raise Unauthenticated (401) / Forbidden (403)."""
    expected = settings.sync_api_token.get_secret_value() if settings.sync_api_token else None
    if not expected and not settings.oidc_audience:
        raise NotConfigured("the API has no credentials configured (SYNC_API_TOKEN, OIDC_AUDIENCE)")
    token = bearer_token(headers)
    if token is None:
        raise Unauthenticated("missing credentials: send Authorization: Bearer <token>")
    if expected and _same(token, expected):
        return Caller("token")
    verifier = verifier_for(settings)
    if verifier is not None and token.count(".") == 2:
        try:
            claims = verifier.verify(headers)
        except Unauthenticated as exc:
            # A token was presented and is not accepted: wrong credentials, not none.
            raise Forbidden(str(exc)) from None
        return Caller("oidc", str(claims.get("email")))
    raise Forbidden("credentials not accepted")


def authenticate_metrics(headers: Mapping[str, str], settings: Settings) -> Caller:
    """``/metrics``: open without METRICS_TOKEN, else that bearer token (401/403)."""
    if settings.metrics_token is None or not settings.metrics_token.get_secret_value():
        return Caller("open")
    token = bearer_token(headers)
    if token is None:
        raise Unauthenticated("missing metrics token")
    if not _same(token, settings.metrics_token.get_secret_value()):
        raise Forbidden("wrong metrics token")
    return Caller("token")


def acting_user(headers: Mapping[str, str], caller: Caller) -> str | None:
    """Who a change is made for: the X-Triggered-By-User header, else the OIDC email.

    Raises ValueError for a header that is blank, too long or not printable.
    """
    value = next((v for k, v in headers.items() if k.lower() == USER_HEADER.lower()), None)
    if value is None:
        return caller.email
    value = value.strip(" ")
    if not USER_PATTERN.fullmatch(value) or len(value) > USER_MAX_LENGTH:
        raise ValueError(f"{USER_HEADER} must be 1 to {USER_MAX_LENGTH} printable ASCII characters")
    return value
