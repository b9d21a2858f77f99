"""Serving a Cloud Function over real HTTP in tests, the way functions-framework serves it.

``serve_function(name)`` runs ``functions_framework.create_app`` on a werkzeug
server thread in this process: the handler then uses the process-wide engine the
test fixtures installed. ``FunctionProcess`` runs the real ``functions-framework``
command in a subprocess with its own environment, for tests of a function exactly
as deployed (its own process, settings read from the environment).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import functions_framework
from werkzeug.serving import make_server

from localdev.stack import RawTargetHandler

ROOT = Path(__file__).resolve().parents[2]


def source_of(name: str) -> str:
    """The adapter file of function ``name``."""
    return str(ROOT / "functions" / name / "main.py")


@contextlib.contextmanager
def serve_function(name: str, *, threaded: bool = True) -> Iterator[str]:
    """Serve function ``name`` in-process; yield its base URL.

    Not ``threaded``, one request is served at a time: an answer then proves that
    every earlier request is over.
    """
    app = functions_framework.create_app(name, source_of(name))
    # The request target as sent, as gunicorn serves it (see RawTargetHandler).
    server = make_server("127.0.0.1", 0, app, threaded=threaded, request_handler=RawTargetHandler)
    thread = threading.Thread(target=server.serve_forever, name=f"fn-{name}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FunctionProcess:
    """``functions-framework --target NAME`` in a subprocess with ``env`` added."""

    def __init__(self, name: str, env: Mapping[str, str], *, port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self._process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("functions-framework")),
                "--source",
                source_of(name),
                "--target",
                name,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=full_env,
            cwd=str(ROOT),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        # Read the output as it comes: a full pipe (64 KiB of log lines) blocked the
        # function's logging, and with it every request (tests/inbound/test_webhook_delivery.py).
        self._output: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, name=f"fn-{name}-out", daemon=True)
        self._reader.start()
        self._wait_ready(timeout=30)

    def _drain(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._output.append(line)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._reader.join(timeout=5)
                raise RuntimeError(f"{self.name} exited at start:\n{self.output()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)  # polling a port that is not open yet; not a timing assumption
        raise TimeoutError(f"{self.name} did not listen on {self.port} within {timeout}s")

    @property
    def pid(self) -> int:
        """The served process (gunicorn's arbiter; its workers are its children)."""
        return self._process.pid

    def output(self) -> str:
        """Everything the process printed (complete only after close)."""
        return b"".join(self._output).decode(errors="replace")

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=5)

    def __enter__(self) -> FunctionProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
