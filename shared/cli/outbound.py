"""``hubspot-sync outbound``: the outbound flow by hand."""

from __future__ import annotations

import json

import click


@click.group()
def outbound() -> None:
    """WARP → HubSpot."""


@outbound.command("sweep")
def sweep_command() -> None:
    """Run one sweep: captured changes, WARP's queue rows, every dirty customer.

    Prints the sweep's report as JSON; exits 1 when its flush failed (the customers
    stay dirty for the next sweep).
    """
    from shared.engine.edge import get_engine
    from shared.outbound.sweep import sweep

    report = sweep(get_engine())
    click.echo(json.dumps(report.as_dict(), indent=2))
    if report.error is not None:
        raise SystemExit(1)
