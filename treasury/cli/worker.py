"""``treasury worker`` and ``treasury beat``: Celery's own commands, with treasury's app.

Both run ``celery worker`` / ``celery beat`` in this process with the app built from the
settings this invocation read, and pass every further argument to Celery unchanged
(``treasury worker -c 4 -Q treasury``). ``celery -A treasury.worker worker`` is equivalent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from treasury.cli.context import AppContext
from treasury.settings import Settings

if TYPE_CHECKING:
    from treasury.broker.app import TreasuryCelery

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def _celery_app(settings: Settings) -> TreasuryCelery:
    """The Celery app, after refusing settings a worker cannot run with.

    Raises:
        ConfigError: no ``TREASURY_BROKER_URL``; or no exchange URL (an in-process simulator
            cannot be shared by workers: run ``treasury simulator`` and set ``TREASURY_BASE_URL``).
    """
    from treasury.broker.app import broker_url
    from treasury.worker.factory import create_app

    broker_url(settings)
    settings.check()
    return create_app(settings)


def _schema_ready(settings: Settings) -> None:
    """Refuse to start on a database that is behind this release (an empty one is created whole).

    Raises:
        ConfigError: the database is behind (names ``treasury db upgrade``) or ahead.
    """
    from treasury.schema import create_schema
    from treasury.store.db import make_engine

    engine = make_engine(settings.database_url)
    try:
        create_schema(engine)
    finally:
        engine.dispose()


def _with_default_loglevel(args: tuple[str, ...]) -> list[str]:
    given = any(a in ("-l", "--loglevel") or a.startswith(("--loglevel=", "-l")) for a in args)
    return list(args) if given else ["--loglevel=INFO", *args]


def _run(ctx: click.Context, command: str, args: tuple[str, ...]) -> None:
    if any(a in ("-h", "--help") for a in args):
        # our own help, before anything needs a broker, a database or even valid settings
        click.echo(ctx.get_help())
        return
    app = ctx.find_object(AppContext)
    assert app is not None, "the treasury group builds the AppContext"
    celery = _celery_app(app.settings)
    _schema_ready(app.settings)
    code = celery.start([command, *_with_default_loglevel(args)])
    if code:
        raise SystemExit(code)


_NEEDS = """
    \b
    Settings it needs (environment or .env):
      TREASURY_BROKER_URL     redis://... (required)
      TREASURY_BASE_URL       the exchange or `treasury simulator` (required)
      TREASURY_DATABASE_URL   the database every worker and beat share
      TREASURY_CONFIG_DIR     keys.yaml, people.yaml, policy.yaml
"""


@click.command("worker", context_settings=_PASS_THROUGH, options_metavar="")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def worker_cmd(ctx: click.Context, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker that executes steps.

    Every argument goes to `celery worker` unchanged, for example `-c 4` (processes),
    `-Q treasury` (queue), `--loglevel DEBUG` (default INFO). `celery worker --help`
    lists them all.
    """
    _run(ctx, "worker", celery_args)


@click.command("beat", context_settings=_PASS_THROUGH, options_metavar="")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def beat_cmd(ctx: click.Context, celery_args: tuple[str, ...]) -> None:
    """Run Celery beat: fires the schedules in the workflow files and runs the internal sweeper.

    One beat per deployment is the usual shape; a second one is harmless (each schedule's due
    time fires once). Every argument goes to `celery beat` unchanged,
    for example `--loglevel DEBUG` (default INFO). `celery beat --help` lists them all.
    """
    _run(ctx, "beat", celery_args)


worker_cmd.help = (worker_cmd.help or "") + _NEEDS
beat_cmd.help = (beat_cmd.help or "") + _NEEDS


def register(cli: click.Group) -> None:
    cli.add_command(worker_cmd)
    cli.add_command(beat_cmd)
