"""Every kind of deferred work: the handler that runs it and the model of its payload.

Imported by the retry worker and by every module that submits tasks, so a
handler is known wherever its work may run. One ``register`` line per kind;
each flow adds only its own lines. Every payload is validated with its model
before its handler runs (``shared.tasks.registry.run_task``): a task body that
arrived over HTTP is untrusted input, and a malformed one used to end as a 500
that Cloud Tasks retried (issue 21, item 7).
"""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.tasks.registry import register
from shared.untrusted_time import UntrustedTime


class TaskPayload(BaseModel):
    """Base of task payloads. Unknown keys are ignored: a task created by the previous
    release may carry one during a rolling deploy."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class FlushPayload(TaskPayload):
    bucket: int | None = Field(None, strict=True, description="the coalescing window (its name)")
    trailing: bool = Field(
        False, strict=True, description="the window's own flush, due when the window ends"
    )


class QueueItemPayload(TaskPayload):
    id: UUID


class InboundBatchPayload(TaskPayload):
    """The stored events named, or every unprocessed event received before a time."""

    event_ids: list[UUID] | None = Field(None, min_length=1, max_length=10_000)
    received_before: UntrustedTime | None = None
    limit: int = Field(1000, strict=True, ge=1, le=10_000)

    @model_validator(mode="after")
    def _one_selection(self) -> InboundBatchPayload:
        if (self.event_ids is None) == (self.received_before is None):
            raise ValueError("exactly one of event_ids and received_before is required")
        return self


class ReconcileContinuePayload(TaskPayload):
    run_id: UUID
    seq: int | None = Field(None, strict=True, ge=0)
    failures: int = Field(0, strict=True, ge=0)


class SweepPayload(TaskPayload):
    """No fields: a sweep takes everything due."""


# Outbound sync: the coalesced flush of customers marked dirty by change messages.
register("outbound_flush", "shared.outbound.flush:run_flush_task", FlushPayload, writes=True)
# A hubspot_sync_queue row to run again (its ``kind`` column picks the runner).
register("queue_item", "shared.retry.worker:run_queue_task", QueueItemPayload, writes=True)
# Inbound webhook events stored but not processed within the receiver's time budget.
register(
    "inbound_batch", "shared.inbound.process:run_inbound_batch", InboundBatchPayload, writes=True
)
# Reconciliation: the next time budget of a run, from its checkpoint.
register(
    "reconcile_continue", "shared.reconcile.run:continue_run", ReconcileContinuePayload, writes=True
)
# The sweep (Cloud Scheduler, every minute): captured changes, WARP's own queue rows,
# every dirty customer.
register("outbound_sweep", "shared.outbound.sweep:run_sweep_task", SweepPayload, writes=True)
