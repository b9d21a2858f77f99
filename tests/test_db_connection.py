"""The connection pool against a real server: parameters, rollback, reconnects."""

from __future__ import annotations

from collections.abc import Iterator

import pg8000.dbapi
import pytest

from shared.db import Database
from shared.db.connection import url_connector
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


def test_rollback_on_error_leaves_nothing(pool: Database) -> None:
    with pytest.raises(RuntimeError, match="boom"), pool.transaction() as tx:
        tx.execute(
            "INSERT INTO accounts.customers (ban, company_name, customer_type) "
            "VALUES ('RB-1', 'Rolled Back', 'PREPAID')"
        )
        raise RuntimeError("boom")
    with pool.transaction() as tx:
        assert tx.fetch_value("SELECT count(*) FROM accounts.customers WHERE ban = 'RB-1'") == 0


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
