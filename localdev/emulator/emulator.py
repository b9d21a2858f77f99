"""``Emulator``: wires store, API, limits, faults, webhooks and the HTTP server together,
and offers the Python helpers tests use to act "in HubSpot" (UI edits, merges, seeding).
"""

from __future__ import annotations

import random
import threading
from types import TracebackType
from typing import Any

from localdev.emulator.answers import Answer
from localdev.emulator.api import CrmApi
from localdev.emulator.control import ControlApi
from localdev.emulator.errors import ApiError, not_found
from localdev.emulator.faults import DEFAULT_KINDS, FaultInjector
from localdev.emulator.pipeline import CallCounts, CrmPipeline
from localdev.emulator.properties import PropertyRegistry
from localdev.emulator.ratelimit import HubSpotRateLimits
from localdev.emulator.render import now_iso, render_record
from localdev.emulator.scopes import ALL_SCOPES, READ_SCOPES
from localdev.emulator.server import EmulatorHTTPServer
from localdev.emulator.store import DEFAULT_SEARCH_DELAY_MS, Record, Source, Store
from localdev.emulator.webhooks import DEFAULT_MAX_CONCURRENT_REQUESTS, WebhookDispatcher

# The source of HubSpot's own writes in recorded traffic (docs/hubspot.md).
HUBSPOT_INTERNAL = "HUBSPOT_INTERNAL"
COMPANY_INSIGHTS = "CompanyInsightsPropertyMappings"

DEFAULT_APP_ID = 1_234_567
DEFAULT_PORTAL_ID = 49_547_190
_FIELD_TYPES = {
    "string": "text",
    "number": "number",
    "date": "date",
    "datetime": "date",
    "enumeration": "select",
    "bool": "booleancheckbox",
}


class Emulator:
    """A local HubSpot: CRM v3 over real HTTP, HubSpot's limits and errors, signed webhooks.

    ``Emulator(port=0, ...).start()`` (or ``with Emulator(...) as emu``) serves on
    ``emu.url``. Writes made with ``access_token`` are our app's (history and webhooks
    say ``INTEGRATION`` / ``str(app_id)``); ``ui_change``, ``ui_create``, ``ui_delete``,
    ``merge`` and ``associate`` act as a HubSpot user (``CRM_UI`` / ``userId:N``);
    ``seed`` imports records silently. ``emu.webhooks`` delivers to ``webhook_url``
    (``wait_idle``, ``pause``, ``flush``, counters), ``emu.faults`` and ``set_faults``
    inject failures, ``emu.limits`` enforces the rate limits, ``stats()`` counts calls.
    ``search_delay_ms`` makes search lag writes like HubSpot's index (2 s by default;
    ``seed`` imports are searchable at once; ``state.index_now()`` catches up);
    ``identical_writes_fire`` makes writing an unchanged value fire a propertyChange;
    ``batch_update_multi_status`` answers a batch update's invalid inputs per record
    (207, when each carries ``objectWriteTraceId``) instead of refusing the whole batch;
    ``auto_create_companies`` is the portal setting "Create and associate companies with
    contacts" (off by default, as in a new portal).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        rate_limit: int = 100,
        window_ms: int = 10_000,
        daily_limit: int = 250_000,
        search_rate_per_second: int = 5,
        webhook_url: str | None = None,
        client_secret: str | None = None,
        app_id: int | None = None,
        portal_id: int = DEFAULT_PORTAL_ID,
        access_token: str = "emulator-token",
        read_access_token: str | None = None,
        fault_rate: float = 0.0,
        fault_kinds: tuple[str, ...] = DEFAULT_KINDS,
        latency_ms: int = 0,
        timeout_hold_ms: int = 2_000,
        seed: int | None = None,
        webhook_time_scale: float = 1.0,
        webhook_max_retries: int = 10,
        webhook_retry_4xx: bool = True,
        webhook_max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
        webhook_timeout_s: float = 5.0,
        webhook_shuffle: bool = False,
        webhook_duplicate_rate: float = 0.0,
        search_delay_ms: int = DEFAULT_SEARCH_DELAY_MS,
        identical_writes_fire: bool = False,
        batch_update_multi_status: bool = False,
        auto_create_companies: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.portal_id = portal_id
        # Token -> granted scopes: ``access_token`` may do everything, ``read_access_token``
        # only read (a write with it gets HubSpot's 403 MISSING_SCOPES); ``grant`` adds more.
        self.access_tokens: dict[str, frozenset[str]] = {access_token: ALL_SCOPES}
        if read_access_token is not None:
            self.access_tokens[read_access_token] = READ_SCOPES
        self.properties = PropertyRegistry()
        self.webhooks = WebhookDispatcher(
            url=webhook_url,
            client_secret=client_secret,
            app_id=DEFAULT_APP_ID if app_id is None else int(app_id),
            portal_id=portal_id,
            time_scale=webhook_time_scale,
            max_retries=webhook_max_retries,
            retry_4xx=webhook_retry_4xx,
            max_concurrent_requests=webhook_max_concurrent_requests,
            timeout_s=webhook_timeout_s,
            shuffle=webhook_shuffle,
            duplicate_rate=webhook_duplicate_rate,
            seed=seed,
        )
        self._muted = False
        self.state = Store(self.properties, self._on_changes)
        self.state.search_delay_ms = search_delay_ms
        self.state.identical_writes_fire = identical_writes_fire
        self.state.auto_create_companies = auto_create_companies
        self.limits = HubSpotRateLimits(rate_limit, window_ms, daily_limit, search_rate_per_second)
        self.faults = FaultInjector(fault_rate, fault_kinds, latency_ms, timeout_hold_ms, seed)
        self.api = CrmApi(self.state, self.properties, random.Random(seed))
        self.api.update_multi_status = batch_update_multi_status
        self.counts = CallCounts()
        self.pipeline = CrmPipeline(
            self.api,
            limits=self.limits,
            faults=self.faults,
            access_tokens=self.access_tokens,
            source=lambda: self.api_source,
            counts=self.counts,
        )
        self.control = ControlApi(self)
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Emulator:
        """Serve on ``host:port`` (port 0: any free port) in background threads."""
        self._server = EmulatorHTTPServer((self.host, self.port), self._route)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="emulator-http", daemon=True
        )
        self._thread.start()
        self.webhooks.start()
        return self

    def stop(self) -> None:
        """Stop serving and delivering."""
        self.webhooks.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT`` (use as the client's HubSpot base URL)."""
        return f"http://{self.host}:{self.port}"

    @property
    def app_id(self) -> int:
        """Our app's id: events carry it, and our API writes have it as ``sourceId``."""
        return int(self.webhooks.app_id)

    @property
    def api_source(self) -> Source:
        """Who writes through the API with the access token: our app."""
        return Source("INTEGRATION", str(self.app_id))

    def grant(self, token: str, scopes: frozenset[str]) -> None:
        """Accept ``token`` with exactly ``scopes`` (e.g. a token that may only write)."""
        self.access_tokens[token] = scopes

    def reset(self) -> None:
        """Empty records, custom properties, counters, limits, the outage and the webhook queue.

        The fault rate and kinds stay as configured: they describe the scenario, not state.
        """
        with self.state.lock:
            self.state.reset()
            self.properties.reset()
        self.limits.reset()
        self.webhooks.clear()
        self.faults.outage = False
        self.faults.injected.clear()
        self.counts.clear()

    # -- acting "in HubSpot" -------------------------------------------------------

    def define_property(
        self,
        object_type: str,
        name: str,
        type: str = "string",
        *,
        field_type: str | None = None,
        label: str | None = None,
        options: list[str] | list[dict[str, Any]] | None = None,
        unique: bool = False,
        group: str | None = None,
    ) -> dict[str, Any]:
        """Create a custom property (idempotent: an existing one is returned unchanged)."""
        existing = self.properties.get(object_type, name)
        if existing is not None:
            return existing.to_json()
        opts = [o if isinstance(o, dict) else {"label": o, "value": o} for o in options or []]
        body = {
            "name": name,
            "label": label or name,
            "type": type,
            "fieldType": field_type or _FIELD_TYPES.get(type, "text"),
            "groupName": group
            or ("companyinformation" if object_type == "companies" else "contactinformation"),
            "options": opts,
            "hasUniqueValue": unique,
        }
        return self.properties.create(object_type, body, now_iso()).to_json()

    def seed(self, object_type: str, records: list[dict[str, Any]] | dict[str, Any]) -> list[str]:
        """Create records silently (an import before the test starts: no webhooks); their ids."""
        items = [records] if isinstance(records, dict) else records
        with self.state.lock:
            self._muted = True
            try:
                values = [self.properties.normalize(object_type, p) for p in items]
                created = [
                    self.state.create(object_type, v, Source("IMPORT", "seed")) for v in values
                ]
                # Imported before the test starts: long since searchable.
                self.state.index_now(created)
                return [str(r.id) for r in created]
            finally:
                self._muted = False

    def ui_create(self, object_type: str, properties: dict[str, Any], *, user_id: int = 1) -> str:
        """A user creates a record in the HubSpot UI (webhooks with CRM_UI)."""
        values = self.properties.normalize(object_type, properties)
        return str(self.state.create(object_type, values, _ui(user_id)).id)

    def ui_change(
        self,
        object_type: str,
        object_id: str | int,
        properties: dict[str, Any],
        *,
        user_id: int = 1,
    ) -> list[str]:
        """A user edits a record in the HubSpot UI; the names that changed."""
        values = self.properties.normalize(object_type, properties)
        with self.state.lock:
            return self.state.update(self._record(object_type, object_id), values, _ui(user_id))

    def hubspot_write(
        self,
        object_type: str,
        object_id: str | int,
        properties: dict[str, Any],
        *,
        source_type: str = HUBSPOT_INTERNAL,
        source_id: str = COMPANY_INSIGHTS,
    ) -> list[str]:
        """HubSpot writes a record itself (enrichment, a derived or calculated value).

        Its webhooks and property history carry ``source_type``/``source_id``, and
        ``hs_lastmodifieddate`` moves, as for any write (docs/hubspot.md, "HubSpot
        writes records itself"). The names that changed.
        """
        values = self.properties.normalize(object_type, properties)
        with self.state.lock:
            record = self._record(object_type, object_id)
            return self.state.update(record, values, Source(source_type, source_id))

    def ui_delete(self, object_type: str, object_id: str | int, *, user_id: int = 1) -> None:
        """A user deletes (archives) a record in the HubSpot UI."""
        with self.state.lock:
            self.state.archive(self._record(object_type, object_id), _ui(user_id))

    def merge(
        self, object_type: str, primary_id: str | int, merged_id: str | int, *, user_id: int = 1
    ) -> str:
        """A user merges two records in the UI; the id of the new record both now resolve to."""
        with self.state.lock:
            primary, merged = (
                self._record(object_type, primary_id),
                self._record(object_type, merged_id),
            )
            if primary.id == merged.id:
                raise ApiError(400, "VALIDATION_ERROR", "cannot merge a record into itself")
            return str(self.state.merge(primary, merged, _ui(user_id)).id)

    def associate(
        self,
        from_type: str,
        from_id: str | int,
        to_type: str,
        to_id: str | int,
        *,
        user_id: int = 1,
        primary: bool = False,
    ) -> None:
        """A user associates two records (unlabeled, or primary too; both directions)."""
        with self.state.lock:
            self.state.associate(
                self._record(from_type, from_id),
                self._record(to_type, to_id),
                _ui(user_id),
                primary=primary,
            )

    def values(self, object_type: str, object_id: str | int) -> dict[str, str]:
        """A live record's current property values (a copy)."""
        with self.state.lock:
            return dict(self._record(object_type, object_id).values)

    def snapshot(self, object_type: str, object_id: str | int) -> dict[str, Any]:
        """A record (live or archived) as JSON with every property and its history."""
        with self.state.lock:
            record = self.state.records[object_type].get(int(object_id))
            if record is None:
                raise not_found(str(object_id))
            return render_record(
                record, properties=list(record.values), with_history=list(record.history)
            )

    # -- faults, counters ------------------------------------------------------------

    def set_faults(
        self,
        *,
        rate: float | None = None,
        kinds: list[str] | None = None,
        latency_ms: int | None = None,
        hold_ms: int | None = None,
        outage: bool | None = None,
        seed: int | None = None,
        count: int | None = None,
    ) -> None:
        """Change fault injection; None leaves a setting as it is. ``count`` injects at
        most that many more faults (``rate=1.0, count=1``: the next call fails)."""
        self.faults.configure(rate=rate, kinds=kinds, seed=seed, count=count)
        if latency_ms is not None:
            self.faults.latency_ms = int(latency_ms)
        if hold_ms is not None:
            self.faults.hold_ms = int(hold_ms)
        if outage is not None:
            self.faults.outage = bool(outage)

    def stats(self) -> dict[str, Any]:
        """Call counts per endpoint, 429 counts, faults injected, webhook counters.

        ``historyReads`` counts the batch reads (already in ``calls``) that asked
        for property history.
        """
        calls, limited = self.counts.read()
        return {
            "calls": calls,
            "totalCalls": sum(calls.values()),
            "rateLimited": limited,
            "historyReads": self.counts.read_history(),
            "faults": {
                "rate": self.faults.rate,
                "kinds": list(self.faults.kinds),
                "latencyMs": self.faults.latency_ms,
                "holdMs": self.faults.hold_ms,
                "outage": self.faults.outage,
                "injected": dict(self.faults.injected),
            },
            "webhooks": self.webhooks.stats(),
        }

    # -- internals ---------------------------------------------------------------------

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], headers: Any, raw: bytes
    ) -> Answer:
        if path.startswith("/_emulator/"):
            return self.control.handle(method, path, raw)
        return self.pipeline.handle(method, path, query, headers, raw)

    def _on_changes(self, changes: list[dict[str, Any]]) -> None:
        if not self._muted:
            self.webhooks.enqueue(changes)

    def _record(self, object_type: str, object_id: str | int) -> Record:
        key = str(object_id)
        record = self.state.get(object_type, int(key)) if key.isdigit() else None
        if record is None:
            raise not_found(key)
        return record


def _ui(user_id: int) -> Source:
    return Source("CRM_UI", f"userId:{user_id}")
