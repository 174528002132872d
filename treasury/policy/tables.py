"""Policy reservations: the amounts that count against velocity caps.

One row per measured movement of a step (``leg`` > 0 only for batch orders spanning several
symbols). ``status`` is ``reserved`` before sending, ``committed`` after success and
``released`` after a definite failure; reserved and committed rows count in a window.
Amounts are plain decimal strings, summed in Python as ``Decimal`` (SQLite has no exact
numeric type). There is deliberately no foreign key to ``runs``: the ledger stands alone.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, String, Table, UniqueConstraint

from treasury.store.metadata import metadata

policy_reservations = Table(
    "policy_reservations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(16), nullable=False),
    Column("step_id", String(100), nullable=False),
    Column("leg", Integer, nullable=False, default=0),
    Column("op", String(64), nullable=False),
    Column("asset", String(64), nullable=False),
    Column("amount", String(64), nullable=False),
    Column("account", String(64), nullable=True),
    Column("destination", String(256), nullable=True),
    Column("status", String(16), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),  # UTC; the window counts from here
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("policy_digest", String(64), nullable=False),
    UniqueConstraint("run_id", "step_id", "leg", name="uq_policy_reservation_step_leg"),
    Index("ix_policy_reservations_window", "op", "asset", "at"),
)
