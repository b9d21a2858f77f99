"""The garbage collector's pace: during bulk syncs, and while a function instance starts."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def fewer_collections(young: int = 200_000) -> Iterator[None]:
    """Collect the young generation every ``young`` allocations (not 700) while inside.

    A chunk of a bulk sync keeps ~100,000 objects (rows, records, plans) alive until
    it ends. At the default pace the collector walks them again and again, and finds
    nothing: they are not garbage. That was a fifth of a reconciliation's time
    (bench/reconcile.py). At 50,000 a 2,000-customer window still cost ~0.3 s of
    collections per 10,000 customers, a full one among them; at 200,000, ~0.12 s and
    none full. Nested and concurrent uses share one setting; the last to leave
    restores the previous thresholds.
    """
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(young, *_saved[1:])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None


@contextmanager
def cold_start() -> Iterator[None]:
    """Wrap a function module's imports: few collections inside, then freeze what they built.

    Importing a function leaves some 50,000 objects the collector tracks, all living as
    long as the instance; at the default pace it walks them again and again while they
    load, 10-40 ms of every cold start (bench/cold_start.py). Frozen after, they are
    skipped by every later collection, so requests do not pay for them either.
    """
    with fewer_collections():
        yield
    # Once per process: a long-lived process that loads functions again (the test suite,
    # the demo) would otherwise freeze its own garbage too, finalizers never run.
    if gc.get_freeze_count() == 0:
        gc.freeze()
