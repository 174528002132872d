"""``treasury serve``: one process for a small desk, with no broker (see ``treasury.worker.serve``)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

from treasury.cli.context import AppContext, pass_app
from treasury.errors import ConfigError

log = logging.getLogger("treasury.serve")


@click.command("serve")
@click.option("--host", default=None, help="reserved for the web console (not served yet)")
@click.option("--port", type=int, default=None, help="reserved for the web console (not served yet)")
@pass_app
def serve_cmd(app: AppContext, host: str | None, port: int | None) -> None:
    """Run a small desk in one process, with no broker: fire schedules, sweep, execute steps.

    Schedules from TREASURY_WORKFLOWS_DIR fire here (each due time once, also with a second
    `serve` on the same database), their runs' steps execute inline, and the sweeper recovers
    lost work and expires approvals. Works on SQLite or PostgreSQL. SIGTERM or Ctrl-C stops it
    cleanly (exit 0): the step under way may finish (TREASURY_SOFT_SHUTDOWN_TIMEOUT, default
    60 s; a second signal stops at once). Intervals: TREASURY_BEAT_INTERVAL (15 s) and
    TREASURY_SWEEP_INTERVAL (60 s). Outgrown it? Run `treasury worker` and `treasury beat`
    with a broker instead.
    """
    from treasury.broker.app import load_options
    from treasury.worker.serve import ServeOptions, build_server

    settings = app.settings
    if settings.broker_url is not None:
        raise ConfigError(
            "is set, but `treasury serve` executes steps itself; unset it to run one process, or run "
            "`treasury worker` and `treasury beat` to use the broker",
            source="environment", field="TREASURY_BROKER_URL",
        )
    if host is not None or port is not None:
        click.echo("note: --host and --port are reserved for the web console, which is not served yet", err=True)
    options = ServeOptions.from_worker(load_options())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = app.runtime()
    server = build_server(runtime, options)
    server.beat.loader.files()  # an unreadable workflows folder is an error now, not every tick
    stop, hurry = threading.Event(), threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            hurry.set()  # a second signal: do not wait for the step under way
        else:
            log.info("%s received: stopping after the current tick", signal.Signals(signum).name)
            stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    exchange = settings.exchange_url() or "the in-process simulator"
    log.info("treasury serve: schedules from %s, %s database, exchange %s; tick every %g s, sweep every %g s; "
             "SIGTERM or Ctrl-C stops", settings.workflows_dir, runtime.engine.dialect.name, exchange,
             options.tick_interval, options.sweep_interval)
    try:
        server.run(stop, hurry=hurry)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def register(cli: click.Group) -> None:
    cli.add_command(serve_cmd)
