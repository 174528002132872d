"""Operations: ``marks`` (the last audit verify and its outcome, for metrics and alerts), and the
notification outbox (``notify_outbox``, written with its audit event) with one delivery row per
(event, channel) (``notify_deliveries``).

Revision ID: 0004_observe_notify
Revises: 0003_decisions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_observe_notify"
down_revision = "0003_decisions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "marks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "notify_deliveries",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", "channel", name="pk_notify_deliveries"),
    )
    op.create_index("ix_notify_deliveries_due", "notify_deliveries", ["delivered_at", "next_attempt_at"],
                    unique=False)
    op.create_table(
        "notify_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(length=16), nullable=True),
        sa.Column("step_id", sa.String(length=100), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_notify_outbox_pending", "notify_outbox", ["done_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_notify_outbox_pending", table_name="notify_outbox")
    op.drop_table("notify_outbox")
    op.drop_index("ix_notify_deliveries_due", table_name="notify_deliveries")
    op.drop_table("notify_deliveries")
    op.drop_table("marks")
