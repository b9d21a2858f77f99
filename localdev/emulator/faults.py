"""Injected faults: a seeded fraction of CRM answers fail, fixed latency, an outage switch."""

from __future__ import annotations

import random
import threading
from collections import Counter

# "timeout" holds the connection and closes it unanswered; "timeout_after_write"
# does so only after applying the request, the case where a retry must be idempotent.
# "429_secondly" is the legacy per-second 429 (policyName SECONDLY) on any endpoint.
FAULT_KINDS = ("429", "429_secondly", "500", "502", "503", "timeout", "timeout_after_write")
DEFAULT_KINDS = ("429", "500", "502", "timeout")


class FaultInjector:
    """Decides, per CRM call, whether and how it fails (thread-safe, reproducible with a seed)."""

    def __init__(
        self,
        rate: float = 0.0,
        kinds: tuple[str, ...] = DEFAULT_KINDS,
        latency_ms: int = 0,
        hold_ms: int = 2_000,
        seed: int | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.latency_ms = latency_ms
        self.hold_ms = hold_ms
        self.outage = False
        self.injected: Counter[str] = Counter()
        # How many more faults to inject at most (None: no limit): "fail the next call"
        # for a test, whatever else the machine is doing meanwhile.
        self.remaining: int | None = None
        self.configure(rate=rate, kinds=kinds, seed=seed)

    def configure(
        self,
        *,
        rate: float | None = None,
        kinds: tuple[str, ...] | list[str] | None = None,
        seed: int | None = None,
        count: int | None = None,
    ) -> None:
        """Change the fault rate, the kinds drawn from, and/or reseed; ``count`` caps the
        faults still to inject (a new rate without one lifts the cap)."""
        with self._lock:
            if count is not None or rate is not None:
                self.remaining = count
            if rate is not None:
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(f"fault rate must be within 0..1, got {rate}")
                self.rate = rate
            if kinds is not None:
                unknown = set(kinds) - set(FAULT_KINDS)
                if unknown or not kinds:
                    raise ValueError(f"fault kinds must be among {FAULT_KINDS}, got {list(kinds)}")
                self.kinds = tuple(kinds)
            if seed is not None or not hasattr(self, "_rng"):
                self._rng = random.Random(seed)

    def draw(self) -> str | None:
        """The fault for this call, or None. Draws on every call so a seed fixes the sequence."""
        with self._lock:
            roll = self._rng.random()
            kind = self._rng.choice(self.kinds)
            if roll >= self.rate or self.remaining == 0:
                return None
            if self.remaining is not None:
                self.remaining -= 1
            self.injected[kind] += 1
            return kind
