"""Webhook delivery shaped like HubSpot's: signed batches of <= 100 events, retried over 24 hours.

Changes arrive from the store (already in change order); up to
``max_concurrent_requests`` deliveries are in flight at once (HubSpot's default is 10
per account, configurable in the app's webhook settings). A failed batch (connection
error, timeout, or a 4xx/5xx answer; 4xx retry can be switched off) is retried up to
``max_retries`` times (HubSpot: 10, spread over 24 hours, the first after minutes)
on :func:`retry_delay_seconds`'s schedule, each attempt with the next
``attemptNumber`` and freshly signed. ``time_scale`` runs that schedule faster (1.0
is HubSpot's real time; a test's 0.0001 makes 24 hours about 9 seconds).
``shuffle`` and ``duplicate_rate`` reproduce HubSpot's unordered, at-least-once
delivery. docs/hubspot.md ("Webhook delivery") gives the sources.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from shared.hubspot.signatures import sign_v1, sign_v3

log = logging.getLogger("warp_hubspot_sync.emulator")

USER_AGENT = (
    "HubSpot Connect 2.0 (http://dev.hubspot.com/) (namespace: webhooks-nio-http-client) "
    "- WebhooksExecutorDaemon-executor"
)
_FIRST_FIELDS = ("eventId", "subscriptionId", "portalId", "appId", "occurredAt", "subscriptionType")
# HubSpot refuses subscriptions to these properties.
_UNSUBSCRIBABLE = {"hs_lastmodifieddate", "lastmodifieddate", "num_unique_conversion_events"}


# HubSpot retries "up to 10 times", "spread out over the next 24 hours" with "random
# delays"; its older documentation gave the shape: the first retry after minutes,
# each next one twice as far. 80 s doubling puts the tenth retry 22.7 hours after
# the first failure, so the jittered schedule (each step 90-100 %) stays in 24 hours.
FIRST_RETRY_SECONDS = 80.0
RETRY_JITTER = 0.1
DEFAULT_MAX_CONCURRENT_REQUESTS = 10


def retry_delay_seconds(retry: int, jitter: float) -> float:
    """HubSpot time from attempt ``retry - 1`` failing to retry ``retry`` (1, 2, ...).

    ``jitter`` in [0, 1) shortens the step by up to ``RETRY_JITTER`` of it.
    """
    return FIRST_RETRY_SECONDS * 2 ** (retry - 1) * (1 - RETRY_JITTER * jitter)


def subscription_id(subscription_type: str, property_name: str | None = None) -> int:
    """A stable subscription id per subscription type (and property for propertyChange)."""
    key = f"{subscription_type}:{property_name or ''}".encode()
    return 1_000_000 + zlib.crc32(key) % 9_000_000


@dataclass
class Attempt:
    """One POST of a batch, for tests and the stats endpoint."""

    attempt: int
    events: int
    status: int | None  # None: connection error or timeout
    error: str | None


@dataclass
class _Batch:
    events: list[dict[str, Any]]
    attempt: int = 0


class WebhookDispatcher:
    """Queues change events and delivers them; see the module docstring."""

    def __init__(
        self,
        *,
        url: str | None = None,
        client_secret: str | None = None,
        app_id: int = 0,
        portal_id: int = 0,
        time_scale: float = 1.0,
        max_retries: int = 10,
        retry_4xx: bool = True,
        batch_size: int = 100,
        max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
        timeout_s: float = 5.0,
        shuffle: bool = False,
        duplicate_rate: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.url, self.client_secret = url, client_secret
        self.app_id, self.portal_id = app_id, portal_id
        self.time_scale, self.max_retries, self.retry_4xx = time_scale, max_retries, retry_4xx
        self.batch_size = min(100, max(1, batch_size))
        self.timeout_s, self.shuffle, self.duplicate_rate = timeout_s, shuffle, duplicate_rate
        self.subscriptions: set[str] | None = None  # None: every subscription type
        self.max_concurrent_requests = max(1, max_concurrent_requests)
        self._rng = random.Random(seed)
        self._cond = threading.Condition()
        self._pending: list[dict[str, Any]] = []
        self._retries: list[tuple[float, int, _Batch]] = []
        self._seq = itertools.count()
        self._event_ids = itertools.count(3_400_000_001)
        self._inflight = 0
        self._peak_inflight = 0
        self._paused = False
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self.attempts: deque[Attempt] = deque(maxlen=10_000)
        self.delivered = self.delivered_events = self.failed = self.retried = 0
        self.duplicated = self.discarded = 0

    # -- configuration and control ------------------------------------------------

    def configure(self, **settings: Any) -> None:
        """Change settings (url, client_secret, app_id, shuffle, duplicate_rate, retry_4xx, ...)."""
        with self._cond:
            for name, value in settings.items():
                if name.startswith("_") or not hasattr(self, name):
                    raise ValueError(f"unknown webhook setting: {name}")
                setattr(self, name, value)
            self.max_concurrent_requests = max(1, int(self.max_concurrent_requests))
            if self._threads:
                self._add_threads()
            self._cond.notify_all()

    def start(self) -> None:
        """Start the delivery threads."""
        with self._cond:
            self._stopping = False
            self._add_threads()

    def _add_threads(self) -> None:
        """One thread per request that may be in flight (threads beyond the limit wait)."""
        for n in range(len(self._threads), self.max_concurrent_requests):
            thread = threading.Thread(target=self._work, name=f"emulator-webhooks-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop delivering (undelivered events are dropped with the emulator)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 1)
        self._threads.clear()

    def pause(self) -> None:
        """Hold deliveries; events keep queueing."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        """Deliver again."""
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def flush(self) -> None:
        """Resume and make every scheduled retry due now."""
        with self._cond:
            self._paused = False
            self._retries = [(0.0, seq, batch) for _, seq, batch in self._retries]
            heapq.heapify(self._retries)
            self._cond.notify_all()

    def clear(self) -> None:
        """Drop queued events and retries, reset counters."""
        with self._cond:
            self._pending.clear()
            self._retries.clear()
            self.attempts.clear()
            self.delivered = self.delivered_events = self.failed = self.retried = 0
            self.duplicated = self.discarded = 0
            self._peak_inflight = self._inflight

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued, scheduled or in flight; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._retries or self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def stats(self) -> dict[str, int]:
        """Counters for tests and the control API."""
        with self._cond:
            return {
                "pending": len(self._pending),
                "scheduledRetries": len(self._retries),
                "inFlight": self._inflight,
                "peakInFlight": self._peak_inflight,
                "maxConcurrentRequests": self.max_concurrent_requests,
                "delivered": self.delivered,
                "deliveredEvents": self.delivered_events,
                "failed": self.failed,
                "retried": self.retried,
                "duplicated": self.duplicated,
                "discarded": self.discarded,
            }

    # -- queueing --------------------------------------------------------------

    def enqueue(self, changes: list[dict[str, Any]]) -> None:
        """Turn store changes into events and queue them (called in change order)."""
        with self._cond:
            for change in changes:
                kind = change["subscriptionType"]
                if self.subscriptions is not None and kind not in self.subscriptions:
                    continue
                if change.get("propertyName") in _UNSUBSCRIBABLE:
                    continue
                if not self.url:
                    self.discarded += 1
                    continue
                event = {
                    "eventId": next(self._event_ids),
                    "subscriptionId": subscription_id(kind, change.get("propertyName")),
                    "portalId": self.portal_id,
                    "appId": self.app_id,
                    **change,
                }
                self._pending.append(event)
            self._cond.notify_all()

    # -- delivery --------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
                while batch is None:
                    if self._stopping:
                        return
                    self._cond.wait(self._wait_time())
                    batch = self._next_batch()
                self._inflight += 1
                self._peak_inflight = max(self._peak_inflight, self._inflight)
            ok = self._post(batch)
            with self._cond:
                self._inflight -= 1
                self._after(batch, ok)
                self._cond.notify_all()

    def _next_batch(self) -> _Batch | None:
        if self._paused or self._stopping or self._inflight >= self.max_concurrent_requests:
            return None
        if self._retries and self._retries[0][0] <= time.monotonic():
            return heapq.heappop(self._retries)[2]
        if not self._pending:
            return None
        size = min(self.batch_size, len(self._pending))
        if self.shuffle:
            picked = sorted(self._rng.sample(range(len(self._pending)), size))
            events = [self._pending[i] for i in picked]
            for i in reversed(picked):
                del self._pending[i]
            self._rng.shuffle(events)
        else:
            events, self._pending[:size] = self._pending[:size], []
        return _Batch(events)

    def _wait_time(self) -> float | None:
        if self._paused or not self._retries:
            return None
        return max(0.0, self._retries[0][0] - time.monotonic())

    def _after(self, batch: _Batch, ok: bool) -> None:
        if ok:
            self.delivered += 1
            self.delivered_events += len(batch.events)
            if self.duplicate_rate:
                again = [
                    e
                    for e in batch.events
                    if not e.get("_dup") and self._rng.random() < self.duplicate_rate
                ]
                self._pending.extend({**e, "_dup": True} for e in again)
                self.duplicated += len(again)
            return
        if batch.attempt >= self.max_retries:
            self.failed += 1
            log.warning(
                "webhook batch given up",
                extra={"fields": {"events": len(batch.events), "attempts": batch.attempt + 1}},
            )
            return
        batch.attempt += 1
        self.retried += 1
        delay = retry_delay_seconds(batch.attempt, self._rng.random()) * self.time_scale
        heapq.heappush(self._retries, (time.monotonic() + delay, next(self._seq), batch))

    def _post(self, batch: _Batch) -> bool:
        url, secret = self.url, self.client_secret
        if not url:
            return False
        body = json.dumps(
            [_wire(e, batch.attempt) for e in batch.events], separators=(",", ":")
        ).encode()
        timestamp = int(time.time() * 1000)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-HubSpot-Timeout-Millis": str(int(self.timeout_s * 1000)),
        }
        if secret:
            headers.update(
                {
                    "X-HubSpot-Signature": sign_v1(secret, body),
                    "X-HubSpot-Signature-Version": "v1",
                    "X-HubSpot-Signature-v3": sign_v3(secret, "POST", url, body, timestamp),
                    "X-HubSpot-Request-Timestamp": str(timestamp),
                }
            )
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        status: int | None = None
        error: str | None = None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status = response.status
                response.read()
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
        except (OSError, TimeoutError) as exc:
            error = type(exc).__name__
        with self._cond:
            self.attempts.append(Attempt(batch.attempt, len(batch.events), status, error))
        if status is not None and status < 400:
            return True
        if status is not None and 400 <= status < 500 and status != 429 and not self.retry_4xx:
            batch.attempt = self.max_retries  # not retried: give up after this attempt
        return False


def _wire(event: dict[str, Any], attempt: int) -> dict[str, Any]:
    """HubSpot's field order, with this attempt's number."""
    out = {k: event[k] for k in _FIRST_FIELDS}
    out["attemptNumber"] = attempt
    out.update((k, v) for k, v in event.items() if k not in out and not k.startswith("_"))
    return out
