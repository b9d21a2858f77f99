"""A real HTTP hop between the emulator's webhooks and the receiver, for delivery tests.

It forwards each POST unchanged (path, body, HubSpot's signature headers) and relays
the answer, except where ``script`` says otherwise for a delivery:

- ``Hop.FORWARD``: forward, relay the receiver's answer;
- ``Hop.REFUSE``: answer 503 without forwarding (the receiver was down);
- ``Hop.LOSE_ANSWER``: forward, then answer 503 anyway (the answer was lost or came
  too late, so HubSpot redelivers what the receiver already has).

``gate`` (a ``threading.Barrier``) holds the first ``gate.parties`` requests until that
many are in flight, so they reach the receiver together. Every exchange is kept.
The emulator signs over the proxy's URL: the receiver's ``WEBHOOK_PUBLIC_URL`` is it,
so ``target`` may be set after the receiver started.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx

from tests.helpers.http_server import BackgroundHTTPServer

_FORWARDED = ("content-type", "user-agent", "x-hubspot-request-timestamp")


class Hop(Enum):
    """What the proxy does with one delivery."""

    FORWARD = "forward"
    REFUSE = "refuse"
    LOSE_ANSWER = "lose_answer"


@dataclass(frozen=True)
class Exchange:
    """One delivery: the events sent, what the receiver answered, what the emulator got."""

    events: list[dict[str, Any]]
    receiver_status: int | None  # None: not forwarded
    receiver_answer: dict[str, Any] | None
    answered: int


class WebhookProxy(BackgroundHTTPServer):
    """Forwards webhook POSTs to ``target`` (a base URL); use as a context manager."""

    def __init__(
        self,
        target: str = "",
        *,
        script: Callable[[list[dict[str, Any]]], Hop] = lambda events: Hop.FORWARD,
        gate: threading.Barrier | None = None,
    ) -> None:
        self.target, self.script, self.gate = target.rstrip("/"), script, gate
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._arrivals = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                events = json.loads(body)
                with proxy._lock:
                    proxy._arrivals += 1
                    gated = proxy.gate is not None and proxy._arrivals <= proxy.gate.parties
                if gated and proxy.gate is not None:
                    proxy.gate.wait()
                hop = proxy.script(events)
                status: int | None = None
                answer: dict[str, Any] | None = None
                if hop is not Hop.REFUSE:
                    headers = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() in _FORWARDED or k.lower().startswith("x-hubspot-signature")
                    }
                    reply = httpx.post(
                        proxy.target + self.path, content=body, headers=headers, timeout=60
                    )
                    status, answer = reply.status_code, reply.json()
                answered = status if hop is Hop.FORWARD and status is not None else 503
                with proxy._lock:
                    proxy.exchanges.append(Exchange(events, status, answer, answered))
                self.send_response(answered)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)

    def seen(self) -> list[Exchange]:
        """The exchanges so far."""
        with self._lock:
            return list(self.exchanges)
