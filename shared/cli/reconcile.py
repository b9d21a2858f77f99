"""``hubspot-sync reconcile``: a reconciliation run in the foreground, with progress and report.

The run is the same as the nightly one (a ``hubspot_reconciliation_runs`` row,
checkpointed per page) but without a time budget: it works to the end here.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from shared.reconcile.report import RECORD_COLUMNS, drift_records


class _RateColumn(ProgressColumn):
    """Records per second, from rich's own moving estimate."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text("-- rec/s" if speed is None else f"{speed:,.0f} rec/s")


@click.command("reconcile")
@click.option("--dry-run", is_flag=True, help="report the drift without writing anywhere")
@click.option("--customer", "customer_id", metavar="ID", help="only this customer (its UUID)")
@click.option(
    "--incremental", is_flag=True, help="only records changed on either side since the last run"
)
@click.option("--force", is_flag=True, help="start even if another FULL run is running")
@click.option(
    "--entity-type",
    type=click.Choice(["customer", "contact"]),
    default="customer",
    show_default=True,
    help="customer: company and primary contact; contact: contact fields only",
)
@click.option(
    "--output",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table: the report; json or csv: every record written (or that would be, with "
    "--dry-run) or held, with both values, on stdout",
)
def reconcile(
    dry_run: bool,
    customer_id: str | None,
    incremental: bool,
    force: bool,
    entity_type: str,
    output: str,
) -> None:
    """Compare every linked customer with HubSpot, repair drift per rule, print the report."""
    from shared.engine.edge import get_engine
    from shared.reconcile import InvalidRunRequest, RunInProgress, RunRequest, start_run

    records: list[dict[str, Any]] = []

    if customer_id and incremental:
        raise click.UsageError("--customer and --incremental exclude each other")
    run_type = "CUSTOMER_SPECIFIC" if customer_id else "INCREMENTAL" if incremental else "FULL"
    console = Console(stderr=True)
    engine = get_engine()
    with Progress(
        TextColumn("[bold]reconciling"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("reconcile", total=None)  # the run's first report sets it

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        try:
            result = start_run(
                engine,
                RunRequest(
                    run_type=run_type,
                    entity_type=entity_type,
                    customer_id=customer_id,
                    dry_run=dry_run,
                    force=force,
                    triggered_by="cli",
                ),
                progress=progress,
                foreground=True,
                on_outcomes=None
                if output == "table"
                else lambda o: records.extend(drift_records(o)),
            )
        except InvalidRunRequest as exc:
            raise click.BadParameter(str(exc)) from exc
        except RunInProgress as exc:
            raise click.ClickException(str(exc)) from exc
    run = result.run
    if result.error is not None:
        raise RunFailed(str(run["id"]), result.error)
    if output == "table":
        print_report(Console(), run, result.report)
    else:
        print_records(run, records, output)
    if run["status"] != "COMPLETED":
        raise click.ClickException(f"run {run['id']} ended {run['status']}: {run.get('notes')}")


class RunFailed(click.ClickException):
    """A foreground run that stopped on an error: one line saying what to fix, no report.

    A partial report would read as a result ("no drift found" after checking nothing).
    """

    exit_code = 2

    def __init__(self, run_id: str, error: Exception) -> None:
        from shared.diagnose import explain_line
        from shared.observability.redaction import describe_error

        said = explain_line(error) or describe_error(error)
        super().__init__(f"reconcile run {run_id} FAILED: {said}")


def print_records(run: Mapping[str, Any], records: list[dict[str, Any]], output: str) -> None:
    """The run's records on stdout as JSON (one document) or CSV (one row per field)."""
    if output == "json":
        document = {
            "run_id": str(run["id"]),
            "status": run["status"],
            "dry_run": bool((run.get("report") or {}).get("dry_run")),
            "records": records,
        }
        click.echo(json.dumps(document, default=str, indent=2))
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=RECORD_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else v for k, v in record.items()})


def print_report(console: Console, run: Mapping[str, Any], report: Mapping[str, Any]) -> None:
    """Print a run's counts and its drift report as tables (also used by the demo)."""
    mode = " (dry run: nothing written)" if report.get("dry_run") else ""
    console.print(
        f"[bold]run {run['id']}[/] {run['run_type']} {run['status']}{mode} "
        f"in {run.get('duration_seconds') or 0} s"
    )
    counts = Table(title="records", show_edge=False)
    for name in ("checked", "in sync", "updated", "conflicts", "errors", "unlinked"):
        counts.add_column(name, justify="right")
    records = report.get("records") or {}
    counts.add_row(
        str(records.get("checked", 0)),
        str((report.get("statuses") or {}).get("in_sync", 0)),
        str(records.get("updated", 0)),
        str(records.get("conflicts", 0)),
        str((report.get("errors") or {}).get("count", 0)),
        str((report.get("unlinked_customers") or {}).get("count", 0)),
    )
    console.print(counts)

    fields = report.get("fields") or {}
    if fields:
        verb = "would write" if report.get("dry_run") else "written"
        drift = Table(title=f"drift per field ({verb})", show_edge=False)
        drift.add_column("field")
        for name in ("to HubSpot", "to WARP", "conflict", "skipped"):
            drift.add_column(name, justify="right")
        for name, c in fields.items():
            drift.add_row(
                name,
                str(c.get("to_hubspot", 0)),
                str(c.get("to_warp", 0)),
                str(c.get("conflict", 0)),
                str(c.get("skipped", 0)),
            )
        console.print(drift)
    else:
        console.print("no drift found")

    _samples(
        console,
        "customers without a company",
        report.get("unlinked_customers"),
        ("customer_id", "ban", "match"),
    )
    _samples(
        console,
        "linked records HubSpot no longer has",
        report.get("missing_objects"),
        ("customer_id", "object_type", "object_id", "state", "merged_into"),
    )
    _samples(
        console,
        "open conflicts (waiting for a person)",
        report.get("open_conflicts"),
        ("customer_id", "field_name", "rule", "since"),
    )
    _samples(console, "errors", report.get("errors"), ("customer_id", "error"))
    for note in report.get("notes") or []:
        console.print(f"note: {note}")


def _samples(
    console: Console, title: str, tally: Mapping[str, Any] | None, columns: tuple[str, ...]
) -> None:
    if not tally or not tally.get("count"):
        return
    extra = {k: v for k, v in tally.items() if k not in ("count", "samples") and v}
    summary = ", ".join(f"{k} {v}" for k, v in extra.items())
    table = Table(
        title=f"{title}: {tally['count']}" + (f" ({summary})" if summary else ""), show_edge=False
    )
    for column in columns:
        table.add_column(column)
    samples = tally.get("samples") or []
    for sample in samples:
        table.add_row(*(_cell(sample.get(c)) for c in columns))
    console.print(table)
    if len(samples) < int(tally["count"]):
        console.print(f"  ... and {int(tally['count']) - len(samples)} more")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return " ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    return str(value)
