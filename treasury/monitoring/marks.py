"""Record and read ``marks``: the last run of a named check (see ``observe.tables``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from treasury.audit.outbox import AUDIT_VERIFY_FAILED, enqueue
from treasury.observe.tables import AUDIT_VERIFY, marks


def set_mark(conn: Connection, name: str, *, at: datetime, ok: bool, detail: str | None = None) -> None:
    """Record that ``name`` ran at ``at`` with outcome ``ok`` (replaces the previous row)."""
    values: dict[str, Any] = {"at": at, "ok": ok, "detail": detail}
    if conn.execute(update(marks).where(marks.c.name == name).values(**values)).rowcount == 0:
        conn.execute(marks.insert().values(name=name, **values))


def get_mark(conn: Connection, name: str) -> Any:
    """The row for ``name``, or None when it never ran."""
    return conn.execute(select(marks).where(marks.c.name == name)).first()


def audit_verified(engine: Engine, result: Any, *, at: datetime) -> None:
    """Record an ``audit verify`` outcome (a ``VerifyResult``) as the ``audit.verify`` mark, and
    a failed one in the notification outbox (``audit.verify_failed``).

    Best effort: a database that cannot take the mark (read-only, a broken schema) does not
    change what verify reports.
    """
    detail = None if result.ok else f"first bad seq {result.first_bad_seq}: {result.reason}"
    try:
        with engine.begin() as conn:
            set_mark(conn, AUDIT_VERIFY, at=at, ok=bool(result.ok), detail=detail)
            if not result.ok:
                # one notification per break: verifying the same broken chain again repeats the id
                enqueue(conn, event_id=f"audit-verify-failed-{result.first_bad_seq}-{result.head_hash[:16]}",
                        type=AUDIT_VERIFY_FAILED, at=at,
                        payload={"first_bad_seq": result.first_bad_seq, "reason": result.reason,
                                 "verified_up_to": result.head_seq})
    except Exception as exc:
        import logging

        logging.getLogger("treasury.audit").warning("verify outcome not recorded: %s", type(exc).__name__)
