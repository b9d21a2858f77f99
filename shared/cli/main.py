"""The ``hubspot-sync`` command group.

Subcommands live in their own modules and are imported only when invoked, so
``hubspot-sync db upgrade`` does not pay for the emulator or the Google clients.
To add one, write a click command in ``shared/cli/<name>.py`` (an operator command) or
``localdev/cli/<name>.py`` (a developer command: it never ships in a function) and list
it below. Naming modules by string keeps ``shared`` free of any import of ``localdev``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback

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


# Operator commands that work on the deployment's database: each says which database it
# uses, and refuses one that holds no sync tables (``db`` creates them: it only says).
DATABASE_COMMANDS = frozenset({"changes", "db", "pause", "reconcile", "resume", "status"})

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
@click.option("--debug", is_flag=True, help="show the log's warnings and errors, and tracebacks")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Keep WARP customers and HubSpot companies and contacts in step."""
    # Commands that set up no logging of their own (the operator commands) print
    # through Python's last-resort handler: nothing unless --debug. A command says its
    # outcome itself (a report, or one line for an expected failure); the log lines on
    # the way (each retry of a HubSpot call, "page failed") would bury that line.
    logging.lastResort = logging.StreamHandler(sys.stderr)
    logging.lastResort.setLevel(logging.DEBUG if debug else logging.CRITICAL + 1)
    if ctx.invoked_subcommand in DATABASE_COMMANDS and ctx.invoked_subcommand != "db":
        from shared.cli.target import check_database

        click.echo(f"database: {check_database(ctx.invoked_subcommand)}", err=True)


def main() -> None:
    """Run the CLI; an expected failure prints one clear line (exit 2), --debug its traceback."""
    debug = "--debug" in sys.argv[1:]
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigurationError as exc:
        _expected(f"error: {exc}", debug)
    except Exception as exc:
        from shared.diagnose import explain_line

        line = explain_line(exc)
        if line is None:
            raise  # not an operator's mistake: a bug, with its traceback
        _expected(f"error: {line}", debug)


def _expected(line: str, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    click.echo(line, err=True)
    sys.exit(2)
