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

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.engine.resolve import Resolution
from shared.mapping import EntityType
from shared.reconcile.request import ReconcileRequest

__all__ = ["ReconcileRequest"]  # defined beside the reconciler, which reads it too

SyncStatus = Literal["synced", "in_sync", "conflict", "not_linked", "missing", "failed"]
LogStatus = Literal["PENDING", "IN_PROGRESS", "SUCCESS", "FAILED", "CONFLICT"]
LogDirection = Literal["WARP_TO_HUBSPOT", "HUBSPOT_TO_WARP", "BIDIRECTIONAL"]
QueueStatus = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"]
RunStatus = Literal["RUNNING", "COMPLETED", "FAILED", "CANCELLED"]


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
    customer_id: UUID | None = None
    limit: int = Field(100, ge=1, le=500)


class ReplayResult(Answer):
    item: QueueItem
    replayed: bool = Field(description="false when the item was already queued or running")
