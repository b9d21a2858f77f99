"""The emulator's CRM state: records, property history, associations, archive.

One re-entrant lock guards everything: API handlers hold it across validate,
write and render so every answer is a consistent snapshot, and change events
reach the webhook queue in the order the changes happened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from localdev.emulator.properties import (
    LAST_MODIFIED,
    OBJECT_TYPES,
    SINGULAR,
    PropertyRegistry,
    iso_ms,
)

# HubSpot-defined association type ids (v4): unlabeled and primary.
ASSOCIATION_TYPE_IDS = {
    ("contacts", "companies"): 279,
    ("companies", "contacts"): 280,
}
PRIMARY_TYPE_IDS = {("contacts", "companies"): 1, ("companies", "contacts"): 2}
_ID_START = {"companies": 20_000_000_001, "contacts": 30_000_000_001}


@dataclass(frozen=True)
class Source:
    """Who made a change: ``INTEGRATION``/app id, ``CRM_UI``/``userId:N``, ..."""

    type: str
    id: str


@dataclass
class HistoryEntry:
    """One value a property held, with when and who set it."""

    value: str
    timestamp_ms: int
    source: Source


@dataclass
class Record:
    """A company or contact."""

    object_type: str
    id: int
    created_ms: int
    updated_ms: int
    values: dict[str, str] = field(default_factory=dict)
    history: dict[str, list[HistoryEntry]] = field(default_factory=dict)  # oldest first
    archived: bool = False
    archived_ms: int | None = None
    # (visible from ms, values, updated ms): what search sees while its index lags.
    indexed: list[tuple[int, dict[str, str], int]] = field(default_factory=list)


Change = dict[str, Any]
Listener = Callable[[list[Change]], None]


class Store:
    """Thread-safe CRM state; ``listener`` receives the change events of each write."""

    def __init__(self, properties: PropertyRegistry, listener: Listener | None = None) -> None:
        self.lock = threading.RLock()
        # HubSpot's search index trails writes by "a few moments"; 0 makes it immediate.
        self.search_delay_ms = 0
        # Whether writing a property's current value again records history and fires a
        # propertyChange (UNCONFIRMED in HubSpot; off by default, switchable for tests).
        self.identical_writes_fire = False
        self.properties = properties
        self.listener = listener
        self._last_ms = 0
        self.reset()

    def reset(self) -> None:
        """Forget every record and association."""
        with self.lock:
            self.records: dict[str, dict[int, Record]] = {t: {} for t in OBJECT_TYPES}
            self._next_id = dict(_ID_START)
            self._merged_into: dict[tuple[str, int], int] = {}
            self._unique: dict[tuple[str, str], dict[str, int]] = {}
            self._assoc: dict[tuple[str, int], dict[tuple[str, int], set[int]]] = {}

    def now_ms(self) -> int:
        """Wall-clock epoch ms, never going backwards."""
        with self.lock:
            self._last_ms = max(self._last_ms, int(time.time() * 1000))
            return self._last_ms

    # -- reads ---------------------------------------------------------------

    def get(self, object_type: str, object_id: int, *, archived: bool = False) -> Record | None:
        """A record by id (following merges); archived ones only when asked."""
        with self.lock:
            object_id = self._merged_into.get((object_type, object_id), object_id)
            record = self.records[object_type].get(object_id)
            if record is None or record.archived != archived:
                return None
            return record

    def find_unique(self, object_type: str, prop: str, value: str) -> Record | None:
        """The live record whose unique property ``prop`` equals ``value``."""
        with self.lock:
            object_id = self._unique.get((object_type, prop), {}).get(value.lower())
            return None if object_id is None else self.get(object_type, object_id)

    def live(self, object_type: str) -> list[Record]:
        """Every non-archived record, in id order."""
        with self.lock:
            return [r for r in self.records[object_type].values() if not r.archived]

    def searchable(self, object_type: str) -> list[Record]:
        """Live records as the lagging search index sees them (``search_delay_ms``)."""
        with self.lock:
            if not self.search_delay_ms:
                return self.live(object_type)
            now = self.now_ms()
            out = []
            for record in self.live(object_type):
                visible = [i for i, snap in enumerate(record.indexed) if snap[0] <= now]
                if not visible:
                    continue  # created too recently to be indexed
                del record.indexed[: visible[-1]]  # older snapshots can never be seen again
                _, values, updated = record.indexed[0]
                out.append(Record(object_type, record.id, record.created_ms, updated, values))
            return out

    def page(
        self, object_type: str, *, archived: bool, after: int, limit: int
    ) -> tuple[list[Record], int | None]:
        """Records with id > ``after`` (ids only grow), and the next cursor if any."""
        with self.lock:
            matching = [
                r
                for r in self.records[object_type].values()
                if r.archived == archived and r.id > after
            ]
        matching.sort(key=lambda r: r.id)
        page = matching[:limit]
        return page, (page[-1].id if len(matching) > limit else None)

    def associations(
        self, object_type: str, object_id: int, to_type: str
    ) -> list[tuple[int, list[int]]]:
        """(to id, association type ids) of live associated records."""
        with self.lock:
            links = self._assoc.get((object_type, object_id), {})
            return [
                (to_id, sorted(types))
                for (t, to_id), types in sorted(links.items())
                if t == to_type and self.get(to_type, to_id) is not None
            ]

    # -- writes --------------------------------------------------------------

    def create(self, object_type: str, values: dict[str, str], source: Source) -> Record:
        """A new record with ``values`` (already validated)."""
        with self.lock:
            self._check_unique(object_type, values, None)
            now = self.now_ms()
            object_id = self._next_id[object_type]
            self._next_id[object_type] += 1
            record = Record(object_type, object_id, now, now)
            self.records[object_type][object_id] = record
            system = {"hs_object_id": str(object_id), "createdate": iso_ms(now)}
            self._set(record, {**system, **values}, source, now)
            self._touch(record, source, now)
            changes: list[Change] = [
                self._change(record, "creation", source, now, changeFlag="CREATED")
            ]
            changes += self._property_changes(
                record, [k for k in values if values[k] != ""], source, now
            )
            self._emit(changes)
            return record

    def update(self, record: Record, values: dict[str, str], source: Source) -> list[str]:
        """Write ``values``; returns the names whose value changed (no-ops leave no trace)."""
        with self.lock:
            self._check_unique(record.object_type, values, record.id)
            changed = [
                k
                for k, v in values.items()
                if self.identical_writes_fire or record.values.get(k, "") != v
            ]
            if not changed:
                return []
            now = self.now_ms()
            self._set(record, {k: values[k] for k in changed}, source, now)
            self._touch(record, source, now)
            self._emit(self._property_changes(record, changed, source, now))
            return changed

    def archive(self, record: Record, source: Source) -> None:
        """Archive (delete) a record; restorable in HubSpot, so nothing is erased."""
        with self.lock:
            if record.archived:
                return
            now = self.now_ms()
            record.archived, record.archived_ms = True, now
            self._unindex(record)
            self._emit([self._change(record, "deletion", source, now, changeFlag="DELETED")])

    def merge(self, primary: Record, merged: Record, source: Source) -> Record:
        """Merge ``merged`` into ``primary``: fill the primary's empty values, archive the other."""
        with self.lock:
            now = self.now_ms()
            moved = {
                k: v
                for k, v in merged.values.items()
                if v != "" and record_value(primary, k) == "" and k not in _SYSTEM
            }
            merged.archived, merged.archived_ms = True, now
            self._unindex(merged)
            self._merged_into[(merged.object_type, merged.id)] = primary.id
            for key, value in list(self._merged_into.items()):
                if value == merged.id and key[0] == merged.object_type:
                    self._merged_into[key] = primary.id
            for (to_type, to_id), types in self._assoc.pop(
                (merged.object_type, merged.id), {}
            ).items():
                self._link(primary.object_type, primary.id, to_type, to_id, types)
            self._check_unique(primary.object_type, moved, primary.id)
            self._set(primary, moved, source, now)
            self._touch(primary, source, now)
            self._emit(
                [
                    self._change(
                        primary,
                        "merge",
                        source,
                        now,
                        changeFlag="MERGED",
                        primaryObjectId=primary.id,
                        mergedObjectIds=[merged.id],
                        newObjectId=primary.id,
                        numberOfPropertiesMoved=len(moved),
                    )
                ]
            )
            return primary

    def associate(self, a: Record, b: Record, source: Source) -> list[tuple[Record, Record, int]]:
        """Default (unlabeled) association both ways; returns the links as (from, to, type id)."""
        with self.lock:
            now = self.now_ms()
            type_id = ASSOCIATION_TYPE_IDS[(a.object_type, b.object_type)]
            existing = self._assoc.get((a.object_type, a.id), {}).get((b.object_type, b.id), set())
            pairs = ((a, b), (b, a))
            if type_id not in existing:
                self._link(a.object_type, a.id, b.object_type, b.id, {type_id})
                # HubSpot sends one associationChange per direction.
                self._emit(
                    [
                        self._change(
                            x,
                            "associationChange",
                            source,
                            now,
                            associationType=f"{SINGULAR[x.object_type]}_TO_{SINGULAR[y.object_type]}",
                            fromObjectId=x.id,
                            toObjectId=y.id,
                            associationRemoved=False,
                            isPrimaryAssociation=False,
                        )
                        for x, y in pairs
                    ]
                )
            return [(x, y, ASSOCIATION_TYPE_IDS[(x.object_type, y.object_type)]) for x, y in pairs]

    # -- internals -------------------------------------------------------------

    def _set(self, record: Record, values: dict[str, str], source: Source, now: int) -> None:
        for name, value in values.items():
            old = record.values.get(name, "")
            record.values[name] = value
            record.history.setdefault(name, []).append(HistoryEntry(value, now, source))
            self._reindex(record, name, old, value)

    def _touch(self, record: Record, source: Source, now: int) -> None:
        record.updated_ms = now
        name = LAST_MODIFIED[record.object_type]
        record.values[name] = iso_ms(now)
        record.history.setdefault(name, []).append(HistoryEntry(iso_ms(now), now, source))
        if self.search_delay_ms:
            record.indexed.append((now + self.search_delay_ms, dict(record.values), now))

    def _check_unique(self, object_type: str, values: dict[str, str], own_id: int | None) -> None:
        for name in self.properties.unique_names(object_type):
            value = values.get(name, "")
            holder = self._unique.get((object_type, name), {}).get(value.lower()) if value else None
            if holder is not None and holder != own_id:
                raise UniqueViolation(object_type, name, holder)

    def _reindex(self, record: Record, name: str, old: str, new: str) -> None:
        prop = self.properties.get(record.object_type, name)
        if prop is None or not prop.has_unique_value:
            return
        index = self._unique.setdefault((record.object_type, name), {})
        if old:
            index.pop(old.lower(), None)
        if new:
            index[new.lower()] = record.id

    def _unindex(self, record: Record) -> None:
        for name in self.properties.unique_names(record.object_type):
            value = record.values.get(name, "")
            if value:
                self._unique.get((record.object_type, name), {}).pop(value.lower(), None)

    def _link(
        self, from_type: str, from_id: int, to_type: str, to_id: int, types: Iterable[int]
    ) -> None:
        self._assoc.setdefault((from_type, from_id), {}).setdefault((to_type, to_id), set()).update(
            types
        )
        reverse = {ASSOCIATION_TYPE_IDS[(to_type, from_type)]}
        self._assoc.setdefault((to_type, to_id), {}).setdefault((from_type, from_id), set()).update(
            reverse
        )

    def _property_changes(
        self, record: Record, names: list[str], source: Source, now: int
    ) -> list[Change]:
        return [
            self._change(
                record,
                "propertyChange",
                source,
                now,
                propertyName=n,
                propertyValue=record.values.get(n, ""),
            )
            for n in names
            if n not in _SYSTEM
        ]

    @staticmethod
    def _change(record: Record, kind: str, source: Source, now: int, **extra: Any) -> Change:
        singular = SINGULAR[record.object_type].lower()
        return {
            "occurredAt": now,
            "subscriptionType": f"{singular}.{kind}",
            "objectId": record.id,
            "changeSource": source.type,
            "sourceId": source.id,
            **extra,
        }

    def _emit(self, changes: list[Change]) -> None:
        if changes and self.listener is not None:
            self.listener(changes)


# Properties HubSpot maintains itself: no propertyChange subscriptions, never merged.
_SYSTEM = {"hs_object_id", "createdate", "hs_lastmodifieddate", "lastmodifieddate"}


def record_value(record: Record, name: str) -> str:
    """A property's current value ("" when unset)."""
    return record.values.get(name, "")


class UniqueViolation(Exception):
    """A write would give a unique property a value another record holds."""

    def __init__(self, object_type: str, prop: str, holder: int) -> None:
        super().__init__(f"{prop} already used by {holder}")
        self.object_type, self.prop, self.holder = object_type, prop, holder
