"""The reconcile checkpoint: parsed from and written to the run row's JSON."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.reconcile.checkpoint import Checkpoint, HubSpotCursor, Phase

# Checkpoints as runs stored them before the model existed (``failures`` included).
STORED_INCREMENTAL = {
    "seq": 4,
    "phases": ["warp", "hubspot"],
    "phase_index": 1,
    "after": {
        "companies": {"after": "1201", "done": True},
        "contacts": {"after": None, "done": False},
    },
    "since": "2026-12-01T10:00:00.250000+00:00",
    "total": None,
    "fields": None,
    "customer_id": None,
    "dry_run": True,
    "failures": 0,
    "report": {"dry_run": True, "records": {"checked": 3}},
}
STORED_FULL = {
    "seq": 2,
    "phases": ["linked", "unlinked"],
    "phase_index": 0,
    "after": "0b7c5a4e-6f3d-4f0e-9a51-2d2b1f0c9e11",
    "since": None,
    "total": 120,
    "fields": ["email", "phone"],
    "customer_id": None,
    "dry_run": False,
    "failures": 0,
    "report": {},
}


def test_a_stored_incremental_checkpoint_loads() -> None:
    checkpoint = Checkpoint.of({"checkpoint": STORED_INCREMENTAL})
    assert checkpoint.seq == 4 and checkpoint.dry_run
    assert checkpoint.phases == (Phase.WARP, Phase.HUBSPOT)
    assert checkpoint.phase is Phase.HUBSPOT
    assert checkpoint.after == {
        "companies": HubSpotCursor("1201", done=True),
        "contacts": HubSpotCursor(None, done=False),
    }
    assert checkpoint.since == datetime(2026, 12, 1, 10, 0, 0, 250000, tzinfo=UTC)
    assert checkpoint.report == {"dry_run": True, "records": {"checked": 3}}


def test_a_stored_full_checkpoint_loads() -> None:
    checkpoint = Checkpoint.of({"checkpoint": STORED_FULL})
    assert checkpoint.phase is Phase.LINKED
    assert checkpoint.after == STORED_FULL["after"]
    assert checkpoint.total == 120 and checkpoint.fields == ("email", "phone")
    assert checkpoint.since is None


def test_a_checkpoint_is_written_with_the_keys_runs_have_always_stored() -> None:
    for stored in (STORED_INCREMENTAL, STORED_FULL):
        written = Checkpoint.of({"checkpoint": stored}).to_json()
        # ``failures`` was never read: it is no longer written.
        assert written.keys() == stored.keys() - {"failures"}
        assert Checkpoint.of({"checkpoint": written}) == Checkpoint.of({"checkpoint": stored})
    assert Checkpoint.of({"checkpoint": STORED_FULL}).to_json() == {
        k: v for k, v in STORED_FULL.items() if k != "failures"
    }


def test_a_run_without_a_checkpoint_has_nothing_left_to_do() -> None:
    checkpoint = Checkpoint.of({"checkpoint": None})
    assert checkpoint.seq == 0 and checkpoint.phase is None
    assert Checkpoint.of(None) == checkpoint


def test_the_phase_is_none_once_every_phase_is_done() -> None:
    done = Checkpoint.of({"checkpoint": {**STORED_FULL, "phase_index": 2}})
    assert done.phase is None


def test_an_incremental_run_stored_with_one_phase_per_object_type_resumes() -> None:
    """As the last landed release stored INCREMENTAL runs: warp, companies, contacts."""
    old = {**STORED_INCREMENTAL, "phases": ["warp", "companies", "contacts"]}
    in_contacts = Checkpoint.of({"checkpoint": {**old, "phase_index": 2, "after": "3307"}})
    assert in_contacts.phases == (Phase.WARP, Phase.HUBSPOT)
    assert in_contacts.phase is Phase.HUBSPOT
    assert in_contacts.after == {
        "companies": HubSpotCursor(None, done=True),
        "contacts": HubSpotCursor("3307", done=False),
    }
    in_warp = Checkpoint.of({"checkpoint": {**old, "phase_index": 0, "after": "c-9"}})
    assert (in_warp.phase, in_warp.after) == (Phase.WARP, "c-9")
    finished = Checkpoint.of({"checkpoint": {**old, "phase_index": 3, "after": None}})
    assert finished.phase is None
