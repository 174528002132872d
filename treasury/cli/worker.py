"""``treasury worker`` and ``treasury beat``: Celery's own commands, with treasury's app.

Both run ``celery worker`` / ``celery beat`` in this process with the app built from the
settings this invocation read, and pass every further argument to Celery unchanged
(``treasury worker -c 4 -Q treasury``). ``celery -A treasury.worker worker`` is equivalent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from treasury.cli.context import AppContext, pass_app
from treasury.settings import Settings

if TYPE_CHECKING:
    from treasury.worker.factory import TreasuryCelery

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def _celery_app(settings: Settings) -> TreasuryCelery:
    """The Celery app, after refusing settings a worker cannot run with.

    Raises:
        ConfigError: no ``TREASURY_BROKER_URL``; or no exchange URL (an in-process simulator
            cannot be shared by workers: run ``treasury simulator`` and set ``TREASURY_BASE_URL``).
    """
    from treasury.worker.factory import broker_url, create_app

    broker_url(settings)
    settings.check()
    return create_app(settings)


def _with_default_loglevel(args: tuple[str, ...]) -> list[str]:
    given = any(a in ("-l", "--loglevel") or a.startswith(("--loglevel=", "-l")) for a in args)
    return list(args) if given else ["--loglevel=INFO", *args]


def _run(settings: Settings, command: str, args: tuple[str, ...]) -> None:
    app = _celery_app(settings)
    code = app.start([command, *_with_default_loglevel(args)])
    if code:
        raise SystemExit(code)


@click.command("worker", context_settings=_PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@pass_app
def worker_cmd(app: AppContext, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker that executes steps (arguments go to `celery worker`)."""
    _run(app.settings, "worker", celery_args)


@click.command("beat", context_settings=_PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@pass_app
def beat_cmd(app: AppContext, celery_args: tuple[str, ...]) -> None:
    """Run Celery beat: fires schedules from the workflow files and runs the sweeper."""
    _run(app.settings, "beat", celery_args)


def register(cli: click.Group) -> None:
    cli.add_command(worker_cmd)
    cli.add_command(beat_cmd)
