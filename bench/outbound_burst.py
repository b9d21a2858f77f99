"""Benchmark: a burst of WARP change messages through outbound_sync, coalesced into batch writes.

1,000 linked customers change (status) in WARP; 1,000 Pub/Sub push envelopes, one per
customer, are POSTed concurrently to outbound_sync (functions-framework's app on a
local HTTP server) in front of a HubSpot emulator with HubSpot's rate limit
(100 per 10 s). Printed: the HubSpot write calls the burst cost (goal <= 20), the
time from the first message to the drained backlog, and the latency of a lone change
(message in -> HubSpot updated; each sent at the start of a coalescing window, so no
other change shares its window) at p50/p99 with the default 2 s window, as Markdown
table rows. Goals: <= 20 write calls for the burst, p50 <= 300 ms for a lone change.

    python bench/outbound_burst.py [--customers 1000] [--senders 8] [--samples 20]

Database: a fresh database created (and dropped) on TEST_DATABASE_URL's server,
else DATABASE_URL's, else the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/reconcile.py's set-up helpers

import httpx
from reconcile import create_database, drop_database, seed, server_url

from localdev.drain import wait_drained
from localdev.emulator import Emulator
from shared.config.settings import load_settings
from shared.db import Database
from shared.db.connection import url_connector
from shared.engine import Engine
from shared.engine.edge import set_engine
from shared.hubspot import HubSpotClient
from shared.hubspot.properties import setup_properties
from shared.messages import ChangeMessage
from shared.messages.envelope import encode_push_envelope
from shared.tasks import InProcessDispatcher
from tests.helpers.functions import serve_function

TOKEN = "emulator-token"
HUBSPOT_LIMIT, WINDOW_MS = 100, 10_000
# Calls that change HubSpot: every batch write, single write and association.
WRITE_MARKERS = ("batch/update", "batch/create", "batch/upsert", "batch/archive")


def write_calls(stats: dict[str, Any]) -> int:
    """HubSpot calls that wrote something, from the emulator's per-endpoint counts."""
    total = 0
    for key, count in stats["calls"].items():
        method, _, path = key.partition(" ")
        is_batch_write = any(marker in path for marker in WRITE_MARKERS)
        is_single_write = method in ("PATCH", "PUT", "DELETE") or (
            method == "POST" and path.rstrip("/").count("/") == 4  # POST /crm/v3/objects/{type}
        )
        if is_batch_write or is_single_write:
            total += int(count)
    return total


def message(customer_id: str) -> bytes:
    change = ChangeMessage.model_validate(
        {
            "entity_type": "customer",
            "entity_id": customer_id,
            "operation": "UPDATE",
            "changed_fields": ["status"],
            "occurred_at": datetime.now(UTC).isoformat(),
            "trigger_source": "billing_job",
        }
    )
    return encode_push_envelope(change, uuid.uuid4().hex)


def post(client: httpx.Client, url: str, body: bytes) -> None:
    response = client.post(url, content=body, headers={"Content-Type": "application/json"})
    if response.status_code != 200 or response.json().get("outcome") != "accepted":
        raise RuntimeError(f"delivery not accepted: {response.status_code} {response.text}")


def main() -> None:
    """Run the benchmark and print the result rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    logging.disable(logging.INFO)  # one line per message would measure the terminal

    admin_url = server_url()
    db_url, name = create_database(admin_url)
    database = Database(url_connector(db_url), pool_size=8)
    try:
        with Emulator(port=0, rate_limit=HUBSPOT_LIMIT, window_ms=WINDOW_MS) as emu:
            settings = load_settings(
                database_url=db_url,
                hubspot_base_url=emu.url,
                hubspot_access_token=TOKEN,
                hubspot_rate_limit=int(HUBSPOT_LIMIT * 0.9),
                hubspot_rate_window_ms=WINDOW_MS,
                log_level="WARNING",
            )
            client = HubSpotClient.from_settings(settings, database)
            setup_properties(client)
            dispatcher = InProcessDispatcher(
                base=settings.retry_base_seconds,
                cap=settings.retry_cap_seconds,
                max_attempts=settings.retry_max_attempts,
            )
            engine = Engine(settings, database, client, dispatcher)
            set_engine(engine)  # the engine outbound_sync, served in-process, uses
            bans = seed(emu, database, args.customers)
            with database.transaction() as tx:
                ids = [
                    str(r["id"])
                    for r in tx.fetch(
                        "UPDATE accounts.customers SET status = 'SUSPENDED', updated_at = NOW() "
                        "WHERE ban = ANY(CAST(:bans AS text[])) RETURNING id",
                        {"bans": bans},
                    )
                ]
            with serve_function("outbound_sync") as url, httpx.Client(timeout=60) as http:
                bodies = [message(cid) for cid in ids]
                before = write_calls(emu.stats())
                started = time.monotonic()
                with ThreadPoolExecutor(args.senders) as pool:
                    list(pool.map(lambda b: post(http, url, b), bodies))
                pushed = time.monotonic() - started
                if not wait_drained(engine, timeout=600):
                    raise RuntimeError("the outbound backlog did not drain")
                drained = time.monotonic() - started
                writes = write_calls(emu.stats()) - before
                window = settings.coalesce_delay_seconds
                latencies = lone_change_latencies(engine, emu, http, url, ids, args.samples, window)
            dispatcher.stop()
            client.close()
    finally:
        set_engine(None)
        database.close()
        drop_database(admin_url, name)
    p50 = statistics.median(latencies)
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
    print("| messages | customers | HubSpot write calls | pushed in | drained in |")
    print("|---|---|---|---|---|")
    print(f"| {len(ids)} | {len(ids)} | {writes} | {pushed:.2f} s | {drained:.2f} s |")
    print()
    print("| lone change, message in -> HubSpot updated | samples | p50 | p99 |")
    print("|---|---|---|---|")
    print(
        f"| coalescing window {settings.coalesce_delay_seconds:g} s | {len(latencies)} "
        f"| {p50 * 1000:.0f} ms | {p99 * 1000:.0f} ms |"
    )


def lone_change_latencies(
    engine: Engine,
    emu: Emulator,
    http: httpx.Client,
    url: str,
    ids: list[str],
    samples: int,
    window: float,
) -> list[float]:
    """One change per coalescing window: from the POST until the emulator holds it."""
    latencies = []
    for i, cid in enumerate(ids[:samples]):
        if window > 0:  # the next window's start: no other change shares this one
            time.sleep(window - time.time() % window + 0.01)
        status = "TRIAL" if i % 2 == 0 else "ACTIVE"
        with engine.database.transaction() as tx:
            row = tx.fetch_one(
                "UPDATE accounts.customers SET status = :status, updated_at = NOW() "
                "WHERE id = CAST(:id AS uuid) RETURNING external_ids",
                {"status": status, "id": cid},
            )
        assert row is not None
        company = row["external_ids"]["hubspot_company_id"]
        started = time.monotonic()
        post(http, url, message(cid))
        deadline = started + 60
        while emu.values("companies", company).get("warp_status") != status:
            if time.monotonic() > deadline:
                raise RuntimeError("a single change did not reach HubSpot within 60 s")
            time.sleep(0.005)  # the emulator's state is in this process: poll it
        latencies.append(time.monotonic() - started)
    return latencies


if __name__ == "__main__":
    main()
