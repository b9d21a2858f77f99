"""WARP's application writing a row while a flow is between its read and its write."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

import httpx

from shared.engine import Engine
from shared.hubspot.client import HubSpotClient
from tests.conftest import TEST_ACCESS_TOKEN


class _EditOnFirstCall(httpx.BaseTransport):
    """HTTP to HubSpot, but ``edit`` runs (and commits) just before the first call goes out.

    Every flow reads WARP's rows, then calls HubSpot, then writes WARP: the first
    HubSpot call is inside the window, and WARP's application takes none of the
    flows' locks.
    """

    def __init__(self, edit: Callable[[], None]) -> None:
        self._inner = httpx.HTTPTransport()
        self._edit: Callable[[], None] | None = edit

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._edit is not None:
            edit, self._edit = self._edit, None
            edit()
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


@contextlib.contextmanager
def edit_during_first_call(engine: Engine, edit: Callable[[], None]) -> Iterator[Engine]:
    """``engine`` with a HubSpot client that runs ``edit`` before its first call."""
    client = HubSpotClient(
        engine.settings.hubspot_base_url,
        TEST_ACCESS_TOKEN,
        limiter=engine.hubspot._limiter,
        transport=_EditOnFirstCall(edit),
    )
    try:
        yield dataclasses.replace(engine, hubspot=client)
    finally:
        client.close()
