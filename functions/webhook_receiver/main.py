"""Cloud Function ``webhook_receiver``: HubSpot's webhook deliveries, at any path.

A thin adapter: a source that keeps failing the signature check gets 429 unread
(``shared.inbound.gate``); otherwise it reads the raw request (``read_body``: a
declared oversized body is refused unread, any other read at most to the cap plus
one byte), verifies it with the settings alone (``verify_delivery``: no database
work before the signature passed) and hands it to
``shared.inbound.webhook.handle_delivery``, which stores, processes and hands off.
Errors become answers through ``http_function`` (401 for signatures, 503 for
retryable failures) and ``DeliveryRejected`` (400/413).
"""

from __future__ import annotations

from shared.memory import cold_start

with cold_start():
    import math
    import time

    import flask
    import functions_framework

    from shared.engine.edge import get_engine
    from shared.inbound.gate import get_gate, source_of
    from shared.inbound.verify import SignatureRejected, raw_target
    from shared.inbound.webhook import (
        Delivery,
        DeliveryRejected,
        handle_delivery,
        verify_delivery,
    )
    from shared.web import error_response, http_function, json_response, read_body


def _max_body_bytes() -> int:
    return get_engine().settings.webhook_max_body_bytes


@functions_framework.http
@http_function("webhook_receiver", max_body_bytes=_max_body_bytes)
def webhook_receiver(request: flask.Request) -> flask.Response:
    """Receive one batch of HubSpot events."""
    started = time.monotonic()
    if request.method != "POST":
        return error_response(405, "HubSpot delivers webhooks with POST")
    engine = get_engine()  # built without I/O: no connection is taken before verification
    settings = engine.settings
    gate = get_gate(
        settings.webhook_source_failure_limit, settings.webhook_source_failure_window_seconds
    )
    source = source_of(request.headers, request.remote_addr)
    wait = gate.retry_after(source)
    if wait is not None:
        return json_response(
            {"error": "too many requests with bad signatures from this source"},
            429,
            {"Retry-After": str(math.ceil(wait))},
        )
    delivery = Delivery(
        method=request.method,
        target=raw_target(request.environ, request.path, request.query_string),
        host_url=request.host_url,
        headers=request.headers,
        body=read_body(request),
        started=started,
    )
    try:
        try:
            verified = verify_delivery(settings, delivery)
        except SignatureRejected:
            gate.failed(source)  # answered 401 by http_function
            raise
        return json_response(handle_delivery(engine, verified))
    except DeliveryRejected as exc:
        return error_response(exc.status, str(exc))
