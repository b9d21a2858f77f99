"""``hubspot-sync hubspot``: set up WARP's custom properties; check the connection."""

from __future__ import annotations

import time

import click

from shared.diagnose import explain_line
from shared.engine.edge import get_engine
from shared.hubspot.errors import HubSpotError


@click.group()
def hubspot() -> None:
    """HubSpot account commands (HUBSPOT_ACCESS_TOKEN, HUBSPOT_BASE_URL)."""


@hubspot.command("setup-properties")
def setup_properties_command() -> None:
    """Create the `warp` group and WARP's company properties; existing ones are left alone.

    Prints first the scopes each configured token needs (HUBSPOT_ACCESS_TOKEN writes,
    HUBSPOT_READ_ACCESS_TOKEN, when set, reads).
    """
    from shared.config import get_settings
    from shared.hubspot.properties import setup_properties
    from shared.hubspot.scopes import scopes_per_token

    needs = scopes_per_token(separate_read_token=bool(get_settings().hubspot_read_access_token))
    for variable, scopes in needs.items():
        click.echo(f"scopes   {variable}: {' '.join(scopes)}")
    try:
        report = setup_properties(get_engine().hubspot)
    except HubSpotError as exc:
        if exc.category == "MISSING_SCOPES":  # which token lacks what: the lines above
            raise click.ClickException(
                f"HubSpot refused the setup: {exc} (a token lacks a scope: grant each "
                "token the scopes listed above)"
            ) from exc
        raise click.ClickException(
            explain_line(exc) or f"HubSpot refused the setup: {exc}"
        ) from exc
    click.echo(f"group warp: {'created' if report.group_created else 'exists'}")
    for name in report.created:
        click.echo(f"created  {name}")
    for name in report.existing:
        click.echo(f"exists   {name} (left unchanged)")
    for name, problems in report.differences.items():
        for problem in problems:
            click.echo(f"warning  {name}: {problem}", err=True)


@hubspot.command("check")
def check_command() -> None:
    """Call HubSpot once and print reachability and the rate-limit headers."""
    client = get_engine().hubspot
    started = time.monotonic()
    try:
        client.companies.list_page(limit=1)
    except HubSpotError as exc:
        raise click.ClickException(explain_line(exc) or f"HubSpot is not usable: {exc}") from exc
    elapsed_ms = (time.monotonic() - started) * 1000
    click.echo(f"HubSpot reachable, token accepted ({elapsed_ms:.0f} ms)")
    status = client.last_rate_limit
    if status is None:
        click.echo("no X-HubSpot-RateLimit-* headers in the answer")
        return
    click.echo(f"burst: {status.remaining}/{status.max} left per {status.interval_ms} ms")
    if status.daily is not None:
        click.echo(f"daily: {status.daily_remaining}/{status.daily} left")
    else:
        click.echo("daily: not reported (HubSpot omits it for OAuth tokens)")
