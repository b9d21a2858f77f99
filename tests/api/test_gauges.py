"""Gauge log lines for the backlog and budget alerts, from the database's numbers."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from shared.db.repositories import customers, sync_queue
from shared.engine import Engine
from shared.engine.gauges import emit_gauges
from shared.observability import configure_logging

pytestmark = pytest.mark.integration


def _gauges(text: str) -> dict[str, Any]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return {g["metric"]: g["reading"] for g in lines if g.get("event") == "gauge"}


def test_backlog_and_budget_are_reported_at_most_once_a_minute(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging()
    with engine.database.transaction() as tx:
        customer = customers.insert(
            tx,
            {"ban": f"G-{uuid.uuid4().hex[:8]}", "company_name": "G", "customer_type": "PREPAID"},
        )
        for status in ("QUEUED", "FAILED", "COMPLETED"):
            row = sync_queue.enqueue(
                tx,
                kind="outbound",
                entity_type="customer",
                entity_id=str(customer["id"]),
                operation="UPDATE",
                direction="WARP_TO_HUBSPOT",
                payload={},
            )
            if status == "FAILED":
                sync_queue.fail(tx, str(row["id"]), "boom", retry_at=None)
            elif status == "COMPLETED":
                sync_queue.complete(tx, str(row["id"]))
    capsys.readouterr()
    assert emit_gauges(engine, force=True)
    readings = _gauges(capsys.readouterr().out)
    assert readings["hubspot_sync_queue_depth"] == 2  # the queued and the failed one
    assert 0 <= readings["hubspot_budget_used"] < 1
    assert not emit_gauges(engine)  # within the minute: nothing more to say
