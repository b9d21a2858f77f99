"""The message WARP publishes on ``customer-changes`` when a customer changes.

``schemas/customer-change.schema.json`` publishes the same contract for WARP's
publishers; a test keeps the two in agreement.
"""

from __future__ import annotations

import enum
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.untrusted_time import UntrustedTime


class Operation(enum.StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


class ChangeMessage(BaseModel):
    """A change of one WARP customer (or its primary contact)."""

    # Unknown keys are ignored so WARP can add fields without breaking the sync.
    model_config = ConfigDict(extra="ignore", frozen=True)

    entity_type: Literal["customer", "contact"]
    entity_id: UUID
    operation: Operation
    changed_fields: list[str] = Field(default_factory=list, max_length=200)
    occurred_at: UntrustedTime
    trigger_source: str = Field(min_length=1, max_length=100)
    triggered_by_user: str | None = Field(None, max_length=100)
