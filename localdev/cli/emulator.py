"""``hubspot-sync emulator``: run the local HubSpot emulator until Ctrl-C."""

from __future__ import annotations

import threading

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8090, show_default=True, help="Port (0: any free port).")
@click.option("--rate-limit", default=100, show_default=True, help="Calls per window.")
@click.option("--window-ms", default=10_000, show_default=True, help="Rolling window length.")
@click.option("--daily-limit", default=250_000, show_default=True, help="Calls per day.")
@click.option("--search-rate", default=5, show_default=True, help="Search calls per second.")
@click.option("--webhook-url", default=None, help="Where to POST webhook batches.")
@click.option("--client-secret", default=None, help="App client secret that signs webhooks.")
@click.option("--app-id", default=None, type=int, help="Our app id (sourceId of our own writes).")
@click.option("--fault-rate", default=0.0, show_default=True, help="Share of CRM calls that fail.")
@click.option("--latency-ms", default=0, show_default=True, help="Added to every CRM call.")
@click.option("--seed", default=None, type=int, help="Seed for faults and ordering.")
@click.option("--access-token", default="emulator-token", show_default=True, help="Accepted token.")
@click.option(
    "--read-access-token",
    default=None,
    help="A second token with read scopes only (a write with it gets HubSpot's 403).",
)
@click.option(
    "--webhook-time-scale",
    default=1.0,
    show_default=True,
    help="Speed of HubSpot's webhook retry schedule (1: its 24 hours; 0.001: 86 s).",
)
@click.option(
    "--search-delay-ms", default=2_000, show_default=True, help="Search index lag behind writes."
)
def emulator(
    host: str,
    port: int,
    rate_limit: int,
    window_ms: int,
    daily_limit: int,
    search_rate: int,
    webhook_url: str | None,
    client_secret: str | None,
    app_id: int | None,
    fault_rate: float,
    latency_ms: int,
    seed: int | None,
    access_token: str,
    read_access_token: str | None,
    webhook_time_scale: float,
    search_delay_ms: int,
) -> None:
    """Serve HubSpot's CRM v3 API locally, with its limits, errors and signed webhooks."""
    from localdev.emulator import Emulator

    if webhook_url and not client_secret:
        raise click.UsageError("--webhook-url needs --client-secret (HubSpot signs every delivery)")
    emu = Emulator(
        port,
        host=host,
        rate_limit=rate_limit,
        window_ms=window_ms,
        daily_limit=daily_limit,
        search_rate_per_second=search_rate,
        webhook_url=webhook_url,
        client_secret=client_secret,
        app_id=app_id,
        access_token=access_token,
        read_access_token=read_access_token,
        fault_rate=fault_rate,
        latency_ms=latency_ms,
        seed=seed,
        webhook_time_scale=webhook_time_scale,
        search_delay_ms=search_delay_ms,
    ).start()
    click.echo(f"HubSpot emulator listening on {emu.url} (app id {emu.app_id}); Ctrl-C stops it")
    click.echo(f"control API: {emu.url}/_emulator/stats")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
        click.echo("emulator stopped")
