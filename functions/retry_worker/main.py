"""Cloud Function ``retry_worker``: deferred work delivered by Cloud Tasks.

A thin adapter: only its OIDC caller (the Cloud Tasks service account) may call
it in production. The body is ``{"kind": ..., "payload": {...}}``; the attempt is
``X-CloudTasks-TaskRetryCount`` (0 on the first delivery). The answer tells Cloud
Tasks what to do: 200 done or failed for good (the queue row is the dead letter),
503 try again later with the queue's backoff.
"""

from __future__ import annotations

from shared.memory import cold_start

with cold_start():
    import flask
    import functions_framework

    from shared.auth import authorize_internal_caller
    from shared.engine.edge import get_engine
    from shared.engine.gauges import emit_gauges
    from shared.retry import handle_task
    from shared.web import error_response, http_function, json_response, read_json


MAX_BODY_BYTES = 102_400  # Cloud Tasks' task size limit


@functions_framework.http
@http_function("retry_worker", max_body_bytes=MAX_BODY_BYTES)
def retry_worker(request: flask.Request) -> flask.Response:
    """Run one task."""
    if request.method != "POST":
        return error_response(405, "Cloud Tasks calls with POST")
    engine = get_engine()
    authorize_internal_caller(request.headers, engine.settings)
    body = read_json(request)
    attempt = _attempt(request.headers.get("X-CloudTasks-TaskRetryCount"))
    status, answer = handle_task(engine, body, attempt)
    emit_gauges(engine)
    return json_response(answer, status)


def _attempt(header: str | None) -> int:
    try:
        return max(0, int(header or 0))
    except ValueError:
        return 0
