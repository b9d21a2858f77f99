"""Fuzzing webhook_receiver over real HTTP: bodies, headers, signatures and sizes.

Whatever arrives, the answer is 200 (an array of event objects: the valid ones stored,
each invalid one recorded with its reason), 400 (not an array of objects), 401 (not
signed by HubSpot) or 413 (too large); never a 5xx, and a refused delivery leaves
``hubspot_webhook_events`` exactly as it was.

Bodies are signed (v3) so they reach the parser; the signature tests
leave the body valid and fuzz the headers instead. These found five kinds of 500s
(deep nesting, NaN, integers beyond BIGINT or Python's digit limit, NUL in any
string, object names longer than their column): see shared/untrusted_json.py and
shared/inbound/events.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.engine import Engine
from shared.hubspot.signatures import sign_v3
from tests.conftest import TEST_CLIENT_SECRET
from tests.helpers.functions import serve_function

pytestmark = pytest.mark.integration

PATH = "/v1/webhooks/hubspot/company"
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TABLE = "accounts.hubspot_webhook_events"


@pytest.fixture(scope="module")
def receiver(engine: Engine) -> Iterator[str]:
    with serve_function("webhook_receiver") as url:
        yield url


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def table_snapshot(engine: Engine) -> tuple[int, str]:
    """Row count and a digest of every stored key: equal snapshots mean nothing changed."""
    with engine.database.transaction() as tx:
        row = tx.fetch_one(
            f"SELECT count(*) AS n, coalesce(md5(string_agg(event_id || ':' || "
            f"coalesce(processed::text, '-'), ',' ORDER BY event_id)), '') AS digest FROM {TABLE}"
        )
    assert row is not None
    return int(row["n"]), str(row["digest"])


def signed(uri: str, body: bytes) -> dict[str, str]:
    """v3 headers for any bytes (the SDK's signer takes text only; tests/hubspot/test_signatures.py
    proves this signer agrees with it)."""
    ts = int(time.time() * 1000)
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": sign_v3(TEST_CLIENT_SECRET, "POST", uri, body, ts),
        "X-HubSpot-Request-Timestamp": str(ts),
    }


def post_signed(http: httpx.Client, base: str, body: bytes) -> httpx.Response:
    uri = base + PATH
    return http.post(uri, content=body, headers=signed(uri, body))


_event_ids = iter(range(5_000_000, 10**9))


def valid_event(**overrides: Any) -> dict[str, Any]:
    """A well-formed company.propertyChange for a company no customer is linked to."""
    return {
        "eventId": next(_event_ids),
        "subscriptionId": 4242,
        "portalId": 62515,
        "appId": 1,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": "company.propertyChange",
        "attemptNumber": 0,
        "objectId": 990_000_001,
        "propertyName": "name",
        "propertyValue": "Fuzzed",
        "changeSource": "CRM_UI",
        **overrides,
    }


def assert_answer(response: httpx.Response, allowed: set[int]) -> None:
    assert response.status_code < 500, response.text
    assert response.status_code in allowed, (response.status_code, response.text)
    assert "error" in response.json() if response.status_code != 200 else True


def stored_keys(engine: Engine, keys: list[str]) -> int:
    with engine.database.transaction() as tx:
        return int(
            tx.fetch_value(
                f"SELECT count(*) FROM {TABLE} WHERE event_id = ANY(CAST(:k AS text[]))",
                {"k": keys},
            )
        )


# Column bounds and just beyond: BIGINT, INTEGER, the last millisecond of year 9999.
EDGE_INTEGERS = [
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**31 - 1,
    2**31,
    253_402_300_799_999,
    253_402_300_800_000,
    10**40,
    -1,
]
# JSON of any shape, including what json.dumps can write but JSONB cannot hold.
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(EDGE_INTEGERS)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["\x00", "x" * 60, "a" * 60 + ".propertyChange", "object.creation"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
FIELDS = [
    "eventId",
    "subscriptionId",
    "portalId",
    "occurredAt",
    "subscriptionType",
    "objectId",
    "appId",
    "attemptNumber",
    "propertyName",
    "propertyValue",
    "changeSource",
    "sourceId",
    "objectTypeId",
    "mergedObjectIds",
    "fromObjectId",
    "associationType",
    "someFieldHubSpotAddsLater",  # unknown fields are kept in raw_payload
]


@FUZZ
@given(body=st.binary(max_size=2_000))
@example(body=b"[" * 100_000 + b"]" * 100_000)  # recursion in the parser: was a 500
@example(body=b"[" + b"1" * 5_000 + b"]")  # beyond Python's int digit limit: was a 500
@example(body=b'[{"eventId": NaN}]')
def test_arbitrary_bytes_are_refused_with_400_and_nothing_stored(
    engine: Engine, receiver: str, http: httpx.Client, body: bytes
) -> None:
    before = table_snapshot(engine)
    response = post_signed(http, receiver, body)
    # Random bytes can spell "[]" (an empty batch): 200 with nothing to store.
    assert_answer(response, {200, 400})
    assert table_snapshot(engine) == before


@FUZZ
@given(document=json_values)
def test_any_json_document_is_200_or_400_never_partial(
    engine: Engine, receiver: str, http: httpx.Client, document: Any
) -> None:
    before = table_snapshot(engine)
    response = post_signed(http, receiver, json.dumps(document).encode())
    assert_answer(response, {200, 400})
    if response.status_code == 400 or document == []:
        assert table_snapshot(engine) == before


@FUZZ
@given(
    mutations=st.lists(
        st.tuples(st.sampled_from(FIELDS), json_values | st.just(...)), min_size=1, max_size=4
    ),
    valid_too=st.integers(min_value=0, max_value=3),
)
@example(mutations=[("eventId", 2**63)], valid_too=1)  # beyond BIGINT: was a 500
@example(mutations=[("occurredAt", 10**20)], valid_too=1)  # no such datetime: was a 500
@example(mutations=[("attemptNumber", 2**31)], valid_too=0)  # beyond INTEGER: was a 500
@example(mutations=[("someFieldHubSpotAddsLater", float("nan"))], valid_too=1)  # JSONB: 500
@example(mutations=[("subscriptionType", "a" * 51 + ".creation")], valid_too=0)  # VARCHAR(50)
@example(
    mutations=[("subscriptionType", "object.creation"), ("objectTypeId", "9" * 60)], valid_too=0
)
def test_a_mutated_event_is_stored_or_recorded_invalid_beside_valid_ones(
    engine: Engine,
    receiver: str,
    http: httpx.Client,
    mutations: list[tuple[str, Any]],
    valid_too: int,
) -> None:
    """One event with fields replaced (or removed: ``...``) among valid ones."""
    mutated = valid_event()
    for name, value in mutations:
        if value is ...:
            mutated.pop(name, None)
        else:
            mutated[name] = value
    batch = [valid_event() for _ in range(valid_too)] + [mutated]
    good_keys = [f"{e['subscriptionId']}:{e['eventId']}:{e['occurredAt']}" for e in batch[:-1]]
    before = table_snapshot(engine)
    response = post_signed(http, receiver, json.dumps(batch).encode())
    assert_answer(response, {200, 400})
    if response.status_code == 400:
        assert table_snapshot(engine) == before
    else:
        assert stored_keys(engine, good_keys) == len(good_keys)
        answer = response.json()
        assert answer["received"] == len(batch)
        assert answer["stored"] + answer["duplicates"] + answer["invalid"] == len(batch)


@FUZZ
@given(
    where=st.sampled_from(FIELDS),
    number=st.sampled_from(["1e400", "-1e400", "1E+309", "2e308", "-9.9e999"]),
    valid_too=st.integers(min_value=0, max_value=3),
)
@example(where="propertyValue", number="1e400", valid_too=1)  # JSONB: 500, logged the event
def test_non_finite_numbers_anywhere_are_400_with_nothing_stored(
    engine: Engine, receiver: str, http: httpx.Client, where: str, number: str, valid_too: int
) -> None:
    """Valid JSON that Python reads as inf (json.dumps cannot write it: placed as text)."""
    batch = [valid_event() for _ in range(valid_too)] + [valid_event(**{where: "__number__"})]
    body = json.dumps(batch).replace('"__number__"', number).encode()
    before = table_snapshot(engine)
    response = post_signed(http, receiver, body)
    assert_answer(response, {400})
    assert "double" in response.json()["error"]
    assert table_snapshot(engine) == before


def test_batches_of_more_than_100_events_are_refused(
    engine: Engine, receiver: str, http: httpx.Client
) -> None:
    before = table_snapshot(engine)
    too_many = post_signed(http, receiver, json.dumps([valid_event() for _ in range(101)]).encode())
    assert_answer(too_many, {400})
    assert "at most 100 events" in too_many.json()["error"]
    assert table_snapshot(engine) == before
    full = post_signed(http, receiver, json.dumps([valid_event() for _ in range(100)]).encode())
    assert_answer(full, {200})
    assert full.json()["stored"] == 100


@FUZZ
@given(
    text=st.text(
        alphabet=st.characters(codec="utf-8", categories=("Cc", "Cs", "Lo", "Po", "Zs", "So")),
        max_size=40,
    )
    | st.sampled_from(["\x00", "a\x00b", "\ud800", "\udfff x", "'; DROP TABLE x; --"]),
    where=st.sampled_from(["propertyValue", "propertyName", "changeSource", "sourceId", "key"]),
)
def test_unusual_text_in_any_string_is_stored_or_refused_cleanly(
    engine: Engine, receiver: str, http: httpx.Client, text: str, where: str
) -> None:
    event = valid_event()
    if where == "key":
        event[text or "k"] = 1
    else:
        event[where] = text
    key = f"{event['subscriptionId']}:{event['eventId']}:{event['occurredAt']}"
    # json.dumps escapes NUL and lone surrogates, as any JSON writer may send them.
    response = post_signed(http, receiver, json.dumps([event]).encode())
    assert_answer(response, {200, 400})
    assert stored_keys(engine, [key]) == (1 if response.status_code == 200 else 0)
    if response.status_code == 200 and where == "propertyValue":
        with engine.database.transaction() as tx:
            stored = tx.fetch_value(
                f"SELECT property_value #>> '{{}}' FROM {TABLE} WHERE event_id = :k", {"k": key}
            )
        assert stored == text  # byte for byte, metacharacters and all


@FUZZ
@given(
    signature=st.none() | st.text(max_size=60),
    timestamp=st.none() | st.text(max_size=20) | st.integers().map(str),
    version=st.none() | st.sampled_from(["v1", "v2", "v3", ""]),
    v1=st.none() | st.text(max_size=70),
)
def test_fuzzed_signature_headers_are_401_with_nothing_stored(
    engine: Engine,
    receiver: str,
    http: httpx.Client,
    signature: str | None,
    timestamp: str | None,
    version: str | None,
    v1: str | None,
) -> None:
    headers = {}
    for name, value in (
        ("X-HubSpot-Signature-v3", signature),
        ("X-HubSpot-Request-Timestamp", timestamp),
        ("X-HubSpot-Signature-Version", version),
        ("X-HubSpot-Signature", v1),
    ):
        # A header value is printable ASCII without surrounding blanks on the wire.
        if value is not None and value.isprintable() and value.isascii():
            headers[name] = value.strip()
    before = table_snapshot(engine)
    body = json.dumps([valid_event()]).encode()
    response = http.post(receiver + PATH, content=body, headers=headers)
    assert_answer(response, {401})
    assert table_snapshot(engine) == before


def test_signed_over_another_body_or_path_or_method_is_401(
    engine: Engine, receiver: str, http: httpx.Client
) -> None:
    body = json.dumps([valid_event()]).encode()
    headers = signed(receiver + PATH, body)
    before = table_snapshot(engine)
    cases = [
        http.post(receiver + PATH, content=body + b" ", headers=headers),
        http.post(receiver + PATH + "?x=1", content=body, headers=headers),
        http.post(receiver + "/other", content=body, headers=headers),
        http.put(receiver + PATH, content=body, headers=headers),
    ]
    assert [r.status_code for r in cases] == [401, 401, 401, 405]
    assert table_snapshot(engine) == before


@pytest.mark.parametrize("declared", [True, False])
def test_sizes_at_and_over_the_cap(
    engine: Engine, receiver: str, http: httpx.Client, declared: bool
) -> None:
    limit = engine.settings.webhook_max_body_bytes
    event = valid_event(propertyValue="")
    overhead = len(json.dumps([event]).encode())
    at_limit = json.dumps([{**event, "propertyValue": "x" * (limit - overhead)}]).encode()
    assert len(at_limit) == limit
    over = at_limit.replace(b'"x', b'"xx', 1)
    assert len(over) == limit + 1
    before = table_snapshot(engine)
    if declared:
        response = post_signed(http, receiver, over)
    else:
        # Chunked: no Content-Length, so the cap is found while reading.
        uri = receiver + PATH
        response = http.post(
            uri, content=iter([over[:1000], over[1000:]]), headers=signed(uri, over)
        )
    assert_answer(response, {413})
    assert table_snapshot(engine) == before
    assert post_signed(http, receiver, at_limit).status_code == 200
