"""Starting, continuing and finishing reconciliation runs.

A run is a ``hubspot_reconciliation_runs`` row whose ``checkpoint`` says which
phase it is in, the last key it finished and its report so far. Each page is
committed together with the next checkpoint, so a run that stops anywhere
(time budget, crash, deploy) resumes from the last committed page:

- the invocation that starts a run works until its time budget, then submits a
  ``reconcile_continue`` task (Cloud Tasks, or the in-process stand-in) and
  answers; each task does the same until the run is done;
- a retryable failure (HubSpot down, rate limit beyond the client's wait)
  schedules the continuation after a backoff; after ``RETRY_MAX_ATTEMPTS``
  failures without progress the run is FAILED with the error;
- a run whose heartbeat went silent (its worker died) is resumed from its
  checkpoint, or marked FAILED once it is older than :data:`MAX_RUN_AGE`.

A trigger carrying an idempotency key (Cloud Scheduler's schedule time) starts
one run however often it is delivered. Only one FULL run runs at a time unless
``force``: a transaction-level advisory lock makes "is one running? then start"
atomic across instances.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, assert_never

from shared import pause
from shared.db import Row, Session
from shared.db.repositories import customers, field_state, reconciliation_runs
from shared.engine.deps import Engine
from shared.engine.sync import CustomerSync
from shared.errors import SyncError, first_problem, retry_after
from shared.hubspot import SEARCH_PAGE_MAX
from shared.links import linked_id
from shared.mapping import EntityType
from shared.observability.redaction import describe_error
from shared.reconcile import queries
from shared.reconcile.checkpoint import Checkpoint, HubSpotCursor, HubSpotCursors, Phase
from shared.reconcile.incremental import changed_in_hubspot, since
from shared.reconcile.pages import PAGE, match_unlinked, sync_page
from shared.reconcile.report import SAMPLE_LIMIT, DriftReport
from shared.reconcile.request import ReconcileRequest
from shared.tasks import Task, TaskOutcome, backoff_delay, task_name
from shared.tasks.kinds import ReconcileContinuePayload  # (importing it registers every kind)

log = logging.getLogger("warp_hubspot_sync.reconcile")

TASK_KIND = "reconcile_continue"
RUN_TYPES = ("FULL", "INCREMENTAL", "CUSTOMER_SPECIFIC")
# "customer": the whole customer (its company and its primary contact); "contact": contact fields.
ENTITY_TYPES = ("customer", "contact")
MAX_RUN_AGE = timedelta(hours=24)  # a silent run older than this is FAILED, not resumed
_FULL_LOCK = 8_410_006  # advisory lock key: starting a FULL run

PHASES = {
    "FULL": (Phase.LINKED, Phase.UNLINKED),
    "INCREMENTAL": (Phase.WARP, Phase.HUBSPOT),
    "CUSTOMER_SPECIFIC": (Phase.CUSTOMER,),
}
# What the "hubspot" phase searches, and the checkpoint's cursor per object type.
_HUBSPOT_TYPES: dict[str, EntityType] = {et.object_type: et for et in EntityType}

Progress = Callable[[int, int | None], None]  # (records done, records expected or None)
Outcomes = Callable[[Sequence[CustomerSync]], None]  # each page's outcomes, as they come


class InvalidRunRequest(SyncError):
    """The request names no valid run (the caller's mistake: 400)."""


class UnknownCustomer(SyncError):
    """A CUSTOMER_SPECIFIC run names a customer WARP does not have (404); never retried."""

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"customer {customer_id} not found")
        self.customer_id = customer_id


class RunInProgress(SyncError):
    """A FULL run is already running (409); pass ``force`` to start another anyway."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"reconciliation run {run_id} is already running; use force to start another"
        )
        self.run_id = run_id


@dataclass(frozen=True)
class RunRequest:
    """What to reconcile. ``idempotency_key``: one run per key (Scheduler's schedule time)."""

    run_type: str = "FULL"
    entity_type: str = "customer"
    customer_id: str | None = None
    dry_run: bool = False
    force: bool = False
    idempotency_key: str | None = None
    triggered_by: str = "manual"

    @classmethod
    def from_body(
        cls, body: Any, *, idempotency_key: str | None = None, triggered_by: str = "api"
    ) -> RunRequest:
        """Read a reconciliation body (:class:`ReconcileRequest`); problems raise 400."""
        from pydantic import ValidationError

        try:
            parsed = ReconcileRequest.model_validate({} if body is None else body)
        except ValidationError as exc:
            raise InvalidRunRequest(first_problem(exc)) from None
        return cls.from_model(parsed, idempotency_key=idempotency_key, triggered_by=triggered_by)

    @classmethod
    def from_model(
        cls, body: ReconcileRequest, *, idempotency_key: str | None = None, triggered_by: str
    ) -> RunRequest:
        """The run a validated body asks for (CUSTOMER_SPECIFIC with a customer, else FULL)."""
        customer_id = str(body.customer_id) if body.customer_id else None
        return cls(
            run_type=body.run_type or ("CUSTOMER_SPECIFIC" if customer_id else "FULL"),
            entity_type=body.entity_type.value,
            customer_id=customer_id,
            dry_run=body.dry_run,
            force=body.force,
            idempotency_key=idempotency_key,
            triggered_by=triggered_by,
        )

    def validate(self) -> None:
        """Raise :class:`InvalidRunRequest` naming what is wrong."""
        if self.run_type not in RUN_TYPES:
            raise InvalidRunRequest(f"run_type must be one of {', '.join(RUN_TYPES)}")
        if self.entity_type not in ENTITY_TYPES:
            raise InvalidRunRequest(f"entity_type must be one of {', '.join(ENTITY_TYPES)}")
        if (self.run_type == "CUSTOMER_SPECIFIC") != (self.customer_id is not None):
            raise InvalidRunRequest("customer_id is required for, and only for, CUSTOMER_SPECIFIC")
        if self.customer_id is not None:
            from uuid import UUID

            try:
                UUID(self.customer_id)
            except ValueError:
                raise InvalidRunRequest("customer_id must be a UUID") from None


@dataclass
class RunResult:
    """Where a run stands after this call."""

    run: Row
    started: bool = True  # False: this trigger had started the run before
    continued: bool = False  # handed to a continuation task
    error: SyncError | None = None  # what ended a foreground run FAILED

    @property
    def status(self) -> str:
        return str(self.run["status"])

    @property
    def report(self) -> dict[str, Any]:
        """The final report, or the report so far of a running run."""
        if self.run.get("report"):
            return dict(self.run["report"])
        return dict(Checkpoint.of(self.run).report)


@dataclass
class _Step:
    """The checkpoint being written by one page, saved once in the page's transaction."""

    run_id: str
    state: Checkpoint
    report: DriftReport
    expected_seq: int
    saved: bool = field(default=False)

    def save(self, tx: Session) -> None:
        state = replace(self.state, report=self.report.to_json())
        expected = self.expected_seq + 1 if self.saved else self.expected_seq
        if not queries.save_checkpoint(
            tx, self.run_id, state.to_json(), self.report.run_counts(), expected_seq=expected
        ):
            raise _TakenOver()
        self.saved = True


class _TakenOver(Exception):
    """Another worker moved the run on (or it was cancelled): this one stops."""


# --- starting -------------------------------------------------------------------------


def start_run(
    engine: Engine,
    request: RunRequest,
    *,
    budget_seconds: float | None = None,
    progress: Progress | None = None,
    foreground: bool = False,
    on_outcomes: Outcomes | None = None,
) -> RunResult:
    """Start a run (or find the one this trigger started) and work on it for ``budget_seconds``.

    None as budget works to the end (the CLI). ``foreground``: a person waits for
    this run in this process (the CLI), so a failure ends it FAILED at once, with the
    error in :attr:`RunResult.error`, instead of a continuation task that would
    outlive the process. Raises :class:`RunInProgress` for a
    second FULL run without ``force``, :class:`InvalidRunRequest` for a bad one and
    :class:`UnknownCustomer` for a customer WARP does not have.
    """
    request.validate()
    if not request.dry_run:  # a dry run writes nothing, so it may look while paused
        pause.check(engine)
    recover_stale(engine)
    with engine.database.transaction() as tx:
        if request.idempotency_key:
            existing = queries.by_idempotency_key(tx, request.idempotency_key)
            if existing is not None:
                return RunResult(existing, started=False)
        if request.customer_id is not None and customers.get(tx, request.customer_id) is None:
            raise UnknownCustomer(request.customer_id)
        if request.run_type == "FULL":
            tx.fetch_value("SELECT pg_advisory_xact_lock(:key)", {"key": _FULL_LOCK})
            running = None if request.force else queries.running_full(tx)
            if running is not None:
                raise RunInProgress(str(running["id"]))
        state = _initial_state(engine, tx, request)
        row, new = reconciliation_runs.start(
            tx,
            run_type=request.run_type,
            entity_type=request.entity_type,
            customer_id=request.customer_id,
            triggered_by=request.triggered_by,
            dry_run=request.dry_run,
            idempotency_key=request.idempotency_key,
        )
        if not new:
            return RunResult(row, started=False)
        reconciliation_runs.checkpoint(tx, str(row["id"]), state.to_json())
    log.info(
        "reconciliation started",
        extra={
            "fields": {
                "run_id": str(row["id"]),
                "run_type": request.run_type,
                "dry_run": request.dry_run,
                "phases": list(state.phases),
            }
        },
    )
    return advance(
        engine,
        str(row["id"]),
        budget_seconds=budget_seconds,
        progress=progress,
        foreground=foreground,
        on_outcomes=on_outcomes,
    )


def _initial_state(engine: Engine, tx: Session, request: RunRequest) -> Checkpoint:
    report = DriftReport(dry_run=request.dry_run)
    phases = PHASES[request.run_type]
    since_at: datetime | None = None
    if request.run_type == "INCREMENTAL":
        last = queries.last_completed(tx, request.entity_type)
        if last is None:
            phases = PHASES["FULL"]
            report.notes.append("no completed run before: checked every linked customer")
        else:
            since_at = since(last["started_at"], engine.settings.reconcile_overlap_seconds)
            report.notes.append(f"changes since {since_at.isoformat()}")
    # What the progress counts (records checked plus customers without a company), so a
    # bar knows its end from the start; an incremental run cannot know it in advance.
    total: int | None = None
    if phases[0] is Phase.LINKED:
        total = queries.count_linked(tx)
        if Phase.UNLINKED in phases:
            total += queries.count_unlinked(tx)
    elif phases[0] is Phase.CUSTOMER:
        total = 1
    fields = None
    if request.entity_type == "contact":
        fields = tuple(sorted(engine.mapping_for(None, EntityType.CONTACT).fields))
    return Checkpoint(
        phases=phases,
        since=since_at,
        total=total,
        fields=fields,
        customer_id=request.customer_id,
        dry_run=request.dry_run,
        report=report.to_json(),
    )


# --- working --------------------------------------------------------------------------


def advance(
    engine: Engine,
    run_id: str,
    *,
    budget_seconds: float | None,
    progress: Progress | None = None,
    failures: int = 0,
    foreground: bool = False,
    on_outcomes: Outcomes | None = None,
) -> RunResult:
    """Work on a RUNNING run page by page until it is done or the budget is spent.

    A retryable failure schedules the continuation after a backoff (the run keeps
    its checkpoint), unless ``foreground``; other failures mark the run FAILED with
    the error.
    """
    began = time.monotonic()
    row = _load(engine, run_id)
    first_seq = _seq(row)
    if progress is not None:
        _report_progress(row, progress)
    while row["status"] == "RUNNING":
        state = Checkpoint.of(row)
        if state.phase is None:
            return RunResult(_finish(engine, row, state))
        if budget_seconds is not None and time.monotonic() - began >= budget_seconds:
            _continue_later(engine, run_id, state.seq, failures=0, delay=0.0)
            return RunResult(row, continued=True)
        try:
            _step(engine, row, state, state.phase, on_outcomes)
        except _TakenOver:
            log.info("run moved on elsewhere; stopping", extra={"fields": {"run_id": run_id}})
            return RunResult(_load(engine, run_id), continued=True)
        except SyncError as exc:
            if foreground:
                return RunResult(_fail(engine, run_id, describe_error(exc)), error=exc)
            return _failed_step(engine, run_id, exc, failures if _seq(row) == first_seq else 0)
        except Exception as exc:
            _fail(engine, run_id, f"unexpected {type(exc).__name__}")
            raise
        row = _load(engine, run_id)
        if progress is not None:
            _report_progress(row, progress)
    return RunResult(row)


def _report_progress(row: Row, progress: Progress) -> None:
    checkpoint = Checkpoint.of(row)
    report = DriftReport.from_json(checkpoint.report)
    done = report.total + int(report.unlinked["count"])
    total = checkpoint.total
    # Customers created while the run pages through them can add to the count taken
    # at its start: the end moves out, the bar never runs past it.
    progress(done, None if total is None else max(total, done))


def _step(
    engine: Engine,
    row: Row,
    state: Checkpoint,
    phase: Phase,
    on_outcomes: Outcomes | None = None,
) -> None:
    """Process the next page of the run's current phase and save the checkpoint with it."""
    run_id = str(row["id"])
    report = DriftReport.from_json(state.report)
    step = _Step(run_id, replace(state, seq=state.seq + 1), report, _seq(row))
    dry_run = state.dry_run
    fields = state.fields
    after = state.after if isinstance(state.after, str) else None

    def move_on(after: str | HubSpotCursors | None) -> None:
        step.state = replace(step.state, after=after)

    def next_phase() -> None:
        step.state = replace(step.state, phase_index=state.phase_index + 1, after=None)

    if phase is Phase.LINKED or phase is Phase.WARP:
        with engine.database.transaction() as tx:
            changed_since = _since(state) if phase is Phase.WARP else None
            window = engine.settings.reconcile_window
            ids = queries.page_linked_ids(tx, after, window, changed_since=changed_since)
        if not ids:
            next_phase()
        else:
            move_on(ids[-1])
            sync_page(
                engine,
                ids,
                report,
                dry_run=dry_run,
                fields=fields,
                save=step.save,
                on_outcomes=on_outcomes,
            )
    elif phase is Phase.HUBSPOT:
        # One page of each object type's changes, their customers synced together.
        cursors = (
            dict(state.after)
            if isinstance(state.after, dict)
            else {t: HubSpotCursor() for t in _HUBSPOT_TYPES}
        )
        changed: dict[str, list[str]] = {}
        for object_type, entity_type in _HUBSPOT_TYPES.items():
            cursor = cursors[object_type]
            if cursor.done:
                continue
            page = changed_in_hubspot(
                engine, entity_type, _since(state), cursor.after, SEARCH_PAGE_MAX
            )
            changed[object_type] = page.ids
            cursors[object_type] = HubSpotCursor(
                after=page.ids[-1] if page.ids else cursor.after,
                done=page.last or not page.ids,
            )
        move_on(cursors)
        if all(cursor.done for cursor in cursors.values()):
            next_phase()
        with engine.database.transaction() as tx:
            ids = [
                cid
                for object_type, object_ids in changed.items()
                for cid in queries.customers_linked_to(
                    tx, _HUBSPOT_TYPES[object_type], object_ids, changed_before=_since(state)
                )
            ]
        if ids:
            unique = list(dict.fromkeys(ids))
            sync_page(
                engine,
                unique,
                report,
                dry_run=dry_run,
                fields=fields,
                save=step.save,
                on_outcomes=on_outcomes,
            )
    elif phase is Phase.UNLINKED:
        with engine.database.transaction() as tx:
            rows = customers.page_unlinked(tx, after, PAGE)
        if not rows:
            next_phase()
        else:
            move_on(str(rows[-1]["id"]))
            match_unlinked(engine, rows, report)
    elif phase is Phase.CUSTOMER:
        next_phase()
        customer_id = str(state.customer_id)
        with engine.database.transaction() as tx:
            customer = customers.get(tx, customer_id)
        if customer is None:
            report.add_error(customer_id, "customer not found")
        elif linked_id(customer, EntityType.CUSTOMER) is None:
            match_unlinked(engine, [customer], report)
        else:
            sync_page(
                engine,
                [customer_id],
                report,
                dry_run=dry_run,
                fields=fields,
                save=step.save,
                on_outcomes=on_outcomes,
            )
    else:
        assert_never(phase)
    if not step.saved:
        with engine.database.transaction() as tx:
            step.save(tx)


def _failed_step(engine: Engine, run_id: str, exc: SyncError, failures: int) -> RunResult:
    attempts = failures + 1
    if exc.retryable and attempts < engine.settings.retry_max_attempts:
        delay = backoff_delay(
            attempts, base=engine.settings.retry_base_seconds, cap=engine.settings.retry_cap_seconds
        )
        wait = retry_after(exc)
        if wait is not None:
            delay = max(delay, wait)
        log.warning(
            "reconciliation page failed; continuing later",
            extra={
                "fields": {
                    "run_id": run_id,
                    "attempt": attempts,
                    "delay_s": round(delay, 2),
                    "error_type": type(exc).__name__,
                }
            },
        )
        row = _load(engine, run_id)
        _continue_later(engine, run_id, _seq(row), failures=attempts, delay=delay)
        return RunResult(row, continued=True)
    return RunResult(_fail(engine, run_id, describe_error(exc)))


def _continue_later(
    engine: Engine,
    run_id: str,
    seq: int,
    *,
    failures: int,
    delay: float,
    nonce: str = "",
) -> None:
    payload = {"run_id": run_id, "seq": seq, "failures": failures}
    name = task_name("reconcile", run_id, seq, failures, nonce)
    engine.submit(Task(TASK_KIND, payload, delay_seconds=delay, name=name))
    with engine.database.transaction() as tx:
        reconciliation_runs.heartbeat(tx, run_id)


def _finish(engine: Engine, row: Row, state: Checkpoint) -> Row:
    run_id = str(row["id"])
    report = DriftReport.from_json(state.report)
    with engine.database.transaction() as tx:
        customer_id = state.customer_id
        samples = field_state.open_conflicts(tx, customer_id, limit=SAMPLE_LIMIT)
        total = (
            len(field_state.open_conflicts(tx, customer_id, limit=10_000))
            if customer_id
            else field_state.count_open_conflicts(tx)
        )
        report.set_open_conflicts(
            total,
            [
                {
                    "customer_id": str(s["entity_id"]),
                    "entity_type": s["entity_type"],
                    "field_name": s["field_name"],
                    "rule": s.get("conflict_resolution"),
                    "since": s.get("conflict_detected_at"),
                }
                for s in samples
            ],
        )
        finished = reconciliation_runs.finish(
            tx, run_id, status="COMPLETED", counts=report.run_counts(), report=report.to_json()
        )
    assert finished is not None
    log.info(
        "reconciliation completed",
        extra={"fields": {"run_id": run_id, **report.run_counts(), "dry_run": report.dry_run}},
    )
    return finished


def _fail(engine: Engine, run_id: str, message: str) -> Row:
    with engine.database.transaction() as tx:
        row = reconciliation_runs.get(tx, run_id)
        report = DriftReport.from_json(Checkpoint.of(row).report)
        report.add_error(None, message)
        finished = reconciliation_runs.finish(
            tx,
            run_id,
            status="FAILED",
            counts=report.run_counts(),
            report=report.to_json(),
            notes=message,
        )
    log.error("reconciliation failed", extra={"fields": {"run_id": run_id, "error": message}})
    assert finished is not None
    return finished


# --- continuing and recovering --------------------------------------------------------


def continue_run(engine: Engine, payload: ReconcileContinuePayload, attempt: int) -> TaskOutcome:
    """Task handler of ``reconcile_continue``: work on the run for one more time budget."""
    run_id = str(payload.run_id)
    with engine.database.transaction() as tx:
        row = reconciliation_runs.get(tx, run_id)
    if row is None or row["status"] != "RUNNING":
        return TaskOutcome.DONE
    if payload.seq is not None and _seq(row) != payload.seq:
        return TaskOutcome.DONE  # another worker moved the run on; this task is stale
    result = advance(
        engine,
        run_id,
        budget_seconds=engine.settings.reconcile_time_budget_seconds,
        failures=payload.failures,
    )
    return TaskOutcome.FAILED if result.status == "FAILED" else TaskOutcome.DONE


def recover_stale(engine: Engine, *, silent_for_seconds: float | None = None) -> dict[str, str]:
    """Resume silent RUNNING runs from their checkpoints or fail old ones; ``{run_id: action}``."""
    silent = silent_for_seconds
    if silent is None:
        silent = engine.settings.reconcile_stale_seconds
    with engine.database.transaction() as tx:
        stale = reconciliation_runs.stale_running(tx, silent_for_seconds=silent)
    actions: dict[str, str] = {}
    now = datetime.now(UTC)
    for run in stale:
        run_id = str(run["id"])
        with engine.database.transaction() as tx:
            if not queries.claim_stale(tx, run_id, run["heartbeat_at"]):
                continue
        if run.get("checkpoint") and now - run["started_at"] < MAX_RUN_AGE:
            beat = run["heartbeat_at"].isoformat() if run["heartbeat_at"] else ""
            _continue_later(engine, run_id, _seq(run), failures=0, delay=0.0, nonce=beat)
            actions[run_id] = "resumed"
        else:
            _fail(engine, run_id, f"no heartbeat for over {int(silent)} s; abandoned")
            actions[run_id] = "failed"
        log.warning(
            "silent reconciliation run recovered",
            extra={"fields": {"run_id": run_id, "action": actions[run_id]}},
        )
    return actions


def describe_run(row: Mapping[str, Any]) -> dict[str, Any]:
    """A run row as the API and CLI show it: the columns, the report, no checkpoint internals."""
    view = {k: v for k, v in row.items() if k not in ("checkpoint", "idempotency_key")}
    if not view.get("report") and row.get("checkpoint"):
        view["report"] = dict(Checkpoint.of(row).report) or None
    return view


def _load(engine: Engine, run_id: str) -> Row:
    with engine.database.transaction() as tx:
        row = reconciliation_runs.get(tx, run_id)
    if row is None:
        raise InvalidRunRequest(f"reconciliation run {run_id} not found")
    return row


def _seq(row: Mapping[str, Any]) -> int:
    return Checkpoint.of(row).seq


def _since(state: Checkpoint) -> datetime:
    if state.since is None:  # only INCREMENTAL runs have the phases that ask
        raise ValueError("checkpoint of an incremental phase without its since time")
    return state.since
