"""The seed's dashboard queries, run by a real Prometheus against ``/metrics`` served locally.

Prometheus (Debian's ``prometheus`` package; CI installs it) scrapes ``sync_api`` every
second. The scripted run: a warm-up operation and conflict (so each series exists before
the run: ``rate()`` needs two samples), then the run itself, then 1,001 queued rows.
Each step waits until Prometheus has scraped what it wrote, then the three queries of
the seed's dashboard must return what the database says. Durations come from sync-log
rows written with chosen lengths (a real sync's length is the machine's); conflicts
from real syncs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.db.repositories import sync_log
from shared.engine import Engine
from shared.engine.sync import BOTH_WAYS, sync_customers
from tests.helpers.customers import acme_customer
from tests.helpers.functions import free_port, serve_function

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus")
if PROMETHEUS is None and os.environ.get("CI"):
    raise RuntimeError("CI installs Debian's prometheus package; it is missing")
if PROMETHEUS is None:
    pytest.skip("needs Debian's prometheus package", allow_module_level=True)

MEAN_DURATION = (
    "rate(hubspot_sync_duration_seconds_sum[5m]) / rate(hubspot_sync_duration_seconds_count[5m])"
)
CONFLICT_RATE = "rate(hubspot_sync_conflicts_total[1h])"
DEEP_QUEUE = "hubspot_sync_queue_depth > 1000"
SERIES = {"entity_type": "customer", "direction": "HUBSPOT_TO_WARP", "status": "SUCCESS"}


@pytest.fixture(scope="module")
def prometheus(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping sync_api's /metrics every second; yields its URL."""
    assert PROMETHEUS is not None
    folder = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    with serve_function("sync_api") as api:
        config = folder / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: sync_api\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['{api.removeprefix('http://')}']\n"
        )
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(folder / "prometheus.log").open("w"),
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _until(lambda: _ready(url), "Prometheus ready", folder)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _until(condition: Callable[[], bool], what: str, folder: Path | None = None) -> None:
    deadline = time.monotonic() + 90
    while not condition():
        if time.monotonic() > deadline:
            log = (folder / "prometheus.log").read_text()[-2000:] if folder else ""
            raise AssertionError(f"{what}: not seen within 90 s {log}")
        time.sleep(0.2)  # polling Prometheus for a scrape, not timing an outcome


def query(url: str, expression: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expression}, timeout=10)
    answer.raise_for_status()
    body = answer.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _value(url: str, expression: str) -> float | None:
    result = query(url, expression)
    return float(result[0]["value"][1]) if result else None


def _selector(name: str, **labels: str) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def conflicted_sync(engine: Engine, emulator: Any) -> None:
    """A first sync of a customer whose name differs in HubSpot: one LATEST_WINS conflict,
    settled for WARP (its row is newer than the seeded company)."""
    customer_id, _ = acme_customer(engine, emulator, name="Acme Renamed In HubSpot")
    (result,) = sync_customers(engine, [customer_id], allowed=BOTH_WAYS, triggered_by="test")
    assert result.status == "synced", result


def logged(engine: Engine, customer_id: str, *seconds: float) -> None:
    """Sync-log rows of the SERIES label set that took these durations."""
    start = datetime.now(UTC)
    with engine.database.transaction() as tx:
        for duration in seconds:
            sync_log.record(
                tx,
                entity_type="customer",
                entity_id=customer_id,
                operation="UPDATE",
                direction="HUBSPOT_TO_WARP",
                status="SUCCESS",
                started_at=start,
                completed_at=start + timedelta(seconds=duration),
            )


def scraped(url: str, name: str, labels: dict[str, str], expected: float) -> Callable[[], bool]:
    return lambda: _value(url, _selector(name, **labels)) == expected


def test_the_seeds_dashboard_queries_on_a_real_prometheus(
    prometheus: str, engine: Engine, emulator: Any
) -> None:
    total = _selector("hubspot_sync_duration_seconds_sum", **SERIES)
    conflicts = {
        "entity_type": "customer",
        "field_name": "company_name",
        "resolution": "LATEST_WINS",
        "kind": "first_sync",
    }
    customer_id, _ = acme_customer(engine, emulator)
    # Warm-up: every series the queries read exists before the run starts. Its one
    # operation takes the run's mean, so sum and count start in the run's proportion
    # and rate()'s extrapolation (capped where a counter would reach zero) scales both
    # alike: the query's answer is then the run's mean exactly.
    logged(engine, customer_id, 0.4)
    conflicted_sync(engine, emulator)
    _until(scraped(prometheus, "hubspot_sync_duration_seconds_count", SERIES, 1), "warm-up")
    _until(scraped(prometheus, "hubspot_sync_conflicts_total", conflicts, 1), "a conflict")

    logged(engine, customer_id, 0.1, 0.3, 0.5, 0.7)
    for _ in range(4):
        conflicted_sync(engine, emulator)
    _until(scraped(prometheus, "hubspot_sync_duration_seconds_count", SERIES, 5), "the run")
    _until(scraped(prometheus, "hubspot_sync_conflicts_total", conflicts, 5), "conflicts")
    assert _value(prometheus, total) == pytest.approx(2.0)

    (mean,) = [
        float(r["value"][1])
        for r in query(prometheus, MEAN_DURATION)
        if all(r["metric"].get(k) == v for k, v in SERIES.items())
    ]
    assert mean == pytest.approx(0.4)

    rates = query(prometheus, CONFLICT_RATE)
    mine = [r for r in rates if all(r["metric"].get(k) == v for k, v in conflicts.items())]
    assert len(mine) == 1 and float(mine[0]["value"][1]) > 0

    with engine.database.transaction() as tx:
        tx.execute(
            "INSERT INTO accounts.hubspot_sync_queue (entity_type, entity_id, operation, "
            "direction, payload, kind, status) SELECT 'customer', id, 'UPDATE', "
            "'WARP_TO_HUBSPOT', '{}', 'outbound', 'QUEUED' "
            "FROM accounts.customers, generate_series(1, 1001) LIMIT 1001"
        )
    _until(lambda: bool(query(prometheus, DEEP_QUEUE)), "the deep queue alert")
    (deep,) = query(prometheus, DEEP_QUEUE)
    assert deep["metric"]["status"] == "QUEUED" and float(deep["value"][1]) == 1001
