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
# HubSpot's search index shows a write "a few moments" later (search guide). Two
# seconds by default, so every flow that searches meets the lag; tests that need
# none say so (search_delay_ms=0) or let the index catch up (``index_now``).
DEFAULT_SEARCH_DELAY_MS = 2_000


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
        self.search_delay_ms = DEFAULT_SEARCH_DELAY_MS
        # Whether writing a property's current value again records history and fires a
        # propertyChange (UNCONFIRMED in HubSpot; off by default, switchable for tests).
        self.identical_writes_fire = False
        # The portal setting "Create and associate companies with contacts": off unless asked.
        self.auto_create_companies = False
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

    def index_now(self, records: Iterable[Record] | None = None) -> int:
        """Let the search index catch up with every write (of ``records``, else all).

        Stands for "enough time has passed" without a test sleeping; the count caught up.
        """
        with self.lock:
            chosen = (
                list(records)
                if records is not None
                else [r for by_id in self.records.values() for r in by_id.values()]
            )
            for record in chosen:
                if record.indexed:
                    _, values, updated = record.indexed[-1]
                    record.indexed[:] = [(0, values, updated)]
            return len(chosen)

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
            if object_type == "contacts" and self.auto_create_companies:
                self.auto_associate(record)
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
        """Merge two records into a new one with a new id, as HubSpot does now.

        HubSpot's changelog "Updated merge functionality for contacts and companies":
        the result is a new record; the primary's current values win, the other's
        fill the gaps; both old ids (and ids merged into them before) resolve to it;
        associations move to it, the primary's first (a second primary association of
        the same kind from the other record is dropped to unlabeled). Its
        ``hs_merged_object_ids`` lists the old ids. The two old records are archived
        and no longer searchable. The webhook is one ``merge`` event about the new
        record (``newObjectId`` != ``primaryObjectId``).
        """
        with self.lock:
            now = self.now_ms()
            object_type = primary.object_type
            old_ids = {primary.id, merged.id} | set(_merged_ids(primary)) | set(_merged_ids(merged))
            values = {k: v for k, v in merged.values.items() if v != "" and k not in _SYSTEM}
            moved = sum(1 for k in values if record_value(primary, k) == "")
            values.update({k: v for k, v in primary.values.items() if v != "" and k not in _SYSTEM})
            for old in (primary, merged):
                old.archived, old.archived_ms = True, now
                self._unindex(old)
            new_id = self._next_id[object_type]
            self._next_id[object_type] += 1
            # UNCONFIRMED: which createdate HubSpot gives the new record; the primary's is kept.
            record = Record(object_type, new_id, primary.created_ms, now)
            self.records[object_type][new_id] = record
            for name in set(primary.history) | set(merged.history):
                record.history[name] = sorted(
                    primary.history.get(name, []) + merged.history.get(name, []),
                    key=lambda e: e.timestamp_ms,
                )
            system = {
                "hs_object_id": str(new_id),
                "createdate": iso_ms(primary.created_ms),
                MERGED_IDS: ";".join(str(i) for i in sorted(old_ids)),
            }
            for name, value in {**values, **system}.items():
                record.values[name] = value
                self._reindex(record, name, "", value)
                entries = record.history.setdefault(name, [])
                if not entries or entries[-1].value != value:
                    entries.append(HistoryEntry(value, now, source))
            for key, target in list(self._merged_into.items()):
                if key[0] == object_type and target in (primary.id, merged.id):
                    self._merged_into[key] = new_id
            self._merged_into[(object_type, primary.id)] = new_id
            self._merged_into[(object_type, merged.id)] = new_id
            for old in (primary, merged):  # the primary's associations first
                self._move_links(old, record)
            self._touch(record, source, now)
            self._emit(
                [
                    self._change(
                        record,
                        "merge",
                        source,
                        now,
                        changeFlag="MERGED",
                        primaryObjectId=primary.id,
                        mergedObjectIds=[merged.id],
                        newObjectId=new_id,
                        numberOfPropertiesMoved=moved,
                    )
                ]
            )
            return record

    def _move_links(self, old: Record, new: Record) -> None:
        """Give ``new`` the associations of ``old``; a contact keeps one primary company."""
        for (to_type, to_id), types in self._assoc.pop((old.object_type, old.id), {}).items():
            self._assoc.get((to_type, to_id), {}).pop((old.object_type, old.id), None)
            primary = PRIMARY_TYPE_IDS[(old.object_type, to_type)]
            # A company may be many contacts' primary company; a contact has only one.
            if (
                old.object_type == "contacts"
                and primary in types
                and self._has_primary(new, to_type)
            ):
                types = types - {primary}
            self._link(new.object_type, new.id, to_type, to_id, types)

    def _has_primary(self, record: Record, to_type: str) -> bool:
        primary = PRIMARY_TYPE_IDS[(record.object_type, to_type)]
        links = self._assoc.get((record.object_type, record.id), {})
        return any(t == to_type and primary in types for (t, _), types in links.items())

    def associate(
        self, a: Record, b: Record, source: Source, *, primary: bool = False
    ) -> list[tuple[Record, Record, int]]:
        """Associate both ways (unlabeled, and primary when asked); the links as (from, to, type).

        One associationChange per direction and kind (webhooks guide: creating a
        primary association also creates the unlabeled one, so two messages). A
        contact has one primary company: a new primary replaces the old, which stays
        associated unlabeled.
        """
        with self.lock:
            now = self.now_ms()
            pairs = ((a, b), (b, a))
            changes: list[Change] = []
            if not self._linked(a, b, ASSOCIATION_TYPE_IDS[(a.object_type, b.object_type)]):
                self._link(a.object_type, a.id, b.object_type, b.id, {_unlabeled(a, b)})
                changes += [self._assoc_change(x, y, source, now, False) for x, y in pairs]
            if primary and not self._linked(a, b, PRIMARY_TYPE_IDS[(a.object_type, b.object_type)]):
                contact, company = (a, b) if a.object_type == "contacts" else (b, a)
                for (to_type, to_id), types in list(self._assoc.get(_key(contact), {}).items()):
                    if to_type == "companies" and PRIMARY_TYPE_IDS[("contacts", to_type)] in types:
                        old = self.records[to_type][to_id]
                        self._unlink_primary(contact, old)
                        changes += [
                            self._assoc_change(x, y, source, now, True, removed=True)
                            for x, y in ((contact, old), (old, contact))
                        ]
                self._link(
                    contact.object_type,
                    contact.id,
                    company.object_type,
                    company.id,
                    {PRIMARY_TYPE_IDS[("contacts", "companies")]},
                )
                changes += [self._assoc_change(x, y, source, now, True) for x, y in pairs]
            self._emit(changes)
            return [(x, y, t) for x, y in pairs for t in sorted(self._assoc[_key(x)][_key(y)])]

    def auto_associate(self, contact: Record) -> None:
        """The portal setting "Create and associate companies with contacts" (off by default).

        The company whose domain is the contact's email domain becomes its primary
        company; with none, HubSpot creates one (named after the domain here; HubSpot
        fills it from its own database). Freemail domains are skipped. Which index
        HubSpot's associator looks in is UNCONFIRMED: the lagging search index is
        assumed, so a company created moments ago may get a HubSpot-made twin.
        """
        with self.lock:
            _, at, domain = contact.values.get("email", "").rpartition("@")
            domain = domain.strip().lower()
            if not at or not domain or domain in FREEMAIL:
                return
            found = [
                r for r in self.searchable("companies") if r.values.get("domain", "") == domain
            ]
            company = (
                self.records["companies"][min(r.id for r in found)]
                if found
                else self.create("companies", {"domain": domain, "name": domain}, AUTO_ASSOCIATION)
            )
            self.associate(contact, company, AUTO_ASSOCIATION, primary=True)

    # -- internals -------------------------------------------------------------

    def _linked(self, a: Record, b: Record, type_id: int) -> bool:
        return type_id in self._assoc.get(_key(a), {}).get(_key(b), set())

    def _unlink_primary(self, contact: Record, company: Record) -> None:
        self._assoc[_key(contact)][_key(company)].discard(
            PRIMARY_TYPE_IDS[("contacts", "companies")]
        )
        self._assoc[_key(company)][_key(contact)].discard(
            PRIMARY_TYPE_IDS[("companies", "contacts")]
        )

    def _assoc_change(
        self,
        x: Record,
        y: Record,
        source: Source,
        now: int,
        primary: bool,
        *,
        removed: bool = False,
    ) -> Change:
        return self._change(
            x,
            "associationChange",
            source,
            now,
            associationType=f"{SINGULAR[x.object_type]}_TO_{SINGULAR[y.object_type]}",
            fromObjectId=x.id,
            toObjectId=y.id,
            associationRemoved=removed,
            isPrimaryAssociation=primary,
        )

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
        # Every write gets a snapshot, so a lag switched on later still sees old records;
        # snapshots already superseded by a visible newer one are dropped.
        visible = [s for s in record.indexed if s[0] <= now][-1:]
        pending = [s for s in record.indexed if s[0] > now]
        record.indexed[:] = [
            *visible,
            *pending,
            (now + self.search_delay_ms, dict(record.values), now),
        ]

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
        # The reverse of a primary association is primary too (1 <-> 2).
        reverse = {ASSOCIATION_TYPE_IDS[(to_type, from_type)]}
        if PRIMARY_TYPE_IDS[(from_type, to_type)] in set(types):
            reverse.add(PRIMARY_TYPE_IDS[(to_type, from_type)])
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


# HubSpot's own automatic writes, e.g. the company auto-association (UNCONFIRMED sourceId).
AUTO_ASSOCIATION = Source("HUBSPOT_INTERNAL", "CompanyAutoAssociation")
# Domains the auto-association ignores (HubSpot: "freemail" addresses; a sample).
FREEMAIL = frozenset({"gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com"})


def _key(record: Record) -> tuple[str, int]:
    return (record.object_type, record.id)


def _unlabeled(a: Record, b: Record) -> int:
    return ASSOCIATION_TYPE_IDS[(a.object_type, b.object_type)]


# The ids a merged record was made from, ";"-separated (an enumeration, "Merged ... IDs").
MERGED_IDS = "hs_merged_object_ids"
# Properties HubSpot maintains itself: no propertyChange subscriptions, never merged.
_SYSTEM = {"hs_object_id", "createdate", "hs_lastmodifieddate", "lastmodifieddate", MERGED_IDS}


def _merged_ids(record: Record) -> list[int]:
    return [int(i) for i in record.values.get(MERGED_IDS, "").split(";") if i.isdigit()]


def record_value(record: Record, name: str) -> str:
    """A property's current value ("" when unset)."""
    return record.values.get(name, "")


class UniqueViolation(Exception):
    """A write would give a unique property a value another record holds."""

    def __init__(self, object_type: str, prop: str, holder: int) -> None:
        super().__init__(f"{prop} already used by {holder}")
        self.object_type, self.prop, self.holder = object_type, prop, holder
