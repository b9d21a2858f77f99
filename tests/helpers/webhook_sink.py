"""A tiny real HTTP server that collects webhook POSTs, for emulator and receiver tests.

``responses`` scripts the answers: each request pops the next status (or the
``default`` once empty), so a test can make the first deliveries fail. ``hold``, a
``threading.Barrier``, keeps each request unanswered until that many are in flight.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.helpers.http_server import BackgroundHTTPServer


@dataclass(frozen=True)
class Received:
    """One request as the sink saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON array of events in the body."""
        parsed = json.loads(self.body)
        assert isinstance(parsed, list)
        return parsed


class WebhookSink(BackgroundHTTPServer):
    """Collects POSTs on ``url``; use as a context manager."""

    def __init__(self, path: str = "/v1/webhooks/hubspot", default: int = 200) -> None:
        self.path, self.default = path, default
        self.responses: deque[int] = deque()
        self.requests: list[Received] = []
        self.hold: threading.Barrier | None = None
        self._cond = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if sink.hold is not None:
                    sink.hold.wait()
                with sink._cond:
                    status = sink.responses.popleft() if sink.responses else sink.default
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    sink.requests.append(Received(self.path, headers, body, status))
                    sink._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler, path)

    def accepted(self) -> list[Received]:
        """Requests answered with 2xx."""
        with self._cond:
            return [r for r in self.requests if r.status < 300]

    def events(self) -> list[dict[str, Any]]:
        """Every event of every accepted request, in arrival order."""
        return [e for r in self.accepted() for e in r.events]

    def wait_until(self, condition: Callable[[WebhookSink], bool], timeout: float = 10.0) -> None:
        """Block until ``condition(self)`` holds; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition(self):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"webhook sink: condition not met within {timeout}s"
                self._cond.wait(remaining)
