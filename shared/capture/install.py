"""``db capture enable|disable|status``: the capture trigger on ``accounts.customers``.

``enable`` compiles the trigger from every mapping in force (the global ones and each
customer's own) and records what it watches in ``hubspot_capture_state``, all in one
transaction: running it again after a mapping change refreshes what is watched.
``disable`` drops the triggers and the function; what was captured stays to be swept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from shared.capture.watch import (
    CHANGES,
    ERRORS,
    FUNCTION,
    TRIGGERS,
    Watched,
    from_json,
    install_sql,
    remove_sql,
    watched_fields,
)
from shared.db import Database, Session
from shared.db.repositories import sync_config
from shared.db.repositories._json import to_json
from shared.mapping import EntityType
from shared.mapping.provider import MappingProvider

STATE = "accounts.hubspot_capture_state"
# Serialises enable/disable across processes (any fixed number unused elsewhere).
_LOCK_KEY = 0x57A2_B5_0016


@dataclass
class CaptureStatus:
    """What ``db capture status`` reports."""

    enabled: bool
    triggers: list[str]
    watched: list[Watched]
    in_force: list[Watched]
    pending: int
    oldest_pending_at: datetime | None
    errors: int
    last_error: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def stale(self) -> bool:
        """The trigger watches other fields than the mapping in force reads."""
        return self.enabled and self.watched != self.in_force

    def as_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "triggers": self.triggers,
            "watched": [w.name for w in self.watched],
            "stale": self.stale,
            "in_force": [w.name for w in self.in_force],
            "pending": self.pending,
            "oldest_pending_at": self.oldest_pending_at,
            "unhandled_errors": self.errors,
            "last_error": self.last_error,
            "problems": self.problems,
        }


def mappings_in_force(database: Database) -> list[Watched]:
    """What the trigger should watch: every outbound field of every mapping in force.

    Read afresh (no cache) from ``hubspot_sync_config``: the global rows and each
    customer's own. Needs the database only, not HubSpot.
    """

    def load(customer_id: UUID | None) -> list[Mapping[str, Any]]:
        with database.transaction() as tx:
            return list(sync_config.load_rows(tx, str(customer_id) if customer_id else None))

    with database.transaction() as tx:
        owners = sorted(sync_config.customers_with_configs(tx))
    provider = MappingProvider(load, ttl_seconds=0)
    keys = [None, *(UUID(o) for o in owners)]
    return watched_fields(provider.for_customer(k, et) for k in keys for et in EntityType)


def enable(database: Database) -> list[Watched]:
    """Install (or refresh) the trigger for the mapping in force; what it watches.

    An invalid mapping raises its error (``MappingConfigError``), naming the problem;
    the trigger installed before stays as it was.
    """
    watched = mappings_in_force(database)
    with database.transaction() as tx:
        tx.execute("SELECT pg_advisory_xact_lock(:key)", {"key": _LOCK_KEY})
        for statement in install_sql(watched):
            tx.execute(statement)
        tx.execute(
            f"INSERT INTO {STATE} (singleton, watched) VALUES (TRUE, CAST(:w AS jsonb)) "
            "ON CONFLICT (singleton) DO UPDATE SET watched = EXCLUDED.watched, enabled_at = NOW()",
            {"w": to_json([w.as_json() for w in watched])},
        )
    return watched


def disable(database: Database) -> None:
    """Remove the triggers and their function; captured rows stay for the sweep."""
    with database.transaction() as tx:
        tx.execute("SELECT pg_advisory_xact_lock(:key)", {"key": _LOCK_KEY})
        for statement in remove_sql():
            tx.execute(statement)
        tx.execute(f"DELETE FROM {STATE}")


def installed_triggers(tx: Session) -> list[str]:
    """The capture triggers present on ``accounts.customers``."""
    rows = tx.fetch(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass('accounts.customers') "
        "AND tgname = ANY(CAST(:names AS text[])) AND NOT tgisinternal ORDER BY tgname",
        {"names": list(TRIGGERS.values())},
    )
    return [str(r["tgname"]) for r in rows]


def status(database: Database) -> CaptureStatus:
    """Whether capture is on, what it watches against what it should, and its backlog."""
    in_force = mappings_in_force(database)
    problems: list[str] = []
    with database.transaction() as tx:
        triggers = installed_triggers(tx)
        present = tx.fetch_one(
            f"SELECT to_regclass('{CHANGES}') IS NOT NULL AS changes, "
            f"to_regclass('{ERRORS}') IS NOT NULL AS errors, "
            f"to_regprocedure('{FUNCTION}()') IS NOT NULL AS function"
        )
        assert present is not None
        state = tx.fetch_one(f"SELECT watched FROM {STATE}")
        pending, oldest = 0, None
        if present["changes"]:
            backlog = tx.fetch_one(
                f"SELECT count(*) AS n, min(changed_at) AS oldest FROM {CHANGES}"
            )
            assert backlog is not None
            pending, oldest = int(backlog["n"]), backlog["oldest"]
        else:
            problems.append(f"{CHANGES} is missing: changes are recorded only as errors")
        errors, last_error = 0, None
        if present["errors"]:
            failed = tx.fetch_one(
                f"SELECT count(*) AS n, (SELECT error FROM {ERRORS} WHERE handled_at IS NULL "
                f"ORDER BY id DESC LIMIT 1) AS last FROM {ERRORS} WHERE handled_at IS NULL"
            )
            assert failed is not None
            errors, last_error = int(failed["n"]), failed["last"]
        else:
            problems.append(f"{ERRORS} is missing: a failed capture is only in PostgreSQL's log")
    enabled = bool(triggers)
    if enabled and not present["function"]:
        problems.append(f"the triggers exist but {FUNCTION}() does not: run enable")
    if enabled and len(triggers) < 2:
        problems.append(f"only {', '.join(triggers)} is installed: run enable")
    watched = from_json(state["watched"]) if state is not None else []
    result = CaptureStatus(
        enabled, triggers, watched, in_force, pending, oldest, errors, last_error, problems
    )
    if result.stale:
        problems.append("the mapping changed since enable: run enable to watch what it reads")
    if errors:
        problems.append(f"{errors} change(s) could not be captured (the sweep pushes them whole)")
    return result
