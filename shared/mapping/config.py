"""WARP's ``hubspot_sync_config.field_mappings`` JSON, parsed and checked (pure).

The format is WARP's own: an object whose keys are field names and whose values
hold ``hubspot_property``, ``warp_field``, optional ``warp_field_path``,
``sync_direction``, ``conflict_resolution`` and optional ``transform``. Optional
keys we add: ``entity_type`` ("customer" | "contact"), ``unless_blank`` (bool),
``transform_args`` (object) and ``hubspot_type``. docs/sync-rules.md describes them.

Every problem of a configuration is collected into one :class:`MappingConfigError`
that names the configuration, the field and the problem.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from shared.errors import ConfigurationError
from shared.mapping.model import ConflictRule, Direction, EntityType, FieldMapping, MappingSet
from shared.mapping.transforms import HubSpotType, MappingError

CUSTOMER_CONFIG = "default_customer_sync"
CONTACT_CONFIG = "default_contact_sync"

# WARP's published global row, with one correction: WARP maps contact.email to the
# company's `domain` both ways with no transform, which would write an email address
# into a domain property and, inbound, overwrite the contact's email with a domain.
# The domain is derived from the email, one way.
DEFAULT_CUSTOMER_SYNC: dict[str, dict[str, Any]] = {
    "company_name": {
        "hubspot_property": "name",
        "warp_field": "company_name",
        "sync_direction": "BIDIRECTIONAL",
        "conflict_resolution": "LATEST_WINS",
    },
    "ban": {
        "hubspot_property": "warp_ban",
        "warp_field": "ban",
        "sync_direction": "WARP_TO_HUBSPOT",
        "conflict_resolution": "WARP_WINS",
    },
    "status": {
        "hubspot_property": "warp_status",
        "warp_field": "status",
        "sync_direction": "BIDIRECTIONAL",
        "conflict_resolution": "WARP_WINS",
    },
    "credit_limit": {
        "hubspot_property": "warp_credit_limit",
        "warp_field": "credit_limit",
        "sync_direction": "BIDIRECTIONAL",
        "conflict_resolution": "HUBSPOT_WINS",
    },
    "contact_email": {
        "hubspot_property": "domain",
        "warp_field": "contact.email",
        "warp_field_path": "contact->>'email'",
        "sync_direction": "WARP_TO_HUBSPOT",
        "conflict_resolution": "WARP_WINS",
        "transform": "email_to_domain",
    },
}

# The customer's primary contact as a HubSpot contact. The full name is one WARP
# value and two HubSpot properties: one field per half, joined on the way back.
# Field names are unique across both configurations (the API resolves conflicts
# by field name), hence contact_email_address beside WARP's contact_email.
DEFAULT_CONTACT_SYNC: dict[str, dict[str, Any]] = {
    "contact_firstname": {
        "entity_type": "contact",
        "hubspot_property": "firstname",
        "warp_field": "contact.name",
        "warp_field_path": "contact->>'name'",
        "sync_direction": "BIDIRECTIONAL",
        "conflict_resolution": "LATEST_WINS",
        "transform": "first_name",
    },
    "contact_lastname": {
        "entity_type": "contact",
        "hubspot_property": "lastname",
        "warp_field": "contact.name",
        "warp_field_path": "contact->>'name'",
        "sync_direction": "BIDIRECTIONAL",
        "conflict_resolution": "LATEST_WINS",
        "transform": "last_name",
    },
    "contact_email_address": {
        "entity_type": "contact",
        "hubspot_property": "email",
        "warp_field": "contact.email",
        "warp_field_path": "contact->>'email'",
        "sync_direction": "BIDIRECTIONAL",
        "conflict_resolution": "LATEST_WINS",
    },
    "contact_phone": {
        "entity_type": "contact",
        "hubspot_property": "phone",
        "warp_field": "contact.phone",
        "warp_field_path": "contact->>'phone'",
        "sync_direction": "BIDIRECTIONAL",
        "conflict_resolution": "LATEST_WINS",
    },
}

_REQUIRED = ("hubspot_property", "sync_direction", "conflict_resolution")
_OPTIONAL = (
    "warp_field",
    "warp_field_path",
    "transform",
    "transform_args",
    "entity_type",
    "unless_blank",
    "hubspot_type",
)
_COLUMN = r"[A-Za-z_][A-Za-z0-9_]*"
_ARROW_PATH = re.compile(rf"\s*({_COLUMN})((?:\s*->>?\s*'[^']*')*)\s*")
_ARROW_STEP = re.compile(r"\s*(->>?)\s*'([^']*)'")
_DOTTED_PATH = re.compile(rf"({_COLUMN})((?:\.[^.\s]+)*)")


class MappingConfigError(ConfigurationError):
    """A mapping configuration is invalid; ``problems`` lists every finding."""

    def __init__(self, config_name: str, problems: Iterable[str]) -> None:
        self.config_name = config_name
        self.problems = tuple(problems)
        super().__init__(
            f"invalid field_mappings in config {config_name!r}: " + "; ".join(self.problems)
        )


def default_entity_type(config_name: str) -> EntityType:
    """The entity a configuration's fields belong to unless a field says otherwise."""
    return EntityType.CONTACT if "contact" in config_name.lower() else EntityType.CUSTOMER


def parse_warp_field(text: object) -> tuple[str, tuple[str, ...]]:
    """``(column, json_path)`` from a WARP field or path.

    Accepts ``company_name``, ``contact.email``, ``contact->>'email'`` and
    ``address->'geo'->>'lat'``.
    """
    if not isinstance(text, str) or not text.strip():
        raise MappingError("a WARP field must be a non-empty string")
    dotted = _DOTTED_PATH.fullmatch(text.strip())
    if dotted:
        column, rest = dotted.groups()
        return column, tuple(rest.split(".")[1:])
    arrows = _ARROW_PATH.fullmatch(text)
    if not arrows:
        raise MappingError(
            f"cannot read WARP path {text!r}: use column, column.key or column->'key'->>'key'"
        )
    column, rest = arrows.groups()
    steps = _ARROW_STEP.findall(rest)
    if any(op == "->>" for op, _ in steps[:-1]):
        raise MappingError(f"WARP path {text!r}: ->> yields text, so only the last step may use it")
    return column, tuple(key for _, key in steps)


def _choice(entry: Mapping[str, Any], key: str, enum: Any, problems: list[str]) -> Any:
    value = entry.get(key)
    try:
        return enum(value)
    except ValueError:
        problems.append(f"unknown {key} {value!r} (expected one of {', '.join(enum)})")
        return None


def _parse_field(
    name: str, entry: object, default_entity: EntityType, inherited: FieldMapping | None
) -> FieldMapping | list[str]:
    """One field, or the list of its problems."""
    if not isinstance(entry, Mapping):
        return [f"must be an object, not {type(entry).__name__}"]
    problems = [f"missing {key}" for key in _REQUIRED if key not in entry]
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        problems.append(f"unknown keys {unknown}")
    if not isinstance(entry.get("hubspot_property", ""), str):
        problems.append("hubspot_property must be a string")

    places = []
    for key in ("warp_field", "warp_field_path"):
        if entry.get(key) is not None:
            try:
                places.append(parse_warp_field(entry[key]))
            except MappingError as exc:
                problems.append(f"{key}: {exc}")
    if "warp_field" not in entry and "warp_field_path" not in entry:
        problems.append("missing warp_field")
    elif len(places) == 2 and places[0] != places[1]:
        problems.append(
            f"warp_field {entry['warp_field']!r} and warp_field_path "
            f"{entry['warp_field_path']!r} name different values"
        )

    # Placeholders when a key is missing or wrong: the problem is recorded, so the
    # field is never built from them.
    direction: Direction = Direction.NONE
    if "sync_direction" in entry:
        direction = _choice(entry, "sync_direction", Direction, problems)
    rule: ConflictRule = ConflictRule.MANUAL
    if "conflict_resolution" in entry:
        rule = _choice(entry, "conflict_resolution", ConflictRule, problems)
    entity = inherited.entity_type if inherited is not None else default_entity
    if entry.get("entity_type") is not None:
        entity = _choice(entry, "entity_type", EntityType, problems)
    hubspot_type = None
    if entry.get("hubspot_type") is not None:
        hubspot_type = _choice(entry, "hubspot_type", HubSpotType, problems)
    transform = entry.get("transform")
    if transform is not None and not isinstance(transform, str):
        problems.append("transform must be a string or null")
    args = entry.get("transform_args") or {}
    if not isinstance(args, Mapping):
        problems.append("transform_args must be an object")
    unless_blank = entry.get("unless_blank", False)
    if not isinstance(unless_blank, bool):
        problems.append("unless_blank must be true or false")
    if problems:
        # Also what the field itself would refuse (unknown column or transform, a
        # read-only field written inbound): a person fixes the row once, not once per
        # problem. Keys that are missing or wrong take neutral stand-ins here.
        if places and isinstance(transform, str | None) and isinstance(args, Mapping):
            property_name = entry.get("hubspot_property")
            problems += _field_problems(
                name=name,
                entity_type=entity or default_entity,
                hubspot_property=property_name if isinstance(property_name, str) else "-",
                warp_column=places[0][0],
                warp_path=places[0][1],
                direction=direction or Direction.NONE,
                rule=rule or ConflictRule.MANUAL,
                transform=transform,
                transform_args=dict(args),
            )
        return problems
    column, path = places[0]
    try:
        return FieldMapping(
            name=name,
            entity_type=entity,
            hubspot_property=entry["hubspot_property"],
            warp_column=column,
            warp_path=path,
            direction=direction,
            rule=rule,
            transform=transform,
            unless_blank=unless_blank,
            transform_args=dict(args),
            hubspot_type=hubspot_type,
        )
    except MappingError as exc:
        return [str(exc)]


def _field_problems(**values: Any) -> list[str]:
    """What :class:`FieldMapping` refuses in these values (empty: nothing)."""
    try:
        FieldMapping(**values)
    except MappingError as exc:
        return str(exc).split("; ")
    return []


def set_problems(fields: Iterable[FieldMapping]) -> list[str]:
    """Problems between fields: two fields writing the same HubSpot property of one object."""
    writers: dict[tuple[EntityType, str], list[str]] = defaultdict(list)
    for f in fields:
        if f.direction.allows_outbound:
            writers[(f.entity_type, f.hubspot_property)].append(f.name)
    return [
        f"fields {', '.join(repr(n) for n in names)} all write {entity} property {prop!r}"
        for (entity, prop), names in writers.items()
        if len(names) > 1
    ]


def parse_field_mappings(
    raw: object,
    *,
    config_name: str,
    default_entity_type: EntityType,
    inherit_from: MappingSet | None = None,
) -> MappingSet:
    """Parse one configuration's ``field_mappings`` (an object, or its JSON text).

    A field without ``entity_type`` belongs to ``default_entity_type``, unless
    ``inherit_from`` (the global set a per-customer row overrides) has a field of
    the same name: then it keeps that field's entity. Raises MappingConfigError
    listing every problem found.
    """
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise MappingConfigError(config_name, [f"not valid JSON ({exc})"]) from None
    if not isinstance(raw, Mapping):
        raise MappingConfigError(config_name, [f"must be a JSON object, not {type(raw).__name__}"])
    problems: list[str] = []
    fields: dict[str, FieldMapping] = {}
    inherited = inherit_from.fields if inherit_from is not None else {}
    for name, entry in raw.items():
        parsed = _parse_field(str(name), entry, default_entity_type, inherited.get(name))
        if isinstance(parsed, FieldMapping):
            fields[parsed.name] = parsed
        else:
            problems.extend(f"field {name!r}: {problem}" for problem in parsed)
    problems.extend(set_problems(fields.values()))
    if problems:
        raise MappingConfigError(config_name, problems)
    return MappingSet(default_entity_type, fields, (config_name,))


def merge_mappings(global_set: MappingSet, override_set: MappingSet) -> MappingSet:
    """The global fields with the per-customer ones replacing them by name.

    An override with direction NONE switches a field off for that customer.
    Raises MappingConfigError when the result has two writers of one property.
    """
    fields = {**global_set.fields, **override_set.fields}
    sources = global_set.sources + override_set.sources
    problems = set_problems(fields.values())
    if problems:
        raise MappingConfigError(" + ".join(sources), problems)
    return MappingSet(global_set.entity_type, fields, sources)


def combine_configs(sets: Iterable[MappingSet]) -> MappingSet:
    """Several configurations of one level (global, or one customer's) as one set.

    A field name defined by two of them is an error: which one wins would be arbitrary.
    """
    fields: dict[str, FieldMapping] = {}
    origin: dict[str, str] = {}
    sources: tuple[str, ...] = ()
    problems = []
    for mapping_set in sets:
        sources += mapping_set.sources
        for name, f in mapping_set.fields.items():
            source = mapping_set.sources[0] if mapping_set.sources else "?"
            if name in fields:
                problems.append(
                    f"field {name!r} is defined by both {origin[name]!r} and {source!r}"
                )
            fields[name] = f
            origin[name] = source
    problems.extend(set_problems(fields.values()))
    if problems:
        raise MappingConfigError(" + ".join(sources), problems)
    return MappingSet(EntityType.CUSTOMER, fields, sources)


def default_mappings() -> MappingSet:
    """The built-in global configuration: WARP's customer row (corrected) and the contact row."""
    return combine_configs(
        parse_field_mappings(raw, config_name=name, default_entity_type=default_entity_type(name))
        for name, raw in (
            (CUSTOMER_CONFIG, DEFAULT_CUSTOMER_SYNC),
            (CONTACT_CONFIG, DEFAULT_CONTACT_SYNC),
        )
    )
