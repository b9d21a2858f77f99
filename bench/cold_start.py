"""Cold start: import time of each function's main.py against a bare functions-framework import.

Each measurement is a fresh interpreter (as a new Cloud Functions instance is),
timed from inside the process around the import alone, median of ``--runs``. What
is imported is what deploys: the folders ``hubspot-sync package`` stages (``main.py``,
``shared/`` and their checked-hash bytecode), on a virtual environment holding
exactly ``requirements/runtime.lock`` with its bytecode compiled as pip installs it
(built once in ``.venv-bench-runtime``). ``PYTHONDONTWRITEBYTECODE=1``: an instance
caches nothing for the next one.
Goal: every function ≤ 1.5x the bare ``import functions_framework`` (heavy
clients - gRPC Cloud Tasks and Pub/Sub, the Cloud SQL connector - are imported
only on the paths that use them).

    .venv/bin/python bench/cold_start.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from shared.packaging import package_functions

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_VENV = ROOT / ".venv-bench-runtime"
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/main.py"))

_PROBE = """
import time, sys, importlib.util
t = time.perf_counter()
{body}
print(time.perf_counter() - t)
HEAVY = ("google.cloud.tasks", "google.cloud.pubsub", "google.cloud.sql", "grpc")
print(sorted(m for m in sys.modules if m.startswith(HEAVY)))
"""
_BARE = "import functions_framework"
_FUNCTION = "import main"
# What any function needs to do its work at all: the chosen packages' own import cost,
# the part of a cold start no arrangement of our modules can remove.
_FLOOR = (
    "import functions_framework, pydantic, httpx, pg8000\n"
    "from cryptography.hazmat.primitives.ciphers.aead import AESGCM"
)


def runtime_python() -> str:
    """The deployment-like interpreter, built from the runtime lock on first use."""
    python = RUNTIME_VENV / "bin" / "python"
    if not python.exists():
        uv = Path(sys.executable).with_name("uv")
        subprocess.run([str(uv), "venv", "-q", "-p", sys.executable, str(RUNTIME_VENV)], check=True)
        subprocess.run(
            [
                str(uv),
                "pip",
                "install",
                "-q",
                "--compile-bytecode",
                "--python",
                str(python),
                "-r",
                str(ROOT / "requirements" / "runtime.lock"),
            ],
            check=True,
        )
    return str(python)


def measure(body: str, runs: int, folder: Path) -> tuple[float, list[str]]:
    """Median seconds of ``body`` in fresh interpreters in ``folder``, and the heavy modules."""
    times = []
    heavy: list[str] = []
    python = runtime_python()
    env = {**os.environ, "PYTHONPATH": str(folder), "PYTHONDONTWRITEBYTECODE": "1"}
    for _ in range(runs):
        out = subprocess.run(
            [python, "-c", _PROBE.format(body=body)],
            capture_output=True,
            text=True,
            check=True,
            cwd=folder,
            env=env,
        ).stdout.splitlines()
        times.append(float(out[0]))
        heavy = json.loads(out[1].replace("'", '"'))
    return statistics.median(times), heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        staged = Path(tmp)
        package_functions(staged)
        bare, _ = measure(_BARE, args.runs, staged)
        floor, _ = measure(_FLOOR, args.runs, staged)
        print(
            "| function | import ms | x bare functions_framework | ms above the packages' floor"
            " | gRPC / connector modules loaded |"
        )
        print("|---|---|---|---|---|")
        print(f"| (bare `import functions_framework`) | {bare * 1000:.0f} | 1.00 | — | — |")
        print(
            f"| (floor: + pydantic, httpx, pg8000, cryptography) | {floor * 1000:.0f} |"
            f" {floor / bare:.2f} | 0 | — |"
        )
        worst = 0.0
        for name in FUNCTIONS:
            seconds, heavy = measure(_FUNCTION, args.runs, staged / name)
            ratio = seconds / bare
            worst = max(worst, ratio)
            print(
                f"| {name} | {seconds * 1000:.0f} | {ratio:.2f} | {(seconds - floor) * 1000:.0f}"
                f" | {len(heavy) or 'none'} |"
            )
    print(f"\nworst ratio {worst:.2f} (goal ≤ 1.50; the floor alone is {floor / bare:.2f})")


if __name__ == "__main__":
    main()
