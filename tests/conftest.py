"""Test harness: a real PostgreSQL for every test module that asks for one.

``TEST_DATABASE_URL`` names a server to use (CI runs the suite against the
machine's PostgreSQL this way); without it the harness starts an embedded one
with ``pgserver``, as a fresh machine has no database. Each test module gets its
own freshly created database, so modules never see each other's rows.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pg8000.dbapi
import pytest
from hypothesis import settings

from shared.db import Database
from shared.db.connection import url_connector
from shared.db.migrate import upgrade

# Property tests assert behaviour, not speed (benchmarks measure speed). Hypothesis's
# default 200 ms deadline per example turns a busy 2-core machine into a failure.
settings.register_profile("behaviour", deadline=None)
settings.load_profile("behaviour")


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a PostgreSQL server the tests may create databases on."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgserver"), cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


def with_database_name(url: str, name: str) -> str:
    """The same server URL pointing at database ``name``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def create_database(postgres_server_url: str) -> Iterator[Callable[[str], str]]:
    """Factory: create an empty database named after ``label``; return its URL."""
    created: list[str] = []
    admin_connect = url_connector(postgres_server_url)

    def create(label: str) -> str:
        safe = "".join(c if c.isalnum() else "_" for c in label.lower())[:40]
        name = f"t_{safe}_{uuid.uuid4().hex[:8]}"
        conn = admin_connect()
        try:
            conn.autocommit = True
            conn.cursor().execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        created.append(name)
        return with_database_name(postgres_server_url, name)

    yield create
    for name in created:
        # Best effort, one connection per drop: a leftover test database harms
        # nothing, and a server that dropped one connection must not stop the rest.
        with contextlib.suppress(pg8000.dbapi.DatabaseError, pg8000.dbapi.InterfaceError, OSError):
            conn = admin_connect()
            try:
                conn.autocommit = True
                conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                conn.close()


@pytest.fixture(scope="module")
def database_url(request: pytest.FixtureRequest, create_database: Callable[[str], str]) -> str:
    """A fresh, fully migrated database for this test module."""
    url = create_database(request.module.__name__.rsplit(".", 1)[-1])
    database = Database(url_connector(url), pool_size=2, description="test")
    upgrade(database)
    database.close()
    return url


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    """The module's migrated database."""
    db = Database(url_connector(database_url), pool_size=4, description="test")
    yield db
    db.close()


# --- the HubSpot emulator and the engine -------------------------------------------------

TEST_APP_ID = 424242
TEST_CLIENT_SECRET = "test-client-secret-0000"
TEST_ACCESS_TOKEN = "emulator-token"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    """A HubSpot emulator on a free port (the ``engine`` fixture defines WARP's properties).

    Its webhooks go nowhere until a test sets ``emulator.webhooks`` up; the rate
    limit is high so tests about other things never meet it.
    """
    from localdev.emulator import Emulator

    emu = Emulator(
        rate_limit=10_000,
        app_id=TEST_APP_ID,
        client_secret=TEST_CLIENT_SECRET,
        access_token=TEST_ACCESS_TOKEN,
        seed=7,
        webhook_time_scale=1e-4,  # HubSpot's 24 hours of webhook retries in about 9 s
    ).start()
    yield emu
    emu.stop()


def engine_settings(database_url: str, hubspot_url: str, **overrides: Any) -> Any:
    """Settings for an engine on this database and HubSpot (the emulator)."""
    from shared.config.settings import load_settings

    values: dict[str, Any] = {
        "database_url": database_url,
        "hubspot_base_url": hubspot_url,
        "hubspot_access_token": TEST_ACCESS_TOKEN,
        "hubspot_client_secret": TEST_CLIENT_SECRET,
        "hubspot_app_id": TEST_APP_ID,
        "hubspot_rate_limit": 5_000,
        "retry_base_seconds": 0.01,
        "retry_cap_seconds": 0.05,
        "coalesce_delay_seconds": 0.05,
        # Fuzz tests send thousands of bad signatures from one address; the webhook's
        # rate limit has its own tests (tests/inbound/test_webhook_flood.py).
        "webhook_source_failure_limit": 1_000_000,
    }
    values.update(overrides)
    return load_settings(**values)


@contextlib.contextmanager
def serving(engine: Any) -> Iterator[Any]:
    """``engine`` as the process-wide one while the block runs, the previous one after.

    The process-wide engine is the adapters' alone: only the function adapters served
    in-process and the CLI invoked in-process use it. Everything else is handed the
    engine it works with.
    """
    from shared.engine.edge import installed_engine, set_engine

    previous = installed_engine()
    set_engine(engine)
    try:
        yield engine
    finally:
        set_engine(previous)


@pytest.fixture(scope="module")
def engine(database: Database, database_url: str, emulator: Any) -> Iterator[Any]:
    """An engine wired to the module's database, the emulator and an in-process task runner.

    Also the process-wide engine for the module (:func:`serving`), so the function
    adapters served in-process and the CLI use the same parts.
    """
    from shared.engine import Engine
    from shared.hubspot import HubSpotClient
    from shared.hubspot.properties import setup_properties
    from shared.tasks import InProcessDispatcher

    settings = engine_settings(database_url, emulator.url)
    client = HubSpotClient.from_settings(settings, database)
    setup_properties(client)  # WARP's custom company properties, through the real API
    dispatcher = InProcessDispatcher(base=0.01, cap=0.05, max_attempts=settings.retry_max_attempts)
    built = Engine(settings=settings, database=database, hubspot=client, dispatcher=dispatcher)
    with serving(built):
        yield built
    dispatcher.stop()
    client.close()
