"""The per-request logging context: which function, which request, which trace.

Borrowed from Powertools' ``inject_lambda_context``: a function adapter enters
:func:`request_context` once per invocation; every log line written inside it carries
the function name, ``cold_start``, the trace and span of the incoming request and a
correlation id (the task name, the scheduler run, a Pub/Sub message id bound later
with :func:`bind`). It lives in a :class:`contextvars.ContextVar`, so concurrent
requests on threads never see each other's context, and it is gone when the scope exits.
"""

from __future__ import annotations

import contextvars
import functools
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d{1,20}))?(?:;o=([01]))?$")
_ZERO_TRACE = "0" * 32
_MAX_SPAN = 2**64 - 1

# Headers naming the unit of work, in order of preference (see correlation_from_headers).
_CORRELATION_HEADERS = (
    "x-cloudtasks-taskname",
    "x-cloudscheduler-scheduletime",
    "function-execution-id",
)


@dataclass(frozen=True)
class TraceContext:
    """A parsed trace header: 32-hex trace id, 16-hex span id, sampling flag."""

    trace_id: str
    span_id: str | None = None
    sampled: bool | None = None


@dataclass(frozen=True)
class RequestContext:
    """What every log line of one invocation carries."""

    function: str | None
    cold_start: bool
    correlation_id: str | None = None
    trace: TraceContext | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "warp_hubspot_sync_request_context", default=None
)
_cold_start_lock = threading.Lock()
_cold_start_pending = True


def _take_cold_start() -> bool:
    """True exactly once per process: for the first invocation that asks."""
    global _cold_start_pending
    with _cold_start_lock:
        first, _cold_start_pending = _cold_start_pending, False
    return first


def current_context() -> RequestContext | None:
    """The context of the invocation running on this thread/task, if any."""
    return _current.get()


def default_function_name() -> str | None:
    """The deployed function's name: Cloud Run's ``K_SERVICE``, else ``FUNCTION_TARGET``."""
    return os.environ.get("K_SERVICE") or os.environ.get("FUNCTION_TARGET") or None


def _lower_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    if not headers:
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items()}


def parse_traceparent(value: str) -> TraceContext | None:
    """Parse a W3C ``traceparent`` header; None if malformed or all-zero."""
    match = _TRACEPARENT.match(value.strip().lower())
    if not match or match.group(1) == _ZERO_TRACE or match.group(2) == "0" * 16:
        return None
    return TraceContext(match.group(1), match.group(2), bool(int(match.group(3), 16) & 1))


def parse_cloud_trace_context(value: str) -> TraceContext | None:
    """Parse ``X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1``; the decimal span becomes hex.

    Cloud Logging wants ``spanId`` as 16 hex digits (the Trace v2 form), while this
    header carries the span as an unsigned decimal.
    """
    match = _CLOUD_TRACE.match(value.strip())
    if not match or match.group(1) == _ZERO_TRACE:
        return None
    span: str | None = None
    if match.group(2) is not None:
        number = int(match.group(2))
        span = f"{number:016x}" if 0 < number <= _MAX_SPAN else None
    sampled = None if match.group(3) is None else match.group(3) == "1"
    return TraceContext(match.group(1).lower(), span, sampled)


def trace_from_headers(headers: Mapping[str, str] | None) -> TraceContext | None:
    """The request's trace: W3C ``traceparent`` first, else ``X-Cloud-Trace-Context``."""
    lowered = _lower_headers(headers)
    if "traceparent" in lowered:
        parsed = parse_traceparent(lowered["traceparent"])
        if parsed:
            return parsed
    if "x-cloud-trace-context" in lowered:
        return parse_cloud_trace_context(lowered["x-cloud-trace-context"])
    return None


def correlation_from_headers(headers: Mapping[str, str] | None) -> str | None:
    """The id of the unit of work a trigger names in its headers.

    Cloud Tasks' task name, then Cloud Scheduler's job + schedule time (one nightly run),
    then functions-framework's execution id. Pub/Sub and HubSpot put theirs in the body:
    the adapter binds those with :func:`bind` once parsed.
    """
    lowered = _lower_headers(headers)
    for name in _CORRELATION_HEADERS:
        value = lowered.get(name)
        if value:
            if name == "x-cloudscheduler-scheduletime":
                job = lowered.get("x-cloudscheduler-jobname")
                return f"{job}@{value}" if job else value
            return value
    return None


class request_context:  # lower-case like contextlib's context managers
    """Scope one invocation: ``with request_context(function=..., headers=...):``.

    Also a decorator for a functions-framework handler: with no ``headers`` given, the
    headers of the decorated function's first argument (the ``flask.Request``) are used
    on every call, and each call gets its own scope::

        @functions_framework.http
        @request_context(function="retry_worker")
        def retry_worker(request): ...

    ``correlation_id`` overrides the one derived from the headers; extra keyword
    arguments (entity ids) are logged on every line of the scope.
    """

    def __init__(
        self,
        *,
        function: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
        **fields: Any,
    ) -> None:
        self._function = function
        self._headers = headers
        self._correlation_id = correlation_id
        self._fields = fields
        self._tokens: list[contextvars.Token[RequestContext | None]] = []

    def _build(self, headers: Mapping[str, str] | None) -> RequestContext:
        return RequestContext(
            function=self._function or default_function_name(),
            cold_start=_take_cold_start(),
            correlation_id=self._correlation_id or correlation_from_headers(headers),
            trace=trace_from_headers(headers),
            fields=dict(self._fields),
        )

    def __enter__(self) -> RequestContext:
        context = self._build(self._headers)
        self._tokens.append(_current.set(context))
        return context

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _current.reset(self._tokens.pop())

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Wrap ``func`` so each call runs in a fresh scope built from its request."""

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            headers = self._headers
            if headers is None and args:
                headers = getattr(args[0], "headers", None)
            token = _current.set(self._build(headers))
            try:
                return func(*args, **kwargs)
            finally:
                _current.reset(token)

        return wrapper


def bind(*, correlation_id: str | None = None, **fields: Any) -> None:
    """Add fields (entity ids) or set the correlation id for the rest of the current scope.

    Outside any scope this does nothing: there is no invocation to describe.
    """
    context = _current.get()
    if context is None:
        return
    _current.set(
        replace(
            context,
            correlation_id=correlation_id or context.correlation_id,
            fields={**context.fields, **fields},
        )
    )
