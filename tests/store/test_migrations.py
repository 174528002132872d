"""Schema migrations (Alembic): the revisions build exactly the models, on SQLite and PostgreSQL;
a database made before migrations upgrades with its data intact; a database behind is refused.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.exc import DBAPIError

from tests.audit.helpers import seed
from tests.conftest import PG_BASE
from treasury import schema as database_schema
from treasury.audit.verify import verify_chain
from treasury.errors import ConfigError
from treasury.schema import metadata
from treasury.store.db import make_engine
from treasury.store.tables import approvals, runs

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path) -> Engine:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    else:
        engine = make_engine(request.getfixturevalue("pg_url"))
    yield engine
    engine.dispose()


def _run_revisions(engine: Engine, target: str) -> None:
    with engine.begin() as conn:
        command.upgrade(database_schema.alembic_config(conn), target)


def _as_made_before_migrations(engine: Engine) -> None:
    """The baseline's tables and triggers without Alembic's version row: what the releases
    before migrations created with ``create_all``."""
    _run_revisions(engine, database_schema.BASELINE)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {database_schema.VERSION_TABLE}"))


def test_the_revisions_build_exactly_the_models(empty_engine: Engine) -> None:
    _run_revisions(empty_engine, "head")
    with empty_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == [], f"the models and the migrations disagree; write a revision: {diff}"
    assert database_schema.status(empty_engine).state == database_schema.CURRENT


def test_the_revisions_install_the_audit_guards(empty_engine: Engine) -> None:
    _run_revisions(empty_engine, "head")
    seed(empty_engine, 2)
    with pytest.raises(DBAPIError, match="append-only"), empty_engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'mallory'"))
    with pytest.raises(DBAPIError), empty_engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_head"))
    assert verify_chain(empty_engine).ok


def test_a_database_made_before_migrations_upgrades_with_its_data(empty_engine: Engine) -> None:
    _as_made_before_migrations(empty_engine)
    with empty_engine.begin() as conn:
        conn.execute(
            insert(runs).values(
                id="R1", workflow="vendor-payout", workflow_file="w.yaml", workflow_snapshot="name: x",
                workflow_digest="d" * 64, inputs={"amount": "1200.50"}, requested_by="erin",
                state="AWAITING_APPROVAL", created_at=NOW, updated_at=NOW, version=0,
            )
        )
        conn.execute(
            insert(approvals).values(
                run_id="R1", step_id="approve", approver="alice", decision="approve",
                digest="a" * 64, created_at=NOW,
            )
        )
    events = seed(empty_engine, 25)
    status = database_schema.status(empty_engine)
    assert status.state == database_schema.BEHIND and status.current is None

    with pytest.raises(ConfigError, match="treasury db upgrade"):
        database_schema.create_schema(empty_engine)

    before, after = database_schema.upgrade(empty_engine)
    assert before.state == database_schema.BEHIND
    assert after.state == database_schema.CURRENT and after.current == database_schema.head_revision()
    with empty_engine.connect() as conn:
        run = conn.execute(select(runs).where(runs.c.id == "R1")).one()
        assert run.inputs == {"amount": "1200.50"} and run.state == "AWAITING_APPROVAL"
        assert conn.execute(select(func.count()).select_from(approvals)).scalar_one() == 1
    result = verify_chain(empty_engine, expect_head=f"{events[-1].seq}:{events[-1].hash}")
    assert result.ok and result.count == 25
    assert database_schema.create_schema(empty_engine).state == database_schema.CURRENT


def test_an_empty_database_is_created_whole_and_recorded(empty_engine: Engine) -> None:
    assert database_schema.status(empty_engine).state == database_schema.EMPTY
    assert database_schema.create_schema(empty_engine).state == database_schema.CURRENT
    with empty_engine.connect() as conn:
        recorded = conn.execute(text(f"SELECT version_num FROM {database_schema.VERSION_TABLE}")).scalar_one()
    assert recorded == database_schema.head_revision()


def test_a_database_from_a_newer_release_is_refused(empty_engine: Engine) -> None:
    database_schema.create_schema(empty_engine)
    with empty_engine.begin() as conn:
        conn.execute(text(f"UPDATE {database_schema.VERSION_TABLE} SET version_num = '9999_future'"))
    found = database_schema.status(empty_engine)
    assert found.state == database_schema.AHEAD
    with pytest.raises(ConfigError, match="9999_future"):
        database_schema.create_schema(empty_engine)
    with pytest.raises(ConfigError, match="9999_future"):
        database_schema.upgrade(empty_engine)


def _triggers(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            rows = conn.execute(
                text(
                    "SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
                    "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE NOT t.tgisinternal AND n.nspname = current_schema()"
                )
            )
        else:
            rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
        schema = conn.execute(text("SELECT current_schema()")).scalar() if conn.dialect.name == "postgresql" else ""
        return {name: " ".join(sql.split()).replace(f"{schema}.", "") for name, sql in rows}


def test_the_revisions_make_the_same_triggers_as_the_models(empty_engine: Engine, tmp_path) -> None:
    _run_revisions(empty_engine, "head")
    if empty_engine.dialect.name == "postgresql":
        schema = f"t_{secrets.token_hex(6)}"
        with empty_engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        models = make_engine(PG_BASE + f"?options=-csearch_path%3D{schema}")
    else:
        schema = ""
        models = make_engine(f"sqlite:///{tmp_path / 'models.db'}")
    try:
        database_schema.create_schema(models)  # create_all with the models' own DDL
        made = _triggers(models)
        assert made and _triggers(empty_engine) == made
    finally:
        models.dispose()
        if schema:
            with empty_engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
