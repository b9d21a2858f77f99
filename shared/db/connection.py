"""PostgreSQL connections with pg8000: three ways to connect, one small pool.

The way is chosen by settings (``Settings.database_mode``):

- ``url``: ``DATABASE_URL`` (TCP, or a Unix socket folder given as ``?host=/dir``);
- ``cloudsql``: cloud-sql-python-connector, imported only on this path because it is
  the heaviest import in the package, with lazy certificate refresh (no background
  work while the CPU is throttled between requests), password or IAM auth;
- ``embedded``: a ``pgserver`` PostgreSQL with its data in a per-user cache folder,
  for the demo and the tests on a machine with no database.

Connections are kept per process and reused across invocations. Only a
connection whose every failure was a clean SQL error from the server goes back to
the pool: one that failed at the network level, or whose driver raised anything
else mid-statement, is discarded and the next transaction opens a new one. Cloud
Functions serve one request per instance, so the pool rarely holds more than one
connection there; locally functions-framework runs threads.

``pool_size`` bounds a process's outermost sessions. A session a thread opens inside
one it already holds (the mapping configuration loaded while an inbound apply holds
its transaction) takes a connection without waiting for a slot: when every slot is
held by a thread waiting for a second one, waiting would last forever (found by
tests/inbound/test_webhook_delivery.py: 10 deliveries at once against ``DB_POOL_SIZE=4``
hung the receiver). Nesting is one level deep, so a process opens at most twice
``pool_size`` connections, and keeps at most ``pool_size`` idle.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.converters
import pg8000.dbapi
import pg8000.exceptions

from shared.config.settings import Settings
from shared.diagnose import embedded_data_dir, mask_url
from shared.errors import ConfigurationError, DatabaseUnavailableError

log = logging.getLogger("warp_hubspot_sync.db")

# pg8000's cursors read the module-level paramstyle on every execute and ignore a
# cursor's own attribute, so named parameters (``:customer_id``) are set here, once
# for the process. Nothing else in the package talks to pg8000 directly.
pg8000.dbapi.paramstyle = "named"

Row = dict[str, Any]
Connector = Callable[[], pg8000.dbapi.Connection]

# Errors that mean the connection itself is gone, as opposed to an SQL error.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    pg8000.exceptions.InterfaceError,
    ConnectionError,
    OSError,
    EOFError,
)
# SQLSTATE classes that mean the server ended or refused the session: 08 connection
# exception, 57P01..57P03 admin shutdown / crash shutdown / cannot connect now.
TIMESTAMPTZ_OID = 1184


def _timestamptz_in(text: str) -> datetime | str:
    """A ``timestamptz`` value from PostgreSQL's text form.

    pg8000 parses with ``strptime`` (tens of microseconds a value); a batch of
    field states carries tens of thousands of timestamps, so that parse was most
    of a reconciliation page. ``fromisoformat`` reads the same text far faster;
    what it cannot read (infinity, years BC) goes to pg8000's own parser.
    """
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return pg8000.converters.timestamptz_in(text)


_DISCONNECT_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def _is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    if isinstance(exc, pg8000.exceptions.DatabaseError) and exc.args:
        info = exc.args[0]
        code = info.get("C", "") if isinstance(info, dict) else ""
        return any(code.startswith(prefix) for prefix in _DISCONNECT_SQLSTATES)
    return False


def is_server_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the server's answer to a statement (an ErrorResponse).

    pg8000 raises it only after reading the server's replies up to ReadyForQuery,
    so the connection is in step and may serve the next transaction. Anything else
    it raises mid-statement may leave replies unread: pg8000 1.31 sends
    Parse/Describe/Sync and only then converts the parameters, so a parameter it
    cannot convert (an aware datetime whose UTC form is before year 1) raises with
    the server's replies still queued. Pooled, such a connection answered every
    later statement with the previous statement's result (issue 21).
    """
    if not isinstance(exc, pg8000.exceptions.DatabaseError) or not exc.args:
        return False
    info = exc.args[0]
    return isinstance(info, dict) and "C" in info


class BrokenSession(RuntimeError):
    """A statement on this session's connection failed in the driver; it is not used again."""


class Session:
    """One transaction on one connection. Parameters are named: ``:customer_id``.

    A failure in the driver (anything but :func:`is_server_error`) marks the session
    broken: its connection leaves the pool, and any further statement on it raises
    :class:`BrokenSession` instead of reading an answer meant for another.
    """

    def __init__(self, connection: pg8000.dbapi.Connection) -> None:
        self._connection = connection
        self.broken: BaseException | None = None

    def fetch(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run ``sql`` and return every row as a dict keyed by column name."""
        cursor = self._cursor(sql, params)
        if cursor.description is None:
            return []
        names = [col[0] for col in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def fetch_one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        """Run ``sql`` and return its first row, or None."""
        rows = self.fetch(sql, params)
        return rows[0] if rows else None

    def fetch_value(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run ``sql`` and return the first column of its first row, or None."""
        row = self.fetch_one(sql, params)
        return next(iter(row.values())) if row else None

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement and return the number of rows it touched."""
        return int(self._cursor(sql, params).rowcount)

    def execute_many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement for each parameter mapping in ``rows``."""
        if rows:
            with self._guard():
                cursor = self._connection.cursor()
                cursor.executemany(sql, [dict(r) for r in rows])

    def commit(self) -> None:
        """Commit the transaction (the pool calls it when the block ends)."""
        with self._guard():
            self._connection.commit()

    def _cursor(self, sql: str, params: Mapping[str, Any] | None) -> Any:
        with self._guard():
            cursor = self._connection.cursor()
            if params:
                cursor.execute(sql, dict(params))
            else:
                cursor.execute(sql)
            return cursor

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        if self.broken is not None:
            raise BrokenSession(
                "an earlier statement failed in the database driver; this transaction is over"
            ) from self.broken
        try:
            yield
        except BaseException as exc:
            if not is_server_error(exc):
                self.broken = exc
            raise


class Database:
    """A process-wide pool of pg8000 connections with transactions as context managers."""

    def __init__(self, connect: Connector, *, pool_size: int = 4, description: str = "") -> None:
        self._connect = connect
        self._idle: queue.LifoQueue[pg8000.dbapi.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self.pool_size = pool_size
        self._depth = threading.local()  # sessions this thread holds open
        self.description = description

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """Open a transaction; commit when the block ends, roll back if it raises.

        A dropped connection raises :class:`DatabaseUnavailableError` (retryable)
        and the connection is discarded, so the next transaction reconnects.
        """
        with self._session(autocommit=False) as session:
            yield session

    @contextlib.contextmanager
    def autocommit(self) -> Iterator[Session]:
        """A session whose every statement is a transaction of its own, like :meth:`transaction`'s.

        For one statement on a row many processes update (the rate limiter's): it is one
        round trip, and its row lock ends with the statement. In a transaction the lock
        lasts until the client's COMMIT arrives, two more round trips, each as slow as
        the client's busiest thread is to give up the GIL.
        """
        with self._session(autocommit=True) as session:
            yield session

    @contextlib.contextmanager
    def _session(self, *, autocommit: bool) -> Iterator[Session]:
        depth = getattr(self._depth, "n", 0)
        nested = depth > 0  # see the module docstring: never wait for a slot while holding one
        if not nested:
            self._slots.acquire()
        self._depth.n = depth + 1
        connection: pg8000.dbapi.Connection | None = None
        try:
            connection = self._checkout()
            connection.autocommit = autocommit
            session = Session(connection)
            try:
                yield session
                if not autocommit:
                    session.commit()
            except BaseException as exc:
                if _is_disconnect(exc):
                    self._discard(connection)
                    connection = None
                    # The idle connections are as old as this one and most likely died
                    # with it (server restart, failover, network cut): drop them too, so
                    # the caller's retry reconnects instead of meeting the next dead one
                    # (found by tests/db/test_db_faults.py: one 503 per pooled connection).
                    self.close()
                    raise DatabaseUnavailableError(f"database connection lost: {exc}") from exc
                if session.broken is not None or not self._rolled_back(connection):
                    # Out of step with the server, or unable to end its transaction:
                    # never handed to another request (see is_server_error).
                    log.warning(
                        "database connection discarded after a driver failure",
                        extra={"fields": {"error_type": type(session.broken or exc).__name__}},
                    )
                    self._discard(connection)
                    connection = None
                raise
        finally:
            self._depth.n = depth
            if connection is not None:
                connection.autocommit = False
                if self._idle.qsize() < self.pool_size:
                    self._idle.put(connection)
                else:
                    self._discard(connection)
            if not nested:
                self._slots.release()

    def close(self) -> None:
        """Close every idle connection (the pool stays usable and reconnects on demand)."""
        while True:
            try:
                self._discard(self._idle.get_nowait())
            except queue.Empty:
                return

    def _checkout(self) -> pg8000.dbapi.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        try:
            connection = self._connect()
        except Exception as exc:
            raise DatabaseUnavailableError(
                f"cannot connect to the database ({self.description}): {exc}"
            ) from exc
        connection.register_in_adapter(TIMESTAMPTZ_OID, _timestamptz_in)
        return connection

    @staticmethod
    def _rolled_back(connection: pg8000.dbapi.Connection) -> bool:
        """Roll back; False when even that failed (the connection is unusable)."""
        try:
            connection.rollback()
        except Exception:
            return False
        return True

    @staticmethod
    def _discard(connection: pg8000.dbapi.Connection) -> None:
        with contextlib.suppress(Exception):
            connection.close()


# --- the three ways to connect ---------------------------------------------------------


def url_connector(url: str, *, timeout: float = 10.0) -> Connector:
    """A connector for a ``postgresql://user:pass@host:port/db`` URL.

    A ``host`` query parameter naming a folder selects a Unix socket, the form
    libpq and pgserver use: ``postgresql://postgres:@/postgres?host=/tmp/dir``.
    """
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    kwargs: dict[str, Any] = {
        "user": unquote(parts.username or query.get("user", "postgres")),
        "database": unquote(parts.path.lstrip("/")) or None,
        "timeout": timeout,
        "application_name": "warp-hubspot-sync",
    }
    if parts.password:
        kwargs["password"] = unquote(parts.password)
    socket_dir = query.get("host")
    if socket_dir and socket_dir.startswith("/"):
        kwargs["unix_sock"] = str(Path(socket_dir) / f".s.PGSQL.{parts.port or 5432}")
    else:
        kwargs["host"] = parts.hostname or socket_dir or "localhost"
        kwargs["port"] = parts.port or 5432
    if query.get("sslmode") in ("require", "verify-ca", "verify-full"):
        import ssl

        kwargs["ssl_context"] = ssl.create_default_context()

    def connect() -> pg8000.dbapi.Connection:
        return without_nagle(pg8000.dbapi.connect(**kwargs))

    return connect


def without_nagle(connection: pg8000.dbapi.Connection) -> pg8000.dbapi.Connection:
    """Switch off Nagle's algorithm on a TCP connection (libpq does; pg8000 does not).

    pg8000 writes a statement larger than its 8 KiB buffer in several sends; with
    Nagle on, the last one waits for the server's delayed ACK, 20-40 ms per such
    statement (the batch upserts of field states, sync log and webhook events).
    Measured: a 100-event webhook batch 89 ms -> 40 ms. pg8000 offers no option, so
    this reaches its socket (``_usock``); a Unix socket has no such option.
    """
    sock = getattr(connection, "_usock", None)
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


_cloudsql_connector: Any = None
_cloudsql_lock = threading.Lock()


def cloudsql_connector(settings: Settings) -> Connector:
    """A connector through cloud-sql-python-connector, built once per process."""

    def connect() -> pg8000.dbapi.Connection:
        global _cloudsql_connector
        with _cloudsql_lock:
            if _cloudsql_connector is None:
                # Imported here: it costs 0.6-1.1 s, which only Cloud SQL deployments pay.
                from google.cloud.sql.connector import Connector, RefreshStrategy

                _cloudsql_connector = Connector(refresh_strategy=RefreshStrategy.LAZY)
        kwargs: dict[str, Any] = {
            "user": settings.db_user,
            "db": settings.db_name,
            "ip_type": settings.db_ip_type,
            "enable_iam_auth": settings.db_iam_auth,
        }
        if settings.db_password is not None and not settings.db_iam_auth:
            kwargs["password"] = settings.db_password.get_secret_value()
        return without_nagle(
            _cloudsql_connector.connect(settings.instance_connection_name, "pg8000", **kwargs)
        )

    return connect


def embedded_database_url(data_dir: str | None = None) -> str:
    """Start (or join) the embedded PostgreSQL and return its URL.

    The server outlives this process only while other processes use it: pgserver
    stops it when the last one exits. Its data lives in the per-user cache folder.
    """
    try:
        import pgserver
    except ImportError as exc:  # deployments install without the `local` extra
        raise ConfigurationError(
            "no DATABASE_URL or INSTANCE_CONNECTION_NAME is set and the embedded "
            "PostgreSQL is not installed (pip install 'warp-hubspot-sync[local]')"
        ) from exc
    folder = embedded_data_dir(data_dir)
    folder.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    server = pgserver.get_server(folder, cleanup_mode="stop")
    log.info(
        "embedded PostgreSQL ready",
        extra={"fields": {"data_dir": str(folder), "ms": int((time.monotonic() - started) * 1000)}},
    )
    return str(server.get_uri())


def database_from_settings(settings: Settings) -> Database:
    """Build the pool the settings select (see the module docstring)."""
    mode = settings.database_mode
    timeout = settings.db_connect_timeout_seconds
    if mode == "url":
        assert settings.database_url is not None
        connect = url_connector(settings.database_url, timeout=timeout)
        description = f"DATABASE_URL={mask_url(settings.database_url)}"
    elif mode == "cloudsql":
        connect = cloudsql_connector(settings)
        description = f"Cloud SQL {settings.instance_connection_name}"
    else:
        connect = url_connector(embedded_database_url(settings.embedded_db_dir), timeout=timeout)
        description = (
            f"embedded PostgreSQL in {embedded_data_dir(settings.embedded_db_dir)} "
            "(DATABASE_URL and INSTANCE_CONNECTION_NAME are not set)"
        )
    return Database(connect, pool_size=settings.db_pool_size, description=description)
