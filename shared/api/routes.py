"""The management API's route table and the small router that serves it.

One :class:`Route` per method and path says everything about an operation: its
handler, the models of its query, body and answers, and its auth. The router
matches ``request.method`` and ``request.path`` against the table (404 for no
path, 405 with ``Allow`` for a path without that method), authenticates,
validates path ids, query and body with pydantic (400 naming the field), calls
the handler and turns its model into JSON. The OpenAPI document is generated
from the same table (``shared/api/openapi.py``), so the two cannot drift apart
unnoticed: a test compares them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import flask
from pydantic import BaseModel, ValidationError

from shared import pause
from shared.api import handlers, models
from shared.api.auth import (
    Caller,
    NotConfigured,
    acting_user,
    authenticate,
    authenticate_metrics,
)
from shared.api.context import ApiError, Call, Reply
from shared.engine import Engine
from shared.observability import bind
from shared.web import BadRequest, error_response, json_response, read_json

log = logging.getLogger("warp_hubspot_sync.api")

PREFIX = "/v1/sync"
MAX_BODY_BYTES = 64 * 1024
DOCUMENT_PATH = Path(__file__).with_name("openapi.json")
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CUSTOMER = f"{PREFIX}/customers/{{id}}"
CONSOLE_PATH = f"{PREFIX}/console"


@dataclass(frozen=True)
class Route:
    """One operation: ``method`` on ``path`` (``{id}`` segments are UUIDs)."""

    method: str
    path: str
    handler: Callable[[Call], Reply]
    operation_id: str
    summary: str
    tag: str
    responses: Mapping[int, tuple[type[BaseModel] | None, str]]
    query: type[models.Request] | None = None
    body: type[BaseModel] | None = None
    # "page": a static page holding no data, open like any login page; the API calls
    # it makes carry the credentials.
    auth: Literal["api", "metrics", "page"] = "api"
    media_type: str = "application/json"
    writes: bool = False  # writes WARP or HubSpot: refused (409) while the sync is paused
    segments: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.path.strip("/").split("/")))

    @property
    def takes_customer(self) -> bool:
        """Its ``{id}`` is a customer: a UUID or ``ban:<BAN>``."""
        return self.path.startswith(f"{CUSTOMER}/")

    def match(self, parts: tuple[str, ...]) -> dict[str, str] | None:
        """The raw path parameters when ``parts`` fits this route's path, else None."""
        if len(parts) != len(self.segments):
            return None
        params = {}
        for want, got in zip(self.segments, parts, strict=True):
            if want.startswith("{") and want.endswith("}"):
                if not got:
                    return None
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


# --- handlers that are about HTTP itself ----------------------------------------------


def metrics(call: Call) -> Reply:
    """GET /metrics: Prometheus text computed from the database."""
    # Only this route needs prometheus_client; imported here, no other route's cold
    # start pays for it.
    from shared.api.metrics import read_snapshot, render

    body = render(read_snapshot(call.engine.database))
    return flask.Response(body, status=200, content_type=PROMETHEUS_TEXT)


@cache
def document_text() -> str:
    """The committed OpenAPI document (read once per instance)."""
    return DOCUMENT_PATH.read_text(encoding="utf-8")


def openapi_document(call: Call) -> Reply:
    """GET /v1/sync/openapi.json: the API's OpenAPI 3.1 document."""
    return flask.Response(document_text(), status=200, mimetype="application/json")


def console_page(call: Call) -> Reply:
    """GET /v1/sync/console: the operator console (a static page over this API)."""
    from shared.api.console import page

    console = page()
    response = flask.Response(console.html, status=200, mimetype="text/html")
    response.headers.update(console.headers)
    return response


# --- the table ------------------------------------------------------------------------

_E = models.Error
_AUTH = {401: (_E, "no credentials"), 403: (_E, "credentials not accepted")}
_UNAVAILABLE = {503: (_E, "the database (or HubSpot) is unavailable now; try again")}
_BAD = {400: (_E, "a bad path id, query parameter or body field (named in `field`)")}
_MISSING = {404: (_E, "no such customer (or record)")}
_HUBSPOT = {422: (_E, "HubSpot refused the call (permanent)")}
_PAUSED = "the sync is paused (POST /v1/sync/resume)"


def _answers(
    ok: tuple[int, type[BaseModel] | None, str], *extra: Mapping[int, tuple[Any, str]]
) -> dict[int, tuple[type[BaseModel] | None, str]]:
    merged: dict[int, tuple[type[BaseModel] | None, str]] = {ok[0]: (ok[1], ok[2])}
    for more in (_AUTH, _UNAVAILABLE, *extra):
        merged.update(more)
    return dict(sorted(merged.items()))


# Both sync directions, and both metrics paths, answer alike.
_SYNC_ANSWERS = _answers(
    (200, models.SyncResult, "what changed, was skipped, or is in conflict"),
    _BAD,
    _MISSING,
    {409: (_E, f"the customer is not linked to a HubSpot company, or {_PAUSED}")},
    _HUBSPOT,
)
_METRICS_ANSWERS = {200: (None, "Prometheus text format"), **_AUTH, **_UNAVAILABLE}
ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        f"{CUSTOMER}/to-hubspot",
        handlers.sync_to_hubspot,
        "syncToHubSpot",
        "Sync one customer to HubSpot now (every field WARP may write)",
        "sync",
        _SYNC_ANSWERS,
        writes=True,
    ),
    Route(
        "POST",
        f"{CUSTOMER}/from-hubspot",
        handlers.sync_from_hubspot,
        "syncFromHubSpot",
        "Sync one customer from HubSpot now (every field HubSpot may write)",
        "sync",
        _SYNC_ANSWERS,
        writes=True,
    ),
    Route(
        "GET",
        f"{CUSTOMER}/status",
        handlers.customer_status,
        "getCustomerStatus",
        "Links, last sync times and every mapped field's state",
        "customers",
        _answers((200, models.CustomerStatus, "the customer's sync status"), _BAD, _MISSING),
    ),
    Route(
        "GET",
        f"{CUSTOMER}/logs",
        handlers.customer_logs,
        "getCustomerLogs",
        "The customer's sync log, newest first",
        "customers",
        _answers((200, models.LogPage, "one page of log entries"), _BAD, _MISSING),
        query=models.LogQuery,
    ),
    Route(
        "GET",
        f"{CUSTOMER}/conflicts",
        handlers.customer_conflicts,
        "getCustomerConflicts",
        "Fields in conflict: both current values and times, the rule, since when",
        "customers",
        _answers(
            (200, models.ConflictList, "the open conflicts"),
            _BAD,
            _MISSING,
            _HUBSPOT,
        ),
    ),
    Route(
        "POST",
        f"{CUSTOMER}/resolve-conflict",
        handlers.resolve_conflict,
        "resolveConflict",
        "Settle one field's conflict with WARP's, HubSpot's or a given value",
        "customers",
        _answers(
            (200, models.ResolveConflictResult, "the value written and where"),
            _BAD,
            _MISSING,
            {409: (_E, f"the field is not in conflict, the customer is not linked, or {_PAUSED}")},
            {413: (_E, "body too large")},
            _HUBSPOT,
        ),
        body=models.ResolveConflictRequest,
        writes=True,
    ),
    Route(
        "GET",
        f"{PREFIX}/customers",
        handlers.list_customers,
        "listCustomers",
        "Customers by sync state (in_conflict, failed, unlinked, pending, in_sync), "
        "with counts per state and what is wrong; paged",
        "customers",
        _answers((200, models.CustomerPage, "one page of customers, ordered by id"), _BAD),
        query=models.CustomerListQuery,
    ),
    Route(
        "GET",
        f"{PREFIX}/changes",
        handlers.list_changes,
        "listChanges",
        "The change feed: every field that crossed, old and new value (sealed values "
        "stay sealed), the rule that decided and why; newest first, paged",
        "customers",
        _answers(
            (200, models.ChangePage, "one page of changes"),
            _BAD,
            {404: (_E, "no customer with that BAN")},
        ),
        query=models.ChangeQuery,
    ),
    Route(
        "POST",
        f"{PREFIX}/reconcile",
        handlers.start_reconcile,
        "startReconcile",
        "Start a reconciliation run (one customer inline, all as a task)",
        "reconciliation",
        _answers(
            (202, models.ReconcileStarted, "the run, carried on by a task"),
            {200: (models.ReconcileStarted, "the run, finished within the call")},
            _BAD,
            {404: (_E, "no such customer")},
            {409: (_E, f"a FULL run is already running (use force), or {_PAUSED}")},
            {413: (_E, "body too large")},
            _HUBSPOT,
        ),
        body=models.ReconcileRequest,
    ),
    Route(
        "GET",
        f"{PREFIX}/reconciliation-runs",
        handlers.list_runs,
        "listReconciliationRuns",
        "Reconciliation runs with their counts, newest first",
        "reconciliation",
        _answers((200, models.RunList, "the runs"), _BAD),
        query=models.RunQuery,
    ),
    Route(
        "GET",
        f"{PREFIX}/reconciliation-runs/{{id}}",
        handlers.get_run,
        "getReconciliationRun",
        "One reconciliation run and its report",
        "reconciliation",
        _answers((200, models.RunDetail, "the run"), _BAD, {404: (_E, "no such run")}),
    ),
    Route(
        "GET",
        f"{PREFIX}/queue",
        handlers.list_queue,
        "listQueue",
        "Pending and failed work with its errors",
        "queue",
        _answers(
            (200, models.QueueList, "queue items, newest first"),
            _BAD,
            {404: (_E, "no customer with that BAN")},
        ),
        query=models.QueueQuery,
    ),
    Route(
        "POST",
        f"{PREFIX}/queue/{{id}}/replay",
        handlers.replay_queue_item,
        "replayQueueItem",
        "Queue a failed item again (idempotent)",
        "queue",
        _answers(
            (202, models.ReplayResult, "re-queued and handed to the retry worker"),
            {200: (models.ReplayResult, "already queued or running: nothing changed")},
            _BAD,
            {404: (_E, "no such queue item")},
            {409: (_E, "the item completed; it is not run again")},
        ),
    ),
    Route(
        "POST",
        f"{PREFIX}/queue/replay",
        handlers.replay_queue_items,
        "replayQueueItems",
        "Queue again every row a filter matches (status, kind, error text, customer, age); "
        "idempotent: a row already queued is left alone",
        "queue",
        _answers(
            (200, models.BulkReplayResult, "what the filter matched and what was queued"),
            _BAD,
            {404: (_E, "no customer with that BAN")},
            {413: (_E, "body too large")},
        ),
        body=models.BulkReplayRequest,
    ),
    Route(
        "POST",
        f"{PREFIX}/pause",
        handlers.pause_sync,
        "pauseSync",
        "Stop every write to WARP and HubSpot; webhooks and change messages are still "
        "stored and deduplicated (idempotent)",
        "operations",
        _answers((200, models.PauseResult, "paused"), _BAD, {413: (_E, "body too large")}),
        body=models.PauseRequest,
    ),
    Route(
        "POST",
        f"{PREFIX}/resume",
        handlers.resume_sync,
        "resumeSync",
        "Clear the pause and drain what waited, in order (idempotent)",
        "operations",
        _answers((200, models.ResumeResult, "resumed; the work handed on")),
    ),
    Route(
        "GET",
        "/metrics",
        metrics,
        "getMetrics",
        "Prometheus metrics computed from the database",
        "metrics",
        _METRICS_ANSWERS,
        auth="metrics",
        media_type="text/plain",
    ),
    Route(
        "GET",
        f"{PREFIX}/metrics",
        metrics,
        "getMetricsUnderPrefix",
        "The same metrics under the API prefix",
        "metrics",
        _METRICS_ANSWERS,
        auth="metrics",
        media_type="text/plain",
    ),
    Route(
        "GET",
        f"{PREFIX}/openapi.json",
        openapi_document,
        "getOpenApiDocument",
        "This document",
        "meta",
        {200: (None, "the OpenAPI 3.1 document"), **_AUTH},
    ),
    Route(
        "GET",
        CONSOLE_PATH,
        console_page,
        "getConsole",
        "The operator console: a page that asks for the API token and acts through this API",
        "meta",
        {200: (None, "the console's HTML page")},
        auth="page",
        media_type="text/html",
    ),
)


# --- the router -----------------------------------------------------------------------


def dispatch(
    request: flask.Request, engine: Callable[[], Engine], routes: tuple[Route, ...] = ROUTES
) -> flask.Response:
    """Answer one request from the route table with the adapter's engine.

    ``engine`` is called once a route matched: a request for no route is answered
    without one, as an engine whose settings are incomplete cannot be built.
    """
    try:
        return _dispatch(request, engine, routes)
    except ApiError as exc:
        details: dict[str, Any] = {}
        if exc.field is not None:
            details["field"] = exc.field
        if exc.retryable is not None:
            details["retryable"] = exc.retryable
        response = error_response(exc.status, exc.message, **details)
        for key, value in exc.headers.items():
            response.headers[key] = value
        return response
    except pause.SyncPaused as exc:
        return error_response(409, str(exc), retryable=True)
    except NotConfigured as exc:
        log.error("sync_api refuses every call: %s", exc)
        return error_response(503, str(exc), retryable=False)


def _dispatch(
    request: flask.Request, engine_of: Callable[[], Engine], routes: tuple[Route, ...]
) -> flask.Response:
    parts = tuple(request.path.rstrip("/").strip("/").split("/"))
    candidates = [(route, params) for route in routes if (params := route.match(parts)) is not None]
    if not candidates:
        raise ApiError(404, f"no route {request.path}")
    found = next(((r, p) for r, p in candidates if r.method == request.method), None)
    if found is None:
        allowed = ", ".join(sorted({r.method for r, _ in candidates}))
        raise ApiError(
            405, f"{request.method} not allowed on {request.path}", headers={"Allow": allowed}
        )
    route, raw_params = found
    headers = dict(request.headers)
    engine = engine_of()
    if route.auth == "page":
        caller = Caller("open")
    elif route.auth == "metrics":
        caller = authenticate_metrics(headers, engine.settings)
    else:
        caller = authenticate(headers, engine.settings)
    try:
        user = acting_user(headers, caller)
    except ValueError as exc:
        raise ApiError(400, str(exc), field="X-Triggered-By-User") from None
    path = {
        name: handlers.customer_ref(engine.database, value, field=name)
        if route.takes_customer
        else _uuid(name, value)
        for name, value in raw_params.items()
    }
    bind(**{f"path_{k}": v for k, v in path.items()})
    call = Call(
        engine=engine,
        caller=caller,
        user=user,
        path=path,
        query=_validate(route.query, _query_args(request)) if route.query else None,
        body=_validate(route.body, _body(request)) if route.body else None,
    )
    if route.writes:
        pause.check(engine)
    reply = route.handler(call)
    if isinstance(reply, flask.Response):
        return reply
    status, model = reply
    return json_response(model.model_dump(mode="json"), status)


def _uuid(name: str, value: str) -> str:
    try:
        return str(UUID(value))
    except ValueError:
        raise ApiError(400, f"{name} {value!r} is not a UUID", field=name) from None


def _query_args(request: flask.Request) -> dict[str, str]:
    args: dict[str, str] = {}
    for key in request.args:
        values = request.args.getlist(key)
        if len(values) > 1:
            raise ApiError(400, f"query parameter {key} given more than once", field=key)
        args[key] = values[0]
    return args


def _body(request: flask.Request) -> Any:
    try:
        body = read_json(request, if_empty={})
    except BadRequest as exc:
        raise ApiError(exc.status, str(exc)) from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _validate(model: type[BaseModel], data: Mapping[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _bad_input(exc, model) from None


def _bad_input(exc: ValidationError, model: type[BaseModel]) -> ApiError:
    """A 400 naming the first field at fault (a whole-model check names its field first)."""
    error = exc.errors()[0]
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    loc = [str(p) for p in error.get("loc", ())]
    name = loc[0] if loc else message.split(" ", 1)[0]
    if name not in model.model_fields and error.get("type") != "extra_forbidden":
        name = "body"
    if error.get("type") == "extra_forbidden":
        message = "not a known field"
    return ApiError(400, f"{'.'.join(loc) or name}: {message}", field=name)
