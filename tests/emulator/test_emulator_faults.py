"""Emulator rate limits, injected faults, outage, the control API and the CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from localdev.emulator import Emulator
from tests.helpers.webhook_sink import WebhookSink

pytestmark = pytest.mark.integration
AUTH = {"Authorization": "Bearer emulator-token"}
SEARCH = {"filterGroups": [], "limit": 1}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(headers=AUTH, timeout=5) as client:
        yield client


def _wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_burst_limit_counts_down_then_429s_with_policy(http: httpx.Client) -> None:
    with Emulator(rate_limit=5, window_ms=60_000) as emu:
        url = f"{emu.url}/crm/v3/objects/companies"
        remaining = []
        for _ in range(5):
            answer = http.get(url)
            assert answer.status_code == 200
            assert answer.headers["X-HubSpot-RateLimit-Max"] == "5"
            assert answer.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "60000"
            assert answer.headers["X-HubSpot-RateLimit-Daily"] == "250000"
            remaining.append(int(answer.headers["X-HubSpot-RateLimit-Remaining"]))
        assert remaining == [4, 3, 2, 1, 0]
        limited = http.post(f"{url}/batch/read", json={"inputs": []})
        assert limited.status_code == 429
        body = limited.json()
        assert set(body) == {
            "status",
            "message",
            "errorType",
            "correlationId",
            "policyName",
            "requestId",
        }
        assert body["policyName"] == "TEN_SECONDLY_ROLLING" and body["errorType"] == "RATE_LIMIT"
        assert body["message"] == "You have reached your ten_secondly_rolling limit."
        assert limited.headers["X-HubSpot-RateLimit-Remaining"] == "0"
        assert (
            http.post(f"{url}/search", json=SEARCH).status_code == 200
        )  # search has its own limit
        assert http.get(f"{emu.url}/_emulator/stats").status_code == 200  # control is never limited
        stats = emu.stats()
        assert stats["rateLimited"] == {"POST /crm/v3/objects/companies/batch/read": 1}
        assert stats["calls"]["GET /crm/v3/objects/companies"] == 5


def test_window_rolls(http: httpx.Client) -> None:
    with Emulator(rate_limit=2, window_ms=200) as emu:
        url = f"{emu.url}/crm/v3/objects/contacts"
        assert [http.get(url).status_code for _ in range(3)] == [200, 200, 429]
        _wait_for(lambda: http.get(url).status_code == 200)  # the window rolled on


def test_control_api_resets_the_window(http: httpx.Client) -> None:
    with Emulator(rate_limit=2, window_ms=60_000) as emu:
        url = f"{emu.url}/crm/v3/objects/contacts"
        assert [http.get(url).status_code for _ in range(3)] == [200, 200, 429]
        limits = http.post(f"{emu.url}/_emulator/limits", json={"reset": True, "rateLimit": 3})
        assert limits.json()["rateLimit"] == 3
        assert [http.get(url).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_daily_limit(http: httpx.Client) -> None:
    # A burst limit far above the calls made, so only the daily limit can answer 429
    # however slowly the machine runs the calls.
    with Emulator(rate_limit=1_000, daily_limit=4) as emu:
        url = f"{emu.url}/crm/v3/objects/contacts"
        answers = [http.get(url) for _ in range(5)]
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
        daily = answers[-1]
        assert daily.json()["policyName"] == "DAILY"
        assert daily.json()["message"] == "You have reached your daily limit."
        assert daily.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"


def test_search_secondly_limit(http: httpx.Client) -> None:
    with Emulator(search_rate_per_second=2) as emu:
        answers = [
            http.post(f"{emu.url}/crm/v3/objects/companies/search", json=SEARCH) for _ in range(3)
        ]
        assert [a.status_code for a in answers] == [200, 200, 429]
        body = answers[2].json()
        assert set(body) == {"status", "message", "correlationId", "category"}
        assert body["message"] == "You have reached your secondly limit."
        assert body["category"] == "RATE_LIMITS"
        assert not any(h.lower().startswith("x-hubspot-ratelimit") for h in answers[0].headers)


def _statuses(seed: int, calls: int) -> list[int]:
    with Emulator(
        fault_rate=0.3, fault_kinds=("429", "500", "502"), seed=seed, rate_limit=10_000
    ) as emu:
        with httpx.Client(headers=AUTH) as http:
            statuses = [
                http.get(f"{emu.url}/crm/v3/objects/companies").status_code for _ in range(calls)
            ]
        assert dict(emu.faults.injected) == {
            str(k): v for k, v in Counter(statuses).items() if k != 200
        }
        return statuses


def test_faults_follow_the_seeded_rate() -> None:
    first = _statuses(42, 300)
    assert first == _statuses(42, 300)  # reproducible
    assert first != _statuses(43, 300)
    counts = Counter(first)
    assert set(counts) == {200, 429, 500, 502}
    assert 60 <= 300 - counts[200] <= 120  # 0.3 of 300 = 90, well inside binomial bounds


def test_fault_bodies(http: httpx.Client) -> None:
    with Emulator(fault_rate=1.0, fault_kinds=("502",)) as emu:
        answer = http.get(f"{emu.url}/crm/v3/objects/companies")
        assert answer.status_code == 502 and answer.headers["Content-Type"].startswith("text/html")
        emu.set_faults(kinds=["500"])
        answer = http.get(f"{emu.url}/crm/v3/objects/companies")
        assert answer.status_code == 500 and answer.json()["status"] == "error"


def test_a_fault_count_fails_exactly_that_many_calls(http: httpx.Client) -> None:
    with Emulator() as emu:
        url = f"{emu.url}/crm/v3/objects/companies"
        emu.set_faults(rate=1.0, kinds=["500"], count=2)
        assert [http.get(url).status_code for _ in range(4)] == [500, 500, 200, 200]
        # Over the control API too; a new rate without a count lifts the cap.
        httpx.post(f"{emu.url}/_emulator/faults", json={"rate": 1.0, "count": 1})
        assert [http.get(url).status_code for _ in range(2)] == [500, 200]
        emu.set_faults(rate=1.0)
        assert [http.get(url).status_code for _ in range(3)] == [500, 500, 500]


def test_timeouts_hold_the_connection_and_may_have_written() -> None:
    with Emulator(fault_rate=1.0, fault_kinds=("timeout",), timeout_hold_ms=400) as emu:
        url = f"{emu.url}/crm/v3/objects/companies"
        with httpx.Client(headers=AUTH, timeout=httpx.Timeout(5, read=0.1)) as http:
            with pytest.raises(httpx.ReadTimeout):
                http.post(url, json={"properties": {"name": "lost"}})
            assert emu.state.live("companies") == []
            emu.set_faults(kinds=["timeout_after_write"])
            with pytest.raises(httpx.ReadTimeout):
                http.post(url, json={"properties": {"name": "written"}})
        assert [r.values["name"] for r in emu.state.live("companies")] == ["written"]


def test_latency_and_outage_switch(http: httpx.Client) -> None:
    with Emulator(latency_ms=150) as emu:
        url = f"{emu.url}/crm/v3/objects/companies"
        started = time.monotonic()
        assert http.get(url).status_code == 200
        assert time.monotonic() - started >= 0.15
        assert (
            http.post(
                f"{emu.url}/_emulator/faults", json={"outage": True, "latencyMs": 0}
            ).status_code
            == 200
        )
        assert [http.get(url).status_code for _ in range(3)] == [503] * 3
        http.post(f"{emu.url}/_emulator/faults", json={"outage": False})
        assert http.get(url).status_code == 200


def test_control_api_drives_the_emulator_over_http(http: httpx.Client) -> None:
    with WebhookSink() as sink, Emulator(webhook_time_scale=2.5e-5) as emu:
        control = f"{emu.url}/_emulator"
        configured = http.post(
            f"{control}/webhooks", json={"url": sink.url, "clientSecret": "s", "appId": 77}
        )
        assert configured.status_code == 200
        prop = {"name": "warp_ban", "type": "string", "hasUniqueValue": True}
        assert http.post(f"{control}/properties/companies", json=prop).status_code == 201
        ids = http.post(
            f"{control}/records/companies",
            json={
                "records": [
                    {"properties": {"name": "A", "warp_ban": "B1"}},
                    {"properties": {"name": "B"}},
                ]
            },
        ).json()["ids"]
        http.post(f"{control}/webhooks/pause")
        changed = http.post(
            f"{control}/ui/companies/{ids[0]}", json={"properties": {"name": "A2"}, "userId": 9}
        )
        assert changed.json() == {"changed": ["name"]}
        merged = http.post(
            f"{control}/merge/companies",
            json={"primaryObjectId": ids[0], "objectIdToMerge": ids[1], "userId": 9},
        ).json()["id"]
        assert merged not in ids
        assert http.get(f"{control}/webhooks").json()["pending"] == 2
        http.post(f"{control}/webhooks/flush")
        assert emu.webhooks.wait_idle(5)
        assert [(e["subscriptionType"], e["sourceId"], e["appId"]) for e in sink.events()] == [
            ("company.propertyChange", "userId:9", 77),
            ("company.merge", "userId:9", 77),
        ]
        by_ban = http.get(
            f"{emu.url}/crm/v3/objects/companies/B1?idProperty=warp_ban&properties=name"
        )
        assert by_ban.json()["properties"]["name"] == "A2"
        snapshot = http.get(f"{control}/records/companies/{ids[1]}").json()
        assert snapshot["archived"] is True
        stats = http.get(f"{control}/stats").json()
        assert stats["calls"] == {"GET /crm/v3/objects/companies/{id}": 1}
        assert stats["webhooks"]["delivered"] == 1
        assert http.post(f"{control}/reset").status_code == 200
        assert emu.state.live("companies") == [] and emu.stats()["calls"] == {}
        assert http.post(f"{control}/nonsense").status_code == 404


def test_cli_serves_until_interrupted() -> None:
    script = Path(sys.executable).with_name("hubspot-sync")
    process = subprocess.Popen(
        [str(script), "emulator", "--port", "0", "--rate-limit", "7"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        answer = httpx.get(f"{url.group(0)}/crm/v3/objects/companies", headers=AUTH)
        assert answer.status_code == 200 and answer.headers["X-HubSpot-RateLimit-Max"] == "7"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
