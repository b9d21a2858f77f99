"""HTTP glue the function adapters share: one logging set-up, one error-to-status map.

An adapter in ``functions/<name>/main.py`` is::

    @functions_framework.http
    @http_function("retry_worker")
    def retry_worker(request: flask.Request) -> ResponseReturnValue:
        ...call the engine, return json_response(...)

``http_function`` configures logging once per process, scopes each request's log
context (trace, correlation id, cold start), and turns what escapes the handler
into the answer its caller needs: 401/403 for auth failures, 503 for retryable
failures (the caller, HubSpot, Pub/Sub or Cloud Tasks, tries again), 500 for
anything unexpected, always as a JSON body that names the problem without secrets.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import flask

from shared.auth import AuthFailure
from shared.errors import SyncError
from shared.observability import configure_logging, request_context
from shared.untrusted_json import UnreadableJson, loads_untrusted

log = logging.getLogger("warp_hubspot_sync.web")

Handler = Callable[[flask.Request], flask.Response]


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> flask.Response:
    """A JSON answer (UTF-8, compact, datetimes and UUIDs as strings)."""
    response = flask.Response(
        json.dumps(body, default=str, separators=(",", ":")),
        status=status,
        mimetype="application/json",
    )
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def error_response(status: int, message: str, **details: Any) -> flask.Response:
    """``{"error": message, ...details}`` with ``status``."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return json_response({"error": message, **details}, status, headers)


def http_function(name: str) -> Callable[[Handler], Handler]:
    """Wrap a functions-framework HTTP handler (see the module docstring)."""
    configure_logging()

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def wrapper(request: flask.Request) -> flask.Response:
            with request_context(function=name, headers=dict(request.headers)):
                try:
                    return handler(request)
                except (AuthFailure, BadRequest) as exc:
                    return error_response(exc.status, str(exc))
                except SyncError as exc:
                    if exc.retryable:
                        log.warning(
                            "retryable failure; the caller will try again",
                            extra={"fields": {"error_type": type(exc).__name__}},
                        )
                        return error_response(503, str(exc), retryable=True)
                    log.error(
                        "permanent failure",
                        extra={"fields": {"error_type": type(exc).__name__}},
                    )
                    return error_response(422, str(exc), retryable=False)
                except Exception:
                    log.exception("unexpected failure")
                    return error_response(500, "internal error")

        return wrapper

    return decorate


def read_json(request: flask.Request, *, max_bytes: int) -> Any:
    """The request body parsed as JSON; raises BadRequest naming the problem.

    The size check comes first so an oversized body is refused before it is read.
    """
    _refuse_declared_excess(request, max_bytes)
    raw = request.get_data(cache=True)
    if len(raw) > max_bytes:
        raise _too_large(max_bytes)
    try:
        # Strict and bounded: deep nesting, NaN, huge integers and NUL used to be 500s.
        return loads_untrusted(raw)
    except UnreadableJson as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None


def read_body(request: flask.Request, *, max_bytes: int) -> bytes:
    """The raw request body; raises BadRequest (413) beyond ``max_bytes``.

    At most one byte more than the cap is read, so an oversized body that did not
    declare its length is never held whole.
    """
    _refuse_declared_excess(request, max_bytes)
    body: bytes = request.stream.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise _too_large(max_bytes)
    return body


def _refuse_declared_excess(request: flask.Request, max_bytes: int) -> None:
    # Checked before reading, so a declared oversized body is refused unread.
    if (request.content_length or 0) > max_bytes:
        raise _too_large(max_bytes)


def _too_large(max_bytes: int) -> BadRequest:
    return BadRequest(f"body larger than {max_bytes} bytes", status=413)


class BadRequest(SyncError):
    """The request itself is wrong: the answer is ``status`` (400 unless said otherwise)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
