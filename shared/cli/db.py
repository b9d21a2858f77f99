"""``hubspot-sync db``: schema migrations."""

from __future__ import annotations

import click

from shared.db import get_database
from shared.db.migrate import applied_versions, available_migrations, upgrade


@click.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def upgrade_command() -> None:
    """Apply the migrations not applied yet (safe to run again, and beside WARP's schema)."""
    database = get_database()
    click.echo(f"database: {database.description}")
    applied = upgrade(database)
    for migration in applied:
        click.echo(f"applied {migration.version:04d}_{migration.name}")
    if not applied:
        click.echo("already up to date")


@db.command("status")
def status_command() -> None:
    """List the migrations and whether each is applied."""
    done = set(applied_versions(get_database()))
    for migration in available_migrations():
        mark = "applied" if migration.version in done else "pending"
        click.echo(f"{migration.version:04d}_{migration.name}: {mark}")
