"""Cold start: import time of each function's main.py against a bare functions-framework import.

Each measurement is a fresh interpreter (as a new Cloud Functions instance is),
timed from inside the process around the import alone, median of ``--runs``. The
interpreter is a virtual environment holding exactly what a deployed function
gets, ``requirements/runtime.lock`` (built once in ``.venv-bench-runtime``), with
the repository on ``PYTHONPATH`` as the staged package puts ``shared`` beside
``main.py``.
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
from pathlib import Path

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
_FUNCTION = (
    "spec = importlib.util.spec_from_file_location('main', {path!r})\n"
    "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)"
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
                "--python",
                str(python),
                "-r",
                str(ROOT / "requirements" / "runtime.lock"),
            ],
            check=True,
        )
    return str(python)


def measure(body: str, runs: int) -> tuple[float, list[str]]:
    """Median seconds of ``body`` in fresh interpreters, and the heavy modules it loaded."""
    times = []
    heavy: list[str] = []
    python = runtime_python()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(runs):
        out = subprocess.run(
            [python, "-c", _PROBE.format(body=body)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env=env,
        ).stdout.splitlines()
        times.append(float(out[0]))
        heavy = json.loads(out[1].replace("'", '"'))
    return statistics.median(times), heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    bare, _ = measure(_BARE, args.runs)
    print("| function | import ms | x bare functions_framework | gRPC / connector modules loaded |")
    print("|---|---|---|---|")
    print(f"| (bare `import functions_framework`) | {bare * 1000:.0f} | 1.00 | — |")
    worst = 0.0
    for name in FUNCTIONS:
        path = str(ROOT / "functions" / name / "main.py")
        seconds, heavy = measure(_FUNCTION.format(path=path), args.runs)
        ratio = seconds / bare
        worst = max(worst, ratio)
        print(f"| {name} | {seconds * 1000:.0f} | {ratio:.2f} | {len(heavy) or 'none'} |")
    print(f"\nworst ratio {worst:.2f} (goal ≤ 1.50)")


if __name__ == "__main__":
    main()
