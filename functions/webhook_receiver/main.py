"""Cloud Function ``webhook_receiver``: HubSpot's webhook deliveries, at any path.

A thin adapter: it reads the raw request (``read_body``: a declared oversized body
is refused unread, any other read at most to the cap plus one byte) and hands it to
``shared.inbound.webhook.handle_delivery``, which verifies, stores, processes and
hands off. Errors become answers through ``http_function`` (401 for signatures,
503 for retryable failures) and ``DeliveryRejected`` (400/413).
"""

from __future__ import annotations

from shared.memory import cold_start

with cold_start():
    import time

    import flask
    import functions_framework

    from shared.engine import get_engine
    from shared.inbound.verify import raw_target
    from shared.inbound.webhook import Delivery, DeliveryRejected, handle_delivery
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
    engine = get_engine()
    delivery = Delivery(
        method=request.method,
        target=raw_target(request.environ, request.path, request.query_string),
        host_url=request.host_url,
        headers=request.headers,
        body=read_body(request),
        started=started,
    )
    try:
        return json_response(handle_delivery(engine, delivery))
    except DeliveryRejected as exc:
        return error_response(exc.status, str(exc))
