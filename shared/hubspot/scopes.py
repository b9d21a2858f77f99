"""The HubSpot scopes each of our tokens needs (docs/deploy.md, step 0).

HubSpot asks a ``.read`` scope of GETs, batch reads and searches and a ``.write`` one of
every other call (docs/hubspot.md, "Scopes"); :func:`shared.hubspot._transport.is_read` sends
the first kind with ``HUBSPOT_READ_ACCESS_TOKEN`` when it is set.
"""

from __future__ import annotations

# Companies and contacts are read and written; property definitions are read and created
# on companies only (``setup-properties``).
READ_SCOPES = (
    "crm.objects.companies.read",
    "crm.objects.contacts.read",
    "crm.schemas.companies.read",
)
WRITE_SCOPES = (
    "crm.objects.companies.write",
    "crm.objects.contacts.write",
    "crm.schemas.companies.write",
)


def scopes_per_token(*, separate_read_token: bool) -> dict[str, tuple[str, ...]]:
    """Environment variable -> the scopes its token needs."""
    if separate_read_token:
        return {"HUBSPOT_ACCESS_TOKEN": WRITE_SCOPES, "HUBSPOT_READ_ACCESS_TOKEN": READ_SCOPES}
    return {"HUBSPOT_ACCESS_TOKEN": READ_SCOPES + WRITE_SCOPES}
