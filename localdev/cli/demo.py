"""``hubspot-sync demo``: the whole system on embedded defaults, every flow shown working.

Starts the local stack (``localdev/stack.py``), seeds a book of customers, runs
the scripted story (``localdev/story.py``) and ends with a summary table. Exits
1 when any step failed. The functions' JSON log lines go to a file (named at the
end) so the console shows only the story.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import httpx
import platformdirs
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from localdev.seed import Standing, seed_book
from localdev.stack import LocalStack, StackConfig
from localdev.story import Scene, StepResult, build_story, progress_bar, run_story
from shared.api.routes import CONSOLE_PATH


@click.command()
@click.option(
    "--customers",
    default=300,
    show_default=True,
    type=click.IntRange(100, 3_000),
    help="Size of the seeded book.",
)
@click.option(
    "--burst",
    default=1_000,
    show_default=True,
    type=click.IntRange(1, 20_000),
    help="Change messages in the burst step.",
)
@click.option("--seed", default=7, show_default=True, help="Seed of the book and the emulator.")
def demo(customers: int, burst: int, seed: int) -> None:
    """Run everything locally and show each flow working; exit 1 if any check fails."""
    console = Console(highlight=False)
    started = time.monotonic()
    log_file = Path(platformdirs.user_cache_dir("warp-hubspot-sync")) / "demo.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("")
    console.rule("[bold]warp-hubspot-sync demo")
    with console.status("starting PostgreSQL, the HubSpot emulator and the five functions"):
        stack = LocalStack(StackConfig(log_file=log_file, seed=seed)).start()
    try:
        print_stack(console, stack, time.monotonic() - started)
        seeding = time.monotonic()
        with progress_bar(console, "seeding the book", customers) as advance:
            book = seed_book(stack, customers, seed=seed, progress=advance)
        counts = book.counts()
        console.print(
            f"  seeded {len(book.customers)} customers in {time.monotonic() - seeding:.1f} s: "
            + ", ".join(f"{counts.get(s.value, 0)} {s.value.replace('_', ' ')}" for s in Standing)
        )
        with httpx.Client(timeout=30) as http:
            results = run_story(Scene(stack, book, console, http), build_story(burst=burst))
    finally:
        with console.status("stopping"):
            stack.stop()
    elapsed = time.monotonic() - started
    print_summary(console, results, elapsed)
    console.print(f"[dim]function logs: {log_file}[/]")
    # The demo's stack is gone by now: the console's URL is the one `serve` prints.
    console.print(
        f"operator console: {stack.url('sync_api')}{CONSOLE_PATH} while this ran; "
        "`hubspot-sync serve` (make serve) keeps it running and prints its URL",
        soft_wrap=True,
    )
    if any(r.status == "failed" for r in results):
        sys.exit(1)


def print_stack(console: Console, stack: LocalStack, seconds: float) -> None:
    """What runs where (no secrets)."""
    info = stack.info
    assert info is not None
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_row("database", f"{info.database_source}: {escape(info.database)}")
    table.add_row("HubSpot", f"{info.hubspot_source}: {info.hubspot}")
    for name, served in stack.functions.items():
        table.add_row(name, served.url if served.loaded else "[yellow]not in this checkout")
    table.add_row("tasks", info.tasks)
    console.print(table)
    for note in info.notes:
        console.print(f"  [yellow]note:[/] {escape(note)}")
    console.print(f"  [dim]up in {seconds:.1f} s[/]")


def print_summary(console: Console, results: list[StepResult], elapsed: float) -> None:
    """The summary table and the verdict line."""
    table = Table(title="Summary", title_justify="left")
    table.add_column("step")
    table.add_column("result")
    table.add_column("figures")
    table.add_column("time", justify="right")
    colour = {"passed": "green", "failed": "red", "skipped": "yellow"}
    for r in results:
        figures = ", ".join(f"{k}={v}" for k, v in r.figures.items())
        table.add_row(
            r.title, f"[{colour[r.status]}]{r.status}[/]", escape(figures), f"{r.seconds:.1f} s"
        )
    console.print(table)
    failed = sum(r.status == "failed" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    if failed:
        console.print(f"[bold red]{failed} of {len(results)} steps failed[/] ({elapsed:.0f} s)")
    elif skipped:
        console.print(
            f"[bold yellow]every step that ran worked; {skipped} skipped[/] ({elapsed:.0f} s)"
        )
    else:
        console.print(f"[bold green]every flow worked[/] in {elapsed:.0f} s")
