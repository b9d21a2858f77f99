"""One HTTP exchange with HubSpot: the connection pool, the token, the failure it becomes.

No limiting and no retrying here (those are :mod:`shared.hubspot.client` and
:mod:`shared.hubspot._retry`): :meth:`Transport.send` makes one attempt and says what
came of it, including whether HubSpot may have applied a request that failed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from shared.hubspot.errors import ConnectionFailed, HubSpotError, Timeout


@dataclass(frozen=True)
class Exchange:
    """The outcome of one attempt: an answer below 300, or an error.

    ``maybe_applied``: whether HubSpot may have carried out the failed request.
    ``response`` is the answer when there was one, error or not.
    """

    response: httpx.Response | None
    error: HubSpotError | None = None
    maybe_applied: bool = False


class Transport:
    """A lazily built :class:`httpx.Client` with the write token, and the read token for reads."""

    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        read_access_token: str | None,
        timeout: httpx.Timeout,
        transport: httpx.BaseTransport | None,
    ) -> None:
        # Per-request header for reads; None: reads go with the client's (write) token.
        self._read_auth = (
            {"Authorization": f"Bearer {read_access_token}"} if read_access_token else None
        )
        self._options: dict[str, Any] = {
            "base_url": base_url.rstrip("/"),
            "headers": {
                "Authorization": f"Bearer {access_token}",
                "Accept": "application/json",
                "User-Agent": "warp-hubspot-sync",
            },
            "timeout": timeout,
            "transport": transport,
        }
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._client is not None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _http(self) -> httpx.Client:
        # Built on the first call, not with the engine: its TLS context (the CA bundle)
        # costs ~45 ms, which a cold start whose first request never calls HubSpot (an
        # echo webhook, an API read) should not pay.
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(**self._options)
            return self._client

    def send(self, method: str, path: str, params: Mapping[str, Any] | None, json: Any) -> Exchange:
        """One HTTP exchange; transport failures and error answers become HubSpot errors."""
        headers = self._read_auth if self._read_auth and is_read(method, path) else None
        error: HubSpotError
        try:
            response = self._http().request(method, path, params=params, json=json, headers=headers)
        except httpx.ConnectTimeout as exc:
            return Exchange(None, Timeout(f"HubSpot connect timeout: {type(exc).__name__}"))
        except httpx.TimeoutException as exc:
            error = Timeout(f"HubSpot did not answer in time: {type(exc).__name__}")
            return Exchange(None, error, maybe_applied=True)
        except httpx.ConnectError as exc:
            error = ConnectionFailed(f"cannot connect to HubSpot: {type(exc).__name__}")
            return Exchange(None, error)
        except httpx.TransportError as exc:
            error = ConnectionFailed(f"connection to HubSpot broke: {type(exc).__name__}")
            return Exchange(None, error, maybe_applied=True)
        if response.status_code < 300:
            return Exchange(response)
        # 423 and 429 are refusals before anything was written; other errors may not be.
        return Exchange(response, error_from(response), response.status_code not in (423, 429))


def is_read(method: str, path: str) -> bool:
    """Whether a call only reads HubSpot: a GET, or a POST that is a batch read or a search
    (HubSpot asks for a ``.read`` scope of these, a ``.write`` one of every other call)."""
    return method == "GET" or path.endswith(("/batch/read", "/search"))


def error_from(response: httpx.Response) -> HubSpotError:
    """The :mod:`shared.hubspot.errors` class of an error answer, with its Retry-After."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:200]
    retry_after: float | None = None
    raw = response.headers.get("retry-after")
    if raw:
        try:
            retry_after = max(0.0, float(raw))
        except ValueError:
            retry_after = None  # an HTTP date; HubSpot documents seconds only
    return HubSpotError.from_response(
        response.status_code,
        body,
        correlation_id=response.headers.get("x-hubspot-correlation-id"),
        retry_after=retry_after,
    )
