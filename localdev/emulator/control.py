"""The ``/_emulator/`` control API: what a test or demo does "in HubSpot" over HTTP.

Not authenticated and not rate limited; it exists only in the emulator.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from localdev.emulator.answers import Answer, error_answer
from localdev.emulator.api import CrmApi
from localdev.emulator.errors import ApiError, validation
from localdev.emulator.properties import canonical_type
from localdev.emulator.ratelimit import HubSpotRateLimits
from localdev.emulator.store import Store
from localdev.emulator.webhooks import WebhookDispatcher

_WEBHOOK_SETTINGS = {
    "url": "url",
    "clientSecret": "client_secret",
    "appId": "app_id",
    "shuffle": "shuffle",
    "duplicateRate": "duplicate_rate",
    "retry4xx": "retry_4xx",
    "timeScale": "time_scale",
    "maxConcurrentRequests": "max_concurrent_requests",
    "maxRetries": "max_retries",
    "batchSize": "batch_size",
    "subscriptions": "subscriptions",
}
_LIMIT_SETTINGS = {
    "rateLimit": "rate_limit",
    "windowMs": "window_ms",
    "dailyLimit": "daily_limit",
    "searchRatePerSecond": "search_rate_per_second",
}


class Controllable(Protocol):
    """The part of the emulator's Python API that the control routes call (``Emulator``)."""

    limits: HubSpotRateLimits
    state: Store
    api: CrmApi
    webhooks: WebhookDispatcher

    def reset(self) -> None: ...
    def stats(self) -> dict[str, Any]: ...
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
    ) -> None: ...
    def seed(self, object_type: str, records: list[dict[str, Any]]) -> list[str]: ...
    def snapshot(self, object_type: str, object_id: str) -> dict[str, Any]: ...
    def ui_create(self, object_type: str, properties: dict[str, Any], *, user_id: int) -> str: ...
    def ui_change(
        self, object_type: str, object_id: str, properties: dict[str, Any], *, user_id: int
    ) -> Any: ...
    def ui_delete(self, object_type: str, object_id: str, *, user_id: int) -> None: ...
    def hubspot_write(
        self,
        object_type: str,
        object_id: str,
        properties: dict[str, Any],
        *,
        source_type: str = ...,
        source_id: str = ...,
    ) -> list[str]: ...
    def merge(self, object_type: str, primary: str, merged: str, *, user_id: int) -> str: ...
    def define_property(
        self,
        object_type: str,
        name: str,
        type: str = ...,
        *,
        field_type: str | None = ...,
        label: str | None = ...,
        options: list[str] | list[dict[str, Any]] | None = ...,
        unique: bool = ...,
        group: str | None = ...,
    ) -> dict[str, Any]: ...


class ControlApi:
    """Routes ``/_emulator/...`` requests to the emulator's Python API.

    It knows the emulator only as ``Controllable``, so this module and ``emulator.py``
    do not import each other.
    """

    def __init__(self, emulator: Controllable) -> None:
        self.emu = emulator

    def handle(self, method: str, path: str, raw: bytes) -> Answer:
        """Serve one control request."""
        try:
            body = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise validation("control bodies are JSON objects")
            status, result = self._route(method, path.removeprefix("/_emulator").rstrip("/"), body)
        except ApiError as exc:
            return error_answer(exc)
        except (ValueError, TypeError, KeyError) as exc:
            return error_answer(validation(f"bad control request: {exc}"))
        return Answer(status, result)

    def _route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        emu = self.emu
        user = int(body.get("userId", 1))
        if (method, path) == ("POST", "/reset"):
            emu.reset()
            return 200, {"reset": True}
        if (method, path) == ("GET", "/stats"):
            return 200, emu.stats()
        if path == "/faults":
            if method == "POST":
                emu.set_faults(
                    rate=body.get("rate"),
                    kinds=body.get("kinds"),
                    latency_ms=body.get("latencyMs"),
                    hold_ms=body.get("holdMs"),
                    outage=body.get("outage"),
                    seed=body.get("seed"),
                    count=body.get("count"),
                )
            return 200, emu.stats()["faults"]
        if path == "/limits":
            if method == "POST":
                if body.get("reset"):
                    emu.limits.reset()  # forget usage: the next call starts a fresh window
                for key, attr in _LIMIT_SETTINGS.items():
                    if key in body:
                        setattr(emu.limits, attr, int(body[key]))
            return 200, {k: getattr(emu.limits, a) for k, a in _LIMIT_SETTINGS.items()}
        if path == "/settings" and method == "POST":
            if "searchDelayMs" in body:
                emu.state.search_delay_ms = int(body["searchDelayMs"])
            if "identicalWritesFire" in body:
                emu.state.identical_writes_fire = bool(body["identicalWritesFire"])
            if "batchUpdateMultiStatus" in body:
                emu.api.update_multi_status = bool(body["batchUpdateMultiStatus"])
            if "autoCreateCompanies" in body:
                emu.state.auto_create_companies = bool(body["autoCreateCompanies"])
            return 200, {
                "searchDelayMs": emu.state.search_delay_ms,
                "identicalWritesFire": emu.state.identical_writes_fire,
                "batchUpdateMultiStatus": emu.api.update_multi_status,
                "autoCreateCompanies": emu.state.auto_create_companies,
            }
        if (method, path) == ("POST", "/search/catch-up"):
            return 200, {"caughtUp": emu.state.index_now()}
        if path == "/webhooks" and method == "POST":
            settings = {attr: body[key] for key, attr in _WEBHOOK_SETTINGS.items() if key in body}
            if "subscriptions" in settings and settings["subscriptions"] is not None:
                settings["subscriptions"] = set(settings["subscriptions"])
            emu.webhooks.configure(**settings)
            return 200, emu.webhooks.stats()
        if path == "/webhooks" and method == "GET":
            return 200, emu.webhooks.stats()
        action = re.fullmatch(r"/webhooks/(pause|resume|flush)", path)
        if action and method == "POST":
            getattr(emu.webhooks, action.group(1))()
            return 200, emu.webhooks.stats()
        found = re.fullmatch(r"/(records|ui|hubspot|merge|properties)/([\w-]+)(?:/(\d+))?", path)
        if not found:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"No control route for {method} {path}")
        kind, object_type, object_id = found.group(1), _type(found.group(2)), found.group(3)
        if kind == "records" and method == "POST":
            records = body.get("records") or [{"properties": body.get("properties", {})}]
            return 201, {"ids": emu.seed(object_type, [r.get("properties", {}) for r in records])}
        if kind == "records" and method == "GET" and object_id:
            return 200, emu.snapshot(object_type, object_id)
        if kind == "ui" and method == "POST" and object_id:
            return 200, {
                "changed": emu.ui_change(
                    object_type, object_id, body.get("properties", {}), user_id=user
                )
            }
        if kind == "ui" and method == "POST":
            return 201, {"id": emu.ui_create(object_type, body.get("properties", {}), user_id=user)}
        if kind == "hubspot" and method == "POST" and object_id:
            # HubSpot writing the record itself; the source defaults to enrichment's.
            source = {
                name: str(body[key])
                for key, name in (("changeSource", "source_type"), ("sourceId", "source_id"))
                if key in body
            }
            changed = emu.hubspot_write(
                object_type, object_id, body.get("properties", {}), **source
            )
            return 200, {"changed": changed}
        if kind == "ui" and method == "DELETE" and object_id:
            emu.ui_delete(object_type, object_id, user_id=user)
            return 200, {"deleted": object_id}
        if kind == "merge" and method == "POST":
            primary = emu.merge(
                object_type,
                str(body["primaryObjectId"]),
                str(body["objectIdToMerge"]),
                user_id=user,
            )
            return 200, {"id": primary}
        if kind == "properties" and method == "POST":
            return 201, emu.define_property(object_type, **_property_args(body))
        raise ApiError(404, "OBJECT_NOT_FOUND", f"No control route for {method} {path}")


def _type(name: str) -> str:
    object_type = canonical_type(name)
    if object_type is None:
        raise validation(f"unknown object type {name!r}")
    return object_type


def _property_args(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": body["name"],
        "type": body.get("type", "string"),
        "field_type": body.get("fieldType"),
        "label": body.get("label"),
        "options": body.get("options"),
        "unique": bool(body.get("hasUniqueValue", False)),
        "group": body.get("groupName"),
    }
