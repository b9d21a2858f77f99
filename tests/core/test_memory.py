"""The collector's pace during bulk syncs: relaxed inside, restored after."""

from __future__ import annotations

import gc

import pytest

from shared.memory import cold_start, fewer_collections


def test_young_threshold_raised_inside_and_restored_after_nesting_and_errors() -> None:
    before = gc.get_threshold()
    with fewer_collections(40_000):
        assert gc.get_threshold() == (40_000, *before[1:])
        with fewer_collections(40_000):
            assert gc.get_threshold()[0] == 40_000
        assert gc.get_threshold()[0] == 40_000  # the outer sync is still running
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("a chunk failed")
    assert gc.get_threshold() == before


def test_cold_start_collects_less_while_importing_then_freezes_what_was_built() -> None:
    before = gc.get_threshold()
    gc.unfreeze()
    try:
        with cold_start():
            assert gc.get_threshold()[0] > before[0]  # the young generation waits longer
            built = [{"module": i} for i in range(1_000)]  # what an import leaves behind
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() >= len(built)  # later collections skip them
    finally:
        gc.unfreeze()
