"""HubSpot edits that could not be applied are first-class failures, like the queue's.

An event that fails for good (a value WARP refuses, a mapping that cannot convert
it, a link that is broken) is closed with its ``processing_error`` so it is not
retried blindly. Besides that, :func:`record` leaves a FAILED ``hubspot_sync_queue``
row of kind ``inbound_batch`` naming the event, its customer (when the object is
linked to one) and the error, so it shows in ``GET /v1/sync/queue``, in the fleet
view's ``failed`` state and in ``/metrics``, and a replay (single or bulk) applies it
again: :func:`reopen` puts the named events back in the unprocessed set first.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.db import Session
from shared.db.repositories._json import to_json
from shared.mapping import EntityType

# The external_ids key an event's object is linked under (a company's by default).
_EVENT_LINK_KEY = (
    f"CASE e.object_type WHEN '{EntityType.CONTACT.object_name}' "
    f"THEN '{EntityType.CONTACT.link_key}' ELSE '{EntityType.CUSTOMER.link_key}' END"
)

KIND = "inbound_batch"  # the queue kind of inbound work (shared/inbound/process.py)


def record(tx: Session, event_row_id: str, error: str, *, max_retries: int) -> None:
    """One FAILED queue row for this event, unless an open one names it already.

    An open row (FAILED, QUEUED or PROCESSING) exists when a replay of the event
    failed again: that row carries the new error, no second row is added.
    """
    payload = to_json({"event_ids": [str(event_row_id)]})
    tx.execute(
        "INSERT INTO accounts.hubspot_sync_queue (kind, entity_type, entity_id, "
        "hubspot_object_id, operation, direction, payload, status, max_retries, "
        "retry_count, last_error, processed_at) "
        "SELECT :kind, 'webhook_event', ("
        f"  SELECT c.id FROM accounts.customers AS c WHERE c.external_ids ->> "
        f"  ({_EVENT_LINK_KEY}) = e.object_id ORDER BY c.id LIMIT 1), "
        "e.object_id, 'UPDATE', 'HUBSPOT_TO_WARP', CAST(:payload AS jsonb), 'FAILED', "
        ":max_retries, 1, "
        "concat(e.object_type, ' ', e.object_id, ' ', e.event_type, "
        "COALESCE(' ' || e.property_name, ''), ': ', CAST(:error AS text)), NOW() "
        "FROM accounts.hubspot_webhook_events AS e WHERE e.id = CAST(:id AS uuid) "
        "AND NOT EXISTS (SELECT 1 FROM accounts.hubspot_sync_queue AS q "
        "  WHERE q.kind = :kind AND q.status IN ('FAILED', 'QUEUED', 'PROCESSING') "
        "  AND (q.payload -> 'event_ids') @> (CAST(:payload AS jsonb) -> 'event_ids'))",
        {
            "kind": KIND,
            "id": str(event_row_id),
            "payload": payload,
            "error": error,
            "max_retries": max_retries,
        },
    )


def reopen(tx: Session, event_row_ids: Sequence[str]) -> None:
    """Put events closed with an error back among the unprocessed (a replay)."""
    if event_row_ids:
        tx.execute(
            "UPDATE accounts.hubspot_webhook_events SET processed = FALSE, processed_at = NULL "
            "WHERE id = ANY(CAST(:ids AS uuid[])) AND processed IS TRUE "
            "AND processing_error IS NOT NULL",
            {"ids": [str(i) for i in event_row_ids]},
        )
