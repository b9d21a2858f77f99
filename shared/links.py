"""A customer's links to its HubSpot company and contact, and who keeps a merged record (pure).

A customer row holds its links in ``external_ids`` under each entity's
:attr:`~shared.mapping.EntityType.link_key`; :func:`linked_id` is the one reader.

A HubSpot merge makes a new record with a new id; both old ids resolve to it
(docs/hubspot.md, "Merges"). A customer linked to an old id is moved to the new
one. Two customers can end up claiming one merged record (each was linked to one
of the two merged companies): a company is one customer's, so the first claim
keeps it (the primary's customer: the merged record carries its values) and the
others are unlinked and flagged for a person (:func:`decide_merge_links`).
Writing a link is :func:`shared.engine.relink.set_link`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.mapping import EntityType

if TYPE_CHECKING:  # types only: pure code does not load the HubSpot client
    from shared.hubspot.models import HubSpotObject

BAN_PROPERTY = "warp_ban"  # a company's WARP BAN, unique in HubSpot
EMAIL_PROPERTY = "email"  # a contact's unique property


def linked_id(row: Mapping[str, Any], entity_type: EntityType) -> str | None:
    """The HubSpot id a customer row is linked to for ``entity_type``, if any."""
    external = row.get("external_ids") or {}
    value = external.get(entity_type.link_key) if isinstance(external, Mapping) else None
    return str(value) if value else None


def link_field(entity_type: EntityType) -> str:
    """The link's field as the sync log names it (``external_ids.hubspot_company_id``)."""
    return f"external_ids.{entity_type.link_key}"


@dataclass(frozen=True)
class MergeLink:
    """What happens to one customer linked to a record that was merged into ``new_id``."""

    customer_id: str
    old_id: str
    new_id: str
    keep: bool  # True: linked to new_id; False: another customer has it, unlinked for review
    owner: str  # the customer new_id is linked to once this is carried out

    def why(self, entity_type: EntityType) -> str:
        """The sync log's reason for this change."""
        name = entity_type.object_name
        if self.keep:
            return f"merged {name} {self.old_id} into {self.new_id}"
        return (
            f"{name} {self.old_id} was merged into {self.new_id}, which customer {self.owner} "
            "is linked to; unlinked, needs review"
        )


def decide_merge_links(
    new_id: str, owner: str | None, claims: Iterable[tuple[str, str]]
) -> list[MergeLink]:
    """Who keeps the merged record ``new_id``: its ``owner`` if any, else the first claim.

    ``claims`` are (old id, customer id) in the order they should be served.
    """
    decided = []
    for old_id, customer_id in claims:
        keep = owner is None or owner == customer_id
        if keep:
            owner = customer_id
        assert owner is not None  # set above when it was None
        decided.append(MergeLink(customer_id, old_id, new_id, keep, owner))
    return decided


def carries_customer(
    record: HubSpotObject, row: Mapping[str, Any], entity_type: EntityType
) -> bool:
    """Whether a merged record holds this customer's own key (its BAN; its contact's email).

    A merge keeps the primary record's values, so the customer whose key the merged
    record carries was linked to the primary: it is served first.
    """
    if entity_type is EntityType.CUSTOMER:
        ban = row.get("ban")
        return bool(ban) and record.properties.get(BAN_PROPERTY) == str(ban)
    contact = row.get("contact")
    email = contact.get("email") if isinstance(contact, Mapping) else None
    held = record.properties.get(EMAIL_PROPERTY) or ""
    return bool(email) and held.strip().lower() == str(email).strip().lower()
