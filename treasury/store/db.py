"""Engines and transactions, for SQLite (embedded) and PostgreSQL.

SQLite runs every transaction as ``BEGIN IMMEDIATE`` so that writers serialize at the
start instead of failing on a lock upgrade; PostgreSQL uses row locks
(``SELECT … FOR UPDATE``) where the code asks for them, which SQLite ignores.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url


def _url_text(url: str | SecretStr) -> str:
    return url.get_secret_value() if isinstance(url, SecretStr) else url


def make_engine(url: str | SecretStr, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` with the settings treasury relies on."""
    text = _url_text(url)
    parsed = make_url(text)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            text,
            connect_args={"check_same_thread": False, "timeout": 60},
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event own BEGIN
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(text, **kwargs)


def is_postgres(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "postgresql"


SCHEMA_LOCK_KEY = 0x7472_6561_7375  # pg_advisory_xact_lock key: "treasu"


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One atomic unit of work: commits on success, rolls back on any error."""
    with engine.begin() as conn:
        yield conn


def insert_ignoring_conflicts(conn: Connection, table: Any) -> Any:
    """An INSERT into ``table`` that skips rows whose key exists (PostgreSQL or SQLite)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()
