"""Links that follow HubSpot merges, and the one way every flow records a link change.

A HubSpot merge makes a new record with a new id; both old ids resolve to it
(docs/hubspot.md, "Merges"). A customer linked to an old id is moved to the new
one, whether the merge webhook says so or a read of the old id answers with the
new record. Two customers can end up claiming one merged record (each was linked
to one of the two merged companies): a company is one customer's, so the first
claim keeps it (the primary's customer: the merged record carries its values) and
the others are unlinked and flagged for a person (:func:`decide_merge_links`, pure).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db import Row, Session
from shared.db.repositories import customers, sync_log
from shared.hubspot.models import HubSpotObject
from shared.mapping import Direction, EntityType

LINK_KEY = {EntityType.CUSTOMER: "hubspot_company_id", EntityType.CONTACT: "hubspot_contact_id"}
BAN_PROPERTY = "warp_ban"  # a company's WARP BAN, unique in HubSpot
EMAIL_PROPERTY = "email"  # a contact's unique property
OBJECT_NAME = {EntityType.CUSTOMER: "company", EntityType.CONTACT: "contact"}


@dataclass(frozen=True)
class MergeLink:
    """What happens to one customer linked to a record that was merged into ``new_id``."""

    customer_id: str
    old_id: str
    new_id: str
    keep: bool  # True: linked to new_id; False: another customer has it, unlinked for review

    def why(self, entity_type: EntityType, owner: str | None) -> str:
        """The sync log's reason for this change."""
        name = OBJECT_NAME[entity_type]
        if self.keep:
            return f"merged {name} {self.old_id} into {self.new_id}"
        return (
            f"{name} {self.old_id} was merged into {self.new_id}, which customer {owner} "
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
        decided.append(MergeLink(customer_id, old_id, new_id, keep))
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


def linked_to(tx: Session, entity_type: EntityType, object_id: str) -> str | None:
    """The customer linked to this company or contact, if any."""
    find = (
        customers.find_by_company_id
        if entity_type is EntityType.CUSTOMER
        else customers.find_by_contact_id
    )
    row = find(tx, object_id)
    return None if row is None else str(row["id"])


def record_link(
    tx: Session,
    *,
    customer_id: str,
    entity_type: EntityType,
    object_id: str | None,
    old_id: str | None,
    operation: str,
    why: str,
    now: datetime,
    triggered_by: str,
    review: bool = False,
) -> Row | None:
    """Set (or clear, ``object_id`` None) a customer's link and log it; the updated row.

    ``review`` logs a CONFLICT with ``why`` so the customer shows up for a person.
    """
    setter = (
        customers.set_company_link
        if entity_type is EntityType.CUSTOMER
        else customers.set_contact_link
    )
    row = setter(tx, customer_id, object_id)
    name = f"external_ids.{LINK_KEY[entity_type]}"
    sync_log.record(
        tx,
        entity_type=entity_type.value,
        entity_id=customer_id,
        hubspot_object_id=object_id or old_id,
        operation=operation,
        direction=Direction.HUBSPOT_TO_WARP.value,
        status="CONFLICT" if review else "SUCCESS",
        fields_synced=[name],
        field_changes={name: {"old": old_id, "new": object_id, "source": "hubspot"}},
        error_message=why if review else None,
        started_at=now,
        completed_at=now,
        triggered_by=triggered_by,
    )
    return row
