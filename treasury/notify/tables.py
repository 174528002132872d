"""Per-channel delivery state of each outbox event (see ``treasury.audit.outbox``)."""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, PrimaryKeyConstraint, String, Table, Text

from treasury.store.metadata import metadata
from treasury.store.types import UTCDateTime

notify_deliveries = Table(
    "notify_deliveries",
    metadata,
    Column("event_id", String(128), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),  # not before: the backoff between passes
    Column("claimed_by", String(100), nullable=True),
    Column("claimed_until", UTCDateTime, nullable=True),  # a sender's lease while it sends
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    PrimaryKeyConstraint("event_id", "channel", name="pk_notify_deliveries"),
    Index("ix_notify_deliveries_due", "delivered_at", "next_attempt_at"),
)
