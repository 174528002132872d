"""The whole database schema: every table module, collected, and the schema operations on it.

The table modules (``*/tables.py``) register their tables on the shared
:data:`treasury.store.metadata.metadata` and import nothing above the store. This module sits
above all of them and imports each one, so ``metadata`` here always holds the complete schema;
it hands that to the migration mechanism in ``treasury.store.migrate``. Adding a table module
means adding its import here (``tests/store/test_migrations.py`` compares the revisions with
this schema).
"""

from __future__ import annotations

from alembic.config import Config
from sqlalchemy import Connection, Engine

import treasury.audit.outbox
import treasury.audit.tables
import treasury.notify.tables
import treasury.observe.tables
import treasury.people.tables
import treasury.policy.tables
import treasury.schedules.tables
import treasury.store.tables  # noqa: F401  (each import registers its tables)
from treasury.store import migrate
from treasury.store.metadata import metadata
from treasury.store.migrate import (
    AHEAD,
    BASELINE,
    BEHIND,
    CURRENT,
    EMPTY,
    UPGRADE_HINT,
    VERSION_TABLE,
    SchemaStatus,
    head_revision,
    refuse_unless_current,
)

__all__ = [
    "AHEAD",
    "BASELINE",
    "BEHIND",
    "CURRENT",
    "EMPTY",
    "UPGRADE_HINT",
    "VERSION_TABLE",
    "SchemaStatus",
    "alembic_config",
    "create_schema",
    "head_revision",
    "metadata",
    "refuse_unless_current",
    "status",
    "status_of",
    "upgrade",
]


def alembic_config(conn: Connection) -> Config:
    """An Alembic configuration for ``conn`` that compares with the whole schema."""
    return migrate.alembic_config(conn, metadata)


def status_of(conn: Connection) -> SchemaStatus:
    """Where the database behind ``conn`` stands (see ``treasury.store.migrate``)."""
    return migrate.status_of(conn, metadata)


def status(engine: Engine) -> SchemaStatus:
    """Where the database behind ``engine`` stands (see ``treasury.store.migrate``)."""
    return migrate.status(engine, metadata)


def create_schema(engine: Engine) -> SchemaStatus:
    """Create an empty database whole, accept a current one, refuse any other.

    Raises:
        ConfigError: the database is behind (names ``treasury db upgrade``) or ahead of this
            release.
    """
    return migrate.create_schema(engine, metadata)


def upgrade(engine: Engine) -> tuple[SchemaStatus, SchemaStatus]:
    """Apply every pending revision; returns the status before and after.

    Raises:
        ConfigError: the database is ahead of this release.
    """
    return migrate.upgrade(engine, metadata)
