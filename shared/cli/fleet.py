"""``hubspot-sync status | changes | pause | resume``: the fleet views and the pause switch.

They read and write the database named by ``DATABASE_URL`` (or Cloud SQL) through the
same code as the API's ``GET /v1/sync/customers``, ``GET /v1/sync/changes``,
``POST /v1/sync/pause`` and ``POST /v1/sync/resume``. On a terminal the lists are
tables; piped, the same columns come out in full (whole ids, nothing cut), one row a
line; ``--output json`` prints the API's answer for scripts.
"""

from __future__ import annotations

import getpass
import json
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click
from pydantic import BaseModel

from shared.fleet import SyncState

_OUTPUT = click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="json: the API's answer, for scripts",
)


def _database() -> Any:
    # The database alone: listing and pausing must work when HubSpot is what is broken.
    from shared.engine.edge import get_database

    return get_database()


def _emit_json(model: BaseModel) -> None:
    click.echo(json.dumps(model.model_dump(mode="json"), indent=2, ensure_ascii=False))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, (dict,)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table on a terminal; piped, tab-separated full values (nothing cut)."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, show_lines=False)
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*(_text(v) for v in row))
        Console().print(table)
        return
    click.echo(title)
    click.echo("\t".join(headers))
    for row in rows:
        click.echo("\t".join(_text(v).replace("\t", " ").replace("\n", " ") for v in row))


def _pause_line(state: Any) -> str:
    if not state.paused:
        return "sync running"
    since = state.since.isoformat(timespec="seconds") if state.since else "?"
    return f"PAUSED since {since} by {state.by or '?'}: {state.reason or 'no reason given'}"


@click.command("status")
@click.option(
    "--state",
    type=click.Choice([s.value for s in SyncState]),
    help="only customers in this state (default: all)",
)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", type=click.UUID, help="next_cursor of the previous page")
@_OUTPUT
def status(state: str | None, limit: int, cursor: uuid.UUID | None, output: str) -> None:
    """Customers by sync state, the counts per state, and what is wrong with each."""
    from shared.api.handlers import customer_page

    page = customer_page(
        _database(), SyncState(state) if state else None, cursor=cursor, limit=limit
    )
    if output == "json":
        _emit_json(page)
        return
    counts = page.counts
    click.echo(_pause_line(page.pause))
    click.echo(
        f"{counts.total} customers: {counts.in_sync} in_sync, {counts.pending} pending, "
        f"{counts.unlinked} unlinked, {counts.in_conflict} in_conflict, {counts.failed} failed"
    )
    _table(
        f"customers ({state or 'all'})",
        ["customer_id", "ban", "name", "company", "contact", "states", "what is wrong"],
        [
            (
                i.customer_id,
                i.ban,
                i.company_name,
                i.hubspot_company_id,
                i.hubspot_contact_id,
                [s.value for s in i.states],
                "; ".join(i.problems),
            )
            for i in page.items
        ],
    )
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")


@click.command("changes")
@click.option("--since", type=click.DateTime(), help="only changes at or after this time (UTC)")
@click.option("--direction", type=click.Choice(["WARP_TO_HUBSPOT", "HUBSPOT_TO_WARP"]))
@click.option("--customer", metavar="ID|ban:BAN", help="one customer, by UUID or ban:<BAN>")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--cursor", type=click.UUID, help="next_cursor of the previous page")
@_OUTPUT
def changes(
    since: datetime | None,
    direction: str | None,
    customer: str | None,
    limit: int,
    cursor: uuid.UUID | None,
    output: str,
) -> None:
    """The change feed: each field that crossed, newest first, with the rule and why."""
    from datetime import UTC

    from shared.api.context import ApiError
    from shared.api.handlers import change_page, customer_ref

    database = _database()
    try:
        customer_id = customer_ref(database, customer, field="--customer") if customer else None
        page = change_page(
            database,
            since=since.replace(tzinfo=UTC) if since and since.tzinfo is None else since,
            direction=direction,
            customer_id=customer_id,
            cursor=cursor,
            limit=limit,
        )
    except ApiError as exc:
        raise click.BadParameter(exc.message) from None
    if output == "json":
        _emit_json(page)
        return
    rows = []
    for item in page.items:
        for f in item.fields:
            value = "(sealed)" if f.sealed else f"{_text(f.old)} -> {_text(f.new)}"
            rows.append(
                (
                    item.at,
                    item.ban,
                    item.customer_id,
                    item.direction,
                    f.field,
                    value,
                    f.rule,
                    f.reason,
                )
            )
    _table(
        "changes, newest first",
        ["at", "ban", "customer_id", "direction", "field", "old -> new", "rule", "why"],
        rows,
    )
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")


@click.command("pause")
@click.option("--reason", help="why (shown by status and /metrics' readers)")
def pause(reason: str | None) -> None:
    """Stop every write to WARP and HubSpot; webhooks and change messages are still stored."""
    from shared import pause as switch

    state, changed = switch.pause(_database(), by=_operator(), reason=reason)
    click.echo(_pause_line(state) if changed else f"already {_pause_line(state)}")


@click.command("resume")
def resume() -> None:
    """Clear the pause and hand on, in order, everything that waited."""
    from shared import pause as switch
    from shared.engine.edge import get_engine

    engine = get_engine()  # the drain hands work to tasks: the full settings are needed
    was_paused, drained = switch.resume(engine, by=_operator())
    # Without Cloud Tasks the drain runs in this process: finish it before exiting.
    wait_idle = getattr(engine.dispatcher, "wait_idle", None)
    if wait_idle is not None:
        wait_idle(600)
    click.echo(
        ("resumed" if was_paused else "was not paused")
        + f"; handed on {drained.events} webhook event(s), {drained.customers} changed "
        f"customer(s), {drained.queue_items} queued item(s), {drained.held_tasks} held task(s)"
    )


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"
