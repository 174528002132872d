"""Engines and transactions, for SQLite (embedded) and PostgreSQL.

SQLite runs every transaction as ``BEGIN IMMEDIATE`` so that writers serialize at the
start instead of failing on a lock upgrade; PostgreSQL uses row locks
(``SELECT … FOR UPDATE``) where the code asks for them, which SQLite ignores.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit is atomic and survives the
process dying, but is fsync'd only at the next WAL checkpoint, so a power loss may roll back
the last commits (never half of one). That is safe wherever a lost commit is redone by the
runner from what the database still holds. It is not safe for the commit that guards a
request to the exchange (SENDING written before the request goes out): ``durable_transaction``
commits that one with ``synchronous=FULL``, which also makes every earlier commit durable.
``sync_committed`` does the same for what is already committed (before a checkpoint file
vouches for it). docs/architecture.md ("Durability") has the reasoning.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

# conn.info keys: the next transaction on this connection commits with synchronous=FULL, and
# the level the DBAPI connection is at now (it persists with the pooled connection)
_DURABLE = "treasury.store.durable"
_SYNC = "treasury.store.synchronous"


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
            cur.execute("PRAGMA synchronous=NORMAL")  # see the module docstring
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # SQLite refuses to change the level inside a transaction, so it is set here
            want = "FULL" if conn.info.get(_DURABLE) else "NORMAL"
            if conn.info.get(_SYNC, "NORMAL") != want:
                conn.exec_driver_sql(f"PRAGMA synchronous={want}")
                conn.info[_SYNC] = want
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


@contextmanager
def durable_transaction(engine: Engine) -> Iterator[Connection]:
    """``transaction`` whose commit is on disk when it returns, even on SQLite.

    For the commit that guards a request to the exchange: a power loss must not roll it back
    after the request left. SQLite commits it with ``synchronous=FULL`` (the WAL is fsync'd,
    with every commit before it) and the connection returns to NORMAL afterwards; PostgreSQL
    commits are durable already (``synchronous_commit`` on, its default, which we require).
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with engine.connect() as conn:
        conn.info[_DURABLE] = True
        try:
            with conn.begin():
                yield conn
        finally:
            conn.info.pop(_DURABLE, None)
            _restore_normal(conn)


def _restore_normal(conn: Connection) -> None:
    """Put a SQLite connection back to NORMAL outside any transaction (it may be invalid now:
    then the pool discards it, and a new connection starts at NORMAL)."""
    if conn.info.get(_SYNC, "NORMAL") == "NORMAL" or conn.invalidated:
        return
    dbapi = conn.connection.driver_connection
    if dbapi is not None and not dbapi.in_transaction:
        dbapi.execute("PRAGMA synchronous=NORMAL")
        conn.info[_SYNC] = "NORMAL"


def sync_committed(engine: Engine) -> None:
    """Make every transaction committed so far durable (before something outside the
    database, such as an audit checkpoint file, vouches for it).

    SQLite in WAL mode with ``synchronous=NORMAL`` keeps recent commits in the WAL file
    unsynced: fsync it. Other databases' commits are durable when they return. Raises
    OSError when the WAL file exists but cannot be synced.
    """
    if engine.dialect.name != "sqlite":
        return
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        fd = os.open(f"{database}-wal", os.O_RDONLY)
    except FileNotFoundError:
        return  # no WAL: everything was checkpointed into the main file (synced then)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def insert_ignoring_conflicts(conn: Connection, table: Any) -> Any:
    """An INSERT into ``table`` that skips rows whose key exists (PostgreSQL or SQLite)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()
