"""Passkeys: enrolled WebAuthn credentials (``passkeys``), one-time enrolment invitations
(``invites``, the token stored only as a hash), and room in ``decisions.key_fp`` for a
credential id (a passkey decision's key).

Revision ID: 0005_passkeys
Revises: 0004_observe_notify
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_passkeys"
down_revision = "0004_observe_notify"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "passkeys",
        sa.Column("credential_id", sa.String(length=1400), nullable=False),
        sa.Column("person", sa.String(length=100), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("rp_id", sa.String(length=255), nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("enrolled_by", sa.String(length=100), nullable=False),
        sa.Column("invite_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("credential_id"),
    )
    op.create_index("ix_passkeys_person", "passkeys", ["person"], unique=False)
    op.create_table(
        "invites",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=80), nullable=False),
        sa.Column("person", sa.String(length=100), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("decision", sa.String(length=80), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("decisions") as batch:
        batch.alter_column("key_fp", existing_type=sa.String(length=80), type_=sa.String(length=1400),
                           existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.alter_column("key_fp", existing_type=sa.String(length=1400), type_=sa.String(length=80),
                           existing_nullable=False)
    op.drop_table("invites")
    op.drop_index("ix_passkeys_person", table_name="passkeys")
    op.drop_table("passkeys")
