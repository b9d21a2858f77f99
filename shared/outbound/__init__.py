"""Outbound sync: WARP's change messages to HubSpot, coalesced into batch writes.

- :func:`receive` handles one Pub/Sub delivery (``outbound_sync``);
- :func:`flush` pushes up to 100 dirty customers (the ``outbound_flush`` task);
- :func:`push_customer` links and syncs one customer now (the API's to-hubspot);
- :func:`close_deleted_customer` closes a deleted customer's company.
"""

from shared.outbound.deletes import close_deleted_customer
from shared.outbound.flush import FlushReport, flush
from shared.outbound.linking import LinkOutcome, link_customers
from shared.outbound.push import PushResult, push_customer, push_customers
from shared.outbound.receive import Receipt, receive, schedule_flush

__all__ = [
    "FlushReport",
    "LinkOutcome",
    "PushResult",
    "Receipt",
    "close_deleted_customer",
    "flush",
    "link_customers",
    "push_customer",
    "push_customers",
    "receive",
    "schedule_flush",
]
