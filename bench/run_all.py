"""Run every benchmark in bench/ and write their figures, with the machine, to bench/results.md.

The README shows the same table between its ``bench:start`` / ``bench:end``
markers; this script replaces it there too, so the README always shows the
latest run. Each benchmark prints Markdown itself; this only gathers it.

    .venv/bin/python bench/run_all.py [--quick]

``--quick`` runs shorter versions (fewer customers, seconds and runs) for a
smoke check; the README figures come from a full run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FULL = {
    "cold_start.py": ["--runs", "7"],
    "limiter.py": ["--seconds", "30"],
    "webhook_ingest.py": [],
    "outbound_burst.py": [],
    "reconcile.py": ["--rss"],
    "capture.py": [],
}
QUICK = {
    "cold_start.py": ["--runs", "3"],
    "limiter.py": ["--seconds", "5"],
    "webhook_ingest.py": ["--batches", "10"],
    "outbound_burst.py": ["--customers", "300", "--samples", "5"],
    "reconcile.py": ["--customers", "2000", "--skip-limited"],
    "capture.py": ["--updates", "2000", "--rounds", "1"],
}


def machine() -> str:
    """One line saying what this ran on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        memory = "?"
    database = "a server (TEST_DATABASE_URL)" if os.environ.get("TEST_DATABASE_URL") else "embedded"
    # The figures halve when other work shares two cores: say how busy the machine was.
    load = os.getloadavg()[0]
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, PostgreSQL: {database}; "
        f"load average {load:.2f} at the start"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    sections = [
        "# Benchmarks",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {machine()}"
        + (" (quick run)" if args.quick else "")
        + ".",
    ]
    for script, script_args in plan.items():
        started = time.monotonic()
        print(f"== {script} {' '.join(script_args)}", flush=True)
        result = subprocess.run(
            [sys.executable, str(ROOT / "bench" / script), *script_args],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        print(result.stdout, flush=True)
        seconds = time.monotonic() - started
        status = "" if result.returncode == 0 else f" — FAILED (exit {result.returncode})"
        # Only the figures: a benchmark's structured log lines (JSON) stay out of the table.
        figures = "\n".join(
            line for line in result.stdout.strip().splitlines() if not line.startswith("{")
        )
        sections += ["", f"## {script} ({seconds:.0f} s){status}", "", figures]
        if result.returncode != 0:
            sections += ["", "```", result.stderr.strip()[-2000:], "```"]
    report = "\n".join(sections) + "\n"
    (ROOT / "bench" / "results.md").write_text(report)
    readme = ROOT / "README.md"
    text = readme.read_text()
    body = "\n".join(report.splitlines()[2:]).replace("\n## ", "\n#### ")
    new = re.sub(
        r"<!-- bench:start -->.*<!-- bench:end -->",
        lambda _: f"<!-- bench:start -->\n{body}\n<!-- bench:end -->",
        text,
        flags=re.S,
    )
    readme.write_text(new)
    print("wrote bench/results.md and the README's benchmark section")


if __name__ == "__main__":
    main()
