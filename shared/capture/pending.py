"""WARP changes the trigger recorded that the sweep has not taken yet, and their times.

A field's WARP time comes from its state (``warp_changed_at``), which the sweep moves
when it takes a captured change: up to a minute after WARP's commit. Until then the
time on record can belong to an older change of the field than the value WARP holds
(renamed, swept, renamed again): a LATEST_WINS decision on it would put WARP's newer
edit behind an older HubSpot one and overwrite it. Every committed WARP change has its
captured row (the trigger writes it in WARP's own transaction), so the newest pending
row naming a field is at least as new as the value a flow read before it. A flow reads
these after the rows it decides on: a time too new for a value read earlier belongs to
a newer WARP change still to be pushed, which wins anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from shared.capture.watch import CHANGES
from shared.db import Session
from shared.mapping import MappingSet

# One customer's pending changes: (the WARP names a change named, empty for all; when).
Pending = Sequence[tuple[Sequence[str], datetime]]


def pending_changes(tx: Session, customer_ids: Iterable[str]) -> Mapping[str, Pending]:
    """The captured, not yet swept INSERTs and UPDATEs of these customers, newest per set
    of names; by customer id. Empty when capture is off (the table stays empty)."""
    ids = sorted({str(i) for i in customer_ids})
    if not ids:
        return {}
    found: dict[str, list[tuple[Sequence[str], datetime]]] = {}
    for row in tx.fetch(
        f"SELECT CAST(customer_id AS text) AS id, changed_fields, max(changed_at) AS at "
        f"FROM {CHANGES} WHERE customer_id = ANY(CAST(:ids AS uuid[])) "
        "AND operation <> 'DELETE' GROUP BY customer_id, changed_fields",
        {"ids": ids},
    ):
        found.setdefault(row["id"], []).append((row["changed_fields"] or [], row["at"]))
    return found


def field_times(pending: Pending, mappings: MappingSet) -> Mapping[str, datetime]:
    """The newest pending change time of each outbound field of ``mappings``, by name."""
    times: dict[str, datetime] = {}
    for names, at in pending:
        for field in mappings.outbound():
            if (not names or field.named_by(names)) and (
                field.name not in times or at > times[field.name]
            ):
                times[field.name] = at
    return times
