"""Body caps bound memory and time on all five functions, served as deployed (gunicorn).

functions-framework registers ``after_request(read_request)``, which used to read
the whole body after we had answered 413 or 401: memory grew with the body and a
declared body that never came held the answer back. ``shared.web.RequestBody``
bounds what anyone in the process can read (issue 21, item 2).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import TEST_ACCESS_TOKEN, TEST_CLIENT_SECRET
from tests.helpers.functions import FunctionProcess, serve_function

TOKEN = "caps-api-token"
WEBHOOK_CAP = 1_048_576  # WEBHOOK_MAX_BODY_BYTES' default
# function -> (path, extra headers, its cap)
TARGETS: dict[str, tuple[str, dict[str, str], int]] = {
    "webhook_receiver": ("/v1/webhooks/hubspot/company", {}, WEBHOOK_CAP),
    "outbound_sync": ("/", {}, 1_048_576),
    "retry_worker": ("/", {}, 102_400),
    "reconciler": ("/", {}, 16_384),
    "sync_api": ("/v1/sync/reconcile", {"Authorization": f"Bearer {TOKEN}"}, 65_536),
}
ANSWER_TIMEOUT = 60.0  # only a guard against hanging for ever; a pass never waits on it
MiB = 1024 * 1024


def _env(database_url: str, emulator: Any) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "HUBSPOT_BASE_URL": emulator.url,
        "HUBSPOT_ACCESS_TOKEN": TEST_ACCESS_TOKEN,
        "HUBSPOT_CLIENT_SECRET": TEST_CLIENT_SECRET,
        "SYNC_API_TOKEN": TOKEN,
        # One request at a time: an answer to the next request proves this one is over.
        "THREADS": "1",
    }


@pytest.fixture(scope="module")
def functions(database_url: str, emulator: Any) -> Iterator[dict[str, FunctionProcess]]:
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(FunctionProcess(name, _env(database_url, emulator)))
            for name in TARGETS
        }


def _head(name: str, port: int, framing: str) -> bytes:
    path, headers, _ = TARGETS[name]
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        framing,
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(sock: socket.socket) -> int:
    """The status code of the answer on ``sock`` (reads the status line only)."""
    sock.settimeout(ANSWER_TIMEOUT)
    seen = b""
    while b"\r\n" not in seen:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"connection closed without an answer: {seen!r}")
        seen += chunk
    return int(seen.split(b" ", 2)[1])


@pytest.mark.parametrize("name", list(TARGETS))
def test_a_declared_oversized_body_is_refused_while_the_client_still_holds_it(
    functions: dict[str, FunctionProcess], name: str
) -> None:
    """Nothing of the body is sent: a 413 can only come from not waiting for it."""
    fn = functions[name]
    cap = TARGETS[name][2]
    with socket.create_connection(("127.0.0.1", fn.port)) as sock:
        sock.sendall(_head(name, fn.port, f"Content-Length: {cap + 1}"))
        assert _status(sock) == 413


def _worker_peak_rss(fn: FunctionProcess) -> int:
    """Peak resident set (bytes) of the function's gunicorn workers (Linux: VmHWM)."""
    peak = 0
    for worker in psutil.Process(fn.pid).children(recursive=True):
        status = Path(f"/proc/{worker.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
        peak = max(peak, int(line.split()[1]) * 1024)
    return peak


def _send_chunked(sock: socket.socket, total: int) -> None:
    block = b"x" * MiB
    chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n"
    # The server may answer and stop reading at any point; the client just stops too.
    with contextlib.suppress(OSError):
        for _ in range(total // MiB):
            sock.sendall(chunk)
        sock.sendall(b"0\r\n\r\n")


def test_a_64_mib_body_does_not_grow_the_process(functions: dict[str, FunctionProcess]) -> None:
    fn = functions["webhook_receiver"]
    url = fn.url + TARGETS["webhook_receiver"][0]
    assert httpx.post(url, content=b"[]").status_code == 401  # warm: engine and pool built
    before = _worker_peak_rss(fn)
    for framing in ("Transfer-Encoding: chunked", f"Content-Length: {64 * MiB}"):
        with socket.create_connection(("127.0.0.1", fn.port)) as sock:
            sock.sendall(_head("webhook_receiver", fn.port, framing))
            send = _send_chunked if framing.startswith("Transfer") else _send_plain
            sender = threading.Thread(target=send, args=(sock, 64 * MiB))
            sender.start()
            assert _status(sock) == 413
            sender.join()
    # The next answer comes after the big bodies were dealt with (one thread serves).
    assert httpx.post(url, content=b"[]").status_code == 401
    growth = _worker_peak_rss(fn) - before
    assert growth < 16 * MiB, f"peak RSS grew {growth / MiB:.1f} MiB for a 64 MiB body"


def _send_plain(sock: socket.socket, total: int) -> None:
    block = b"x" * MiB
    with contextlib.suppress(OSError):
        for _ in range(total // MiB):
            sock.sendall(block)


def test_a_client_gone_mid_body_is_one_json_line(database_url: str, emulator: Any) -> None:
    with FunctionProcess("outbound_sync", _env(database_url, emulator)) as fn:
        with socket.create_connection(("127.0.0.1", fn.port)) as sock:
            sock.sendall(_head("outbound_sync", fn.port, "Content-Length: 5000") + b"{" * 100)
        # One thread serves: this answer comes after the broken request was handled.
        assert httpx.get(fn.url).status_code == 405
        with socket.create_connection(("127.0.0.1", fn.port)) as sock:
            sock.sendall(_head("outbound_sync", fn.port, "Transfer-Encoding: chunked") + b"zz\r\n")
            assert _status(sock) == 400  # broken chunk framing: unreadable, not a 500
    lines = [line for line in fn.output().splitlines() if line.strip()]
    for line in lines:
        json.loads(line)  # no plain-text traceback anywhere
    broke = [json.loads(line) for line in lines if "request body broke off" in line]
    assert [(b["bytes_read"], b["cause"]) for b in broke] == [
        (100, "end of stream"),
        (0, "InvalidChunkSize"),
    ], lines


def test_a_client_gone_mid_body_is_one_log_line_under_the_local_server(
    engine: Any, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hubspot-sync serve`` and the demo serve with werkzeug: no traceback there either."""
    with (
        caplog.at_level(logging.INFO),
        serve_function("outbound_sync", threaded=False) as url,
    ):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(_head("outbound_sync", port, "Content-Length: 5000") + b"{" * 100)
        assert httpx.get(url).status_code == 405  # served after the broken request
    # Our JSON lines go to stdout; Flask's and werkzeug's records (tracebacks) to logging.
    ours = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert [line["bytes_read"] for line in ours if "body broke off" in line["message"]] == [100]
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
