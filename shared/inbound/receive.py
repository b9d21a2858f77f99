"""Storing a verified delivery: every event once, the whole batch in one transaction.

The key is ``subscriptionId:eventId:occurredAt`` in WARP's unique ``event_id``
column; ``INSERT ... ON CONFLICT DO NOTHING`` makes a redelivered event (HubSpot
retries a batch it got no 2xx for) a no-op. The batch commits as a whole or not
at all, so a dropped connection leaves no partial rows and HubSpot's redelivery
stores it complete.

A redelivery can also carry events stored earlier but never processed (the
earlier attempt stored them, then processing or the hand-off failed and the
answer was 5xx). Those are returned with the new ones so this delivery processes
them; nothing waits for the sweep when HubSpot gives us another chance.

An invalid event of the delivery is stored in the same statement as a closed row
(``processed`` with its reason in ``processing_error``, ``event_type`` ``invalid``),
once however often the batch is redelivered: where failed events are looked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.db import Database
from shared.db.repositories import webhook_events
from shared.inbound.events import ParsedBatch, WebhookEvent
from shared.inbound.queries import pending_of_keys


@dataclass(frozen=True)
class StoredEvent:
    """An event and the id of its ``hubspot_webhook_events`` row."""

    row_id: str
    event: WebhookEvent


@dataclass
class StoreResult:
    """What storing a delivery did."""

    received: int
    stored: int
    invalid: int = 0
    to_process: list[StoredEvent] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        """Valid events of this delivery stored before (or repeated within it)."""
        return self.received - self.invalid - self.stored


def store_batch(database: Database, batch: ParsedBatch) -> StoreResult:
    """Store the events not stored before; return the valid ones now waiting to be processed.

    ``stored`` counts new valid events; ``invalid`` the delivery's invalid events.
    """
    received = len(batch.events) + len(batch.invalid)
    if not received:
        return StoreResult(0, 0)
    by_key: dict[str, WebhookEvent] = {}
    rows = []
    for event, raw in batch.events:
        if event.key not in by_key:
            by_key[event.key] = event
            rows.append(event.to_row(raw))
    now = datetime.now(UTC)
    rows.extend(invalid.to_row(now) for invalid in batch.invalid)
    with database.transaction() as tx:
        inserted = webhook_events.insert_batch(tx, rows)
        found = {str(r["event_id"]): str(r["id"]) for r in inserted if str(r["event_id"]) in by_key}
        stored = len(found)
        if stored < len(by_key):
            earlier = [k for k in by_key if k not in found]
            found.update({str(r["event_id"]): str(r["id"]) for r in pending_of_keys(tx, earlier)})
    to_process = [StoredEvent(row_id, by_key[key]) for key, row_id in found.items()]
    return StoreResult(
        received=received, stored=stored, invalid=len(batch.invalid), to_process=to_process
    )
