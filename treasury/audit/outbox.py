"""The notification outbox: audit events worth telling someone about, written with the event.

``append_event`` calls :func:`on_append` inside the caller's transaction, so an outbox row
commits or rolls back with the audit event (and the state change) that caused it: no
notification is lost when a process dies after the commit, and none exists for a change that
rolled back. Delivering them is ``treasury.notify``'s business; this module only records.

Each row's ``event_id`` is stable (``audit-<seq>`` for an audit event), so a receiver that
deduplicates on it sees every event once even when a delivery is repeated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Connection, Index, Integer, String, Table, Text

from treasury.store.metadata import metadata
from treasury.store.types import UTCDateTime

if TYPE_CHECKING:
    from treasury.audit.chain import AuditRecord

# The notification events (config/notify.yaml routes them by these names).
APPROVAL_REQUESTED = "approval.requested"
APPROVAL_EXPIRING = "approval.expiring"
APPROVAL_EXPIRED = "approval.expired"
STEP_NEEDS_ATTENTION = "step.needs_attention"
EXCHANGE_RATE_LIMITED = "exchange.rate_limited"
EXCHANGE_BANNED = "exchange.banned"
SCHEDULE_MISSED = "schedule.missed"
AUDIT_VERIFY_FAILED = "audit.verify_failed"

EVENTS = (APPROVAL_REQUESTED, APPROVAL_EXPIRING, APPROVAL_EXPIRED, STEP_NEEDS_ATTENTION, EXCHANGE_RATE_LIMITED,
          EXCHANGE_BANNED, SCHEDULE_MISSED, AUDIT_VERIFY_FAILED)

notify_outbox = Table(
    "notify_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(128), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("run_id", String(16), nullable=True),
    Column("step_id", String(100), nullable=True),
    Column("payload", Text, nullable=False),  # JSON (already redacted when it came from the audit log)
    # every channel the routing picked has it (or none did): the sender skips it from then on
    Column("done_at", UTCDateTime, nullable=True),
    Index("ix_notify_outbox_pending", "done_at", "id"),
)

_Rule = Callable[["AuditRecord"], str | None]

# audit event type -> the notification it makes (or None for this particular event)
_FROM_AUDIT: Mapping[str, _Rule] = {
    "approval.requested": lambda r: APPROVAL_REQUESTED,
    "approval.expired": lambda r: APPROVAL_EXPIRED,
    "step.state": lambda r: STEP_NEEDS_ATTENTION if r.payload.get("to") == "NEEDS_ATTENTION" else None,
    "exchange.rate_limited": lambda r: EXCHANGE_RATE_LIMITED,
    "exchange.banned": lambda r: EXCHANGE_BANNED,
    "schedule.missed": lambda r: SCHEDULE_MISSED,
}


def on_append(conn: Connection, record: AuditRecord) -> None:
    """Write the outbox row for ``record`` if it is a notification event (same transaction)."""
    rule = _FROM_AUDIT.get(record.type)
    kind = rule(record) if rule is not None else None
    if kind is None:
        return
    conn.execute(notify_outbox.insert().values(
        event_id=f"audit-{record.seq}", type=kind, at=record.at, run_id=record.run_id, step_id=record.step_id,
        payload=json.dumps(record.payload, sort_keys=True, separators=(",", ":")),
    ))


def enqueue(conn: Connection, *, event_id: str, type: str, at: datetime, payload: Mapping[str, Any],
            run_id: str | None = None, step_id: str | None = None) -> bool:
    """Write an outbox row for an event that is not an audit event; an ``event_id`` already
    written is left alone (so a check repeated every minute notifies once). Returns whether
    a row was written.

    Raises:
        ValueError: an unknown event ``type``.
    """
    if type not in EVENTS:
        raise ValueError(f"unknown notification event {type!r}")
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(notify_outbox).values(
        event_id=event_id, type=type, at=at, run_id=run_id, step_id=step_id,
        payload=json.dumps(dict(payload), sort_keys=True, separators=(",", ":"), default=str),
    ).on_conflict_do_nothing(index_elements=["event_id"]).returning(notify_outbox.c.id)
    return conn.execute(stmt).first() is not None  # (rowcount is not reliable here on psycopg)
