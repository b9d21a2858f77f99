"""Versioned SQL migrations, applied in order under an advisory lock.

Files in ``shared/db/migrations`` are named ``NNNN_description.sql`` and applied
in version order, each once, recorded in ``accounts.hubspot_sync_migrations``.
The whole upgrade is one transaction holding a transaction-level advisory lock,
so two processes starting together apply nothing twice and a failure leaves the
database as it was. Every migration is additive and idempotent (``IF NOT
EXISTS``), because it must also run on a database where WARP's own schema files
already created some of the same objects.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from shared.db.connection import Database, Session
from shared.errors import ConfigurationError

# Any fixed 64-bit number; it only has to differ from other advisory locks in use.
_LOCK_KEY = 0x57A2_B5_0001


@dataclass(frozen=True)
class Migration:
    """One SQL file: its version number, name and text."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """Every migration shipped with the package, in version order."""
    found = []
    for entry in resources.files("shared.db.migrations").iterdir():
        if entry.name.endswith(".sql"):
            head, _, rest = entry.name.partition("_")
            if not head.isdigit():
                raise ConfigurationError(f"migration file {entry.name} must start with NNNN_")
            found.append(Migration(int(head), rest.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ConfigurationError("two migration files share a version number")
    return found


def upgrade(database: Database) -> list[Migration]:
    """Apply every migration not applied yet; return the ones applied now."""
    applied_now = []
    with database.transaction() as tx:
        tx.execute("SELECT pg_advisory_xact_lock(:key)", {"key": _LOCK_KEY})
        _ensure_ledger(tx)
        done = {
            row["version"]: row["checksum"]
            for row in tx.fetch("SELECT version, checksum FROM accounts.hubspot_sync_migrations")
        }
        for migration in available_migrations():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise ConfigurationError(
                        f"migration {migration.version:04d}_{migration.name} was edited after it "
                        "was applied; add a new migration instead"
                    )
                continue
            tx.execute(migration.sql)
            tx.execute(
                "INSERT INTO accounts.hubspot_sync_migrations (version, name, checksum) "
                "VALUES (:version, :name, :checksum)",
                {
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                },
            )
            applied_now.append(migration)
    return applied_now


def applied_versions(database: Database) -> list[int]:
    """Versions recorded as applied (empty when the ledger does not exist yet)."""
    with database.transaction() as tx:
        exists = tx.fetch_value(
            "SELECT to_regclass('accounts.hubspot_sync_migrations') IS NOT NULL"
        )
        if not exists:
            return []
        rows = tx.fetch("SELECT version FROM accounts.hubspot_sync_migrations ORDER BY version")
        return [r["version"] for r in rows]


def _ensure_ledger(tx: Session) -> None:
    tx.execute("CREATE SCHEMA IF NOT EXISTS accounts")
    tx.execute(
        """
        CREATE TABLE IF NOT EXISTS accounts.hubspot_sync_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            checksum   TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
        )
        """
    )
