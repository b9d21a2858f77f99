"""schemathesis against the served OpenAPI document: no 5xx, every answer matches its schema.

The document is fetched from the running function (``/v1/sync/openapi.json``), so
what is checked is what clients get. One test per documented operation draws the
schema's positive cases (ids are random UUIDs, so mostly 404s, beside the real
paths: bodies, queries, metrics, reconcile) and runs schemathesis' checks on every
answer. (``schemathesis.pytest.from_fixture`` does not run under pytest 9, so the
cases come from each operation's hypothesis strategy.)
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from shared.api.routes import ROUTES
from tests.api.test_api import AUTH, api, issuer, served  # noqa: F401  (fixtures: the served API)

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 20


@pytest.fixture(scope="module")
def api_schema(api: str) -> Any:  # noqa: F811
    """The OpenAPI document as the function serves it, set up to call that function."""
    loaded = schemathesis.openapi.from_url(f"{api}/v1/sync/openapi.json", headers=AUTH)
    loaded.config.update(base_url=api, headers=AUTH)
    loaded.config.generation.update(modes=[GenerationMode.POSITIVE])
    return loaded


@pytest.mark.parametrize("operation_id", sorted(r.operation_id for r in ROUTES))
def test_every_answer_is_documented(api_schema: Any, operation_id: str) -> None:
    operation = api_schema.find_operation_by_id(operation_id)

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        case.call_and_validate(headers=AUTH)

    check()
