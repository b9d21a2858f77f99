"""The webhook's rate limit: a source that keeps sending bad signatures is refused unread.

The webhook is public (HubSpot cannot send Google identity tokens), so anyone can
flood it with unsigned or forged requests. Three things bound what such a flood costs:

- The adapter verifies a delivery (``webhook.verify_delivery``: settings only) before
  anything else uses the engine: a refused request never opens a database connection
  nor waits for a pool slot (building the engine connects to nothing), so genuine
  deliveries keep every connection of the pool.
- This gate: per instance, a source whose requests failed the signature check
  ``WEBHOOK_SOURCE_FAILURE_LIMIT`` times within ``WEBHOOK_SOURCE_FAILURE_WINDOW_SECONDS``
  gets 429 with ``Retry-After`` before its body is even read (no read, no HMAC). Only
  failures count, so HubSpot, whose deliveries verify, is never refused; and a 429 is
  what HubSpot retries anyway, should a source ever be shared.
- Terraform's ``max_instances["webhook_receiver"]`` with one request per instance:
  however many requests arrive, at most that many are being refused at once, and the
  database connection budget (``terraform_data.db_connection_budget``) already counts
  every instance.

Per instance and in memory on purpose: the state it protects (this instance's CPU)
is per instance, and a shared gate would cost the database round trip it exists to
avoid. The source is the last ``X-Forwarded-For`` entry: Cloud Run sets that header
to the caller's address, replacing what the caller sent; a load balancer appends the
caller's address; so the last entry is never the caller's own claim
(docs/reliability.md, "A flood of forged webhooks").
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger("warp_hubspot_sync.inbound")

# Sources remembered at most (oldest forgotten first): a flood from many addresses
# costs bounded memory, about 100 bytes a source.
MAX_SOURCES = 10_000


def source_of(headers: Mapping[str, str], remote_addr: str | None) -> str:
    """The caller's address: the last ``X-Forwarded-For`` entry, else the peer's."""
    forwarded = [part.strip() for part in (headers.get("X-Forwarded-For") or "").split(",")]
    forwarded = [part for part in forwarded if part]
    if forwarded:
        return forwarded[-1]
    return remote_addr or "unknown"


@dataclass
class _Failures:
    since: float
    count: int


class SourceGate:
    """Signature failures per source in a fixed window; refuses a source over the limit."""

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._max_sources = max_sources
        self._failures: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, source: str) -> float | None:
        """Seconds until ``source`` may try again; None when it may now."""
        now = self._clock()
        with self._lock:
            entry = self._failures.get(source)
            if entry is None or entry.count < self.limit:
                return None
            left = entry.since + self.window_seconds - now
            if left <= 0:
                del self._failures[source]
                return None
            return left

    def failed(self, source: str) -> None:
        """Count one failed signature check of ``source``; log when it trips the limit."""
        now = self._clock()
        with self._lock:
            entry = self._failures.get(source)
            if entry is None or now - entry.since >= self.window_seconds:
                entry = _Failures(since=now, count=0)
            entry.count += 1
            self._failures[source] = entry
            self._failures.move_to_end(source)
            while len(self._failures) > self._max_sources:
                self._failures.popitem(last=False)
            tripped = entry.count == self.limit
        if tripped:
            # Once per source and window: the flood itself is not logged line by line.
            log.warning(
                "webhook source refused: too many bad signatures",
                extra={
                    "fields": {
                        "source": source,
                        "failures": self.limit,
                        "window_s": self.window_seconds,
                    }
                },
            )


_gate: SourceGate | None = None
_gate_lock = threading.Lock()


def get_gate(limit: int, window_seconds: float) -> SourceGate:
    """The process-wide gate with this limit and window (a new one if they changed)."""
    global _gate
    with _gate_lock:
        if _gate is None or (_gate.limit, _gate.window_seconds) != (limit, window_seconds):
            _gate = SourceGate(limit, window_seconds)
        return _gate
