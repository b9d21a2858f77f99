"""Records as HubSpot's JSON (``SimplePublicObject`` and friends)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from localdev.emulator.properties import DEFAULT_REQUESTED, LAST_MODIFIED, SINGULAR, iso_ms
from localdev.emulator.store import Record, Store

# Formatting a time was ~40 % of rendering a batch read (a record's history holds
# several), and records share times (a seed, a burst of writes in one millisecond):
# the same milliseconds give the same text, so recent ones are remembered.
_time_text = lru_cache(maxsize=8_192, typed=True)(iso_ms)


def always_returned(object_type: str) -> tuple[str, ...]:
    """Properties HubSpot returns without being asked."""
    return ("createdate", LAST_MODIFIED[object_type], "hs_object_id")


def render_record(
    record: Record,
    *,
    properties: list[str] | None = None,
    with_history: list[str] | None = None,
    associations: dict[str, list[tuple[int, list[int]]]] | None = None,
) -> dict[str, Any]:
    """One record; requested-but-unset properties come back as null, as HubSpot's search does."""
    wanted = list(properties) if properties else list(DEFAULT_REQUESTED[record.object_type])
    names = dict.fromkeys([*wanted, *always_returned(record.object_type)])
    out: dict[str, Any] = {
        "id": str(record.id),
        "properties": {n: record.values.get(n) for n in names},
        "createdAt": _time_text(record.created_ms),
        "updatedAt": _time_text(record.updated_ms),
        "archived": record.archived,
    }
    if record.archived and record.archived_ms is not None:
        out["archivedAt"] = _time_text(record.archived_ms)
    if with_history:
        out["propertiesWithHistory"] = {
            name: [
                {
                    "value": h.value,
                    "timestamp": _time_text(h.timestamp_ms),
                    "sourceType": h.source.type,
                    "sourceId": h.source.id,
                }
                for h in reversed(record.history.get(name, []))
            ]
            for name in with_history
        }
    if associations is not None:
        out["associations"] = {
            to_type: {
                "results": [
                    {"id": str(to_id), "type": association_label(record.object_type, to_type)}
                    for to_id, _ in links
                ]
            }
            for to_type, links in associations.items()
            if links
        }
    return out


def association_label(from_type: str, to_type: str) -> str:
    """v3 association type name, e.g. ``company_to_contact``."""
    return f"{SINGULAR[from_type]}_to_{SINGULAR[to_type]}".lower()


def batch_body(
    results: list[dict[str, Any]], errors: list[dict[str, Any]], started: str
) -> dict[str, Any]:
    """A batch answer; with errors it is the 207 ``...WithErrors`` shape."""
    body: dict[str, Any] = {"status": "COMPLETE", "results": results}
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = errors
    body["startedAt"] = started
    body["completedAt"] = now_iso()
    return body


def now_iso() -> str:
    """The current time as HubSpot's ISO string."""
    return iso_ms(int(datetime.now(UTC).timestamp() * 1000))


def render_associations(
    store: Store, record: Record, to_types: list[str]
) -> dict[str, list[tuple[int, list[int]]]]:
    """The associations of ``record`` to each of ``to_types``."""
    return {t: store.associations(record.object_type, record.id, t) for t in to_types}
