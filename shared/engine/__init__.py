"""The sync engine: flows that know nothing of Flask, Pub/Sub or Cloud Tasks.

- ``plan``: pure per-record planning over both sides' snapshots;
- ``record``: recording a carried-out plan (WARP columns, field states, sync log);
- ``sync``: batch sync of linked customers, shared by every flow;
- ``deps``: the :class:`Engine` the flows receive (database, HubSpot, tasks, mappings);
- ``edge``: the process-wide engine, for the adapters alone.
"""

from shared.engine.deps import Engine

__all__ = ["Engine"]
