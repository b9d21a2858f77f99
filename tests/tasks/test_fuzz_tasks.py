"""Malformed task and scheduler bodies over real HTTP: retry_worker and reconciler.

An attack run found 11 of 24 malformed bodies answered 500 (missing ``id`` or
``run_id``, invalid uuids, an invalid ``received_before``, ``limit: -1`` or ``"x"``,
an unknown ``customer_id``), which Cloud Tasks and Cloud Scheduler retry. Every task
payload now has a model (``shared/tasks/kinds.py``) and the reconciler reads its body
with the API's model (``shared/reconcile/request.py``): a malformed body is a 400
naming the field, an unknown customer a 404, and nothing is stored or run.

The listed bodies are the attack run's and their neighbours; the properties mutate a
valid body's fields with JSON of any type, non-finite numbers (``1e400``, which JSON
allows and Python reads as ``inf``) and times outside what can be stored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.engine import Engine
from tests.helpers.customers import acme_customer
from tests.helpers.functions import serve_function

pytestmark = pytest.mark.integration

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NON_FINITE = "__non_finite__"  # replaced by 1e400 in the body text: json.dumps cannot write it


@pytest.fixture(scope="module")
def urls(engine: Engine) -> Iterator[dict[str, str]]:
    with serve_function("retry_worker") as worker, serve_function("reconciler") as reconciler:
        yield {"retry_worker": worker, "reconciler": reconciler}


@pytest.fixture(scope="module")
def customer(engine: Engine, emulator: Any) -> str:
    customer_id, _ = acme_customer(engine, emulator)
    return customer_id


def post(url: str, body: Any) -> httpx.Response:
    text = body if isinstance(body, str) else json.dumps(body)
    text = text.replace(json.dumps(NON_FINITE), "1e400")
    return httpx.post(url, content=text, headers={"Content-Type": "application/json"}, timeout=60)


def counts(engine: Engine) -> tuple[int, int]:
    with engine.database.transaction() as tx:
        row = tx.fetch_one(
            "SELECT (SELECT count(*) FROM accounts.hubspot_sync_queue) AS queue, "
            "(SELECT count(*) FROM accounts.hubspot_reconciliation_runs) AS runs"
        )
    assert row is not None
    return int(row["queue"]), int(row["runs"])


OUT_OF_RANGE = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2024-01-01T00:00:00"]
RANDOM_ID = "7b0f6a2e-8f5e-4c1a-9d3e-1f2a3b4c5d6e"
MALFORMED_TASKS = [
    ({}, "kind"),
    ([], "body"),
    ({"kind": 7}, "kind"),
    ({"kind": "queue_item", "payload": []}, "payload"),
    ({"kind": "queue_item", "payload": {}}, "id"),
    ({"kind": "queue_item", "payload": {"id": "not-a-uuid"}}, "id"),
    ({"kind": "queue_item", "payload": {"id": NON_FINITE}}, "JSON"),
    ({"kind": "queue_item", "payload": {"id": RANDOM_ID}, "extra": 1}, "extra"),
    ({"kind": "reconcile_continue", "payload": {}}, "run_id"),
    ({"kind": "reconcile_continue", "payload": {"run_id": "x"}}, "run_id"),
    ({"kind": "reconcile_continue", "payload": {"run_id": RANDOM_ID, "seq": -1}}, "seq"),
    ({"kind": "reconcile_continue", "payload": {"run_id": RANDOM_ID, "failures": "x"}}, "failures"),
    ({"kind": "inbound_batch", "payload": {}}, "exactly one"),
    ({"kind": "inbound_batch", "payload": {"event_ids": ["x"]}}, "event_ids"),
    ({"kind": "inbound_batch", "payload": {"event_ids": []}}, "event_ids"),
    ({"kind": "inbound_batch", "payload": {"received_before": "yesterday"}}, "received_before"),
    *(
        ({"kind": "inbound_batch", "payload": {"received_before": when}}, "received_before")
        for when in OUT_OF_RANGE
    ),
    (
        {
            "kind": "inbound_batch",
            "payload": {"received_before": "2024-01-01T00:00:00Z", "limit": -1},
        },
        "limit",
    ),
    (
        {
            "kind": "inbound_batch",
            "payload": {"received_before": "2024-01-01T00:00:00Z", "limit": "x"},
        },
        "limit",
    ),
    ({"kind": "outbound_flush", "payload": {"bucket": "x"}}, "bucket"),
]


@pytest.mark.parametrize(("body", "named"), MALFORMED_TASKS)
def test_malformed_task_bodies_are_400_naming_the_field(
    urls: dict[str, str], engine: Engine, body: Any, named: str
) -> None:
    before = counts(engine)
    response = post(urls["retry_worker"], body)
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]
    assert counts(engine) == before


def test_a_task_for_nothing_that_exists_is_done_not_retried(urls: dict[str, str]) -> None:
    for body in (
        {"kind": "queue_item", "payload": {"id": RANDOM_ID}},
        {"kind": "reconcile_continue", "payload": {"run_id": RANDOM_ID}},
        {"kind": "inbound_batch", "payload": {"event_ids": [RANDOM_ID]}},
    ):
        response = post(urls["retry_worker"], body)
        assert response.status_code == 200 and response.json()["outcome"] == "DONE", response.text


MALFORMED_RUNS = [
    ([], "body"),
    ({"dry_run": "yes"}, "dry_run"),
    ({"force": 1}, "force"),
    ({"force": NON_FINITE}, "JSON"),
    ({"customer_id": "x"}, "customer_id"),
    ({"run_type": "SOMETIMES"}, "run_type"),
    ({"entity_type": "deal"}, "entity_type"),
    ({"run_type": "CUSTOMER_SPECIFIC"}, "customer_id"),
    ({"when": "now"}, "when"),
]


@pytest.mark.parametrize(("body", "named"), MALFORMED_RUNS)
def test_malformed_reconcile_bodies_are_400_naming_the_field(
    urls: dict[str, str], engine: Engine, body: Any, named: str
) -> None:
    before = counts(engine)
    response = post(urls["reconciler"], body)
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]
    assert counts(engine) == before


def test_an_unknown_customer_is_404_and_starts_no_run(urls: dict[str, str], engine: Engine) -> None:
    before = counts(engine)
    response = post(urls["reconciler"], {"customer_id": str(uuid.uuid4())})
    assert response.status_code == 404, response.text
    assert response.json()["field"] == "customer_id"
    assert counts(engine) == before


# --- properties ---------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([-1, 0, 2**63, NON_FINITE, "yes", "", RANDOM_ID, *OUT_OF_RANGE])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner)
)
VALID_TASKS = {
    "queue_item": {"id": RANDOM_ID},
    "reconcile_continue": {"run_id": RANDOM_ID, "seq": 0, "failures": 0},
    "inbound_batch": {"received_before": "2000-01-01T00:00:00Z", "limit": 10},
    "outbound_flush": {"bucket": 1},
}


@FUZZ
@given(
    kind=st.sampled_from(sorted(VALID_TASKS)),
    field=st.sampled_from(
        ["id", "run_id", "seq", "failures", "received_before", "limit", "bucket"]
    ),
    value=json_values,
)
@example(kind="inbound_batch", field="received_before", value="0001-01-01T00:00:00+14:00")
@example(kind="inbound_batch", field="limit", value=NON_FINITE)
def test_mutated_task_payloads_are_answered_200_or_400(
    urls: dict[str, str], kind: str, field: str, value: Any
) -> None:
    payload = {**VALID_TASKS[kind], field: value}
    response = post(urls["retry_worker"], {"kind": kind, "payload": payload})
    assert response.status_code in (200, 400), response.text


@FUZZ
@given(
    field=st.sampled_from(["run_type", "entity_type", "customer_id", "dry_run", "force"]),
    value=json_values,
)
@example(field="dry_run", value="yes")
@example(field="customer_id", value=NON_FINITE)
def test_mutated_reconcile_bodies_are_answered_without_5xx(
    urls: dict[str, str], customer: str, field: str, value: Any
) -> None:
    body = {"customer_id": customer, "dry_run": True, field: value}
    response = post(urls["reconciler"], body)
    assert response.status_code in (200, 202, 400, 404, 409), response.text
