"""The demo's scripted story: every flow driven through the real functions over HTTP.

Each :class:`Step` acts the way the outside world does (WARP writes a row and
publishes a change as a Pub/Sub push; a person edits a record in the HubSpot UI and
HubSpot sends a signed webhook; an operator calls the management API) and then
checks the outcome where it must show: in HubSpot, in WARP's tables, in the API's
answers. A step passes only when that outcome is observed before its deadline;
every wait is on a condition, never on a fixed sleep.

A step that needs a function this checkout does not have, or the emulator when the
demo runs against a real HubSpot account, is reported as skipped with the reason;
nothing is pretended.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from localdev.checks import check_consistency
from localdev.drain import read_backlog
from localdev.seed import Book, SeededCustomer, Standing
from localdev.stack import LocalStack
from shared.db.connection import url_connector
from shared.db.repositories import customers, field_state, sync_config, sync_queue
from shared.engine import Engine
from shared.links import linked_id
from shared.mapping import EntityType
from shared.messages.change import ChangeMessage, Operation
from shared.messages.envelope import encode_push_envelope
from shared.tasks import InProcessDispatcher

BATCH_UPDATE = "POST /crm/v3/objects/companies/batch/update"
MANUAL_CONFIG = "demo_manual_company_name"
BURST_CALL_GOAL = 20
_POLL_SECONDS = 0.02  # how often a wait re-checks its condition


class StepFailed(Exception):
    """The outcome a step waited for did not show (the message says what is missing)."""


class StepSkipped(Exception):
    """The step cannot run in this setup (the message says why)."""


@dataclass
class StepResult:
    """How one step went, for the summary table."""

    title: str
    status: Literal["passed", "failed", "skipped"]
    detail: str
    figures: dict[str, Any]
    seconds: float


@dataclass(frozen=True)
class Step:
    """One scene: ``run(scene)`` acts, checks and returns a one-line result."""

    title: str
    run: Callable[[Scene], str]
    needs: tuple[str, ...] = ()
    needs_emulator: bool = False


@dataclass
class Scene:
    """What a step works with: the stack, the seeded book, the console and helpers."""

    stack: LocalStack
    book: Book
    console: Console
    http: httpx.Client
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    figures: dict[str, Any] = field(default_factory=dict)
    ui_edits: int = 0  # edits made "in the HubSpot UI" so far: the genuine inbound changes
    _taken: set[str] = field(default_factory=set)

    @property
    def engine(self) -> Engine:
        """The stack's engine."""
        return self.stack.require_engine()

    # -- output --------------------------------------------------------------------

    def say(self, text: str) -> None:
        """One line of narration under the current step."""
        self.console.print(f"    {text}", markup=False, highlight=False)

    def progress(
        self, description: str, total: int
    ) -> AbstractContextManager[Callable[[int], None]]:
        """A progress bar for a long step; yields ``advance(n)``."""
        return progress_bar(self.console, description, total)

    # -- choosing customers ----------------------------------------------------------

    def take(self, standing: Standing, count: int = 1) -> list[SeededCustomer]:
        """``count`` customers of this standing no earlier step has used."""
        chosen = [c for c in self.book.of(standing) if c.customer_id not in self._taken][:count]
        if len(chosen) < count:
            raise StepSkipped(f"the book has too few {standing.value} customers left")
        self._taken.update(c.customer_id for c in chosen)
        return chosen

    def untaken_linked(self) -> list[SeededCustomer]:
        """Every customer that starts linked and no step has used yet (claims them)."""
        chosen = [c for c in self.book.linked() if c.customer_id not in self._taken]
        self._taken.update(c.customer_id for c in chosen)
        return chosen

    # -- waiting -------------------------------------------------------------------

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 20.0) -> float:
        """Seconds until ``condition()`` held; StepFailed naming ``what`` after ``timeout``."""
        started = time.monotonic()
        deadline = started + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise StepFailed(f"{what}: not seen within {timeout:.0f} s")
            time.sleep(_POLL_SECONDS)  # polling a condition, not timing an outcome
        return time.monotonic() - started

    def wait_quiet(self, timeout: float = 30.0) -> None:
        """Wait until webhooks are delivered, stored events processed and tasks done."""
        emulator = self.stack.emulator
        if emulator is not None and not emulator.webhooks.wait_idle(timeout):
            raise StepFailed("the emulator still had webhooks to deliver")
        try:
            self.wait_until(lambda: not self.pending_work(), "all queued work finished", timeout)
        except StepFailed as exc:
            raise StepFailed(f"{exc} ({', '.join(self.pending_work())})") from None

    def pending_work(self) -> list[str]:
        """What is still to do: customers to push, webhook events, work queue items."""
        return read_backlog(self.engine.database).describe()

    # -- WARP ------------------------------------------------------------------------

    def warp_row(self, customer_id: str) -> dict[str, Any]:
        """The customer's row as it is now."""
        with self.engine.database.transaction() as tx:
            row = customers.get(tx, customer_id)
        if row is None:
            raise StepFailed(f"customer {customer_id} disappeared")
        return row

    def edit_warp(self, customer_id: str, values: Mapping[str, Any]) -> None:
        """Change columns the way WARP's own application does (``updated_at`` moves)."""
        with self.engine.database.transaction() as tx:
            customers.update_columns(tx, customer_id, {**values, "updated_by": "demo-user"})

    def publish(
        self,
        customer_id: str,
        changed_fields: Sequence[str],
        operation: Operation = Operation.UPDATE,
    ) -> str:
        """Deliver WARP's change message to ``outbound_sync`` as a Pub/Sub push; its id."""
        message_id = uuid.uuid4().hex
        change = ChangeMessage(
            entity_type="customer",
            entity_id=uuid.UUID(customer_id),
            operation=operation,
            changed_fields=list(changed_fields),
            occurred_at=datetime.now(UTC),
            trigger_source="warp-demo",
            triggered_by_user="demo-user",
        )
        response = self.http.post(
            self.stack.url("outbound_sync"),
            content=encode_push_envelope(change, message_id),
            headers={"Content-Type": "application/json"},
        )
        if response.status_code not in (200, 201, 202, 204):
            raise StepFailed(f"outbound_sync answered {response.status_code}: {response.text}")
        return message_id

    # -- HubSpot ---------------------------------------------------------------------

    def hubspot(
        self, object_type: str, object_id: str, properties: Sequence[str]
    ) -> dict[str, Any]:
        """A record's current values (the emulator's store, else one API read)."""
        emulator = self.stack.emulator
        if emulator is not None:
            return emulator.values(object_type, object_id)
        record = self.engine.hubspot.objects(object_type).get(  # type: ignore[arg-type]
            object_id, properties=list(properties)
        )
        return dict(record.properties)

    def crm_calls(self, key: str | None = None) -> int:
        """CRM calls of ``key`` (None: of every kind) the emulator served (0 without it)."""
        emulator = self.stack.emulator
        if emulator is None:
            return 0
        stats = emulator.stats()
        return int(stats["totalCalls"] if key is None else stats["calls"].get(key, 0))

    # -- the management API ----------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call ``sync_api`` with the local token; the JSON answer (StepFailed on >= 400)."""
        response = self.http.request(
            method,
            self.stack.url("sync_api") + path,
            json=body,
            headers=self.stack.api_headers(),
        )
        if response.status_code >= 400:
            raise StepFailed(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json()


@contextmanager
def progress_bar(console: Console, description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A transient progress bar on ``console``; yields ``advance(n)``."""
    bar = Progress(
        TextColumn("    {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # piped output gets the result lines only
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


# --- the steps ---------------------------------------------------------------------------


def first_reconcile(scene: Scene) -> str:
    """The nightly reconciliation, run now: drift repaired per rule, unlinked reported."""
    response = scene.http.post(scene.stack.url("reconciler"), json={"entity_type": "customer"})
    if response.status_code not in (200, 202):
        raise StepFailed(f"reconciler answered {response.status_code}: {response.text}")
    run = response.json()["run"]
    if run["status"] == "RUNNING":  # continued by tasks: follow it through the API

        def finished() -> bool:
            run.update(scene.api("GET", f"/v1/sync/reconciliation-runs/{run['id']}"))
            return bool(run["status"] != "RUNNING")

        scene.wait_until(finished, "the reconciliation run finished", timeout=60)
    if run["status"] != "COMPLETED":
        raise StepFailed(f"the run ended {run['status']}: {run.get('notes')}")
    report = run.get("report") or {}
    for name, counts in sorted((report.get("fields") or {}).items()):
        moved = ", ".join(f"{n} {d.replace('_', ' ')}" for d, n in counts.items() if n)
        scene.say(f"drift in {name}: {moved}")
    unlinked = report.get("unlinked_customers") or {}
    scene.say(
        f"{unlinked.get('count', 0)} customers without a company, "
        f"{unlinked.get('matched', 0)} of them matchable by domain or name"
    )
    drifted = scene.book.of(Standing.DRIFTED)
    matchable = len(scene.book.of(Standing.BY_NAME)) + len(scene.book.of(Standing.BY_DOMAIN))
    scene.figures |= {
        "checked": run["total_records"],
        "in_sync": run["records_in_sync"],
        "repaired": run["records_updated"],
        "unlinked": unlinked.get("count", 0),
        "matchable": unlinked.get("matched", 0),
    }
    if run["records_updated"] != len(drifted):
        raise StepFailed(f"{run['records_updated']} records repaired, {len(drifted)} had drifted")
    if unlinked.get("matched") != matchable:
        raise StepFailed(f"{unlinked.get('matched')} unlinked matched, {matchable} are matchable")
    after = check_consistency(scene.engine, [c.customer_id for c in drifted])
    if not after.ok:
        raise StepFailed(f"{len(after.mismatches)} fields still differ after the run")
    return (
        f"{run['records_updated']} drifted records repaired per rule, "
        f"{run['records_in_sync']} already in sync"
    )


def unlinked_get_linked(scene: Scene) -> str:
    """Publishing unlinked customers links each to its company, found or created, never twice."""
    matchable = scene.take(Standing.BY_NAME, len(scene.book.of(Standing.BY_NAME)))
    matchable += scene.take(Standing.BY_DOMAIN, len(scene.book.of(Standing.BY_DOMAIN)))
    new = scene.take(Standing.NO_COMPANY, len(scene.book.of(Standing.NO_COMPANY)))
    scene.say(
        f"WARP publishes {len(matchable)} unlinked customers whose company HubSpot has, "
        f"and {len(new)} new customers"
    )
    for customer in matchable:
        scene.publish(customer.customer_id, [])  # no field named: the whole customer
    for customer in new:
        scene.publish(customer.customer_id, [], Operation.CREATE)
    everyone = matchable + new

    def company_of(customer: SeededCustomer) -> str | None:
        row = scene.warp_row(customer.customer_id)
        return linked_id(row, EntityType.CUSTOMER) if linked_id(row, EntityType.CONTACT) else None

    scene.wait_until(
        lambda: all(company_of(c) for c in everyone), "every customer linked", timeout=30
    )
    wrong = [c.ban for c in matchable if company_of(c) != c.company_id]
    if wrong:
        raise StepFailed(f"{len(wrong)} customers linked to another company than theirs")
    created = {company_of(c) for c in new}
    seeded = {c.company_id for c in scene.book.customers if c.company_id}
    if len(created) != len(new) or created & seeded:
        raise StepFailed("a new customer was linked to an existing or shared company")
    by = {
        standing.value: sum(c.standing == standing for c in matchable)
        for standing in (Standing.BY_NAME, Standing.BY_DOMAIN)
    }
    scene.figures |= {"by_name": by["unlinked_by_name"], "by_domain": by["unlinked_by_domain"]}
    scene.figures["created"] = len(new)
    return (
        f"{by['unlinked_by_name']} linked by name, {by['unlinked_by_domain']} by domain, "
        f"{len(new)} created; no duplicates"
    )


def _next_status(current: str) -> str:
    return "SUSPENDED" if current == "ACTIVE" else "ACTIVE"


def warp_edit_reaches_hubspot(scene: Scene) -> str:
    """A status change in WARP, published as a push, shows on the HubSpot company."""
    (customer,) = scene.take(Standing.IN_SYNC)
    assert customer.company_id is not None
    new_status = _next_status(scene.warp_row(customer.customer_id)["status"])
    scene.edit_warp(customer.customer_id, {"status": new_status})
    scene.say(f"WARP: {customer.ban} status → {new_status}; change published to outbound_sync")
    started = time.monotonic()
    scene.publish(customer.customer_id, ["status"])
    scene.wait_until(
        lambda: (
            scene.hubspot("companies", customer.company_id or "", ["warp_status"]).get(
                "warp_status"
            )
            == new_status
        ),
        "the new status on the HubSpot company",
    )
    latency_ms = round((time.monotonic() - started) * 1000)
    scene.figures |= {"latency_ms": latency_ms, "customer": customer.ban}
    return f"HubSpot shows {new_status} {latency_ms} ms after the push"


def plain_sql_edit_reaches_hubspot(scene: Scene) -> str:
    """An UPDATE made with plain SQL (as psql would), no message: capture and the sweep."""
    if scene.stack.config.sweep_every_seconds is None:
        raise StepSkipped("change capture is off in this stack")
    (customer,) = scene.take(Standing.IN_SYNC)
    assert customer.company_id is not None
    name = f"{scene.warp_row(customer.customer_id)['company_name']} (psql)"
    settings = scene.engine.settings
    # A connection of its own, outside the sync's pool: nothing marks it as ours.
    connection = url_connector(settings.database_url or "")()
    try:
        connection.autocommit = True
        connection.cursor().execute(
            "UPDATE accounts.customers SET company_name = :name WHERE id = CAST(:id AS uuid)",
            {"name": name, "id": customer.customer_id},
        )
    finally:
        connection.close()
    scene.say(f"psql: UPDATE accounts.customers SET company_name = '{name}' (no message)")
    started = time.monotonic()
    scene.wait_until(
        lambda: scene.hubspot("companies", customer.company_id or "", ["name"]).get("name") == name,
        "the new name on the HubSpot company",
        timeout=10,
    )
    latency_ms = round((time.monotonic() - started) * 1000)
    scene.figures |= {"latency_ms": latency_ms, "customer": customer.ban}
    return f"captured and swept: HubSpot shows the new name {latency_ms} ms after the UPDATE"


def hubspot_edit_reaches_warp(scene: Scene) -> str:
    """Edits in the HubSpot UI arrive as signed webhooks and change WARP's row."""
    emulator = scene.stack.emulator
    assert emulator is not None
    (customer,) = scene.take(Standing.IN_SYNC)
    assert customer.company_id is not None and customer.contact_id is not None
    row = scene.warp_row(customer.customer_id)
    new_limit = Decimal(row["credit_limit"] or 0) + Decimal(5_000)
    scene.say(f"HubSpot UI: {customer.ban} credit limit → {new_limit:.0f}")
    started = time.monotonic()
    emulator.ui_change("companies", customer.company_id, {"warp_credit_limit": f"{new_limit:.0f}"})
    scene.wait_until(
        lambda: scene.warp_row(customer.customer_id)["credit_limit"] == new_limit,
        "the new credit limit in WARP",
    )
    company_ms = round((time.monotonic() - started) * 1000)
    scene.ui_edits += 1
    new_phone = "+1 555 0199 4242"
    scene.say(f"HubSpot UI: the primary contact's phone of {customer.ban} changed")
    started = time.monotonic()
    emulator.ui_change("contacts", customer.contact_id, {"phone": new_phone})
    scene.wait_until(
        lambda: (scene.warp_row(customer.customer_id)["contact"] or {}).get("phone") == new_phone,
        "the new contact phone in WARP",
    )
    contact_ms = round((time.monotonic() - started) * 1000)
    scene.ui_edits += 1
    scene.figures |= {"company_ms": company_ms, "contact_ms": contact_ms}
    return f"WARP updated {company_ms} ms (company) and {contact_ms} ms (contact) after the edit"


def echoes_suppressed(scene: Scene) -> str:
    """Our own writes come back as webhooks; each is recognised and not applied again."""
    from shared.inbound.queries import count_echoes

    emulator = scene.stack.emulator
    assert emulator is not None
    scene.wait_quiet()
    with scene.engine.database.transaction() as tx:
        echoes = count_echoes(tx, emulator.app_id, since=scene.started_at)
        applied_back = int(
            tx.fetch_value(
                "SELECT count(*) FROM accounts.hubspot_sync_log WHERE triggered_by = 'webhook' "
                "AND direction = 'HUBSPOT_TO_WARP' AND started_at >= :since",
                {"since": scene.started_at},
            )
        )
    scene.figures |= {"echoes": echoes, "inbound_applied": applied_back}
    if echoes == 0:
        raise StepFailed("no echo of our writes came back as a webhook")
    if applied_back != scene.ui_edits:
        raise StepFailed(
            f"{applied_back} webhook syncs reached WARP for {scene.ui_edits} genuine edits"
        )
    scene.say(f"{echoes} webhook events were echoes of our own writes: none applied to WARP")
    return f"{echoes} echoes suppressed; only the {applied_back} genuine HubSpot edits applied"


def manual_conflict(scene: Scene) -> tuple[SeededCustomer, str, str]:
    """A linked customer whose MANUAL company name was edited on both sides: held open.

    Returns the customer, WARP's new name and HubSpot's new name.
    """
    emulator = scene.stack.emulator
    assert emulator is not None
    (customer,) = scene.take(Standing.IN_SYNC)
    cid, company_id = customer.customer_id, customer.company_id or ""
    with scene.engine.database.transaction() as tx:
        sync_config.save(
            tx,
            config_name=MANUAL_CONFIG,
            customer_id=cid,
            field_mappings={
                "company_name": {
                    "hubspot_property": "name",
                    "warp_field": "company_name",
                    "sync_direction": "BIDIRECTIONAL",
                    "conflict_resolution": "MANUAL",
                }
            },
            created_by="demo",
        )
    scene.engine.reload_mappings()
    scene.say(f"config row {MANUAL_CONFIG!r}: {customer.ban}'s company name is MANUAL")
    base = scene.warp_row(cid)["company_name"]
    warp_name, hubspot_name = f"{base} Holdings", f"{base} Group"
    emulator.webhooks.pause()  # both edits happen before either side hears of the other
    try:
        scene.edit_warp(cid, {"company_name": warp_name})
        emulator.ui_change("companies", company_id, {"name": hubspot_name})
        scene.publish(cid, ["company_name"])
        scene.wait_until(lambda: _in_conflict(scene, cid), "the conflict recorded")
    finally:
        emulator.webhooks.resume()
    scene.wait_quiet()
    return customer, warp_name, hubspot_name


def manual_conflict_resolved(scene: Scene) -> str:
    """A MANUAL field edited on both sides waits for a person, who resolves it via the API."""
    customer, _, hubspot_name = manual_conflict(scene)
    cid, company_id = customer.customer_id, customer.company_id or ""
    listed = scene.api("GET", f"/v1/sync/customers/{cid}/conflicts")["conflicts"]
    if [c.get("field") for c in listed] != ["company_name"]:
        found = [c.get("field") for c in listed]
        raise StepFailed(f"the API lists conflicts {found}, expected company_name only")
    conflict = listed[0]
    scene.say(
        f"API: company_name ({conflict.get('rule')}) is in conflict: WARP "
        f"{conflict.get('warp_value')!r} vs HubSpot {conflict.get('hubspot_value')!r}"
    )
    if scene.hubspot("companies", company_id, ["name"]).get("name") != hubspot_name:
        raise StepFailed("the MANUAL field was overwritten in HubSpot before anyone resolved it")
    scene.api(
        "POST",
        f"/v1/sync/customers/{cid}/resolve-conflict",
        {"field_name": "company_name", "resolution": "use_hubspot_value"},
    )
    scene.say("resolved through the API: use_hubspot_value")
    scene.wait_until(
        lambda: (
            scene.warp_row(cid)["company_name"] == hubspot_name and not _in_conflict(scene, cid)
        ),
        "WARP holding the chosen name and the conflict closed",
    )
    scene.figures |= {"customer": customer.ban, "resolution": "use_hubspot_value"}
    return "conflict detected, listed by the API, resolved: both sides hold the chosen value"


def _in_conflict(scene: Scene, customer_id: str) -> bool:
    with scene.engine.database.transaction() as tx:
        return bool(field_state.open_conflicts(tx, customer_id))


def outage_absorbed(scene: Scene, count: int = 20) -> str:
    """HubSpot fails every call for a while; the changes wait, are retried, and all arrive."""
    emulator = scene.stack.emulator
    dispatcher = scene.stack.dispatcher
    assert emulator is not None
    if not isinstance(dispatcher, InProcessDispatcher):
        raise StepSkipped("fast-forwarding retries needs the in-process task stand-in")
    chosen = scene.take(Standing.IN_SYNC, count)
    expected = {
        c.customer_id: _next_status(scene.warp_row(c.customer_id)["status"]) for c in chosen
    }
    retried_before = dispatcher.retried

    def applied() -> int:
        return sum(
            scene.hubspot("companies", c.company_id or "", ["warp_status"]).get("warp_status")
            == expected[c.customer_id]
            for c in chosen
        )

    emulator.set_faults(outage=True)
    scene.say(f"HubSpot outage: every CRM call answers 503; {count} WARP edits published")
    try:
        for customer in chosen:
            scene.edit_warp(customer.customer_id, {"status": expected[customer.customer_id]})
            scene.publish(customer.customer_id, ["status"])
        # Between two failed attempts every change is back among the waiting ones.
        scene.wait_until(
            lambda: dispatcher.retried > retried_before and _waiting(scene, expected) == count,
            "the failed pushes waiting for their retry",
        )
        if applied():
            raise StepFailed(f"{applied()} changes reached HubSpot during the outage")
        failed_attempts = dispatcher.retried - retried_before
        scene.say(f"{count} changes waiting; failed flush attempts so far: {failed_attempts}")
    finally:
        emulator.set_faults(outage=False)
    scene.say("HubSpot is back; fast-forwarding the retry backoff")
    started = time.monotonic()

    def drained() -> bool:
        dispatcher.run_due_now()
        return _waiting(scene, expected) == 0 and applied() == count

    scene.wait_until(drained, "every change applied and nothing waiting", timeout=60)
    recovered_ms = round((time.monotonic() - started) * 1000)
    with scene.engine.database.transaction() as tx:
        failed = sync_queue.list_items(tx, statuses=("FAILED",), limit=10_000)
    lost = sum(str(row["entity_id"]) in expected for row in failed)
    if lost:
        raise StepFailed(f"{lost} changes ended FAILED")
    scene.figures |= {
        "waiting": count,
        "failed_attempts": failed_attempts,
        "recovered_ms": recovered_ms,
        "lost": 0,
    }
    return f"all {count} changes held through the outage and applied {recovered_ms} ms after it"


def _waiting(scene: Scene, customer_ids: Mapping[str, Any]) -> int:
    """Changes of these customers not pushed yet: in the outbound set or the work queue."""
    with scene.engine.database.transaction() as tx:
        items = sync_queue.list_items(tx, statuses=("QUEUED", "PROCESSING"), limit=10_000)
        dirty = tx.fetch_value(
            "SELECT count(*) FROM accounts.hubspot_outbound_dirty "
            "WHERE customer_id = ANY(CAST(:ids AS uuid[]))",
            {"ids": list(customer_ids)},
        )
    return sum(str(row["entity_id"]) in customer_ids for row in items) + int(dirty)


def burst_coalesced(scene: Scene, changes: int = 1_000) -> str:
    """A burst of change messages collapses into a few batch writes."""
    targets = scene.untaken_linked()
    if not targets:
        raise StepSkipped("no linked customers left for the burst")
    ids = [c.customer_id for c in targets]
    names = {cid: scene.warp_row(cid)["company_name"] for cid in ids}
    statuses = ("ACTIVE", "SUSPENDED", "TRIAL")
    updates_before = scene.crm_calls(BATCH_UPDATE)
    total_before = scene.crm_calls()

    def change(i: int) -> None:
        cid, round_no = ids[i % len(ids)], i // len(ids)
        # Alternate a status step and a rename that later rounds undo: many
        # messages per customer, and some of them cancel each other out.
        if round_no % 2 == 0:
            scene.edit_warp(cid, {"status": statuses[(round_no // 2 + 1) % len(statuses)]})
            scene.publish(cid, ["status"])
        else:
            renamed = round_no % 4 == 1
            scene.edit_warp(cid, {"company_name": names[cid] + (" Intl" if renamed else "")})
            scene.publish(cid, ["company_name"])

    scene.say(f"{changes} WARP changes across {len(ids)} customers, pushed over HTTP")
    started = time.monotonic()
    with scene.progress("pushing", changes) as advance, ThreadPoolExecutor(16) as pool:
        for _ in pool.map(change, range(changes)):
            advance(1)
    pushed_s = time.monotonic() - started
    with scene.progress("draining", 1) as advance:
        scene.wait_quiet(timeout=60)
        advance(1)
    report = check_consistency(scene.engine, ids)
    calls = scene.crm_calls(BATCH_UPDATE) - updates_before
    all_calls = scene.crm_calls() - total_before
    total_s = time.monotonic() - started
    scene.figures |= {
        "changes": changes,
        "customers": len(ids),
        "batch_update_calls": calls,
        "crm_calls": all_calls,
        "push_rate_per_s": round(changes / pushed_s),
        "seconds": round(total_s, 1),
    }
    if not report.ok:
        raise StepFailed(f"{len(report.mismatches)} fields differ after the burst")
    if scene.stack.emulator is not None and calls > BURST_CALL_GOAL:
        raise StepFailed(f"{calls} batch-update calls for the burst (goal ≤ {BURST_CALL_GOAL})")
    scene.say(f"HubSpot saw {calls} batch-update calls ({all_calls} calls in all)")
    return f"{changes} changes → {calls} batch-update calls; all {len(ids)} customers match"


def final_check(scene: Scene) -> str:
    """Every mapped field of every linked customer equal on both sides."""
    scene.wait_quiet()
    # On the demo's own database every linked customer is the book's; on one that
    # DATABASE_URL names, only the book's customers are the demo's to judge.
    own = scene.stack.info is not None and scene.stack.info.fresh_database
    only = None if own else [c.customer_id for c in scene.book.customers]
    report = check_consistency(scene.engine, only)
    scene.figures |= {
        "customers": report.customers,
        "records": report.records,
        "fields": report.fields_compared,
        "mismatches": len(report.mismatches),
        "missing": len(report.missing_records),
        "open_conflicts": report.in_open_conflict,
    }
    for mismatch in report.mismatches[:5]:
        scene.say(
            f"differs: customer {mismatch.customer_id} {mismatch.entity_type}.{mismatch.field}"
        )
    if not report.ok:
        raise StepFailed(
            f"{len(report.mismatches)} fields differ, {len(report.missing_records)} records missing"
        )
    return (
        f"{report.fields_compared} fields of {report.customers} linked customers "
        f"({report.records} HubSpot records) all equal"
    )


def build_story(*, burst: int = 1_000) -> list[Step]:
    """The steps in order."""
    return [
        Step(
            "The first reconciliation and its drift report",
            first_reconcile,
            needs=("reconciler", "sync_api"),
        ),
        Step(
            "A WARP edit reaches HubSpot",
            warp_edit_reaches_hubspot,
            needs=("outbound_sync",),
        ),
        Step(
            "A plain-SQL edit reaches HubSpot (change capture, no message)",
            plain_sql_edit_reaches_hubspot,
        ),
        Step(
            "Unlinked customers get linked",
            unlinked_get_linked,
            needs=("outbound_sync",),
        ),
        Step(
            "A HubSpot UI edit reaches WARP",
            hubspot_edit_reaches_warp,
            needs=("webhook_receiver",),
            needs_emulator=True,
        ),
        Step(
            "Our own echoes are suppressed",
            echoes_suppressed,
            needs=("webhook_receiver", "outbound_sync"),
            needs_emulator=True,
        ),
        Step(
            "A MANUAL conflict, resolved through the API",
            manual_conflict_resolved,
            needs=("outbound_sync", "webhook_receiver", "sync_api"),
            needs_emulator=True,
        ),
        Step(
            "A HubSpot outage is absorbed by retries",
            outage_absorbed,
            needs=("outbound_sync",),
            needs_emulator=True,
        ),
        Step(
            f"A burst of {burst:,} changes is coalesced",
            lambda scene: burst_coalesced(scene, burst),
            needs=("outbound_sync",),
        ),
        Step("Consistency check", final_check),
    ]


def run_story(scene: Scene, steps: Sequence[Step]) -> list[StepResult]:
    """Run the steps in order, printing each as it happens; their results."""
    results = []
    for number, step in enumerate(steps, start=1):
        scene.console.rule(f"[bold]{number}. {step.title}", align="left")
        scene.figures = {}
        started = time.monotonic()
        try:
            _check_needs(scene.stack, step)
            detail = step.run(scene)
            status: Literal["passed", "failed", "skipped"] = "passed"
        except StepSkipped as exc:
            detail, status = str(exc), "skipped"
        except StepFailed as exc:
            detail, status = str(exc), "failed"
        except Exception as exc:  # a crash of a step is a failed step, shown, not hidden
            detail, status = f"{type(exc).__name__}: {exc}", "failed"
        seconds = time.monotonic() - started
        mark = {"passed": "[green]✓", "failed": "[red]✗", "skipped": "[yellow]-"}[status]
        scene.console.print(
            f"  {mark} {escape(detail)}[/] [dim]({seconds:.1f} s)[/]", highlight=False
        )
        results.append(StepResult(step.title, status, detail, dict(scene.figures), seconds))
    return results


def _check_needs(stack: LocalStack, step: Step) -> None:
    missing = [name for name in step.needs if not stack.has(name)]
    if missing:
        raise StepSkipped(f"functions/{missing[0]}/main.py is not in this checkout")
    if step.needs_emulator and stack.emulator is None:
        raise StepSkipped("needs the HubSpot emulator (HUBSPOT_ACCESS_TOKEN points at HubSpot)")
