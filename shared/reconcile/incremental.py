"""What an INCREMENTAL run looks at: records changed on either side since the last run.

WARP's side is a keyset page over ``updated_at``; HubSpot's is a search on the
last-modified property. Each HubSpot page is its own query, bounded below by
the last object id seen (``hs_object_id > last``, sorted ascending), so no query
ever pages past HubSpot's 10,000-result cap however many records changed, and a
resumed run continues from the id in its checkpoint.

A run's calls grow with the changes, not with the book (bench/reconcile.py): pages
of 200 (search's maximum), the last page known by HubSpot's missing ``paging.next``
rather than by one more, empty, search; and companies and contacts searched in the
same step, so the customers behind both are read in one sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.engine.deps import Engine
from shared.engine.snapshots import LAST_MODIFIED_PROPERTY
from shared.mapping import EntityType


def since(last_started_at: datetime, overlap_seconds: float) -> datetime:
    """Where an incremental run starts looking: the last run's start minus the overlap.

    The overlap covers clock skew between WARP, HubSpot and us and HubSpot's
    search index lagging behind its writes.
    """
    return last_started_at - timedelta(seconds=overlap_seconds)


@dataclass(frozen=True)
class ChangedPage:
    """One page of records HubSpot changed: their ids, ascending; ``last`` when no more."""

    ids: list[str]
    last: bool


def changed_in_hubspot(
    engine: Engine, entity_type: EntityType, since_at: datetime, after_id: str | None, limit: int
) -> ChangedPage:
    """Records modified at or after ``since_at``, ascending, after ``after_id``."""
    filters = [
        {
            "propertyName": LAST_MODIFIED_PROPERTY[entity_type],
            "operator": "GTE",
            "value": str(int(since_at.timestamp() * 1000)),
        }
    ]
    if after_id is not None:
        filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": after_id})
    api = engine.hubspot.objects(entity_type.object_type)
    page = api.search(
        [{"filters": filters}],
        sort=("hs_object_id", "ASCENDING"),
        properties=["hs_object_id"],
        limit=limit,
    )
    return ChangedPage([record.id for record in page.results], last=page.after is None)
