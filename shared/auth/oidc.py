"""Google-signed identity tokens (OIDC), as Pub/Sub push, Cloud Tasks and Cloud Scheduler send.

On Cloud Run the platform already checks ``run.invoker`` before our code runs;
checking audience and caller email here as well means a misconfigured IAM
binding cannot open an internal function to every Google account.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx

from shared.auth.bearer import bearer_token
from shared.auth.errors import Forbidden, Unauthenticated
from shared.config.settings import Settings

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
_GOOGLE_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
_CERTS_TTL_SECONDS = 3600.0

log = logging.getLogger("warp_hubspot_sync.auth")


class OidcVerifier:
    """Verifies RS256 ID tokens against Google's certificates (cached for an hour).

    Only the ``allowed_emails`` get in: an empty allow-list admits nobody, since a
    valid Google token with our audience is not proof of anything (any Google account
    can mint one for any audience).
    """

    def __init__(
        self,
        *,
        audience: str,
        allowed_emails: frozenset[str],
        certs_url: str = GOOGLE_CERTS_URL,
        clock: Any = time.time,
    ) -> None:
        self.audience = audience
        self.allowed_emails = allowed_emails
        self._certs_url = certs_url
        self._clock = clock
        self._certs: Mapping[str, str] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()
        if not allowed_emails:
            # Once per process and configuration (``verifier_for`` caches): the fix is a
            # deployment setting, so say it where the operator looks, not on every call.
            log.error(
                "OIDC_AUDIENCE is set but OIDC_ALLOWED_EMAILS is empty:"
                " every identity token is refused until the allowed callers are configured"
            )

    def verify(self, headers: Mapping[str, str]) -> Mapping[str, Any]:
        """Return the token's claims, or raise Unauthenticated / Forbidden."""
        from google.auth import exceptions as gexc
        from google.auth import jwt

        token = bearer_token(headers)
        if token is None:
            raise Unauthenticated("missing identity token")
        try:
            claims: Mapping[str, Any] = jwt.decode(
                token, certs=self._certificates(), audience=self.audience, clock_skew_in_seconds=30
            )
        except (ValueError, gexc.GoogleAuthError) as exc:
            raise Unauthenticated(f"identity token rejected: {rejection_reason(exc)}") from None
        if claims.get("iss") not in _GOOGLE_ISSUERS:
            raise Unauthenticated("identity token not issued by Google")
        email = claims.get("email")
        if not email or claims.get("email_verified") is not True:
            raise Forbidden("identity token carries no verified email")
        if email not in self.allowed_emails:
            raise Forbidden("caller is not allowed")
        return claims

    def _certificates(self) -> Mapping[str, str]:
        with self._lock:
            if self._clock() - self._fetched_at > _CERTS_TTL_SECONDS:
                try:
                    response = httpx.get(self._certs_url, timeout=5.0)
                    response.raise_for_status()
                    self._certs = response.json()
                    self._fetched_at = self._clock()
                except (httpx.HTTPError, ValueError) as exc:
                    if not self._certs:
                        raise Unauthenticated(f"cannot fetch Google certificates: {exc}") from None
            return self._certs


_verifiers: dict[tuple[str, frozenset[str], str], OidcVerifier] = {}


def verifier_for(settings: Settings) -> OidcVerifier | None:
    """The verifier for the configured ``OIDC_AUDIENCE`` (None when it is not set).

    One per configuration and process, so its certificate cache outlives a request.
    """
    if not settings.oidc_audience:
        return None
    key = (settings.oidc_audience, settings.allowed_oidc_emails, settings.google_certs_url)
    verifier = _verifiers.get(key)
    if verifier is None:
        verifier = _verifiers[key] = OidcVerifier(
            audience=settings.oidc_audience,
            allowed_emails=settings.allowed_oidc_emails,
            certs_url=settings.google_certs_url,
        )
    return verifier


def authorize_internal_caller(headers: Mapping[str, str], settings: Settings) -> None:
    """Check the OIDC token of an internal caller when ``OIDC_AUDIENCE`` is configured.

    Without it (local runs and tests) every caller is accepted, which is why
    Terraform always sets it for the deployed functions.
    """
    verifier = verifier_for(settings)
    if verifier is not None:
        verifier.verify(headers)


# google-auth's messages quote the token, its segments or its claims ("Wrong number of
# segments in token: b'<the token>'"); an answer or a log line must never echo a
# credential (issue 21, item 8). Each is mapped by its fixed opening to our words.
_REJECTIONS = (
    (
        (
            "Wrong number of segments",
            "Can't parse segment",
            "Header segment",
            "Payload segment",
            "Incorrect padding",  # binascii, decoding a segment
            "Invalid base64",
        ),
        "malformed",
    ),
    (("Token does not contain required claim",), "a required claim is missing"),
    (("Token used too early",), "not valid yet"),
    (("Token expired",), "expired"),
    (("Certificate for key id",), "signed with an unknown key"),
    (("Could not verify token signature",), "bad signature"),
    (("Token has wrong audience",), "issued for another audience"),
    (
        ("Unsupported signature algorithm", "The key algorithm", "Certificate key type"),
        "unsupported signing algorithm",
    ),
)


def rejection_reason(exc: BaseException) -> str:
    """Why google-auth refused a token, in our words, never quoting it."""
    text = str(exc)
    for openings, reason in _REJECTIONS:
        if text.startswith(openings):
            return reason
    return "not a valid identity token"
