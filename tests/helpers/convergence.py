"""The convergence test's hands on the real stack: WARP edits and their Pub/Sub pushes,
HubSpot UI edits, killed database connections, draining, reconciling, and reading both
sides back in the mapping's canonical form.

Everything goes through the local stack (``localdev.stack.LocalStack``): the
functions over real HTTP, the emulator, the in-process task stand-in.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import httpx

from localdev.drain import read_backlog
from localdev.stack import LocalStack
from shared.db.repositories import customers, field_state, outbound_dirty, sync_config
from shared.engine import Engine
from shared.engine.sync import sync_customers
from shared.errors import DatabaseUnavailableError
from shared.hubspot.models import parse_datetime
from shared.hubspot.signatures import sign_v3
from shared.mapping import EntityType, FieldMapping
from shared.messages import ChangeMessage, Operation
from shared.messages.envelope import encode_push_envelope
from shared.outbound.receive import FLUSH_KIND
from shared.tasks import InProcessDispatcher, Task
from tests.helpers.convergence_model import (
    CUSTOM_PROPERTIES,
    FIELDS,
    FieldSpec,
    Outcome,
    config_rows,
)

T = TypeVar("T")
_POLL = 0.02  # how often a wait re-checks its condition
WRITE_CALLS = (
    "POST /crm/v3/objects/companies/batch/update",
    "POST /crm/v3/objects/contacts/batch/update",
    "PATCH /crm/v3/objects/companies/{objectId}",
    "PATCH /crm/v3/objects/contacts/{objectId}",
)


class NotSettled(AssertionError):
    """Queued work did not run out before the deadline (itself a finding)."""


@dataclass
class Counters:
    """What a run did, for the bounds and the report."""

    steps: int = 0
    warp_edits: int = 0
    hubspot_edits: int = 0
    deliveries: int = 0  # change messages POSTed and acknowledged (duplicates included)
    redeliveries: int = 0  # non-2xx answers Pub/Sub would redeliver
    duplicates: int = 0
    held: int = 0
    lost_webhooks: int = 0  # HubSpot edits whose webhook never came
    reordered: int = 0  # V -> X -> V in HubSpot, the newer webhook delivered first
    feeding_edits: int = 0  # HubSpot edits of a field another field derives from
    db_kills: int = 0
    backends_killed: int = 0
    reconciles: int = 0
    settles: int = 0
    faults: dict[str, int] = field(default_factory=dict)


def install_config(stack: LocalStack) -> None:
    """Replace the global mapping with the test's (every direction and rule)."""
    engine = stack.require_engine()
    assert stack.emulator is not None
    for name, kind in CUSTOM_PROPERTIES:
        stack.emulator.define_property("companies", name, kind)
    with engine.database.transaction() as tx:
        for name, mappings in config_rows().items():
            sync_config.save(tx, config_name=name, field_mappings=mappings)
    engine.reload_mappings()


def warp_value(spec: FieldSpec, value: str) -> Any:
    """The model's canonical string as WARP stores it."""
    if spec.kind == "money":
        return Decimal(value)
    if spec.kind == "int":
        return int(value)
    return value


def create_customers(stack: LocalStack, count: int, tag: str) -> list[str]:
    """``count`` linked customers whose company and contact hold WARP's values, synced once."""
    engine = stack.require_engine()
    emulator = stack.emulator
    assert emulator is not None
    ids = []
    for i in range(count):
        ban = f"CV{tag}{i}"
        row: dict[str, Any] = {
            "ban": ban,
            "company_name": f"Company {tag}-{i}",
            "legal_name": f"Legal {tag}-{i}",
            "customer_type": "POSTPAID",
            "status": "ACTIVE",
            "credit_limit": Decimal("1000"),
            "payment_terms": 30,
            "contact": {
                "name": "Pat Doe",
                "email": f"pat.{tag}{i}@conv.example",
                "phone": f"+1 555 {tag}{i}",
            },
        }
        (company,) = emulator.seed(
            "companies",
            [
                {
                    "name": row["company_name"],
                    "warp_ban": ban,
                    "warp_status": "ACTIVE",
                    "warp_credit_limit": "1000",
                    "warp_legal_name": row["legal_name"],
                    "warp_payment_terms": "30",
                }
            ],
        )
        (contact,) = emulator.seed(
            "contacts", [{"email": row["contact"]["email"], "phone": row["contact"]["phone"]}]
        )
        row["external_ids"] = {"hubspot_company_id": company, "hubspot_contact_id": contact}

        def insert(row: dict[str, Any] = row) -> str:
            with engine.database.transaction() as tx:
                return str(customers.insert(tx, row)["id"])

        ids.append(retrying(insert))
    # Establish the field states, as a first reconciliation would.
    for outcome in retrying(lambda: sync_customers(engine, ids, triggered_by="test")):
        assert outcome.error is None, outcome.error
    return ids


_SQL_TYPE = {"text": "text", "status": "text", "money": "numeric", "int": "integer"}


def retrying(action: Callable[[], T], attempts: int = 30) -> T:
    """Run ``action``, again after a lost database connection (the test kills them)."""
    for _ in range(attempts - 1):
        try:
            return action()
        except DatabaseUnavailableError:
            continue  # the pool discarded the dead connection; the next one is fresh
    return action()


def edit_warp(engine: Engine, customer_id: str, spec: FieldSpec, value: str) -> datetime:
    """Change one field the way WARP's application does; the row's new ``updated_at``.

    One statement, so a concurrent write of another key of a JSONB document is kept.
    The column and key come from the test's own field list, never from input.
    """
    if "." in spec.warp_field:
        column, key = spec.warp_field.split(".", 1)
        target = f"jsonb_set({column}, CAST(:path AS text[]), to_jsonb(CAST(:value AS text)))"
        params: dict[str, Any] = {"path": [key], "value": value, "id": customer_id}
    else:
        column = spec.warp_field
        target = f"CAST(:value AS {_SQL_TYPE[spec.kind]})"
        params = {"value": value, "id": customer_id}
    sql = (
        # clock_timestamp(), not NOW() (the transaction's start): the capture trigger
        # times the edit by the clock too, so model and sync agree on the edit's time.
        f"UPDATE accounts.customers SET {column} = {target}, updated_at = clock_timestamp() "
        "WHERE id = CAST(:id AS uuid) RETURNING updated_at"
    )

    def run() -> Any:
        with engine.database.transaction() as tx:
            return tx.fetch_value(sql, params)

    at = retrying(run)
    assert isinstance(at, datetime)
    return at


def change_message(customer_id: str, spec: FieldSpec, at: datetime) -> bytes:
    """WARP's change message for that edit, as a Pub/Sub push body (a fresh message id)."""
    change = ChangeMessage(
        entity_type="customer",
        entity_id=uuid.UUID(customer_id),
        operation=Operation.UPDATE,
        changed_fields=[spec.warp_field],
        occurred_at=at,
        trigger_source="convergence-test",
        triggered_by_user=None,
    )
    return encode_push_envelope(change, uuid.uuid4().hex)


def push(
    http: httpx.Client, url: str, body: bytes, counters: Counters, timeout: float = 30
) -> None:
    """Deliver a push the way Pub/Sub does: again after any non-2xx answer, until acked."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = http.post(url, content=body, headers={"Content-Type": "application/json"})
            if response.status_code < 300:
                counters.deliveries += 1
                return
        except httpx.TransportError:
            pass
        counters.redeliveries += 1
        if time.monotonic() > deadline:
            raise AssertionError("outbound_sync never acknowledged a change message")
        time.sleep(_POLL)  # Pub/Sub's redelivery backoff, shortened


def edit_hubspot(
    stack: LocalStack, object_id: str, spec: FieldSpec, value: str, *, announce: bool = True
) -> dict[str, Any]:
    """A person edits one property in the HubSpot UI; the webhook event HubSpot sends for it.

    ``announce=False``: the emulator queues no webhook for this edit (HubSpot gave up on
    it, or holds it back); the caller may deliver the returned event itself, when and in
    what order it likes (:func:`deliver_webhook`). Only our own writes, whose webhooks are
    echoes, can be dropped with it meanwhile.
    """
    emulator = stack.emulator
    assert emulator is not None
    subscriptions = emulator.webhooks.subscriptions
    if not announce:
        emulator.webhooks.configure(subscriptions=set())
    try:
        changed = emulator.ui_change(spec.object_type, object_id, {spec.prop: value})
    finally:
        emulator.webhooks.configure(subscriptions=subscriptions)
    assert spec.prop in changed
    history = emulator.snapshot(spec.object_type, object_id)["propertiesWithHistory"]
    latest = history[spec.prop][0]
    at = parse_datetime(latest["timestamp"])
    assert at is not None
    kind = f"{'company' if spec.object_type == 'companies' else 'contact'}.propertyChange"
    return {
        "eventId": uuid.uuid4().int % 10**9,
        "subscriptionId": 7_100,
        "portalId": emulator.webhooks.portal_id,
        "appId": emulator.webhooks.app_id,
        "occurredAt": int(at.timestamp() * 1000),
        "subscriptionType": kind,
        "attemptNumber": 0,
        "objectId": int(object_id),
        "propertyName": spec.prop,
        "propertyValue": latest["value"],
        "changeSource": "CRM_UI",
        "sourceId": latest.get("sourceId") or "userId:1",
    }


def event_time(event: dict[str, Any]) -> datetime:
    """When HubSpot says the change of ``event`` happened."""
    return datetime.fromtimestamp(event["occurredAt"] / 1000, tz=UTC)


def after_ms(at: datetime) -> None:
    """Return once HubSpot's clock (the wall clock, in ms) has passed ``at``.

    Two edits in one millisecond carry one ``occurredAt``: which came first is then
    unknowable from the events, and a test of their order needs them apart.
    """
    stamp = int(at.timestamp() * 1000)
    _wait(lambda: int(time.time() * 1000) > stamp, "the clock did not move", 5.0)


def deliver_webhook(http: httpx.Client, stack: LocalStack, events: list[dict[str, Any]]) -> None:
    """POST one signed v3 batch to the receiver as HubSpot does; again until it is taken."""
    emulator = stack.emulator
    assert emulator is not None
    url = stack.webhook_url
    secret = emulator.webhooks.client_secret
    assert secret
    body = json.dumps(events, separators=(",", ":")).encode()

    def post() -> bool:
        timestamp = int(time.time() * 1000)
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": sign_v3(secret, "POST", url, body, timestamp),
            "X-HubSpot-Request-Timestamp": str(timestamp),
        }
        try:
            return http.post(url, content=body, headers=headers).status_code < 300
        except httpx.TransportError:
            return False

    _wait(post, "the webhook receiver never took a batch", 30.0)


def kill_connections(engine: Engine) -> int:
    """Terminate every other backend of the test database (mid-work, as a failover would)."""

    def run() -> int:
        with engine.database.transaction() as tx:
            return int(
                tx.fetch_value(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                    "FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )

    return retrying(run)


def _wait(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise NotSettled(f"{what} within {timeout:.0f} s")
        time.sleep(_POLL)  # polling a condition, not timing an outcome


def _idle(stack: LocalStack) -> bool:
    dispatcher = stack.dispatcher
    assert isinstance(dispatcher, InProcessDispatcher) and stack.emulator is not None
    if dispatcher.pending() or not stack.emulator.webhooks.wait_idle(0):
        return False
    try:
        return read_backlog(stack.require_engine().database).quiet
    except Exception:  # a connection we killed: ask again
        return False


def drain(stack: LocalStack, timeout: float = 60.0) -> None:
    """Deliver every webhook, run every task now, until no work is left anywhere."""
    assert stack.emulator is not None and isinstance(stack.dispatcher, InProcessDispatcher)
    dispatcher = stack.dispatcher

    def quiet() -> bool:
        stack.emulator.webhooks.flush()  # type: ignore[union-attr]
        dispatcher.run_due_now()
        dispatcher.wait_idle(1.0)
        if dispatcher.pending(horizon=0) == 0:
            _expire_leases(stack)
        return _idle(stack) and _idle(stack)  # twice: a task may have queued more work

    try:
        _wait(quiet, "queued work did not run out", timeout)
    except NotSettled as exc:
        raise NotSettled(f"{exc}: {backlog(stack)}") from None


def _expire_leases(stack: LocalStack) -> None:
    """Run out the leases of dirty rows that no running flush holds, and flush them.

    A lease is a timer, like the task backoff ``run_due_now`` skips: a flush whose
    transaction committed but whose answer was lost with a killed connection leaves
    its rows leased for five minutes, and production waits that out. A flush task
    whose every attempt lost its connection before taking its rows leaves them with
    no task at all; in production the next flush of any customer takes them (a flush
    takes every due row). Called only when no task runs, so no live flush holds rows.
    """
    engine = stack.require_engine()

    def run() -> int:
        with engine.database.transaction() as tx:
            tx.execute(
                f"UPDATE {outbound_dirty.TABLE} SET leased_until = NULL "
                "WHERE leased_until IS NOT NULL"
            )
            return outbound_dirty.pending_count(tx)

    if retrying(run):
        stack.require_engine().submit(Task(FLUSH_KIND, {}))


def backlog(stack: LocalStack) -> dict[str, Any]:
    """What is still waiting, everywhere (for a NotSettled message)."""
    assert stack.emulator is not None and isinstance(stack.dispatcher, InProcessDispatcher)
    database = stack.require_engine().database
    return {
        "tasks": stack.dispatcher.pending(),
        "webhooks": stack.emulator.webhooks.stats(),
        "tables": retrying(lambda: read_backlog(database)),
    }


def reconcile(http: httpx.Client, stack: LocalStack, timeout: float = 60.0) -> dict[str, Any]:
    """One FULL reconciliation through the reconciler function; its finished run."""
    engine = stack.require_engine()
    deadline = time.monotonic() + timeout
    while True:
        response = http.post(stack.url("reconciler"), json={"entity_type": "customer"})
        if response.status_code != 409 or time.monotonic() > deadline:
            break
        # A run started earlier (by a settle whose check failed) is still finishing.
        drain(stack, timeout=max(1.0, deadline - time.monotonic()))
    assert response.status_code in (200, 202), response.text
    run_id = response.json()["run"]["id"]
    finished: dict[str, Any] = {}

    def done() -> bool:
        assert isinstance(stack.dispatcher, InProcessDispatcher)
        stack.dispatcher.run_due_now()

        def read() -> Any:
            with engine.database.transaction() as tx:
                return tx.fetch_one(
                    "SELECT status, records_updated, errors_encountered, conflicts_detected "
                    "FROM accounts.hubspot_reconciliation_runs WHERE id = CAST(:id AS uuid)",
                    {"id": run_id},
                )

        row = retrying(read)
        assert row is not None
        finished.update(row)
        return row["status"] != "RUNNING"

    _wait(done, "the reconciliation run did not finish", timeout)
    return finished


def observe(engine: Engine, customer_id: str) -> dict[str, Outcome]:
    """Every field of one customer as it stands: both sides (canonical) and open conflicts."""

    def read() -> tuple[Any, set[str]]:
        with engine.database.transaction() as tx:
            row = customers.get(tx, customer_id)
            open_ = field_state.open_conflicts(tx, customer_id, limit=100)
        return row, {str(s["field_name"]) for s in open_}

    row, conflicts = retrying(read)
    assert row is not None
    found: dict[str, Outcome] = {}
    records: dict[str, dict[str, Any]] = {}
    for spec in FIELDS:
        mapping = _mapping(engine, customer_id, spec)
        key = "hubspot_company_id" if spec.entity == "customer" else "hubspot_contact_id"
        object_id = str(row["external_ids"][key])
        if object_id not in records:
            api = engine.hubspot.objects(spec.object_type)  # type: ignore[arg-type]
            props = [s.prop for s in FIELDS if s.object_type == spec.object_type]
            records[object_id] = dict(api.get(object_id, properties=props).properties)
        warp = mapping.canonical_hubspot(mapping.to_hubspot(mapping.read_warp(row)))
        hub = mapping.canonical_hubspot(records[object_id].get(spec.prop))
        found[spec.name] = Outcome(warp, hub, spec.name in conflicts)
    return found


def observe_warp(engine: Engine, customer_id: str, spec: FieldSpec) -> str:
    """One field's WARP value as it stands, in the model's form (no HubSpot call: faults
    may be on)."""
    row = retrying(partial(customer_row, engine, customer_id))
    mapping = _mapping(engine, customer_id, spec)
    return mapping.canonical_hubspot(mapping.to_hubspot(mapping.read_warp(row)))


def _mapping(engine: Engine, customer_id: str, spec: FieldSpec) -> FieldMapping:
    et = EntityType(spec.entity)
    (mapping,) = [m for m in engine.mapping_for(customer_id, et).active() if m.name == spec.name]
    return mapping


def write_calls(stack: LocalStack) -> int:
    """HubSpot write calls of ours so far (companies and contacts, batch or single)."""
    assert stack.emulator is not None
    calls = stack.emulator.stats()["calls"]
    return sum(int(calls.get(key, 0)) for key in WRITE_CALLS)


def our_writes(stack: LocalStack, object_type: str, object_id: str) -> dict[str, list[str]]:
    """Per property, the values our app wrote to this record (HubSpot's history)."""
    assert stack.emulator is not None
    app = str(stack.emulator.app_id)
    history = stack.emulator.snapshot(object_type, object_id).get("propertiesWithHistory") or {}
    return {
        prop: [
            h["value"] for h in entries if h["sourceType"] == "INTEGRATION" and h["sourceId"] == app
        ]
        for prop, entries in history.items()
    }


def customer_row(engine: Engine, customer_id: str) -> dict[str, Any]:
    """The customer's row as it is now."""
    with engine.database.transaction() as tx:
        row = customers.get(tx, customer_id)
    assert row is not None
    return dict(row)
