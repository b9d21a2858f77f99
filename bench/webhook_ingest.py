"""Benchmark: signed 100-event webhook batches from concurrent senders to webhook_receiver.

The function runs as deployed locally: the ``functions-framework`` command (gunicorn)
in its own process, on PostgreSQL. Each batch is stored, then processed inline:
per customer touched, a mapped name change and credit-limit change (applied), an
unmapped property (logged as skipped) and an echo of our own write (ignored).
Printed: events/s over the run and p50/p99 latency per batch, as a Markdown table
row. Goal on a 2-core machine: >= 2,000 events/s, p99 < 500 ms.

Then a forged flood against one instance as deployed (one worker, one request at a
time: ``max_instance_request_concurrency = 1``): 100-event batches signed with the
wrong secret or not at all, from a new address each time (each read and its
signature checked: 401) and from one address (429 unread once it passed
``WEBHOOK_SOURCE_FAILURE_LIMIT``). Printed: refused requests per second per instance,
p50 and p99. A flood's total is at most this times ``max_instances["webhook_receiver"]``.

    python bench/webhook_ingest.py [--senders 4] [--batches 50] [--customers-per-batch 25]
        [--forged 2000]

Database: a fresh database created (and dropped) on DATABASE_URL's server, else
TEST_DATABASE_URL's, else the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from localdev.emulator import Emulator
from shared.db import Database
from shared.db.connection import embedded_database_url, url_connector
from shared.db.migrate import upgrade
from shared.hubspot.signatures import sign_v3
from tests.helpers.functions import FunctionProcess

SECRET = "bench-client-secret"
APP_ID = 31337
PATH = "/v1/webhooks/hubspot/company"
EVENTS_PER_BATCH = 100
_event_ids = itertools.count(1)


def _database_on(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path="/" + name))


def _admin(server_url: str, sql: str) -> None:
    connection = url_connector(server_url)()
    try:
        connection.autocommit = True
        connection.cursor().execute(sql)
    finally:
        connection.close()


def seed_customers(url: str, count: int) -> list[str]:
    """``count`` customers, each linked to a (notional) company id; the company ids."""
    database = Database(url_connector(url), pool_size=1)
    company_ids = [str(30_000_000_000 + n) for n in range(count)]
    rows = [
        {
            "ban": f"BENCH-{n:06d}",
            "company_name": f"Bench Customer {n}",
            "customer_type": "POSTPAID",
            "external_ids": {"hubspot_company_id": cid},
        }
        for n, cid in enumerate(company_ids)
    ]
    with database.transaction() as tx:
        tx.execute(
            "INSERT INTO accounts.customers (ban, company_name, customer_type, external_ids) "
            "SELECT ban, company_name, customer_type, external_ids "
            "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
            "AS r(ban text, company_name text, customer_type text, external_ids jsonb)",
            {"rows": json.dumps(rows)},
        )
    database.close()
    return company_ids


def batch(company_ids: list[str], per_batch: int, rng: random.Random) -> list[dict[str, Any]]:
    """100 events: four per customer touched (applied x2, unmapped, echo)."""
    events = []
    now = int(time.time() * 1000)
    for company in rng.sample(company_ids, per_batch):
        for prop, value, source in (
            ("name", f"Renamed {rng.randrange(10**6)}", ("CRM_UI", "userId:7")),
            ("warp_credit_limit", str(rng.randrange(1000, 90000)), ("CRM_UI", "userId:7")),
            ("twitterhandle", "bench", ("CRM_UI", "userId:7")),
            ("name", "Our Own Write", ("INTEGRATION", str(APP_ID))),
        ):
            events.append(
                {
                    "eventId": next(_event_ids),
                    "subscriptionId": 4242,
                    "portalId": 62515,
                    "appId": APP_ID,
                    "occurredAt": now - (1 if source[0] == "INTEGRATION" else 0),
                    "subscriptionType": "company.propertyChange",
                    "attemptNumber": 0,
                    "objectId": int(company),
                    "propertyName": prop,
                    "propertyValue": value,
                    "changeSource": source[0],
                    "sourceId": source[1],
                }
            )
    return events[:EVENTS_PER_BATCH]


def sender(url: str, batches: list[bytes], latencies: list[float], errors: list[str]) -> None:
    with httpx.Client(timeout=30) as client:
        for body in batches:
            ts = int(time.time() * 1000)
            headers = {
                "Content-Type": "application/json",
                "X-HubSpot-Signature-v3": sign_v3(SECRET, "POST", url, body, ts),
                "X-HubSpot-Request-Timestamp": str(ts),
            }
            started = time.perf_counter()
            response = client.post(url, content=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200 or response.json()["handed_off"]:
                errors.append(f"{response.status_code} {response.text[:200]}")


def forged_flood(
    url: str, body: bytes, requests: int, senders: int, *, one_source: bool
) -> tuple[float, list[float], Counter[int]]:
    """``requests`` forged or unsigned deliveries from ``senders`` threads: (seconds,
    latencies, answers by status)."""
    latencies: list[float] = []
    answers: Counter[int] = Counter()
    addresses = itertools.count(1)
    lock = threading.Lock()

    def send(count: int) -> None:
        with httpx.Client(timeout=30) as client:
            for n in range(count):
                with lock:
                    address = 1 if one_source else next(addresses)
                headers = {
                    "Content-Type": "application/json",
                    "X-Forwarded-For": f"10.{address >> 16 & 255}.{address >> 8 & 255}"
                    f".{address & 255}",
                }
                if n % 2 == 0:
                    ts = int(time.time() * 1000)
                    headers["X-HubSpot-Signature-v3"] = sign_v3("forged", "POST", url, body, ts)
                    headers["X-HubSpot-Request-Timestamp"] = str(ts)
                started = time.perf_counter()
                status = client.post(url, content=body, headers=headers).status_code
                with lock:
                    latencies.append(time.perf_counter() - started)
                    answers[status] += 1

    threads = [threading.Thread(target=send, args=(requests // senders,)) for _ in range(senders)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, answers


def main() -> None:
    """Run the benchmark and print one Markdown table row (with its header)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--batches", type=int, default=50, help="batches per sender")
    parser.add_argument("--customers-per-batch", type=int, default=25)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes")
    parser.add_argument("--forged", type=int, default=2000, help="forged requests per flood")
    args = parser.parse_args()

    server = os.environ.get("DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    server = server or embedded_database_url()
    name = f"bench_webhook_{uuid.uuid4().hex[:8]}"
    _admin(server, f'CREATE DATABASE "{name}"')
    url = _database_on(server, name)
    try:
        database = Database(url_connector(url), pool_size=1)
        upgrade(database)
        database.close()
        company_ids = seed_customers(url, args.customers)
        rng = random.Random(7)
        per_batch = min(args.customers_per_batch, EVENTS_PER_BATCH // 4)
        with (
            Emulator(port=0) as emu,
            FunctionProcess(
                "webhook_receiver",
                {
                    "DATABASE_URL": url,
                    "HUBSPOT_BASE_URL": emu.url,
                    "HUBSPOT_ACCESS_TOKEN": "emulator-token",
                    "HUBSPOT_CLIENT_SECRET": SECRET,
                    "HUBSPOT_APP_ID": str(APP_ID),
                    "WORKERS": str(args.workers),
                    "LOG_LEVEL": "WARNING",
                },
            ) as fn,
        ):
            target = fn.url + PATH
            warmup: list[float] = []
            sender(
                target,
                [json.dumps(batch(company_ids, per_batch, rng)).encode() for _ in range(5)],
                warmup,
                [],
            )
            plans = [
                [
                    json.dumps(batch(company_ids, per_batch, rng)).encode()
                    for _ in range(args.batches)
                ]
                for _ in range(args.senders)
            ]
            latencies: list[float] = []
            errors: list[str] = []
            threads = [
                threading.Thread(target=sender, args=(target, plan, latencies, errors))
                for plan in plans
            ]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            forged_body = plans[0][0]
            with FunctionProcess(
                "webhook_receiver",
                {
                    "DATABASE_URL": url,
                    "HUBSPOT_BASE_URL": emu.url,
                    "HUBSPOT_ACCESS_TOKEN": "emulator-token",
                    "HUBSPOT_CLIENT_SECRET": SECRET,
                    "HUBSPOT_APP_ID": str(APP_ID),
                    "WORKERS": "1",
                    "THREADS": "1",  # one request at a time, as one deployed instance
                    "LOG_LEVEL": "WARNING",
                },
            ) as instance:
                floods = {
                    "new address each (read, signature checked)": forged_flood(
                        instance.url + PATH,
                        forged_body,
                        args.forged,
                        args.senders,
                        one_source=False,
                    ),
                    "one address (429 unread past the limit)": forged_flood(
                        instance.url + PATH, forged_body, args.forged, args.senders, one_source=True
                    ),
                }
    finally:
        with contextlib.suppress(Exception):
            _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    events = args.senders * args.batches * EVENTS_PER_BATCH
    cuts = statistics.quantiles(latencies, n=100)
    print("| senders | batches | events | events/s | p50 ms | p99 ms | failed or deferred |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.senders} | {len(latencies)} | {events} | {events / elapsed:,.0f} "
        f"| {cuts[49] * 1000:.0f} | {cuts[98] * 1000:.0f} | {len(errors)} |"
    )
    if errors:
        print("first failure:", errors[0], file=sys.stderr)
    print()
    print(
        "| forged flood, one instance | requests | refused/s per instance | p50 ms | p99 ms"
        " | answers |"
    )
    print("|---|---|---|---|---|---|")
    for label, (seconds, flood_latencies, answers) in floods.items():
        flood_cuts = statistics.quantiles(flood_latencies, n=100)
        refused = answers[401] + answers[429]
        shown = ", ".join(f"{status}: {n}" for status, n in sorted(answers.items()))
        print(
            f"| {label} | {len(flood_latencies)} | {refused / seconds:,.0f} "
            f"| {flood_cuts[49] * 1000:.1f} | {flood_cuts[98] * 1000:.1f} | {shown} |"
        )


if __name__ == "__main__":
    main()
