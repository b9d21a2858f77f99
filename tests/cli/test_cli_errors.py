"""Expected failures of ``hubspot-sync``, run as a real process: one line, no traceback.

Each names the setting, shows its value with secrets masked, says the cause and the
fix; ``--debug`` shows the traceback as well. Real PostgreSQL, the real emulator.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.db import Database
from shared.db.repositories import customers
from tests.conftest import TEST_ACCESS_TOKEN
from tests.helpers.functions import free_port

pytestmark = pytest.mark.integration

HUBSPOT_SYNC = Path(sys.executable).parent / "hubspot-sync"
SECRET = "s3cret-password-xyz"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "INSTANCE_CONNECTION_NAME", "HUBSPOT_"))
    }
    return subprocess.run(
        [str(HUBSPOT_SYNC), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line an expected failure prints (beside "database: ..."), checked as such."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith("database: ")]
    assert len(said) == 1, result.stderr
    assert "Traceback" not in result.stderr and SECRET not in result.stderr + result.stdout
    assert "Fix:" in said[0]
    return said[0]


def server_url(database_url: str, *, user: str = "postgres", db: str | None = None) -> str:
    """The test server's URL with another user (and a password) or database."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(database_url)
    # A Unix-socket URL (the embedded server: ``?host=/dir``) has no host in its netloc.
    address = f"{parts.hostname}:{parts.port or 5432}" if parts.hostname else ""
    netloc = f"{user}:{SECRET}@{address}"
    path = f"/{db}" if db else parts.path
    return urlunsplit(parts._replace(netloc=netloc, path=path))


def test_database_nobody_listens_on(database_url: str) -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{free_port()}/warp"
    line = error_line(run({"DATABASE_URL": url}, "db", "upgrade"))
    assert line.startswith("error: DATABASE_URL=postgresql://postgres:***@127.0.0.1:")
    assert "connection refused" in line
    debug = run({"DATABASE_URL": url}, "--debug", "db", "upgrade")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_database_missing_and_user_refused(database_url: str) -> None:
    missing = error_line(
        run({"DATABASE_URL": server_url(database_url, db="no_such_db")}, "db", "upgrade")
    )
    assert "no such database" in missing and "/no_such_db" in missing
    refused = error_line(
        run({"DATABASE_URL": server_url(database_url, user="nobody")}, "db", "upgrade")
    )
    assert "refused the user or password" in refused and "nobody:***@" in refused


def test_refused_value_is_shown_masked() -> None:
    result = run({"DATABASE_URL": f"mysql://root:{SECRET}@db/warp"}, "db", "upgrade")
    assert result.returncode == 2 and SECRET not in result.stderr
    assert "DATABASE_URL (was 'mysql://root:***@db/warp'): must be a postgresql:// URL" in (
        result.stderr
    )


def test_no_database_url_never_starts_an_empty_embedded_one(tmp_path: Path) -> None:
    folder = tmp_path / "pgdata"
    line = error_line(run({"EMBEDDED_DB_DIR": str(folder)}, "reconcile"))
    assert "DATABASE_URL is not set" in line and str(folder) in line
    assert not folder.exists()


def test_database_without_the_sync_tables(create_database: Callable[[str], str]) -> None:
    url = create_database("cli_errors_empty")
    result = run({"DATABASE_URL": url}, "reconcile")
    line = error_line(result)
    assert "none of the sync tables" in line and "hubspot-sync db upgrade" in line
    assert "relation" not in result.stderr


def _linked(database: Database) -> str:
    with database.transaction() as tx:
        row = customers.insert(
            tx,
            {
                "ban": f"B-{uuid.uuid4().hex[:8]}",
                "company_name": "Down Co",
                "customer_type": "PREPAID",
                "status": "ACTIVE",
                "external_ids": {"hubspot_company_id": "999000111"},
            },
        )
    return str(row["id"])


def _last_run(database: Database) -> dict[str, Any]:
    with database.transaction() as tx:
        row = tx.fetch_one(
            "SELECT * FROM accounts.hubspot_reconciliation_runs ORDER BY started_at DESC LIMIT 1"
        )
    assert row is not None
    return dict(row)


def test_reconcile_with_hubspot_unreachable_stops_with_one_line(
    database: Database, database_url: str
) -> None:
    _linked(database)
    hubspot = f"http://127.0.0.1:{free_port()}"
    env = {
        "DATABASE_URL": database_url,
        "HUBSPOT_ACCESS_TOKEN": "x" * 20,
        "HUBSPOT_BASE_URL": hubspot,
    }
    result = run(env, "reconcile", "--force")
    line = error_line(result)
    assert f"HUBSPOT_BASE_URL={hubspot}: HubSpot cannot be reached" in line
    assert "FAILED" in line and "no drift found" not in result.stdout + result.stderr
    assert "retrying" not in result.stderr  # the log's warnings only with --debug
    run_row = _last_run(database)
    assert run_row["status"] == "FAILED" and str(run_row["id"]) in line


def test_reconcile_with_a_refused_token(
    database: Database, database_url: str, emulator: Any
) -> None:
    _linked(database)
    token = f"pat-na1-{SECRET}"
    env = {
        "DATABASE_URL": database_url,
        "HUBSPOT_ACCESS_TOKEN": token,
        "HUBSPOT_BASE_URL": emulator.url,
    }
    assert token != TEST_ACCESS_TOKEN
    line = error_line(run(env, "reconcile", "--force"))
    assert "HUBSPOT_ACCESS_TOKEN=pat-***yz" in line and "HubSpot refused the token" in line
    assert _last_run(database)["status"] == "FAILED"


# --- the functions check their settings at start ---------------------------------------


def test_deployed_webhook_receiver_without_public_url_says_so_at_start(database_url: str) -> None:
    import json

    import httpx

    from tests.helpers.functions import FunctionProcess

    env = {
        "K_SERVICE": "hubspot-webhook-receiver",  # as on Cloud Run
        "DATABASE_URL": database_url,
        "HUBSPOT_CLIENT_SECRET": SECRET,
        "WEBHOOK_PUBLIC_URL": "",
    }
    with FunctionProcess("webhook_receiver", env) as fn:
        answer = httpx.post(f"{fn.url}/v1/webhooks/hubspot", json=[], timeout=30)
        fn.close()
        output = fn.output()
    assert answer.status_code == 503 and "WEBHOOK_PUBLIC_URL" in answer.json()["error"]
    said = [json.loads(line) for line in output.splitlines() if "cannot work" in line]
    assert len({entry["message"] for entry in said}) == 1, output
    (message,) = {entry["message"] for entry in said}
    assert message.startswith("hubspot-webhook-receiver cannot work: WEBHOOK_PUBLIC_URL (not set)")
    assert "Fix:" in message and said[0]["severity"] == "CRITICAL"
    assert "Traceback" not in output and SECRET not in output
