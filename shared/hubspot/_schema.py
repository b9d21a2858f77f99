"""Property definitions and property groups of an object type (CRM v3 properties).

:class:`Schema` is mixed into :class:`shared.hubspot.client.HubSpotClient`; what
WARP's custom properties are, and their setup, is :mod:`shared.hubspot.properties`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.hubspot._api import ApiClient
from shared.hubspot.models import ObjectType


class Schema:
    """Listing and creating properties and property groups (mixed into the client)."""

    def list_properties(self: ApiClient, object_type: ObjectType) -> list[dict[str, Any]]:
        """Every property definition of ``object_type``."""
        data = self.request("GET", f"/crm/v3/properties/{object_type}", op="properties.list").json()
        return list(data.get("results") or [])

    def create_property(
        self: ApiClient, object_type: ObjectType, definition: Mapping[str, Any]
    ) -> None:
        """Create one property (a 409 means it exists: :class:`AlreadyExists`)."""
        self.request(
            "POST",
            f"/crm/v3/properties/{object_type}",
            json=dict(definition),
            op="properties.create",
            idempotent=False,
        )

    def list_property_groups(self: ApiClient, object_type: ObjectType) -> list[dict[str, Any]]:
        """Every property group of ``object_type``."""
        path = f"/crm/v3/properties/{object_type}/groups"
        return list(self.request("GET", path, op="groups.list").json().get("results") or [])

    def create_property_group(
        self: ApiClient, object_type: ObjectType, group: Mapping[str, Any]
    ) -> None:
        """Create one property group."""
        self.request(
            "POST",
            f"/crm/v3/properties/{object_type}/groups",
            json=dict(group),
            op="groups.create",
            idempotent=False,
        )
