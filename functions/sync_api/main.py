"""Cloud Function ``sync_api``: the management API (routes in ``shared/api/routes.py``)."""

from __future__ import annotations

from shared.memory import cold_start

with cold_start():
    import flask
    import functions_framework

    from shared.api.routes import MAX_BODY_BYTES, dispatch
    from shared.engine.edge import get_engine
    from shared.web import http_function


@functions_framework.http
@http_function("sync_api", max_body_bytes=MAX_BODY_BYTES)
def sync_api(request: flask.Request) -> flask.Response:
    """Answer one management API request (auth, routing and validation in ``dispatch``)."""
    return dispatch(request, get_engine)
