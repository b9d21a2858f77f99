"""The HubSpot CRM client: companies, contacts, associations, properties.

One :class:`httpx.Client` (a connection pool) per process, Bearer auth, explicit
connect and read timeouts. Every request first draws on the shared rate limiter
(:mod:`shared.hubspot.ratelimit`), so all instances together stay inside the
app's budget; each answer's rate-limit headers are fed back to it.

Failures become :mod:`shared.hubspot.errors` classes. Short transient failures
are retried here a few times with jittered exponential backoff, within a small
total wait (``max_retry_wait``, 5 s by default); a 429 pauses the bucket for
every instance and waits for it when the wait fits ``max_rate_wait`` (the
ten-second window); anything longer is raised, retryable, with ``retry_after``
for the caller to hand to Cloud Tasks. Requests that may have been applied
(a create whose answer timed out or came back 5xx) are not resent: sending a
create twice makes two records. Connection failures before sending, 423 and
429 are always safe to repeat.

This module is the client and its request loop (the limiter gate, the 429 pause).
One HTTP exchange is :mod:`shared.hubspot._transport`, and whether to retry is the
pure :func:`shared.hubspot._retry.decide`. The APIs built on the loop: records and
batches of one object type (:mod:`shared.hubspot._objects`, searching in
:mod:`shared.hubspot._search`), associations (:mod:`shared.hubspot._associations`)
and property definitions (:mod:`shared.hubspot._schema`).

With ``HUBSPOT_READ_ACCESS_TOKEN`` set, every read (a GET, a batch read, a search)
carries that token and only writes carry ``HUBSPOT_ACCESS_TOKEN``, so the token
used most often, and by the most code paths, cannot change HubSpot if it leaks.

Neither the token nor property values are logged. httpx logs each request URL
at INFO, and a GET by ``idProperty=email`` carries an address in its path, so
the client quietens the ``httpx`` logger unless someone configured it.
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from shared.config.settings import Settings
from shared.db.connection import Database
from shared.errors import ConfigurationError
from shared.hubspot._associations import Associations
from shared.hubspot._objects import ObjectsApi
from shared.hubspot._retry import Action, Attempt, RetryLimits, decide, pause_for_429
from shared.hubspot._schema import Schema
from shared.hubspot._transport import Transport
from shared.hubspot.errors import RateLimited
from shared.hubspot.models import OBJECT_TYPES, ObjectType, RateLimitStatus
from shared.hubspot.ratelimit import Bucket, RateLimiter, SharedRateLimiter

log = logging.getLogger("warp_hubspot_sync.hubspot")
T = TypeVar("T")


class HubSpotClient(Associations, Schema):
    """A HubSpot CRM API client sharing one rate budget with every other instance."""

    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        read_access_token: str | None = None,
        limiter: RateLimiter,
        timeout: tuple[float, float] = (5.0, 20.0),
        max_transient_retries: int = 3,
        max_retry_wait: float = 5.0,
        max_rate_wait: float = 11.0,
        read_concurrency: int = 1,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not access_token:
            raise ConfigurationError("HUBSPOT_ACCESS_TOKEN is empty")
        connect, read = timeout
        self._transport = Transport(
            base_url,
            access_token,
            read_access_token=read_access_token,
            timeout=httpx.Timeout(connect=connect, read=read, write=read, pool=connect),
            transport=transport,
        )
        self._limiter = limiter
        self.max_transient_retries = max_transient_retries
        self.max_retry_wait = max_retry_wait
        self.max_rate_wait = max_rate_wait
        self.read_concurrency = max(1, read_concurrency)
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._sleep = sleep
        self.last_rate_limit: RateLimitStatus | None = None
        httpx_log = logging.getLogger("httpx")
        if httpx_log.level == logging.NOTSET:
            httpx_log.setLevel(logging.WARNING)

    @classmethod
    def from_settings(cls, settings: Settings, database: Database) -> HubSpotClient:
        """A client for the configured HubSpot (or emulator) with the shared limiter."""
        if settings.hubspot_access_token is None:
            raise ConfigurationError(
                "HUBSPOT_ACCESS_TOKEN is not set (locally the emulator serves HubSpot's API:"
                " hubspot-sync emulator)"
            )
        return cls(
            settings.hubspot_base_url,
            settings.hubspot_access_token.get_secret_value(),
            read_access_token=(
                settings.hubspot_read_access_token.get_secret_value()
                if settings.hubspot_read_access_token is not None
                else None
            ),
            limiter=SharedRateLimiter.from_settings(settings, database),
            timeout=(
                settings.hubspot_connect_timeout_seconds,
                settings.hubspot_read_timeout_seconds,
            ),
            read_concurrency=settings.hubspot_read_concurrency,
        )

    def close(self) -> None:
        """Close the connection pool and the read threads."""
        with self._executor_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
        self._transport.close()

    def start_concurrently(self, calls: Sequence[Callable[[], T]]) -> list[Future[T]]:
        """Start independent calls, ``read_concurrency`` at a time; their futures in order.

        HubSpot answers a batch call in tens to hundreds of milliseconds; a large
        sync's reads overlap those waits (and its own planning) instead of queueing
        behind each other; the shared limiter still paces every call. Each call runs
        in a copy of the caller's context, so its log lines keep the request's
        fields. With a concurrency of 1 the calls run here, one after another.
        """
        if self.read_concurrency == 1 or len(calls) <= 1:
            return [_run_now(call) for call in calls]
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.read_concurrency, thread_name_prefix="hubspot-read"
                )
            executor = self._executor
        return [executor.submit(contextvars.copy_context().run, call) for call in calls]

    # --- objects ------------------------------------------------------------------------

    def objects(self, object_type: ObjectType) -> ObjectsApi:
        """Operations on ``companies`` or ``contacts``."""
        if object_type not in OBJECT_TYPES:
            raise ValueError(f"unsupported object type {object_type!r}")
        return ObjectsApi(self, object_type)

    @property
    def companies(self) -> ObjectsApi:
        """Operations on companies."""
        return self.objects("companies")

    @property
    def contacts(self) -> ObjectsApi:
        """Operations on contacts."""
        return self.objects("contacts")

    # --- transport ----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        op: str,
        bucket: Bucket = Bucket.BURST,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send one API call through the limiter, with bounded retries; raise on failure.

        ``op`` names the operation in logs (never the path: it can hold an email).
        ``idempotent=False`` stops retries after anything that may have been applied.
        """
        limits = RetryLimits(self.max_transient_retries, self.max_retry_wait, self.max_rate_wait)
        attempt = 0
        retry_waited = 0.0
        while True:
            self._limiter.acquire(bucket, max_wait=self.max_rate_wait)
            exchange = self._transport.send(method, path, params, json)
            if bucket is Bucket.BURST and exchange.response is not None:
                self._observe(exchange.response)
            error = exchange.error
            if error is None:
                assert exchange.response is not None
                return exchange.response
            if isinstance(error, RateLimited):
                self._pause_for(error, bucket)
            outcome = Attempt(error, attempt, retry_waited, exchange.maybe_applied, idempotent)
            decision = decide(outcome, limits, random.random())
            if decision.action is Action.RAISE:
                raise error
            delay = decision.delay
            log.warning(
                "HubSpot call failed; retrying",
                extra={
                    "fields": {
                        "op": op,
                        "attempt": attempt + 1,
                        "delay_s": round(delay, 3),
                        **error.as_dict(),
                    }
                },
            )
            if delay > 0:
                self._sleep(delay)
            retry_waited += delay
            attempt += 1

    def _observe(self, response: httpx.Response) -> None:
        status = RateLimitStatus.from_headers(response.headers)
        if status.remaining is not None:
            self.last_rate_limit = status
            self._limiter.observe(status)

    def _pause_for(self, error: RateLimited, bucket: Bucket) -> None:
        """Pause the bucket the 429 concerns for every instance; set ``error.retry_after``."""
        interval = self.last_rate_limit.interval_ms if self.last_rate_limit else None
        pause = pause_for_429(error.policy, bucket, error.retry_after, interval)
        if pause.bucket is None:
            self._limiter.pause_daily(pause.seconds, pause.reason)
        else:
            self._limiter.pause(pause.bucket, pause.seconds, pause.reason)
        error.retry_after = pause.seconds


def _run_now(call: Callable[[], T]) -> Future[T]:
    future: Future[T] = Future()
    try:
        future.set_result(call())
    except Exception as exc:  # delivered by result(), as from a pool thread
        future.set_exception(exc)
    return future
