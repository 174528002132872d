"""Entry point: builds settings once, maps treasury errors to exit codes (1 bad outcome, 2 usage)."""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError

from treasury.cli import (
    audit,
    db,
    demo,
    health,
    notify,
    ops,
    people,
    policy,
    runs,
    schedules,
    serve,
    simulator,
    validate,
    worker,
)
from treasury.cli.context import AppContext
from treasury.cli.failures import infrastructure_message
from treasury.display import escape_lines
from treasury.errors import TreasuryError
from treasury.observe.logs import LogFormat, configure
from treasury.settings import Settings


class TreasuryGroup(click.Group):
    """Maps errors onto a one-line message and an exit code, for every command.

    A treasury error prints its message and exits with its code. A database, broker or
    exchange that cannot be reached prints one line naming the setting to check (URLs
    redacted) and exits 1; ``--debug`` shows the full traceback instead.
    """

    def invoke(self, ctx: click.Context) -> object:
        # the subcommand's arguments, not parsed yet: help must work without valid settings
        ctx.meta["treasury.help"] = any(a in ("-h", "--help") for a in ctx.args)
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            app = ctx.obj if isinstance(ctx.obj, AppContext) else None
            line = infrastructure_message(exc, app.settings if app else None)
            if line is not None:
                click.echo(f"error: {line}", err=True)
                ctx.exit(1)
            if isinstance(exc, TreasuryError):
                click.echo(f"error: {escape_lines(str(exc))}", err=True)
                ctx.exit(exc.exit_code)
            raise


@click.group(cls=TreasuryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="treasury")
@click.option("--debug", is_flag=True, help="Show the full traceback when a command fails.")
@click.option("--log-format", type=click.Choice(["console", "json"]), default=None,
              help="log lines as plain text or JSON (default: TREASURY_LOG_FORMAT, else console)")
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_format: str | None = None) -> None:
    """Treasury workflows on HashKey PRO: approvals, exactly-once execution, audit."""
    if ctx.obj is None:
        try:
            settings = Settings()
            if log_format:
                settings = settings.model_copy(update={"log_format": LogFormat(log_format)})
        except ValidationError as exc:
            if ctx.meta.get("treasury.help"):
                return  # help needs no settings: show it even when the environment is wrong
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            where = f"setting TREASURY_{loc.upper()}" if loc else "settings"  # no loc: a rule across settings
            raise click.UsageError(f"{where}: {message}") from None
        ctx.obj = AppContext(settings=settings)
    if ctx.obj is not None:
        configure(ctx.obj.settings.log_format)


# Each command module defines ``register(group)``; the order is the order of ``--help``.
COMMAND_MODULES = (ops, validate, runs, audit, schedules, worker, serve, simulator, demo, policy, db,
                   people, health, notify)


def _register_all() -> None:
    for module in COMMAND_MODULES:
        module.register(cli)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; TreasuryError becomes a one-line message and its exit code."""
    try:
        rv = cli.main(args=argv, prog_name="treasury", standalone_mode=False)
        if isinstance(rv, int) and rv != 0:  # ctx.exit(code) returns the code in this mode
            sys.exit(rv)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    except TreasuryError as exc:
        click.echo(f"error: {escape_lines(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
