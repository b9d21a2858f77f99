"""Checking a delivery's HubSpot signature before anything else happens to it.

The signing itself is ``shared/hubspot/signatures.py`` (the emulator signs with
the same code). This module decides *what* is verified:

- the URI is the public one HubSpot called: ``WEBHOOK_PUBLIC_URL`` (scheme, host,
  any prefix) + the request's raw path and query, exactly as sent (HubSpot's
  partial URL-decoding is applied by the signing code). Behind Cloud Run the
  request's own URL names an internal host, so it is used only when
  ``WEBHOOK_PUBLIC_URL`` is unset (local runs), with one warning per process;
- v3 (``X-HubSpot-Signature-v3`` + ``X-HubSpot-Request-Timestamp``, five-minute
  window, constant-time comparison) whenever its header is present;
- v1 only when no v3 header is present and ``WEBHOOK_ACCEPT_V1`` is set (v1 has no
  timestamp: a replay is caught by idempotent storage alone).

A failure raises :class:`SignatureRejected` (401) with the reason, never the
expected signature.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from shared.auth import Unauthenticated
from shared.config.settings import Settings
from shared.hubspot.signatures import VerifyReason, VerifyResult, verify_v1, verify_v3

log = logging.getLogger("warp_hubspot_sync.inbound")

V3_HEADER = "X-HubSpot-Signature-v3"
V1_HEADER = "X-HubSpot-Signature"
VERSION_HEADER = "X-HubSpot-Signature-Version"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"

_warned = threading.Event()


class SignatureRejected(Unauthenticated):
    """The delivery's signature is missing, wrong or stale: 401, nothing stored."""

    def __init__(self, reason: VerifyReason | str, version: str) -> None:
        super().__init__(f"webhook signature rejected ({version}: {reason})")
        self.reason = str(reason)
        self.version = version


def raw_target(environ: Mapping[str, object], path: str, query_string: bytes) -> str:
    """The request target (path and query) as the client sent it.

    WSGI servers keep it in ``RAW_URI`` (gunicorn, werkzeug) or ``REQUEST_URI``;
    without either it is rebuilt by re-escaping the decoded path, which loses only
    the difference between an escaped and a literal safe character.
    """
    for name in ("RAW_URI", "REQUEST_URI"):
        value = environ.get(name)
        if isinstance(value, str) and value:
            if not value.startswith("/"):  # absolute-form target: keep path and query
                parts = urlsplit(value)
                value = parts.path + (f"?{parts.query}" if parts.query else "")
            return value or "/"
    target = quote(path, safe="/:@!$&'()*+,;=-._~")
    return target + (f"?{query_string.decode('latin-1')}" if query_string else "")


def signed_uri(settings: Settings, target: str, request_host_url: str) -> str:
    """The URI HubSpot signed: public base URL (or the request's own) + raw target."""
    base = settings.webhook_public_url
    if not base:
        if not _warned.is_set():
            _warned.set()
            log.warning(
                "WEBHOOK_PUBLIC_URL is not set: verifying signatures over the request's own "
                "URL, which behind a proxy or Cloud Run differs from the URL HubSpot signed",
            )
        base = request_host_url
    return base.rstrip("/") + target


def check_signature(
    settings: Settings,
    *,
    method: str,
    uri: str,
    headers: Mapping[str, str],
    body: bytes,
    now_ms: int,
) -> str:
    """Verify the delivery; return the version that passed ("v3" or "v1").

    ``headers`` must look names up case-insensitively (Werkzeug's headers do).
    """
    if settings.hubspot_client_secret is None:
        # Without the key nothing can be verified, and nothing unverified is accepted.
        raise SignatureRejected("HUBSPOT_CLIENT_SECRET is not configured", "none")
    secret = settings.hubspot_client_secret.get_secret_value()
    v3 = headers.get(V3_HEADER)
    result: VerifyResult
    if v3 is not None:
        result = verify_v3(secret, method, uri, body, v3, headers.get(TIMESTAMP_HEADER), now_ms)
        version = "v3"
    elif settings.webhook_accept_v1 and headers.get(V1_HEADER):
        declared = (headers.get(VERSION_HEADER) or "v1").strip().lower()
        if declared != "v1":
            raise SignatureRejected(f"unsupported signature version {declared!r}", declared)
        result = verify_v1(secret, body, headers.get(V1_HEADER))
        version = "v1"
    else:
        raise SignatureRejected(VerifyReason.MISSING, "v3")
    if not result:
        raise SignatureRejected(result.reason, version)
    return version
