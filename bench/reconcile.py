"""Benchmark: a FULL reconciliation of 10,000 linked customers with 5 % drift.

Seeds a fresh database and the HubSpot emulator with N customers (company and
contact each) in step, runs one reconciliation to record field states, then
drifts 5 % of the customers, spread over fields and over both sides, and
measures the run that repairs it:

- HubSpot calls by endpoint (goals: <= 100 reads and <= 10 writes per object
  type for 10,000 customers);
- customers/s with the emulator's rate limit off (goal >= 2,000);
- wall time with the emulator at 190 per 10 s and our budget at 90 % of it,
  against the floor "calls / 19 per s" (goal within 1.2x);
- with ``--rss``: peak RSS of a run over 100,000 customers, in a process of its
  own (goal < 300 MB);
- an INCREMENTAL run after ``--changed`` (1 %) of the customers changed in WARP and as
  many others in HubSpot since the last run: HubSpot calls (goal <= 3 + 1 per 100
  changed: they grow with the changes, not with the book) and time.

The emulator runs in a process of its own, driven over its control API, as HubSpot
is remote: its CPU, threads and heap (every record of the book) are not the
reconciler's. Sharing the process, they cost the run a third of its time in
garbage collection alone.

    python bench/reconcile.py [--customers 10000] [--drift 0.05] [--changed 0.01] [--rss]
        [--rss-customers 100000] [--only-incremental]

Database: TEST_DATABASE_URL or DATABASE_URL (a server; a database is created and
dropped), else the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.config.settings import Settings, load_settings
from shared.db import Database
from shared.db.connection import embedded_database_url, url_connector
from shared.db.migrate import upgrade
from shared.db.repositories._json import to_json
from shared.engine import Engine
from shared.hubspot import HubSpotClient
from shared.hubspot.properties import setup_properties
from shared.reconcile import RunRequest, start_run
from shared.tasks import InProcessDispatcher

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "emulator-token"
HUBSPOT_LIMIT, WINDOW_MS = 190, 10_000
DRIFT_KINDS = (
    "warp:status",
    "warp:phone",
    "warp:name",
    "hub:credit",
    "hub:name",
    "hub:phone",
    "both:name",
)
OUR_BUDGET = int(HUBSPOT_LIMIT * 0.9)


# --- set-up -------------------------------------------------------------------------------


class RemoteEmulator:
    """The HubSpot emulator in its own process (``hubspot-sync emulator``), over HTTP."""

    def __init__(self, *, rate_limit: int, search_rate: int) -> None:
        command = [sys.executable, "-c", "from shared.cli.main import cli; cli()", "emulator"]
        options = ["--port", "0", "--rate-limit", str(rate_limit), "--window-ms", str(WINDOW_MS)]
        options += ["--search-rate", str(search_rate), "--daily-limit", "100000000"]
        options += ["--access-token", TOKEN]
        # No search lag: this measures calls and speed; what lag does to an incremental
        # run is tested (tests/engine/test_reconcile.py), and a lagging index would hide changes.
        options += ["--search-delay-ms", "0"]
        self.process = subprocess.Popen(
            [*command, *options], stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert self.process.stdout is not None
        banner = self.process.stdout.readline()  # "HubSpot emulator listening on <url> (...)"
        if not banner.startswith("HubSpot emulator listening on "):
            self.stop()
            raise RuntimeError(f"the emulator did not start: {banner!r}")
        self.url = banner.split()[4]
        self.http = httpx.Client(base_url=f"{self.url}/_emulator", timeout=120)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        answer = self.http.post(path, json=body)
        answer.raise_for_status()
        return answer.json()

    def seed(self, object_type: str, properties: list[dict[str, str]]) -> list[str]:
        """Create records as they are, without webhooks; their ids."""
        records = [{"properties": p} for p in properties]
        ids: list[str] = self._post(f"/records/{object_type}", {"records": records})["ids"]
        return ids

    def ui_change(self, object_type: str, object_id: str, properties: dict[str, str]) -> None:
        """An edit "in the HubSpot UI"."""
        self._post(f"/ui/{object_type}/{object_id}", {"properties": properties})

    def stats(self) -> dict[str, Any]:
        """Call and 429 counts per endpoint since the start."""
        answer = self.http.get("/stats")
        answer.raise_for_status()
        stats: dict[str, Any] = answer.json()
        return stats

    def limit(self, rate_limit: int, *, reset: bool) -> None:
        """Set the rolling window's limit; ``reset`` forgets the calls already in it."""
        self._post("/limits", {"rateLimit": rate_limit, "reset": reset})

    def stop(self) -> None:
        """End the emulator's process."""
        self.process.terminate()
        self.process.wait(timeout=30)


def since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Per-key growth between two counters (calls made in between)."""
    return {k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)}


def plain_reads(calls: dict[str, int], history: dict[str, int]) -> dict[str, int]:
    """The batch reads that asked for no property history, per endpoint."""
    return {k: n - history.get(k, 0) for k, n in calls.items() if "batch/read" in k}


def server_url() -> str:
    """A PostgreSQL server to create the bench database on."""
    return (
        os.environ.get("TEST_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
        or embedded_database_url()
    )


def create_database(url: str) -> tuple[str, str]:
    """A fresh, migrated database; (its URL, its name)."""
    name = f"bench_reconcile_{uuid.uuid4().hex[:8]}"
    conn = url_connector(url)()
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    conn.close()
    base, _, _ = url.partition("?")
    head, _, _ = base.rpartition("/")
    query = url[len(base) :]
    db_url = f"{head}/{name}{query}"
    database = Database(url_connector(db_url), pool_size=1)
    upgrade(database)
    database.close()
    return db_url, name


def drop_database(url: str, name: str) -> None:
    """Drop the bench database."""
    conn = url_connector(url)()
    conn.autocommit = True
    conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def settings_for(db_url: str, hubspot_url: str, *, app_id: int, budget: int) -> Settings:
    """Settings with their own limiter key (``app_id``) and burst budget."""
    return load_settings(
        database_url=db_url,
        hubspot_base_url=hubspot_url,
        hubspot_access_token=TOKEN,
        hubspot_app_id=app_id,
        hubspot_rate_limit=budget,
        hubspot_rate_window_ms=WINDOW_MS,
        hubspot_search_rate_per_second=50,
        hubspot_daily_budget=10_000_000,
        log_level="WARNING",
    )


def make_engine(settings: Settings, database: Database) -> Engine:
    """An engine on ``database`` with an in-process task runner."""
    client = HubSpotClient.from_settings(settings, database)
    dispatcher = InProcessDispatcher(base=0.1, cap=1.0, max_attempts=5)
    return Engine(settings=settings, database=database, hubspot=client, dispatcher=dispatcher)


def seed(emulator: RemoteEmulator, database: Database, count: int) -> list[str]:
    """``count`` customers linked to a company and a contact equal to them; their BANs."""
    bans = [f"BENCH-{i:06d}" for i in range(count)]
    for start in range(0, count, 5_000):
        chunk = bans[start : start + 5_000]
        companies = emulator.seed(
            "companies",
            [
                {
                    "name": f"Company {ban}",
                    "domain": f"{ban.lower()}.example",
                    "warp_ban": ban,
                    "warp_status": "ACTIVE",
                    "warp_credit_limit": "5000",
                }
                for ban in chunk
            ],
        )
        contacts = emulator.seed(
            "contacts",
            [
                {
                    "firstname": "Jane",
                    "lastname": f"Doe{ban[-6:]}",
                    "email": f"jane@{ban.lower()}.example",
                    "phone": "+1 555 0100",
                }
                for ban in chunk
            ],
        )
        rows = [
            {
                "ban": ban,
                "company_name": f"Company {ban}",
                "contact": {
                    "name": f"Jane Doe{ban[-6:]}",
                    "email": f"jane@{ban.lower()}.example",
                    "phone": "+1 555 0100",
                },
                "external_ids": {"hubspot_company_id": company, "hubspot_contact_id": contact},
            }
            for ban, company, contact in zip(chunk, companies, contacts, strict=True)
        ]
        with database.transaction() as tx:
            tx.execute(
                "INSERT INTO accounts.customers (ban, company_name, customer_type, status, "
                "credit_limit, contact, external_ids) SELECT r.ban, r.company_name, 'POSTPAID', "
                "'ACTIVE', 5000, r.contact, r.external_ids FROM jsonb_to_recordset("
                "CAST(:rows AS jsonb)) AS r(ban text, company_name text, contact jsonb, "
                "external_ids jsonb)",
                {"rows": to_json(rows)},
            )
    return bans


def drift(
    emulator: RemoteEmulator, database: Database, rate: float, rng: random.Random
) -> Counter[str]:
    """Change ``rate`` of the customers, spread over fields and sides: one field each, on
    one side, except ``both:name``, renamed on both sides (LATEST_WINS compares times)."""
    with database.transaction() as tx:
        rows = tx.fetch(
            "SELECT ban, external_ids FROM accounts.customers ORDER BY ban",
        )
    chosen = rng.sample(rows, int(len(rows) * rate))
    kinds: Counter[str] = Counter()
    warp: dict[str, list[str]] = {"status": [], "phone": [], "name": []}
    for i, row in enumerate(chosen):
        ids = row["external_ids"]
        kind = DRIFT_KINDS[i % len(DRIFT_KINDS)]
        kinds[kind] += 1
        tag = uuid.uuid4().hex[:6]
        if kind.startswith("warp:"):
            warp[kind[5:]].append(row["ban"])
        elif kind == "both:name":
            warp["name"].append(row["ban"])
            emulator.ui_change("companies", ids["hubspot_company_id"], {"name": f"Renamed {tag}"})
        elif kind == "hub:credit":
            emulator.ui_change(
                "companies", ids["hubspot_company_id"], {"warp_credit_limit": str(6000 + i)}
            )
        elif kind == "hub:name":
            emulator.ui_change("companies", ids["hubspot_company_id"], {"name": f"Renamed {tag}"})
        else:
            emulator.ui_change("contacts", ids["hubspot_contact_id"], {"phone": f"+1 555 {i:04d}"})
    with database.transaction() as tx:
        tx.execute(
            "UPDATE accounts.customers SET status = 'SUSPENDED', updated_at = NOW() "
            "WHERE ban = ANY(CAST(:bans AS text[]))",
            {"bans": warp["status"]},
        )
        tx.execute(
            "UPDATE accounts.customers SET contact = jsonb_set(contact, '{phone}', "
            "to_jsonb('+44 20 7946 ' || right(ban, 4))), updated_at = NOW() "
            "WHERE ban = ANY(CAST(:bans AS text[]))",
            {"bans": warp["phone"]},
        )
        tx.execute(
            "UPDATE accounts.customers SET company_name = 'WARP ' || ban, updated_at = NOW() "
            "WHERE ban = ANY(CAST(:bans AS text[]))",
            {"bans": warp["name"]},
        )
    return kinds  # the UI edits' webhooks stay queued in the emulator: nobody listens


def reconcile(
    engine: Engine, emulator: RemoteEmulator
) -> tuple[float, dict[str, int], dict[str, int], Any]:
    """One FULL run: (seconds, calls by endpoint, batch reads with history, result)."""
    before = emulator.stats()
    started = time.perf_counter()
    result = start_run(engine, RunRequest(force=True, triggered_by="bench"))
    elapsed = time.perf_counter() - started
    assert result.status == "COMPLETED", result.run
    after = emulator.stats()
    calls = since(before["calls"], after["calls"])
    return elapsed, calls, since(before["historyReads"], after["historyReads"]), result


def change_both_sides(
    emulator: RemoteEmulator, database: Database, rate: float, rng: random.Random
) -> tuple[int, int]:
    """Change ``rate`` of the customers in WARP (a status) and as many others in HubSpot (a
    company's credit limit or a contact's phone): (changed in WARP, changed in HubSpot)."""
    with database.transaction() as tx:
        rows = tx.fetch("SELECT ban, external_ids FROM accounts.customers ORDER BY ban")
    count = int(len(rows) * rate)
    chosen = rng.sample(rows, 2 * count)
    in_warp, in_hubspot = chosen[:count], chosen[count:]
    for i, row in enumerate(in_hubspot):
        ids = row["external_ids"]
        if i % 2:
            emulator.ui_change("contacts", ids["hubspot_contact_id"], {"phone": f"+1 555 7{i:03d}"})
        else:
            emulator.ui_change(
                "companies", ids["hubspot_company_id"], {"warp_credit_limit": str(7000 + i)}
            )
    with database.transaction() as tx:
        tx.execute(
            "UPDATE accounts.customers SET status = CASE status WHEN 'ACTIVE' THEN 'SUSPENDED' "
            "ELSE 'ACTIVE' END, updated_at = NOW() WHERE ban = ANY(CAST(:bans AS text[]))",
            {"bans": [row["ban"] for row in in_warp]},
        )
    return len(in_warp), len(in_hubspot)


def incremental(engine: Engine, emulator: RemoteEmulator) -> tuple[float, dict[str, int], Any]:
    """One INCREMENTAL run: (seconds, calls by endpoint, result)."""
    before = emulator.stats()
    started = time.perf_counter()
    result = start_run(engine, RunRequest(run_type="INCREMENTAL", triggered_by="bench"))
    elapsed = time.perf_counter() - started
    assert result.status == "COMPLETED", result.run
    return elapsed, since(before["calls"], emulator.stats()["calls"]), result


def measure_incremental(
    database: Database, emulator: RemoteEmulator, db_url: str, rate: float, rng: random.Random
) -> None:
    """After a settling run, change ``rate`` on each side and measure the next INCREMENTAL."""
    # No overlap: the bench cannot wait out the 10 minutes a real run looks back before
    # the last one's start, and records changed in them would count as changed here.
    settings = settings_for(db_url, emulator.url, app_id=4, budget=1_000_000)
    engine = make_engine(settings.model_copy(update={"reconcile_overlap_seconds": 0.0}), database)
    # The settling run sees what the runs before it wrote (their writes come after their
    # start), so the measured run sees only the changes below.
    incremental(engine, emulator)
    in_warp, in_hubspot = change_both_sides(emulator, database, rate, rng)
    elapsed, calls, result = incremental(engine, emulator)
    changed = in_warp + in_hubspot
    goal = 3 + -(-changed // 100)
    print(f"\nincremental run after {in_warp} WARP and {in_hubspot} HubSpot changes:")
    print(f"fields repaired: {result.report['fields']}")
    print("\n| HubSpot endpoint | calls |\n|---|---|")
    for endpoint, n in sorted(calls.items()):
        print(f"| {endpoint} | {n} |")
    total = sum(calls.values())
    print("\n| measure | result | goal |\n|---|---|---|")
    print(
        f"| INCREMENTAL run, {changed} of {result.run['total_records'] or '?'} checked changed"
        f" | {total} HubSpot calls, {elapsed:.2f} s | <= {goal} calls (3 + 1 per 100 changed) |"
    )


# --- peak RSS, in a process of its own ---------------------------------------------------------


def _rss_child(db_url: str, hubspot_url: str, queue: Any) -> None:
    # Sampled with psutil: ru_maxrss would report the parent's peak, which Linux
    # carries over fork and exec into the child.
    import psutil

    logging.disable(logging.WARNING)
    process, peak, done = psutil.Process(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    settings = settings_for(db_url, hubspot_url, app_id=3, budget=1_000_000)
    database = Database(url_connector(db_url), pool_size=2)
    engine = make_engine(settings, database)
    result = start_run(engine, RunRequest(force=True, triggered_by="bench"))
    done.set()
    sampler.join()
    queue.put((result.status, result.run["total_records"], peak[0] / 2**20))


def peak_rss(customers: int, url: str, rate: float) -> None:
    """Seed ``customers`` and report the reconciling process's peak RSS."""
    db_url, name = create_database(url)
    emulator = RemoteEmulator(rate_limit=10_000_000, search_rate=1_000)
    try:
        database = Database(url_connector(db_url), pool_size=2)
        settings = settings_for(db_url, emulator.url, app_id=3, budget=1_000_000)
        setup_properties(make_engine(settings, database).hubspot)
        seed(emulator, database, customers)
        drift(emulator, database, rate, random.Random(2))
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        child = context.Process(target=_rss_child, args=(db_url, emulator.url, queue))
        started = time.perf_counter()
        child.start()
        status, total, peak_mb = queue.get(timeout=3_600)
        child.join()
        elapsed = time.perf_counter() - started
        print(
            f"| peak RSS, {customers:,} customers | {peak_mb:.0f} MB "
            f"({status}, {total:,} records, {elapsed:.0f} s) | < 300 MB |"
        )
        database.close()
    finally:
        emulator.stop()
        drop_database(url, name)


# --- main -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--drift", type=float, default=0.05)
    parser.add_argument("--rss", action="store_true", help="also measure peak RSS (slow)")
    parser.add_argument("--rss-customers", type=int, default=100_000)
    parser.add_argument("--skip-limited", action="store_true", help="skip the rate-limited run")
    parser.add_argument("--only-rss", action="store_true", help="only the peak RSS run")
    parser.add_argument("--changed", type=float, default=0.01, help="incremental: per side")
    parser.add_argument(
        "--only-incremental", action="store_true", help="seed, one FULL run, the incremental"
    )
    args = parser.parse_args()
    if args.only_rss:
        peak_rss(args.rss_customers, server_url(), args.drift)
        return
    logging.disable(logging.WARNING)  # one log line per record would measure the terminal

    url = server_url()
    db_url, name = create_database(url)
    emulator = RemoteEmulator(rate_limit=10_000_000, search_rate=1_000)
    rng = random.Random(1)
    try:
        database = Database(url_connector(db_url), pool_size=4)
        free = make_engine(settings_for(db_url, emulator.url, app_id=1, budget=1_000_000), database)
        setup_properties(free.hubspot)
        seed(emulator, database, args.customers)
        first, _, _, _ = reconcile(free, emulator)
        print(f"first run (no field states yet): {args.customers / first:,.0f} customers/s")
        if args.only_incremental:
            measure_incremental(database, emulator, db_url, args.changed, rng)
            database.close()
            return
        steady, steady_calls, steady_history, _ = reconcile(free, emulator)
        print(f"in-sync run: {args.customers / steady:,.0f} customers/s")

        kinds = drift(emulator, database, args.drift, rng)
        elapsed, calls, history, result = reconcile(free, emulator)
        rate = args.customers / elapsed
        print(f"\ndrift applied: {dict(kinds)}")
        print(f"fields repaired: {result.report['fields']}")
        print("\n| HubSpot endpoint | calls |\n|---|---|")
        for endpoint, n in sorted(calls.items()):
            print(f"| {endpoint} | {n} |")
        writes = {k: v for k, v in calls.items() if "batch/update" in k}
        both = kinds["both:name"]
        print("\n| measure | result | goal |\n|---|---|---|")
        print(
            f"| reads per object type, in-sync run | {plain_reads(steady_calls, steady_history)},"
            f" with history {steady_history} | <= 100 each, none with history |"
        )
        print(f"| reads without history, drift run | {plain_reads(calls, history)} | <= 100 each |")
        # Each reconcile window is one transaction with its own reads: at most one
        # history read per window holding such records, plus one per 50 of them.
        windows = -(-args.customers // free.settings.reconcile_window)
        print(
            f"| reads with history, drift run ({both} both-side renames: LATEST_WINS) "
            f"| {history} | <= {windows + both // 50} ({windows} windows; 50 a call) |"
        )
        print(f"| writes per object type | {writes} | <= 10 each |")
        print(f"| customers/s, limit off | {rate:,.0f} ({elapsed:.1f} s) | >= 2,000 |")

        if not args.skip_limited:
            limited = make_engine(
                settings_for(db_url, emulator.url, app_id=2, budget=OUR_BUDGET), database
            )
            drift(emulator, database, args.drift, rng)
            limited_before = emulator.stats()["rateLimited"]
            # The runs above were HubSpot's too: their calls are still in the emulator's
            # rolling window, so the first answer would report the budget spent and this
            # run would wait them out. The floor counts this run's calls alone, so it
            # starts, like a run of its own, from an empty window.
            emulator.limit(HUBSPOT_LIMIT, reset=True)
            elapsed, calls, _, _ = reconcile(limited, emulator)
            refused = since(limited_before, emulator.stats()["rateLimited"])
            total_calls = sum(calls.values())
            floor = total_calls / (HUBSPOT_LIMIT / (WINDOW_MS / 1000))
            print(
                f"| wall time, limit {HUBSPOT_LIMIT}/10 s (budget {OUR_BUDGET}) | {elapsed:.1f} s"
                f" for {total_calls} calls, floor {floor:.1f} s = {elapsed / floor:.2f}x,"
                f" 429s {sum(refused.values())} | <= 1.2x |"
            )
        measure_incremental(database, emulator, db_url, args.changed, rng)
        database.close()
    finally:
        emulator.stop()
        drop_database(url, name)
    if args.rss:
        peak_rss(args.rss_customers, url, args.drift)


if __name__ == "__main__":
    main()
