"""Where idempotency records live: a small interface and its PostgreSQL implementation.

Times come from the database clock (``NOW()``), so instances with skewed clocks
agree on what has expired.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared.db.connection import Database, Row
from shared.idempotency.record import IdempotencyRecord, Status


@dataclass(frozen=True)
class Claim:
    """The outcome of a claim: ours to run, or the record that holds the key."""

    claimed: bool
    existing: IdempotencyRecord | None = None


class BasePersistence(abc.ABC):
    """Storage for idempotency records (the Powertools persistence-layer contract)."""

    @abc.abstractmethod
    def claim(
        self, key: str, payload_hash: str | None, *, expires_after: timedelta, lease: timedelta
    ) -> Claim:
        """Mark ``key`` IN_PROGRESS for ``lease`` if it is free, else return its record.

        A key is free when it has no record, its record expired, or its IN_PROGRESS
        claim outlived its lease with the same payload (the invocation crashed).
        """

    @abc.abstractmethod
    def complete(self, key: str, response: Any, *, expires_after: timedelta) -> None:
        """Mark ``key`` COMPLETED with ``response``, kept for ``expires_after``."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Forget ``key`` (the work failed), so a retry runs it again."""

    @abc.abstractmethod
    def get(self, key: str) -> IdempotencyRecord | None:
        """The record of ``key``, or None."""


class PostgresPersistence(BasePersistence):
    """Records in ``accounts.hubspot_idempotency``, each operation its own transaction.

    A claim must be visible to other instances before the work starts, so it
    commits on its own rather than inside the caller's transaction.
    """

    table = "accounts.hubspot_idempotency"

    def __init__(self, database: Database) -> None:
        self._database = database

    def claim(
        self, key: str, payload_hash: str | None, *, expires_after: timedelta, lease: timedelta
    ) -> Claim:
        """See :meth:`BasePersistence.claim`; one INSERT ... ON CONFLICT decides it."""
        with self._database.transaction() as tx:
            won = tx.fetch_value(
                f"INSERT INTO {self.table} AS r (key, status, expires_at, "
                "in_progress_expires_at, payload_hash) VALUES (:key, 'IN_PROGRESS', "
                "NOW() + make_interval(secs => :ttl), NOW() + make_interval(secs => :lease), "
                ":hash) "
                "ON CONFLICT (key) DO UPDATE SET status = 'IN_PROGRESS', "
                "expires_at = EXCLUDED.expires_at, "
                "in_progress_expires_at = EXCLUDED.in_progress_expires_at, "
                "payload_hash = EXCLUDED.payload_hash, response = NULL, updated_at = NOW() "
                "WHERE r.expires_at <= NOW() OR (r.status = 'IN_PROGRESS' "
                "AND r.in_progress_expires_at <= NOW() "
                "AND r.payload_hash IS NOT DISTINCT FROM EXCLUDED.payload_hash) "
                "RETURNING key",
                {
                    "key": key,
                    "hash": payload_hash,
                    "ttl": expires_after.total_seconds(),
                    "lease": lease.total_seconds(),
                },
            )
            if won is not None:
                return Claim(claimed=True)
            row = tx.fetch_one(f"SELECT * FROM {self.table} WHERE key = :key", {"key": key})
        # The holder may have deleted its record between the two statements: report
        # it as free-but-unclaimed (existing None) and let the caller claim again.
        return Claim(claimed=False, existing=_record(row) if row else None)

    def complete(self, key: str, response: Any, *, expires_after: timedelta) -> None:
        """See :meth:`BasePersistence.complete`."""
        with self._database.transaction() as tx:
            tx.execute(
                f"UPDATE {self.table} SET status = 'COMPLETED', "
                "response = CAST(:response AS jsonb), in_progress_expires_at = NULL, "
                "expires_at = NOW() + make_interval(secs => :ttl), updated_at = NOW() "
                "WHERE key = :key",
                {
                    "key": key,
                    "response": json.dumps(response, default=str),
                    "ttl": expires_after.total_seconds(),
                },
            )

    def delete(self, key: str) -> None:
        """See :meth:`BasePersistence.delete`. Only an IN_PROGRESS record is removed."""
        with self._database.transaction() as tx:
            tx.execute(
                f"DELETE FROM {self.table} WHERE key = :key AND status = 'IN_PROGRESS'",
                {"key": key},
            )

    def get(self, key: str) -> IdempotencyRecord | None:
        """See :meth:`BasePersistence.get`."""
        with self._database.transaction() as tx:
            row = tx.fetch_one(f"SELECT * FROM {self.table} WHERE key = :key", {"key": key})
        return _record(row) if row else None

    def purge_expired(self, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired records; return how many went."""
        with self._database.transaction() as tx:
            return tx.execute(
                f"DELETE FROM {self.table} WHERE key IN (SELECT key FROM {self.table} "
                "WHERE expires_at <= NOW() LIMIT :limit)",
                {"limit": limit},
            )


def _record(row: Row) -> IdempotencyRecord:
    return IdempotencyRecord(
        key=row["key"],
        status=Status(row["status"]),
        expires_at=row["expires_at"],
        in_progress_expires_at=row["in_progress_expires_at"],
        payload_hash=row["payload_hash"],
        response=row["response"],
    )
