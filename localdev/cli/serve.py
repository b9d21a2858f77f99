"""``hubspot-sync serve``: the demo's stack left running until Ctrl-C.

The same parts as ``hubspot-sync demo`` (embedded PostgreSQL or ``DATABASE_URL``,
the HubSpot emulator or ``HUBSPOT_ACCESS_TOKEN``, the five functions over real HTTP,
the task stand-in), a small seeded book to try things on, and the URLs plus example
``curl`` commands printed. The functions' JSON logs go to stdout, as on Cloud Run.
The management API's bearer token is generated for this run only and printed, since
the example commands need it.
"""

from __future__ import annotations

import json
import shlex
import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from types import FrameType

import click
from rich.console import Console

from localdev.cli.demo import print_stack
from localdev.seed import Book, Standing, seed_book
from localdev.stack import LocalStack, StackConfig
from localdev.story import progress_bar
from shared.api.routes import CONSOLE_PATH
from shared.messages.change import ChangeMessage, Operation
from shared.messages.envelope import encode_push_envelope

READY_LINE = "ready: Ctrl-C stops everything"


@click.command()
@click.option(
    "--customers",
    default=100,
    show_default=True,
    type=click.IntRange(0, 3_000),
    help="Customers to seed (0: none).",
)
@click.option("--seed", default=7, show_default=True, help="Seed of the book and the emulator.")
def serve(customers: int, seed: int) -> None:
    """Start the local system and keep it running; print URLs and example curl commands."""
    console = Console(highlight=False)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        began = time.monotonic()
        with console.status("starting"):
            stack = LocalStack(StackConfig(seed=seed)).start()
        try:
            print_stack(console, stack, time.monotonic() - began)
            book = seed_with_progress(console, stack, customers, seed) if customers else Book()
            print_examples(console, stack, book)
            console.print(
                f"[bold]operator console:[/] {stack.url('sync_api')}{CONSOLE_PATH} "
                "(sign in with the bearer token above)",
                soft_wrap=True,
            )
            print_environment(console, stack)
            console.print(f"[bold green]{READY_LINE}[/]")
            while not stopping.wait(0.5):
                pass
        finally:
            console.print("stopping")
            stack.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("stopped")


def seed_with_progress(console: Console, stack: LocalStack, customers: int, seed: int) -> Book:
    """Seed the book with a progress bar (thousands take a while); say how many."""
    began = time.monotonic()
    with progress_bar(console, "seeding customers", customers) as advance:
        book = seed_book(stack, customers, seed=seed, progress=advance)
    console.print(f"  seeded {len(book.customers)} customers in {time.monotonic() - began:.1f} s")
    return book


def print_environment(console: Console, stack: LocalStack) -> None:
    """The API document's URL, and the settings that point a CLI at this stack."""
    lines = [
        "# the management API's OpenAPI document",
        f'curl -s -H "Authorization: Bearer {stack.sync_api_token}" '
        f"{stack.url('sync_api')}/v1/sync/openapi.json",
        "# point hubspot-sync (another shell) at this stack: paste these lines",
        *(f"export {name}={shlex.quote(value)}" for name, value in stack.cli_environment.items()),
    ]
    console.print("\n".join(lines), markup=False, soft_wrap=True)


def print_examples(console: Console, stack: LocalStack, book: Book) -> None:
    """Example requests against the running functions."""
    api = stack.url("sync_api")
    auth = f'-H "Authorization: Bearer {stack.sync_api_token}"'
    linked = book.of(Standing.IN_SYNC)
    customer_id = linked[0].customer_id if linked else "<customer id>"
    lines = [
        "# a customer's sync status, its open conflicts, the work queue, metrics",
        f"curl -s {auth} {api}/v1/sync/customers/{customer_id}/status",
        f"curl -s {auth} {api}/v1/sync/customers/{customer_id}/conflicts",
        f"curl -s {auth} {api}/v1/sync/queue",
        f"curl -s {api}/metrics",
        "# reconcile everything now, without writing",
        f"curl -s {auth} -H 'Content-Type: application/json' "
        f'-d \'{{"entity_type": "customer", "dry_run": true}}\' {api}/v1/sync/reconcile',
    ]
    if linked:
        change = ChangeMessage(
            entity_type="customer",
            entity_id=uuid.UUID(customer_id),
            operation=Operation.UPDATE,
            changed_fields=["status"],
            occurred_at=datetime.now(UTC),
            trigger_source="curl",
            triggered_by_user=None,
        )
        envelope = encode_push_envelope(change, "example-1").decode()
        if stack.config.sweep_every_seconds is not None and stack.settings is not None:
            # psql takes the URL as it is; the password, if any, is the user's own.
            lines += [
                "# an edit with plain SQL, no message: captured, swept within ~2 s",
                f"psql '{stack.settings.database_url}' -c \"UPDATE accounts.customers "
                f"SET company_name = company_name || ' (psql)' WHERE id = '{customer_id}'\"",
            ]
        lines += [
            "# WARP's change message, as Pub/Sub pushes it to outbound_sync",
            f"curl -s -H 'Content-Type: application/json' -d '{envelope}' "
            f"{stack.url('outbound_sync')}",
        ]
    emulator = stack.emulator
    if emulator is not None and linked and linked[0].company_id:
        edit = json.dumps({"properties": {"warp_credit_limit": "12345"}})
        lines += [
            "# an edit 'in the HubSpot UI': the emulator sends the signed webhook",
            f"curl -s -H 'Content-Type: application/json' -d '{edit}' "
            f"{emulator.url}/_emulator/ui/companies/{linked[0].company_id}",
            "# the emulator's call counts, faults and webhook deliveries",
            f"curl -s {emulator.url}/_emulator/stats",
        ]
    console.print("\n".join(lines), markup=False, soft_wrap=True)
