"""Fixtures for schedule tests: a minimal StartRun, an audit hook that writes a table, and
helpers that read back what a tick committed (never what it merely returned)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import JSON, Column, Connection, Engine, Integer, MetaData, String, Table, insert, select

from treasury.clock import ManualClock
from treasury.language.timing import CatchUp, ScheduleSpec
from treasury.schedules.tables import UTCDateTime, schedule_ticks
from treasury.schedules.tick import Scheduler
from treasury.schema import create_schema
from treasury.store.db import make_engine
from treasury.store.tables import runs

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # ManualClock's default start

_meta = MetaData()
audit_log = Table(
    "test_schedule_audit",
    _meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("run_id", String(16), nullable=True),
    Column("payload", JSON, nullable=True),
)


def record_audit(
    conn: Connection,
    *,
    type: str,
    actor: str,
    at: datetime,
    run_id: str | None = None,
    step_id: str | None = None,
    payload: Mapping[str, Any] | None = None,
) -> None:
    conn.execute(insert(audit_log).values(type=type, actor=actor, at=at, run_id=run_id, payload=payload))


def start_run(conn: Connection, spec: ScheduleSpec, due_at: datetime) -> str:
    """What the run layer does, minus the workflow: one runs row keyed by (schedule, due_at)."""
    run_id = secrets.token_hex(8)
    now = datetime.now(UTC)
    conn.execute(
        insert(runs).values(
            id=run_id,
            workflow=spec.name,
            workflow_file=spec.workflow_file or f"{spec.name}.yaml",
            workflow_snapshot="",
            workflow_digest=spec.digest or "0" * 64,
            inputs=dict(spec.inputs),
            requested_by="scheduler",
            state="PENDING",
            created_at=now,
            updated_at=now,
            schedule=spec.name,
            due_at=due_at,
            version=0,
        )
    )
    return run_id


def spec(name: str = "payout", cron: str = "* * * * *", tz: str = "UTC", **kw: Any) -> ScheduleSpec:
    kw.setdefault("workflow_file", f"workflows/{name}.yaml")
    kw.setdefault("digest", "d" * 64)
    kw.setdefault("catchup", CatchUp.LATEST)
    return ScheduleSpec(name, cron, tz, **kw)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def run_rows(engine: Engine, schedule: str | None = None) -> list[tuple[str, datetime, str]]:
    """(schedule, due_at, requested_by) of every committed run, ordered."""
    query = select(runs.c.schedule, runs.c.due_at, runs.c.requested_by).order_by(runs.c.schedule, runs.c.due_at)
    if schedule is not None:
        query = query.where(runs.c.schedule == schedule)
    with engine.connect() as conn:
        return [(r.schedule, _aware(r.due_at), r.requested_by) for r in conn.execute(query)]


def run_dues(engine: Engine, schedule: str) -> list[datetime]:
    return [due for _, due, _ in run_rows(engine, schedule)]


def tick_rows(engine: Engine, schedule: str | None = None) -> list[tuple[str, datetime, str, str | None]]:
    t = schedule_ticks.c
    query = select(t.schedule, t.due_at, t.status, t.run_id).order_by(t.schedule, t.due_at)
    if schedule is not None:
        query = query.where(t.schedule == schedule)
    with engine.connect() as conn:
        return [(r.schedule, r.due_at, r.status, r.run_id) for r in conn.execute(query)]


def audit_rows(engine: Engine, type: str | None = None) -> list[dict[str, Any]]:
    query = select(audit_log).order_by(audit_log.c.id)
    if type is not None:
        query = query.where(audit_log.c.type == type)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def with_test_tables(engine: Engine) -> Engine:
    _meta.create_all(engine)
    return engine


@pytest.fixture
def db(engine: Engine) -> Engine:
    """The shared ``engine`` (SQLite and PostgreSQL) plus the test audit table."""
    return with_test_tables(engine)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_scheduler(db: Engine, clock: ManualClock) -> Callable[..., Scheduler]:
    def make(**kw: Any) -> Scheduler:
        kw.setdefault("start_run", start_run)
        kw.setdefault("audit", record_audit)
        return Scheduler(kw.pop("engine", db), clock=kw.pop("clock", clock), **kw)

    return make


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A database URL (both backends) with the schema created, for several engines at once."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    engine = make_engine(url)
    create_schema(engine)
    with_test_tables(engine)
    engine.dispose()
    return url


@pytest.fixture
def two_engines(db_url: str) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one database: two beats with separate connection pools."""
    engines = (make_engine(db_url), make_engine(db_url))
    yield engines
    for engine in engines:
        engine.dispose()


def minutes(n: float) -> float:
    return timedelta(minutes=n).total_seconds()
