"""Entry point: builds settings once, maps treasury errors to exit codes (1 bad outcome, 2 usage)."""

from __future__ import annotations

import importlib
import sys

import click
from pydantic import ValidationError

from treasury.cli.context import AppContext
from treasury.errors import TreasuryError
from treasury.observe.logs import LogFormat, configure
from treasury.settings import Settings

# Each module defines ``register(group)``; a module that does not exist yet is skipped.
COMMAND_MODULES = (
    "treasury.cli.ops",
    "treasury.cli.validate",
    "treasury.cli.runs",
    "treasury.cli.audit",
    "treasury.cli.schedules",
    "treasury.cli.worker",
    "treasury.cli.simulator",
    "treasury.cli.demo",
    "treasury.cli.policy",
    "treasury.cli.health",
    "treasury.cli.notify",
)


class TreasuryGroup(click.Group):
    """Maps treasury errors onto a one-line message and their exit code, for every command."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except TreasuryError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=TreasuryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="treasury")
@click.option("--log-format", type=click.Choice(["console", "json"]), default=None,
              help="log lines as plain text or JSON (default: TREASURY_LOG_FORMAT, else console)")
@click.pass_context
def cli(ctx: click.Context, log_format: str | None = None) -> None:
    """Treasury workflows on HashKey PRO: approvals, exactly-once execution, audit."""
    if ctx.obj is None:
        try:
            settings = Settings()
            if log_format:
                settings = settings.model_copy(update={"log_format": LogFormat(log_format)})
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise click.UsageError(f"setting TREASURY_{loc.upper()}: {first['msg']}") from None
        ctx.obj = AppContext(settings=settings)
    configure(ctx.obj.settings.log_format)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
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
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
