"""HubSpot value formats and the named transforms of WARP's mapping format (pure).

Two layers turn a WARP value into the string HubSpot stores, and back:

1. a **transform** (optional, named in the mapping's ``transform`` key) relates the
   WARP value to the value HubSpot holds: ``multiply_by_100`` says "HubSpot holds
   the WARP amount times 100". A transform names a *relation*, not an operation in
   one direction, so the field's ``sync_direction`` only chooses which way it is
   evaluated. That is why ``multiply_by_100`` and ``hubspot_value_in_cents_to_dollars``
   are the same pair of functions: the first is named from WARP's side (dollars →
   cents on the way out), the second from HubSpot's side (cents → dollars on the way
   in); both mean "WARP holds dollars, HubSpot holds cents", whatever the direction.
2. a **value format** (:class:`HubSpotType`) renders that value as HubSpot's string:
   every CRM v3 property value is a JSON string, numbers without float error or
   exponent, booleans ``"true"``/``"false"``, dates ``YYYY-MM-DD``, datetimes ISO 8601
   UTC with milliseconds, and ``""`` clears a property.

Transforms without an inverse (``email_to_domain``) are one-way: a field using one
may only sync WARP → HubSpot, which the configuration parser enforces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal, Inexact, InvalidOperation
from enum import StrEnum
from typing import Any

from shared.errors import SyncError


class MappingError(SyncError):
    """A value cannot be mapped (wrong type, one-way transform, unknown enum value).

    Permanent: trying again with the same value gives the same answer. Messages
    name the problem, never the value, because values may be personal data.
    """


class HubSpotType(StrEnum):
    """How a value is written as a HubSpot property string."""

    STRING = "string"
    NUMBER = "number"
    BOOL = "bool"
    DATE = "date"
    DATETIME = "datetime"
    ENUMERATION = "enumeration"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS_PER_DAY = 86_400_000
_EPOCH_MS = re.compile(r"-?\d+")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Money arithmetic must be exact: a result that would need rounding is an error.
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation])
_CENT = Decimal("0.01")


def is_blank(value: object) -> bool:
    """True for the values that mean "empty" on either side: ``None`` and ``""``."""
    return value is None or value == ""


# -- numbers ---------------------------------------------------------------------------


def to_decimal(value: object) -> Decimal:
    """``value`` as an exact, finite Decimal (floats through their shortest repr)."""
    if isinstance(value, bool):
        raise MappingError("a boolean is not a number")
    try:
        if isinstance(value, Decimal):
            number = value
        elif isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float):
            number = Decimal(repr(value))
        elif isinstance(value, str):
            number = Decimal(value.strip())
        else:
            raise MappingError(f"a {type(value).__name__} is not a number")
    except InvalidOperation:
        raise MappingError("value is not a number") from None
    if not number.is_finite():
        raise MappingError("value is not a finite number")
    return number


def format_number(value: object) -> str:
    """HubSpot's number string: plain digits, no exponent, no trailing zeros."""
    text = format(to_decimal(value), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


# -- booleans --------------------------------------------------------------------------


def to_bool(value: object) -> bool:
    """``value`` as a bool; accepts bools and the strings "true"/"false"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise MappingError("value is not a boolean (expected true or false)")


# -- dates and datetimes ---------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    # WARP's timestamps are timestamptz; a naive one can only be UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_datetime(value: object) -> datetime:
    """``value`` as an aware UTC datetime: datetime, date (midnight), ISO text or epoch ms."""
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return _EPOCH + timedelta(milliseconds=value)
    if isinstance(value, str):
        text = value.strip()
        if _EPOCH_MS.fullmatch(text):
            return _EPOCH + timedelta(milliseconds=int(text))
        try:
            return _aware(datetime.fromisoformat(text))
        except ValueError:
            raise MappingError("value is not an ISO 8601 date-time or epoch milliseconds") from None
    raise MappingError(f"a {type(value).__name__} is not a date-time")


def to_date(value: object) -> date:
    """``value`` as a date; epoch ms and date-times must be midnight UTC, as HubSpot requires."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise MappingError("value is not a valid YYYY-MM-DD date") from None
    moment = to_datetime(value)
    if moment.time() != datetime.min.time():
        raise MappingError("a date property takes midnight UTC only")
    return moment.date()


def format_datetime(value: object) -> str:
    """ISO 8601 in UTC with milliseconds, HubSpot's own output form."""
    moment = to_datetime(value)
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


# -- formats ---------------------------------------------------------------------------


def _format_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return format_number(value)
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    raise MappingError(f"a {type(value).__name__} cannot be written as a HubSpot string")


_FORMATTERS: dict[HubSpotType, Callable[[Any], str]] = {
    HubSpotType.STRING: _format_text,
    HubSpotType.ENUMERATION: _format_text,
    HubSpotType.NUMBER: format_number,
    HubSpotType.BOOL: lambda value: "true" if to_bool(value) else "false",
    HubSpotType.DATE: lambda value: to_date(value).isoformat(),
    HubSpotType.DATETIME: format_datetime,
}

_PARSERS: dict[HubSpotType, Callable[[str], Any]] = {
    HubSpotType.STRING: str,
    HubSpotType.ENUMERATION: str,
    HubSpotType.NUMBER: to_decimal,
    HubSpotType.BOOL: to_bool,
    HubSpotType.DATE: to_date,
    HubSpotType.DATETIME: to_datetime,
}


def format_value(value: object, hubspot_type: HubSpotType) -> str:
    """``value`` as the HubSpot property string of ``hubspot_type``; blank gives ``""`` (clear)."""
    if is_blank(value):
        return ""
    return _FORMATTERS[hubspot_type](value)


def parse_value(text: str | None, hubspot_type: HubSpotType) -> Any:
    """A HubSpot property string as a Python value (Decimal, bool, date, ...); blank gives None."""
    if is_blank(text):
        return None
    return _PARSERS[hubspot_type](str(text))


def canonical(text: str | None, hubspot_type: HubSpotType) -> str:
    """The normal form two HubSpot strings are compared in ("1500.00" equals "1500").

    A string that does not parse as its type stays as it is, so it compares unequal
    to every well-formed value instead of failing the comparison.
    """
    if is_blank(text):
        return ""
    try:
        return format_value(parse_value(text, hubspot_type), hubspot_type)
    except MappingError:
        return str(text)


# -- names -----------------------------------------------------------------------------


def split_name(full_name: str | None) -> tuple[str, str]:
    """("Jane Q", "Doe") from "Jane Q Doe": the last word is the last name.

    A single word is a first name ("Cher" → ("Cher", "")); whitespace is normalised.
    """
    words = (full_name or "").split()
    if len(words) < 2:
        return (words[0] if words else "", "")
    return " ".join(words[:-1]), words[-1]


def join_name(first: str | None, last: str | None) -> str:
    """The full name from its halves, whitespace normalised ("" when both are blank)."""
    return " ".join(f"{first or ''} {last or ''}".split())


# -- the registry ----------------------------------------------------------------------

Args = Mapping[str, Any]
Forward = Callable[[Any, Args], Any]
# (value HubSpot holds, parsed; the WARP value it replaces; args) -> the new WARP value
Inverse = Callable[[Any, Any, Args], Any]


@dataclass(frozen=True)
class Transform:
    """One named transform: WARP value → HubSpot value, and back where possible.

    ``hubspot_type`` is the value format it implies unless the mapping sets one.
    ``handles_blank``: the functions also receive blank values (the name halves
    must, since clearing one half keeps the other); otherwise blank maps to blank.
    ``case_insensitive``: HubSpot values compare ignoring case (domains).
    """

    name: str
    description: str
    forward: Forward
    inverse: Inverse | None = None
    hubspot_type: HubSpotType = HubSpotType.STRING
    handles_blank: bool = False
    case_insensitive: bool = False
    check_args: Callable[[Args], list[str]] = lambda args: (
        [f"takes no transform_args (got {sorted(args)})"] if args else []
    )
    invertible_with: Callable[[Args], bool] = lambda args: True

    def has_inverse(self, args: Args) -> bool:
        """Whether HubSpot values can be turned back into WARP values with these args."""
        return self.inverse is not None and self.invertible_with(args)


def _cents(value: object, args: Args) -> Decimal:
    return _EXACT.multiply(to_decimal(value), Decimal(100))


def _dollars(value: object, current: object, args: Args) -> Decimal:
    dollars = _EXACT.divide(to_decimal(value), Decimal(100))
    if dollars != dollars.quantize(_CENT, context=Context(prec=60)):
        raise MappingError("HubSpot amount is not a whole number of cents")
    return dollars.quantize(_CENT, context=Context(prec=60))


def _domain(value: object, args: Args) -> str:
    _, at, domain = str(value).strip().rpartition("@")
    domain = domain.strip().lower()
    if not at or not domain or any(c.isspace() for c in domain):
        raise MappingError("value is not an email address with a domain")
    return domain


def _enum_map(args: Args) -> Mapping[str, str]:
    mapping: Mapping[str, str] = args["map"]
    return mapping


def _enum_key(value: object) -> str:
    return _format_text(value)


def _enum_forward(value: object, args: Args) -> str:
    key = _enum_key(value)
    table = _enum_map(args)
    if key not in table:
        raise MappingError(f"WARP value {key!r} has no entry in the enum_map")
    return table[key]


def _enum_inverse(value: object, current: object, args: Args) -> str:
    reverse = {hub: warp for warp, hub in _enum_map(args).items()}
    key = _enum_key(value)
    if key not in reverse:
        raise MappingError(f"HubSpot value {key!r} has no entry in the enum_map")
    return reverse[key]


def _check_enum_args(args: Args) -> list[str]:
    table = args.get("map")
    extra = sorted(set(args) - {"map"})
    problems = [f"unknown transform_args {extra}"] if extra else []
    if not isinstance(table, Mapping) or not table:
        return [*problems, 'enum_map needs transform_args {"map": {warp_value: hubspot_value}}']
    if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in table.items()):
        problems.append("enum_map keys and values must be non-empty strings")
    return problems


def _enum_one_to_one(args: Args) -> bool:
    table = _enum_map(args)
    return len(set(table.values())) == len(table)


_CENTS_DOC = "WARP holds dollars, HubSpot holds cents (x100; back: /100, exact to 2 dp)"

TRANSFORMS: Mapping[str, Transform] = {
    t.name: t
    for t in (
        Transform("multiply_by_100", _CENTS_DOC, _cents, _dollars, HubSpotType.NUMBER),
        Transform(
            "hubspot_value_in_cents_to_dollars", _CENTS_DOC, _cents, _dollars, HubSpotType.NUMBER
        ),
        Transform(
            "email_to_domain",
            "the domain of the WARP email, lower case (one way)",
            _domain,
            case_insensitive=True,
        ),
        Transform(
            "first_name",
            "HubSpot holds the full name but its last word; back: joined with WARP's last word",
            lambda value, args: split_name(value)[0],
            lambda value, current, args: join_name(value, split_name(current)[1]),
            handles_blank=True,
        ),
        Transform(
            "last_name",
            "HubSpot holds the last word of the full name; back: joined after WARP's first part",
            lambda value, args: split_name(value)[1],
            lambda value, current, args: join_name(split_name(current)[0], value),
            handles_blank=True,
        ),
        Transform(
            "enum_map",
            'WARP code → HubSpot option by transform_args {"map": {...}}; back when one-to-one',
            _enum_forward,
            _enum_inverse,
            HubSpotType.ENUMERATION,
            check_args=_check_enum_args,
            invertible_with=_enum_one_to_one,
        ),
        Transform("uppercase", "upper case in HubSpot (one way)", lambda v, a: str(v).upper()),
        Transform("lowercase", "lower case in HubSpot (one way)", lambda v, a: str(v).lower()),
    )
}
