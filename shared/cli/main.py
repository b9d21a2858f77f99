"""The ``hubspot-sync`` command group.

Subcommands live in their own modules and are imported only when invoked, so
``hubspot-sync db upgrade`` does not pay for the emulator or the Google clients.
To add one, write a click command in ``shared/cli/<name>.py`` (an operator command) or
``localdev/cli/<name>.py`` (a developer command: it never ships in a function) and list
it below. Naming modules by string keeps ``shared`` free of any import of ``localdev``.
"""

from __future__ import annotations

import importlib
import sys

import click

from shared.errors import ConfigurationError

# command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "changes": "shared.cli.fleet:changes",
    "db": "shared.cli.db:db",
    "demo": "localdev.cli.demo:demo",
    "emulator": "localdev.cli.emulator:emulator",
    "hubspot": "shared.cli.hubspot:hubspot",
    "outbound": "shared.cli.outbound:outbound",
    "package": "shared.cli.package:package",
    "pause": "shared.cli.fleet:pause",
    "publish-change": "shared.cli.publish:publish_change",
    "reconcile": "shared.cli.reconcile:reconcile",
    "resume": "shared.cli.fleet:resume",
    "serve": "localdev.cli.serve:serve",
    "status": "shared.cli.fleet:status",
}


# Packages of the optional extras, and the extra that brings each.
_OPTIONAL = {"rich": "cli", "pgserver": "local"}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name in _OPTIONAL:
                raise click.ClickException(
                    f"'{cmd_name}' needs {exc.name}: pip install "
                    f"'warp-hubspot-sync[{_OPTIONAL[exc.name]}]'"
                ) from None
            raise
        command = getattr(module, attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup)
@click.version_option(package_name="warp-hubspot-sync")
def cli() -> None:
    """Keep WARP customers and HubSpot companies and contacts in step."""


def main() -> None:
    """Run the CLI; configuration errors print one clear line and exit 2."""
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigurationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
