"""The mapping in force for a customer: global and per-customer rows, cached.

Rows come from ``accounts.hubspot_sync_config`` through a loader the caller
supplies (this module does no I/O itself). A configuration that turns invalid is
logged and the last valid set stays in force, so one bad edit does not stop the
sync; without any valid set the error is raised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from shared.mapping.config import (
    MappingConfigError,
    combine_configs,
    default_entity_type,
    merge_mappings,
    parse_field_mappings,
)
from shared.mapping.model import EntityType, MappingSet

log = logging.getLogger("warp_hubspot_sync.mapping")

Row = Mapping[str, Any]
# Called with None for the global rows, with a customer id for that customer's rows.
RowLoader = Callable[[UUID | None], list[Row]]


@dataclass
class _Entry:
    expires_at: float
    mappings: MappingSet


def _parse_rows(rows: list[Row], inherit_from: MappingSet | None) -> list[MappingSet]:
    """Each row parsed; problems of all rows reported together."""
    sets, problems, names = [], [], []
    for row in sorted(rows, key=lambda r: str(r["config_name"])):
        name = str(row["config_name"])
        names.append(name)
        try:
            sets.append(
                parse_field_mappings(
                    row["field_mappings"],
                    config_name=name,
                    default_entity_type=default_entity_type(name),
                    inherit_from=inherit_from,
                )
            )
        except MappingConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise MappingConfigError(" + ".join(names), problems)
    return sets


class MappingProvider:
    """Caches the merged mapping per customer for ``ttl_seconds``.

    Thread-safe: the cache is guarded by a lock, loading happens outside it (two
    threads may load the same rows at once; both get the same answer).
    """

    def __init__(
        self,
        load_rows: RowLoader,
        ttl_seconds: float = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load_rows = load_rows
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[UUID | None, _Entry] = {}

    def for_customer(self, customer_id: UUID | None, entity_type: EntityType) -> MappingSet:
        """The fields of ``entity_type`` in force for a customer (None: the global ones)."""
        if customer_id is None:
            return self._cached(None, self._build_global).for_entity(entity_type)
        return self._cached(customer_id, lambda: self._build_customer(customer_id)).for_entity(
            entity_type
        )

    def _cached(self, key: UUID | None, build: Callable[[], MappingSet]) -> MappingSet:
        now = self._clock()
        with self._lock:
            entry = self._cache.get(key)
        if entry is not None and entry.expires_at > now:
            return entry.mappings
        try:
            mappings = build()
        except MappingConfigError as exc:
            if entry is None:
                raise
            log.error(
                "mapping configuration is invalid; keeping the last valid one",
                extra={
                    "fields": {
                        "customer_id": str(key) if key else None,
                        "configs": exc.config_name,
                        "problems": list(exc.problems),
                    }
                },
            )
            mappings = entry.mappings
        with self._lock:
            self._cache[key] = _Entry(now + self._ttl, mappings)
        return mappings

    def _build_global(self) -> MappingSet:
        rows = [row for row in self._load_rows(None) if row.get("is_global")]
        return combine_configs(_parse_rows(rows, None))

    def _build_customer(self, customer_id: UUID) -> MappingSet:
        global_set = self._cached(None, self._build_global)
        rows = [
            row
            for row in self._load_rows(customer_id)
            if not row.get("is_global") and str(row.get("customer_id")) == str(customer_id)
        ]
        if not rows:
            return global_set
        overrides = combine_configs(_parse_rows(rows, global_set))
        return merge_mappings(global_set, overrides)
