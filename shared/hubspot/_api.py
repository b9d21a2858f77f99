"""What the API modules need of the client: one call through the limiter, and reads in parallel.

:class:`shared.hubspot.client.HubSpotClient` is the one implementation; the object,
search, association and schema APIs are written against this protocol so they
never import the client module (which imports them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

import httpx

from shared.hubspot.ratelimit import Bucket

T = TypeVar("T")


class ApiClient(Protocol):
    """The client's request loop, as the API modules call it."""

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        op: str,
        bucket: Bucket = Bucket.BURST,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send one API call through the limiter, with bounded retries; raise on failure."""
        ...

    def start_concurrently(self, calls: Sequence[Callable[[], T]]) -> list[Future[T]]:
        """Start independent calls, a few at a time; their futures in order."""
        ...
