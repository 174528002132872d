"""``treasury health``: one line per check; exit 0 healthy, 1 unhealthy."""

from __future__ import annotations

import click

from treasury.cli.context import AppContext, pass_app


@click.command("health")
@click.option("--json", "as_json", is_flag=True, help="print the checks as JSON")
@pass_app
def health_cmd(app: AppContext, as_json: bool) -> None:
    """Check the database, Redis, the exchange's time and our clock, halts and migrations."""
    from treasury.monitoring.health import run_checks, standard_checks
    from treasury.schema import status
    from treasury.store.db import make_engine

    engine = make_engine(app.settings.database_url)  # no schema creation: a health check changes nothing
    try:
        report = run_checks(standard_checks(app.settings, engine, app.clock, schema_status=status))
    finally:
        engine.dispose()
    if as_json:
        app.print_json(report.to_dict())
    else:
        for check in report.checks:
            click.echo(check.line())
        click.echo("healthy" if report.healthy else "UNHEALTHY")
    if not report.healthy:
        raise SystemExit(1)


def register(cli: click.Group) -> None:
    cli.add_command(health_cmd)
