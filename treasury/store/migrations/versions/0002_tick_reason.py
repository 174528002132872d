"""Schedule ticks say why an instant did not fire on time (``schedule_ticks.reason``): the
workflow file's problem while it was broken, or that no scheduler was running.

Revision ID: 0002_tick_reason
Revises: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_tick_reason"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schedule_ticks") as batch:
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("schedule_ticks") as batch:
        batch.drop_column("reason")
