"""The emulator speaks HubSpot's wire format: the official SDK drives it and its models deserialise
every answer (requests, shapes, status codes and error bodies)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
from hubspot import HubSpot
from hubspot.crm.associations.v4 import AssociationSpec
from hubspot.crm.associations.v4.exceptions import ApiException as AssociationsApiException
from hubspot.crm.companies import (
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicMergeInput,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.companies.exceptions import ApiException
from hubspot.crm.companies.models import Error as ErrorModel
from hubspot.crm.companies.models import ErrorDetail
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInputUpsert,
    SimplePublicObjectBatchInputUpsert,
)
from hubspot.crm.contacts import SimplePublicObjectInputForCreate as ContactCreate
from hubspot.crm.contacts.exceptions import ApiException as ContactsApiException
from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException
from hypothesis import given, settings
from hypothesis import strategies as st

from localdev.emulator import Emulator
from localdev.emulator.properties import PropertyRegistry
from localdev.emulator.search import run_search
from localdev.emulator.store import Source, Store

pytestmark = pytest.mark.integration
APP_ID = 424242
TOKEN = "pat-na1-test-token"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(
        app_id=APP_ID, access_token=TOKEN, rate_limit=100_000, search_rate_per_second=1000
    ) as emulator:
        yield emulator


@pytest.fixture
def fresh(emu: Emulator) -> Emulator:
    emu.reset()
    return emu


@pytest.fixture
def client(emu: Emulator) -> HubSpot:
    return HubSpot(access_token=TOKEN, host=emu.url)


def _body(exc: Exception) -> dict:
    body = json.loads(exc.body)  # type: ignore[attr-defined]
    assert isinstance(body, dict)
    return body


def test_create_and_get_with_history(fresh: Emulator, client: HubSpot) -> None:
    created = client.crm.companies.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"name": "Acme", "domain": "acme.example"})
    )
    assert created.id.isdigit()
    assert isinstance(created.created_at, datetime) and created.created_at == created.updated_at
    assert created.properties["hs_object_id"] == created.id
    assert {"createdate", "hs_lastmodifieddate"} <= set(created.properties)

    fresh.ui_change("companies", created.id, {"name": "Acme Ltd"}, user_id=7)
    got = client.crm.companies.basic_api.get_by_id(
        created.id, properties=["name", "domain", "phone"], properties_with_history=["name"]
    )
    assert got.properties["name"] == "Acme Ltd" and got.properties["phone"] is None
    history = got.properties_with_history["name"]
    assert [h.value for h in history] == ["Acme Ltd", "Acme"]  # newest first
    assert (history[0].source_type, history[0].source_id) == ("CRM_UI", "userId:7")
    assert (history[1].source_type, history[1].source_id) == ("INTEGRATION", str(APP_ID))
    assert got.updated_at > got.created_at
    assert got.properties["hs_lastmodifieddate"].endswith("Z")


def test_contacts_default_properties(fresh: Emulator, client: HubSpot) -> None:
    contact = client.crm.contacts.basic_api.create(
        ContactCreate(properties={"email": "a@b.example", "firstname": "A"})
    )
    got = client.crm.contacts.basic_api.get_by_id(contact.id)
    assert set(got.properties) == {
        "firstname",
        "lastname",
        "email",
        "createdate",
        "lastmodifieddate",
        "hs_object_id",
    }
    by_email = client.crm.contacts.basic_api.get_by_id("A@B.example", id_property="email")
    assert by_email.id == contact.id


def test_list_paging_visits_every_record_once(fresh: Emulator, client: HubSpot) -> None:
    ids = fresh.seed("companies", [{"name": f"c{i}"} for i in range(25)])
    page = client.crm.companies.basic_api.get_page(limit=10, properties=["name"])
    assert len(page.results) == 10 and page.paging.next.after
    everything = client.crm.companies.get_all(properties=["name"])
    assert sorted(r.id for r in everything) == sorted(ids)


def test_update_and_archive(fresh: Emulator, client: HubSpot) -> None:
    [company_id] = fresh.seed("companies", [{"name": "Old"}])
    updated = client.crm.companies.basic_api.update(
        company_id, SimplePublicObjectInput(properties={"name": "New"})
    )
    assert updated.properties["name"] == "New"
    client.crm.companies.basic_api.archive(company_id)
    with pytest.raises(ApiException) as caught:
        client.crm.companies.basic_api.get_by_id(company_id)
    assert caught.value.status == 404
    assert _body(caught.value)["message"] == "Object not found.  objectId are usually numeric."
    archived = client.crm.companies.basic_api.get_by_id(company_id, archived=True)
    assert archived.archived is True and archived.archived_at is not None


def test_batch_read_update_create_and_207(fresh: Emulator, client: HubSpot) -> None:
    ids = fresh.seed("companies", [{"name": f"n{i}"} for i in range(5)])
    read = client.crm.companies.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=i) for i in [*ids, "99999"]],
            properties=["name"],
            properties_with_history=[],
        )
    )
    assert sorted(r.id for r in read.results) == sorted(ids)
    assert read.num_errors == 1
    assert read.errors[0].category == "OBJECT_NOT_FOUND" and read.errors[0].context["ids"] == [
        "99999"
    ]

    updated = client.crm.companies.batch_api.update(
        BatchInputSimplePublicObjectBatchInput(
            inputs=[
                SimplePublicObjectBatchInput(
                    id=i, properties={"name": f"u{i}"}, object_write_trace_id=f"t{i}"
                )
                for i in ids
            ]
        )
    )
    assert {r.id: r.properties["name"] for r in updated.results} == {i: f"u{i}" for i in ids}
    assert {r.object_write_trace_id for r in updated.results} == {f"t{i}" for i in ids}

    created = client.crm.companies.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[
                SimplePublicObjectBatchInputForCreate(properties={"name": f"b{n}"})
                for n in range(100)
            ]
        )
    )
    names = [r.properties["name"] for r in created.results]
    assert sorted(names) == sorted(f"b{n}" for n in range(100))
    assert names != [f"b{n}" for n in range(100)]  # like HubSpot, not index-aligned


def test_batch_validation_whole_400_or_traced_207(fresh: Emulator, client: HubSpot) -> None:
    inputs = [
        SimplePublicObjectBatchInputForCreate(properties={"name": "ok"}),
        SimplePublicObjectBatchInputForCreate(properties={"nope": "x"}),
    ]
    with pytest.raises(ApiException) as caught:
        client.crm.companies.batch_api.create(
            BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs)
        )
    assert caught.value.status == 400 and _body(caught.value)["category"] == "VALIDATION_ERROR"
    assert fresh.state.live("companies") == []  # nothing written

    for n, item in enumerate(inputs):
        item.object_write_trace_id = f"trace{n}"
    partial = client.crm.companies.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs)
    )
    assert [r.properties["name"] for r in partial.results] == ["ok"]
    assert partial.errors[0].context["objectWriteTraceId"] == ["trace1"]
    assert "PROPERTY_DOESNT_EXIST" in partial.errors[0].message


def test_batch_update_with_one_invalid_value_is_refused_whole(
    fresh: Emulator, client: HubSpot
) -> None:
    ids = fresh.seed("companies", [{"name": f"n{i}"} for i in range(3)])
    values = {ids[0]: "10", ids[1]: "asd000", ids[2]: "30"}

    def update() -> object:
        return client.crm.companies.batch_api.update(
            BatchInputSimplePublicObjectBatchInput(
                inputs=[
                    SimplePublicObjectBatchInput(
                        id=i, properties={"numberofemployees": v}, object_write_trace_id=i
                    )
                    for i, v in values.items()
                ]
            )
        )

    # Traced or not, HubSpot's default for a batch update is one 400 for the batch.
    with pytest.raises(ApiException) as caught:
        update()
    body = _body(caught.value)
    assert caught.value.status == 400 and body["category"] == "VALIDATION_ERROR"
    assert body["errors"][0]["code"] == "INVALID_LONG"
    assert "asd000 was not a valid long." in body["message"]
    assert all("numberofemployees" not in fresh.values("companies", i) for i in ids)

    answer = httpx.post(
        f"{fresh.url}/_emulator/settings", json={"batchUpdateMultiStatus": True}
    ).json()
    assert answer["batchUpdateMultiStatus"] is True
    try:
        partial = update()
    finally:
        fresh.api.update_multi_status = False
    assert sorted(r.id for r in partial.results) == sorted([ids[0], ids[2]])  # type: ignore[attr-defined]
    assert partial.errors[0].context["objectWriteTraceId"] == [ids[1]]  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e3", " 1500 ", "1_000", "1,500", "1.2.3"])
def test_number_properties_refuse_what_hubspot_refuses(
    fresh: Emulator, client: HubSpot, value: str
) -> None:
    with pytest.raises(ApiException) as caught:
        client.crm.companies.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"numberofemployees": value})
        )
    body = _body(caught.value)
    assert caught.value.status == 400 and body["category"] == "VALIDATION_ERROR"
    assert body["errors"] == [
        {
            "message": f"{value} was not a valid long.",
            "code": "INVALID_LONG",
            "context": {"propertyName": ["numberofemployees"]},
        }
    ]
    assert fresh.state.live("companies") == []


@pytest.mark.parametrize("value", ["1500", "-2.5", "0.0", "007", ""])
def test_number_properties_take_digits_a_sign_and_a_point(
    fresh: Emulator, client: HubSpot, value: str
) -> None:
    created = client.crm.companies.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"numberofemployees": value})
    )
    assert fresh.values("companies", created.id)["numberofemployees"] == value


def test_batch_read_with_history_takes_50_inputs_at_most(fresh: Emulator, client: HubSpot) -> None:
    ids = fresh.seed("companies", [{"name": f"n{i}"} for i in range(51)])

    def read(keys: list[str], history: list[str]) -> object:
        return client.crm.companies.batch_api.read(
            BatchReadInputSimplePublicObjectId(
                inputs=[SimplePublicObjectId(id=i) for i in keys],
                properties=["name"],
                properties_with_history=history,
            )
        )

    with pytest.raises(ApiException) as caught:
        read(ids, ["name"])
    assert caught.value.status == 400
    assert _body(caught.value) | {"correlationId": ""} == {
        "status": "error",
        "message": "The maximum number of inputs supported in a batch request for property"
        " histories is 50. Please reduce the number of items and try again",
        "correlationId": "",
        "category": "VALIDATION_ERROR",
    }
    assert len(read(ids[:50], ["name"]).results) == 50  # type: ignore[attr-defined]
    assert len(read(ids, []).results) == 51  # type: ignore[attr-defined]


def test_search_filters_sort_and_paging(fresh: Emulator, client: HubSpot) -> None:
    fresh.seed(
        "companies",
        [
            {"name": f"Co {i}", "annualrevenue": str(i * 10), "city": "Berlin" if i % 2 else ""}
            for i in range(30)
        ],
    )
    request = PublicObjectSearchRequest(
        filter_groups=[
            FilterGroup(
                filters=[
                    Filter(property_name="annualrevenue", operator="GTE", value="100"),
                    Filter(property_name="city", operator="HAS_PROPERTY"),
                ]
            )
        ],
        sorts=[{"propertyName": "annualrevenue", "direction": "DESCENDING"}],
        properties=["name", "annualrevenue"],
        limit=5,
    )
    seen = []
    first = client.crm.companies.search_api.do_search(request)
    assert first.total == 10  # 11..29 odd
    page = first
    while True:
        seen += [int(r.properties["annualrevenue"]) for r in page.results]
        if not page.paging:
            break
        request.after = page.paging.next.after
        page = client.crm.companies.search_api.do_search(request)
    assert seen == [290, 270, 250, 230, 210, 190, 170, 150, 130, 110]


def test_search_on_last_modified_with_epoch_ms(fresh: Emulator, client: HubSpot) -> None:
    old = fresh.seed("companies", [{"name": "old"}])[0]
    cutoff = fresh.state.now_ms() + 1
    while fresh.state.now_ms() < cutoff:  # the next write lands strictly after the cutoff
        pass
    fresh.ui_change("companies", old, {"name": "touched"})
    fresh.seed("companies", [{"name": "new"}])
    fresh.state.index_now()  # about filters, not the index's lag: let it catch up
    found = client.crm.companies.search_api.do_search(
        PublicObjectSearchRequest(
            filter_groups=[
                FilterGroup(
                    filters=[
                        Filter(
                            property_name="hs_lastmodifieddate", operator="GTE", value=str(cutoff)
                        )
                    ]
                )
            ],
            sorts=["hs_lastmodifieddate"],
            properties=["name"],
        )
    )
    assert [r.properties["name"] for r in found.results] == ["touched", "new"]


def test_search_limits(fresh: Emulator, client: HubSpot) -> None:
    def search(**kw: object) -> int:
        try:
            client.crm.companies.search_api.do_search(PublicObjectSearchRequest(**kw))
        except ApiException as exc:
            assert _body(exc)["category"] == "VALIDATION_ERROR"
            return int(exc.status)
        return 200

    f = Filter(property_name="name", operator="HAS_PROPERTY")
    assert search(filter_groups=[FilterGroup(filters=[f] * 6)] * 3) == 200
    assert search(filter_groups=[FilterGroup(filters=[f] * 7)]) == 400
    assert search(filter_groups=[FilterGroup(filters=[f])] * 6) == 400
    assert search(filter_groups=[FilterGroup(filters=[f] * 6)] * 4) == 400  # 24 > 18
    assert search(limit=201) == 400
    assert search(after="9999") == 200
    assert search(after="10000") == 400  # the 10,000-result cap


def test_errors_surface_as_api_exceptions(fresh: Emulator, emu: Emulator) -> None:
    bad = HubSpot(access_token="wrong", host=emu.url)
    with pytest.raises(ApiException) as caught:
        bad.crm.companies.basic_api.get_page()
    assert (
        caught.value.status == 401 and _body(caught.value)["category"] == "INVALID_AUTHENTICATION"
    )
    assert caught.value.headers["X-HubSpot-Correlation-Id"] == _body(caught.value)["correlationId"]

    client = HubSpot(access_token=TOKEN, host=emu.url)
    with pytest.raises(ApiException) as caught:
        client.crm.companies.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"warp_ban": "1"})
        )
    body = _body(caught.value)
    assert caught.value.status == 400 and body["category"] == "VALIDATION_ERROR"
    assert body["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"

    first = client.crm.contacts.basic_api.create(
        ContactCreate(properties={"email": "dup@x.example"})
    )
    with pytest.raises(ContactsApiException) as dup:
        client.crm.contacts.basic_api.create(ContactCreate(properties={"email": "DUP@x.example"}))
    assert dup.value.status == 409
    assert _body(dup.value) | {"correlationId": ""} == {
        "status": "error",
        "message": f"Contact already exists. Existing ID: {first.id}",
        "correlationId": "",
        "category": "CONFLICT",
    }


def test_a_read_only_token_reads_but_gets_hubspots_403_missing_scopes_on_a_write() -> None:
    with Emulator(access_token=TOKEN, read_access_token="pat-read-only") as emu:
        reader = HubSpot(access_token="pat-read-only", host=emu.url)
        created = HubSpot(access_token=TOKEN, host=emu.url).crm.companies.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"name": "Acme"})
        )
        assert reader.crm.companies.basic_api.get_by_id(created.id).properties["name"] == "Acme"
        emu.state.index_now()  # search lags writes; this test is about scopes
        assert reader.crm.companies.search_api.do_search(PublicObjectSearchRequest()).total == 1
        assert reader.crm.properties.core_api.get_all("companies").results

        with pytest.raises(ApiException) as caught:
            reader.crm.companies.basic_api.update(
                created.id, SimplePublicObjectInput(properties={"name": "Changed"})
            )
        body = _body(caught.value)
        assert caught.value.status == 403
        assert body | {"correlationId": ""} == {
            "status": "error",
            "message": "This app hasn't been granted all required scopes to make this call."
            " Read more about required scopes here: https://developers.hubspot.com/scopes.",
            "correlationId": "",
            "errors": [
                {
                    "message": "One or more of the following scopes are required.",
                    "context": {"requiredGranularScopes": ["crm.objects.companies.write"]},
                }
            ],
            "links": {"scopes": "https://developers.hubspot.com/scopes"},
            "category": "MISSING_SCOPES",
        }
        # Every key is one the SDK's own error model reads (bar "status", which it ignores).
        assert set(body) - {"status"} <= set(ErrorModel.attribute_map.values())
        assert set(body["errors"][0]) <= set(ErrorDetail.attribute_map.values())

        with pytest.raises(PropertiesApiException) as schema:
            reader.crm.properties.core_api.create(
                "companies",
                PropertyCreate(
                    name="x",
                    label="X",
                    type="string",
                    field_type="text",
                    group_name="companyinformation",
                ),
            )
        assert schema.value.status == 403
        assert _body(schema.value)["errors"][0]["context"] == {
            "requiredGranularScopes": ["crm.schemas.companies.write"]
        }
        assert emu.values("companies", created.id)["name"] == "Acme"


def test_custom_properties_via_the_properties_api(fresh: Emulator, client: HubSpot) -> None:
    client.crm.properties.groups_api.create(
        "companies", PropertyGroupCreate(name="warp", label="WARP")
    )
    client.crm.properties.core_api.create(
        "companies",
        PropertyCreate(
            name="warp_status",
            label="Status",
            type="enumeration",
            field_type="select",
            group_name="warp",
            options=[{"label": "Active", "value": "ACTIVE", "displayOrder": 1, "hidden": False}],
        ),
    )
    names = {p.name for p in client.crm.properties.core_api.get_all("companies").results}
    assert {"warp_status", "name", "domain", "hs_object_id"} <= names
    created = client.crm.companies.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"warp_status": "ACTIVE"})
    )
    assert fresh.values("companies", created.id)["warp_status"] == "ACTIVE"
    with pytest.raises(ApiException) as caught:
        client.crm.companies.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"warp_status": "nope"})
        )
    assert _body(caught.value)["errors"][0]["code"] == "INVALID_OPTION"


def test_upsert_merge_and_associations(fresh: Emulator, client: HubSpot) -> None:
    upsert = BatchInputSimplePublicObjectBatchInputUpsert(
        inputs=[
            SimplePublicObjectBatchInputUpsert(
                id="p@x.example", id_property="email", properties={"firstname": "P"}
            )
        ]
    )
    first = client.crm.contacts.batch_api.upsert(upsert)
    second = client.crm.contacts.batch_api.upsert(upsert)
    assert first.results[0].new is True and second.results[0].new is False
    assert first.results[0].id == second.results[0].id

    a, b = fresh.seed("companies", [{"name": "A"}, {"name": "B", "city": "Oslo"}])
    merged = client.crm.companies.basic_api.merge(
        PublicMergeInput(primary_object_id=a, object_id_to_merge=b)
    )
    # HubSpot's current merge: a new record with a new id, both old ids resolve to it.
    assert merged.id not in (a, b) and fresh.values("companies", merged.id)["city"] == "Oslo"
    for old in (a, b):
        again = client.crm.companies.basic_api.get_by_id(old, properties=["hs_merged_object_ids"])
        assert again.id == merged.id
        assert sorted(again.properties["hs_merged_object_ids"].split(";")) == sorted([a, b])
    read = client.crm.companies.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=a), SimplePublicObjectId(id=b)], properties=["name"]
        )
    )
    assert [r.id for r in read.results] == [merged.id]
    assert read.results[0].properties["name"] == "A"  # the primary's value wins

    contact_id = first.results[0].id
    a = merged.id
    client.crm.associations.v4.basic_api.create_default("companies", a, "contacts", contact_id)
    page = client.crm.associations.v4.basic_api.get_page("contacts", contact_id, "companies")
    assert [str(r.to_object_id) for r in page.results] == [a]
    assert page.results[0].association_types[0].type_id == 279
    # The company becomes the contact's primary one (type 1) through the labels endpoint.
    pair = client.crm.associations.v4.basic_api.create(
        "contacts",
        contact_id,
        "companies",
        a,
        [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=1)],
    )
    assert str(pair.to_object_id) == a and pair.from_object_type_id == "0-1"
    page = client.crm.associations.v4.basic_api.get_page("contacts", contact_id, "companies")
    assert sorted(t.type_id for t in page.results[0].association_types) == [1, 279]
    with pytest.raises(AssociationsApiException):
        client.crm.associations.v4.basic_api.create_default("companies", a, "contacts", "12345")
    got = client.crm.companies.basic_api.get_by_id(a, associations=["contacts"])
    assert got.associations["contacts"].results[0].id == contact_id


def test_query_parameters_comma_separated_or_repeated(fresh: Emulator) -> None:
    [company_id] = fresh.seed("companies", [{"name": "Q", "city": "Rome", "phone": "1"}])
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{fresh.url}/crm/v3/objects/companies/{company_id}"
    comma = httpx.get(
        f"{url}?properties=name,city&propertiesWithHistory=name,phone", headers=headers
    ).json()
    repeated = httpx.get(
        f"{url}?properties=name&properties=city&propertiesWithHistory=name"
        "&propertiesWithHistory=phone",
        headers=headers,
    ).json()
    assert comma == repeated
    assert {"name", "city"} <= set(comma["properties"]) and "phone" not in comma["properties"]
    assert set(comma["propertiesWithHistory"]) == {"name", "phone"}


def test_search_index_lags_writes_by_default(fresh: Emulator, client: HubSpot) -> None:
    def names(value: str) -> list[str]:
        found = client.crm.companies.search_api.do_search(
            PublicObjectSearchRequest(
                filter_groups=[
                    FilterGroup(filters=[Filter(property_name="name", operator="EQ", value=value)])
                ],
                properties=["name"],
            )
        )
        return [r.properties["name"] for r in found.results]

    default = fresh.state.search_delay_ms
    assert default == 2_000  # HubSpot's "few moments", on unless a test says otherwise
    settings = httpx.post(f"{fresh.url}/_emulator/settings", json={"searchDelayMs": 60_000})
    assert settings.json()["searchDelayMs"] == 60_000
    try:
        fresh.seed("companies", [{"name": "imported"}])
        assert names("imported") == ["imported"]  # imported before the test: indexed
        company = fresh.ui_create("companies", {"name": "lagging"})
        assert names("lagging") == []  # not indexed yet
        catch_up = f"{fresh.url}/_emulator/search/catch-up"
        assert httpx.post(catch_up).json()["caughtUp"] >= 2  # "enough time passed"
        assert names("lagging") == ["lagging"]
        fresh.ui_change("companies", company, {"name": "renamed"})
        assert names("lagging") == ["lagging"] and names("renamed") == []  # old version
        httpx.post(catch_up)
        assert names("lagging") == [] and names("renamed") == ["renamed"]
    finally:
        fresh.state.search_delay_ms = default


def test_chunked_request_bodies_are_read(fresh: Emulator) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"properties": {"name": '
        yield b'"chunked"}}'

    answer = httpx.post(
        f"{fresh.url}/crm/v3/objects/companies",
        content=body(),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert answer.status_code == 201 and answer.json()["properties"]["name"] == "chunked"


revenues = st.lists(st.one_of(st.none(), st.integers(0, 50)), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(values=revenues, low=st.integers(0, 50), span=st.integers(0, 20), limit=st.integers(1, 7))
def test_search_matches_a_plain_python_oracle(
    values: list[int | None], low: int, span: int, limit: int
) -> None:
    registry = PropertyRegistry()
    store = Store(registry)
    for value in values:
        store.create(
            "companies",
            {"annualrevenue": "" if value is None else str(value)},
            Source("IMPORT", "t"),
        )
    lookup = lambda name: registry.get("companies", name)  # noqa: E731
    body: dict = {
        "filterGroups": [
            {
                "filters": [
                    {
                        "propertyName": "annualrevenue",
                        "operator": "BETWEEN",
                        "value": str(low),
                        "highValue": str(low + span),
                    }
                ]
            },
            {"filters": [{"propertyName": "annualrevenue", "operator": "NOT_HAS_PROPERTY"}]},
        ],
        "sorts": [{"propertyName": "annualrevenue", "direction": "ASCENDING"}],
        "limit": limit,
    }
    seen: list[str] = []
    while True:
        page = run_search("companies", body, store.live("companies"), lookup)
        seen += [r.values["annualrevenue"] for r in page.results]
        if page.next_after is None:
            break
        body["after"] = page.next_after
    inside = sorted(v for v in values if v is not None and low <= v <= low + span)
    assert seen == [str(v) for v in inside] + [""] * values.count(None)  # unset sorts last
    assert page.total == len(seen)


def test_merges_keep_one_primary_company_per_contact() -> None:
    store = Store(PropertyRegistry())
    ui = Source("CRM_UI", "userId:1")
    a, b = (store.create("companies", {"name": n}, ui) for n in ("A", "B"))
    x, y = (store.create("contacts", {"email": e}, ui) for e in ("x@a.example", "y@b.example"))
    store.associate(x, a, ui, primary=True)
    store.associate(y, b, ui, primary=True)
    company = store.merge(a, b, ui)
    # A company is the primary company of many contacts: both keep theirs.
    for contact in (x, y):
        assert store.associations("contacts", contact.id, "companies") == [(company.id, [1, 279])]
    contact = store.merge(x, y, ui)  # both were primary to the same company: one link
    assert store.associations("contacts", contact.id, "companies") == [(company.id, [1, 279])]
    c = store.create("companies", {"name": "C"}, ui)
    z = store.create("contacts", {"email": "z@c.example"}, ui)
    store.associate(z, c, ui, primary=True)
    merged = store.merge(contact, z, ui)  # the primary's primary company wins
    assert store.associations("contacts", merged.id, "companies") == [
        (company.id, [1, 279]),
        (c.id, [279]),
    ]
