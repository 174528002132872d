"""Core tables: runs, steps, approval votes, execution records and exchange halts.

Amounts and parameters live in JSON columns as strings (never floats). Times are UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from treasury.store.metadata import metadata
from treasury.store.types import UTCDateTime  # aware UTC on SQLite too

runs = Table(
    "runs",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("workflow", String(100), nullable=False, index=True),
    Column("workflow_file", Text, nullable=False),
    Column("workflow_snapshot", Text, nullable=False),  # the file's text at start; executed as-is
    Column("workflow_digest", String(64), nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("requested_by", String(100), nullable=False),
    Column("state", String(24), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("schedule", String(100), nullable=True),
    Column("due_at", UTCDateTime, nullable=True),
    Column("policy_digest", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("version", Integer, nullable=False, default=0),
    UniqueConstraint("schedule", "due_at", name="uq_runs_schedule_due"),
)

steps = Table(
    "steps",
    metadata,
    Column("run_id", String(16), nullable=False),
    Column("step_id", String(100), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("kind", String(16), nullable=False),  # "operation" | "approval"
    Column("operation", String(64), nullable=True),
    Column("key_profile", String(100), nullable=True),
    Column("state", String(24), nullable=False),
    Column("params", JSON, nullable=True),  # resolved parameters (strings)
    Column("result", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("digest", String(64), nullable=True),  # approval steps: the approved digest
    Column("expires_at", UTCDateTime, nullable=True),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("version", Integer, nullable=False, default=0),
    # starts of an operation step that have not reached an end yet (reset when one does)
    Column("open_starts", Integer, nullable=False, default=0),
    UniqueConstraint("run_id", "step_id", name="pk_steps"),
    ForeignKeyConstraint(["run_id"], ["runs.id"]),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(16), nullable=False),
    Column("step_id", String(100), nullable=False),
    Column("approver", String(100), nullable=False),
    Column("decision", String(16), nullable=False),  # "approve" | "reject"
    Column("comment", Text, nullable=True),
    Column("digest", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("run_id", "step_id", "approver", name="uq_approval_vote"),
    ForeignKeyConstraint(["run_id"], ["runs.id"]),
)

execution_records = Table(
    "execution_records",
    metadata,
    Column("client_id", String(32), primary_key=True),
    Column("run_id", String(16), nullable=False),
    Column("step_id", String(100), nullable=False),
    Column("leg", Integer, nullable=False, default=0),
    Column("operation", String(64), nullable=False),
    Column("key_profile", String(100), nullable=False),
    Column("params", JSON, nullable=False),  # exactly what is sent, minus timestamp/signature
    Column("params_digest", String(64), nullable=False),
    Column("state", String(24), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("exchange_order_id", String(64), nullable=True),
    Column("response", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("reason", Text, nullable=True),  # plain-language reason for NEEDS_ATTENTION
    # balances noted before a transfer that cannot be looked up by client id (evidence only)
    Column("baseline", JSON, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("unknown_since", UTCDateTime, nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),  # a worker owns the record until then
    Column("lease_owner", String(100), nullable=True),
    Column("version", Integer, nullable=False, default=0),
    UniqueConstraint("run_id", "step_id", "leg", name="uq_exec_run_step_leg"),
    Index("ix_exec_run", "run_id"),
)

exchange_halts = Table(
    "exchange_halts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(120), nullable=False),  # "host" or "key:<api key>"
    Column("kind", String(16), nullable=False),  # "banned" | "suspended"
    Column("since", UTCDateTime, nullable=False),
    Column("until", UTCDateTime, nullable=True),  # None: until a person resumes
    Column("reason", Text, nullable=False),
    Column("resumed_at", UTCDateTime, nullable=True),
    Column("resumed_by", String(100), nullable=True),
    Column("backoff_seconds", Float, nullable=True),
)
