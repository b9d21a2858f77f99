"""Something happening at a chosen point of a flow's HubSpot calls.

WARP's application writing a row while a flow is between its read and its write;
the flow's database connection dying just after HubSpot accepted its write.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

import httpx

from shared.engine import Engine
from shared.hubspot import HubSpotClient
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


class _AfterFirstWrite(httpx.BaseTransport):
    """HTTP to HubSpot, but ``action`` runs once the first batch update has been answered."""

    def __init__(self, action: Callable[[], None]) -> None:
        self._inner = httpx.HTTPTransport()
        self._action: Callable[[], None] | None = action

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if self._action is not None and request.url.path.endswith("/batch/update"):
            response.read()  # HubSpot has answered: the write happened
            action, self._action = self._action, None
            action()
        return response

    def close(self) -> None:
        self._inner.close()


@contextlib.contextmanager
def after_first_write(engine: Engine, action: Callable[[], None]) -> Iterator[Engine]:
    """``engine`` with a HubSpot client that runs ``action`` after its first batch update."""
    client = HubSpotClient(
        engine.settings.hubspot_base_url,
        TEST_ACCESS_TOKEN,
        limiter=engine.hubspot._limiter,
        transport=_AfterFirstWrite(action),
    )
    try:
        yield dataclasses.replace(engine, hubspot=client)
    finally:
        client.close()
