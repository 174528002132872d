"""``treasury notify check`` and ``treasury notify send``: the notification config and sender."""

from __future__ import annotations

import time

import click

from treasury.cli.context import AppContext, pass_app


@click.group("notify")
def notify() -> None:
    """Notifications (config/notify.yaml): check the file, or deliver the outbox."""


@notify.command("check")
@pass_app
def check_cmd(app: AppContext) -> None:
    """Validate config/notify.yaml (every problem as FILE:LINE:COL) and list the routes."""
    from treasury.audit.outbox import EVENTS
    from treasury.notify.config import load_notify

    config = load_notify(app.settings.notify_file)
    if not config.channels:
        click.echo(f"{config.source}: no channels: notifications are recorded, not sent")
        return
    for name, channel in config.channels.items():
        click.echo(f"channel {name}: {channel.type}" + (" (signed)" if channel.secret is not None else ""))
    for event in EVENTS:
        click.echo(f"{event} -> {', '.join(config.channels_for(event)) or '(nowhere)'}")


@notify.command("send")
@click.option("--loop", is_flag=True, help="keep sending until interrupted")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="seconds between passes with --loop")
@pass_app
def send_cmd(app: AppContext, loop: bool, interval: float) -> None:
    """Deliver pending notifications (one pass, or --loop). Exit 1 when a delivery failed."""
    from treasury.notify.service import build_sender

    sender = build_sender(app.settings, app.engine(), app.clock)
    failed = False
    try:
        while True:
            report = sender.run_once()
            failed = report.failed > 0
            if report.delivered or report.failed or not loop:
                click.echo(f"delivered {report.delivered}, failed {report.failed}")
                for line in report.errors:
                    click.echo(f"  {line}", err=True)
            if not loop:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        sender.http.close()
    if failed:
        raise SystemExit(1)


def register(cli: click.Group) -> None:
    cli.add_command(notify)
