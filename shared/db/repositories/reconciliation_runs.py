"""``accounts.hubspot_reconciliation_runs``: one row per run, its counts and checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.db.connection import Row, Session
from shared.db.repositories._json import check_columns, to_json

TABLE = "accounts.hubspot_reconciliation_runs"
COUNT_COLUMNS = frozenset(
    {
        "total_records",
        "records_in_sync",
        "records_updated",
        "conflicts_detected",
        "errors_encountered",
    }
)


def start(
    tx: Session,
    *,
    run_type: str,
    entity_type: str,
    customer_id: str | None = None,
    triggered_by: str | None = None,
    dry_run: bool = False,
    idempotency_key: str | None = None,
    notes: str | None = None,
) -> tuple[Row, bool]:
    """Open a RUNNING run; return it and whether it is new.

    With an ``idempotency_key`` already used, nothing is written and the existing
    run is returned with ``False``: a trigger delivered twice is one run.
    """
    params = {
        "run_type": run_type,
        "entity_type": entity_type,
        "customer_id": None if customer_id is None else str(customer_id),
        "triggered_by": triggered_by,
        "dry_run": dry_run,
        "idempotency_key": idempotency_key,
        "notes": notes,
    }
    row = tx.fetch_one(
        f"INSERT INTO {TABLE} (run_type, entity_type, customer_id, triggered_by, dry_run, "
        "idempotency_key, notes, heartbeat_at) VALUES (:run_type, :entity_type, "
        "CAST(:customer_id AS uuid), :triggered_by, :dry_run, :idempotency_key, :notes, NOW()) "
        "ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
        params,
    )
    if row is not None:
        return row, True
    existing = tx.fetch_one(
        f"SELECT * FROM {TABLE} WHERE idempotency_key = :key", {"key": idempotency_key}
    )
    assert existing is not None
    return existing, False


def checkpoint(
    tx: Session, run_id: str, state: Mapping[str, Any], counts: Mapping[str, int] | None = None
) -> None:
    """Save where the run is (``state``) and its counts so far; beats the heartbeat."""
    assignments, params = _count_assignments(counts or {})
    assignments += ["checkpoint = CAST(:state AS jsonb)", "heartbeat_at = NOW()"]
    params.update({"id": str(run_id), "state": to_json(dict(state))})
    tx.execute(f"UPDATE {TABLE} SET {', '.join(assignments)} WHERE id = CAST(:id AS uuid)", params)


def heartbeat(tx: Session, run_id: str) -> None:
    """Show the run is alive."""
    tx.execute(
        f"UPDATE {TABLE} SET heartbeat_at = NOW() WHERE id = CAST(:id AS uuid)", {"id": str(run_id)}
    )


def finish(
    tx: Session,
    run_id: str,
    *,
    status: str,
    counts: Mapping[str, int] | None = None,
    report: Mapping[str, Any] | None = None,
    notes: str | None = None,
) -> Row | None:
    """Close a run with its final status, counts and report; the duration is computed here."""
    assignments, params = _count_assignments(counts or {})
    assignments += [
        "status = :status",
        "completed_at = NOW()",
        "heartbeat_at = NOW()",
        "duration_seconds = CAST(round(extract(epoch FROM NOW() - started_at)) AS integer)",
        "report = COALESCE(CAST(:report AS jsonb), report)",
        "notes = COALESCE(:notes, notes)",
    ]
    params.update(
        {
            "id": str(run_id),
            "status": status,
            "report": None if report is None else to_json(dict(report)),
            "notes": notes,
        }
    )
    return tx.fetch_one(
        f"UPDATE {TABLE} SET {', '.join(assignments)} WHERE id = CAST(:id AS uuid) RETURNING *",
        params,
    )


def get(tx: Session, run_id: str) -> Row | None:
    """One run, or None."""
    return tx.fetch_one(f"SELECT * FROM {TABLE} WHERE id = CAST(:id AS uuid)", {"id": str(run_id)})


def list_runs(
    tx: Session,
    *,
    limit: int = 50,
    status: str | None = None,
    customer_id: str | None = None,
) -> list[Row]:
    """Runs, newest first, optionally of one status or one customer."""
    conditions = ["TRUE"]
    params: dict[str, Any] = {"limit": limit}
    if status is not None:
        conditions.append("status = :status")
        params["status"] = status
    if customer_id is not None:
        conditions.append("customer_id = CAST(:customer_id AS uuid)")
        params["customer_id"] = str(customer_id)
    return tx.fetch(
        f"SELECT * FROM {TABLE} WHERE {' AND '.join(conditions)} "
        "ORDER BY started_at DESC, id DESC LIMIT :limit",
        params,
    )


def stale_running(tx: Session, *, silent_for_seconds: float) -> list[Row]:
    """RUNNING runs whose heartbeat is older than ``silent_for_seconds`` (their worker died)."""
    return tx.fetch(
        f"SELECT * FROM {TABLE} WHERE status = 'RUNNING' "
        "AND COALESCE(heartbeat_at, started_at) < NOW() - make_interval(secs => :silent) "
        "ORDER BY started_at",
        {"silent": float(silent_for_seconds)},
    )


def _count_assignments(counts: Mapping[str, int]) -> tuple[list[str], dict[str, Any]]:
    columns = check_columns(counts, COUNT_COLUMNS, TABLE)
    return [f"{c} = :{c}" for c in columns], {c: int(counts[c]) for c in columns}
