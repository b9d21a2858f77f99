"""Which database an operator command works on, checked before it starts.

Without ``DATABASE_URL`` (or ``INSTANCE_CONNECTION_NAME``) the settings select the
embedded PostgreSQL, which is right for ``serve`` and ``demo`` on a laptop and wrong
for ``reconcile`` aimed at a deployment: it would start a new, empty database and
fail with "relation does not exist". So every such command says which database it
uses, and stops with one line when that database holds none of the sync tables.
"""

from __future__ import annotations

from shared.config import get_settings
from shared.db.migrate import applied_versions
from shared.diagnose import database_setting, embedded_data_dir
from shared.engine.edge import database_built, get_database
from shared.errors import ConfigurationError

FIX = (
    "set DATABASE_URL (or INSTANCE_CONNECTION_NAME with DB_USER and DB_NAME) to the "
    "deployment's database, or run `hubspot-sync db upgrade` to create the tables here"
)


def check_database(command: str) -> str:
    """The database ``command`` will use, described; ConfigurationError when it is not usable."""
    settings = get_settings()
    setting, value = database_setting(settings)
    if settings.database_mode == "embedded" and not database_built():
        folder = embedded_data_dir(settings.embedded_db_dir)
        if not (folder / "PG_VERSION").exists():
            # Starting it would create a new, empty cluster: refuse before that happens.
            raise ConfigurationError(
                f"DATABASE_URL is not set and there is no embedded PostgreSQL in {folder}: "
                f"`hubspot-sync {command}` would run on a new, empty database. Fix: {FIX}"
            )
    database = get_database()
    if not applied_versions(database):
        raise ConfigurationError(
            f"{setting}={value.strip()}: this database has none of the sync tables "
            f"(`hubspot-sync db upgrade` never ran on it). Fix: {FIX}"
        )
    return database.description
