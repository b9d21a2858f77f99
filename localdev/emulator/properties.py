"""Property definitions (HubSpot's defaults plus custom ones) and value checks.

Values cross the API as strings; this module turns an incoming value into the
stored string (datetimes as ISO UTC with milliseconds, like HubSpot answers)
or explains, in HubSpot's words, why it is not valid.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from localdev.emulator.errors import ApiError, validation

OBJECT_TYPES = {"companies": "0-2", "contacts": "0-1"}
_ALIASES = {
    "companies": "companies",
    "company": "companies",
    "0-2": "companies",
    "contacts": "contacts",
    "contact": "contacts",
    "0-1": "contacts",
}
SINGULAR = {"companies": "COMPANY", "contacts": "CONTACT"}
LAST_MODIFIED = {"companies": "hs_lastmodifieddate", "contacts": "lastmodifieddate"}
DEFAULT_REQUESTED = {
    "companies": ("name", "domain"),
    "contacts": ("firstname", "lastname", "email"),
}
SEARCHABLE = {
    "companies": ("name", "domain", "website", "phone"),
    "contacts": ("firstname", "lastname", "email", "phone", "company"),
}
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
READ_ONLY = {
    "hs_object_id",
    "hs_lastmodifieddate",
    "lastmodifieddate",
    "createdate",
    "hs_merged_object_ids",
}


def canonical_type(name: str) -> str | None:
    """``companies``/``company``/``0-2`` -> ``companies`` (None when unknown)."""
    return _ALIASES.get(name.lower())


@dataclass
class PropertyDef:
    """One property definition, as the properties API shows it."""

    name: str
    label: str
    type: str = "string"
    field_type: str = "text"
    group_name: str = "companyinformation"
    description: str = ""
    options: list[dict[str, Any]] = field(default_factory=list)
    has_unique_value: bool = False
    hubspot_defined: bool = False
    created_at: str = "2019-08-06T02:41:08.029Z"  # HubSpot-defined properties predate any portal

    def to_json(self) -> dict[str, Any]:
        """The ``Property`` JSON shape."""
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "groupName": self.group_name,
            "description": self.description,
            "options": self.options,
            "displayOrder": -1,
            "hasUniqueValue": self.has_unique_value,
            "hidden": False,
            "formField": False,
            "hubspotDefined": self.hubspot_defined,
            "calculated": False,
            "externalOptions": False,
            "archived": False,
            "createdAt": self.created_at,
            "updatedAt": self.created_at,
            "modificationMetadata": {
                "archivable": not self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.name in READ_ONLY,
            },
        }


_DEFAULT_TEXT = {
    "companies": "name domain website phone address address2 city state zip country industry "
    "description type",
    "contacts": "firstname lastname email phone mobilephone company jobtitle address city state "
    "zip country website",
}


def _defaults(object_type: str) -> list[PropertyDef]:
    group = "companyinformation" if object_type == "companies" else "contactinformation"
    text = _DEFAULT_TEXT[object_type].split()
    props = [PropertyDef(n, n.title(), group_name=group, hubspot_defined=True) for n in text]
    numbers = ["annualrevenue", "numberofemployees"] if object_type == "companies" else []
    props += [PropertyDef(n, n, "number", "number", group, hubspot_defined=True) for n in numbers]
    props += [
        PropertyDef("hs_object_id", "Record ID", "number", "number", group, hubspot_defined=True),
        PropertyDef("createdate", "Create Date", "datetime", "date", group, hubspot_defined=True),
        # The old ids of a merged record, ";"-separated (HubSpot: enumeration, checkbox).
        PropertyDef(
            "hs_merged_object_ids",
            f"Merged {SINGULAR[object_type].title()} IDs",
            "enumeration",
            "checkbox",
            group,
            hubspot_defined=True,
        ),
        PropertyDef(
            LAST_MODIFIED[object_type],
            "Last Modified Date",
            "datetime",
            "date",
            group,
            hubspot_defined=True,
        ),
    ]
    if object_type == "contacts":
        props[[p.name for p in props].index("email")].has_unique_value = True
        props.append(
            PropertyDef(
                "lifecyclestage",
                "Lifecycle Stage",
                "enumeration",
                "radio",
                group,
                options=[_option(v) for v in ("subscriber", "lead", "customer", "other")],
                hubspot_defined=True,
            )
        )
    return props


def _option(value: str) -> dict[str, Any]:
    return {"label": value.title(), "value": value, "displayOrder": -1, "hidden": False}


class PropertyRegistry:
    """Property definitions and groups per object type (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._props: dict[str, dict[str, PropertyDef]] = {}
        self._groups: dict[str, dict[str, dict[str, Any]]] = {}
        self.reset()

    def reset(self) -> None:
        """Back to HubSpot's default properties only."""
        with self._lock:
            self._props = {t: {p.name: p for p in _defaults(t)} for t in OBJECT_TYPES}
            self._groups = {
                t: {
                    g: {"name": g, "label": g.title(), "displayOrder": -1, "archived": False}
                    for g in ("companyinformation", "contactinformation")
                }
                for t in OBJECT_TYPES
            }

    def get(self, object_type: str, name: str) -> PropertyDef | None:
        """A definition, or None."""
        return self._props[object_type].get(name)

    def all(self, object_type: str) -> list[PropertyDef]:
        """Every definition of the type."""
        with self._lock:
            return list(self._props[object_type].values())

    def unique_names(self, object_type: str) -> list[str]:
        """Properties whose values must be unique (usable as ``idProperty``)."""
        return [p.name for p in self.all(object_type) if p.has_unique_value]

    def create(self, object_type: str, body: dict[str, Any], now_iso: str) -> PropertyDef:
        """Create a custom property from a ``PropertyCreate`` body; 409 if it exists."""
        missing = [
            k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)
        ]
        if missing:
            raise validation(f"Missing required fields: {', '.join(missing)}")
        if body["type"] not in ("string", "number", "date", "datetime", "enumeration", "bool"):
            raise validation(f"Invalid property type: {body['type']}")
        prop = PropertyDef(
            name=str(body["name"]),
            label=str(body["label"]),
            type=str(body["type"]),
            field_type=str(body["fieldType"]),
            group_name=str(body["groupName"]),
            description=str(body.get("description") or ""),
            options=[{"displayOrder": -1, "hidden": False, **o} for o in body.get("options") or []],
            has_unique_value=bool(body.get("hasUniqueValue", False)),
            created_at=now_iso,
        )
        with self._lock:
            if prop.group_name not in self._groups[object_type]:
                raise validation(f"Property group {prop.group_name} does not exist")
            if prop.name in self._props[object_type]:
                raise ApiError(
                    409, "OBJECT_ALREADY_EXISTS", f"Property already exists: {prop.name}"
                )
            self._props[object_type][prop.name] = prop
        return prop

    def groups(self, object_type: str) -> list[dict[str, Any]]:
        """Every property group of the type."""
        with self._lock:
            return [dict(g) for g in self._groups[object_type].values()]

    def create_group(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a property group; 409 if it exists."""
        if not body.get("name") or not body.get("label"):
            raise validation("Missing required fields: name, label")
        group = {
            "name": str(body["name"]),
            "label": str(body["label"]),
            "displayOrder": int(body.get("displayOrder", -1)),
            "archived": False,
        }
        with self._lock:
            if group["name"] in self._groups[object_type]:
                raise ApiError(
                    409, "OBJECT_ALREADY_EXISTS", f"Property group already exists: {group['name']}"
                )
            self._groups[object_type][str(group["name"])] = group
        return dict(group)

    def normalize(self, object_type: str, values: dict[str, Any]) -> dict[str, str]:
        """Check a write's property values; the stored strings, or 400 like HubSpot."""
        problems: list[dict[str, Any]] = []
        out: dict[str, str] = {}
        for name, raw in values.items():
            prop = self.get(object_type, name)
            if prop is None:
                problems.append(
                    _problem(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
                )
                continue
            if name in READ_ONLY and name != "createdate":
                problems.append(
                    _problem(
                        name,
                        "READ_ONLY_VALUE",
                        f'"{name}" is a read only property; its value cannot be set.',
                    )
                )
                continue
            try:
                out[name] = _coerce(prop, raw)
            except ValueError as exc:
                problems.append(_problem(name, exc.args[0], exc.args[1]))
        if problems:
            summary = json.dumps(
                [{k: p[k] for k in ("isValid", "message", "error", "name")} for p in problems],
                separators=(",", ":"),
            )
            raise validation(
                f"Property values were not valid: {summary}",
                errors=[
                    {
                        "message": p["message"],
                        "code": p["error"],
                        "context": {"propertyName": [p["name"]]},
                    }
                    for p in problems
                ],
            )
        return out


def _problem(name: str, code: str, message: str) -> dict[str, Any]:
    return {"isValid": False, "message": message, "error": code, "name": name}


def _coerce(prop: PropertyDef, raw: Any) -> str:
    """The stored string for ``raw``; ValueError(code, message) when invalid."""
    if raw is None:
        return ""
    value = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
    if value == "":
        return ""  # an empty string clears the value
    if prop.type == "number":
        # HubSpot takes digits, one optional leading "-" and one optional ".": no
        # spaces, commas, exponents, underscores, NaN or Infinity (docs/hubspot.md,
        # "Numbers"), all of which Python's float() would accept.
        if not _NUMBER.fullmatch(value):
            raise ValueError("INVALID_LONG", f"{value} was not a valid long.")
        return value
    if prop.type == "bool":
        if value.lower() not in ("true", "false"):
            raise ValueError("INVALID_BOOLEAN", f"{value} was not a valid boolean.")
        return value.lower()
    if prop.type == "enumeration":
        allowed = {o["value"] for o in prop.options}
        chosen = [v for v in value.split(";") if v]
        bad = [v for v in chosen if v not in allowed]
        if bad:
            raise ValueError(
                "INVALID_OPTION",
                f"{bad[0]} was not one of the allowed options: [{', '.join(sorted(allowed))}]",
            )
        return value
    if prop.type == "datetime":
        return iso_ms(parse_instant(value, prop.name))
    if prop.type == "date":
        ms = parse_instant(value, prop.name)
        if ms % 86_400_000:
            raise ValueError("INVALID_DATE", f"{value} is at a time other than midnight UTC")
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")
    return value


def parse_instant(value: str, name: str = "") -> int:
    """Epoch ms from epoch-ms digits, ``YYYY-MM-DD`` or ISO 8601; ValueError otherwise."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("INVALID_DATE", f"{value} was not a valid date for {name}.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    """Epoch ms -> ``2024-01-17T19:55:04.281Z``."""
    return (
        datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    )
