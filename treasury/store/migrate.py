"""Where a database stands against the code's schema, and moving it there (Alembic).

The revisions live in ``treasury/store/migrations/versions``. Four states a database can be in:

- **empty**: no treasury table. ``create_schema`` creates the whole schema in one go and records it
  at the head revision (the demo, tests and a first start do this).
- **current**: recorded at the head revision. Nothing to do.
- **behind**: recorded at an older revision, or created before migrations existed (treasury's
  tables without Alembic's version table: that is the baseline). Long-running processes refuse
  to start on it; ``treasury db upgrade`` moves it to the head.
- **ahead**: recorded at a revision this code does not know (a newer release wrote it).
  Refused as well: an older release must not write into a newer schema.

Every function that needs the whole schema takes the ``MetaData`` holding it: the table modules
sit above this one, so ``treasury.schema`` (which imports them all) passes it in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, MetaData, inspect

from treasury.errors import ConfigError
from treasury.store.db import SCHEMA_LOCK_KEY, is_postgres

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BASELINE = "0001_baseline"
# Alembic's own bookkeeping table: not one of ours.
VERSION_TABLE = "alembic_version"

EMPTY = "empty"
CURRENT = "current"
BEHIND = "behind"
AHEAD = "ahead"

# Alembic says "Context impl SQLiteImpl" at INFO each time a process looks at the schema;
# `treasury db` prints what it did itself.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)

UPGRADE_HINT = "run `treasury db upgrade` (with the same TREASURY_DATABASE_URL) first"


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands: ``state`` is one of EMPTY, CURRENT, BEHIND, AHEAD."""

    state: str
    current: str | None  # the recorded revision; None when empty or created before migrations
    head: str
    pending: tuple[str, ...]  # revisions ``upgrade`` would apply, oldest first

    def describe(self) -> str:
        if self.state == CURRENT:
            return f"up to date at {self.head}"
        if self.state == EMPTY:
            return f"empty: no treasury tables (head is {self.head})"
        if self.state == AHEAD:
            return f"at {self.current}, which this release does not know (its head is {self.head})"
        at = self.current or f"{BASELINE} (created before migrations, not yet recorded)"
        return f"behind: at {at}; pending: {', '.join(self.pending) or 'none, only recording it'}"


def alembic_config(conn: Connection, metadata: MetaData | None = None) -> Config:
    """An Alembic configuration for ``conn`` (there is no alembic.ini); ``metadata`` is the
    schema the revisions are compared with (``env.py`` reads both from the attributes)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    config.attributes["metadata"] = metadata
    return config


def head_revision() -> str:
    """The newest revision this release knows."""
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None  # the baseline always exists
    return head


def _pending(script: ScriptDirectory, current: str | None, head: str) -> tuple[str, ...]:
    revisions = list(script.iterate_revisions(head, current))  # newest first, excludes current
    return tuple(rev.revision for rev in reversed(revisions))


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def status_of(conn: Connection, metadata: MetaData) -> SchemaStatus:
    """Where the database behind ``conn`` stands against the schema in ``metadata``."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = head_revision()
    tables = set(inspect(conn).get_table_names())
    recorded = MigrationContext.configure(conn).get_current_revision()
    if recorded is None:
        if not tables & set(metadata.tables):
            return SchemaStatus(EMPTY, None, head, ())
        # created before migrations: it holds the baseline
        return SchemaStatus(BEHIND, None, head, _pending(script, BASELINE, head))
    if recorded == head:
        return SchemaStatus(CURRENT, recorded, head, ())
    if not _known(script, recorded):
        return SchemaStatus(AHEAD, recorded, head, ())
    return SchemaStatus(BEHIND, recorded, head, _pending(script, recorded, head))


def status(engine: Engine, metadata: MetaData) -> SchemaStatus:
    """Where the database behind ``engine`` stands against the schema in ``metadata``."""
    with engine.connect() as conn:
        return status_of(conn, metadata)


def _lock(conn: Connection) -> None:
    # Processes starting together take turns (concurrent CREATE TABLE can still collide).
    if is_postgres(conn):
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")


def create_schema(engine: Engine, metadata: MetaData) -> SchemaStatus:
    """Make the schema ready for this release's code, or refuse: what every process does
    before it touches the database.

    An empty database is created whole (tables and audit triggers) and recorded at the head;
    a current one is left alone. On PostgreSQL, processes starting together take turns under
    an advisory lock.

    Raises:
        ConfigError: the database is behind (names ``treasury db upgrade``) or ahead of this
            release.
    """
    with engine.begin() as conn:
        _lock(conn)
        found = status_of(conn, metadata)
        if found.state == EMPTY:
            metadata.create_all(conn)
            command.stamp(alembic_config(conn, metadata), "head")
            return SchemaStatus(CURRENT, found.head, found.head, ())
    refuse_unless_current(found)
    return found


def refuse_unless_current(found: SchemaStatus) -> None:
    """Raise ConfigError unless ``found`` is CURRENT (or EMPTY, which ``create_schema`` creates)."""
    if found.state == BEHIND:
        raise ConfigError(f"the database is {found.describe()}: {UPGRADE_HINT}", field="TREASURY_DATABASE_URL")
    if found.state == AHEAD:
        raise ConfigError(
            f"the database is {found.describe()}: run a release that knows it",
            field="TREASURY_DATABASE_URL",
        )


def upgrade(engine: Engine, metadata: MetaData) -> tuple[SchemaStatus, SchemaStatus]:
    """Apply every pending revision; returns the status before and after.

    A database created before migrations is first recorded at the baseline, which it holds.

    Raises:
        ConfigError: the database is ahead of this release.
    """
    with engine.begin() as conn:
        _lock(conn)
        before = status_of(conn, metadata)
        if before.state == AHEAD:
            refuse_unless_current(before)
        config = alembic_config(conn, metadata)
        if before.state == EMPTY:
            metadata.create_all(conn)
            command.stamp(config, "head")
        else:
            if before.current is None:
                command.stamp(config, BASELINE)
            command.upgrade(config, "head")
        after = status_of(conn, metadata)
    return before, after
