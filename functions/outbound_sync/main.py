"""Cloud Function ``outbound_sync``: WARP's change messages, pushed by Pub/Sub.

A thin adapter behind a Pub/Sub push subscription with an OIDC token (a
CloudEvent delivery is read too). It checks the caller, reads the body (at most
1 MiB) and hands it to ``shared.outbound.receive``. Every outcome it returns is
acknowledged with 200, a poison message included; a retryable failure (database,
task creation, another instance holding the message) answers 503 through
``http_function`` and Pub/Sub redelivers.
"""

from __future__ import annotations

from shared.memory import cold_start

with cold_start():
    import flask
    import functions_framework

    from shared.auth import authorize_internal_caller
    from shared.engine.edge import get_engine
    from shared.outbound import receive
    from shared.web import error_response, http_function, json_response, read_body


MAX_BODY_BYTES = 1_048_576  # a Pub/Sub push of a change message is a few hundred bytes


@functions_framework.http
@http_function("outbound_sync", max_body_bytes=MAX_BODY_BYTES)
def outbound_sync(request: flask.Request) -> flask.Response:
    """Take one change message off the subscription."""
    if request.method != "POST":
        return error_response(405, "Pub/Sub pushes with POST")
    engine = get_engine()
    authorize_internal_caller(request.headers, engine.settings)
    body = read_body(request)
    receipt = receive(engine, body, dict(request.headers))
    return json_response(receipt.as_dict())
