"""The demo's parts: the seeded book (pure), the stack in-process, ``serve`` as a process,
the consistency check, and how the story runner reports steps."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from localdev.checks import check_consistency
from localdev.seed import DRIFTS, Book, Standing, plan_book, seed_book
from localdev.stack import LocalStack, StackConfig, safe_url
from localdev.story import Scene, Step, StepFailed, run_story
from shared.errors import ConfigurationError
from tests.helpers.environment import as_a_user_sets_it

ROOT = Path(__file__).resolve().parents[2]


# --- the book (pure) -----------------------------------------------------------------


def test_book_is_reproducible_and_fictional() -> None:
    first, again = plan_book(300, seed=3), plan_book(300, seed=3)
    assert [p.row["ban"] for p in first] == [p.row["ban"] for p in again]
    assert [p.standing for p in first] == [p.standing for p in again]
    assert len({p.row["ban"] for p in first}) == 300
    assert len({p.row["company_name"].lower() for p in first}) == 300
    assert all(p.domain.endswith(".example") for p in first)
    assert all(" 555 " in p.row["contact"]["phone"] for p in first)


def test_book_shares_and_drift_per_rule() -> None:
    planned = plan_book(300)
    counts = Counter(p.standing for p in planned)
    assert counts[Standing.DRIFTED] == 36
    assert counts[Standing.BY_NAME] == 21 and counts[Standing.BY_DOMAIN] == 18
    assert counts[Standing.NO_COMPANY] == 15
    assert counts[Standing.IN_SYNC] == 300 - 36 - 21 - 18 - 15
    drifts = Counter(p.drift for p in planned if p.standing is Standing.DRIFTED)
    assert set(drifts) == set(DRIFTS) and max(drifts.values()) - min(drifts.values()) <= 1
    assert all(p.drift is None for p in planned if p.standing is not Standing.DRIFTED)


def test_safe_url_hides_the_password() -> None:
    assert safe_url("postgresql://app:s3cret@db:5432/warp") == "postgresql://app:***@db:5432/warp"
    assert (
        safe_url("postgresql://postgres:@/db?host=/tmp") == "postgresql://postgres:@/db?host=/tmp"
    )


# --- the stack in this process ---------------------------------------------------------


@pytest.fixture(scope="module")
def stack(database_url: str) -> Iterator[LocalStack]:
    """The local stack on this module's database (DATABASE_URL, as a user would set it)."""
    with as_a_user_sets_it(database_url), LocalStack(StackConfig(seed=11)) as running:
        yield running


@pytest.fixture(scope="module")
def book(stack: LocalStack) -> Book:
    return seed_book(stack, 100, seed=11)


@pytest.mark.integration
def test_stack_uses_the_given_database_and_says_so(stack: LocalStack) -> None:
    assert stack.info is not None
    assert stack.info.database_source == "DATABASE_URL" and not stack.info.fresh_database
    assert any("DATABASE_URL" in note for note in stack.info.notes)
    assert stack.info.hubspot_source == "HubSpot emulator"
    assert all(stack.has(name) for name in stack.functions)
    # The functions read the stack's settings: the API accepts the generated token only.
    api = stack.url("sync_api") + "/v1/sync/queue"
    assert httpx.get(api, headers=stack.api_headers()).status_code == 200
    assert httpx.get(api, headers={"Authorization": "Bearer wrong"}).status_code in (401, 403)


@pytest.mark.integration
def test_signed_uri_keeps_a_leading_double_slash_as_deployed(stack: LocalStack) -> None:
    """A delivery to ``//v1//...`` is checked over the target as sent, as under gunicorn."""
    from shared.hubspot.signatures import sign_v3

    base = stack.url("webhook_receiver")
    target = "//v1//webhooks/hubspot/company"
    body = b"[]"

    def deliver(signed_target: str) -> int:
        ts = int(time.time() * 1000)
        signature = sign_v3(stack._emulator_secret, "POST", base + signed_target, body, ts)
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": signature,
            "X-HubSpot-Request-Timestamp": str(ts),
        }
        with httpx.Client() as client:
            request = client.build_request("POST", base + target, content=body, headers=headers)
            assert request.url.raw_path == target.encode()  # sent as is
            return client.send(request).status_code

    assert deliver(target) == 200
    assert (
        deliver("/v1//webhooks/hubspot/company") == 401
    )  # the collapsed form HubSpot never signed


@pytest.mark.integration
def test_check_finds_exactly_the_seeded_drift(stack: LocalStack, book: Book) -> None:
    report = check_consistency(stack.require_engine(), [c.customer_id for c in book.customers])
    drifted = {(c.customer_id, c.drift) for c in book.of(Standing.DRIFTED)}
    assert {(m.customer_id, m.field) for m in report.mismatches} == drifted
    assert report.customers == len(book.linked()) and report.records == 2 * report.customers
    assert not report.ok and not report.missing_records


@pytest.mark.integration
def test_a_second_book_is_refused_before_anything_is_written(stack: LocalStack, book: Book) -> None:
    engine = stack.require_engine()
    with engine.database.transaction() as tx:
        before = tx.fetch_value("SELECT count(*) FROM accounts.customers")
    with pytest.raises(ConfigurationError, match="clash"):
        seed_book(stack, 100, seed=11)
    with engine.database.transaction() as tx:
        assert tx.fetch_value("SELECT count(*) FROM accounts.customers") == before


@pytest.mark.integration
def test_check_sees_a_value_changed_on_one_side(stack: LocalStack, book: Book) -> None:
    engine = stack.require_engine()
    customer = book.of(Standing.IN_SYNC)[0]
    assert check_consistency(engine, [customer.customer_id]).ok
    assert stack.emulator is not None and customer.company_id
    with _webhooks_dropped(stack):  # WARP must not hear of it: the sides now differ
        stack.emulator.ui_change("companies", customer.company_id, {"warp_credit_limit": "1"})
    report = check_consistency(engine, [customer.customer_id])
    assert [(m.field, m.hubspot) for m in report.mismatches] == [("credit_limit", "1")]


@contextmanager
def _webhooks_dropped(stack: LocalStack) -> Iterator[None]:
    """Changes made inside send no webhook (queued ones are dropped on the way out)."""
    assert stack.emulator is not None
    webhooks = stack.emulator.webhooks
    webhooks.pause()
    try:
        yield
    finally:
        webhooks.clear()
        webhooks.resume()


# --- the story runner ---------------------------------------------------------------------


@pytest.mark.integration
def test_runner_reports_passed_failed_crashed_and_skipped(stack: LocalStack, book: Book) -> None:
    def passes(scene: Scene) -> str:
        scene.figures["n"] = 1
        return "fine"

    def fails(scene: Scene) -> str:
        raise StepFailed("the outcome did not show")

    def crashes(scene: Scene) -> str:
        raise KeyError("boom")

    console = Console(record=True, width=120)
    with httpx.Client() as http:
        results = run_story(
            Scene(stack, book, console, http),
            [
                Step("passes", passes),
                Step("fails", fails),
                Step("crashes", crashes),
                Step("needs a missing function", passes, needs=("no_such_function",)),
            ],
        )
    assert [r.status for r in results] == ["passed", "failed", "failed", "skipped"]
    assert results[0].figures == {"n": 1}
    assert "KeyError" in results[2].detail
    assert "no_such_function" in results[3].detail
    assert "the outcome did not show" in console.export_text()


# --- serve, as a process ----------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_serve_runs_until_ctrl_c(create_database: Any) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HUBSPOT_ACCESS_TOKEN", "TASKS_QUEUE")}
    env |= {
        "DATABASE_URL": create_database("serve"),
        "COLUMNS": "300",
        "PYTHONPATH": str(ROOT),
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("hubspot-sync")), "serve", "--customers", "20"],
        env=env,
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "ready: Ctrl-C stops everything" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(90), "".join(lines)
        text = "".join(lines)
        assert "DATABASE_URL" in text
        page = re.search(r"operator console: (\S+/v1/sync/console)", text)
        assert page, text
        assert httpx.get(page.group(1), timeout=10).headers["Content-Security-Policy"]
        status = re.search(r'curl -s -H "(Authorization: Bearer [^"]+)" (\S+/status)', text)
        assert status, text
        name, value = status.group(1).split(": ", 1)
        answer = httpx.get(status.group(2), headers={name: value}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["links"]["hubspot_company_id"]
        edit = re.search(r"-d '(\{\"properties\"[^']+)' (\S+/_emulator/ui/companies/\d+)", text)
        assert edit, text
        company = httpx.post(edit.group(2), content=edit.group(1), timeout=10)
        assert company.status_code == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the signed webhook reaches WARP
            fields = httpx.get(status.group(2), headers={name: value}, timeout=10).json()
            limit = [f for f in fields["fields"] if f["field"] == "credit_limit"]
            if limit[0].get("warp_value") is not None and Decimal(
                str(limit[0]["warp_value"])
            ) == Decimal(12345):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the UI edit did not reach WARP: {limit}")
        _check_what_serve_prints(text, env)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
        reader.join(timeout=5)
    assert code == 0, "".join(lines)
    assert "stopped" in "".join(lines[-3:])


def _check_what_serve_prints(text: str, env: dict[str, str]) -> None:
    """Real start-up time, the seeding line, the OpenAPI URL, and an export block that works."""
    up = re.search(r"up in (\d+\.\d) s", text)
    assert up and float(up.group(1)) > 0, text
    assert re.search(r"seeded 20 customers in \d+\.\d s", text), text
    document = re.search(r'curl -s -H "Authorization: ([^"]+)" (\S+/v1/sync/openapi\.json)', text)
    assert document, text
    answer = httpx.get(document.group(2), headers={"Authorization": document.group(1)}, timeout=10)
    assert answer.json()["openapi"].startswith("3.")
    exported = dict(re.findall(r"^export (\w+)=(\S+)$", text, re.M))
    assert {"HUBSPOT_ACCESS_TOKEN", "HUBSPOT_BASE_URL", "SYNC_API_TOKEN"} <= set(exported)
    # The CLI in "another shell": the user's DATABASE_URL plus the lines serve printed.
    cli = subprocess.run(
        [str(Path(sys.executable).with_name("hubspot-sync")), "reconcile", "--dry-run", "--force"],
        env={**env, **exported},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "FULL COMPLETED (dry run: nothing written)" in cli.stdout
