"""The management API's request and response bodies (pydantic), and its query parameters.

Request models forbid unknown keys, so a misspelt field is a 400 that names it
rather than a silently ignored option. The OpenAPI document's schemas are
generated from these classes (``shared/api/openapi.py``).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.engine.resolve import Resolution
from shared.fleet import SyncState
from shared.mapping import EntityType
from shared.reconcile.request import ReconcileRequest

__all__ = ["ReconcileRequest"]  # defined beside the reconciler, which reads it too

SyncStatus = Literal["synced", "in_sync", "conflict", "not_linked", "missing", "failed"]
LogStatus = Literal["PENDING", "IN_PROGRESS", "SUCCESS", "FAILED", "CONFLICT"]
LogDirection = Literal["WARP_TO_HUBSPOT", "HUBSPOT_TO_WARP", "BIDIRECTIONAL"]
QueueStatus = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"]
RunStatus = Literal["RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
OneWay = Literal["WARP_TO_HUBSPOT", "HUBSPOT_TO_WARP"]
_UUID = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
# A customer named in a path or query: its UUID, or "ban:" and its BAN.
CUSTOMER_REF_PATTERN = rf"^({_UUID}|ban:[!-.0-~]{{1,20}})$"
CUSTOMER_REF_DESCRIPTION = (
    'the customer\'s UUID, or its BAN as "ban:" and the BAN (e.g. ban:B-1234)'
)


# Each model builds its validator on first use, not at import: a request uses two or
# three of these thirty, and building all of them was a tenth of sync_api's cold start
# (bench/cold_start.py).
_LAZY = ConfigDict(defer_build=True)


class Request(BaseModel):
    """Base of request bodies and query parameters: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", **_LAZY)


class Answer(BaseModel):
    """Base of response bodies."""

    model_config = _LAZY


# --- errors ---------------------------------------------------------------------------


class Error(Answer):
    """Every error answer: what is wrong and, for a bad input, which field."""

    error: str
    field: str | None = Field(None, description="the request field or parameter at fault")
    retryable: bool | None = Field(None, description="whether the same call may succeed later")


# --- sync now -------------------------------------------------------------------------


class ChangedField(Answer):
    field: str
    entity_type: EntityType
    hubspot_property: str
    action: Literal["WRITE_HUBSPOT", "WRITE_WARP"]
    old: Any = Field(None, description="the value replaced on the written side")
    new: Any = Field(None, description="the value written")
    reason: str


class SkippedField(Answer):
    field: str
    entity_type: EntityType
    hubspot_property: str
    reason: str


class ConflictField(Answer):
    field: str
    entity_type: EntityType
    hubspot_property: str
    warp_value: Any = None
    hubspot_value: str | None = None
    reason: str


class SyncResult(Answer):
    """What a "sync now" did for one customer."""

    customer_id: UUID
    direction: Literal["to-hubspot", "from-hubspot"]
    status: SyncStatus
    changed: list[ChangedField]
    skipped: list[SkippedField]
    conflicts: list[ConflictField]
    missing: list[EntityType] = Field(
        description="entity types whose linked HubSpot record no longer exists"
    )
    linked: list[EntityType] = Field(description="entity types linked by this call")
    error: str | None = None
    log_ids: list[UUID]


# --- status, logs, conflicts ----------------------------------------------------------


class PauseState(Answer):
    paused: bool
    since: datetime | None = None
    by: str | None = None
    reason: str | None = None


class Links(Answer):
    hubspot_company_id: str | None
    hubspot_contact_id: str | None


class FieldSyncState(enum.StrEnum):
    """Where one field stands, so a person need not read meaning into null values."""

    NOT_CROSSED_YET = "not_crossed_yet"  # no value has crossed yet: the values are unknown
    CROSSED = "crossed"  # the values are what crossed last, at last_synced_at
    IN_CONFLICT = "in_conflict"  # held for resolve-conflict


class FieldStatus(Answer):
    field: str
    entity_type: EntityType
    state: FieldSyncState = Field(
        description="not_crossed_yet: no value has crossed between the systems yet (the next "
        "sync or reconcile of the customer carries it), so warp_value and hubspot_value are "
        "null for that reason, not because either side is empty"
    )
    mapped: bool = Field(description="false for a recorded field no longer in the mapping")
    hubspot_property: str | None
    warp_field: str | None
    sync_direction: str | None
    conflict_resolution: str | None
    warp_value: Any = None
    hubspot_value: Any = None
    last_synced_at: datetime | None = None
    last_synced_direction: str | None = None
    last_modified_at_warp: datetime | None = None
    last_modified_at_hubspot: datetime | None = None
    is_in_conflict: bool = False
    conflict_detected_at: datetime | None = None
    conflict_resolved_at: datetime | None = None


class CustomerStatus(Answer):
    customer_id: UUID
    company_name: str | None
    hubspot_sync_enabled: bool | None
    links: Links
    last_synced_to_hubspot: datetime | None
    last_synced_from_hubspot: datetime | None
    updated_at: datetime | None
    open_conflicts: int
    fields: list[FieldStatus]
    pause: PauseState = Field(description="while paused nothing is written to either side")


class LogEntry(Answer):
    id: UUID
    entity_type: str
    hubspot_object_id: str | None
    operation: str
    direction: str
    status: str
    fields_synced: Any = None
    field_changes: Any = None
    error_message: str | None
    retry_count: int | None
    started_at: datetime | None
    completed_at: datetime | None
    triggered_by: str | None
    triggered_by_user: str | None


class LogPage(Answer):
    items: list[LogEntry]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next (older) page")


class LogQuery(Request):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=200)
    status: LogStatus | None = None
    direction: LogDirection | None = None
    entity_type: EntityType | None = None


class OpenConflictOut(Answer):
    field: str
    entity_type: EntityType
    hubspot_object_id: str
    hubspot_property: str | None
    warp_field: str | None
    rule: str
    sync_direction: str
    warp_value: Any = None
    warp_modified_at: datetime | None
    hubspot_value: str | None
    hubspot_modified_at: datetime | None
    last_synced_warp_value: Any = None
    last_synced_hubspot_value: Any = None
    last_synced_at: datetime | None
    conflict_detected_at: datetime | None = Field(description="in conflict since")


class ConflictList(Answer):
    customer_id: UUID
    conflicts: list[OpenConflictOut]


class ResolveConflictRequest(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"resolution": {"const": "use_custom_value"}}},
            "then": {"required": ["value"]},
            "else": {"properties": {"value": {"type": "null"}}},
        },
    )

    field_name: str = Field(min_length=1, max_length=100)
    resolution: Resolution
    value: Any = Field(None, description="WARP's value to use; only with use_custom_value")

    @model_validator(mode="after")
    def _value_matches_resolution(self) -> ResolveConflictRequest:
        given = "value" in self.model_fields_set
        if self.resolution is Resolution.USE_CUSTOM_VALUE and not given:
            raise ValueError("value is required with use_custom_value")
        if self.resolution is not Resolution.USE_CUSTOM_VALUE and self.value is not None:
            raise ValueError("value is only used with use_custom_value")
        return self


class ResolveConflictResult(Answer):
    customer_id: UUID
    field: str
    entity_type: EntityType
    resolution: Resolution
    warp_value: Any = None
    hubspot_value: str
    wrote_hubspot: bool
    wrote_warp: bool
    resolved_at: datetime
    resolved_by: str | None
    log_id: UUID


# --- reconciliation -------------------------------------------------------------------


class RunSummary(Answer):
    id: UUID
    run_type: str
    entity_type: str
    customer_id: UUID | None
    status: str
    dry_run: bool | None = None
    total_records: int | None
    records_in_sync: int | None
    records_updated: int | None
    conflicts_detected: int | None
    errors_encountered: int | None
    started_at: datetime | None
    completed_at: datetime | None
    duration_seconds: int | None
    triggered_by: str | None
    notes: str | None


class RunDetail(RunSummary):
    report: Any = Field(None, description="the run's report: drift found, records without a match")


class RunList(Answer):
    items: list[RunSummary]


class RunQuery(Request):
    limit: int = Field(50, ge=1, le=200)
    status: RunStatus | None = None
    customer_id: UUID | None = None


class ReconcileStarted(Answer):
    run: RunDetail
    started: bool = Field(description="false when this trigger had started the run before")


# --- queue ----------------------------------------------------------------------------


class QueueItem(Answer):
    id: UUID
    kind: str | None
    entity_type: str
    entity_id: UUID | None
    hubspot_object_id: str | None
    operation: str
    direction: str
    status: str
    priority: int | None
    retry_count: int | None
    max_retries: int | None
    last_error: str | None
    scheduled_for: datetime | None
    created_at: datetime | None
    processed_at: datetime | None
    payload: Any = None


class QueueList(Answer):
    items: list[QueueItem]


class QueueQuery(Request):
    status: QueueStatus | None = Field(
        None, description="one status; default: QUEUED, PROCESSING and FAILED"
    )
    customer_id: str | None = Field(
        None, pattern=CUSTOMER_REF_PATTERN, description=CUSTOMER_REF_DESCRIPTION
    )
    limit: int = Field(100, ge=1, le=500)


class ReplayResult(Answer):
    item: QueueItem
    replayed: bool = Field(description="false when the item was already queued or running")


class BulkReplayRequest(Request):
    """Which queue rows to replay; every given condition must hold."""

    status: Literal["FAILED", "CANCELLED"] = "FAILED"
    kind: str | None = Field(
        None, min_length=1, max_length=100, description="outbound, inbound_batch, ..."
    )
    error_contains: str | None = Field(
        None, min_length=1, max_length=500, description="text in last_error (any case)"
    )
    customer: str | None = Field(
        None, pattern=CUSTOMER_REF_PATTERN, description=CUSTOMER_REF_DESCRIPTION
    )
    older_than_seconds: int | None = Field(
        None, ge=0, le=10 * 365 * 86400, description="created at least this long ago"
    )
    newer_than_seconds: int | None = Field(
        None, ge=0, le=10 * 365 * 86400, description="created at most this long ago"
    )
    limit: int = Field(100, ge=1, le=500, description="at most this many rows, oldest first")


class BulkReplayResult(Answer):
    matched: int = Field(description="rows the filter matched (up to limit)")
    replayed: list[QueueItem] = Field(description="rows queued again by this call")
    unchanged: list[UUID] = Field(
        description="matched rows another caller replayed meanwhile: nothing done"
    )


# --- the fleet ------------------------------------------------------------------------


class FleetCustomer(Answer):
    customer_id: UUID
    ban: str | None
    company_name: str | None
    hubspot_company_id: str | None
    hubspot_contact_id: str | None
    hubspot_sync_enabled: bool | None
    states: list[SyncState] = Field(description="most urgent first; in_sync alone when well")
    problems: list[str] = Field(description="what is wrong and what to do, in words")
    last_synced_to_hubspot: datetime | None
    last_synced_from_hubspot: datetime | None


class StateCounts(Answer):
    in_conflict: int
    failed: int
    unlinked: int
    pending: int
    in_sync: int
    total: int = Field(description="all customers (one may count under several states)")


class CustomerPage(Answer):
    items: list[FleetCustomer]
    counts: StateCounts
    next_cursor: UUID | None = Field(description="pass as ?cursor= for the next page")
    pause: PauseState


class CustomerListQuery(Request):
    state: SyncState | None = Field(None, description="only customers in this state")
    limit: int = Field(50, ge=1, le=500)
    cursor: UUID | None = Field(
        None, description="next_cursor of the previous page (the customers after this id)"
    )


class CrossedField(Answer):
    field: str
    kind: Literal["written", "conflict"] = Field(
        description="written: the value crossed; conflict: held for a person"
    )
    source: str | None = Field(
        description="whose value was written: warp, hubspot, or how a person resolved it"
    )
    old: Any = Field(None, description="the value replaced (WARP's, for a conflict)")
    new: Any = Field(None, description="the value written (HubSpot's, for a conflict)")
    sealed: bool = Field(description="a sensitive value: old and new stay sealed (null)")
    rule: str | None = Field(description="the conflict rule that decided, when both changed")
    reason: str | None = Field(description="why it went this way (null on older log rows)")


class Change(Answer):
    log_id: UUID
    customer_id: UUID | None
    ban: str | None
    company_name: str | None
    entity_type: str
    hubspot_object_id: str | None
    operation: str
    direction: str
    status: str
    at: datetime | None
    triggered_by: str | None
    triggered_by_user: str | None
    fields: list[CrossedField]


class ChangePage(Answer):
    items: list[Change]
    next_cursor: UUID | None = Field(description="pass as ?cursor= for the next (older) page")


class ChangeQuery(Request):
    # Any time with an offset: it is only compared with the log's times (no range check).
    since: AwareDatetime | None = Field(None, description="only changes at or after this time")
    direction: OneWay | None = None
    customer: str | None = Field(
        None, pattern=CUSTOMER_REF_PATTERN, description=CUSTOMER_REF_DESCRIPTION
    )
    limit: int = Field(50, ge=1, le=200)
    cursor: UUID | None = Field(
        None,
        description="next_cursor of the previous page: the changes older than this log "
        "row (a log row that no longer exists ends the feed)",
    )


class PauseRequest(Request):
    reason: str | None = Field(None, max_length=500, description="shown by status and /metrics")


class PauseResult(Answer):
    pause: PauseState
    changed: bool = Field(description="false when it was paused already (nothing changed)")


class Drained(Answer):
    events: int = Field(description="stored webhook events handed on, oldest first")
    customers: int = Field(description="customers changed in WARP handed to a flush")
    queue_items: int = Field(description="queued rows whose task was submitted again")
    held_tasks: int = Field(
        description="tasks that arrived while paused (flushes, retries, reconcile "
        "continuations), submitted again"
    )


class ResumeResult(Answer):
    pause: PauseState
    was_paused: bool
    drained: Drained
