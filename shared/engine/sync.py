"""Syncing linked customers with HubSpot in batches: the step every flow shares.

For up to 100 customers at a time: lock them (so two invocations take turns on a
customer), load rows and field states, batch-read their companies and contacts
with what the conflict rules need, plan every field, batch-write HubSpot, then
record WARP's writes, states and the sync log in the same transaction. A record
HubSpot refused (a 207 error) is reported for that customer alone; a failure of
a whole call (429 after the client's own retries, 5xx, timeout) raises, so the
caller retries the batch: the plans are recomputed from fresh reads, and what
already reached HubSpot then compares equal, so a retry never writes twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Literal, Protocol

from shared.capture.pending import Pending, field_times, pending_changes
from shared.conflicts import Action, FieldState
from shared.db import Row, Session
from shared.db.repositories import customers, field_state, sync_queue
from shared.engine.deps import Engine
from shared.engine.plan import ALL_ACTIONS, Plan, plan_order, plan_sync
from shared.engine.record import (
    PlanCommit,
    commit_plans,
    log_plan,
    record_pending_writes,
    states_by_field,
)
from shared.engine.relink import linked_to, set_link
from shared.engine.snapshots import (
    history_properties,
    hubspot_snapshot,
    ids_to_read,
    read_properties,
    warp_snapshot,
)
from shared.errors import SyncError, WarpChangedDuringSync
from shared.hubspot import PendingBatch
from shared.hubspot.models import HubSpotObject
from shared.links import MergeLink, carries_customer, decide_merge_links, linked_id
from shared.mapping import EntityType, MappingSet
from shared.memory import fewer_collections

log = logging.getLogger("warp_hubspot_sync.engine")

BATCH = 100
# Customers whose rows WARP's application changed under a chunk are planned again at
# once; after this many tries they fail with a retryable error (the caller's retry).
CHUNK_ATTEMPTS = 3
ENTITIES = (EntityType.CUSTOMER, EntityType.CONTACT)

TO_HUBSPOT = frozenset({Action.WRITE_HUBSPOT})
FROM_HUBSPOT = frozenset({Action.WRITE_WARP})
BOTH_WAYS = ALL_ACTIONS

# Called inside a chunk's transaction after its writes: progress recorded with them.
ChunkHook = Callable[[Session, Sequence["CustomerSync"]], None]

Status = Literal["synced", "in_sync", "conflict", "not_linked", "missing", "failed", "not_found"]


@dataclass
class CustomerSync:
    """The outcome for one customer: a plan per entity, and what stopped it if anything."""

    customer_id: str
    plans: dict[EntityType, Plan] = field(default_factory=dict)
    missing: list[EntityType] = field(default_factory=list)
    # Links moved to the record HubSpot merged the linked one into: entity -> new id.
    relinked: dict[EntityType, str] = field(default_factory=dict)
    error: SyncError | None = None
    log_ids: list[str] = field(default_factory=list)
    found: bool = True

    @property
    def status(self) -> Status:
        """One word for reports and API answers."""
        if not self.found:
            return "not_found"
        if self.error is not None:
            return "failed"
        if any(p.conflicts for p in self.plans.values()):
            return "conflict"
        if any(p.changed for p in self.plans.values()) or self.relinked:
            return "synced"
        if self.missing:
            return "missing"
        if not self.plans:
            return "not_linked"
        return "in_sync"


def lock_customers(tx: Session, customer_ids: Iterable[str]) -> None:
    """Take a transaction-level advisory lock per customer, in one sorted order.

    Every flow that writes a customer's fields takes these first, so concurrent
    invocations never interleave on one customer and never deadlock.
    """
    ids = sorted({str(i) for i in customer_ids})
    if ids:
        tx.fetch_value(
            "SELECT count(pg_advisory_xact_lock(k)) FROM ("
            " SELECT hashtextextended(i, 8410) AS k FROM unnest(CAST(:ids AS text[])) AS i"
            " ORDER BY 1) AS ordered",
            {"ids": ids},
        )


def sync_customers(
    engine: Engine,
    customer_ids: Sequence[str],
    *,
    allowed: Collection[Action] = BOTH_WAYS,
    triggered_by: str,
    triggered_by_user: str | None = None,
    fields: Mapping[str, Collection[str]] | None = None,
    warp_times: Mapping[str, datetime] | None = None,
    operation: str = "UPDATE",
    dry_run: bool = False,
    record_noop: bool = False,
    on_chunk: ChunkHook | None = None,
    batch_size: int = BATCH,
) -> list[CustomerSync]:
    """Bring these linked customers in step with HubSpot, ``batch_size`` at a time.

    ``fields`` limits a customer to some fields (an outbound message's
    ``changed_fields``); ``warp_times`` gives WARP's modification time per customer
    (a message's ``occurred_at``) for fields that have no time of their own
    (:func:`shared.engine.snapshots.warp_snapshot`). ``dry_run`` plans and reports
    but writes nothing.
    ``on_chunk(tx, outcomes)`` runs in each chunk's transaction after its writes (in
    a dry run too), so a caller's checkpoint commits with them or not at all; an
    exception it raises rolls the chunk's WARP writes back. A chunk is one
    transaction; its reads and writes still go 100 records per call, so a larger
    chunk (reconciliation) gathers sparse drift into fewer, fuller batch updates.
    """
    results: list[CustomerSync] = []
    unique = list(dict.fromkeys(str(i) for i in customer_ids))
    sync_chunk = partial(
        _sync_chunk,
        engine,
        allowed=frozenset(allowed),
        triggered_by=triggered_by,
        triggered_by_user=triggered_by_user,
        fields=fields or {},
        warp_times=warp_times or {},
        operation=operation,
        dry_run=dry_run,
        record_noop=record_noop,
        on_chunk=on_chunk,
    )
    with fewer_collections():
        for start in range(0, len(unique), batch_size):
            results.extend(sync_chunk(unique[start : start + batch_size]))
    return results


def _sync_chunk(
    engine: Engine,
    chunk: list[str],
    *,
    allowed: frozenset[Action],
    triggered_by: str,
    triggered_by_user: str | None,
    fields: Mapping[str, Collection[str]],
    warp_times: Mapping[str, datetime],
    operation: str,
    dry_run: bool,
    record_noop: bool,
    on_chunk: ChunkHook | None,
) -> list[CustomerSync]:
    with engine.database.transaction() as tx:
        lock_customers(tx, chunk)
        # After the locks: a sync that waited for another is logged as starting after it.
        started = engine.now()
        mappings = {(cid, et): engine.mapping_for(cid, et) for cid in chunk for et in ENTITIES}
        # What a sync reads of a row: the mapped columns, the links and WARP's row time
        # (reconciliation: 10,000 rows in 0.18 s instead of 0.31 s for every column).
        columns = {"external_ids", "updated_at"}
        columns.update(
            m.warp_column for fields in mappings.values() for m in fields.fields.values()
        )
        rows = {str(r["id"]): r for r in customers.get_many(tx, chunk, columns)}
        mappings = {key: fields for key, fields in mappings.items() if key[0] in rows}
        # HubSpot's pages arrive while the states load and the first customers plan.
        records = _read_all(engine, rows, mappings)
        state_rows = field_state.decision_states(tx, list(rows))
        captured = pending_changes(tx, rows)  # after the rows: see shared.capture.pending
        outcome = {cid: CustomerSync(cid, found=cid in rows) for cid in chunk}
        merges: dict[tuple[str, EntityType], tuple[str, bool]] = {}
        plan_rows = partial(
            _plan_rows,
            merges=merges,
            mappings=mappings,
            state_rows=state_rows,
            captured=captured,
            outcome=outcome,
            fields=fields,
            warp_times=warp_times,
            allowed=allowed,
        )
        carry_out = partial(
            _carry_out,
            engine,
            tx,
            merges=merges,
            mappings=mappings,
            outcome=outcome,
            operation=operation,
            triggered_by=triggered_by,
            triggered_by_user=triggered_by_user,
            started=started,
            record_noop=record_noop,
            fields=fields,
            allowed=allowed,
        )
        plan_timed = partial(_plan_timed, engine, plan_rows, mappings=mappings, outcome=outcome)
        done: dict[tuple[str, EntityType], Plan] = {}
        for attempt in range(1, CHUNK_ATTEMPTS + 1):
            plans = plan_timed(rows, records, now=engine.now())
            if dry_run:
                break
            changed = set(carry_out(plans, rows, now=engine.now()))
            last = attempt == CHUNK_ATTEMPTS
            done.update((key, p) for key, (p, _) in plans.items() if last or key[0] not in changed)
            if not changed:
                break
            if last:
                for cid in changed:
                    outcome[cid].error = WarpChangedDuringSync(cid)
                break
            # WARP's application wrote these rows after they were read: nothing of theirs
            # was recorded. Plan them again on fresh reads of both sides (what our writes
            # already put in HubSpot then compares equal).
            log.info(
                "WARP changed customers during the sync; planning them again",
                extra={"fields": {"customer_count": len(changed)}},
            )
            rows = {str(r["id"]): r for r in customers.get_many(tx, sorted(changed), columns)}
            outcome.update((cid, CustomerSync(cid, found=cid in rows)) for cid in changed)
            records = _read_all(engine, rows, mappings)
        if on_chunk is not None:
            on_chunk(tx, list(outcome.values()))
    if dry_run:
        return list(outcome.values())
    elapsed_ms = (engine.now() - started).total_seconds() * 1000
    for (cid, et), done_plan in done.items():
        log_plan(
            done_plan,
            entity_type=et,
            customer_id=cid,
            operation=operation,
            duration_ms=elapsed_ms,
            error=outcome[cid].error,
            triggered_by=triggered_by,
        )
    return list(outcome.values())


Plans = dict[tuple[str, EntityType], tuple[Plan, dict[str, FieldState]]]


class Records(Protocol):
    """Records read from HubSpot, by the id they were asked for."""

    def get(self, key: str) -> HubSpotObject | None: ...


@dataclass(frozen=True)
class _WithHistory:
    """The records read again with property history, else those of the first read."""

    timed: PendingBatch
    first: Records

    def get(self, key: str) -> HubSpotObject | None:
        return self.timed.get(key) or self.first.get(key)


def _plan_timed(
    engine: Engine,
    plan_rows: Callable[..., Plans],
    rows: Mapping[str, Row],
    records: Mapping[EntityType, Records],
    *,
    now: datetime,
    mappings: Mapping[tuple[str, EntityType], MappingSet],
    outcome: dict[str, CustomerSync],
) -> Plans:
    """Plan on records read without property history; where a plan needs it, read those
    records again with history and plan their customers again on it.

    HubSpot gives property history for 50 records a call at most (docs/hubspot.md,
    item 1), and only two kinds of decision need it (:attr:`Plan.needs_history`): a
    LATEST_WINS decision between two differing values needs a property's own time,
    and HubSpot's value taken on a two-way field it does not own needs its writer
    (HubSpot's own writes are not edits); fields in sync never do. So every record is
    read 100 a call, and history is asked for only the few that need it, 50 a call;
    the first plan's fallback time (the record's last-modified time) never decides.
    """
    plans = plan_rows(rows, records, now=now)
    timed = sorted(key for key, (plan, _) in plans.items() if plan.needs_history)
    if not timed:
        return plans
    again = {cid for cid, _ in timed}
    with_history: dict[EntityType, Records] = {
        et: _WithHistory(
            _read(engine, et, [rows[cid] for cid, e in timed if e is et], mappings, history=True),
            records[et],
        )
        for et in ENTITIES
    }
    for cid in again:
        outcome[cid] = CustomerSync(cid)
    replanned = plan_rows({c: r for c, r in rows.items() if c in again}, with_history, now=now)
    return {**{k: v for k, v in plans.items() if k[0] not in again}, **replanned}


def _plan_rows(
    rows: Mapping[str, Row],
    records: Mapping[EntityType, Records],
    *,
    now: datetime,
    mappings: Mapping[tuple[str, EntityType], MappingSet],
    state_rows: Mapping[tuple[str, str], list[list[Any]]],
    captured: Mapping[str, Pending],
    outcome: Mapping[str, CustomerSync],
    fields: Mapping[str, Collection[str]],
    warp_times: Mapping[str, datetime],
    allowed: frozenset[Action],
    merges: dict[tuple[str, EntityType], tuple[str, bool]],
) -> Plans:
    """Each linked record's plan, with the states it was decided from.

    ``merges`` receives the linked records HubSpot answered under a new id (merged).
    """
    plans: Plans = {}
    # Customers share few mapping sets (the global ones, some overrides): one order each.
    orders: dict[tuple[int, ...], list[EntityType]] = {}
    for cid, row in rows.items():
        sets = {et: mappings[(cid, et)] for et in ENTITIES}
        key = tuple(id(m) for m in sets.values())
        order = orders.get(key)
        if order is None:
            order = orders[key] = plan_order(sets)
        for et in order:
            object_id = linked_id(row, et)
            if object_id is None:
                continue
            record = records[et].get(object_id)
            if record is None or record.archived:
                outcome[cid].missing.append(et)
                continue
            if record.id != object_id:
                # Merged in HubSpot: the old id answered with the new record. The plan
                # is made against it; _carry_out moves the link (or flags a clash).
                merges[(cid, et)] = (record.id, carries_customer(record, row, et))
            previous = states_by_field(
                state_rows.get((cid, et.value), []),
                field_times(captured[cid], sets[et]) if cid in captured else None,
            )
            plan = plan_sync(
                sets[et],
                warp_snapshot(row, previous, modified_at=warp_times.get(cid)),
                hubspot_snapshot(record, et),
                previous,
                now=now,
                fields=fields.get(cid),
                allowed=allowed,
            )
            outcome[cid].plans[et] = plan
            plans[(cid, et)] = (plan, previous)
            if plan.warp_updates:
                # The next entity plans on top of these writes: a value it derives from
                # them is decided from the new one (plan_order), and its writes to the
                # same (JSONB) column keep both in the last document.
                row = {**row, **plan.warp_updates}
    return plans


def _carry_out(
    engine: Engine,
    tx: Session,
    plans: Plans,
    rows: Mapping[str, Row],
    *,
    now: datetime,
    merges: dict[tuple[str, EntityType], tuple[str, bool]],
    mappings: Mapping[tuple[str, EntityType], MappingSet],
    outcome: Mapping[str, CustomerSync],
    operation: str,
    triggered_by: str,
    triggered_by_user: str | None,
    started: datetime,
    record_noop: bool,
    fields: Mapping[str, Collection[str]],
    allowed: frozenset[Action],
) -> list[str]:
    """Write HubSpot, then record; the customers WARP changed under the plans (not recorded)."""
    moves = _merge_links(tx, merges, rows)
    for link, et in moves:
        if not link.keep:  # the merged record is another customer's: not synced to it
            plans.pop((link.customer_id, et), None)
            outcome[link.customer_id].plans.pop(et, None)
    failed = _write_hubspot(engine, plans, outcome)
    to_commit = [
        PlanCommit(plan, mappings[(cid, et)], et, cid, previous, rows[cid])
        for (cid, et), (plan, previous) in plans.items()
        if cid not in failed
    ]
    committed = commit_plans(
        tx,
        to_commit,
        now=now,
        operation=operation,
        triggered_by=triggered_by,
        triggered_by_user=triggered_by_user,
        started_at=started,
        record_noop=record_noop,
        sealer=engine.sealer,
    )
    for item, log_id in zip(to_commit, committed.log_ids, strict=True):
        if log_id:
            outcome[item.customer_id].log_ids.append(log_id)
    left_out = failed | set(committed.changed)
    for link, et in moves:
        if link.customer_id in left_out and link.keep:
            continue  # planned again on a fresh read, or retried: the link moves then
        set_link(
            tx,
            customer_id=link.customer_id,
            entity_type=et,
            object_id=link.new_id if link.keep else None,
            old_id=link.old_id,
            operation=operation,
            why=link.why(et),
            now=now,
            triggered_by=triggered_by,
            review=not link.keep,
        )
        if link.keep:
            outcome[link.customer_id].relinked[et] = link.new_id
        else:
            outcome[link.customer_id].missing.append(et)
    merges.clear()
    if Action.WRITE_HUBSPOT in allowed:
        _supersede_failed(tx, plans, fields, left_out, started=started)
    return committed.changed


def _merge_links(
    tx: Session, merges: Mapping[tuple[str, EntityType], tuple[str, bool]], rows: Mapping[str, Row]
) -> list[tuple[MergeLink, EntityType]]:
    """Who keeps each merged record: a customer already linked to it, else the first claim
    (the customer whose key the record carries, then by customer id)."""
    claims: dict[tuple[EntityType, str], list[tuple[str, str]]] = {}
    order = sorted(merges.items(), key=lambda item: (not item[1][1], item[0][0]))
    for (cid, et), (new_id, _) in order:
        old_id = linked_id(rows[cid], et)
        if old_id is not None:
            claims.setdefault((et, new_id), []).append((old_id, cid))
    return [
        (link, et)
        for (et, new_id), claimed in claims.items()
        for link in decide_merge_links(new_id, linked_to(tx, et, new_id), claimed)
    ]


# Queue rows a clean push of the same customer and fields makes pointless.
OUTBOUND_QUEUE_KINDS = ("outbound",)


def _supersede_failed(
    tx: Session,
    plans: Plans,
    fields: Mapping[str, Collection[str]],
    not_clean: set[str],
    *,
    started: datetime,
) -> None:
    """Close the FAILED outbound rows of customers this sync brought in step cleanly.

    Clean: both sides written and recorded, no field held in conflict. Such a row
    would only push again what HubSpot now holds; left FAILED it would wait for a
    person who has nothing to do.
    """
    held = {cid for (cid, _), (plan, _) in plans.items() if plan.conflicts}
    clean = {cid for cid, _ in plans} - not_clean - held
    synced = {cid: (list(fields[cid]) if cid in fields else None) for cid in clean}
    closed = sync_queue.supersede(
        tx,
        synced,
        kinds=OUTBOUND_QUEUE_KINDS,
        before=started,
        note=f"superseded: the customer synced cleanly at {started.isoformat()}",
    )
    for row in closed:
        log.info(
            "failed queue item superseded by a clean sync",
            extra={"fields": {"queue_id": str(row["id"]), "customer_id": str(row["entity_id"])}},
        )


def _read_all(
    engine: Engine, rows: Mapping[str, Row], mappings: Mapping[tuple[str, EntityType], MappingSet]
) -> dict[EntityType, Records]:
    """Start the batch reads (no property history) of these rows' linked records."""
    return {et: _read(engine, et, list(rows.values()), mappings) for et in ENTITIES}


def _read(
    engine: Engine,
    entity_type: EntityType,
    rows: list[Row],
    mappings: Mapping[tuple[str, EntityType], MappingSet],
    *,
    history: bool = False,
) -> PendingBatch:
    """Start reading these rows' ``entity_type`` records; ``history``: with the
    history of the properties whose decisions need it (``history_properties``)."""
    ids = ids_to_read(rows, entity_type)
    if not ids:
        return PendingBatch([], [])
    properties: set[str] = set()
    with_history: set[str] = set()
    for (_, et), mapping in mappings.items():
        if et is entity_type:
            properties.update(read_properties(mapping, entity_type))
            if history:
                with_history.update(history_properties(mapping))
    api = engine.hubspot.objects(entity_type.object_type)
    return api.start_batch_read(
        ids, properties=sorted(properties), properties_with_history=sorted(with_history)
    )


def _write_hubspot(
    engine: Engine,
    plans: Mapping[tuple[str, EntityType], tuple[Plan, Any]],
    outcome: Mapping[str, CustomerSync],
) -> set[str]:
    """Batch-update HubSpot; return the customers whose record HubSpot refused."""
    failed: set[str] = set()
    for et in ENTITIES:
        updates = {
            plan.object_id: plan.hubspot_updates
            for (cid, e), (plan, _) in plans.items()
            if e is et and plan.hubspot_updates
        }
        if not updates:
            continue
        by_object = {plan.object_id: cid for (cid, e), (plan, _) in plans.items() if e is et}
        record_pending_writes(
            engine.database,
            et,
            [(cid, plan) for (cid, e), (plan, _) in plans.items() if e is et],
            now=engine.now(),
        )
        api = engine.hubspot.objects(et.object_type)
        result = api.batch_update(updates)
        refused = result.failed_keys() | (set(updates) - set(result.results))
        for object_id in refused:
            cid = by_object.get(object_id)
            if cid is None:
                continue
            failed.add(cid)
            error = next(
                (e for e in result.errors if object_id in _keys(e)),
                SyncError(f"HubSpot did not confirm the update of {et.object_type} {object_id}"),
            )
            outcome[cid].error = error
    return failed


def _keys(error: Any) -> set[str]:
    context = getattr(error, "context", None) or {}
    keys: set[str] = set()
    for name in ("ids", "id", "objectWriteTraceId", "keys"):
        keys.update(str(v) for v in context.get(name) or [])
    return keys
