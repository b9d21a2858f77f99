"""HubSpot: the API client, webhook signatures and the local HubSpot emulator."""

from shared.hubspot.client import HubSpotClient
from shared.hubspot.errors import HubSpotError
from shared.hubspot.models import BatchResult, HubSpotObject, SearchPage
from shared.hubspot.ratelimit import SharedRateLimiter

__all__ = [
    "BatchResult",
    "HubSpotClient",
    "HubSpotError",
    "HubSpotObject",
    "SearchPage",
    "SharedRateLimiter",
]
