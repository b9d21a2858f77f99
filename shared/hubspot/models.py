"""Typed results of HubSpot calls, parsed from CRM v3 JSON (hubspot-api.md §3.3).

Pure data and parsing, no I/O. Property values stay strings (or None) exactly
as HubSpot sends them (§7); converting them is the mapping layer's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from shared.hubspot.errors import HubSpotError

ObjectType = Literal["companies", "contacts"]
OBJECT_TYPES: tuple[ObjectType, ...] = ("companies", "contacts")
Properties = Mapping[str, str | None]
# A merged record's old ids, ";"-separated: a merge makes a new record with a new id
# and the old ids resolve to it (docs/hubspot.md, "Merges").
MERGED_IDS = "hs_merged_object_ids"


def parse_datetime(value: Any) -> datetime | None:
    """An ISO 8601 timestamp from HubSpot (``...Z`` or with an offset), or None."""
    if not value or not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class PropertyVersion:
    """One entry of a property's history; HubSpot lists them newest first."""

    value: str | None
    timestamp: datetime | None
    source_type: str | None
    source_id: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PropertyVersion:
        """Parse one ``propertiesWithHistory`` entry."""
        return cls(
            value=data.get("value"),
            timestamp=parse_datetime(data.get("timestamp")),
            source_type=data.get("sourceType"),
            source_id=data.get("sourceId"),
        )


@dataclass(frozen=True)
class HubSpotObject:
    """A company or contact as HubSpot returned it. ``id`` is a string, as in REST."""

    id: str
    properties: dict[str, str | None]
    properties_with_history: dict[str, list[PropertyVersion]] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    archived: bool = False
    associations: dict[str, list[str]] = field(default_factory=dict)
    object_write_trace_id: str | None = None
    new: bool | None = None  # batch upsert only: True when the record was created

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HubSpotObject:
        """Parse a record object (single GET, list, search, batch results)."""
        history = {
            name: [PropertyVersion.from_json(v) for v in versions or []]
            for name, versions in (data.get("propertiesWithHistory") or {}).items()
        }
        associations = {
            kind: [str(item.get("id")) for item in (block or {}).get("results", [])]
            for kind, block in (data.get("associations") or {}).items()
        }
        return cls(
            id=str(data["id"]),
            properties=dict(data.get("properties") or {}),
            properties_with_history=history,
            created_at=parse_datetime(data.get("createdAt")),
            updated_at=parse_datetime(data.get("updatedAt")),
            archived=bool(data.get("archived", False)),
            associations=associations,
            object_write_trace_id=data.get("objectWriteTraceId"),
            new=data.get("new"),
        )

    @property
    def merged_ids(self) -> list[str]:
        """The old ids this record was merged from (``hs_merged_object_ids``, when read)."""
        raw = self.properties.get(MERGED_IDS) or ""
        return [i.strip() for i in raw.split(";") if i.strip()]

    def latest_change(self, name: str) -> PropertyVersion | None:
        """The newest history entry of property ``name`` (when history was requested)."""
        versions = self.properties_with_history.get(name) or []
        return max(versions, key=lambda v: v.timestamp or datetime.min, default=None)


@dataclass
class BatchResult:
    """A batch call's outcome keyed by the caller's keys, never by position.

    ``results`` maps each input's key (record id, unique property value or
    the caller's own key for creates) to its record; ``errors`` are the
    per-record failures of a 207 answer, each naming in ``context`` the keys it
    concerns (see :meth:`failed_keys`). A key in neither is reported as an
    error too, so no input disappears silently.
    """

    results: dict[str, HubSpotObject] = field(default_factory=dict)
    errors: list[HubSpotError] = field(default_factory=list)

    def failed_keys(self) -> set[str]:
        """Every input key some error names (ids, trace ids, unique values)."""
        keys: set[str] = set()
        for error in self.errors:
            for name in ("ids", "id", "objectWriteTraceId", "keys"):
                values = error.context.get(name) or []
                keys.update(str(v) for v in values)
        return keys

    def merge(self, other: BatchResult) -> None:
        """Add another chunk's outcome to this one."""
        self.results.update(other.results)
        self.errors.extend(other.errors)


@dataclass(frozen=True)
class SearchPage:
    """One page of search results; ``after`` is None on the last page."""

    total: int
    results: list[HubSpotObject]
    after: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SearchPage:
        """Parse a search response."""
        return cls(
            total=int(data.get("total") or 0),
            results=[HubSpotObject.from_json(r) for r in data.get("results") or []],
            after=next_after(data),
        )


@dataclass(frozen=True)
class Association:
    """One associated record: its id and the association type ids linking it."""

    to_object_id: str
    type_ids: tuple[int, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Association:
        """Parse a v4 association result (``toObjectId`` is a number there)."""
        return cls(
            to_object_id=str(data["toObjectId"]),
            type_ids=tuple(int(t["typeId"]) for t in data.get("associationTypes") or []),
        )


@dataclass(frozen=True)
class RateLimitStatus:
    """The ``X-HubSpot-RateLimit-*`` headers of one answer (absent ones are None)."""

    max: int | None
    remaining: int | None
    interval_ms: int | None
    daily: int | None
    daily_remaining: int | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimitStatus:
        """Read the headers case-insensitively (httpx's Headers already are)."""

        def number(name: str) -> int | None:
            raw = headers.get(name)
            try:
                return int(raw) if raw is not None else None
            except ValueError:
                return None

        return cls(
            max=number("x-hubspot-ratelimit-max"),
            remaining=number("x-hubspot-ratelimit-remaining"),
            interval_ms=number("x-hubspot-ratelimit-interval-milliseconds"),
            daily=number("x-hubspot-ratelimit-daily"),
            daily_remaining=number("x-hubspot-ratelimit-daily-remaining"),
        )


def next_after(data: Mapping[str, Any]) -> str | None:
    """The ``paging.next.after`` cursor of a list or search answer, or None."""
    paging = data.get("paging") or {}
    after = (paging.get("next") or {}).get("after")
    return str(after) if after not in (None, "") else None
