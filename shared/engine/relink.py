"""Recording link changes: the one way every flow writes a customer's link and its log.

Inbound webhooks (creations, merges, associations, deletions), the batch sync
following a merged id, and outbound linking all change a customer's link to its
HubSpot company or contact through :func:`set_link`. What the link is, and who
keeps a merged record, are pure rules in :mod:`shared.links`.
"""

from __future__ import annotations

from datetime import datetime

from shared.db import Row, Session
from shared.db.repositories import customers, sync_log
from shared.links import link_field
from shared.mapping import Direction, EntityType


def linked_to(tx: Session, entity_type: EntityType, object_id: str) -> str | None:
    """The customer linked to this company or contact, if any."""
    row = customers.find_linked(tx, entity_type, object_id)
    return None if row is None else str(row["id"])


def set_link(
    tx: Session,
    *,
    customer_id: str,
    entity_type: EntityType,
    object_id: str | None,
    old_id: str | None,
    operation: str,
    now: datetime,
    triggered_by: str,
    why: str | None = None,
    direction: Direction = Direction.HUBSPOT_TO_WARP,
    triggered_by_user: str | None = None,
    review: bool = False,
    logged: bool = True,
) -> Row | None:
    """Set (or clear, ``object_id`` None) a customer's link and log it; the updated row.

    ``review`` logs a CONFLICT with ``why`` so the customer shows up for a person.
    ``logged`` False writes the link alone (outbound linking logs only what it created).
    """
    row = customers.set_link_id(tx, customer_id, entity_type, object_id)
    if not logged:
        return row
    name = link_field(entity_type)
    sync_log.record(
        tx,
        entity_type=entity_type.value,
        entity_id=customer_id,
        hubspot_object_id=object_id or old_id,
        operation=operation,
        direction=direction.value,
        status="CONFLICT" if review else "SUCCESS",
        fields_synced=[name],
        field_changes={name: {"old": old_id, "new": object_id, "source": "hubspot"}},
        error_message=why if review else None,
        started_at=now,
        completed_at=now,
        triggered_by=triggered_by,
        triggered_by_user=triggered_by_user,
    )
    return row
