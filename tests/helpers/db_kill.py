"""Killing a function's database connection at a chosen moment (the DB-fault tests).

A test holds a lock the function's statement will wait on, starts the request in a
thread, then terminates the backend that waits: the function sees its connection
die mid-transaction, exactly where the test put the lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx


def lock_waiter(connection: Any, *, timeout: float = 15.0) -> int:
    """The pid of the other backend of this database that waits on a lock (polled until
    ``timeout``; AssertionError when none ever waits)."""
    cursor = connection.cursor()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        rows = cursor.fetchall()
        if rows:
            return int(rows[0][0])
        time.sleep(0.02)  # polling for the condition, with a deadline
    raise AssertionError(f"no connection waited on the test's lock within {timeout} s")


def kill_lock_waiter(connection: Any, *, timeout: float = 15.0) -> None:
    """Terminate the other backend of this database that waits on a lock (see ``lock_waiter``)."""
    pid = lock_waiter(connection, timeout=timeout)
    connection.cursor().execute("SELECT pg_terminate_backend(:p)", {"p": pid})


def kill_open_transactions(connection: Any) -> int:
    """Terminate every other backend of this database inside a transaction; how many."""
    cursor = connection.cursor()
    cursor.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND state LIKE 'idle in transaction%'"
    )
    return len(cursor.fetchall())


def in_thread(call: Callable[[], httpx.Response]) -> Callable[[], httpx.Response]:
    """Run ``call`` now in a thread; the returned function joins it and gives its answer."""
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(r=call()), daemon=True)
    thread.start()

    def join() -> httpx.Response:
        thread.join(30)
        assert "r" in box, "the request did not finish"
        response: httpx.Response = box["r"]
        return response

    return join
