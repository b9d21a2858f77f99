"""Fuzzing outbound_sync's Pub/Sub push handler over real HTTP: envelopes, base64, messages.

A push that cannot be read is acknowledged (200, ``outcome: rejected``) and, when
its message id is readable, recorded as such, so a redelivery changes nothing and a
poison message never loops; only a body over the 1 MiB cap is refused (413, which
Pub/Sub redelivers until the subscription's dead-letter topic takes it). Never a
5xx, and a refused message marks no customer dirty and leaves no claim behind.

These found three 500s (NUL in a message string, nesting deeper than the parser's
recursion, integers beyond Python's digit limit) and a hang (a long message id made
the log redaction's e-mail pattern quadratic): see shared/untrusted_json.py,
shared/messages/envelope.py and shared/observability/redaction.py.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from localdev.drain import wait_drained
from shared.db.repositories import customers
from shared.engine import Engine
from shared.idempotency import PostgresPersistence
from tests.helpers.functions import serve_function

pytestmark = pytest.mark.integration

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ACKED = {"accepted", "duplicate", "skipped", "closed", "rejected"}


@pytest.fixture(scope="module")
def url(engine: Engine) -> Iterator[str]:
    with serve_function("outbound_sync") as base:
        yield base


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def dirty_snapshot(engine: Engine) -> list[Any]:
    with engine.database.transaction() as tx:
        return tx.fetch("SELECT * FROM accounts.hubspot_outbound_dirty ORDER BY customer_id")


def record(engine: Engine, message_id: str) -> dict[str, Any] | None:
    with engine.database.transaction() as tx:
        return tx.fetch_one(
            f"SELECT status, response FROM {PostgresPersistence.table} WHERE key = :k",
            {"k": "pubsub:" + message_id},
        )


def envelope(data: str, message_id: str, **message: Any) -> bytes:
    return json.dumps(
        {
            "message": {"data": data, "messageId": message_id, **message},
            "subscription": "projects/p/subscriptions/customer-changes-push",
        }
    ).encode()


def b64(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def change(**overrides: Any) -> dict[str, Any]:
    """A valid change message for a customer WARP does not have (answered ``skipped``)."""
    return {
        "entity_type": "customer",
        "entity_id": str(uuid.uuid4()),
        "operation": "UPDATE",
        "changed_fields": ["company_name"],
        "occurred_at": datetime.now(UTC).isoformat(),
        "trigger_source": "admin_ui",
        **overrides,
    }


def push(http: httpx.Client, url: str, body: bytes, **headers: str) -> httpx.Response:
    response = http.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.json()["outcome"] in ACKED, response.text
    return response


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**40, -1, 2**63])
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.sampled_from(["\x00", "a\x00b", "\ud800", "", "2024-13-45T99:00:00Z"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)


@FUZZ
@given(body=st.binary(max_size=2_000))
@example(body=b"[" * 100_000)  # recursion in the parser: was a 500
@example(body=b"[" + b"1" * 5_000 + b"]")  # beyond Python's int digit limit: was a 500
def test_arbitrary_bytes_are_acknowledged_as_rejected(
    engine: Engine, url: str, http: httpx.Client, body: bytes
) -> None:
    before = dirty_snapshot(engine)
    answer = push(http, url, body).json()
    assert answer["outcome"] == "rejected" and answer["reason"]
    assert dirty_snapshot(engine) == before


@FUZZ
@given(document=json_values, cloud_event=st.booleans())
def test_any_json_envelope_is_acknowledged_and_marks_nothing(
    engine: Engine, url: str, http: httpx.Client, document: Any, cloud_event: bool
) -> None:
    headers = {"Content-Type": "application/cloudevents+json"} if cloud_event else {}
    before = dirty_snapshot(engine)
    answer = push(http, url, json.dumps(document).encode(), **headers).json()
    assert answer["outcome"] == "rejected"
    assert dirty_snapshot(engine) == before


@FUZZ
@given(
    data=st.text(max_size=60)
    | st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode())
    | json_values.map(b64),
    message_id=st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s)
    | st.just("m" * 100_000),
)
@example(data="", message_id="m" * 100_000)  # a long id hung the log redaction
def test_unreadable_data_is_recorded_rejected_once_and_never_loops(
    engine: Engine, url: str, http: httpx.Client, data: str, message_id: str
) -> None:
    message_id = f"{uuid.uuid4().hex}-{message_id}"
    before = dirty_snapshot(engine)
    answer = push(http, url, envelope(data, message_id)).json()
    assert answer["outcome"] == "rejected"
    assert dirty_snapshot(engine) == before
    stored = record(engine, message_id)
    if "message_id" in answer:
        # Known id: recorded as rejected (COMPLETED); a redelivery is acknowledged again
        # and changes nothing, so the message cannot loop.
        assert answer["message_id"] == message_id and len(message_id) <= 256
        assert stored is not None and stored["status"] == "COMPLETED"
        assert stored["response"]["outcome"] == "rejected"
        assert push(http, url, envelope(data, message_id)).json()["outcome"] == "rejected"
        assert record(engine, message_id) == stored
    else:
        # The envelope itself was refused (an id longer than Pub/Sub's, or NUL in the
        # raw text of data): nothing was claimed, and every redelivery is acknowledged.
        assert stored is None
        assert len(message_id) > 256 or any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in data)


FIELDS = [
    "entity_type",
    "entity_id",
    "operation",
    "changed_fields",
    "occurred_at",
    "trigger_source",
    "triggered_by_user",
    "a_field_warp_adds_later",
]


@FUZZ
@given(
    mutations=st.lists(
        st.tuples(st.sampled_from(FIELDS), json_values | st.just(...)), min_size=1, max_size=3
    ),
    attributes=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
    attempt=st.none() | st.integers(),
)
@example(mutations=[("trigger_source", "a\x00b")], attributes={}, attempt=1)  # was a 500
@example(mutations=[("triggered_by_user", "\x00")], attributes={}, attempt=1)  # was a 500
def test_mutated_change_messages_are_settled_with_no_claim_left(
    engine: Engine,
    url: str,
    http: httpx.Client,
    mutations: list[tuple[str, Any]],
    attributes: dict[str, str],
    attempt: int | None,
) -> None:
    document = change()
    for name, value in mutations:
        if value is ...:
            document.pop(name, None)
        else:
            document[name] = value
    message_id = uuid.uuid4().hex
    body = json.loads(envelope(b64(document), message_id, attributes=attributes))
    if attempt is not None:
        body["deliveryAttempt"] = attempt
    before = dirty_snapshot(engine)
    answer = push(http, url, json.dumps(body).encode()).json()
    # The customer does not exist: a readable message is skipped, the rest rejected.
    assert answer["outcome"] in {"skipped", "rejected"}, answer
    assert dirty_snapshot(engine) == before
    stored = record(engine, message_id)
    if answer.get("message_id") is None:
        # The envelope itself was unreadable (NUL in an attribute, say): no id to record.
        assert answer["outcome"] == "rejected" and stored is None
    else:
        assert stored is not None and stored["status"] == "COMPLETED"  # no claim left behind
        assert stored["response"]["outcome"] == answer["outcome"]


# Times whose UTC form is outside what can be stored or read back (issue 21: the first two
# poisoned a pooled connection), and the stored range's edges.
TIMES = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999+00:00",
    "0001-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "2024-06-01T12:00:00",  # no offset
    "2024-06-01T12:00:00+23:59",
]


@FUZZ
@given(
    where=st.sampled_from(["occurred_at", "publishTime"]),
    when=st.sampled_from(TIMES)
    | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
)
@example(where="occurred_at", when="0001-01-01T00:00:00+14:00")
def test_times_out_of_range_are_rejected_and_acknowledged(
    engine: Engine, url: str, http: httpx.Client, where: str, when: str
) -> None:
    document = change(occurred_at=when) if where == "occurred_at" else change()
    extra = {"publishTime": when} if where == "publishTime" else {}
    before = dirty_snapshot(engine)
    answer = push(http, url, envelope(b64(document), uuid.uuid4().hex, **extra)).json()
    assert answer["outcome"] == ("skipped" if storable(when) else "rejected"), answer
    assert dirty_snapshot(engine) == before


def storable(text: str) -> bool:
    """Whether a time may be kept: aware, UTC form within 1970-01-01 .. 9999-12-30."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return False
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        return False
    return datetime(1970, 1, 1, tzinfo=UTC) <= utc <= datetime(9999, 12, 30, tzinfo=UTC)


@FUZZ
@given(
    where=st.sampled_from([*FIELDS, "envelope"]),
    number=st.sampled_from(["1e400", "-1e400", "1E+309"]),
)
def test_non_finite_numbers_are_rejected_and_acknowledged(
    engine: Engine, url: str, http: httpx.Client, where: str, number: str
) -> None:
    """Valid JSON that Python reads as inf, in the message or in the envelope around it."""
    message_id = uuid.uuid4().hex
    if where == "envelope":
        body = envelope(b64(change()), message_id, extra="__number__")
    else:
        data = json.dumps(change(**{where: "__number__"})).replace('"__number__"', number)
        body = envelope(base64.b64encode(data.encode()).decode(), message_id)
    body = body.replace(b'"__number__"', number.encode())
    before = dirty_snapshot(engine)
    answer = push(http, url, body).json()
    assert answer["outcome"] == "rejected" and "double" in answer["reason"], answer
    assert dirty_snapshot(engine) == before


def test_readable_message_with_unusual_text_reaches_hubspot_and_the_log(
    engine: Engine, emulator: Any, url: str, http: httpx.Client
) -> None:
    """Quotes, backslashes and SQL in the message's strings are carried, not interpreted."""
    ban = f"B-{uuid.uuid4().hex[:10]}"
    with engine.database.transaction() as tx:
        cid = str(
            customers.insert(
                tx,
                {
                    "ban": ban,
                    "company_name": 'O\'Brien \\ "Quoted" ; DROP TABLE accounts.customers; --',
                    "customer_type": "POSTPAID",
                    "status": "ACTIVE",
                    "contact": {"name": "Zoë", "email": f"z@{ban.lower()}.example"},
                },
            )["id"]
        )
    source = "ui'); DELETE FROM accounts.hubspot_sync_log; --"
    answer = push(
        http, url, envelope(b64(change(entity_id=cid, trigger_source=source)), uuid.uuid4().hex)
    ).json()
    assert answer["outcome"] == "accepted"
    assert wait_drained(engine, timeout=30)
    with engine.database.transaction() as tx:
        row = customers.get(tx, cid)
        logs = tx.fetch(
            "SELECT triggered_by FROM accounts.hubspot_sync_log WHERE entity_id = :c", {"c": cid}
        )
    assert row is not None
    company = engine.hubspot.companies.get(
        row["external_ids"]["hubspot_company_id"], properties=["name"]
    )
    assert company.properties["name"] == row["company_name"]
    assert logs and {r["triggered_by"] for r in logs} == {f"pubsub:{source}"}


def test_body_over_the_cap_is_413_and_claims_nothing(
    engine: Engine, url: str, http: httpx.Client
) -> None:
    message_id = uuid.uuid4().hex
    body = envelope(b64(change()), message_id, attributes={"pad": "x" * 1_048_576})
    response = http.post(url, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert record(engine, message_id) is None
