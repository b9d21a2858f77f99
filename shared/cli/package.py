"""``hubspot-sync package``: stage each function's deployable folder for Terraform."""

from __future__ import annotations

from pathlib import Path

import click

from shared.packaging import REPO_ROOT, PackagingError, package_functions


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=REPO_ROOT / ".build" / "functions",
    show_default=True,
    help="folder that receives one staged folder per function and manifest.json",
)
@click.option("--function", "names", multiple=True, help="only this function (repeatable)")
def package(out_dir: Path, names: tuple[str, ...]) -> None:
    """Stage functions/<name>/ with requirements.txt and the shared package, hash each."""
    try:
        staged = package_functions(out_dir, names=names or None)
    except PackagingError as exc:
        raise click.ClickException(str(exc)) from None
    for item in staged:
        click.echo(f"{item.name}: {item.path} sha256={item.content_hash}")
    click.echo(f"manifest: {out_dir / 'manifest.json'}")
