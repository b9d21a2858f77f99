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

This module is the request loop (the limiter gate, the 429 pause) and the object
APIs; one HTTP exchange is :mod:`shared.hubspot._transport`, and whether to retry
is the pure :func:`shared.hubspot._retry.decide`.

Batch results are matched to inputs by id, unique property value or
``objectWriteTraceId``, never by position: HubSpot's ``results`` are not in
input order (hubspot-api.md §3.3). Per-record failures of a 207 are returned
beside the successes (:class:`BatchResult`), not raised; so are the inputs of a
batch update HubSpot refused whole (400), found by splitting the batch.

With ``HUBSPOT_READ_ACCESS_TOKEN`` set, every read (a GET, a batch read, a search)
carries that token and only writes carry ``HUBSPOT_ACCESS_TOKEN``, so the token
used most often, and by the most code paths, cannot change HubSpot if it leaks.

Neither the token nor property values are logged. httpx logs each request URL
at INFO, and a GET by ``idProperty=email`` carries an address in its path, so
the client quietens the ``httpx`` logger unless someone configured it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Any, TypeVar

import httpx

from shared.config.settings import Settings
from shared.db.connection import Database
from shared.errors import ConfigurationError
from shared.hubspot._retry import Action, Attempt, RetryLimits, decide, pause_for_429
from shared.hubspot._transport import Transport
from shared.hubspot.errors import (
    HubSpotError,
    RateLimited,
    ValidationError,
)
from shared.hubspot.models import (
    MERGED_IDS,
    OBJECT_TYPES,
    Association,
    BatchResult,
    HubSpotObject,
    ObjectType,
    Properties,
    RateLimitStatus,
    SearchPage,
    next_after,
)
from shared.hubspot.ratelimit import Bucket, RateLimiter, SharedRateLimiter

log = logging.getLogger("warp_hubspot_sync.hubspot")
T = TypeVar("T")

BATCH_SIZE = 100  # HubSpot's maximum records per batch call (§3.2)
# ... and per batch read asking for property history (docs/hubspot.md, item 1)
HISTORY_BATCH_SIZE = 50
LIST_PAGE_SIZE = 100
LIST_PAGE_SIZE_WITH_HISTORY = 50  # the official client's page size with propertiesWithHistory
SEARCH_PAGE_MAX = 200
SEARCH_RESULT_CAP = 10_000  # paging a search past 10,000 results is a 400 (§3.4)
# HubSpot refuses search bodies over 3,000 characters (§3.4); leave room for the rest.
SEARCH_IN_CHARS = 2_000

# Default association types, per HubSpot's v4 "default" association (unlabeled).
_SINGULAR = {"companies": "company", "contacts": "contact"}


class HubSpotClient:
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

    # --- associations -------------------------------------------------------------------

    def associate(
        self,
        from_type: ObjectType,
        from_id: str,
        to_type: ObjectType,
        to_id: str,
        *,
        primary: bool = False,
    ) -> None:
        """Link two records with HubSpot's default (unlabeled) association; idempotent.

        ``primary``: also make it the primary one (types 1/2: the contact's primary
        company), replacing a primary HubSpot set itself, e.g. by auto-association.
        """
        path = f"/crm/v4/objects/{from_type}/{from_id}/associations"
        if not primary:
            self.request("PUT", f"{path}/default/{to_type}/{to_id}", op=f"{from_type}.associate")
            return
        spec = {
            "associationCategory": "HUBSPOT_DEFINED",
            "associationTypeId": primary_association_type(from_type, to_type),
        }
        self.request(
            "PUT", f"{path}/{to_type}/{to_id}", json=[spec], op=f"{from_type}.associate_primary"
        )

    def associations(
        self, from_type: ObjectType, from_id: str, to_type: ObjectType
    ) -> list[Association]:
        """Every ``to_type`` record associated with ``from_id`` (v4, all pages)."""
        found: list[Association] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if after:
                params["after"] = after
            data = self.request(
                "GET",
                f"/crm/v4/objects/{from_type}/{from_id}/associations/{to_type}",
                params=params,
                op=f"{from_type}.associations",
            ).json()
            found.extend(Association.from_json(r) for r in data.get("results") or [])
            after = next_after(data)
            if after is None:
                return found

    # --- properties (schema) ------------------------------------------------------------

    def list_properties(self, object_type: ObjectType) -> list[dict[str, Any]]:
        """Every property definition of ``object_type``."""
        data = self.request("GET", f"/crm/v3/properties/{object_type}", op="properties.list").json()
        return list(data.get("results") or [])

    def create_property(self, object_type: ObjectType, definition: Mapping[str, Any]) -> None:
        """Create one property (a 409 means it exists: :class:`Conflict`)."""
        self.request(
            "POST",
            f"/crm/v3/properties/{object_type}",
            json=dict(definition),
            op="properties.create",
            idempotent=False,
        )

    def list_property_groups(self, object_type: ObjectType) -> list[dict[str, Any]]:
        """Every property group of ``object_type``."""
        path = f"/crm/v3/properties/{object_type}/groups"
        return list(self.request("GET", path, op="groups.list").json().get("results") or [])

    def create_property_group(self, object_type: ObjectType, group: Mapping[str, Any]) -> None:
        """Create one property group."""
        self.request(
            "POST",
            f"/crm/v3/properties/{object_type}/groups",
            json=dict(group),
            op="groups.create",
            idempotent=False,
        )

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


def _csv(values: Iterable[str]) -> str | None:
    joined = ",".join(values)
    return joined or None


def _chunks(items: Sequence[Any], size: int = BATCH_SIZE) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _run_now(call: Callable[[], T]) -> Future[T]:
    future: Future[T] = Future()
    try:
        future.set_result(call())
    except Exception as exc:  # delivered by result(), as from a pool thread
        future.set_exception(exc)
    return future


class PendingBatch:
    """A batch read in flight: :meth:`get` waits only for the page holding a key.

    A caller that works through records in the order it asked for them (the sync
    engine planning customer after customer) starts on the first page while the
    later ones are still on their way.
    """

    def __init__(self, chunks: Sequence[Sequence[str]], futures: Sequence[Future[BatchResult]]):
        self._page_of = {key: page for page, chunk in enumerate(chunks) for key in chunk}
        self._futures = list(futures)
        self._collected: set[int] = set()
        self._outcome = BatchResult()

    def get(self, key: str) -> HubSpotObject | None:
        """The record read for ``key`` (None: not asked for, or HubSpot had none)."""
        page = self._page_of.get(str(key))
        if page is None:
            return None
        self._collect(page)
        return self._outcome.results.get(str(key))

    def result(self) -> BatchResult:
        """Every page's outcome, merged (waits for all)."""
        for page in range(len(self._futures)):
            self._collect(page)
        return self._outcome

    def _collect(self, page: int) -> None:
        if page in self._collected:
            return
        try:
            outcome = self._futures[page].result()
        except BaseException:
            wait(self._futures)  # none left running unseen when the error goes up
            raise
        self._outcome.merge(outcome)
        self._collected.add(page)


class ObjectsApi:
    """CRM v3 operations on one object type (``client.companies``, ``client.contacts``)."""

    def __init__(self, client: HubSpotClient, object_type: ObjectType) -> None:
        self._client = client
        self.object_type = object_type
        self._path = f"/crm/v3/objects/{object_type}"

    # --- single records ---------------------------------------------------------------

    def get(
        self,
        object_id: str,
        *,
        properties: Sequence[str] = (),
        properties_with_history: Sequence[str] = (),
        associations: Sequence[ObjectType] = (),
        id_property: str | None = None,
        archived: bool = False,
    ) -> HubSpotObject:
        """One record by id (or by a unique property's value with ``id_property``)."""
        params = {
            "properties": _csv(properties),
            "propertiesWithHistory": _csv(properties_with_history),
            "associations": _csv(associations),
            "idProperty": id_property,
            "archived": "true" if archived else None,
        }
        response = self._client.request(
            "GET",
            f"{self._path}/{object_id}",
            params={k: v for k, v in params.items() if v is not None},
            op=f"{self.object_type}.get",
        )
        return HubSpotObject.from_json(response.json())

    def create(
        self,
        properties: Properties,
        *,
        associate_with: Sequence[tuple[ObjectType, str]] = (),
    ) -> HubSpotObject:
        """Create one record, optionally associated (default type) with existing records."""
        body: dict[str, Any] = {"properties": dict(properties)}
        if associate_with:
            body["associations"] = [
                {
                    "to": {"id": to_id},
                    "types": [
                        {
                            "associationCategory": "HUBSPOT_DEFINED",
                            "associationTypeId": default_association_type(self.object_type, kind),
                        }
                    ],
                }
                for kind, to_id in associate_with
            ]
        response = self._client.request(
            "POST", self._path, json=body, op=f"{self.object_type}.create", idempotent=False
        )
        return HubSpotObject.from_json(response.json())

    def update(
        self, object_id: str, properties: Properties, *, id_property: str | None = None
    ) -> HubSpotObject:
        """Overwrite some properties of one record (``""`` clears a value)."""
        response = self._client.request(
            "PATCH",
            f"{self._path}/{object_id}",
            params={"idProperty": id_property} if id_property else None,
            json={"properties": dict(properties)},
            op=f"{self.object_type}.update",
        )
        return HubSpotObject.from_json(response.json())

    def archive(self, object_id: str) -> None:
        """Archive (soft-delete) one record; HubSpot keeps it restorable for 90 days."""
        self._client.request(
            "DELETE", f"{self._path}/{object_id}", op=f"{self.object_type}.archive"
        )

    # --- batches ----------------------------------------------------------------------

    def batch_read(
        self,
        ids: Iterable[str],
        *,
        properties: Sequence[str] = (),
        properties_with_history: Sequence[str] = (),
        id_property: str | None = None,
    ) -> BatchResult:
        """Read many records, 100 per call (50 with history; several in flight); keyed by
        id or ``id_property``."""
        return self.start_batch_read(
            ids,
            properties=properties,
            properties_with_history=properties_with_history,
            id_property=id_property,
        ).result()

    def start_batch_read(
        self,
        ids: Iterable[str],
        *,
        properties: Sequence[str] = (),
        properties_with_history: Sequence[str] = (),
        id_property: str | None = None,
    ) -> PendingBatch:
        """Start :meth:`batch_read`'s calls and return at once; records arrive page by page."""
        keys = list(dict.fromkeys(str(i) for i in ids))
        # A read by id may answer an old id with the record it was merged into (a new
        # id): asking for its merged ids lets that answer find its input(s) again.
        wanted = list(properties) if id_property else [*properties, MERGED_IDS]

        def read(chunk: Sequence[str]) -> BatchResult:
            body: dict[str, Any] = {
                "inputs": [{"id": key} for key in chunk],
                "properties": list(dict.fromkeys(wanted)),
                "propertiesWithHistory": list(properties_with_history),
            }
            if id_property:
                body["idProperty"] = id_property
                return self._batch(
                    "read", body, chunk, partial(_key_of, id_property=id_property), idempotent=True
                )
            return self._batch("read", body, chunk, _ids_of, idempotent=True)

        size = HISTORY_BATCH_SIZE if properties_with_history else BATCH_SIZE
        chunks = list(_chunks(keys, size))
        futures = self._client.start_concurrently([partial(read, c) for c in chunks])
        return PendingBatch(chunks, futures)

    def batch_create(self, items: Mapping[str, Properties]) -> BatchResult:
        """Create many records, 100 per call, keyed by the caller's keys.

        Each key is sent as the input's ``objectWriteTraceId``, which both matches
        results to inputs and makes HubSpot answer 207 per record instead of
        failing the whole batch for one bad input.
        """
        outcome = BatchResult()
        for chunk in _chunks(list(items)):
            body = {
                "inputs": [
                    {"properties": dict(items[key]), "objectWriteTraceId": key} for key in chunk
                ]
            }
            outcome.merge(
                self._batch(
                    "create", body, chunk, lambda r: r.object_write_trace_id, idempotent=False
                )
            )
        return outcome

    def batch_update(
        self, items: Mapping[str, Properties], *, id_property: str | None = None
    ) -> BatchResult:
        """Update many records, 100 per call; ``items`` maps id (or unique value) to values."""
        return self._keyed_batch("update", items, id_property)

    def batch_upsert(self, items: Mapping[str, Properties], *, id_property: str) -> BatchResult:
        """Create or update by a unique property, 100 per call; results carry ``new``."""
        return self._keyed_batch("upsert", items, id_property)

    def _keyed_batch(
        self, action: str, items: Mapping[str, Properties], id_property: str | None
    ) -> BatchResult:
        outcome = BatchResult()
        for chunk in _chunks(list(items)):
            outcome.merge(self._isolating(action, items, chunk, id_property))
        return outcome

    def _isolating(
        self,
        action: str,
        items: Mapping[str, Properties],
        keys: Sequence[str],
        id_property: str | None,
    ) -> BatchResult:
        """One keyed batch write; a batch HubSpot refuses whole is split until each
        refused input stands alone, so the valid ones still land.

        HubSpot may answer a batch update holding one invalid value (a deleted enum
        option, a number it refuses) with a 400 for the whole batch, nothing written
        (docs/hubspot.md, item 3). Halving finds k refused inputs among n in about
        2k·log2(n/k) more calls; an input refused on its own is returned as that
        input's error (HubSpot's message, permanent), like a 207's.
        """
        # Each input's key doubles as its objectWriteTraceId, which is how a result
        # finds its key again (or by the id property when HubSpot leaves the trace out).
        inputs = []
        for key in keys:
            entry: dict[str, Any] = {
                "id": key,
                "properties": dict(items[key]),
                "objectWriteTraceId": key,
            }
            if id_property:
                entry["idProperty"] = id_property
            inputs.append(entry)
        try:
            return self._batch(
                action,
                {"inputs": inputs},
                keys,
                lambda r: r.object_write_trace_id or _key_of(r, id_property),
                idempotent=True,
            )
        except ValidationError as refused:
            if len(keys) == 1:
                return BatchResult(errors=[_refused_input(refused, keys[0])])
            log.warning(
                "HubSpot refused a batch whole; splitting it to find the refused inputs",
                extra={
                    "fields": {
                        "op": f"{self.object_type}.batch_{action}",
                        "inputs": len(keys),
                        **refused.as_dict(),
                    }
                },
            )
            middle = len(keys) // 2
            outcome = self._isolating(action, items, keys[:middle], id_property)
            outcome.merge(self._isolating(action, items, keys[middle:], id_property))
            return outcome

    def _batch(
        self,
        action: str,
        body: Mapping[str, Any],
        keys: Sequence[str],
        key_of: Callable[[HubSpotObject], str | Sequence[str] | None],
        *,
        idempotent: bool,
    ) -> BatchResult:
        response = self._client.request(
            "POST",
            f"{self._path}/batch/{action}",
            json=body,
            op=f"{self.object_type}.batch_{action}",
            idempotent=idempotent,
        )
        data = response.json()
        outcome = BatchResult(
            errors=[HubSpotError.from_batch_error(e) for e in data.get("errors") or []]
        )
        wanted = set(keys)
        unmatched = 0
        for raw in data.get("results") or []:
            record = HubSpotObject.from_json(raw)
            found = key_of(record)
            keys = [found] if isinstance(found, str) else found or ()
            matched = [k for k in keys if k in wanted]
            for key in matched:
                outcome.results[key] = record
            if not matched:
                unmatched += 1
        missing = wanted - outcome.results.keys() - outcome.failed_keys()
        if missing or unmatched:
            outcome.errors.append(
                HubSpotError(
                    f"{len(missing)} input(s) got neither a result nor an error"
                    f" and {unmatched} result(s) matched no input",
                    status=response.status_code,
                    category="UNMATCHED_BATCH_RESULT",
                    context={"keys": sorted(missing)},
                )
            )
        return outcome

    # --- listing and search -----------------------------------------------------------

    def list_page(
        self,
        *,
        properties: Sequence[str] = (),
        properties_with_history: Sequence[str] = (),
        limit: int = LIST_PAGE_SIZE,
        after: str | None = None,
        archived: bool = False,
    ) -> tuple[list[HubSpotObject], str | None]:
        """One page of the list endpoint: (records, next ``after`` or None)."""
        params = {
            "limit": limit,
            "after": after,
            "properties": _csv(properties),
            "propertiesWithHistory": _csv(properties_with_history),
            "archived": "true" if archived else None,
        }
        data = self._client.request(
            "GET",
            self._path,
            params={k: v for k, v in params.items() if v is not None},
            op=f"{self.object_type}.list",
        ).json()
        return [HubSpotObject.from_json(r) for r in data.get("results") or []], next_after(data)

    def iterate(
        self,
        *,
        properties: Sequence[str] = (),
        properties_with_history: Sequence[str] = (),
        archived: bool = False,
    ) -> Iterator[HubSpotObject]:
        """Every record, page after page (50 a page with history, else 100)."""
        limit = LIST_PAGE_SIZE_WITH_HISTORY if properties_with_history else LIST_PAGE_SIZE
        after: str | None = None
        while True:
            records, after = self.list_page(
                properties=properties,
                properties_with_history=properties_with_history,
                limit=limit,
                after=after,
                archived=archived,
            )
            yield from records
            if after is None:
                return

    def search(
        self,
        filter_groups: Sequence[Mapping[str, Any]] = (),
        *,
        sort: tuple[str, str] | None = None,
        properties: Sequence[str] = (),
        limit: int = 100,
        after: str | None = None,
        query: str | None = None,
    ) -> SearchPage:
        """One search page. ``sort`` is (property, ``ASCENDING``|``DESCENDING``): one only."""
        if not 1 <= limit <= SEARCH_PAGE_MAX:
            raise ValueError(f"search limit must be 1..{SEARCH_PAGE_MAX}")
        body: dict[str, Any] = {
            "filterGroups": [dict(g) for g in filter_groups],
            "properties": list(properties),
            "limit": limit,
        }
        if sort:
            body["sorts"] = [{"propertyName": sort[0], "direction": sort[1]}]
        if after:
            body["after"] = after
        if query:
            body["query"] = query
        response = self._client.request(
            "POST",
            f"{self._path}/search",
            json=body,
            op=f"{self.object_type}.search",
            bucket=Bucket.SEARCH,
        )
        return SearchPage.from_json(response.json())

    def search_all(
        self,
        filter_groups: Sequence[Mapping[str, Any]] = (),
        *,
        properties: Sequence[str] = (),
        page_size: int = SEARCH_PAGE_MAX,
    ) -> Iterator[HubSpotObject]:
        """Every match, past the 10,000-result cap, in ascending ``hs_object_id`` order.

        Pages by ``after`` within a window and, before the window reaches 10,000
        results, starts a new one with ``hs_object_id > last id`` added to every
        filter group. Each group then holds one more filter, so a query already at
        HubSpot's filter limits is refused (400) rather than silently cut short.
        """
        last_id: str | None = None
        while True:
            groups = _after_id(filter_groups, last_id)
            after: str | None = None
            while True:
                page = self.search(
                    groups,
                    sort=("hs_object_id", "ASCENDING"),
                    properties=properties,
                    limit=page_size,
                    after=after,
                )
                for record in page.results:
                    last_id = record.id
                    yield record
                if page.after is None or not page.results:
                    return
                after = page.after
                if int(after) + page_size > SEARCH_RESULT_CAP:
                    break  # next window: continue after last_id

    def search_in(
        self, prop: str, values: Iterable[str], *, properties: Sequence[str] = ()
    ) -> Iterator[HubSpotObject]:
        """Every record whose ``prop`` is one of ``values``, in as few IN searches as fit.

        The values are split so that each search body stays under HubSpot's size limit.
        """
        for chunk in _chunks_by_size(sorted(values), SEARCH_IN_CHARS):
            groups = [{"filters": [{"propertyName": prop, "operator": "IN", "values": chunk}]}]
            yield from self.search_all(groups, properties=properties)


def _chunks_by_size(values: list[str], max_chars: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    size = 0
    for value in values:
        cost = len(json.dumps(value)) + 1
        if chunk and size + cost > max_chars:
            yield chunk
            chunk, size = [], 0
        chunk.append(value)
        size += cost
    if chunk:
        yield chunk


def _after_id(
    filter_groups: Sequence[Mapping[str, Any]], last_id: str | None
) -> list[dict[str, Any]]:
    groups = [dict(g) for g in filter_groups]
    if last_id is None:
        return groups
    bound = {"propertyName": "hs_object_id", "operator": "GT", "value": last_id}
    if not groups:
        return [{"filters": [bound]}]
    return [{**g, "filters": [*g.get("filters", []), bound]} for g in groups]


def _refused_input(error: ValidationError, key: str) -> ValidationError:
    """HubSpot's 400 for a batch of one, as that input's own error (``context.keys``)."""
    return ValidationError(
        error.message,
        status=error.status,
        category=error.category,
        correlation_id=error.correlation_id,
        context={"keys": [key]},
    )


def _ids_of(record: HubSpotObject) -> list[str]:
    """The ids a record read by id answers: its own and, once merged, its old ones."""
    return [record.id, *record.merged_ids]


def _key_of(record: HubSpotObject, id_property: str | None) -> str | None:
    if id_property:
        value = record.properties.get(id_property)
        return str(value) if value is not None else None
    return record.id


def primary_association_type(from_type: ObjectType, to_type: ObjectType) -> int:
    """HubSpot's primary association type id: 1 contact to company, 2 company to contact."""
    ids = {("contacts", "companies"): 1, ("companies", "contacts"): 2}
    try:
        return ids[(from_type, to_type)]
    except KeyError:
        raise ValueError(
            f"no primary association from {_SINGULAR[from_type]} to {_SINGULAR[to_type]}"
        ) from None


def default_association_type(from_type: ObjectType, to_type: ObjectType) -> int:
    """HubSpot's unlabeled association type id from ``from_type`` to ``to_type``."""
    ids = {("contacts", "companies"): 279, ("companies", "contacts"): 280}
    try:
        return ids[(from_type, to_type)]
    except KeyError:
        raise ValueError(
            f"no default association from {_SINGULAR[from_type]} to {_SINGULAR[to_type]}"
        ) from None
