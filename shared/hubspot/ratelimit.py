"""The HubSpot rate limit, shared by every process through PostgreSQL.

HubSpot counts requests per app in a *rolling* ten-second window
(``TEN_SECONDLY_ROLLING``), search requests per second, and requests per
account per day (hubspot-api.md §4). Every Cloud Function instance draws on the
same budgets, so the limiter's state lives in two tables
(``0010_rate_limiter.sql``) and each grant is one short statement in its own
transaction on a pooled connection, never inside the caller's transaction.

Why a sliding-window log rather than a refilling token bucket: a bucket of
capacity C refilled at C per window grants 2C in one rolling window (C at once
from a full bucket, C more as it refills), which is exactly what earns 429s
from a rolling limit; shrinking C to avoid that wastes half the budget. The
log (the last ``max_requests`` grant times, in one row's array) grants the
full budget in every window and never more, and costs the same single
``UPDATE ... RETURNING``: it drops grants older than the window, grants when
fewer than ``max_requests`` remain, and otherwise returns how long until the
oldest one leaves the window. The time is the database server's clock, one
clock for every instance.

The daily budget is counted over a rolling 24 hours in quarter-hour slots.
HubSpot resets its daily count at midnight *in the account's time zone*, which
we are not told; a counter reset at midnight UTC would let a full budget be
spent on each side of 00:00 UTC, both inside the same HubSpot day (for an
account in New York, 19:00 to 24:00 local), and no fixed margin covers that.
Any HubSpot day is 96 consecutive quarter-hour slots (every time zone offset is
a multiple of 15 minutes), so "at most ``budget`` in any 96 consecutive slots"
keeps every possible HubSpot day under the budget, whatever the zone. The
budget (default 237,500) stays below HubSpot's cap (250,000) to leave room for
calls made outside this service with the same account.

A 429 pauses the bucket it concerns for everyone (``pause``), and the
``X-HubSpot-RateLimit-Remaining``/``-Max`` headers correct drift (``observe``):
if HubSpot reports fewer requests left than our log does (another client of the
same app, a clock skew), phantom grants are added so that our remaining count
never exceeds HubSpot's; "remaining 0" thus pauses us until the window rolls.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import pg8000.dbapi

from shared.config.settings import Settings
from shared.db.connection import Database, Row, Session
from shared.errors import ConfigurationError
from shared.hubspot.errors import DailyBudgetExhausted, RateLimited
from shared.hubspot.models import RateLimitStatus

log = logging.getLogger("warp_hubspot_sync.hubspot.ratelimit")

SLOT_SECONDS = 900  # a quarter of an hour: every time zone offset is a multiple of it
SLOTS_PER_DAY = 96


class Bucket(StrEnum):
    """Which budget a request draws on (besides the daily one, which all share)."""

    BURST = "burst"
    SEARCH = "search"


class RateLimiter(Protocol):
    """What the client needs from a limiter."""

    def acquire(self, bucket: Bucket, *, max_wait: float | None = None) -> float:
        """Block until ``bucket`` grants one request; return the seconds waited."""

    def pause(self, bucket: Bucket, seconds: float, reason: str) -> None:
        """Stop every process from drawing on ``bucket`` for ``seconds``."""

    def pause_daily(self, seconds: float, reason: str) -> None:
        """Stop every process from calling HubSpot at all for ``seconds``."""

    def observe(self, status: RateLimitStatus) -> None:
        """Correct the burst bucket from the rate-limit headers of an answer."""


@dataclass(frozen=True)
class Grant:
    """One acquire attempt: granted (at the database's time ``at``), or how long to wait."""

    granted: bool
    wait_seconds: float
    paused: bool = False
    at: datetime | None = None


def _compact(sql: str) -> str:
    """The statement without its comments and layout (it holds no string with ``--``).

    pg8000 scans a statement's text character by character in Python on every
    execute, to find the named parameters: the acquire statement as laid out below
    is ~2,800 characters, ~0.8 ms of CPU on each HubSpot call; compacted ~1,750, ~0.45 ms.
    """
    return " ".join(" ".join(line.split("--", 1)[0] for line in sql.splitlines()).split())


# (No array slices: pg8000's named paramstyle would read ``[1:95]`` as a parameter.)
# One statement: the window bucket grants or refuses (WHERE-free of the decision, so
# the row is always updated and RETURNING reports the outcome), and only when it
# granted does the daily counter count the request. Each clock reading happens inside
# the correlated sub-select, i.e. after the row lock is held, so a process that waited
# for the lock still records the time it was actually granted.
_ACQUIRE_SQL = _compact("""
WITH w AS (
    UPDATE accounts.hubspot_rate_windows AS r
    SET (grants, last_granted, granted_total, refused_total, updated_at) = (
        SELECT CASE WHEN d.ok THEN d.kept || d.ts ELSE d.kept END,
               d.ok,
               r.granted_total + CASE WHEN d.ok THEN 1 ELSE 0 END,
               r.refused_total + CASE WHEN d.ok THEN 0 ELSE 1 END,
               d.ts
        FROM (
            SELECT c.ts, c.kept,
                   (r.paused_until IS NULL OR r.paused_until <= c.ts)
                   AND cardinality(c.kept) < r.max_requests AS ok
            FROM (
                SELECT n.ts,
                       ARRAY(SELECT g FROM unnest(r.grants) AS g
                             WHERE g > n.ts - r.window_ms * INTERVAL '1 millisecond'
                             ORDER BY g) AS kept
                FROM (SELECT GREATEST(clock_timestamp(), r.grants[cardinality(r.grants)])
                             AS ts) AS n
                OFFSET 0  -- computed once: without it each use of c.kept re-sorts the log
            ) AS c
        ) AS d
    )
    WHERE r.name = :window
    RETURNING r.last_granted AS granted, r.updated_at AS now, r.grants[1] AS oldest,
              r.window_ms, r.paused_until
),
day AS (
    UPDATE accounts.hubspot_rate_daily AS y
    SET (slot, counts, last_granted, updated_at) = (
        SELECT e.slot,
               ARRAY(SELECT e.shifted[i] + CASE WHEN e.ok AND i = 96 THEN 1 ELSE 0 END
                     FROM generate_series(1, 96) AS i ORDER BY i),
               e.ok,
               e.ts
        FROM (
            SELECT s.ts, s.slot, s.shifted,
                   (y.paused_until IS NULL OR y.paused_until <= s.ts)
                   AND (SELECT sum(x) FROM unnest(s.shifted) AS x) < y.budget AS ok
            FROM (
                SELECT t.ts, t.slot,
                       -- Move the counters (t.slot - y.slot) places towards the oldest;
                       -- reading past the end gives NULL, i.e. an empty new slot.
                       ARRAY(SELECT COALESCE(y.counts[i + LEAST(t.slot - y.slot, 96)::int], 0)
                             FROM generate_series(1, 96) AS i ORDER BY i) AS shifted
                FROM (
                    SELECT u.ts,
                           GREATEST(y.slot, floor(extract(epoch FROM u.ts) / 900)::bigint)
                               AS slot
                    FROM (SELECT clock_timestamp() AS ts) AS u
                ) AS t
                OFFSET 0  -- computed once, like c.kept above
            ) AS s
        ) AS e
    )
    WHERE y.name = :daily AND (SELECT granted FROM w)
    RETURNING y.last_granted AS day_granted, y.slot, y.counts, y.budget,
              y.paused_until AS day_paused_until, y.updated_at AS day_now
)
SELECT * FROM w LEFT JOIN day ON TRUE
""")

_ENSURE_WINDOW_SQL = """
INSERT INTO accounts.hubspot_rate_windows AS r (name, max_requests, window_ms)
VALUES (:name, :max_requests, :window_ms)
ON CONFLICT (name) DO UPDATE
SET max_requests = EXCLUDED.max_requests, window_ms = EXCLUDED.window_ms
WHERE (r.max_requests, r.window_ms) IS DISTINCT FROM (EXCLUDED.max_requests, EXCLUDED.window_ms)
"""

_ENSURE_DAILY_SQL = """
INSERT INTO accounts.hubspot_rate_daily AS y (name, budget) VALUES (:name, :budget)
ON CONFLICT (name) DO UPDATE SET budget = EXCLUDED.budget
WHERE y.budget IS DISTINCT FROM EXCLUDED.budget
"""

_PAUSE_WINDOW_SQL = """
UPDATE accounts.hubspot_rate_windows
SET paused_until = GREATEST(paused_until, clock_timestamp() + :seconds * INTERVAL '1 second'),
    pause_reason = :reason
WHERE name = :name
"""

_PAUSE_DAILY_SQL = """
UPDATE accounts.hubspot_rate_daily
SET paused_until = GREATEST(paused_until, clock_timestamp() + :seconds * INTERVAL '1 second')
WHERE name = :name
"""

# Phantom grants at "now" until our remaining count (max_requests - grants in the
# window) is no more than HubSpot's reported remaining.
_OBSERVE_SQL = _compact("""
UPDATE accounts.hubspot_rate_windows AS r
SET grants = (
    SELECT k.kept || array_fill(k.ts, ARRAY[GREATEST(0, r.max_requests - :remaining
                                                     - cardinality(k.kept))])
    FROM (
        SELECT n.ts,
               ARRAY(SELECT g FROM unnest(r.grants) AS g
                     WHERE g > n.ts - r.window_ms * INTERVAL '1 millisecond'
                     ORDER BY g) AS kept
        FROM (SELECT GREATEST(clock_timestamp(), r.grants[cardinality(r.grants)]) AS ts) AS n
    ) AS k
)
WHERE r.name = :name
RETURNING cardinality(r.grants) AS in_window
""")


def search_window(rate_per_second: float) -> tuple[int, int]:
    """(max_requests, window_ms) granting ``rate_per_second`` searches on average."""
    max_requests = max(1, int(rate_per_second))
    return max_requests, math.ceil(1000 * max_requests / rate_per_second)


def daily_reset_time(slot: int, counts: list[int], budget: int) -> datetime:
    """When a request fits the rolling 24 h again: enough of the oldest slots have left.

    ``counts`` are the 96 quarter-hour counters, oldest first, the last one being
    ``slot`` (quarter hours since the epoch). Slot ``i`` leaves the rolling day at
    the start of slot ``slot + i + 1``.
    """
    remaining, dropped = sum(counts), 0
    while remaining >= budget:  # terminates: with every slot dropped, 0 < budget
        remaining -= counts[dropped]
        dropped += 1
    return datetime.fromtimestamp((slot + dropped) * SLOT_SECONDS, UTC)


class SharedRateLimiter:
    """The PostgreSQL-backed limiter every instance shares (see the module docstring).

    ``key`` names the budget: processes with the same key share it. Use one key
    per HubSpot app (the burst limit is per app); the daily row uses the same key,
    so apps sharing one account should share a key too or split the daily budget.
    """

    def __init__(
        self,
        database: Database,
        *,
        key: str = "default",
        rate_limit: int = 90,
        window_ms: int = 10_000,
        search_rate_per_second: float = 4.0,
        daily_budget: int = 237_500,
        max_wait_seconds: float = 11.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._db = database
        self.key = key
        search_max, search_ms = search_window(search_rate_per_second)
        self._windows = {
            Bucket.BURST: (f"{key}:burst", rate_limit, window_ms),
            Bucket.SEARCH: (f"{key}:search", search_max, search_ms),
        }
        self._daily_name = f"{key}:daily"
        self.daily_budget = daily_budget
        self.max_wait_seconds = max_wait_seconds
        self._sleep = sleep
        self._ensured = False

    @classmethod
    def from_settings(cls, settings: Settings, database: Database) -> SharedRateLimiter:
        """The limiter for the configured app (key ``app-<HUBSPOT_APP_ID>`` or ``default``)."""
        key = f"app-{settings.hubspot_app_id}" if settings.hubspot_app_id else "default"
        return cls(
            database,
            key=key,
            rate_limit=settings.hubspot_rate_limit,
            window_ms=settings.hubspot_rate_window_ms,
            search_rate_per_second=settings.hubspot_search_rate_per_second,
            daily_budget=settings.hubspot_daily_budget,
        )

    def window_name(self, bucket: Bucket) -> str:
        """The row name of ``bucket`` (tests and the bench read the table by it)."""
        return self._windows[bucket][0]

    def limits(self, bucket: Bucket) -> tuple[int, int]:
        """(max_requests, window_ms) of ``bucket``."""
        _, max_requests, window_ms = self._windows[bucket]
        return max_requests, window_ms

    def ensure(self) -> None:
        """Create this key's rows, or update their limits to this process's settings."""
        try:
            with self._db.transaction() as tx:
                for name, max_requests, window_ms in self._windows.values():
                    tx.execute(
                        _ENSURE_WINDOW_SQL,
                        {"name": name, "max_requests": max_requests, "window_ms": window_ms},
                    )
                tx.execute(
                    _ENSURE_DAILY_SQL, {"name": self._daily_name, "budget": self.daily_budget}
                )
        except pg8000.dbapi.DatabaseError as exc:
            info = exc.args[0] if exc.args else None
            if isinstance(info, dict) and info.get("C") == "42P01":  # undefined table
                raise ConfigurationError(
                    "the rate limiter tables are missing: run `hubspot-sync db upgrade`"
                ) from exc
            raise
        self._ensured = True

    def try_acquire(self, bucket: Bucket) -> Grant:
        """One attempt, one statement. Raises :class:`DailyBudgetExhausted`."""
        if not self._ensured:
            self.ensure()
        row = self._run_acquire(bucket)
        if row is None:  # the rows were deleted under us (a test truncating, a restore)
            self.ensure()
            row = self._run_acquire(bucket)
            assert row is not None, "rate limiter rows missing right after creating them"
        now: datetime = row["now"]
        if not row["granted"]:
            paused_until = row["paused_until"]
            if paused_until is not None and paused_until > now:
                return Grant(False, (paused_until - now).total_seconds(), paused=True)
            free_at = row["oldest"] + timedelta(milliseconds=row["window_ms"])
            return Grant(False, max(0.001, (free_at - now).total_seconds()))
        if not row["day_granted"]:
            day_paused = row["day_paused_until"]
            if day_paused is not None and day_paused > row["day_now"]:
                resets_at = day_paused
            else:
                resets_at = daily_reset_time(row["slot"], list(row["counts"]), row["budget"])
            raise DailyBudgetExhausted(resets_at, used=sum(row["counts"]), budget=row["budget"])
        return Grant(True, 0.0, at=now)

    def acquire(self, bucket: Bucket, *, max_wait: float | None = None) -> float:
        """Wait (at most ``max_wait`` seconds in all) for a grant; return the seconds waited.

        Raises :class:`RateLimited` (retryable, with ``retry_after``) when the next
        slot is further away than the time left, so a Cloud Function hands the
        work to a task instead of sleeping through its deadline.
        """
        limit = self.max_wait_seconds if max_wait is None else max_wait
        started = time.monotonic()
        while True:
            grant = self.try_acquire(bucket)
            waited = time.monotonic() - started
            if grant.granted:
                return waited
            if waited + grant.wait_seconds > limit:
                raise RateLimited(
                    f"shared HubSpot {bucket.value} budget: next slot in "
                    f"{grant.wait_seconds:.2f} s, beyond the {limit:.1f} s this call may wait",
                    status=0,
                    category="LOCAL_RATE_LIMIT",
                    policy="PAUSED" if grant.paused else bucket.value.upper(),
                    retry_after=grant.wait_seconds,
                )
            # A little jitter so that processes woken by the same expiry do not all
            # hit the row in the same millisecond; losers get the next expiry time.
            self._sleep(grant.wait_seconds + random.uniform(0.0, 0.02))

    def pause(self, bucket: Bucket, seconds: float, reason: str) -> None:
        """Pause ``bucket`` for every process (after a 429 naming its policy)."""
        name = self.window_name(bucket)
        with self._db.transaction() as tx:
            tx.execute(_PAUSE_WINDOW_SQL, {"name": name, "seconds": seconds, "reason": reason})
        log.warning(
            "HubSpot rate limit hit; bucket paused for every instance",
            extra={"fields": {"bucket": name, "seconds": round(seconds, 3), "reason": reason}},
        )

    def pause_daily(self, seconds: float, reason: str) -> None:
        """Pause all HubSpot calls (HubSpot answered 429 with the DAILY policy)."""
        with self._db.transaction() as tx:
            tx.execute(_PAUSE_DAILY_SQL, {"name": self._daily_name, "seconds": seconds})
        log.error(
            "HubSpot daily limit reached; all calls paused",
            extra={"fields": {"key": self.key, "seconds": round(seconds, 1), "reason": reason}},
        )

    def observe(self, status: RateLimitStatus) -> None:
        """Add phantom grants when HubSpot reports fewer requests left than we count."""
        max_requests = self.limits(Bucket.BURST)[0]
        if status.remaining is None or status.remaining >= max_requests:
            return  # cannot be below our own count: nothing to correct, no round trip
        with self._db.transaction() as tx:
            tx.execute(
                _OBSERVE_SQL,
                {"name": self.window_name(Bucket.BURST), "remaining": max(0, status.remaining)},
            )

    def _run_acquire(self, bucket: Bucket) -> Row | None:
        params: dict[str, Any] = {"window": self.window_name(bucket), "daily": self._daily_name}
        # Every HubSpot call of every process locks these rows: in a statement of its own,
        # the lock ends with it, not a client round trip later (bench/reconcile.py: four
        # read threads queued on it for two thirds of their time).
        with self._db.autocommit() as session:
            return session.fetch_one(_ACQUIRE_SQL, params)


def daily_budget_used(tx: Session) -> dict[str, float]:
    """Per limiter key: requests in the rolling day (the counters not yet rolled out) / budget.

    Read by ``/metrics`` and the budget gauge; a ratio of 1 means work is paused.

    The row's counters end at slot ``slot``; by now ``current - slot`` of the oldest
    have left the rolling day, which is what the limiter's next grant would drop.
    """
    rows = tx.fetch(
        "SELECT y.name, y.budget, ("
        " SELECT COALESCE(sum(y.counts[i]), 0) FROM generate_series(1, :slots) AS i"
        " WHERE i > floor(extract(epoch FROM clock_timestamp()) / :slot_seconds)::bigint - y.slot"
        ") AS used FROM accounts.hubspot_rate_daily AS y",
        {"slots": SLOTS_PER_DAY, "slot_seconds": SLOT_SECONDS},
    )
    return {
        str(r["name"]).removesuffix(":daily"): float(r["used"]) / float(r["budget"]) for r in rows
    }
