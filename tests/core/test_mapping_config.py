"""WARP's field_mappings format: parsing, errors, merging, defaults, the cached provider."""

from __future__ import annotations

import copy
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.db import Database
from shared.engine.plan import plan_order
from shared.errors import ConfigurationError
from shared.hubspot.models import OBJECT_TYPES
from shared.links import linked_id
from shared.mapping import (
    DEFAULT_CONTACT_SYNC,
    DEFAULT_CUSTOMER_SYNC,
    ConflictRule,
    Direction,
    EntityType,
    MappingConfigError,
    MappingProvider,
    default_mappings,
    merge_mappings,
    parse_field_mappings,
)
from shared.mapping.config import parse_warp_field

# WARP's published global row, verbatim.
WARP_PUBLISHED = {
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
        "sync_direction": "BIDIRECTIONAL",
        "conflict_resolution": "LATEST_WINS",
    },
}


def parse(raw: object, name: str = "cfg", entity: EntityType = EntityType.CUSTOMER):
    return parse_field_mappings(raw, config_name=name, default_entity_type=entity)


def entry(**overrides: Any) -> dict[str, Any]:
    base = {
        "hubspot_property": "name",
        "warp_field": "company_name",
        "sync_direction": "BIDIRECTIONAL",
        "conflict_resolution": "LATEST_WINS",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_warp_published_row_parses_as_it_is() -> None:
    mappings = parse(WARP_PUBLISHED, "default_customer_sync")
    email = mappings.fields["contact_email"]
    assert (email.warp_column, email.warp_path, email.hubspot_property) == (
        "contact",
        ("email",),
        "domain",
    )
    assert mappings.fields["ban"].direction is Direction.WARP_TO_HUBSPOT
    assert mappings.fields["credit_limit"].rule is ConflictRule.HUBSPOT_WINS
    assert {f.name for f in mappings.outbound()} == set(WARP_PUBLISHED)
    assert {f.name for f in mappings.inbound()} == set(WARP_PUBLISHED) - {"ban"}
    # The JSON text of the column works as well as the decoded object.
    assert parse(json.dumps(WARP_PUBLISHED), "default_customer_sync") == mappings


def test_defaults_differ_from_warp_only_in_the_contact_email_correction() -> None:
    assert {k: v for k, v in DEFAULT_CUSTOMER_SYNC.items() if k != "contact_email"} == {
        k: v for k, v in WARP_PUBLISHED.items() if k != "contact_email"
    }
    corrected = DEFAULT_CUSTOMER_SYNC["contact_email"]
    assert corrected["sync_direction"] == "WARP_TO_HUBSPOT"
    assert corrected["transform"] == "email_to_domain"
    json.dumps([DEFAULT_CUSTOMER_SYNC, DEFAULT_CONTACT_SYNC])  # seedable as JSON


def test_default_mappings_cover_company_and_contact() -> None:
    merged = default_mappings()
    company = merged.for_entity(EntityType.CUSTOMER)
    contact = merged.for_entity(EntityType.CONTACT)
    assert set(company.fields) == set(DEFAULT_CUSTOMER_SYNC)
    assert set(contact.hubspot_properties()) == {"firstname", "lastname", "email", "phone"}
    assert [f.name for f in contact.by_property("firstname")] == ["contact_firstname"]
    assert company.by_property("domain")[0].to_hubspot("Jane@Acme.COM") == "acme.com"


def test_plans_are_ordered_so_a_derived_value_follows_what_it_derives_from() -> None:
    merged = default_mappings()
    company = merged.for_entity(EntityType.CUSTOMER)
    contact = merged.for_entity(EntityType.CONTACT)
    # The company's domain derives from contact.email, which the contact's plan writes.
    assert contact.feeds(company) and not company.feeds(contact)
    by_entity = {EntityType.CUSTOMER: company, EntityType.CONTACT: contact}
    assert plan_order(by_entity) == [EntityType.CONTACT, EntityType.CUSTOMER]
    # A location holding another counts: a whole-document writer feeds a key's reader.
    whole = parse({"doc": entry(warp_field="custom_fields.a", hubspot_property="a")})
    key = parse({"k": entry(warp_field="custom_fields.a.b", hubspot_property="k")})
    assert whole.feeds(key) and key.feeds(whole)
    # WARP's published row writes contact.email from the company's domain: each feeds the
    # other, and the given order stands.
    published = parse(WARP_PUBLISHED, "default_customer_sync")
    assert published.feeds(contact) and contact.feeds(published)
    mutual = {EntityType.CUSTOMER: published, EntityType.CONTACT: contact}
    assert plan_order(mutual) == [EntityType.CUSTOMER, EntityType.CONTACT]
    unrelated = parse({"name": entry()})
    assert plan_order({"a": unrelated, "b": contact}) == ["a", "b"]


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        (entry(sync_direction="SIDEWAYS"), "unknown sync_direction 'SIDEWAYS'"),
        (entry(conflict_resolution="COIN_TOSS"), "unknown conflict_resolution 'COIN_TOSS'"),
        (entry(transform="reverse"), "unknown transform 'reverse'"),
        (entry(warp_field="colour"), "unknown WARP column 'colour'"),
        (entry(warp_field="contact->>'a'->'b'"), "only the last step"),
        (entry(warp_field="contact[email]"), "cannot read WARP path"),
        (
            entry(warp_field="contact.email", warp_field_path="contact->>'phone'"),
            "different values",
        ),
        (entry(warp_field="status.code"), "not JSONB"),
        (entry(warp_field="contact"), "needs a path"),
        (entry(warp_field="contact.email", transform="email_to_domain"), "one-way"),
        (entry(warp_field="id", sync_direction="HUBSPOT_TO_WARP"), "read-only"),
        (entry(warp_field="external_ids.hubspot_company_id"), "read-only"),
        (entry(hubspot_property=None), "missing hubspot_property"),
        (entry(sync_direction=None), "missing sync_direction"),
        (entry(sync_diretion="NONE"), "unknown keys ['sync_diretion']"),
        (entry(unless_blank="yes"), "unless_blank must be true or false"),
        (entry(entity_type="deal"), "unknown entity_type 'deal'"),
        (entry(hubspot_type="money"), "unknown hubspot_type 'money'"),
        (entry(transform_args={"map": {}}), "transform_args given without a transform"),
        ("not an object", "must be an object"),
    ],
)
def test_each_problem_is_named_with_config_and_field(field: object, problem: str) -> None:
    with pytest.raises(MappingConfigError) as caught:
        parse({"the_field": field}, "acme_sync")
    message = str(caught.value)
    assert "'acme_sync'" in message and "field 'the_field'" in message and problem in message
    assert isinstance(caught.value, ConfigurationError)


def test_all_problems_are_reported_together() -> None:
    raw = {
        "a": entry(sync_direction="UP"),
        "b": entry(transform="nope", hubspot_property="other"),
        "c": entry(hubspot_property="name"),  # writes `name` like a
        "d": entry(),
    }
    raw["a"]["sync_direction"] = "UP"
    with pytest.raises(MappingConfigError) as caught:
        parse(raw)
    problems = caught.value.problems
    assert any("'a'" in p and "sync_direction 'UP'" in p for p in problems)
    assert any("'b'" in p and "unknown transform" in p for p in problems)
    assert any("'c', 'd'" in p and "property 'name'" in p for p in problems)


def test_every_problem_of_one_row_is_reported_not_only_the_first() -> None:
    row = entry(transform="nope", warp_field="no_such_column", unknown_key=1)
    row["sync_direction"] = "UP"
    with pytest.raises(MappingConfigError) as caught:
        parse({"a": row})
    problems = caught.value.problems
    assert any("sync_direction 'UP'" in p for p in problems)
    assert any("unknown keys ['unknown_key']" in p for p in problems)
    # What the field itself refuses, in the same report: one fix of the row, not three.
    assert any("unknown WARP column 'no_such_column'" in p for p in problems)
    assert any("unknown transform 'nope'" in p for p in problems)
    assert all(p.startswith("field 'a': ") for p in problems)


def test_reading_a_property_twice_is_fine_writing_it_twice_is_not() -> None:
    reader = entry(warp_field="legal_name", sync_direction="HUBSPOT_TO_WARP")
    mappings = parse({"company_name": entry(), "legal_name": reader})
    assert len(mappings.by_property("name")) == 2
    with pytest.raises(MappingConfigError, match="all write customer property 'name'"):
        parse({"company_name": entry(), "legal_name": entry(warp_field="legal_name")})


def test_bad_json_and_non_objects_are_refused() -> None:
    with pytest.raises(MappingConfigError, match="not valid JSON"):
        parse("{oops")
    with pytest.raises(MappingConfigError, match="must be a JSON object"):
        parse([1, 2])


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("company_name", ("company_name", ())),
        ("contact.email", ("contact", ("email",))),
        ("contact->>'email'", ("contact", ("email",))),
        ("address->'geo'->>'lat'", ("address", ("geo", "lat"))),
        ("address -> 'geo' -> 'lat'", ("address", ("geo", "lat"))),
        ("external_ids.x", ("external_ids", ("x",))),
    ],
)
def test_warp_field_path_forms(text: str, place: tuple) -> None:
    assert parse_warp_field(text) == place


def test_extension_keys() -> None:
    raw = {
        "status": entry(
            hubspot_property="warp_status",
            warp_field="status",
            transform="enum_map",
            transform_args={"map": {"ACTIVE": "active", "CLOSED": "closed"}},
            unless_blank=True,
        ),
        "phone": entry(hubspot_property="phone", warp_field="contact.phone", entity_type="contact"),
        "terms": entry(hubspot_property="terms", warp_field="payment_terms", hubspot_type="string"),
    }
    mappings = parse(raw)
    assert mappings.fields["status"].unless_blank
    assert mappings.fields["status"].to_hubspot("CLOSED") == "closed"
    assert mappings.fields["phone"].entity_type is EntityType.CONTACT
    assert mappings.fields["terms"].to_hubspot(30) == "30"
    assert set(mappings.for_entity(EntityType.CUSTOMER).fields) == {"status", "terms"}


def test_contact_default_entity_comes_from_the_config() -> None:
    raw = {"phone": entry(hubspot_property="phone", warp_field="contact.phone")}
    assert parse(raw, entity=EntityType.CONTACT).fields["phone"].entity_type is EntityType.CONTACT


def test_merge_overrides_by_key_and_can_switch_a_field_off() -> None:
    base = default_mappings()
    override = parse(
        {
            "credit_limit": entry(
                hubspot_property="warp_credit_limit",
                warp_field="credit_limit",
                sync_direction="NONE",
            ),
            "legal_name": entry(hubspot_property="legal_name", warp_field="legal_name"),
        },
        "acme_overrides",
    )
    merged = merge_mappings(base, override)
    assert merged.fields["credit_limit"].direction is Direction.NONE
    assert "warp_credit_limit" not in merged.hubspot_properties()
    assert merged.fields["legal_name"].hubspot_property == "legal_name"
    assert merged.fields["company_name"] == base.fields["company_name"]
    assert merged.sources[-1] == "acme_overrides"
    clash = parse({"my_name": entry(warp_field="legal_name")}, "acme_overrides")
    with pytest.raises(MappingConfigError, match="'company_name', 'my_name' all write"):
        merge_mappings(base, clash)


@given(
    field_name=st.text(st.characters(categories=("L", "N")), min_size=1, max_size=20),
    config_name=st.from_regex(r"[a-z_]{1,20}", fullmatch=True),
    direction=st.text(max_size=12).filter(lambda d: d not in set(Direction)),
)
def test_parse_errors_always_name_config_field_and_problem(
    field_name: str, config_name: str, direction: str
) -> None:
    with pytest.raises(MappingConfigError) as caught:
        parse({field_name: entry(sync_direction=direction)}, config_name)
    message = str(caught.value)
    assert repr(config_name) in message
    assert f"field {field_name!r}" in message
    assert f"unknown sync_direction {direction!r}" in message


# -- the provider ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Rows:
    """The rows a loader returns, editable like the table, counting reads."""

    def __init__(self) -> None:
        self.global_rows = [
            {
                "config_name": "default_customer_sync",
                "customer_id": None,
                "is_global": True,
                "field_mappings": copy.deepcopy(DEFAULT_CUSTOMER_SYNC),
                "updated_at": datetime.now(UTC),
            },
            {
                "config_name": "default_contact_sync",
                "customer_id": None,
                "is_global": True,
                "field_mappings": copy.deepcopy(DEFAULT_CONTACT_SYNC),
                "updated_at": datetime.now(UTC),
            },
        ]
        self.customer_rows: list[dict[str, Any]] = []
        self.loads = 0

    def __call__(self, customer_id: uuid.UUID | None) -> list[dict[str, Any]]:
        self.loads += 1
        if customer_id is None:
            return copy.deepcopy(self.global_rows)
        return [r for r in copy.deepcopy(self.customer_rows) if r["customer_id"] == customer_id]


def test_provider_merges_global_and_customer_rows_and_caches_them() -> None:
    rows, clock = Rows(), Clock()
    acme, other = uuid.uuid4(), uuid.uuid4()
    rows.customer_rows.append(
        {
            "config_name": "acme",
            "customer_id": acme,
            "is_global": False,
            "updated_at": None,
            "field_mappings": {
                "contact_phone": entry(
                    hubspot_property="phone", warp_field="contact.phone", sync_direction="NONE"
                )
            },
        }
    )
    provider = MappingProvider(rows, ttl_seconds=60, clock=clock)
    acme_contact = provider.for_customer(acme, EntityType.CONTACT)
    # The override named a contact field without entity_type: it stays a contact field.
    assert acme_contact.fields["contact_phone"].direction is Direction.NONE
    assert "phone" not in acme_contact.hubspot_properties()
    assert (
        provider.for_customer(other, EntityType.CONTACT).fields["contact_phone"].direction
        is Direction.BIDIRECTIONAL
    )
    assert set(provider.for_customer(acme, EntityType.CUSTOMER).fields) == set(
        DEFAULT_CUSTOMER_SYNC
    )
    loads = rows.loads
    provider.for_customer(acme, EntityType.CUSTOMER)
    assert rows.loads == loads  # served from the cache within the ttl
    rows.global_rows[0]["field_mappings"]["ban"]["hubspot_property"] = "ban_number"
    clock.now = 61
    assert (
        provider.for_customer(acme, EntityType.CUSTOMER).fields["ban"].hubspot_property
        == "ban_number"
    )


def test_provider_keeps_the_last_valid_set_and_logs_the_problem(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows, clock = Rows(), Clock()
    provider = MappingProvider(rows, ttl_seconds=10, clock=clock)
    good = provider.for_customer(None, EntityType.CUSTOMER)
    rows.global_rows[0]["field_mappings"]["status"]["sync_direction"] = "SOMETIMES"
    clock.now = 11
    with caplog.at_level(logging.ERROR, logger="warp_hubspot_sync.mapping"):
        kept = provider.for_customer(None, EntityType.CUSTOMER)
    assert kept == good
    record = next(r for r in caplog.records if r.name == "warp_hubspot_sync.mapping")
    problems = " ".join(record.fields["problems"])  # type: ignore[attr-defined]
    assert "field 'status'" in problems and "unknown sync_direction 'SOMETIMES'" in problems
    rows.global_rows[0]["field_mappings"]["status"]["sync_direction"] = "NONE"
    clock.now = 22
    assert (
        provider.for_customer(None, EntityType.CUSTOMER).fields["status"].direction
        is Direction.NONE
    )


def test_provider_raises_when_there_never_was_a_valid_set() -> None:
    rows = Rows()
    rows.global_rows[1]["field_mappings"]["contact_email_address"]["transform"] = "email_to_domain"
    provider = MappingProvider(rows)
    with pytest.raises(
        MappingConfigError, match=r"default_contact_sync.*field 'contact_email_address'.*one-way"
    ):
        provider.for_customer(uuid.uuid4(), EntityType.CONTACT)


def test_two_global_rows_defining_one_field_is_an_error() -> None:
    rows = Rows()
    rows.global_rows[1]["field_mappings"]["ban"] = DEFAULT_CUSTOMER_SYNC["ban"]
    with pytest.raises(MappingConfigError, match="field 'ban' is defined by both"):
        MappingProvider(rows).for_customer(None, EntityType.CUSTOMER)


# -- the migration's seed --------------------------------------------------------------


@pytest.mark.integration
def test_migration_seed_parses_to_the_built_in_defaults(database: Database) -> None:
    with database.transaction() as tx:
        rows = tx.fetch(
            "SELECT config_name, customer_id, is_global, field_mappings, updated_at "
            "FROM accounts.hubspot_sync_config WHERE is_global ORDER BY config_name"
        )
    assert {r["config_name"] for r in rows} == {"default_customer_sync", "default_contact_sync"}
    seeded = MappingProvider(lambda customer_id: rows).for_customer(None, EntityType.CUSTOMER)
    builtin = default_mappings()
    assert seeded.fields == builtin.for_entity(EntityType.CUSTOMER).fields
    seeded_contact = MappingProvider(lambda customer_id: rows).for_customer(
        None, EntityType.CONTACT
    )
    assert seeded_contact.fields == builtin.for_entity(EntityType.CONTACT).fields


def test_each_entity_names_its_hubspot_object_and_link() -> None:
    assert [et.object_type for et in EntityType] == list(OBJECT_TYPES)
    assert {et.object_name: et.link_key for et in EntityType} == {
        "company": "hubspot_company_id",
        "contact": "hubspot_contact_id",
    }
    assert all(EntityType.of_object_name(et.object_name) is et for et in EntityType)
    assert EntityType.of_object_name("deal") is None
    row = {"external_ids": {"hubspot_company_id": 12, "hubspot_contact_id": ""}}
    assert linked_id(row, EntityType.CUSTOMER) == "12"
    assert linked_id(row, EntityType.CONTACT) is None
    assert linked_id({"external_ids": None}, EntityType.CUSTOMER) is None
