"""``hubspot-sync db upgrade`` and ``db status`` as a real process with DATABASE_URL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.db.migrate import available_migrations

pytestmark = pytest.mark.integration

HUBSPOT_SYNC = Path(sys.executable).parent / "hubspot-sync"


def run_cli(
    url: str, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "INSTANCE_CONNECTION_NAME"}
    env["DATABASE_URL"] = url
    env.update(extra_env or {})
    return subprocess.run(
        [str(HUBSPOT_SYNC), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_db_upgrade_twice(create_database: Callable[[str], str]) -> None:
    url = create_database("cli_db")
    names = [f"{m.version:04d}_{m.name}" for m in available_migrations()]

    first = run_cli(url, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert [line.removeprefix("applied ") for line in first.stdout.splitlines()[1:]] == names
    assert "DATABASE_URL" in first.stdout.splitlines()[0]

    second = run_cli(url, "db", "upgrade")
    assert second.returncode == 0, second.stderr
    assert "already up to date" in second.stdout
    assert "applied" not in second.stdout

    status = run_cli(url, "db", "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines() == [f"{n}: applied" for n in names]


def test_db_upgrade_with_a_bad_url_fails_clearly() -> None:
    result = run_cli("mysql://nowhere/db", "db", "upgrade")
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr


def test_db_capture_enable_status_disable(create_database: Callable[[str], str]) -> None:
    url = create_database("cli_capture")
    assert run_cli(url, "db", "upgrade").returncode == 0

    enabled = run_cli(url, "db", "capture", "enable")
    assert enabled.returncode == 0, enabled.stderr
    assert "company_name" in enabled.stdout and "contact.email" in enabled.stdout

    status = run_cli(url, "db", "capture", "status")
    assert status.returncode == 0, status.stderr
    assert "capture: enabled" in status.stdout
    upgraded = run_cli(url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "change capture refreshed" in upgraded.stdout

    # A sweep with nothing to push makes no HubSpot call; it still needs a token set.
    hubspot = {"HUBSPOT_ACCESS_TOKEN": "unused", "HUBSPOT_BASE_URL": "http://127.0.0.1:9"}
    swept = run_cli(url, "outbound", "sweep", extra_env=hubspot)
    assert swept.returncode == 0, swept.stderr
    assert '"captured": 0' in swept.stdout

    disabled = run_cli(url, "db", "capture", "disable")
    assert disabled.returncode == 0, disabled.stderr
    after = run_cli(url, "db", "capture", "status", "--output", "json")
    assert after.returncode == 0, after.stderr
    assert '"enabled": false' in after.stdout
