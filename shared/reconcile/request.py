"""The body of a reconciliation request: the API's ``POST /reconcile`` and the reconciler's.

One model for both callers (an operator through the API, Cloud Scheduler through the
``reconciler`` function), so the two cannot accept different bodies. Unknown keys are
an error, and booleans are JSON booleans.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from shared.mapping import EntityType


class ReconcileRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        defer_build=True,
        json_schema_extra={
            "allOf": [
                {
                    "if": {
                        "properties": {"run_type": {"const": "CUSTOMER_SPECIFIC"}},
                        "required": ["run_type"],
                    },
                    "then": {
                        "properties": {"customer_id": {"type": "string", "format": "uuid"}},
                        "required": ["customer_id"],
                    },
                },
                {
                    "if": {
                        "properties": {"customer_id": {"type": "string"}},
                        "required": ["customer_id"],
                    },
                    "then": {"properties": {"run_type": {"enum": ["CUSTOMER_SPECIFIC", None]}}},
                },
            ]
        },
    )

    run_type: Literal["FULL", "INCREMENTAL", "CUSTOMER_SPECIFIC"] | None = Field(
        None, description="default: CUSTOMER_SPECIFIC with customer_id, else FULL"
    )
    entity_type: EntityType = EntityType.CUSTOMER
    customer_id: UUID | None = None
    # Strict: pydantic's lax bool reads "yes", "on" and 1 as true (issue 21, item 9).
    force: StrictBool = Field(False, description="start even if a full run is already running")
    dry_run: StrictBool = False

    @model_validator(mode="after")
    def _customer_matches_run_type(self) -> ReconcileRequest:
        if self.run_type == "CUSTOMER_SPECIFIC" and self.customer_id is None:
            raise ValueError("customer_id is required for a CUSTOMER_SPECIFIC run")
        if self.customer_id is not None and self.run_type not in (None, "CUSTOMER_SPECIFIC"):
            raise ValueError("run_type must be CUSTOMER_SPECIFIC when customer_id is given")
        return self
