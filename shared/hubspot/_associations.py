"""Associations between records (CRM v4) and HubSpot's association type ids.

:class:`Associations` is mixed into :class:`shared.hubspot.client.HubSpotClient`
(``client.associate``, ``client.associations``); the type ids are pure.
"""

from __future__ import annotations

from typing import Any

from shared.hubspot._api import ApiClient
from shared.hubspot.models import Association, ObjectType, next_after

# Default association types, per HubSpot's v4 "default" association (unlabeled).
_SINGULAR = {"companies": "company", "contacts": "contact"}


class Associations:
    """Linking records and listing their links (mixed into the client)."""

    def associate(
        self: ApiClient,
        from_type: ObjectType,
        from_id: str,
        to_type: ObjectType,
        to_id: str,
        *,
        primary: bool = False,
    ) -> None:
        """Link two records with HubSpot's default (unlabeled) association; idempotent.

        ``primary``: also make it the primary one (types 1/2: the contact's primary
        company), replacing a primary HubSpot set itself, e.g. by auto-association.
        """
        path = f"/crm/v4/objects/{from_type}/{from_id}/associations"
        if not primary:
            self.request("PUT", f"{path}/default/{to_type}/{to_id}", op=f"{from_type}.associate")
            return
        spec = {
            "associationCategory": "HUBSPOT_DEFINED",
            "associationTypeId": primary_association_type(from_type, to_type),
        }
        self.request(
            "PUT", f"{path}/{to_type}/{to_id}", json=[spec], op=f"{from_type}.associate_primary"
        )

    def associations(
        self: ApiClient, from_type: ObjectType, from_id: str, to_type: ObjectType
    ) -> list[Association]:
        """Every ``to_type`` record associated with ``from_id`` (v4, all pages)."""
        found: list[Association] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if after:
                params["after"] = after
            data = self.request(
                "GET",
                f"/crm/v4/objects/{from_type}/{from_id}/associations/{to_type}",
                params=params,
                op=f"{from_type}.associations",
            ).json()
            found.extend(Association.from_json(r) for r in data.get("results") or [])
            after = next_after(data)
            if after is None:
                return found


def primary_association_type(from_type: ObjectType, to_type: ObjectType) -> int:
    """HubSpot's primary association type id: 1 contact to company, 2 company to contact."""
    ids = {("contacts", "companies"): 1, ("companies", "contacts"): 2}
    try:
        return ids[(from_type, to_type)]
    except KeyError:
        raise ValueError(
            f"no primary association from {_SINGULAR[from_type]} to {_SINGULAR[to_type]}"
        ) from None


def default_association_type(from_type: ObjectType, to_type: ObjectType) -> int:
    """HubSpot's unlabeled association type id from ``from_type`` to ``to_type``."""
    ids = {("contacts", "companies"): 279, ("companies", "contacts"): 280}
    try:
        return ids[(from_type, to_type)]
    except KeyError:
        raise ValueError(
            f"no default association from {_SINGULAR[from_type]} to {_SINGULAR[to_type]}"
        ) from None
