"""The drift report of a reconciliation run (pure): counts that stay small however many records.

A run adds each page's outcomes to a :class:`DriftReport`; the report is saved
with the checkpoint after every page (so a resumed run carries on counting) and
stored with the finished run in ``hubspot_reconciliation_runs.report``. Lists of
examples are capped at :data:`SAMPLE_LIMIT`; their totals are always exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.conflicts import Action
from shared.engine.sync import CustomerSync

SAMPLE_LIMIT = 50
DIRECTIONS = ("to_hubspot", "to_warp", "conflict", "skipped")
STATUSES = ("synced", "in_sync", "conflict", "missing", "failed", "not_found", "not_linked")
MISSING_STATES = ("archived", "merged", "missing")


@dataclass
class DriftReport:
    """What a run found: per field and direction, per record status, and what it could not fix."""

    dry_run: bool = False
    statuses: dict[str, int] = field(default_factory=dict)
    fields: dict[str, dict[str, int]] = field(default_factory=dict)
    updated: int = 0  # records with at least one field written (or to be written: dry run)
    conflicted: int = 0  # records holding a field for manual resolution
    unlinked: dict[str, Any] = field(default_factory=lambda: _tally(("matched", "unmatched")))
    missing: dict[str, Any] = field(default_factory=lambda: _tally(MISSING_STATES))
    errors: dict[str, Any] = field(default_factory=lambda: _tally(()))
    open_conflicts: dict[str, Any] = field(default_factory=lambda: _tally(()))
    notes: list[str] = field(default_factory=list)

    # --- adding ---------------------------------------------------------------------

    def add_outcomes(self, outcomes: Iterable[CustomerSync]) -> None:
        """Count one page of sync outcomes: statuses, field directions, errors."""
        for outcome in outcomes:
            self.statuses[outcome.status] = self.statuses.get(outcome.status, 0) + 1
            if any(p.changed for p in outcome.plans.values()):
                self.updated += 1
            if any(p.conflicts for p in outcome.plans.values()):
                self.conflicted += 1
            for plan in outcome.plans.values():
                for result in plan.results:
                    direction = _direction(result.action, result.applied)
                    if direction is not None:
                        counts = self.fields.setdefault(result.field, dict.fromkeys(DIRECTIONS, 0))
                        counts[direction] += 1
            if outcome.error is not None:
                self.add_error(outcome.customer_id, str(outcome.error))
            elif not outcome.found:
                self.add_error(outcome.customer_id, "customer not found")

    def add_missing(
        self,
        customer_id: str,
        object_type: str,
        object_id: str,
        state: str,
        merged_into: str | None = None,
    ) -> None:
        """A linked company or contact that is archived, merged into another, or gone."""
        sample = {
            "customer_id": customer_id,
            "object_type": object_type,
            "object_id": object_id,
            "state": state,
        }
        if merged_into:
            sample["merged_into"] = merged_into
        _count(self.missing, state, sample)

    def add_unlinked(
        self, customer_id: str, ban: str | None, match: Mapping[str, Any] | None
    ) -> None:
        """A customer without a company, and the company that matches it by domain or name."""
        sample: dict[str, Any] = {"customer_id": customer_id, "ban": ban}
        if match:
            sample["match"] = dict(match)
        _count(self.unlinked, "matched" if match else "unmatched", sample)

    def add_error(self, customer_id: str | None, message: str) -> None:
        """A record (or the run) that failed; the message names no personal data."""
        _count(self.errors, None, {"customer_id": customer_id, "error": message[:500]})

    def set_open_conflicts(self, total: int, samples: Iterable[Mapping[str, Any]]) -> None:
        """Fields waiting for a person now (MANUAL rule or a stuck decision)."""
        self.open_conflicts = {"count": int(total), "samples": list(samples)[:SAMPLE_LIMIT]}

    # --- reading --------------------------------------------------------------------

    @property
    def total(self) -> int:
        """Records checked."""
        return sum(self.statuses.values())

    def run_counts(self) -> dict[str, int]:
        """The counts ``hubspot_reconciliation_runs`` keeps in its columns."""
        return {
            "total_records": self.total + int(self.unlinked["count"]),
            "records_in_sync": self.statuses.get("in_sync", 0),
            "records_updated": self.updated,
            "conflicts_detected": self.conflicted,
            "errors_encountered": int(self.errors["count"]),
        }

    def to_json(self) -> dict[str, Any]:
        """The report as stored with the run (and in its checkpoint)."""
        return {
            "dry_run": self.dry_run,
            "records": {
                "checked": self.total,
                "updated": self.updated,
                "conflicts": self.conflicted,
            },
            "statuses": dict(self.statuses),
            "fields": {name: dict(counts) for name, counts in sorted(self.fields.items())},
            "unlinked_customers": self.unlinked,
            "missing_objects": self.missing,
            "errors": self.errors,
            "open_conflicts": self.open_conflicts,
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> DriftReport:
        """A report saved by :meth:`to_json` (a checkpoint), or a new one for None."""
        if not data:
            return cls()
        records = data.get("records") or {}
        return cls(
            dry_run=bool(data.get("dry_run")),
            statuses={k: int(v) for k, v in (data.get("statuses") or {}).items()},
            fields={
                k: {d: int(n) for d, n in v.items()} for k, v in (data.get("fields") or {}).items()
            },
            updated=int(records.get("updated", 0)),
            conflicted=int(records.get("conflicts", 0)),
            unlinked=dict(data.get("unlinked_customers") or _tally(("matched", "unmatched"))),
            missing=dict(data.get("missing_objects") or _tally(MISSING_STATES)),
            errors=dict(data.get("errors") or _tally(())),
            open_conflicts=dict(data.get("open_conflicts") or _tally(())),
            notes=list(data.get("notes") or []),
        )


RECORD_COLUMNS = (
    "customer_id",
    "object",
    "field",
    "hubspot_property",
    "direction",
    "warp_value",
    "hubspot_value",
    "new_value",
    "reason",
)


def drift_records(outcomes: Iterable[CustomerSync]) -> list[dict[str, Any]]:
    """One row per field a run writes (or would write: dry run) or holds, with both values.

    ``direction`` is one of :data:`DIRECTIONS`: ``new_value`` is what the written side
    gets (HubSpot's string form, or WARP's value); a held conflict writes nothing.
    """
    rows = []
    for outcome in outcomes:
        for entity_type, plan in outcome.plans.items():
            for result in plan.results:
                direction = _direction(result.action, result.applied)
                if direction is None:
                    continue
                rows.append(
                    {
                        "customer_id": outcome.customer_id,
                        "object": entity_type.value,
                        "field": result.field,
                        "hubspot_property": result.hubspot_property,
                        "direction": direction,
                        "warp_value": result.warp_before,
                        "hubspot_value": result.hubspot_before,
                        "new_value": None if direction == "conflict" else result.decision.value,
                        "reason": result.decision.reason,
                    }
                )
    return rows


def _direction(action: Action, applied: bool) -> str | None:
    if action is Action.CONFLICT:
        return "conflict"
    if action not in (Action.WRITE_HUBSPOT, Action.WRITE_WARP):
        return None
    if not applied:
        return "skipped"
    return "to_hubspot" if action is Action.WRITE_HUBSPOT else "to_warp"


def _tally(kinds: Iterable[str]) -> dict[str, Any]:
    return {"count": 0, **dict.fromkeys(kinds, 0), "samples": []}


def _count(tally: dict[str, Any], kind: str | None, sample: Mapping[str, Any]) -> None:
    tally["count"] = int(tally.get("count", 0)) + 1
    if kind is not None:
        tally[kind] = int(tally.get(kind, 0)) + 1
    samples = tally.setdefault("samples", [])
    if len(samples) < SAMPLE_LIMIT:
        samples.append(dict(sample))
