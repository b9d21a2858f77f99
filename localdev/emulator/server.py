"""The HTTP front: a real concurrent server that reads each request and writes its answer.

What a request means is not its business: it hands method, path, query, headers and
body to a ``Route`` (the emulator's, which sends ``/_emulator/`` to the control API and
the rest through the CRM pipeline).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from localdev.emulator.answers import Answer, error_answer
from localdev.emulator.errors import ApiError

log = logging.getLogger("warp_hubspot_sync.emulator")

MAX_BODY = 10 * 1024 * 1024
Route = Callable[[str, str, dict[str, list[str]], Any, bytes], Answer]


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
        try:
            answer = self.server.route(self.command, parts.path, query, self.headers, raw)
        except Exception:
            log.exception("emulator handler failed", extra={"fields": {"path": parts.path}})
            answer = error_answer(ApiError(500, "INTERNAL_ERROR", "emulator internal error"))
        if answer.hold_seconds is not None:
            # Keep the client waiting past its read timeout, then hang up without answering.
            time.sleep(answer.hold_seconds)
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
    """ThreadingHTTPServer that hands every request to ``route``."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], route: Route) -> None:
        self.route = route
        super().__init__(address, _Handler)
