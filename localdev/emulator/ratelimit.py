"""HubSpot's rate limits: a rolling burst window, a daily cap, and search's own per-second cap.

Only answered calls count: a 429 does not use up budget, as with HubSpot.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class Admission:
    """Whether a call may proceed; the headers to send; the 429 body if not."""

    allowed: bool
    headers: dict[str, str] = field(default_factory=dict)
    error: dict[str, Any] | None = None


class HubSpotRateLimits:
    """HubSpot's limits as the emulator enforces them (not the client's limiter); thread-safe.

    ``clock`` returns seconds (monotonic) for the windows.
    """

    def __init__(
        self,
        rate_limit: int = 100,
        window_ms: int = 10_000,
        daily_limit: int = 250_000,
        search_rate_per_second: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_limit = rate_limit
        self.window_ms = window_ms
        self.daily_limit = daily_limit
        self.search_rate_per_second = search_rate_per_second
        self._clock = clock
        self._lock = threading.Lock()
        self._burst: deque[float] = deque()
        self._search: deque[float] = deque()
        self._day = ""
        self._daily_used = 0

    def reset(self) -> None:
        """Forget all usage."""
        with self._lock:
            self._burst.clear()
            self._search.clear()
            self._daily_used = 0

    def check(self, *, search: bool) -> Admission:
        """Admit one call (``search`` selects search's limit) or refuse it."""
        with self._lock:
            now = self._clock()
            self._roll_day()
            if self._daily_used >= self.daily_limit:
                return Admission(
                    False,
                    {} if search else self._headers(now),
                    _policy_error("You have reached your daily limit.", "DAILY"),
                )
            if search:
                _expire(self._search, now, 1.0)
                if len(self._search) >= self.search_rate_per_second:
                    return Admission(
                        False,
                        {},
                        {
                            "status": "error",
                            "message": "You have reached your secondly limit.",
                            "category": "RATE_LIMITS",
                        },
                    )
                self._search.append(now)
                self._daily_used += 1
                return Admission(True, {})
            _expire(self._burst, now, self.window_ms / 1000)
            if len(self._burst) >= self.rate_limit:
                return Admission(
                    False,
                    self._headers(now),
                    _policy_error(
                        "You have reached your ten_secondly_rolling limit.", "TEN_SECONDLY_ROLLING"
                    ),
                )
            self._burst.append(now)
            self._daily_used += 1
            return Admission(True, self._headers(now))

    def _headers(self, now: float) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily_limit - self._daily_used)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(self.window_ms),
            "X-HubSpot-RateLimit-Max": str(self.rate_limit),
            "X-HubSpot-RateLimit-Remaining": str(max(0, self.rate_limit - len(self._burst))),
        }

    def _roll_day(self) -> None:
        # HubSpot resets at midnight in the account's time zone; the emulator's account is UTC.
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        if today != self._day:
            self._day, self._daily_used = today, 0


def _expire(window: deque[float], now: float, seconds: float) -> None:
    while window and window[0] <= now - seconds:
        window.popleft()


def _policy_error(message: str, policy: str) -> dict[str, Any]:
    return {"status": "error", "message": message, "errorType": "RATE_LIMIT", "policyName": policy}
