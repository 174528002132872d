"""What the metrics read that no other table records: when a check last ran and how it went.

``marks`` holds one row per named check (``audit.verify``), overwritten by each run, so
processes that never ran the check (a worker's metrics port) can still report it.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, String, Table, Text

from treasury.store.metadata import metadata
from treasury.store.types import UTCDateTime

AUDIT_VERIFY = "audit.verify"

marks = Table(
    "marks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("detail", Text, nullable=True),
)
