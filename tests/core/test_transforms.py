"""Transforms and HubSpot value formats: examples for each, round trips as properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.mapping import (
    TRANSFORMS,
    ConflictRule,
    Direction,
    EntityType,
    FieldMapping,
    HubSpotType,
    MappingError,
)
from shared.mapping.transforms import (
    canonical,
    format_number,
    format_value,
    join_name,
    parse_value,
    split_name,
)


def field(
    transform: str | None = None,
    *,
    column: str = "company_name",
    path: tuple[str, ...] = (),
    direction: Direction = Direction.BIDIRECTIONAL,
    args: dict | None = None,
    hubspot_type: HubSpotType | None = None,
) -> FieldMapping:
    return FieldMapping(
        name="f",
        entity_type=EntityType.CUSTOMER,
        hubspot_property="p",
        warp_column=column,
        warp_path=path,
        direction=direction,
        rule=ConflictRule.LATEST_WINS,
        transform=transform,
        transform_args=args or {},
        hubspot_type=hubspot_type,
    )


CENTS = field("multiply_by_100", column="credit_limit")
CENTS_FROM_HUBSPOT = field("hubspot_value_in_cents_to_dollars", column="credit_limit")
DOMAIN = field(
    "email_to_domain", path=("email",), column="contact", direction=Direction.WARP_TO_HUBSPOT
)
FIRST = field("first_name", column="contact", path=("name",))
LAST = field("last_name", column="contact", path=("name",))
STATUS_MAP = {"ACTIVE": "active", "SUSPENDED": "on_hold", "TRIAL": "trial", "CLOSED": "closed"}
STATUS = field("enum_map", column="status", args={"map": STATUS_MAP})


# -- value formats ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1500.00"), "1500"),
        (Decimal("0.10"), "0.1"),
        (Decimal("1E+3"), "1000"),
        (Decimal("-0.00"), "0"),
        (0.1, "0.1"),
        (1e21, "1000000000000000000000"),
        (42, "42"),
        ("12.50", "12.5"),
        (Decimal("12345678901234567890.123456789"), "12345678901234567890.123456789"),
    ],
)
def test_numbers_are_plain_decimal_strings(value: object, text: str) -> None:
    assert format_number(value) == text


@pytest.mark.parametrize("bad", [True, "abc", float("nan"), Decimal("Infinity"), [1]])
def test_non_numbers_are_refused(bad: object) -> None:
    with pytest.raises(MappingError):
        format_value(bad, HubSpotType.NUMBER)


def test_booleans_dates_and_datetimes_use_hubspot_forms() -> None:
    assert format_value(True, HubSpotType.BOOL) == "true"
    assert format_value("FALSE", HubSpotType.BOOL) == "false"
    assert parse_value("true", HubSpotType.BOOL) is True
    assert format_value(date(2015, 5, 1), HubSpotType.DATE) == "2015-05-01"
    # HubSpot's own example: 1 May 2015 is 1430438400000 at midnight UTC.
    assert parse_value("1430438400000", HubSpotType.DATE) == date(2015, 5, 1)
    assert parse_value("2015-05-01T00:00:00.000Z", HubSpotType.DATE) == date(2015, 5, 1)
    with pytest.raises(MappingError, match="midnight"):
        parse_value("1430438400001", HubSpotType.DATE)
    moment = datetime(2024, 1, 17, 20, 55, 4, 281999, tzinfo=timezone(timedelta(hours=1)))
    assert format_value(moment, HubSpotType.DATETIME) == "2024-01-17T19:55:04.281Z"
    assert parse_value("2024-01-17T19:55:04.281Z", HubSpotType.DATETIME) == datetime(
        2024, 1, 17, 19, 55, 4, 281000, tzinfo=UTC
    )
    assert parse_value("1705521304281", HubSpotType.DATETIME) == datetime(
        2024, 1, 17, 19, 55, 4, 281000, tzinfo=UTC
    )


def test_blank_clears_and_parses_to_none() -> None:
    for hubspot_type in HubSpotType:
        assert format_value(None, hubspot_type) == ""
        assert format_value("", hubspot_type) == ""
        assert parse_value("", hubspot_type) is None
        assert parse_value(None, hubspot_type) is None


def test_canonical_forms_make_equal_values_equal() -> None:
    assert canonical("1500.00", HubSpotType.NUMBER) == canonical("1500", HubSpotType.NUMBER)
    assert canonical(None, HubSpotType.STRING) == canonical("", HubSpotType.STRING) == ""
    assert canonical("1430438400000", HubSpotType.DATE) == "2015-05-01"
    assert canonical("TRUE", HubSpotType.BOOL) == "true"
    # A malformed value is kept, so it differs from every well-formed one.
    assert canonical("12 apples", HubSpotType.NUMBER) == "12 apples"


# -- transforms ------------------------------------------------------------------------


def test_multiply_by_100_turns_dollars_into_cents_and_back_exactly() -> None:
    assert CENTS.to_hubspot(Decimal("1500.25")) == "150025"
    assert CENTS.to_warp("150025") == Decimal("1500.25")
    assert CENTS.to_warp("100") == Decimal("1.00")
    assert CENTS.to_hubspot(0.1) == "10"  # a float through its repr, not 10.000000000000000555
    with pytest.raises(MappingError, match="whole number of cents"):
        CENTS.to_warp("150.5")


def test_cents_to_dollars_is_the_same_relation_named_from_hubspot() -> None:
    for cents in ("0", "1", "150025", "-42"):
        assert CENTS_FROM_HUBSPOT.to_warp(cents) == CENTS.to_warp(cents)
    assert CENTS_FROM_HUBSPOT.to_hubspot(Decimal("12.34")) == "1234"


def test_email_to_domain_is_one_way() -> None:
    assert DOMAIN.to_hubspot("Jane@Acme.COM") == "acme.com"
    assert DOMAIN.to_hubspot(" ops@mail.example.org ") == "mail.example.org"
    assert DOMAIN.to_hubspot(None) == ""
    assert DOMAIN.canonical_hubspot("ACME.com") == DOMAIN.canonical_hubspot("acme.com")
    with pytest.raises(MappingError, match="not an email"):
        DOMAIN.to_hubspot("no-at-sign")
    with pytest.raises(MappingError, match="one-way"):
        DOMAIN.to_warp("acme.com")


def test_one_way_transform_cannot_sync_inbound() -> None:
    with pytest.raises(MappingError, match="one-way"):
        field("email_to_domain", column="contact", path=("email",))


def test_name_halves_map_one_warp_name_to_two_properties() -> None:
    assert (FIRST.to_hubspot("Jane Q Doe"), LAST.to_hubspot("Jane Q Doe")) == ("Jane Q", "Doe")
    assert (FIRST.to_hubspot("Cher"), LAST.to_hubspot("Cher")) == ("Cher", "")
    assert (FIRST.to_hubspot(None), LAST.to_hubspot(None)) == ("", "")
    # Each half comes back joined with the other half of the current WARP name.
    assert FIRST.to_warp("Janet", current="Jane Q Doe") == "Janet Doe"
    assert LAST.to_warp("Smith", current="Jane Q Doe") == "Jane Q Smith"
    assert LAST.to_warp("", current="Jane Q Doe") == "Jane Q"
    assert FIRST.to_warp("Jane", current=None) == "Jane"
    # Both halves changing at once: applied one after the other.
    assert LAST.to_warp("Roe", current=FIRST.to_warp("Ann", current="Jane Doe")) == "Ann Roe"


def test_enum_map_translates_codes_both_ways() -> None:
    assert STATUS.value_type is HubSpotType.ENUMERATION
    assert STATUS.to_hubspot("SUSPENDED") == "on_hold"
    assert STATUS.to_warp("on_hold") == "SUSPENDED"
    with pytest.raises(MappingError, match="no entry"):
        STATUS.to_hubspot("PENDING")
    with pytest.raises(MappingError, match="no entry"):
        STATUS.to_warp("archived")


def test_enum_map_that_is_not_one_to_one_is_outbound_only() -> None:
    many_to_one = {"map": {"ACTIVE": "live", "TRIAL": "live"}}
    with pytest.raises(MappingError, match="one-way"):
        field("enum_map", column="status", args=many_to_one)
    outbound = field(
        "enum_map", column="status", args=many_to_one, direction=Direction.WARP_TO_HUBSPOT
    )
    assert outbound.to_hubspot("TRIAL") == "live"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({}, "needs transform_args"),
        ({"map": {"A": 1}}, "non-empty strings"),
        ({"map": {"A": "a"}, "x": 1}, "unknown"),
    ],
)
def test_enum_map_arguments_are_checked(args: dict, problem: str) -> None:
    with pytest.raises(MappingError, match=problem):
        field("enum_map", column="status", args=args, direction=Direction.WARP_TO_HUBSPOT)


def test_case_transforms_are_one_way() -> None:
    upper = field("uppercase", direction=Direction.WARP_TO_HUBSPOT)
    lower = field("lowercase", direction=Direction.WARP_TO_HUBSPOT)
    assert (upper.to_hubspot("Acme"), lower.to_hubspot("Acme")) == ("ACME", "acme")
    assert not TRANSFORMS["uppercase"].has_inverse({})


def test_column_types_choose_the_format_without_a_transform() -> None:
    terms = field(column="payment_terms")
    assert terms.to_hubspot(30) == "30"
    assert terms.to_warp("30") == 30 and isinstance(terms.to_warp("30"), int)
    with pytest.raises(MappingError, match="whole numbers"):
        terms.to_warp("30.5")
    enabled = field(column="hubspot_sync_enabled")
    assert (enabled.to_hubspot(True), enabled.to_warp("false")) == ("true", False)
    limit = field(column="credit_limit")
    assert limit.to_warp("1500.5") == Decimal("1500.5")


def test_read_and_write_json_paths_keep_other_keys() -> None:
    geo = field(column="address", path=("geo", "lat"), hubspot_type=HubSpotType.NUMBER)
    row = {"address": {"city": "Oslo", "geo": {"lon": "10.7"}}}
    assert geo.read_warp(row) is None
    column, value = geo.write_warp(row, geo.to_warp("59.91"))
    assert (column, value) == ("address", {"city": "Oslo", "geo": {"lon": "10.7", "lat": "59.91"}})
    assert row == {"address": {"city": "Oslo", "geo": {"lon": "10.7"}}}  # the input is not mutated
    assert geo.read_warp({"address": value}) == "59.91"
    assert geo.write_warp({"address": None}, "1")[1] == {"geo": {"lat": "1"}}
    with pytest.raises(MappingError, match="non-object"):
        geo.write_warp({"address": {"geo": "somewhere"}}, "1")
    email = field(column="contact", path=("email",))
    assert email.read_warp({"contact": '{"email": "a@b.c"}'}) == "a@b.c"
    assert email.read_warp({}) is None
    assert field().write_warp({"company_name": "Old"}, "New") == ("company_name", "New")


# -- round trips -----------------------------------------------------------------------

money = st.decimals(
    min_value=Decimal("-9999999999.99"), max_value=Decimal("9999999999.99"), places=2
)
words = st.text(st.characters(categories=("L",)), min_size=1, max_size=12)
names = st.lists(words, min_size=1, max_size=4).map(" ".join)


@given(money)
def test_cents_round_trip(amount: Decimal) -> None:
    for mapping in (CENTS, CENTS_FROM_HUBSPOT):
        back = mapping.to_warp(mapping.to_hubspot(amount))
        assert back == amount and back.as_tuple().exponent == -2


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_numbers_round_trip_without_loss(number: Decimal) -> None:
    text = format_value(number, HubSpotType.NUMBER)
    assert "E" not in text.upper()
    assert parse_value(text, HubSpotType.NUMBER) == number


@given(st.dates())
def test_dates_round_trip(day: date) -> None:
    text = format_value(day, HubSpotType.DATE)
    assert parse_value(text, HubSpotType.DATE) == day
    epoch_ms = datetime(day.year, day.month, day.day, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_value(str(epoch_ms // timedelta(milliseconds=1)), HubSpotType.DATE) == day


@given(
    st.datetimes(timezones=st.just(UTC)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
    )
)
def test_datetimes_round_trip_at_millisecond_precision(moment: datetime) -> None:
    assert parse_value(format_value(moment, HubSpotType.DATETIME), HubSpotType.DATETIME) == moment


@given(names)
def test_name_halves_round_trip(name: str) -> None:
    first, last = FIRST.to_hubspot(name), LAST.to_hubspot(name)
    assert (first, last) == split_name(name) and join_name(first, last) == name
    assert FIRST.to_warp(first, current=name) == name
    assert LAST.to_warp(last, current=name) == name


@given(st.sampled_from(sorted(STATUS_MAP)))
def test_enum_map_round_trip(code: str) -> None:
    assert STATUS.to_warp(STATUS.to_hubspot(code)) == code


@given(st.text())
def test_plain_strings_round_trip_including_unicode(text: str) -> None:
    plain = field()
    assert plain.to_warp(plain.to_hubspot(text)) == (text or None)


def test_every_invertible_transform_has_a_round_trip_test() -> None:
    invertible = {name for name, t in TRANSFORMS.items() if t.inverse is not None}
    assert invertible == {
        "multiply_by_100",
        "hubspot_value_in_cents_to_dollars",
        "first_name",
        "last_name",
        "enum_map",
    }
