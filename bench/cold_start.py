"""Cold start: import time of each function's main.py against a bare functions-framework import.

Each measurement is a fresh interpreter (as a new Cloud Functions instance is),
timed from inside the process around the import alone, median of ``--runs``. The
time is the process's CPU time: on an idle machine it equals the wall time within a
few ms, and unlike wall time it does not grow when other work shares the cores. What
is imported is what deploys: the folders ``hubspot-sync package`` stages (``main.py``,
``shared/`` and their checked-hash bytecode), on a virtual environment holding
exactly ``requirements/runtime.lock`` with its bytecode compiled as pip installs it
(built once in ``.venv-bench-runtime``). ``PYTHONDONTWRITEBYTECODE=1``: an instance
caches nothing for the next one.
The issue's goal, every function ≤ 1.5x the bare ``import functions_framework``, is
below what the packages every function needs cost by themselves (the floor row). What
our code decides is the rest: packages that only some paths use (gRPC clients, the
Cloud SQL connector, cryptography, prometheus_client) are imported only there - the
last column, asserted by tests/deploy/test_packaging.py - and the ms above the floor.

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

from shared.packaging import LOADED_WHERE_USED, package_functions

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_VENV = ROOT / ".venv-bench-runtime"
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/main.py"))

_PROBE = """
import time, sys, importlib.util
t = time.process_time()
{body}
print(time.process_time() - t)
print(sorted(m for m in sys.modules if m.startswith({lazy!r})))
"""
_BARE = "import functions_framework"
_FUNCTION = "import main"
# What every function needs before it can answer at all: the chosen packages' own
# import cost, the part of a cold start no arrangement of our modules can remove. The
# settings are a pydantic model, and pydantic loads its schema builder (~45 ms, more
# than pydantic's import) on the first model defined; so does the floor.
_FLOOR = """
import functions_framework, httpx, pg8000
from pydantic import BaseModel, Field, SecretStr
class Settings(BaseModel):
    token: SecretStr | None = None
    pool_size: int = Field(4, ge=1)
"""


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
            [python, "-c", _PROBE.format(body=body, lazy=LOADED_WHERE_USED)],
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
            "| function | import CPU ms | x bare functions_framework | ms above the packages' floor"
            " | modules loaded that only some paths use |"
        )
        print("|---|---|---|---|---|")
        print(f"| (bare `import functions_framework`) | {bare * 1000:.0f} | 1.00 | — | — |")
        print(
            f"| (floor: + httpx, pg8000, a pydantic model) | {floor * 1000:.0f} |"
            f" {floor / bare:.2f} | 0 | — |"
        )
        worst, above = 0.0, 0.0
        for name in FUNCTIONS:
            seconds, heavy = measure(_FUNCTION, args.runs, staged / name)
            ratio = seconds / bare
            worst, above = max(worst, ratio), max(above, seconds - floor)
            print(
                f"| {name} | {seconds * 1000:.0f} | {ratio:.2f} | {(seconds - floor) * 1000:.0f}"
                f" | {len(heavy) or 'none'} |"
            )
    print(
        f"\nworst ratio {worst:.2f} (goal ≤ 1.50; the floor alone is {floor / bare:.2f});"
        f" most above the floor {above * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
