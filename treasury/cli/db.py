"""``treasury db upgrade|current|check``: where the database stands against this release."""

from __future__ import annotations

from typing import Any

import click
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from treasury import schema
from treasury.cli.context import AppContext, pass_app
from treasury.schema import metadata
from treasury.store.db import make_engine


def register(cli: click.Group) -> None:
    cli.add_command(db)


@click.group("db")
def db() -> None:
    """Schema migrations of the database named by TREASURY_DATABASE_URL."""


def _engine(app: AppContext) -> Engine:
    # Not app.engine(): that prepares the schema, which is what these commands report on.
    return make_engine(app.settings.database_url)


def _status_dict(found: schema.SchemaStatus) -> dict[str, Any]:
    return {
        "state": found.state,
        "current": found.current,
        "head": found.head,
        "pending": list(found.pending),
        "message": found.describe(),
    }


@db.command("current")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_app
def current(app: AppContext, as_json: bool) -> None:
    """Print the database's revision and how it compares with this release's head."""
    engine = _engine(app)
    try:
        found = schema.status(engine)
    finally:
        engine.dispose()
    if as_json:
        app.print_json(_status_dict(found))
    else:
        click.echo(f"{found.current or '(none recorded)'}: {found.describe()}")


def _drift(engine: Engine) -> list[str]:
    """Differences between the tables in the database and the models (a current database
    edited by hand, or a model changed without a revision)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return [str(diff) for diff in compare_metadata(context, metadata)]


@db.command("check")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_app
def check(app: AppContext, as_json: bool) -> None:
    """Exit 0 when the database is at this release's head and its tables match the models;
    exit 1 otherwise (behind, ahead, empty, or drifted), saying what to do."""
    engine = _engine(app)
    try:
        found = schema.status(engine)
        drift = _drift(engine) if found.state == schema.CURRENT else []
    finally:
        engine.dispose()
    ok = found.state == schema.CURRENT and not drift
    report = _status_dict(found) | {"ok": ok, "drift": drift}
    if as_json:
        app.print_json(report)
    else:
        click.echo(f"{'OK' if ok else 'NOT READY'}: the database is {found.describe()}")
        for line in drift:
            click.echo(f"  differs from the models: {line}")
        if found.state in (schema.BEHIND, schema.EMPTY):
            click.echo("  run `treasury db upgrade`")
    if not ok:
        raise SystemExit(1)


@db.command("upgrade")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_app
def upgrade(app: AppContext, as_json: bool) -> None:
    """Apply every pending revision (an empty database is created whole).

    A database created before migrations existed is recorded at the baseline first.
    """
    engine = _engine(app)
    try:
        before, after = schema.upgrade(engine)
    finally:
        engine.dispose()
    if as_json:
        app.print_json({"before": _status_dict(before), "after": _status_dict(after)})
        return
    if before.state == schema.CURRENT:
        click.echo(f"nothing to do: {after.describe()}")
    elif before.state == schema.EMPTY:
        click.echo(f"created the schema: {after.describe()}")
    else:
        applied = ", ".join(before.pending) or "none (recorded at the baseline)"
        click.echo(f"upgraded: {before.describe()} -> {after.describe()}; applied: {applied}")
