"""HubSpot: the API client, its shared rate limiter, webhook signatures.

The public names are here; the modules with a leading underscore are the
client's parts (records and batches, search, associations, property schema,
transport, retry policy) and may change shape freely.
"""

from shared.hubspot._associations import primary_association_type
from shared.hubspot._objects import ObjectsApi, PendingBatch
from shared.hubspot._search import SEARCH_PAGE_MAX
from shared.hubspot.client import HubSpotClient
from shared.hubspot.errors import HubSpotError
from shared.hubspot.models import BatchResult, HubSpotObject, SearchPage
from shared.hubspot.ratelimit import SharedRateLimiter

__all__ = [
    "SEARCH_PAGE_MAX",
    "BatchResult",
    "HubSpotClient",
    "HubSpotError",
    "HubSpotObject",
    "ObjectsApi",
    "PendingBatch",
    "SearchPage",
    "SharedRateLimiter",
    "primary_association_type",
]
