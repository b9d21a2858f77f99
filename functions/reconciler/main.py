"""Cloud Function ``reconciler``: a reconciliation run, nightly from Cloud Scheduler or on demand.

A thin adapter over ``shared.reconcile``. Body ``{run_type, entity_type, customer_id?,
dry_run?, force?}`` (all optional: a FULL run of every customer). Cloud Scheduler's
``X-CloudScheduler-ScheduleTime`` header becomes the run's idempotency key, so a
retried call finds the run the first call started instead of starting another.
The function works for ``RECONCILE_TIME_BUDGET_SECONDS`` and hands the rest to
``reconcile_continue`` tasks, so it always answers before Scheduler's deadline:
200 with the finished run, 202 while tasks continue it, 409 while another FULL
run is running (``force`` starts one anyway).

Before the run it sweeps stored webhook events left unprocessed (their task lost)
for a tenth of the budget (``shared.inbound.process.process_pending``); the answer
carries what the sweep did as ``stranded_events``.
"""

from __future__ import annotations

from shared.memory import cold_start

with cold_start():
    import time

    import flask
    import functions_framework

    from shared.auth import authorize_internal_caller
    from shared.engine.edge import get_engine
    from shared.engine.gauges import emit_gauges
    from shared.inbound.process import process_pending
    from shared.pause import SyncPaused
    from shared.reconcile import (
        InvalidRunRequest,
        RunInProgress,
        RunRequest,
        UnknownCustomer,
        describe_run,
        start_run,
    )
    from shared.web import error_response, http_function, json_response, read_json


MAX_BODY_BYTES = 16_384


@functions_framework.http
@http_function("reconciler", max_body_bytes=MAX_BODY_BYTES)
def reconciler(request: flask.Request) -> flask.Response:
    """Start (or find) a reconciliation run and work on it within the time budget."""
    if request.method != "POST":
        return error_response(405, "use POST")
    engine = get_engine()
    authorize_internal_caller(request.headers, engine.settings)
    body = read_json(request, if_empty={})
    schedule_time = request.headers.get("X-CloudScheduler-ScheduleTime")
    try:
        run_request = RunRequest.from_body(
            body,
            idempotency_key=f"scheduler:{schedule_time}" if schedule_time else None,
            triggered_by="scheduler" if schedule_time else "api",
        )
    except InvalidRunRequest as exc:
        return error_response(400, str(exc))
    budget = engine.settings.reconcile_time_budget_seconds
    started = time.monotonic()
    # A dry run writes nothing, so it leaves the stranded events to the next real run.
    swept = None if run_request.dry_run else process_pending(engine, deadline=started + budget / 10)
    try:
        result = start_run(
            engine, run_request, budget_seconds=budget - (time.monotonic() - started)
        )
    except UnknownCustomer as exc:
        # Retrying cannot create the customer: a 404, which Scheduler gives up on.
        return error_response(404, str(exc), field="customer_id")
    except RunInProgress as exc:
        return error_response(409, str(exc), run_id=exc.run_id)
    except SyncPaused as exc:
        # Not a failure to retry: tonight's run is skipped; resume, then reconcile.
        return error_response(409, str(exc), paused=True)
    emit_gauges(engine)
    status = 202 if result.status == "RUNNING" else 200
    answer = {
        "started": result.started,
        "run": describe_run(result.run),
        "stranded_events": swept.as_dict() if swept else None,
    }
    return json_response(answer, status)
