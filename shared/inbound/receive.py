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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.db import Database
from shared.db.repositories import webhook_events
from shared.inbound.events import WebhookEvent
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
    to_process: list[StoredEvent] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        """Events of this delivery that were stored before (or repeated within it)."""
        return self.received - self.stored


def store_batch(
    database: Database, events: Sequence[tuple[WebhookEvent, Mapping[str, Any]]]
) -> StoreResult:
    """Store the events not stored before; return the ones now waiting to be processed."""
    if not events:
        return StoreResult(0, 0)
    by_key: dict[str, WebhookEvent] = {}
    rows = []
    for event, raw in events:
        if event.key not in by_key:
            by_key[event.key] = event
            rows.append(event.to_row(raw))
    with database.transaction() as tx:
        inserted = webhook_events.insert_batch(tx, rows)
        found = {str(r["event_id"]): str(r["id"]) for r in inserted}
        if len(inserted) < len(rows):
            earlier = [k for k in by_key if k not in found]
            found.update({str(r["event_id"]): str(r["id"]) for r in pending_of_keys(tx, earlier)})
    to_process = [StoredEvent(row_id, by_key[key]) for key, row_id in found.items()]
    return StoreResult(received=len(events), stored=len(inserted), to_process=to_process)
