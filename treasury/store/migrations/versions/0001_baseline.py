"""The baseline: the schema as it stood when migrations began (runs, steps, approvals,
execution records, exchange halts, policy reservations, schedules and the audit chain with
its triggers).

A database created before migrations existed holds exactly this; ``treasury db upgrade``
records it at this revision and applies what follows.

Revision ID: 0001_baseline
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

# The audit tables' triggers as they were at this revision (frozen copies: a later change to
# treasury/audit/tables.py needs a revision of its own).
_GENESIS = "0000000000000000000000000000000000000000000000000000000000000000"

_PG_DDL = (
    """
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = 'audit_events is append-only: ' || TG_OP || ' refused',
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
    "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '" + _GENESIS + "') ON CONFLICT DO NOTHING",
)

_SQLITE_DDL = (
    """
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END
""",
    """
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END
""",
    f"""
CREATE TRIGGER audit_events_link BEFORE INSERT ON audit_events
WHEN NEW.seq <> COALESCE((SELECT seq FROM audit_head WHERE id = 1), 0) + 1
  OR NEW.prev_hash <> COALESCE((SELECT hash FROM audit_head WHERE id = 1), '{_GENESIS}')
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
    "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '" + _GENESIS + "') ON CONFLICT DO NOTHING",
)


def upgrade() -> None:
    op.create_table('audit_events',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('run_id', sa.String(length=16), nullable=True),
    sa.Column('step_id', sa.String(length=100), nullable=True),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sa.CHAR(length=64), nullable=False),
    sa.Column('hash', sa.CHAR(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    op.create_index('ix_audit_events_run_seq', 'audit_events', ['run_id', 'seq'], unique=False)
    op.create_index('ix_audit_events_type_seq', 'audit_events', ['type', 'seq'], unique=False)
    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.CHAR(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('exchange_halts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('scope', sa.String(length=120), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('resumed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resumed_by', sa.String(length=100), nullable=True),
    sa.Column('backoff_seconds', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('execution_records',
    sa.Column('client_id', sa.String(length=32), nullable=False),
    sa.Column('run_id', sa.String(length=16), nullable=False),
    sa.Column('step_id', sa.String(length=100), nullable=False),
    sa.Column('leg', sa.Integer(), nullable=False),
    sa.Column('operation', sa.String(length=64), nullable=False),
    sa.Column('key_profile', sa.String(length=100), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('params_digest', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('exchange_order_id', sa.String(length=64), nullable=True),
    sa.Column('response', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('baseline', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('unknown_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_owner', sa.String(length=100), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('client_id'),
    sa.UniqueConstraint('run_id', 'step_id', 'leg', name='uq_exec_run_step_leg')
    )
    op.create_index('ix_exec_run', 'execution_records', ['run_id'], unique=False)
    op.create_index(op.f('ix_execution_records_state'), 'execution_records', ['state'], unique=False)
    op.create_table('policy_reservations',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=16), nullable=False),
    sa.Column('step_id', sa.String(length=100), nullable=False),
    sa.Column('leg', sa.Integer(), nullable=False),
    sa.Column('op', sa.String(length=64), nullable=False),
    sa.Column('asset', sa.String(length=64), nullable=False),
    sa.Column('amount', sa.String(length=64), nullable=False),
    sa.Column('account', sa.String(length=64), nullable=True),
    sa.Column('destination', sa.String(length=256), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('policy_digest', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'step_id', 'leg', name='uq_policy_reservation_step_leg')
    )
    op.create_index('ix_policy_reservations_window', 'policy_reservations', ['op', 'asset', 'at'], unique=False)
    op.create_table('runs',
    sa.Column('id', sa.String(length=16), nullable=False),
    sa.Column('workflow', sa.String(length=100), nullable=False),
    sa.Column('workflow_file', sa.Text(), nullable=False),
    sa.Column('workflow_snapshot', sa.Text(), nullable=False),
    sa.Column('workflow_digest', sa.String(length=64), nullable=False),
    sa.Column('inputs', sa.JSON(), nullable=False),
    sa.Column('requested_by', sa.String(length=100), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('schedule', sa.String(length=100), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('policy_digest', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('schedule', 'due_at', name='uq_runs_schedule_due')
    )
    op.create_index(op.f('ix_runs_state'), 'runs', ['state'], unique=False)
    op.create_index(op.f('ix_runs_workflow'), 'runs', ['workflow'], unique=False)
    op.create_table('schedule_invalid',
    sa.Column('file', sa.String(length=1024), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('file')
    )
    op.create_table('schedule_state',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('workflow_file', sa.Text(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('cron', sa.String(length=200), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('paused_by', sa.String(length=100), nullable=True),
    sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('effective_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('removed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('schedule_ticks',
    sa.Column('schedule', sa.String(length=100), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('run_id', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('schedule', 'due_at', name='pk_schedule_ticks')
    )
    op.create_table('approvals',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=16), nullable=False),
    sa.Column('step_id', sa.String(length=100), nullable=False),
    sa.Column('approver', sa.String(length=100), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'step_id', 'approver', name='uq_approval_vote')
    )
    op.create_table('steps',
    sa.Column('run_id', sa.String(length=16), nullable=False),
    sa.Column('step_id', sa.String(length=100), nullable=False),
    sa.Column('idx', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('operation', sa.String(length=64), nullable=True),
    sa.Column('key_profile', sa.String(length=100), nullable=True),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('params', sa.JSON(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('digest', sa.String(length=64), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('open_starts', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.UniqueConstraint('run_id', 'step_id', name='pk_steps')
    )
    dialect = op.get_bind().dialect.name
    statements: tuple[str, ...]
    if dialect == "postgresql":
        statements = _PG_DDL + _PG_HEAD_DDL
    elif dialect == "sqlite":
        statements = _SQLITE_DDL + _SQLITE_HEAD_DDL
    else:
        raise RuntimeError(f"treasury supports SQLite and PostgreSQL, not {dialect}")
    for statement in statements:
        op.execute(statement.strip())


def downgrade() -> None:
    raise RuntimeError("the baseline is not downgraded: it would drop the audit history")
