"""The ``decisions`` table: every accepted signed decision, keyed by its nonce.

The primary key on ``nonce`` is the replay guard: a nonce can be accepted once. Each row
keeps the exact document text, the SSHSIG signature and the key's fingerprint, so any
decision can be re-verified later without trusting the other tables.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table, Text

from treasury.store.metadata import metadata
from treasury.store.types import UTCDateTime

decisions = Table(
    "decisions",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("doc_id", String(80), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("person", String(100), nullable=False),
    Column("run_id", String(16), nullable=True),
    Column("step_id", String(100), nullable=True),
    Column("document", Text, nullable=False),
    Column("signature", Text, nullable=False),
    Column("key_fp", String(80), nullable=False),
    Column("registry_digest", String(80), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_decisions_run", "run_id", "step_id", "kind"),
)
