"""Token scopes: what a token may do, and HubSpot's 403 ``MISSING_SCOPES`` answer when it
may not (docs/hubspot.md, "Scopes")."""

from __future__ import annotations

from localdev.emulator.errors import ApiError

_TYPES = ("companies", "contacts")
# What a read-only private app is granted: objects and property definitions, read.
READ_SCOPES = frozenset(f"crm.{kind}.{t}.read" for kind in ("objects", "schemas") for t in _TYPES)
ALL_SCOPES = READ_SCOPES | frozenset(s.removesuffix(".read") + ".write" for s in READ_SCOPES)

_MESSAGE = (
    "This app hasn't been granted all required scopes to make this call. Read more about "
    "required scopes here: https://developers.hubspot.com/scopes."
)


def missing_scopes(required: str) -> ApiError:
    """HubSpot's 403 for a token without ``required``."""
    return ApiError(
        403,
        "MISSING_SCOPES",
        _MESSAGE,
        errors=[
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": [required]},
            }
        ],
        extra={"links": {"scopes": "https://developers.hubspot.com/scopes"}},
    )
