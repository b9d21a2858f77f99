"""Test harness: a real PostgreSQL for every test module that asks for one.

``TEST_DATABASE_URL`` names a server to use (CI runs the suite against the
machine's PostgreSQL this way); without it the harness starts an embedded one
with ``pgserver``, as a fresh machine has no database. Each test module gets its
own freshly created database, so modules never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pg8000.dbapi
import pytest

from shared.db import Database, set_database
from shared.db.connection import url_connector
from shared.db.migrate import upgrade


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
    conn = admin_connect()
    try:
        conn.autocommit = True
        for name in created:
            try:
                conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except pg8000.dbapi.DatabaseError:
                pass  # best effort: a leftover test database harms nothing
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
    """The module's migrated database, also installed as the process-wide one."""
    db = Database(url_connector(database_url), pool_size=4, description="test")
    set_database(db)
    yield db
    set_database(None)
    db.close()
