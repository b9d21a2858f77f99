"""``hubspot-sync hubspot setup-properties`` as a real process against the emulator: the
scopes each token needs, and a clear refusal when a token lacks one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from localdev.emulator import Emulator
from localdev.emulator.scopes import ALL_SCOPES, READ_SCOPES
from shared.db import Database
from shared.hubspot.scopes import WRITE_SCOPES

pytestmark = pytest.mark.integration

HUBSPOT_SYNC = Path(sys.executable).parent / "hubspot-sync"
WRITE_TOKEN = "write-only-token"
READ_TOKEN = "read-only-token"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(access_token="unused-token", read_access_token=READ_TOKEN) as emulator:
        emulator.grant(WRITE_TOKEN, ALL_SCOPES - READ_SCOPES)
        yield emulator


def setup_properties(
    database_url: str, emu: Emulator, **tokens: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "INSTANCE_"))}
    env.update(DATABASE_URL=database_url, HUBSPOT_BASE_URL=emu.url, **tokens)
    return subprocess.run(
        [str(HUBSPOT_SYNC), "hubspot", "setup-properties"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_setup_properties_lists_each_tokens_scopes_and_works_with_a_write_only_token(
    database: Database, database_url: str, emu: Emulator
) -> None:
    done = setup_properties(
        database_url,
        emu,
        HUBSPOT_ACCESS_TOKEN=WRITE_TOKEN,
        HUBSPOT_READ_ACCESS_TOKEN=READ_TOKEN,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [
        "scopes   HUBSPOT_ACCESS_TOKEN: " + " ".join(WRITE_SCOPES),
        "scopes   HUBSPOT_READ_ACCESS_TOKEN: crm.objects.companies.read"
        " crm.objects.contacts.read crm.schemas.companies.read",
    ]
    assert "created  warp_ban" in lines


def test_setup_properties_with_a_read_only_token_says_a_scope_is_missing(
    database: Database, database_url: str, emu: Emulator
) -> None:
    refused = setup_properties(database_url, emu, HUBSPOT_ACCESS_TOKEN=READ_TOKEN)
    assert refused.returncode == 1
    assert refused.stdout.splitlines()[0].startswith("scopes   HUBSPOT_ACCESS_TOKEN: ")
    assert "crm.objects.companies.write" in refused.stdout
    assert "status=403 category=MISSING_SCOPES" in refused.stderr
    assert "grant each token the scopes listed above" in refused.stderr
    assert READ_TOKEN not in refused.stderr
    assert emu.properties.get("companies", "warp_ban") is None
