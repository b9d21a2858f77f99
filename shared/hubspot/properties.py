"""WARP's custom HubSpot company properties, and their idempotent setup.

The default mappings (``shared/mapping/config.py``) write ``warp_ban``,
``warp_status`` and ``warp_credit_limit`` on companies; the other mapped
properties (``name``, ``domain``, contact name, email, phone) are HubSpot's own.
``warp_ban`` is unique, so a company can be found or upserted by it
(``idProperty=warp_ban``). They live in a property group ``warp``.

:func:`setup_properties` creates what is missing and leaves what exists alone:
an existing property is never changed, only reported, together with any
difference from our definition (a person may have edited it in HubSpot on
purpose; we say so rather than overwrite).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.hubspot.client import HubSpotClient
from shared.hubspot.errors import AlreadyExists
from shared.hubspot.models import ObjectType

GROUP: dict[str, Any] = {"name": "warp", "label": "WARP", "displayOrder": -1}

WARP_STATUSES = ("ACTIVE", "SUSPENDED", "TRIAL", "CLOSED")

COMPANY_PROPERTIES: tuple[dict[str, Any], ...] = (
    {
        "name": "warp_ban",
        "label": "WARP BAN",
        "description": "WARP billing account number of this customer (unique; set by WARP).",
        "groupName": GROUP["name"],
        "type": "string",
        "fieldType": "text",
        "hasUniqueValue": True,
        "formField": False,
    },
    {
        "name": "warp_status",
        "label": "WARP account status",
        "description": "Status of the customer's account in WARP.",
        "groupName": GROUP["name"],
        "type": "enumeration",
        "fieldType": "select",
        "options": [
            {"label": s.title(), "value": s, "displayOrder": i, "hidden": False}
            for i, s in enumerate(WARP_STATUSES)
        ],
        "formField": False,
    },
    {
        "name": "warp_credit_limit",
        "label": "WARP credit limit",
        "description": "Credit limit of the customer's account in WARP, in its currency.",
        "groupName": GROUP["name"],
        "type": "number",
        "fieldType": "number",
        "formField": False,
    },
)

# What must match for an existing property to be usable as ours.
_COMPARED = ("type", "fieldType", "hasUniqueValue")


@dataclass
class SetupReport:
    """What :func:`setup_properties` did; ``differences`` maps a name to its mismatches."""

    object_type: ObjectType
    group_created: bool = False
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    differences: dict[str, list[str]] = field(default_factory=dict)


def differences(wanted: Mapping[str, Any], found: Mapping[str, Any]) -> list[str]:
    """How an existing property differs from our definition in what matters to the sync."""
    problems = []
    for key in _COMPARED:
        if key not in wanted:
            continue
        have = found.get(key)
        # HubSpot omits hasUniqueValue when false.
        same = bool(have) == bool(wanted[key]) if key == "hasUniqueValue" else have == wanted[key]
        if not same:
            problems.append(f"{key} is {have!r}, expected {wanted[key]!r}")
    if wanted.get("options"):
        have = {o.get("value") for o in found.get("options") or []}
        missing = [o["value"] for o in wanted["options"] if o["value"] not in have]
        if missing:
            problems.append(f"options lack {', '.join(missing)}")
    return problems


def setup_properties(
    client: HubSpotClient,
    object_type: ObjectType = "companies",
    definitions: tuple[dict[str, Any], ...] = COMPANY_PROPERTIES,
) -> SetupReport:
    """Create the ``warp`` group and the properties that do not exist yet; report the rest."""
    report = SetupReport(object_type)
    groups = {g.get("name") for g in client.list_property_groups(object_type)}
    if GROUP["name"] not in groups:
        try:
            client.create_property_group(object_type, GROUP)
            report.group_created = True
        except AlreadyExists:
            pass  # created meanwhile by another run: that is the state we want
    existing = {p.get("name"): p for p in client.list_properties(object_type)}
    for definition in definitions:
        name = definition["name"]
        found = existing.get(name)
        if found is None:
            try:
                client.create_property(object_type, definition)
                report.created.append(name)
                continue
            except AlreadyExists:
                found = {}  # created meanwhile; compare on the next run
        report.existing.append(name)
        problems = differences(definition, found) if found else []
        if problems:
            report.differences[name] = problems
    return report
