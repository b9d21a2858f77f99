"""The HTTP front: a real concurrent server that routes to the CRM API or the control API.

Around each CRM call, in HubSpot's order: authentication, outage, rate limits,
injected faults; then the handler. Control calls (``/_emulator/``) skip all of it.
"""

from __future__ import annotations

import json
import logging
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from shared.hubspot.emulator.api import Call
from shared.hubspot.emulator.errors import ApiError, new_correlation_id
from shared.hubspot.emulator.properties import canonical_type

if TYPE_CHECKING:
    from shared.hubspot.emulator.emulator import Emulator

log = logging.getLogger("warp_hubspot_sync.emulator")

JSON_TYPE = "application/json;charset=utf-8"
MAX_BODY = 10 * 1024 * 1024
_AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
    "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


class Answer:
    """A response to write: status, headers, body bytes; ``hold`` means time out instead."""

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
        self.hold = False
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


class CrmPipeline:
    """Authentication, outage, limits and faults around the CRM handlers."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: Any, raw: bytes
    ) -> Answer:
        emu = self.emu
        matched = emu.api.match(method, path)
        if matched is None:
            return error_answer(ApiError(404, "OBJECT_NOT_FOUND", f"No route for {method} {path}"))
        route, params = matched
        object_type = canonical_type(params["type"])
        key = f"{method} {route.template.replace('{type}', object_type or params['type'])}"
        emu.count_call(key)
        if emu.faults.latency_ms:
            time.sleep(emu.faults.latency_ms / 1000)
        if not self._authorized(headers.get("Authorization", "")):
            return error_answer(
                ApiError(
                    401,
                    "INVALID_AUTHENTICATION",
                    _AUTH_MESSAGE,
                )
            )
        if emu.faults.outage:
            return error_answer(ApiError(503, "", "Service Unavailable"))
        decision = emu.limits.check(search=route.search)
        if not decision.allowed:
            emu.count_rate_limited(key)
            assert decision.error is not None
            return _limit_answer(decision.error, decision.headers)
        fault = emu.faults.draw()
        if fault in ("429", "500", "502", "503"):
            return _fault_answer(fault, route.search, decision.headers)
        if fault == "timeout":
            return _hold()
        if object_type is None:
            return error_answer(
                ApiError(
                    400, "VALIDATION_ERROR", f"Unable to infer object type from: {params['type']}"
                ),
                decision.headers,
            )
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return error_answer(
                ApiError(400, "VALIDATION_ERROR", "Invalid input JSON on line 1"), decision.headers
            )
        call = Call(method, params, query, body, emu.api_source, object_type)
        try:
            status, result = route.handler(call)
            answer = Answer(status, result, decision.headers)
            answer.headers["X-HubSpot-Correlation-Id"] = new_correlation_id()
        except ApiError as exc:
            answer = error_answer(exc, decision.headers)
        return _hold() if fault == "timeout_after_write" else answer

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and token.strip() in self.emu.access_tokens


def _hold() -> Answer:
    answer = Answer(0)
    answer.hold = True
    return answer


def _limit_answer(body: dict[str, Any], headers: dict[str, str]) -> Answer:
    correlation = new_correlation_id()
    full = {**body, "correlationId": correlation}
    if "policyName" in body:
        full["requestId"] = new_correlation_id()
    return Answer(429, full, {**headers, "X-HubSpot-Correlation-Id": correlation})


def _fault_answer(kind: str, search: bool, headers: dict[str, str]) -> Answer:
    if kind == "429":
        if search:
            return _limit_answer(
                {
                    "status": "error",
                    "message": "You have reached your secondly limit.",
                    "category": "RATE_LIMITS",
                },
                {},
            )
        return _limit_answer(
            {
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "policyName": "TEN_SECONDLY_ROLLING",
            },
            headers,
        )
    if kind == "502":
        # HubSpot's edge answers gateway errors with an HTML page, not JSON.
        return Answer(
            502, raw=b"<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html"
        )
    if kind == "503":
        return error_answer(ApiError(503, "", "Service Unavailable"))
    return error_answer(ApiError(500, "INTERNAL_ERROR", "internal error"), headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One buffered write per answer, sent without Nagle: separate small header and body
    # writes would each wait for the client's delayed ACK (~40 ms per call).
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024
    server: EmulatorHTTPServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        raw = self._read_body()
        if raw is None:
            self.close_connection = True
            self._write(error_answer(ApiError(413, "VALIDATION_ERROR", "Request body too large")))
            return
        emu = self.server.emulator
        try:
            if parts.path.startswith("/_emulator/"):
                answer = emu.control.handle(self.command, parts.path, raw)
            else:
                answer = emu.pipeline.handle(self.command, parts.path, query, self.headers, raw)
        except Exception:
            log.exception("emulator handler failed", extra={"fields": {"path": parts.path}})
            answer = error_answer(ApiError(500, "INTERNAL_ERROR", "emulator internal error"))
        if answer.hold:
            # Keep the client waiting past its read timeout, then hang up without answering.
            time.sleep(emu.faults.hold_ms / 1000)
            self.close_connection = True
            return
        self._write(answer)

    def _read_body(self) -> bytes | None:
        """The request body (Content-Length or chunked); None when over ``MAX_BODY``."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            total = 0
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline().strip():  # trailers, up to the blank line
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _write(self, answer: Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.status != 204:
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if answer.body and answer.status != 204:
            self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("emulator request: " + format, *args)


class EmulatorHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its emulator."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)
