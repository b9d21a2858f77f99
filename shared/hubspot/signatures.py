"""HubSpot request signatures (v1 and v3), pure functions.

The emulator signs its webhook deliveries with these and the webhook receiver
verifies them, so both sides share one implementation; the official SDK's
``hubspot.utils.signature.Signature`` is the independent oracle in the tests.

Clock-skew decision: HubSpot's own SDK accepts any future timestamp. We accept
a timestamp at most ``max_future_ms`` (default 60 s) ahead of our clock, enough
for ordinary skew between HubSpot's servers and ours, and reject further-ahead
ones: a far-future timestamp would otherwise extend a captured request's replay
window beyond five minutes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum

MAX_AGE_MS = 300_000
MAX_FUTURE_MS = 60_000

# HubSpot decodes only these escapes before signing (VAL-DOC); every other
# escape, e.g. %20 or %25, stays as sent.
_DECODED_ESCAPES = {
    "3A": ":",
    "2F": "/",
    "3F": "?",
    "40": "@",
    "21": "!",
    "24": "$",
    "27": "'",
    "28": "(",
    "29": ")",
    "2A": "*",
    "2C": ",",
    "3B": ";",
}
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


class VerifyReason(StrEnum):
    """Why a signature check passed or failed."""

    OK = "ok"
    MISSING = "missing"
    STALE = "stale"
    FUTURE = "future"
    BAD_SIGNATURE = "bad_signature"


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a verification: ``ok`` plus the reason (for logs and 401 bodies)."""

    ok: bool
    reason: VerifyReason

    def __bool__(self) -> bool:
        return self.ok


def sign_v1(secret: str, body: bytes) -> str:
    """v1: hex SHA-256 of client secret + raw body (``X-HubSpot-Signature``)."""
    return hashlib.sha256(secret.encode("utf-8") + body).hexdigest()


def normalize_v3_uri(uri: str) -> str:
    """Apply HubSpot's partial URL-decoding to ``uri`` before v3 signing.

    Only the twelve escapes HubSpot lists are decoded (hex case-insensitive);
    the literal ``?`` that starts the query string is kept as it is.
    """

    def replace(match: re.Match[str]) -> str:
        return _DECODED_ESCAPES.get(match.group(1).upper(), match.group(0))

    return _ESCAPE.sub(replace, uri)


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp_ms: int) -> str:
    """v3: base64 HMAC-SHA256 over METHOD + normalised URI + body + timestamp."""
    message = (
        method.upper().encode("utf-8")
        + normalize_v3_uri(uri).encode("utf-8")
        + body
        + str(int(timestamp_ms)).encode("ascii")
    )
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_v1(secret: str, body: bytes, signature: str | None) -> VerifyResult:
    """Check a v1 signature (no timestamp: replays are caught by idempotent storage)."""
    if not signature:
        return VerifyResult(False, VerifyReason.MISSING)
    if hmac.compare_digest(sign_v1(secret, body), signature.strip().lower()):
        return VerifyResult(True, VerifyReason.OK)
    return VerifyResult(False, VerifyReason.BAD_SIGNATURE)


def verify_v3(
    secret: str,
    method: str,
    uri: str,
    body: bytes,
    signature: str | None,
    timestamp_ms: int | str | None,
    now_ms: int,
    max_age_ms: int = MAX_AGE_MS,
    max_future_ms: int = MAX_FUTURE_MS,
) -> VerifyResult:
    """Check a v3 signature and its timestamp against ``now_ms``.

    ``uri`` is the public URL HubSpot called (scheme, host, path and query).
    The comparison is constant-time; the timestamp is checked first so a stale
    request is reported as stale whatever its signature.
    """
    if not signature or timestamp_ms is None or timestamp_ms == "":
        return VerifyResult(False, VerifyReason.MISSING)
    try:
        timestamp = int(str(timestamp_ms).strip())
    except ValueError:
        return VerifyResult(False, VerifyReason.MISSING)
    if now_ms - timestamp > max_age_ms:
        return VerifyResult(False, VerifyReason.STALE)
    if timestamp - now_ms > max_future_ms:
        return VerifyResult(False, VerifyReason.FUTURE)
    expected = sign_v3(secret, method, uri, body, timestamp)
    if hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("utf-8")):
        return VerifyResult(True, VerifyReason.OK)
    return VerifyResult(False, VerifyReason.BAD_SIGNATURE)
