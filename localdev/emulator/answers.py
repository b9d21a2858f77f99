"""What the emulator's HTTP front writes back: status, headers and body of one answer."""

from __future__ import annotations

import json
from typing import Any

from localdev.emulator.errors import ApiError, new_correlation_id

JSON_TYPE = "application/json;charset=utf-8"


class Answer:
    """A response to write: status, headers, body bytes; ``hold_seconds`` times out instead."""

    def __init__(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        raw: bytes | None = None,
        content_type: str = JSON_TYPE,
    ) -> None:
        self.status = status
        self.headers = dict(headers or {})
        # Seconds to keep the client waiting before hanging up unanswered (a timeout).
        self.hold_seconds: float | None = None
        if raw is not None:
            self.body = raw
            self.headers["Content-Type"] = content_type
        elif body is not None:
            self.body = json.dumps(body, separators=(",", ":")).encode()
            self.headers["Content-Type"] = JSON_TYPE
        else:
            self.body = b""


def error_answer(error: ApiError, headers: dict[str, str] | None = None) -> Answer:
    """HubSpot's error body with a fresh correlation id, also sent as a header."""
    correlation = new_correlation_id()
    return Answer(
        error.status,
        error.body(correlation),
        {**(headers or {}), "X-HubSpot-Correlation-Id": correlation},
    )
