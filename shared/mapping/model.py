"""The mapping model: one field's mapping between a WARP customer and HubSpot (pure).

A :class:`FieldMapping` knows where its value lives in a row of
``accounts.customers`` (a column, or a path inside a JSONB column), which HubSpot
property it maps to, its direction, conflict rule and transform, and converts
values both ways. A :class:`MappingSet` is the fields of one configuration.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, Literal

from shared.mapping.transforms import (
    TRANSFORMS,
    HubSpotType,
    MappingError,
    Transform,
    canonical,
    format_number,
    format_value,
    is_blank,
    parse_value,
    to_decimal,
)

if TYPE_CHECKING:  # types only: the mapping layer does not load the HubSpot client
    from shared.hubspot.models import ObjectType

# A HubSpot object as webhooks (``company.propertyChange``) and people name it.
ObjectName = Literal["company", "contact"]


class Direction(StrEnum):
    """Which way a field flows."""

    WARP_TO_HUBSPOT = "WARP_TO_HUBSPOT"
    HUBSPOT_TO_WARP = "HUBSPOT_TO_WARP"
    BIDIRECTIONAL = "BIDIRECTIONAL"
    NONE = "NONE"

    @property
    def allows_outbound(self) -> bool:
        """Values may be written to HubSpot."""
        return self in (Direction.WARP_TO_HUBSPOT, Direction.BIDIRECTIONAL)

    @property
    def allows_inbound(self) -> bool:
        """Values may be written to WARP."""
        return self in (Direction.HUBSPOT_TO_WARP, Direction.BIDIRECTIONAL)


class ConflictRule(StrEnum):
    """How a field is resolved when both sides changed it since it last crossed."""

    WARP_WINS = "WARP_WINS"
    HUBSPOT_WINS = "HUBSPOT_WINS"
    LATEST_WINS = "LATEST_WINS"
    MANUAL = "MANUAL"


# The one vocabulary of entity and HubSpot object: the CRM object type the API takes,
# the object's name in webhooks, and the external_ids key of the customer's link.
# (The docstring is the API's description of the enum: kept to what a field is.)
class EntityType(StrEnum):
    """The HubSpot object a field belongs to."""

    CUSTOMER = "customer"  # the customer's HubSpot company
    CONTACT = "contact"  # the customer's primary contact

    @property
    def object_type(self) -> ObjectType:
        """The CRM object type of the API's paths (``/crm/v3/objects/companies``)."""
        return "companies" if self is EntityType.CUSTOMER else "contacts"

    @property
    def object_name(self) -> ObjectName:
        """The object's name in webhook events and in notes for people."""
        return "company" if self is EntityType.CUSTOMER else "contact"

    @property
    def link_key(self) -> str:
        """The key of the customer row's ``external_ids`` holding the linked object's id."""
        return "hubspot_company_id" if self is EntityType.CUSTOMER else "hubspot_contact_id"

    @classmethod
    def of_object_name(cls, name: str) -> EntityType | None:
        """The entity a webhook's object name stands for; None for objects not synced."""
        return next((et for et in cls if et.object_name == name), None)


# The columns of accounts.customers a mapping may name, with the HubSpot value
# format a column implies when neither the mapping nor its transform sets one
# (None: a JSONB column, whose values are strings unless told otherwise).
CUSTOMER_COLUMNS: Mapping[str, HubSpotType | None] = {
    "id": HubSpotType.STRING,
    "ban": HubSpotType.STRING,
    "company_name": HubSpotType.STRING,
    "legal_name": HubSpotType.STRING,
    "status": HubSpotType.STRING,
    "customer_type": HubSpotType.STRING,
    "contact": None,
    "address": None,
    "credit_limit": HubSpotType.NUMBER,
    "current_balance": HubSpotType.NUMBER,
    "prepaid_balance": HubSpotType.NUMBER,
    "payment_terms": HubSpotType.NUMBER,
    "billing_cycle": HubSpotType.STRING,
    "currency": HubSpotType.STRING,
    "external_ids": None,
    "custom_fields": None,
    "created_at": HubSpotType.DATETIME,
    "updated_at": HubSpotType.DATETIME,
    "last_synced_to_hubspot": HubSpotType.DATETIME,
    "last_synced_from_hubspot": HubSpotType.DATETIME,
    "hubspot_sync_enabled": HubSpotType.BOOL,
}
INTEGER_COLUMNS = frozenset({"payment_terms"})
# Written by WARP or by the sync itself; HubSpot must never overwrite them.
READ_ONLY_FIELDS = frozenset(
    {
        ("id",),
        ("created_at",),
        ("updated_at",),
        ("last_synced_to_hubspot",),
        ("last_synced_from_hubspot",),
        *(("external_ids", et.link_key) for et in EntityType),
    }
)


# Per mapping and conversion. One plan reuses its few values at once, and common
# values ("ACTIVE") stay remembered across customers; about 1 MB at most in all.
_FORMS_REMEMBERED = 512


def _json_value(value: Any) -> Any:
    """A value as it can be stored inside JSONB without losing digits."""
    if isinstance(value, Decimal):
        return format_number(value)
    if isinstance(value, datetime):
        return format_value(value, HubSpotType.DATETIME)
    if isinstance(value, date):
        return format_value(value, HubSpotType.DATE)
    return value


@dataclass(frozen=True)
class FieldMapping:
    """One mapped field. Construction checks the mapping and raises MappingError."""

    name: str
    entity_type: EntityType
    hubspot_property: str
    warp_column: str
    warp_path: tuple[str, ...]
    direction: Direction
    rule: ConflictRule
    transform: str | None = None
    unless_blank: bool = False
    transform_args: Mapping[str, Any] = field(default_factory=dict, hash=False)
    hubspot_type: HubSpotType | None = None
    # Remembered forms of text values (see __post_init__); not part of the mapping.
    _text_canonical: Callable[[str | None], str] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _text_canonical_warp: Callable[[str | None], str] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise MappingError("; ".join(problems))
        # Planning one field puts the same values in canonical form several times
        # (the decision, then whether the state changed), and many customers share
        # values ("ACTIVE"); that was most of planning a reconciliation (74 -> 38 us
        # a record, measured). A text value (or None) always has the same form under
        # one mapping, so those forms are remembered, a bounded number per mapping.
        # Other types are converted each time: Decimal("1.0") and Decimal("1.00") are
        # equal keys but need not give the same string.
        object.__setattr__(
            self, "_text_canonical", lru_cache(maxsize=_FORMS_REMEMBERED)(self._normalise)
        )
        object.__setattr__(
            self,
            "_text_canonical_warp",
            lru_cache(maxsize=_FORMS_REMEMBERED)(self._normalise_warp),
        )

    def _problems(self) -> list[str]:
        problems = []
        if not self.hubspot_property:
            problems.append("hubspot_property is empty")
        if self.warp_column not in CUSTOMER_COLUMNS:
            problems.append(f"unknown WARP column {self.warp_column!r} in accounts.customers")
        elif self.warp_path and CUSTOMER_COLUMNS[self.warp_column] is not None:
            problems.append(f"column {self.warp_column!r} is not JSONB, so it has no path")
        elif not self.warp_path and CUSTOMER_COLUMNS[self.warp_column] is None:
            problems.append(f"JSONB column {self.warp_column!r} needs a path to one value")
        if any(not key for key in self.warp_path):
            problems.append("the JSON path has an empty key")
        if (
            self.direction.allows_inbound
            and (self.warp_column, *self.warp_path) in READ_ONLY_FIELDS
        ):
            problems.append(
                f"{self.warp_field} is read-only, but {self.direction} would write it from HubSpot"
            )
        if self.transform is not None:
            known = TRANSFORMS.get(self.transform)
            if known is None:
                problems.append(
                    f"unknown transform {self.transform!r} (known: {', '.join(sorted(TRANSFORMS))})"
                )
            else:
                problems.extend(known.check_args(self.transform_args))
                if (
                    not problems
                    and self.direction.allows_inbound
                    and not known.has_inverse(self.transform_args)
                ):
                    problems.append(
                        f"transform {self.transform!r} is one-way (no inverse with these "
                        f"arguments), but {self.direction} would write WARP from HubSpot"
                    )
        elif self.transform_args:
            problems.append("transform_args given without a transform")
        return problems

    @property
    def warp_field(self) -> str:
        """The dotted name of the WARP value, e.g. ``contact.email``."""
        return ".".join((self.warp_column, *self.warp_path))

    def named_by(self, names: Collection[str]) -> bool:
        """Whether a WARP change naming ``names`` concerns this field.

        WARP names a change by column or path (``company_name``, ``contact``,
        ``contact.email``); a name concerns every field it names (by field name, column
        or dotted path) and every field inside the column or object it names.
        """
        path = self.warp_field
        return any(
            n in (self.name, self.warp_column, path) or path.startswith(n + ".") for n in names
        )

    @property
    def transform_spec(self) -> Transform | None:
        """The registered transform, or None for a plain copy."""
        return TRANSFORMS[self.transform] if self.transform is not None else None

    @property
    def value_type(self) -> HubSpotType:
        """The HubSpot value format: the mapping's, else the transform's, else the column's."""
        if self.hubspot_type is not None:
            return self.hubspot_type
        spec = self.transform_spec
        if spec is not None:
            return spec.hubspot_type
        if self.warp_path:
            return HubSpotType.STRING
        return CUSTOMER_COLUMNS[self.warp_column] or HubSpotType.STRING

    # -- WARP side ---------------------------------------------------------------------

    def read_warp(self, customer_row: Mapping[str, Any]) -> Any:
        """The field's value in a customers row (column, then JSON path); missing gives None."""
        value = customer_row.get(self.warp_column)
        for key in self.warp_path:
            if isinstance(value, str):
                value = json.loads(value)  # a driver that hands JSONB over as text
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return value

    def write_warp(self, customer_row: Mapping[str, Any], value: Any) -> tuple[str, Any]:
        """The (column, new column value) that stores ``value`` in this field.

        For a JSONB path that is the whole updated object, every other key kept.
        """
        if not self.warp_path:
            return self.warp_column, value
        document = customer_row.get(self.warp_column)
        if isinstance(document, str):
            document = json.loads(document)
        root: dict[str, Any] = dict(document) if isinstance(document, Mapping) else {}
        node = root
        for depth, key in enumerate(self.warp_path[:-1], start=1):
            child = node.get(key)
            if child is None:
                child = {}
            elif not isinstance(child, Mapping):
                where = ".".join((self.warp_column, *self.warp_path[:depth]))
                raise MappingError(
                    f"{where} holds a non-object value, so it has no key {self.warp_path[depth]!r}"
                )
            node[key] = node = dict(child)
        node[self.warp_path[-1]] = _json_value(value)
        return self.warp_column, root

    # -- conversions -------------------------------------------------------------------

    def to_hubspot(self, warp_value: Any) -> str:
        """The HubSpot property string for a WARP value; ``""`` clears the property."""
        spec = self.transform_spec
        if spec is None or (is_blank(warp_value) and not spec.handles_blank):
            return format_value(warp_value, self.value_type)
        return format_value(spec.forward(warp_value, self.transform_args), self.value_type)

    def to_warp(self, hubspot_value: str | None, current: Any = None) -> Any:
        """The WARP value for a HubSpot property string.

        ``current`` is the WARP value being replaced: a transform that maps part of
        a WARP value (a name half) keeps the rest of it. Raises MappingError for a
        one-way transform or a value that does not fit.
        """
        spec = self.transform_spec
        if spec is not None and not spec.has_inverse(self.transform_args):
            raise MappingError(
                f"transform {spec.name!r} is one-way: HubSpot values cannot map back"
            )
        parsed = parse_value(hubspot_value, self.value_type)
        if (
            spec is not None
            and spec.inverse is not None
            and (parsed is not None or spec.handles_blank)
        ):
            parsed = spec.inverse(parsed, current, self.transform_args)
        if parsed is not None and not self.warp_path and self.warp_column in INTEGER_COLUMNS:
            number = to_decimal(parsed)
            if number != number.to_integral_value():
                raise MappingError(f"{self.warp_column} takes whole numbers only")
            return int(number)
        return parsed

    def canonical_hubspot(self, value: str | None) -> str:
        """``value`` normalised for equality ("1500.00" = "1500"; blank = "")."""
        if value is None or type(value) is str:
            return self._text_canonical(value)
        return self._normalise(value)

    def canonical_warp(self, warp_value: Any) -> str:
        """A WARP value in HubSpot's compared form: ``canonical_hubspot(to_hubspot(value))``."""
        if warp_value is None or type(warp_value) is str:
            return self._text_canonical_warp(warp_value)
        return self._normalise_warp(warp_value)

    def _normalise_warp(self, warp_value: Any) -> str:
        return self.canonical_hubspot(self.to_hubspot(warp_value))

    def _normalise(self, value: str | None) -> str:
        form = canonical(value, self.value_type)
        spec = self.transform_spec
        return form.lower() if spec is not None and spec.case_insensitive else form


@dataclass(frozen=True)
class MappingSet:
    """The fields of one configuration, or of global and per-customer ones merged.

    ``entity_type`` is the set's default; each field carries its own, and
    :meth:`for_entity` selects one object's fields (what the sync engine works on).
    ``sources`` names the configurations it came from, for messages.
    """

    entity_type: EntityType
    fields: Mapping[str, FieldMapping]
    sources: tuple[str, ...] = ()

    def for_entity(self, entity_type: EntityType) -> MappingSet:
        """Only the fields of ``entity_type``."""
        found = self._entity_sets.get(entity_type)
        if found is None:
            chosen = {k: f for k, f in self.fields.items() if f.entity_type == entity_type}
            found = self._entity_sets[entity_type] = MappingSet(entity_type, chosen, self.sources)
        return found

    def active(self) -> tuple[FieldMapping, ...]:
        """Every field that syncs at all (direction not NONE)."""
        return self._active

    # A set is asked for its subsets and active fields once per record synced; it
    # never changes, so each is worked out once (cached_property writes past frozen).
    @cached_property
    def _active(self) -> tuple[FieldMapping, ...]:
        return tuple(f for f in self.fields.values() if f.direction is not Direction.NONE)

    @cached_property
    def _entity_sets(self) -> dict[EntityType, MappingSet]:
        return {}

    def by_property(self, hubspot_property: str) -> tuple[FieldMapping, ...]:
        """The active fields mapped to a HubSpot property (several may read one; one writes it)."""
        return tuple(f for f in self.active() if f.hubspot_property == hubspot_property)

    def outbound(self) -> tuple[FieldMapping, ...]:
        """Fields written to HubSpot."""
        return tuple(f for f in self.fields.values() if f.direction.allows_outbound)

    def inbound(self) -> tuple[FieldMapping, ...]:
        """Fields written to WARP."""
        return tuple(f for f in self.fields.values() if f.direction.allows_inbound)

    def hubspot_properties(self) -> tuple[str, ...]:
        """The HubSpot properties to read, each once, in field order."""
        return tuple(dict.fromkeys(f.hubspot_property for f in self.active()))

    def feeds(self, other: MappingSet) -> bool:
        """Whether a HubSpot value this set writes to WARP may change a value ``other`` reads.

        Locations are compared by column and JSON path, one containing the other
        (``contact`` holds ``contact.email``): the contact's ``contact.email`` feeds
        the company's domain when that derives from it (``email_to_domain``).
        """
        return any(
            _contains(written, read)
            for written in self._written_locations
            for read in other._read_locations
        )

    @cached_property
    def _written_locations(self) -> frozenset[tuple[str, ...]]:
        return frozenset((f.warp_column, *f.warp_path) for f in self.inbound())

    @cached_property
    def _read_locations(self) -> frozenset[tuple[str, ...]]:
        return frozenset((f.warp_column, *f.warp_path) for f in self.active())


def _contains(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One location is the other or holds it."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]
