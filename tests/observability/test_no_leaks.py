"""No secret, token or seeded personal value in any log line; sealed values for API callers only.

The whole demo story runs in this process on the local stack (every function over
real HTTP, the emulator's signed webhooks, outbound bursts, reconciliation, the
API), with an AES key configured so the sync log seals. Every line is collected:
the functions' JSON log file, a root handler (whatever logs outside the project's
namespace), the demo console, and the process's stdout/stderr. Then every line is
searched for the generated secrets and for each seeded e-mail, phone and contact
name.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from rich.console import Console

from localdev.seed import Book, plan_book, seed_book
from localdev.stack import LocalStack, StackConfig
from localdev.story import Scene, StepResult, build_story, run_story
from shared.observability.logging import build_entry
from shared.sealing import is_sealed
from tests.helpers.environment import as_a_user_sets_it

pytestmark = pytest.mark.integration

SEED = 5


class _Lines(logging.Handler):
    """Every record that reaches the root logger, as the JSON line it would become."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.dumps(build_entry(record), default=str))


@dataclass
class Demo:
    stack: LocalStack
    book: Book
    results: list[StepResult]
    lines: list[str]
    secrets: dict[str, str]


@pytest.fixture(scope="module")
def demo(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    log_file = tmp_path_factory.mktemp("demo") / "demo.log"
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    with as_a_user_sets_it(database_url, ENCRYPTION_KEY=key):
        root = _Lines()
        logging.getLogger().addHandler(root)
        console_text = io.StringIO()
        console = Console(file=console_text, width=200, highlight=False)
        try:
            with LocalStack(StackConfig(log_file=log_file, seed=SEED)) as stack:
                book = seed_book(stack, 100, seed=SEED)
                with httpx.Client(timeout=30) as http:
                    results = run_story(Scene(stack, book, console, http), build_story(burst=60))
                settings = stack.settings
                found = {
                    "SYNC_API_TOKEN": stack.sync_api_token,
                    "HUBSPOT_ACCESS_TOKEN": settings.hubspot_access_token.get_secret_value(),
                    "HUBSPOT_CLIENT_SECRET": settings.hubspot_client_secret.get_secret_value(),
                    "ENCRYPTION_KEY": key,
                }
                lines = [
                    *log_file.read_text().splitlines(),
                    *root.lines,
                    *console_text.getvalue().splitlines(),
                ]
                yield Demo(stack, book, results, lines, found)
        finally:
            logging.getLogger().removeHandler(root)


def personal_values(book: Book) -> dict[str, str]:
    """Each seeded e-mail, phone and contact name, labelled for the failure message."""
    planned = plan_book(len(book.customers), seed=SEED)  # the rows seed_book wrote
    assert [p.row["ban"] for p in planned] == [c.ban for c in book.customers]
    values: dict[str, str] = {}
    for plan in planned:
        contact = plan.row["contact"]
        for kind in ("email", "phone", "name"):
            values[str(contact[kind])] = f"{kind} of {plan.row['ban']}"
    return values


def test_the_story_ran_and_logged(demo: Demo) -> None:
    assert demo.results and all(r.status != "failed" for r in demo.results), [
        (r.title, r.status) for r in demo.results
    ]
    assert len(demo.lines) > 200  # every flow logged something worth searching


def test_no_secret_or_token_in_any_log_line(demo: Demo, capfd: pytest.CaptureFixture[str]) -> None:
    captured = capfd.readouterr()
    lines = demo.lines + (captured.out + captured.err).splitlines()
    for name, value in demo.secrets.items():
        assert value and len(value) >= 16
        leaked = [line for line in lines if value in line]
        assert not leaked, f"{name} appears in {len(leaked)} line(s): {leaked[0][:300]}"


def test_no_seeded_personal_value_in_any_log_line(demo: Demo) -> None:
    values = personal_values(demo.book)
    assert len(values) >= 250
    leaks = [
        (label, line) for line in demo.lines for value, label in values.items() if value in line
    ]
    assert not leaks, f"{len(leaks)} leak(s), first: {leaks[0][0]} in {leaks[0][1][:300]}"


# --- sealed values in the sync log -------------------------------------------------------


def _sealed_logs(stack: LocalStack) -> list[dict[str, Any]]:
    engine = stack.require_engine()
    with engine.database.transaction() as tx:
        return tx.fetch(
            "SELECT entity_id, field_changes FROM accounts.hubspot_sync_log "
            "WHERE field_changes::text LIKE '%\"sealed\"%' ORDER BY started_at DESC LIMIT 20"
        )


def test_sync_log_holds_sensitive_values_sealed(demo: Demo) -> None:
    rows = _sealed_logs(demo.stack)
    assert rows, "the story changed no sensitive field"
    values = personal_values(demo.book)
    for row in rows:
        text = json.dumps(row["field_changes"])
        assert not [v for v in values if v in text], text
        for name, change in row["field_changes"].items():
            if name in ("contact", "contact_phone", "contact_email", "credit_limit"):
                assert all(is_sealed(change[k]) for k in ("old", "new") if change.get(k)), change


def test_logs_route_opens_sealed_values_for_authorised_callers_only(demo: Demo) -> None:
    stack = demo.stack
    customer_id = str(_sealed_logs(stack)[0]["entity_id"])
    url = f"{stack.url('sync_api')}/v1/sync/customers/{customer_id}/logs"
    allowed = httpx.get(url, headers=stack.api_headers(), timeout=30)
    assert allowed.status_code == 200, allowed.text
    opened = [
        change
        for item in allowed.json()["items"]
        for change in (item.get("field_changes") or {}).values()
        if isinstance(change, dict)
    ]
    assert opened and not any(is_sealed(v) for c in opened for v in c.values())
    assert "sealed" not in allowed.text and "withheld" not in allowed.text
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": "Basic eDp5"}):
        refused = httpx.get(url, headers=headers, timeout=30)
        assert refused.status_code in (401, 403), refused.text
        assert set(refused.json()) <= {"error", "field", "retryable"}
        assert "field_changes" not in refused.text
