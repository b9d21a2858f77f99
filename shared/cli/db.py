"""``hubspot-sync db``: schema migrations."""

from __future__ import annotations

import click

from shared.db import Database
from shared.db.migrate import applied_versions, available_migrations, upgrade
from shared.engine.edge import get_database


@click.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def upgrade_command() -> None:
    """Apply the migrations not applied yet (safe to run again, and beside WARP's schema).

    Where change capture is on, its trigger is then refreshed from the mapping in force.
    """
    database = get_database()
    click.echo(f"database: {database.description}")
    applied = upgrade(database)
    for migration in applied:
        click.echo(f"applied {migration.version:04d}_{migration.name}")
    if not applied:
        click.echo("already up to date")
    _refresh_capture(database)


def _refresh_capture(database: Database) -> None:
    """Where capture is on, watch what the mapping in force reads now."""
    from shared.capture.install import enable, installed_triggers

    with database.transaction() as tx:
        if not installed_triggers(tx):
            return
    watched = enable(database)
    click.echo(f"change capture refreshed: watching {len(watched)} field(s)")


@db.command("status")
def status_command() -> None:
    """List the migrations and whether each is applied."""
    done = set(applied_versions(get_database()))
    for migration in available_migrations():
        mark = "applied" if migration.version in done else "pending"
        click.echo(f"{migration.version:04d}_{migration.name}: {mark}")


@db.group("capture")
def capture() -> None:
    """Change capture: a trigger on accounts.customers records WARP's changes (issue 16)."""


@capture.command("enable")
def capture_enable() -> None:
    """Install the trigger for the mapping in force, or refresh it after a mapping change."""
    from shared.capture.install import enable

    database = get_database()
    click.echo(f"database: {database.description}")
    watched = enable(database)
    click.echo(f"capture enabled on accounts.customers, watching {len(watched)} field(s):")
    for w in watched:
        click.echo(f"  {w.name}")


@capture.command("disable")
def capture_disable() -> None:
    """Remove the trigger; changes already captured stay for the sweep."""
    from shared.capture.install import disable

    database = get_database()
    click.echo(f"database: {database.description}")
    disable(database)
    click.echo("capture disabled (captured changes not swept yet are kept)")


@capture.command("status")
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
def capture_status(output: str) -> None:
    """Whether capture is on, what it watches, its backlog and its errors.

    Exits 1 when something needs a person: a stale trigger, capture errors, missing parts.
    """
    import json

    from shared.capture.install import status

    report = status(get_database())
    if output == "json":
        click.echo(json.dumps(report.as_dict(), default=str, indent=2))
    else:
        click.echo(f"capture: {'enabled' if report.enabled else 'disabled'}")
        if report.enabled:
            click.echo(f"watching: {', '.join(w.name for w in report.watched) or 'no column'}")
        click.echo(f"captured, not swept yet: {report.pending}")
        if report.oldest_pending_at is not None:
            click.echo(f"oldest: {report.oldest_pending_at.isoformat()}")
        click.echo(f"changes that could not be captured: {report.errors}")
        if report.last_error:
            click.echo(f"last error: {report.last_error}")
        for problem in report.problems:
            click.echo(f"problem: {problem}", err=True)
    if report.problems:
        raise SystemExit(1)
