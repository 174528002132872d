"""The ``web_sessions`` table: who is signed in to the web console, server side.

A session is a row, so an idle or absolute time-out and a sign-out end it for good: the
cookie only carries a random token, and the table keeps the token's SHA-256 (someone who
reads the database cannot use a row to sign in as its person).
"""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table

from treasury.store.metadata import metadata
from treasury.store.types import UTCDateTime

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("person", String(100), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("end_reason", String(32), nullable=True),
    Index("ix_web_sessions_person", "person"),
)
