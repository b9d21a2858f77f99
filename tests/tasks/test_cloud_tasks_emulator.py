"""Our CloudTasksDispatcher against the real gcloud-tasks-emulator, dispatching to retry_worker.

The emulator pins protobuf<5, so it lives in its own virtual environment,
``.venv-tasks-emulator`` (``.ci/cloudtasks.sh`` creates it; CI runs it first).
Without it these tests skip and say so. The emulator dispatches HTTP tasks at
their schedule time with ``X-CloudTasks-TaskRetryCount``, and redelivers a non-2xx
answer at once (it ignores the queue's backoff): the worker's answers drive it.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from localdev.drain import wait_drained
from shared.db.repositories import customers, sync_queue
from shared.engine import Engine
from shared.messages import ChangeMessage
from shared.messages.envelope import encode_push_envelope
from shared.outbound import receive
from shared.retry import enqueue_failure
from shared.tasks import CloudTasksDispatcher
from tests.conftest import engine_settings
from tests.helpers.functions import free_port, serve_function

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = ROOT / ".venv-tasks-emulator" / "bin" / "gcloud-tasks-emulator"
PROJECT, REGION, QUEUE = "test-project", "us-central1", "sync-retry"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.cloudtasks,
    pytest.mark.skipif(
        not EMULATOR.exists(),
        reason="needs .venv-tasks-emulator with gcloud-tasks-emulator: run .ci/cloudtasks.sh",
    ),
]


def _until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)  # the state lives in the database and the emulator: poll it


@pytest.fixture(scope="module")
def tasks_emulator() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            str(EMULATOR),
            "start",
            "--port",
            str(port),
            "--default-queue",
            f"projects/{PROJECT}/locations/{REGION}/queues/{QUEUE}",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def listening() -> bool:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        return False

    try:
        _until(listening, timeout=30)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def cloud_engine(
    engine: Engine, database_url: str, emulator: Any, tasks_emulator: str
) -> Iterator[Engine]:
    """The module's engine with tasks going through the Cloud Tasks emulator to retry_worker."""
    original_dispatcher, original_settings = engine.dispatcher, engine.settings
    engine.hubspot.max_transient_retries = 0
    with serve_function("retry_worker") as worker_url:
        settings = engine_settings(
            database_url,
            emulator.url,
            tasks_queue=QUEUE,
            gcp_project=PROJECT,
            gcp_region=REGION,
            retry_worker_url=worker_url,
            cloud_tasks_emulator_host=tasks_emulator,
            retry_max_attempts=100,  # the emulator redelivers at once: many quick attempts
        )
        engine.settings = settings
        engine.dispatcher = CloudTasksDispatcher(settings)
        try:
            yield engine
        finally:
            engine.dispatcher, engine.settings = original_dispatcher, original_settings
            emulator.set_faults(outage=False)


def _customer(engine: Engine, emulator: Any) -> tuple[str, str]:
    ban = f"B-{uuid.uuid4().hex[:10]}"
    (company,) = emulator.seed("companies", [{"name": "Tasks Co", "warp_ban": ban}])
    with engine.database.transaction() as tx:
        row = customers.insert(
            tx,
            {
                "ban": ban,
                "company_name": "Tasks Co",
                "customer_type": "POSTPAID",
                "status": "TRIAL",
                "credit_limit": Decimal("10"),
                "contact": {"name": "Bo Chan"},
                "external_ids": {"hubspot_company_id": company},
            },
        )
    return str(row["id"]), company


def _status(engine: Engine, item_id: str) -> str:
    with engine.database.transaction() as tx:
        row = sync_queue.get(tx, item_id)
    assert row is not None
    return str(row["status"])


def test_queued_item_is_dispatched_and_completed(cloud_engine: Engine, emulator: Any) -> None:
    cid, company = _customer(cloud_engine, emulator)
    item = enqueue_failure(
        cloud_engine,
        kind="outbound",
        entity_id=cid,
        payload={"customer_id": cid, "fields": ["status"], "triggered_by": "pubsub"},
        error="ServerError: 502",
        retryable=True,
    )
    assert item["task_name"]
    _until(lambda: _status(cloud_engine, str(item["id"])) == "COMPLETED")
    assert emulator.values("companies", company)["warp_status"] == "TRIAL"


def test_503_answers_make_the_emulator_retry_until_hubspot_is_back(
    cloud_engine: Engine, emulator: Any
) -> None:
    cid, company = _customer(cloud_engine, emulator)
    emulator.set_faults(outage=True)
    item = enqueue_failure(
        cloud_engine,
        kind="outbound",
        entity_id=cid,
        payload={"customer_id": cid, "fields": None, "triggered_by": "pubsub"},
        error="ServerError: 503",
        retryable=True,
    )
    item_id = str(item["id"])

    def retried() -> bool:
        with cloud_engine.database.transaction() as tx:
            row = sync_queue.get(tx, item_id)
        return row is not None and row["retry_count"] >= 3

    _until(retried)
    emulator.set_faults(outage=False)
    _until(lambda: _status(cloud_engine, item_id) == "COMPLETED")
    assert emulator.values("companies", company)["warp_status"] == "TRIAL"


def test_change_message_flushes_through_a_scheduled_task(
    cloud_engine: Engine, emulator: Any
) -> None:
    cid, company = _customer(cloud_engine, emulator)
    with cloud_engine.database.transaction() as tx:
        customers.update_columns(tx, cid, {"status": "SUSPENDED"})
    change = ChangeMessage.model_validate(
        {
            "entity_type": "customer",
            "entity_id": cid,
            "operation": "UPDATE",
            "changed_fields": ["status"],
            "occurred_at": datetime.now(UTC).isoformat(),
            "trigger_source": "billing_job",
        }
    )
    receipt = receive(cloud_engine, encode_push_envelope(change, uuid.uuid4().hex), {})
    assert receipt.outcome == "accepted"
    _until(lambda: emulator.values("companies", company).get("warp_status") == "SUSPENDED")
    assert wait_drained(cloud_engine, timeout=30)
