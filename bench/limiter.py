"""Benchmark: N processes share one HubSpot budget through the PostgreSQL limiter.

Each process runs its own HubSpotClient (own connection pool, own database pool)
against one emulator whose rate limit is HubSpot's (100 per 10 s); our shared
budget is 90 % of it. Printed: the share of our budget the processes used
together (goal >= 85 %) and the 429s the emulator sent (goal 0), as a Markdown
table row.

    python bench/limiter.py [--seconds 30] [--processes 4]

Database: DATABASE_URL, else TEST_DATABASE_URL, else the embedded PostgreSQL.
Its own key in the limiter tables, so it never touches a deployment's budget.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from localdev.emulator import Emulator
from shared.db import Database
from shared.db.connection import embedded_database_url, url_connector
from shared.db.migrate import upgrade
from shared.hubspot import HubSpotClient
from shared.hubspot.errors import HubSpotError
from shared.hubspot.ratelimit import SharedRateLimiter

HUBSPOT_LIMIT, WINDOW_MS = 100, 10_000


def worker(
    url: str, base_url: str, key: str, budget: int, start_at: float, seconds: float
) -> tuple[int, int]:
    """From ``start_at`` (epoch s) call HubSpot as fast as the shared limiter allows."""
    database = Database(url_connector(url), pool_size=1)
    limiter = SharedRateLimiter(database, key=key, rate_limit=budget, window_ms=WINDOW_MS)
    client = HubSpotClient(base_url, "emulator-token", limiter=limiter, max_rate_wait=2.0)
    limiter.ensure()
    done = failed = 0
    time.sleep(max(0.0, start_at - time.time()))  # all start together, after spawning
    while time.time() < start_at + seconds:
        try:
            client.companies.list_page(limit=1)
            if time.time() < start_at + seconds:  # granted after a wait past the end: not ours
                done += 1
        except HubSpotError:
            failed += 1  # the limiter's "wait longer than 2 s": ask again
    client.close()
    database.close()
    return done, failed


def main() -> None:
    """Run the benchmark and print one Markdown table row (with its header)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--share", type=float, default=0.9, help="our budget / HubSpot's")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    url = url or embedded_database_url()
    database = Database(url_connector(url), pool_size=1)
    upgrade(database)
    database.close()
    budget = int(HUBSPOT_LIMIT * args.share)
    key = f"bench-{uuid.uuid4().hex[:8]}"

    with Emulator(port=0, rate_limit=HUBSPOT_LIMIT, window_ms=WINDOW_MS) as emu:
        context = multiprocessing.get_context("spawn")
        start_at = time.time() + 3.0
        with context.Pool(args.processes) as pool:
            parts = pool.starmap(
                worker, [(url, emu.url, key, budget, start_at, args.seconds)] * args.processes
            )
        throttled = sum(emu.stats()["rateLimited"].values())
    calls = sum(done for done, _ in parts)
    # The most a rolling window allows in the run: one budget per started window.
    possible = budget * -(-int(args.seconds * 1000) // WINDOW_MS)
    print(
        "| processes | seconds | our budget | HubSpot's | calls | share of our budget "
        "| share of HubSpot's | 429s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.processes} | {args.seconds:g} | {budget}/{WINDOW_MS // 1000} s "
        f"| {HUBSPOT_LIMIT}/{WINDOW_MS // 1000} s | {calls} | {calls / possible:.1%} "
        f"| {calls / (possible / budget * HUBSPOT_LIMIT):.1%} | {throttled} |"
    )


if __name__ == "__main__":
    main()
