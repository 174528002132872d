"""Alembic's entry point: runs the revisions on the connection ``treasury.store.migrate`` hands in.

There is no ``alembic.ini``: ``treasury db upgrade`` (and ``migrate.alembic_config``) build the
configuration in code, with the connection in ``config.attributes["connection"]`` and the
schema (``treasury.schema.metadata``) in ``config.attributes["metadata"]``.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=context.config.attributes.get("metadata"),
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
