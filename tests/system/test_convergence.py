"""Convergence under faults, model-based, over the real stack (issue 10).

A hypothesis state machine drives the whole local stack (PostgreSQL, the HubSpot emulator
over HTTP with signed webhooks delivered shuffled and duplicated, the five functions
served by functions-framework, the in-process task stand-in) with random sequences of:

- WARP edits, each published to ``outbound_sync`` as a Pub/Sub push: sometimes twice
  (a duplicate delivery), sometimes held back and delivered later (reordered, delayed);
  run twice, with change capture off and on (issue 16): with it on, the trigger records
  every edit, a sweep runs every 0.2 s, and some edits publish no message at all;
- HubSpot UI edits, delivered by the emulator as webhooks, or lost (only a reconcile
  finds them);
- HubSpot edits away from a field's value and back (V -> X -> V), their two webhooks
  delivered apart, the newer (matching the value on record) maybe first: WARP must hold
  V at once (issue 22);
- edits of the contact's email, which the company's domain derives from
  (``email_to_domain``): a contact plan's WARP write feeding a company property;
- HubSpot faults (429, 5xx, timeouts) on a share of calls, changed as it goes;
- killed database connections (``pg_terminate_backend``) in the middle of all that.

At settle points (a rule, and always at the end) it drains every queue with faults
off, runs one reconciliation through the ``reconciler`` function, and checks each
field of each customer against the model (tests/helpers/convergence_model.py):
bidirectional fields equal on both sides unless a MANUAL conflict is open, one-way
fields equal to their authoritative side's latest value, LATEST_WINS fields holding
the latest edit, no edit lost, derived fields following their source; then a second
reconciliation straight after, which must write nothing to either side. At the end:
HubSpot write calls within genuine edits plus reconciliations plus retries, every value
we wrote to HubSpot one WARP really held (no ping-pong), and no work left or lost
silently.

``CONVERGENCE_EXAMPLES`` (default 15) and ``CONVERGENCE_STEPS`` (default 25) size it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import partial
from typing import ClassVar

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from localdev.stack import LocalStack, StackConfig
from shared.tasks import InProcessDispatcher
from tests.helpers import convergence as hands
from tests.helpers.convergence_model import (
    BY_NAME,
    FIELDS,
    STATUSES,
    Edit,
    FieldModel,
    FieldSpec,
    Outcome,
    domain_of,
)
from tests.helpers.environment import as_a_user_sets_it

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("CONVERGENCE_EXAMPLES", "15"))
STEPS = int(os.environ.get("CONVERGENCE_STEPS", "25"))
CUSTOMERS = 3
FAULT_RATES = (0.0, 0.1, 0.25)
SETTLE_AFTER = 4
# Faults drawn per CRM call; 429 pauses the shared budget for the emulator's window.
FAULT_KINDS = ["429", "500", "502", "503", "timeout"]


# Change capture off: WARP's edits reach us by their messages alone. On: the trigger
# records every edit and a sweep runs every 0.2 s, and some edits send no message.
CAPTURE_SWEEP_SECONDS = {"capture-off": None, "capture-on": 0.2}


@pytest.fixture(scope="module", params=list(CAPTURE_SWEEP_SECONDS))
def stack(
    request: pytest.FixtureRequest,
    create_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalStack]:
    """The demo's local stack on a database of its own, tuned for many short examples.

    One database per capture mode: each stack starts a fresh emulator, whose record ids
    start over, so the other mode's customers would be linked to this one's records.
    """
    database_url = create_database(f"convergence_{request.param}")
    config = StackConfig(
        coalesce_delay_seconds=0.05,
        retry_base_seconds=0.02,
        retry_cap_seconds=0.2,
        retry_max_attempts=8,
        webhook_time_scale=2.5e-4,
        seed=10,
        log_file=tmp_path_factory.mktemp("convergence") / "stack.log",
        sweep_every_seconds=CAPTURE_SWEEP_SECONDS[request.param],
    )
    with as_a_user_sets_it(database_url), LocalStack(config) as running:
        emulator = running.emulator
        assert emulator is not None
        # HubSpot's unordered, at-least-once delivery.
        emulator.webhooks.configure(shuffle=True, duplicate_rate=0.2)
        # A 429 pauses every caller for the window HubSpot names; keep it short here.
        emulator.limits.window_ms = 500
        emulator.set_faults(kinds=FAULT_KINDS, hold_ms=150, seed=10)
        hands.install_config(running)
        yield running


class Convergence(RuleBasedStateMachine):
    """See the module docstring. ``stack`` and ``totals`` are set by the test."""

    stack: ClassVar[LocalStack]
    # Change capture is on: an edit with no message still reaches HubSpot.
    capture: ClassVar[bool]
    totals: ClassVar[hands.Counters]
    violations: ClassVar[list[str]]

    def __init__(self) -> None:
        super().__init__()
        self.http = httpx.Client(timeout=30)
        self.engine = self.stack.require_engine()
        self.emulator = self.stack.emulator
        assert self.emulator is not None
        self.counters = hands.Counters()
        self.held: list[bytes] = []
        self.fault_rate = 0.0
        self.fresh = 0
        self.unsettled = 0  # edits since the last settle
        self.customers: list[str] = []
        self.objects: dict[tuple[str, str], str] = {}
        self.model: dict[tuple[str, str], FieldModel] = {}
        self.genuine_warp: dict[tuple[str, str], set[str]] = {}
        self.writes_before = hands.write_calls(self.stack)
        self.faults_before = dict(self.emulator.stats()["faults"]["injected"])
        assert isinstance(self.stack.dispatcher, InProcessDispatcher)
        self.retried_before = self.stack.dispatcher.retried

    # -- setup -------------------------------------------------------------------------

    @initialize(rate=st.sampled_from(FAULT_RATES[1:]))
    def customers_in_sync(self, rate: float) -> None:
        tag = uuid.uuid4().hex[:5]
        self.customers = hands.create_customers(self.stack, CUSTOMERS, tag)
        for cid in self.customers:
            observed = hands.observe(self.engine, cid)
            row = hands.retrying(partial(hands.customer_row, self.engine, cid))
            self.objects[(cid, "companies")] = str(row["external_ids"]["hubspot_company_id"])
            self.objects[(cid, "contacts")] = str(row["external_ids"]["hubspot_contact_id"])
            for spec in FIELDS:
                assert observed[spec.name].warp == observed[spec.name].hubspot, spec.name
                self.model[(cid, spec.name)] = FieldModel(spec, observed[spec.name])
                self.genuine_warp[(cid, spec.name)] = {observed[spec.name].warp}
        self.set_fault_rate(rate)

    def _fresh(self, cid: str, name: str) -> str | None:
        """A value this field never held in its current window (None: none left)."""
        field = self.model[(cid, name)]
        spec = field.spec
        if spec.kind == "status":
            left = [s for s in STATUSES if s not in field.used_values()]
            return left[0] if left else None
        self.fresh += 1
        n = self.fresh
        if spec.kind == "money":
            return str(1000 + 50 * n)
        if spec.kind == "int":
            return str(30 + n)
        if spec.name == "ban":
            return f"CV{uuid.uuid4().hex[:8]}"
        if spec.name == "contact_email_address":
            # A fresh domain too: the company's domain derives from it.
            return f"pat@{uuid.uuid4().hex[:8]}.conv.example"
        if spec.kind == "domain":
            return f"{uuid.uuid4().hex[:8]}.conv.example"
        if spec.name == "contact_phone":
            return f"+1 555 {uuid.uuid4().int % 10**7:07d}"
        return f"{spec.name} {uuid.uuid4().hex[:8]}"

    def _derived_follow(self, cid: str, name: str, value: str) -> None:
        """A value of ``name`` (either side) may reach WARP: what derives from it may follow."""
        for spec in FIELDS:
            if spec.derived_from == name:
                self.genuine_warp[(cid, spec.name)].add(domain_of(value))

    def _feeds(self, name: str) -> int:
        """1 when another field derives from ``name`` (its edit may cost a flush write)."""
        return int(any(spec.derived_from == name for spec in FIELDS))

    def _quiet(self, cid: str, name: str) -> bool:
        """No edit of this field (nor of what it derives from) since the last settle."""
        names = [name, *filter(None, [BY_NAME[name].derived_from])]
        field = self.model[(cid, name)]
        return not field.settled.conflict and not any(
            self.model[(cid, n)].warp_edits or self.model[(cid, n)].hubspot_edits for n in names
        )

    # -- rules -------------------------------------------------------------------------

    @rule(
        index=st.integers(0, CUSTOMERS - 1),
        name=st.sampled_from([f.name for f in FIELDS if f.derived_from is None]),
        delivery=st.sampled_from(["once", "once", "twice", "hold", "none"]),
    )
    def warp_edit(self, index: int, name: str, delivery: str) -> None:
        cid = self.customers[index]
        value = self._fresh(cid, name)
        if value is None:
            return
        field = self.model[(cid, name)]
        at = hands.edit_warp(self.engine, cid, field.spec, value)
        field.warp_edits.append(Edit(value, at))
        self.genuine_warp[(cid, name)].add(value)
        self._derived_follow(cid, name, value)
        self.counters.warp_edits += 1
        self.unsettled += 1
        if delivery == "none" and self.capture:
            return  # plain SQL and no message: only the capture knows of it
        body = hands.change_message(cid, field.spec, at)
        if delivery == "hold":
            self.held.append(body)
            self.counters.held += 1
            return
        hands.push(self.http, self.stack.url("outbound_sync"), body, self.counters)
        if delivery == "twice":
            hands.push(self.http, self.stack.url("outbound_sync"), body, self.counters)
            self.counters.duplicates += 1

    @rule(
        index=st.integers(0, CUSTOMERS - 1),
        name=st.sampled_from([f.name for f in FIELDS]),
        webhook=st.sampled_from(["delivered", "delivered", "lost"]),
    )
    def hubspot_edit(self, index: int, name: str, webhook: str) -> None:
        """A HubSpot UI edit; its webhook delivered, or lost (only a reconcile finds it)."""
        cid = self.customers[index]
        value = self._fresh(cid, name)
        if value is None:
            return
        field = self.model[(cid, name)]
        object_id = self.objects[(cid, field.spec.object_type)]
        event = hands.edit_hubspot(
            self.stack, object_id, field.spec, value, announce=webhook == "delivered"
        )
        field.hubspot_edits.append(Edit(value, hands.event_time(event)))
        self._derived_follow(cid, name, value)
        self.counters.hubspot_edits += 1
        self.counters.feeding_edits += self._feeds(name)
        self.counters.lost_webhooks += webhook == "lost"
        self.unsettled += 1

    @rule(
        index=st.integers(0, CUSTOMERS - 1),
        name=st.sampled_from([f.name for f in FIELDS]),
        newest_first=st.booleans(),
    )
    def hubspot_edit_and_back(self, index: int, name: str, newest_first: bool) -> None:
        """HubSpot V -> X -> V, its two webhooks delivered apart, maybe the newer first.

        The newer event matches the value on record (the field is in sync), so it writes
        nothing; the older one must then be stale and never undo it (issue 22). Checked
        at once: nothing else touches this field before the next settle.
        """
        cid = self.customers[index]
        if not self._quiet(cid, name):
            return
        field = self.model[(cid, name)]
        value = self._fresh(cid, name)
        if value is None:
            return
        back = field.settled.hubspot
        object_id = self.objects[(cid, field.spec.object_type)]
        away = hands.edit_hubspot(self.stack, object_id, field.spec, value, announce=False)
        hands.after_ms(hands.event_time(away))
        home = hands.edit_hubspot(self.stack, object_id, field.spec, back, announce=False)
        for event in [home, away] if newest_first else [away, home]:
            hands.deliver_webhook(self.http, self.stack, [event])
            hands.drain(self.stack)  # applied (or handed to a task and run) before the next
        field.hubspot_edits.extend(
            [Edit(value, hands.event_time(away)), Edit(back, hands.event_time(home))]
        )
        self._derived_follow(cid, name, value)
        self.counters.hubspot_edits += 2
        self.counters.feeding_edits += 2 * self._feeds(name)
        self.counters.reordered += newest_first
        self.unsettled += 2
        seen = hands.observe_warp(self.engine, cid, field.spec)
        if seen != back:
            problem = (
                f"{name} ({field.spec.direction} {field.spec.rule}) of {cid}: HubSpot went "
                f"{back} -> {value} -> {back}, webhooks {'newest' if newest_first else 'oldest'}"
                f" first; WARP holds {seen}"
            )
            self.violations.append(problem)
            raise AssertionError(problem)

    @rule(rate=st.sampled_from(FAULT_RATES))
    def set_fault_rate(self, rate: float) -> None:
        self.fault_rate = rate
        assert self.emulator is not None
        self.emulator.set_faults(rate=rate)

    @rule()
    def kill_db_connections(self) -> None:
        self.counters.db_kills += 1
        self.counters.backends_killed += hands.kill_connections(self.engine)

    @precondition(lambda self: bool(self.held))
    @rule(newest_first=st.booleans())
    def deliver_held(self, newest_first: bool) -> None:
        held, self.held = self.held, []
        for body in reversed(held) if newest_first else held:
            hands.push(self.http, self.stack.url("outbound_sync"), body, self.counters)

    @rule()
    def work_runs(self) -> None:
        """Let the pending work (flushes, webhooks, retries) run, faults still on."""
        hands.drain(self.stack)

    # A settle costs a drain and a reconciliation: only once some edits are pending.
    @precondition(lambda self: self.unsettled >= SETTLE_AFTER)
    @rule()
    def settle(self) -> None:
        """Everything delivered and drained, faults off, one reconciliation, then the check."""
        for body in self.held:
            hands.push(self.http, self.stack.url("outbound_sync"), body, self.counters)
        self.held = []
        self.work_runs()
        assert self.emulator is not None
        self.emulator.set_faults(rate=0.0)
        hands.drain(self.stack)
        run = hands.reconcile(self.http, self.stack)
        self.counters.reconciles += 1
        assert run["status"] == "COMPLETED", run
        hands.drain(self.stack)
        self.counters.settles += 1
        self.unsettled = 0
        self._check_fields()
        self._check_fixed_point()
        self.emulator.set_faults(rate=self.fault_rate)

    def _check_fixed_point(self) -> None:
        """A reconcile right after a reconcile writes nothing, to either side."""
        writes = hands.write_calls(self.stack)
        rows = {cid: hands.customer_row(self.engine, cid) for cid in self.customers}
        run = hands.reconcile(self.http, self.stack)
        self.counters.reconciles += 1
        problems = []
        if run["status"] != "COMPLETED" or run["records_updated"]:
            problems.append(f"a second reconcile in a row updated records: {run}")
        if hands.write_calls(self.stack) != writes:
            problems.append(
                f"a second reconcile in a row made {hands.write_calls(self.stack) - writes} "
                "HubSpot write calls"
            )
        for cid, before in rows.items():
            after = hands.customer_row(self.engine, cid)
            if after["updated_at"] != before["updated_at"]:
                problems.append(f"a second reconcile in a row wrote customer {cid} in WARP")
        self.violations.extend(problems)
        assert not problems, "\n".join(problems)

    @invariant()
    def count_step(self) -> None:
        self.counters.steps += 1

    # -- checks ------------------------------------------------------------------------

    def _check_fields(self) -> None:
        problems = []
        for cid in self.customers:
            observed = hands.observe(self.engine, cid)
            settled: dict[str, Outcome] = {}
            for spec in FIELDS:  # a derived field after the field it derives from
                field = self.model[(cid, spec.name)]
                source = settled.get(spec.derived_from) if spec.derived_from else None
                allowed = field.expected(source)
                seen = observed[spec.name]
                settled[spec.name] = seen
                if seen not in allowed:
                    problems.append(
                        f"{spec.name} ({spec.direction} {spec.rule}) of {cid}: saw {seen}, "
                        f"allowed {allowed}; WARP edits {field.warp_edits}, "
                        f"HubSpot edits {field.hubspot_edits}, settled {field.settled}"
                    )
                field.settle(seen)
        self.violations.extend(problems)
        assert not problems, "\n".join(problems)

    def _check_writes(self) -> None:
        """No ping-pong: writes bounded, and every value we wrote WARP genuinely held."""
        assert self.emulator is not None and isinstance(self.stack.dispatcher, InProcessDispatcher)
        injected = self.emulator.stats()["faults"]["injected"]
        faults = sum(injected.values()) - sum(self.faults_before.values())
        retried = self.stack.dispatcher.retried - self.retried_before
        writes = hands.write_calls(self.stack) - self.writes_before
        # Each delivered message (with capture, each captured edit too) can cause at most
        # one flush write per object type; each reconciliation one batch update per object
        # type; each HubSpot edit of a field others derive from one flush write of theirs;
        # each fault or retry one more.
        pushes = self.counters.deliveries + (self.counters.warp_edits if self.capture else 0)
        flushes = pushes + self.counters.feeding_edits
        bound = 2 * (flushes + self.counters.reconciles) + faults + retried
        problems = []
        if writes > bound:
            problems.append(f"{writes} HubSpot write calls exceed the bound {bound}")
        for cid in self.customers:
            for object_type in ("companies", "contacts"):
                wrote = hands.our_writes(self.stack, object_type, self.objects[(cid, object_type)])
                for spec in FIELDS:
                    if spec.object_type != object_type:
                        continue
                    genuine = self.genuine_warp[(cid, spec.name)]
                    echoed = [
                        v for v in wrote.get(spec.prop, []) if _canonical(spec, v) not in genuine
                    ]
                    if echoed:
                        problems.append(
                            f"{spec.name} of {cid}: we wrote {echoed} to HubSpot, "
                            "values WARP never held from its own edits (ping-pong)"
                        )
        self.counters.faults = {k: v - self.faults_before.get(k, 0) for k, v in injected.items()}
        self.violations.extend(problems)
        assert not problems, "\n".join(problems)

    def teardown(self) -> None:
        try:
            if self.customers:
                self.settle()
                self._check_writes()
        finally:
            assert self.emulator is not None
            self.emulator.set_faults(rate=0.0)
            self.http.close()
            _add(self.totals, self.counters)


def _canonical(spec: FieldSpec, value: str) -> str:
    """A HubSpot string in the form the model keeps (numbers without trailing zeros)."""
    if spec.kind in ("money", "int") and value:
        return format(Decimal(value).normalize(), "f")
    return value


def _add(totals: hands.Counters, run: hands.Counters) -> None:
    for name, value in vars(run).items():
        if isinstance(value, int):
            setattr(totals, name, getattr(totals, name) + value)
        elif isinstance(value, dict):
            for key, count in value.items():
                totals.faults[key] = totals.faults.get(key, 0) + count


def test_sync_converges_under_faults(stack: LocalStack) -> None:
    """Random edits on both sides, faults and killed connections; every field converges."""
    totals = hands.Counters()
    violations: list[str] = []
    Convergence.stack = stack
    Convergence.capture = stack.config.sweep_every_seconds is not None
    Convergence.totals = totals
    Convergence.violations = violations
    try:
        run_state_machine_as_test(
            Convergence,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                derandomize=False,
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        print(
            f"\nconvergence (capture {'on' if Convergence.capture else 'off'}): "
            f"examples<={EXAMPLES} steps={totals.steps} "
            f"warp_edits={totals.warp_edits} hubspot_edits={totals.hubspot_edits} "
            f"deliveries={totals.deliveries} duplicates={totals.duplicates} held={totals.held} "
            f"redeliveries={totals.redeliveries} lost_webhooks={totals.lost_webhooks} "
            f"reordered={totals.reordered} db_kills={totals.db_kills} "
            f"backends_killed={totals.backends_killed} faults={totals.faults} "
            f"settles={totals.settles} reconciles={totals.reconciles} "
            f"violations={len(violations)}"
        )
        for problem in dict.fromkeys(violations):  # each once; shrinking repeats them
            print(f"violation: {problem}")
    assert not violations
