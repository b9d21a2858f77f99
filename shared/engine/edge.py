"""The process-wide engine, held at the adapter edge and nowhere else.

A warm function instance reuses one engine (database pool, HubSpot client, task
dispatcher, mapping cache) across invocations, so the adapters — ``functions/*/main.py``,
the CLI (``shared/cli/``) and ``shared/web.py``'s start-up check — take it from
here. Every flow receives the engine as a parameter instead: nothing below the
adapters reads this module (``tests/deploy/test_engine_edge.py`` holds it to that).

The engine is built on first use, so a function's cold start pays for nothing it
does not call. Before that, :func:`get_database` gives the database alone: the
operator commands that need no HubSpot (migrations, pause, listings) work while
HubSpot is what is broken, and the engine built later uses the same database.
"""

from __future__ import annotations

import threading

from shared.db import Database
from shared.engine.deps import Engine

_engine: Engine | None = None
_database: Database | None = None
_lock = threading.Lock()


def get_engine() -> Engine:
    """The process-wide engine, built on first use from the settings."""
    global _engine
    if _engine is None:
        from shared.config import get_settings
        from shared.hubspot.client import HubSpotClient
        from shared.tasks.dispatch import dispatcher_from_settings

        database = get_database()
        with _lock:
            if _engine is None:
                settings = get_settings()
                _engine = Engine(
                    settings=settings,
                    database=database,
                    hubspot=HubSpotClient.from_settings(settings, database),
                    dispatcher=dispatcher_from_settings(settings),
                )
    return _engine


def get_database() -> Database:
    """The process-wide engine's database (built from the settings if there is none yet)."""
    global _database
    if _database is None:
        from shared.config import get_settings
        from shared.db.connection import database_from_settings

        with _lock:
            if _database is None:
                _database = database_from_settings(get_settings())
    return _database


def database_built() -> bool:
    """Whether the process-wide database exists already (built, or an engine installed)."""
    return _database is not None


def installed_engine() -> Engine | None:
    """The process-wide engine if one exists (built or installed), without building one."""
    return _engine


def set_engine(engine: Engine | None) -> None:
    """Install ``engine`` as the process-wide one (the local stack, tests serving functions).

    The caller owns its parts and closes them; None forgets it.
    """
    global _engine, _database
    with _lock:
        _engine = engine
        _database = engine.database if engine is not None else None
