"""One delivery of a WARP change message: validated, deduplicated, handed to the flush.

A change is not pushed to HubSpot here. The customer is marked dirty
(``hubspot_outbound_dirty``, merging with other pending changes of it) and a
flush is asked for: at once for the first change of a moment, else a short while
later under a name shared by every message of that moment, so a lone change
arrives at once and a burst becomes a few batch writes (:func:`schedule_flush`).
The delivery is acknowledged once the dirty mark and the message's record are
committed: that is the hand-off. The message id is claimed before; a failed hand-off
(answered 503) forgets it, so the redelivery runs again, while a redelivery of a
completed message is answered as a duplicate. A flush that cannot be asked for after
the hand-off is logged; the sweep's flush of overdue customers pushes the change.

A message that cannot be read is recorded (log line, and its idempotency record
when its id is known) and acknowledged: redelivering the same bytes cannot help.
Deletes are handled at once (:mod:`shared.outbound.deletes`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import shared.tasks.kinds  # noqa: F401  (the flush task's handler must be registered)
from shared import pause
from shared.db import Row, Session
from shared.db.repositories import customers, field_state, outbound_dirty
from shared.engine.deps import Engine
from shared.idempotency import AlreadyInProgress, PostgresPersistence, Status, payload_hash
from shared.links import linked_id
from shared.mapping import EntityType, MappingSet
from shared.messages import MalformedMessage, MessageDelivery, Operation, parse_delivery
from shared.observability.redaction import describe_error
from shared.outbound.deletes import close_deleted_customer
from shared.outbound.fields import outbound_fields, stored_fields
from shared.tasks import Task, task_name

log = logging.getLogger("warp_hubspot_sync.outbound")

FLUSH_KIND = "outbound_flush"
KEY_PREFIX = "pubsub:"
# Pub/Sub keeps an unacknowledged message for up to 7 days: remember ids that long.
REMEMBER_FOR = timedelta(days=7)
CLAIM_LEASE = timedelta(minutes=5)
_CLAIM_ATTEMPTS = 3


@dataclass(frozen=True)
class Receipt:
    """What became of one delivery. Every outcome is acknowledged (2xx)."""

    message_id: str | None
    outcome: str  # accepted | duplicate | skipped | closed | rejected | failed
    reason: str = ""
    customer_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON answer of ``outbound_sync``."""
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


def receive(engine: Engine, body: bytes, headers: Mapping[str, str]) -> Receipt:
    """Handle one push (or CloudEvent) delivery; raise a retryable error to get it again."""
    try:
        delivery = parse_delivery(body, headers)
    except MalformedMessage as exc:
        return _reject(engine, getattr(exc, "message_id", None), str(exc))
    change = delivery.change
    persistence = PostgresPersistence(engine.database)
    key = KEY_PREFIX + delivery.message_id
    fingerprint = payload_hash(change.model_dump(mode="json"))
    for _ in range(_CLAIM_ATTEMPTS):
        claim = persistence.claim(key, fingerprint, expires_after=REMEMBER_FOR, lease=CLAIM_LEASE)
        if claim.claimed or claim.existing is not None:
            break
    if not claim.claimed:
        existing = claim.existing
        if existing is None or existing.status is not Status.COMPLETED:
            raise AlreadyInProgress(key)  # another instance holds it: Pub/Sub redelivers later
        reason = "message id seen before"
        if existing.payload_hash != fingerprint:
            reason = "message id seen before with a different payload; ignored"
            log.error("message id reused", extra={"fields": {"message_id": delivery.message_id}})
        return Receipt(delivery.message_id, "duplicate", reason, str(change.entity_id))
    try:
        receipt = _handle(engine, delivery)
    except BaseException:
        persistence.delete(key)
        raise
    record = {
        **receipt.as_dict(),
        "occurred_at": change.occurred_at.isoformat(),
        "trigger_source": change.trigger_source,
        "triggered_by_user": change.triggered_by_user,
        "operation": change.operation.value,
    }
    persistence.complete(key, record, expires_after=REMEMBER_FOR)
    if receipt.outcome == "accepted":
        # After the record: the flush may run at once, and it reads who sent the message
        # from it. The change is handed off already (its dirty mark is committed): when
        # no flush can be asked for now, the sweep's flush of overdue customers pushes
        # it within a minute, and a redelivery would only be a duplicate.
        try:
            schedule_flush(engine)
        except Exception as exc:
            log.warning(
                "change message handled, but no flush could be scheduled; the sweep "
                "pushes the customer",
                extra={
                    "fields": {
                        "message_id": delivery.message_id,
                        "customer_id": receipt.customer_id,
                        "error": describe_error(exc),
                    }
                },
            )
    log.info(
        "change message handled",
        extra={
            "fields": {
                "message_id": delivery.message_id,
                "customer_id": receipt.customer_id,
                "outcome": receipt.outcome,
                "reason": receipt.reason,
                "operation": change.operation.value,
                "delivery_attempt": delivery.delivery_attempt,
            }
        },
    )
    return receipt


def _handle(engine: Engine, delivery: MessageDelivery) -> Receipt:
    change = delivery.change
    customer_id = str(change.entity_id)
    mid = delivery.message_id
    if change.operation is Operation.DELETE:
        # A delete writes HubSpot at once and has no dirty mark to wait in: while
        # paused it is refused (retryable, so Pub/Sub delivers it again later).
        pause.check(engine)
        result = close_deleted_customer(
            engine,
            customer_id,
            triggered_by=triggered_by(change.trigger_source),
            triggered_by_user=change.triggered_by_user,
        )
        return Receipt(mid, result["outcome"], result.get("reason", ""), customer_id)
    mappings = mappings_of(engine, customer_id)
    with engine.database.transaction() as tx:
        outcome, reason = accept_change(
            tx, mappings, customer_id, change.changed_fields, change.occurred_at, mid
        )
    return Receipt(mid, outcome, reason, customer_id)


class Accepted(StrEnum):
    """Whether a WARP change was handed to the flush (the values are Receipt outcomes)."""

    ACCEPTED = "accepted"
    SKIPPED = "skipped"


def mappings_of(engine: Engine, customer_id: str) -> dict[EntityType, MappingSet]:
    """The mapping in force for one customer, per entity type."""
    return {et: engine.mapping_for(customer_id, et) for et in EntityType}


def accept_change(
    tx: Session,
    mappings: Mapping[EntityType, MappingSet],
    customer_id: str,
    changed_fields: Collection[str],
    occurred_at: datetime,
    message_id: str | None = None,
    *,
    field_times: bool = True,
) -> tuple[Accepted, str]:
    """Hand one WARP change to the flush: mark the customer dirty; (outcome, reason).

    The one path of every way a change arrives (a message, a captured change, a row
    of WARP's queue), so the changes of one customer merge into one dirty row and one
    HubSpot write. ``changed_fields`` uses WARP's names (empty: every field).
    ``field_times`` records ``occurred_at`` as WARP's time of each field named: off
    for a change that names no field, whose time belongs to none in particular.
    """
    fields = outbound_fields(mappings.values(), changed_fields)
    if fields is not None and not fields:
        return Accepted.SKIPPED, "no outbound field among changed_fields"
    row = customers.get(tx, customer_id)
    if row is None:
        return Accepted.SKIPPED, "customer not found in WARP"
    if row.get("hubspot_sync_enabled") is False:
        return Accepted.SKIPPED, "hubspot_sync_enabled is false"
    outbound_dirty.mark(tx, customer_id, stored_fields(fields), message_id, changed_at=occurred_at)
    if field_times:
        _record_warp_times(tx, row, mappings, fields, occurred_at)
    return Accepted.ACCEPTED, ""


def _record_warp_times(
    tx: Session,
    row: Row,
    mappings: Mapping[EntityType, MappingSet],
    fields: set[str] | None,
    occurred_at: datetime,
) -> None:
    """Record the message's time as WARP's change time of each field it names.

    LATEST_WINS then compares each field's own WARP time, which the sync's writes to
    WARP never move (``shared.conflicts.warp_time``). Written after the dirty mark, in
    the same transaction, so two messages of one customer take turns on its rows. An
    entity not linked yet has no field states to stand beside: its first sync, right
    after the flush links it, takes the message's time for the whole customer.
    """
    customer_id = str(row["id"])
    # In the key order field_state.upsert_many writes in (entity type by name, then
    # field), so a sync recording this customer's states cannot deadlock with us: a
    # captured INSERT names every field of both entity types.
    for et, mapping in sorted(mappings.items(), key=lambda item: item[0].value):
        object_id = linked_id(row, et)
        if object_id is None:
            continue
        names = {f.name for f in mapping.outbound() if fields is None or f.name in fields}
        field_state.record_warp_changes(tx, et.value, customer_id, object_id, names, occurred_at)


def schedule_flush(engine: Engine) -> bool:
    """Flush now if nothing is pending, else join the moment's flush.

    A debounce with a leading edge: time is cut into windows of
    ``COALESCE_DELAY_SECONDS``. The first change of a window claims it (one row in
    the idempotency table, shared by every instance) and, unless the window before
    still has its flush pending or running, flushes at once: a lone change reaches
    HubSpot without waiting out the window. Every other change of the window names
    the same task, due just after the window ends, so a burst costs one flush per
    window (each flush writes 100 customers per batch call). With a delay of 0 every
    change flushes at once. Returns False when the flush it asked for was scheduled
    already.
    """
    delay = engine.settings.coalesce_delay_seconds
    if delay <= 0:
        return engine.submit(Task(FLUSH_KIND, {}))
    now = time.time()
    bucket = math.floor(now / delay)
    persistence = PostgresPersistence(engine.database)
    lifetime = timedelta(seconds=3 * delay)
    first = persistence.claim(
        _window_key("first", delay, bucket), None, expires_after=lifetime, lease=lifetime
    )
    if first.claimed and not _flush_outstanding(persistence, delay, bucket - 1):
        # The claim makes it one per window: the task needs no name.
        return engine.submit(Task(FLUSH_KIND, {"bucket": bucket}))
    # The window's own flush, recorded until it has run (see _flush_outstanding).
    persistence.claim(
        _window_key("window", delay, bucket), None, expires_after=lifetime, lease=lifetime
    )
    # A tenth of a window of grace: a mark committed at the window's very end is in.
    due = (bucket + 1.1) * delay
    task = Task(
        FLUSH_KIND,
        {"bucket": bucket, "trailing": True},
        delay_seconds=due - now,
        name=task_name(FLUSH_KIND, delay, bucket),
    )
    return engine.submit(task)


def window_flushed(engine: Engine, bucket: int) -> None:
    """Record that the flush of window ``bucket`` has run (its task calls this)."""
    delay = engine.settings.coalesce_delay_seconds
    PostgresPersistence(engine.database).complete(
        _window_key("window", delay, bucket), None, expires_after=timedelta(seconds=3 * delay)
    )


def _flush_outstanding(persistence: PostgresPersistence, delay: float, bucket: int) -> bool:
    """Whether window ``bucket`` asked for its flush and that flush has not run yet."""
    record = persistence.get(_window_key("window", delay, bucket))
    return record is not None and record.status is not Status.COMPLETED


def _window_key(what: str, delay: float, bucket: int) -> str:
    return f"{FLUSH_KIND}:{what}:{delay}:{bucket}"


def triggered_by(trigger_sources: str | Collection[str]) -> str:
    """The sync log's ``triggered_by`` for changes from these WARP sources."""
    sources = {trigger_sources} if isinstance(trigger_sources, str) else set(trigger_sources)
    return f"pubsub:{next(iter(sources))}"[:100] if len(sources) == 1 else "pubsub"


def delivery_records(engine: Engine, message_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What :func:`receive` recorded for these (completed) messages, by message id."""
    if not message_ids:
        return {}
    table = PostgresPersistence.table
    with engine.database.transaction() as tx:
        rows = tx.fetch(
            f"SELECT key, response FROM {table} WHERE key = ANY(CAST(:keys AS text[])) "
            "AND status = 'COMPLETED'",
            {"keys": [KEY_PREFIX + m for m in message_ids]},
        )
    return {
        r["key"].removeprefix(KEY_PREFIX): r["response"]
        for r in rows
        if isinstance(r["response"], dict)
    }


def _reject(engine: Engine, message_id: str | None, reason: str) -> Receipt:
    """Acknowledge an unreadable message, recording why (a poison message must not loop)."""
    log.error(
        "change message rejected",
        extra={"fields": {"message_id": message_id, "reason": reason}},
    )
    if message_id is not None:
        persistence = PostgresPersistence(engine.database)
        key = KEY_PREFIX + message_id
        claim = persistence.claim(key, None, expires_after=REMEMBER_FOR, lease=CLAIM_LEASE)
        if claim.claimed:
            persistence.complete(
                key, {"outcome": "rejected", "reason": reason}, expires_after=REMEMBER_FOR
            )
    return Receipt(message_id, "rejected", reason)
