"""The audit tables: ``audit_events`` (append-only, hash-chained) and ``audit_head``.

``audit_head`` is one row (id 1) holding the last event's seq and hash. Appenders lock it,
which keeps one linear chain however many workers write.

The database itself enforces what it can, on both engines, with triggers created right
after the tables:

- ``audit_events`` refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL);
- an event may only be inserted as the next link: ``seq = head.seq + 1`` and
  ``prev_hash = head.hash`` (checked per statement on PostgreSQL, so COPY and multi-row
  inserts work); the head advances to it in the same statement;
- ``audit_head`` can't be deleted or moved by hand: on PostgreSQL only the insert trigger
  may update it; on SQLite (no trigger depth) it may only move forward to an existing event.

Triggers stop accidents and casual edits, not an owner who drops them: that is what the
hash chain and an anchor kept outside the database are for (``treasury audit verify``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    CHAR,
    DDL,
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    String,
    Table,
    Text,
    cast,
    event,
    func,
    select,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnElement

from treasury.audit.chain import GENESIS_HASH
from treasury.store.metadata import metadata

audit_events = Table(
    "audit_events",
    metadata,
    # Assigned by the appender as head.seq + 1, never by a sequence: gaps must mean deletion.
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("run_id", String(16), nullable=True),
    Column("step_id", String(100), nullable=True),
    Column("type", String(64), nullable=False),
    Column("payload", JSON, nullable=False),  # canonical JSON text, exactly as hashed
    Column("prev_hash", CHAR(64), nullable=False),
    Column("hash", CHAR(64), nullable=False),
    Index("ix_audit_events_run_seq", "run_id", "seq"),
    Index("ix_audit_events_type_seq", "type", "seq"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", CHAR(64), nullable=False),
)

APPEND_ONLY_MESSAGE = "audit_events is append-only"

_PG_DDL = (
    f"""
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = '{APPEND_ONLY_MESSAGE}: ' || TG_OP || ' refused',
                          ERRCODE = 'insufficient_privilege';
END $$
""",
    """
CREATE OR REPLACE FUNCTION audit_events_link() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head_seq bigint;
    head_hash char(64);
    bad_seq bigint;
    last_seq bigint;
    last_hash char(64);
BEGIN
    SELECT seq, hash INTO head_seq, head_hash FROM audit_head WHERE id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        head_seq := 0;
        head_hash := repeat('0', 64);
        INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, head_hash);
    END IF;
    -- The statement's rows, in seq order, must continue the head link by link.
    SELECT min(seq) INTO bad_seq FROM (
        SELECT seq, prev_hash, lag(seq) OVER w AS p_seq, lag(hash) OVER w AS p_hash
        FROM new_rows WINDOW w AS (ORDER BY seq)
    ) r
    WHERE seq <> COALESCE(p_seq, head_seq) + 1 OR prev_hash <> COALESCE(p_hash, head_hash);
    IF bad_seq IS NOT NULL THEN
        RAISE EXCEPTION USING
            MESSAGE = 'audit event seq ' || bad_seq || ' does not extend the chain (head was seq '
                      || head_seq || ')',
            ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT seq, hash INTO last_seq, last_hash FROM new_rows ORDER BY seq DESC LIMIT 1;
    IF FOUND THEN
        UPDATE audit_head SET seq = last_seq, hash = last_hash WHERE id = 1;
    END IF;
    RETURN NULL;
END $$
""",
    """
CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()
""",
    """
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()
""",
    # One check per statement (a transition table), so a COPY of a million rows moves the head
    # once instead of rewriting its row a million times inside one transaction.
    """
CREATE TRIGGER audit_events_link AFTER INSERT ON audit_events
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION audit_events_link()
""",
)

_PG_HEAD_DDL = (
    """
CREATE OR REPLACE FUNCTION audit_head_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Only the insert trigger of audit_events (one trigger level down) may move the head.
    IF TG_OP <> 'UPDATE' OR pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION USING
            MESSAGE = 'audit_head: ' || TG_OP || ' refused; the head only moves when an event is appended',
            ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$
""",
    """
CREATE TRIGGER audit_head_guard BEFORE UPDATE OR DELETE ON audit_head
FOR EACH ROW EXECUTE FUNCTION audit_head_guard()
""",
    """
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
FOR EACH STATEMENT EXECUTE FUNCTION audit_head_guard()
""",
    f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}') ON CONFLICT DO NOTHING",
)

_SQLITE_DDL = (
    f"""
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END
""",
    f"""
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END
""",
    f"""
CREATE TRIGGER audit_events_link BEFORE INSERT ON audit_events
WHEN NEW.seq <> COALESCE((SELECT seq FROM audit_head WHERE id = 1), 0) + 1
  OR NEW.prev_hash <> COALESCE((SELECT hash FROM audit_head WHERE id = 1), '{GENESIS_HASH}')
BEGIN SELECT RAISE(ABORT, 'audit event does not extend the chain head'); END
""",
    """
CREATE TRIGGER audit_events_advance_head AFTER INSERT ON audit_events
BEGIN
    INSERT INTO audit_head (id, seq, hash) VALUES (1, NEW.seq, NEW.hash)
    ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash;
END
""",
)

_SQLITE_HEAD_DDL = (
    """
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN SELECT RAISE(ABORT, 'audit_head: DELETE refused'); END
""",
    """
CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head
WHEN NEW.id <> OLD.id OR NEW.seq <= OLD.seq
  OR NOT EXISTS (SELECT 1 FROM audit_events WHERE seq = NEW.seq AND hash = NEW.hash)
BEGIN SELECT RAISE(ABORT, 'audit_head may only move forward to an existing event'); END
""",
    f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}') ON CONFLICT DO NOTHING",
)


def payload_text_column(bind: Engine | Connection) -> ColumnElement[str]:
    """The payload column read back as its stored text (no JSON decoding)."""
    if bind.dialect.name == "postgresql":
        return cast(audit_events.c.payload, Text)
    return type_coerce(audit_events.c.payload, Text)


def record_columns(bind: Engine | Connection) -> list[ColumnElement[Any]]:
    """The columns ``AuditRecord.from_row`` expects, in its order."""
    c = audit_events.c
    return [
        c.seq,
        c.at,
        c.actor,
        c.run_id,
        c.step_id,
        c.type,
        payload_text_column(bind),
        c.prev_hash,
        c.hash,
    ]


def chain_columns(bind: Engine | Connection) -> list[ColumnElement[Any]]:
    """``record_columns`` for the verifier: on PostgreSQL ``at`` comes back already formatted
    as chain.py hashes it (UTC, microseconds), sparing a datetime round trip per event.
    """
    columns = record_columns(bind)
    if bind.dialect.name == "postgresql":
        utc_at = func.timezone("UTC", audit_events.c.at)
        columns[1] = func.to_char(utc_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
    return columns


# The chain head row: (seq, hash).
SELECT_HEAD = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
# ... locked until the transaction ends, for an appender (SQLite ignores FOR UPDATE: its
# BEGIN IMMEDIATE already holds the write lock)
SELECT_HEAD_FOR_UPDATE = SELECT_HEAD.with_for_update()


def read_head(engine: Engine) -> tuple[int, str]:
    """The chain head as ``(seq, hash)``; ``(0, GENESIS_HASH)`` for an empty log."""
    with engine.connect() as conn:
        row = conn.execute(SELECT_HEAD).first()
    return (0, GENESIS_HASH) if row is None else (int(row.seq), str(row.hash))


def _listen(table: Table, statements: tuple[str, ...], dialect: str) -> None:
    for statement in statements:
        event.listen(table, "after_create", DDL(statement.strip()).execute_if(dialect=dialect))


# audit_head's DDL runs after audit_events': create_all orders tables by name, and the
# events' triggers reference the head (resolved at run time on both engines anyway).
_listen(audit_events, _PG_DDL, "postgresql")
_listen(audit_events, _SQLITE_DDL, "sqlite")
_listen(audit_head, _PG_HEAD_DDL, "postgresql")
_listen(audit_head, _SQLITE_HEAD_DDL, "sqlite")
