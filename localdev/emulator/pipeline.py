"""The CRM pipeline: authentication, outage, rate limits and injected faults, in HubSpot's
order, around each CRM handler.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from localdev.emulator.answers import Answer, error_answer
from localdev.emulator.api import Call, CrmApi
from localdev.emulator.errors import ApiError, new_correlation_id
from localdev.emulator.faults import FaultInjector
from localdev.emulator.properties import canonical_type
from localdev.emulator.ratelimit import HubSpotRateLimits
from localdev.emulator.scopes import missing_scopes
from localdev.emulator.store import Source

_AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
    "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


class CallCounts:
    """CRM calls per endpoint, the 429s the rate limiter gave and the batch reads that
    asked for property history (a subset of the calls), safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.rate_limited: Counter[str] = Counter()
        self.history_reads: Counter[str] = Counter()

    def call(self, key: str) -> None:
        """Record one CRM call, e.g. ``POST /crm/v3/objects/companies/batch/update``."""
        with self._lock:
            self.calls[key] += 1

    def limited(self, key: str) -> None:
        """Record one 429 from the rate limiter."""
        with self._lock:
            self.rate_limited[key] += 1

    def history_read(self, key: str) -> None:
        """Record one batch read that asked for property history."""
        with self._lock:
            self.history_reads[key] += 1

    def read(self) -> tuple[dict[str, int], dict[str, int]]:
        """Copies of (calls, rate-limited calls)."""
        with self._lock:
            return dict(self.calls), dict(self.rate_limited)

    def read_history(self) -> dict[str, int]:
        """A copy of the history reads per endpoint."""
        with self._lock:
            return dict(self.history_reads)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.rate_limited.clear()
            self.history_reads.clear()


class CrmPipeline:
    """Authentication, outage, limits and faults around the CRM handlers."""

    def __init__(
        self,
        api: CrmApi,
        *,
        limits: HubSpotRateLimits,
        faults: FaultInjector,
        access_tokens: Mapping[str, frozenset[str]],
        source: Callable[[], Source],
        counts: CallCounts,
    ) -> None:
        self.api = api
        self.limits = limits
        self.faults = faults
        self.access_tokens = access_tokens  # token -> the scopes it was granted
        self.source = source
        self.counts = counts

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: Any, raw: bytes
    ) -> Answer:
        matched = self.api.match(method, path)
        if matched is None:
            return error_answer(ApiError(404, "OBJECT_NOT_FOUND", f"No route for {method} {path}"))
        route, params = matched
        object_type = canonical_type(params["type"])
        key = f"{method} {route.template.replace('{type}', object_type or params['type'])}"
        self.counts.call(key)
        if self.faults.latency_ms:
            time.sleep(self.faults.latency_ms / 1000)
        scopes = self._scopes(headers.get("Authorization", ""))
        if scopes is None:
            return error_answer(
                ApiError(
                    401,
                    "INVALID_AUTHENTICATION",
                    _AUTH_MESSAGE,
                )
            )
        if object_type is not None and route.scope(object_type) not in scopes:
            return error_answer(missing_scopes(route.scope(object_type)))
        if self.faults.outage:
            return error_answer(ApiError(503, "", "Service Unavailable"))
        decision = self.limits.check(search=route.search)
        if not decision.allowed:
            self.counts.limited(key)
            assert decision.error is not None
            return _limit_answer(decision.error, decision.headers)
        fault = self.faults.draw()
        if fault in ("429", "429_secondly", "500", "502", "503"):
            return _fault_answer(fault, route.search, decision.headers)
        if fault == "timeout":
            return self._hold()
        if object_type is None:
            return error_answer(
                ApiError(
                    400, "VALIDATION_ERROR", f"Unable to infer object type from: {params['type']}"
                ),
                decision.headers,
            )
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return error_answer(
                ApiError(400, "VALIDATION_ERROR", "Invalid input JSON on line 1"), decision.headers
            )
        call = Call(method, params, query, body, self.source(), object_type)
        batch_read = route.handler == self.api.batch_read
        if batch_read and isinstance(body, dict) and body.get("propertiesWithHistory"):
            self.counts.history_read(key)
        try:
            status, result = route.handler(call)
            answer = Answer(status, result, decision.headers)
            answer.headers["X-HubSpot-Correlation-Id"] = new_correlation_id()
        except ApiError as exc:
            answer = error_answer(exc, decision.headers)
        return self._hold() if fault == "timeout_after_write" else answer

    def _hold(self) -> Answer:
        answer = Answer(0)
        answer.hold_seconds = self.faults.hold_ms / 1000
        return answer

    def _scopes(self, header: str) -> frozenset[str] | None:
        """The scopes of the header's bearer token; None when it is no token we issued."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.access_tokens.get(token.strip())


def _limit_answer(body: dict[str, Any], headers: dict[str, str]) -> Answer:
    correlation = new_correlation_id()
    full = {**body, "correlationId": correlation}
    if "policyName" in body:
        full["requestId"] = new_correlation_id()
    return Answer(429, full, {**headers, "X-HubSpot-Correlation-Id": correlation})


def _fault_answer(kind: str, search: bool, headers: dict[str, str]) -> Answer:
    if kind == "429_secondly":
        # HubSpot's retired per-second limit: its 429s named the policy "SECONDLY".
        return _limit_answer(
            {
                "status": "error",
                "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT",
                "policyName": "SECONDLY",
            },
            headers,
        )
    if kind == "429":
        if search:
            return _limit_answer(
                {
                    "status": "error",
                    "message": "You have reached your secondly limit.",
                    "category": "RATE_LIMITS",
                },
                {},
            )
        return _limit_answer(
            {
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "policyName": "TEN_SECONDLY_ROLLING",
            },
            headers,
        )
    if kind == "502":
        # HubSpot's edge answers gateway errors with an HTML page, not JSON.
        return Answer(
            502, raw=b"<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html"
        )
    if kind == "503":
        return error_answer(ApiError(503, "", "Service Unavailable"))
    return error_answer(ApiError(500, "INTERNAL_ERROR", "internal error"), headers)
