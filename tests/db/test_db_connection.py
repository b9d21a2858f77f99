"""The connection pool against a real server: parameters, rollback, reconnects."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime

import pg8000.dbapi
import pytest

from shared.db import Database
from shared.db.connection import BrokenSession, url_connector
from shared.errors import DatabaseUnavailableError

pytestmark = pytest.mark.integration


@pytest.fixture
def pool(database_url: str) -> Iterator[Database]:
    """A one-connection pool, so the next transaction reuses the same connection."""
    db = Database(url_connector(database_url), pool_size=1, description="test")
    yield db
    db.close()


def test_named_parameters_with_casts_and_repeats(pool: Database) -> None:
    with pool.transaction() as tx:
        row = tx.fetch_one(
            "SELECT CAST(:doc AS jsonb) ->> 'k' AS k, :n::int + :n::int AS twice, "
            "'literal :not_a_param' AS text",
            {"doc": '{"k": "v"}', "n": 21},
        )
    assert row == {"k": "v", "twice": 42, "text": "literal :not_a_param"}


def test_connection_is_reused(pool: Database) -> None:
    with pool.transaction() as tx:
        first = tx.fetch_value("SELECT pg_backend_pid()")
    with pool.transaction() as tx:
        assert tx.fetch_value("SELECT pg_backend_pid()") == first


def test_reconnects_after_the_server_ends_the_session(pool: Database, database: Database) -> None:
    with pool.transaction() as tx:
        doomed = tx.fetch_value("SELECT pg_backend_pid()")
    with database.transaction() as admin:
        assert admin.fetch_value("SELECT pg_terminate_backend(:pid)", {"pid": doomed}) is True

    # The pooled connection is dead: the transaction that meets it fails as retryable...
    with pytest.raises(DatabaseUnavailableError) as caught, pool.transaction() as tx:
        tx.fetch_value("SELECT 1")
    assert caught.value.retryable

    # ...and the next one gets a new connection.
    with pool.transaction() as tx:
        assert tx.fetch_value("SELECT pg_backend_pid()") != doomed


def test_rollback_on_error_leaves_nothing_and_keeps_the_connection(pool: Database) -> None:
    with pool.transaction() as tx:
        pid = tx.fetch_value("SELECT pg_backend_pid()")
    with pytest.raises(RuntimeError, match="boom"), pool.transaction() as tx:
        tx.execute(
            "INSERT INTO accounts.customers (ban, company_name, customer_type) "
            "VALUES ('RB-1', 'Rolled Back', 'PREPAID')"
        )
        raise RuntimeError("boom")
    with pool.transaction() as tx:
        assert tx.fetch_value("SELECT count(*) FROM accounts.customers WHERE ban = 'RB-1'") == 0
        # The application's own error says nothing about the connection: it stays pooled.
        assert tx.fetch_value("SELECT pg_backend_pid()") == pid


# An aware datetime whose UTC form is before year 1: pg8000 1.31 fails to convert it
# after it has sent Parse/Describe/Sync, leaving the server's replies unread (issue 21).
POISON = datetime.fromisoformat("0001-01-01T00:00:00+14:00")


def test_a_driver_failure_mid_statement_discards_the_connection(pool: Database) -> None:
    with pool.transaction() as tx:
        pid = tx.fetch_value("SELECT pg_backend_pid()")
    with pytest.raises(OverflowError), pool.transaction() as tx:
        tx.fetch_value("SELECT CAST(:t AS timestamptz)", {"t": POISON})
    # Pooled again, this connection answered each statement with the previous one's
    # result. It is gone; every later statement reads its own answer.
    for n in range(5):
        with pool.transaction() as tx:
            assert tx.fetch_one("SELECT CAST(:n AS int) AS n", {"n": n}) == {"n": n}
            assert tx.fetch_value("SELECT pg_backend_pid()") != pid


def test_a_session_whose_driver_failed_refuses_further_statements(pool: Database) -> None:
    # Code that catches the driver's error must not go on reading someone else's answer.
    with pytest.raises(BrokenSession), pool.transaction() as tx:
        with contextlib.suppress(OverflowError):
            tx.execute("SELECT CAST(:t AS timestamptz)", {"t": POISON})
        tx.fetch_value("SELECT 1")
    with pool.transaction() as tx:
        assert tx.fetch_value("SELECT 2") == 2


def test_sql_error_is_not_a_disconnect_and_the_connection_survives(pool: Database) -> None:
    with pool.transaction() as tx:
        pid = tx.fetch_value("SELECT pg_backend_pid()")
    with pytest.raises(pg8000.dbapi.DatabaseError) as caught, pool.transaction() as tx:
        tx.execute("SELECT * FROM accounts.no_such_table")
    assert not isinstance(caught.value, DatabaseUnavailableError)
    with pool.transaction() as tx:
        assert tx.fetch_value("SELECT pg_backend_pid()") == pid


def test_unreachable_server_is_retryable() -> None:
    db = Database(url_connector("postgresql://postgres@127.0.0.1:1/none", timeout=2))
    with pytest.raises(DatabaseUnavailableError) as caught, db.transaction():
        pass
    assert caught.value.retryable


def test_cloud_sql_path_uses_the_connector_lazily_with_lazy_refresh(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    # Cloud SQL cannot run here: the connector class is replaced by one that records
    # what it was given and hands back a real connection to the test database.
    import google.cloud.sql.connector as connector_module

    from shared.config.settings import load_settings
    from shared.db import connection

    calls: dict[str, object] = {}

    class RecordingConnector:
        def __init__(self, **kwargs: object) -> None:
            calls["init"] = kwargs

        def connect(self, instance: str, driver: str, **kwargs: object) -> object:
            calls["connect"] = (instance, driver, kwargs)
            return url_connector(database_url)()

    monkeypatch.setattr(connector_module, "Connector", RecordingConnector)
    monkeypatch.setattr(connection, "_cloudsql_connector", None)
    settings = load_settings(
        instance_connection_name="proj:us-central1:warp",
        db_user="sync@proj.iam",
        db_name="warp",
        db_iam_auth=True,
    )
    db = connection.database_from_settings(settings)
    assert db.description == "Cloud SQL proj:us-central1:warp"
    assert "connect" not in calls  # nothing happens before the first transaction
    with db.transaction() as tx:
        assert tx.fetch_value("SELECT 1") == 1
    db.close()
    assert calls["init"] == {"refresh_strategy": connector_module.RefreshStrategy.LAZY}
    instance, driver, kwargs = calls["connect"]  # type: ignore[misc]
    assert (instance, driver) == ("proj:us-central1:warp", "pg8000")
    assert kwargs == {
        "user": "sync@proj.iam",
        "db": "warp",
        "ip_type": "public",
        "enable_iam_auth": True,
    }


def test_importing_the_database_layer_does_not_import_the_connector() -> None:
    import subprocess
    import sys

    code = (
        "import sys, shared.db.connection; "
        "assert 'google.cloud.sql.connector' not in sys.modules, 'connector imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tcp_connections_send_without_nagle_delay(database_url: str) -> None:
    import socket as sockets

    connection = url_connector(database_url)()
    try:
        sock = connection._usock  # type: ignore[attr-defined]
        if sock.family == sockets.AF_UNIX:
            pytest.skip("this server is reached over a Unix socket (embedded); CI's TCP run checks")
        assert sock.getsockopt(sockets.IPPROTO_TCP, sockets.TCP_NODELAY) == 1
    finally:
        connection.close()


def test_a_session_opened_inside_another_does_not_wait_for_a_slot(pool: Database) -> None:
    """With every slot held by threads wanting a second one, waiting never ended."""
    outcome: list[object] = []

    def nested() -> None:
        with pool.transaction() as outer, pool.transaction() as inner:
            outcome.append(
                (
                    outer.fetch_value("SELECT pg_backend_pid()"),
                    inner.fetch_value("SELECT pg_backend_pid()"),
                )
            )

    worker = threading.Thread(target=nested, daemon=True)
    worker.start()
    worker.join(timeout=20)  # a bound for a deadlock, not a timing assumption
    assert outcome and outcome[0][0] != outcome[0][1]  # two connections, no wait
    with pool.transaction() as tx:  # the slot was given back; one connection stays idle
        assert tx.fetch_value("SELECT 1") == 1
