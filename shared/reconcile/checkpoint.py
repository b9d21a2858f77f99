"""Where a reconciliation run stands: its phases, its cursor and its report so far.

A :class:`Checkpoint` is stored as JSON in ``hubspot_reconciliation_runs.checkpoint``
and committed with every page. It is parsed and written only at that edge
(:meth:`Checkpoint.of`, :meth:`Checkpoint.to_json`); the keys are the ones runs
have always stored, so a run checkpointed before this model resumes with it
(keys it no longer needs, like the old ``failures``, are ignored; an INCREMENTAL run
stored with one HubSpot phase per object type is read as the one HUBSPOT phase). The SQL that
guards a save reads ``seq`` straight from the JSON (:func:`queries.save_checkpoint`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter


class Phase(StrEnum):
    """One pass of a run over its records."""

    LINKED = "linked"  # every linked customer, by id
    UNLINKED = "unlinked"  # customers without a company: match or report them
    WARP = "warp"  # linked customers WARP changed since the last run
    HUBSPOT = "hubspot"  # customers whose company or contact HubSpot changed since then
    CUSTOMER = "customer"  # the one customer of a CUSTOMER_SPECIFIC run


@dataclass(frozen=True)
class HubSpotCursor:
    """How far the HUBSPOT phase has searched one object type's changes."""

    after: str | None = None  # the last object id seen
    done: bool = False


# The HUBSPOT phase's cursor per object type ("companies", "contacts").
HubSpotCursors = dict[str, HubSpotCursor]


@dataclass(frozen=True)
class Checkpoint:
    """A run's position, committed with each page; ``seq`` counts the saves."""

    seq: int = 0
    phases: tuple[Phase, ...] = ()
    phase_index: int = 0
    # The last key done in the current phase: a customer id, or per object type
    # cursors in the HUBSPOT phase; None at a phase's start.
    after: str | HubSpotCursors | None = None
    since: datetime | None = None  # INCREMENTAL: changes at or after this time
    total: int | None = None  # records the progress counts to, when known
    fields: tuple[str, ...] | None = None  # only these fields (contact runs); None: all
    customer_id: str | None = None  # CUSTOMER_SPECIFIC
    dry_run: bool = False
    report: Mapping[str, Any] = field(default_factory=dict)  # DriftReport.to_json()

    @property
    def phase(self) -> Phase | None:
        """The phase to work on next; None once every phase is done."""
        return self.phases[self.phase_index] if self.phase_index < len(self.phases) else None

    @classmethod
    def of(cls, row: Mapping[str, Any] | None) -> Checkpoint:
        """The checkpoint of a run row (a new one when it has none)."""
        stored = (row or {}).get("checkpoint")
        return _ADAPTER.validate_python(_one_hubspot_phase(stored or {}))

    def to_json(self) -> dict[str, Any]:
        """The JSON stored in the run row."""
        data: dict[str, Any] = _ADAPTER.dump_python(self, mode="json")
        return data


_ADAPTER = TypeAdapter(Checkpoint)
# INCREMENTAL runs stored before issue 20 searched HubSpot in one phase per object type.
_PER_OBJECT_PHASES = ("companies", "contacts")


def _one_hubspot_phase(stored: Mapping[str, Any]) -> Mapping[str, Any]:
    """A checkpoint stored with per-object HubSpot phases (``warp``, ``companies``,
    ``contacts``), as the one HUBSPOT phase with a cursor per object type; others as
    they are. The object type being searched keeps its cursor; those before it are done."""
    phases = list(stored.get("phases") or ())
    if not any(p in _PER_OBJECT_PHASES for p in phases):
        return stored
    index = int(stored.get("phase_index", 0))
    current = phases[index] if index < len(phases) else None
    kept = [p for p in phases if p not in _PER_OBJECT_PHASES]
    first = phases.index(_PER_OBJECT_PHASES[0]) if _PER_OBJECT_PHASES[0] in phases else len(kept)
    kept.insert(first, Phase.HUBSPOT.value)
    upgraded = {**stored, "phases": kept}
    if current in _PER_OBJECT_PHASES:
        at = _PER_OBJECT_PHASES.index(current)
        upgraded["phase_index"] = first
        upgraded["after"] = {
            name: {"after": stored.get("after") if n == at else None, "done": n < at}
            for n, name in enumerate(_PER_OBJECT_PHASES)
        }
    elif index > first:
        upgraded["phase_index"] = index - (len(phases) - len(kept))
    return upgraded
