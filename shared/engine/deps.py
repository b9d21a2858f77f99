"""What the engine works with, gathered in one place so every flow gets the same parts.

Every flow takes an :class:`Engine` as a parameter: the adapters hand in the
process-wide one (``shared/engine/edge.py``), tests build their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any
from uuid import UUID

from shared.config.settings import Settings
from shared.db import Database
from shared.db.repositories import sync_config
from shared.mapping import EntityType, MappingProvider, MappingSet
from shared.sealing import Sealer
from shared.tasks.dispatch import Dispatcher, Task

if TYPE_CHECKING:
    from shared.hubspot import HubSpotClient

# How long mappings (and which customers have their own) are cached per instance.
MAPPING_TTL_SECONDS = 60.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Engine:
    """The parts a sync flow needs, handed to it by its caller (see the module docstring)."""

    settings: Settings
    database: Database
    hubspot: HubSpotClient
    dispatcher: Dispatcher
    mappings: MappingProvider = field(init=False)
    clock: Callable[[], datetime] = _utcnow

    _config_owners: tuple[float, set[str]] | None = field(init=False, default=None)
    _config_lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.mappings = MappingProvider(self._load_config_rows, ttl_seconds=MAPPING_TTL_SECONDS)

    def mapping_for(self, customer_id: str | UUID | None, entity_type: EntityType) -> MappingSet:
        """The fields in force for one customer (global config merged with its own)."""
        key = UUID(str(customer_id)) if customer_id is not None else None
        return self.mappings.for_customer(key, entity_type)

    def reload_mappings(self) -> None:
        """Forget cached mappings: a configuration just saved applies from the next call.

        Without it a change takes effect within ``MAPPING_TTL_SECONDS``.
        """
        with self._config_lock:
            self._config_owners = None
        self.mappings = MappingProvider(self._load_config_rows, ttl_seconds=MAPPING_TTL_SECONDS)

    @cached_property
    def sealer(self) -> Sealer:
        """Seals the sync log's sensitive values, with the keys the settings name.

        Built on first use: cryptography loads only in a process that seals or opens.
        """
        return Sealer.from_settings(self.settings)

    def submit(self, task: Task) -> bool:
        """Hand ``task`` to the dispatcher; False when a task of that name exists already.

        The in-process stand-in runs it with this engine, as retry_worker runs it with its own.
        """
        return self.dispatcher.submit(task, self)

    def now(self) -> datetime:
        """The engine's clock (tests and the demo may move it)."""
        return self.clock()

    def _load_config_rows(self, customer_id: UUID | None) -> list[Mapping[str, Any]]:
        # Most customers have no rows of their own: answering them from the cached
        # set of customers that do spares a query per customer (10,000 in a
        # reconciliation) while keeping the provider's per-customer cache as it is.
        if customer_id is not None and str(customer_id) not in self._customers_with_configs():
            return []
        with self.database.transaction() as tx:
            return list(sync_config.load_rows(tx, str(customer_id) if customer_id else None))

    def _customers_with_configs(self) -> set[str]:
        now = time.monotonic()
        with self._config_lock:
            cached = self._config_owners
        if cached is not None and cached[0] > now:
            return cached[1]
        with self.database.transaction() as tx:
            owners = sync_config.customers_with_configs(tx)
        with self._config_lock:
            self._config_owners = (now + MAPPING_TTL_SECONDS, owners)
        return owners
