"""HTTP glue the function adapters share: one logging set-up, one error-to-status map.

An adapter in ``functions/<name>/main.py`` is::

    @functions_framework.http
    @http_function("retry_worker", max_body_bytes=102_400)
    def retry_worker(request: flask.Request) -> ResponseReturnValue:
        ...call the engine, return json_response(...)

``http_function`` configures logging once per process, bounds the request body (see
:class:`RequestBody`), scopes each request's log
context (trace, correlation id, cold start), and turns what escapes the handler
into the answer its caller needs: 401/403 for auth failures, 503 for retryable
failures (the caller, HubSpot, Pub/Sub or Cloud Tasks, tries again), 500 for
anything unexpected, always as a JSON body that names the problem without secrets.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import IO, Any

import flask

from shared.auth import AuthFailure
from shared.errors import ConfigurationError, SyncError
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


def http_function(
    name: str, *, max_body_bytes: int | Callable[[], int]
) -> Callable[[Handler], Handler]:
    """Wrap a functions-framework HTTP handler (see the module docstring).

    ``max_body_bytes`` is the function's body cap (a callable when it is a setting).
    The settings are checked now, at the instance's start (one line per problem).
    """
    configure_logging()
    unusable = check_settings_at_start(name)

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def wrapper(request: flask.Request) -> flask.Response:
            with request_context(function=name, headers=dict(request.headers)):
                if unusable is not None:
                    # The problem was logged at start; the caller gets it without a
                    # traceback, as a failure it can retry once someone fixes it.
                    return error_response(503, unusable, retryable=True)
                body: RequestBody | None = None
                try:
                    cap = max_body_bytes() if callable(max_body_bytes) else max_body_bytes
                    body = RequestBody.install(request, cap)
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
                finally:
                    if body is not None:
                        # functions-framework's after_request hook reads "the rest" of
                        # the body once we have answered: let it find nothing.
                        body.finish()

        return wrapper

    return decorate


def check_settings_at_start(name: str) -> str | None:
    """Validate the settings function ``name`` needs; log and return what is wrong, or None.

    A wrong setting otherwise surfaces only on the first request that touches it, as
    a traceback there. One line per problem names the setting, the cause and the fix.
    """
    from shared.config import get_settings
    from shared.diagnose import startup_problems
    from shared.engine.edge import installed_engine
    from shared.observability.context import default_function_name

    engine = installed_engine()  # a test or the local stack brought its own settings
    try:
        settings = engine.settings if engine is not None else get_settings()
    except ConfigurationError as exc:
        problems = [str(exc)]
    else:
        deployed = bool(os.environ.get("K_SERVICE"))
        problems = [p.line() for p in startup_problems(name, settings, deployed=deployed)]
    for problem in problems:
        log.critical(
            f"{default_function_name() or name} cannot work: {problem}",
            extra={"fields": {"function": name}},
        )
    return "; ".join(problems) or None


class RequestBody(io.RawIOBase):
    """The request body as everyone in the process reads it: bounded, and over on answer.

    Installed as ``wsgi.input`` before Flask builds ``request.stream`` (marked
    ``wsgi.input_terminated``, so werkzeug reads it as is). It yields at most the
    function's cap plus one byte, never more than the declared ``Content-Length``,
    and nothing once :meth:`finish` is called. Without it, functions-framework's
    ``after_request(read_request)`` read every body whole after a 413 or 401 (a
    256 MiB body took ~530 MB) and waited for a declared body that never came.
    A client that goes away mid-body is one log line and a 400, not a traceback.
    """

    def __init__(self, source: IO[bytes], *, cap: int, left: int, declared: int | None) -> None:
        super().__init__()
        self.cap = cap
        self._source = source
        self._left = left
        self._declared = declared
        self._read = 0

    @classmethod
    def install(cls, request: flask.Request, cap: int) -> RequestBody:
        """Bound ``request``'s body at ``cap`` + 1 bytes; the handler has not read it yet."""
        if "stream" in vars(request):
            raise RuntimeError("the request body was opened before its cap was installed")
        environ = request.environ
        declared = request.content_length
        if declared is not None:
            left = min(declared, cap + 1)
        elif environ.get("wsgi.input_terminated"):
            left = cap + 1  # chunked: the server ends the stream with the body
        else:
            left = 0  # no length and no framing: there is no body (werkzeug's rule too)
        body = cls(environ["wsgi.input"], cap=cap, left=left, declared=declared)
        environ["wsgi.input"] = body
        environ["wsgi.input_terminated"] = True
        return body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), self._left)
        if size <= 0:
            return 0
        try:
            data = self._source.read(size)
        except Exception as exc:
            # Whatever the server's stream raises (reset, timeout, gunicorn's
            # InvalidChunkSize, werkzeug's ValueError on bad framing), the body is unreadable.
            raise self._broken_off(type(exc).__name__) from None
        if not data:
            if self._declared is not None:
                raise self._broken_off("end of stream")
            self._left = 0
            return 0
        buffer[: len(data)] = data
        self._left -= len(data)
        self._read += len(data)
        return len(data)

    def finish(self) -> None:
        """The answer is decided: whatever is still unread stays unread."""
        self._left = 0

    def _broken_off(self, cause: str) -> BadRequest:
        self._left = 0
        log.warning(
            "request body broke off: the client went away or sent a malformed body",
            extra={
                "fields": {"bytes_read": self._read, "declared": self._declared, "cause": cause}
            },
        )
        return BadRequest(f"request body broke off after {self._read} bytes")


_REQUIRED: Any = object()


def read_json(request: flask.Request, *, if_empty: Any = _REQUIRED) -> Any:
    """The request body parsed as JSON; raises BadRequest naming the problem.

    An empty body is ``if_empty`` when given, else a BadRequest.
    """
    raw = read_body(request)
    if not raw and if_empty is not _REQUIRED:
        return if_empty
    try:
        # Strict and bounded: deep nesting, NaN, huge integers and NUL used to be 500s.
        return loads_untrusted(raw)
    except UnreadableJson as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None


def read_body(request: flask.Request) -> bytes:
    """The raw request body; raises BadRequest (413) beyond the function's cap.

    A declared oversized body is refused unread; one that did not declare its length
    is read up to the cap plus one byte, never held whole.
    """
    body = request.environ.get("wsgi.input")
    if not isinstance(body, RequestBody):
        raise RuntimeError("read_body needs the cap http_function installs")
    if (request.content_length or 0) > body.cap:
        raise _too_large(body.cap)
    data: bytes = request.get_data(cache=True)
    if len(data) > body.cap:
        raise _too_large(body.cap)
    return data


def _too_large(max_bytes: int) -> BadRequest:
    return BadRequest(f"body larger than {max_bytes} bytes", status=413)


class BadRequest(SyncError):
    """The request itself is wrong: the answer is ``status`` (400 unless said otherwise)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
