"""Signed decisions: every human decision's document, signature and key (``decisions``), one
row per nonce, so a nonce is never accepted twice and ``audit verify`` can re-check each one.

Revision ID: 0003_decisions
Revises: 0002_tick_reason
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_decisions"
down_revision = "0002_tick_reason"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("doc_id", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("person", sa.String(length=100), nullable=False),
        sa.Column("run_id", sa.String(length=16), nullable=True),
        sa.Column("step_id", sa.String(length=100), nullable=True),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("key_fp", sa.String(length=80), nullable=False),
        sa.Column("registry_digest", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_index("ix_decisions_run", "decisions", ["run_id", "step_id", "kind"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_decisions_run", table_name="decisions")
    op.drop_table("decisions")
