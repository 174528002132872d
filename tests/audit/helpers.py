"""Helpers for the audit tests: seeding a chain, and tampering with it the way an attacker would."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, text

from treasury.audit import AuditRecord, append_event
from treasury.audit.canonical import format_at
from treasury.audit.chain import body_digest, body_text, link_hash
from treasury.audit.tables import record_columns
from treasury.clock import ManualClock
from treasury.store.tables import approvals, execution_records, runs, steps


def seed(
    engine: Engine,
    n: int,
    *,
    clock: ManualClock | None = None,
    runs_: Sequence[str | None] = ("r1", "r2", "r3"),
    actor: str = "alice",
    type_: str = "step.state",
) -> list[AuditRecord]:
    """Append ``n`` events, each in its own transaction, cycling through ``runs_``."""
    clock = clock or ManualClock()
    out = []
    for i in range(n):
        with engine.begin() as conn:
            out.append(
                append_event(
                    conn,
                    type=type_,
                    actor=actor,
                    at=clock.now(),
                    run_id=runs_[i % len(runs_)],
                    step_id="pay",
                    payload={"i": i, "state": "RUNNING"},
                )
            )
        clock.advance(1)
    return out


def disable_guards(conn: Connection) -> None:
    """Switch the append-only triggers off, as an attacker with owner rights could."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        conn.execute(text("ALTER TABLE audit_head DISABLE TRIGGER USER"))
    else:
        names = conn.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ('audit_events', 'audit_head')")
        ).scalars()
        for name in list(names):
            conn.execute(text(f'DROP TRIGGER "{name}"'))


def raw_rows(engine: Engine) -> list[tuple[Any, ...]]:
    """Every stored row as (seq, at, actor, run_id, step_id, type, payload_text, prev_hash, hash)."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(*record_columns(conn)).order_by(text("seq")))]


def all_text(engine: Engine) -> str:
    """Everything stored in the audit tables, as one string (for leak checks)."""
    return "\n".join(repr(r) for r in raw_rows(engine))


def rehash_from(conn: Connection, start: int) -> str:
    """Recompute hash and prev_hash of every row from ``start`` on and move the head: a full rewrite.

    Returns the new head hash. The guards must be disabled first.
    """
    rows = conn.execute(select(*record_columns(conn)).order_by(text("seq"))).all()
    prev = None
    for seq, at, actor, run_id, step_id, type_, payload, _prev_hash, hash_ in rows:
        if seq < start:
            prev = hash_
            continue
        assert prev is not None
        digest = body_digest(
            body_text(
                seq=seq, at=format_at(at), actor=actor, run_id=run_id, step_id=step_id, type=type_, payload_json=payload
            )
        )
        new_hash = link_hash(prev, digest)
        conn.execute(
            text("UPDATE audit_events SET prev_hash = :p, hash = :h WHERE seq = :s"),
            {"p": prev, "h": new_hash, "s": seq},
        )
        prev = new_hash
    conn.execute(text("UPDATE audit_head SET seq = :s, hash = :h WHERE id = 1"), {"s": rows[-1][0], "h": prev})
    assert prev is not None
    return prev


def make_run(conn: Connection, run_id: str, *, workflow: str = "vendor-payout", at: datetime | None = None) -> None:
    """Insert a run with one approval step, one operation step, a vote and an execution record."""
    at = at or datetime(2026, 1, 1, tzinfo=UTC)
    conn.execute(
        runs.insert().values(
            id=run_id,
            workflow=workflow,
            workflow_file=f"workflows/{workflow}.yaml",
            workflow_snapshot="name: vendor-payout\n",
            workflow_digest="d" * 64,
            inputs={"amount": "5000.00", "address": "0xabc"},
            requested_by="carol",
            state="SUCCEEDED",
            created_at=at,
            updated_at=at,
            version=0,
        )
    )
    conn.execute(
        steps.insert().values(
            run_id=run_id, step_id="approve", idx=0, kind="approval", state="SUCCEEDED", updated_at=at, version=0
        )
    )
    conn.execute(
        steps.insert().values(
            run_id=run_id,
            step_id="pay",
            idx=1,
            kind="operation",
            operation="withdraw",
            key_profile="withdrawals",
            state="SUCCEEDED",
            params={"coin": "USDT", "quantity": "5000.00"},
            result={"id": "W1"},
            updated_at=at,
            version=0,
        )
    )
    conn.execute(
        approvals.insert().values(
            run_id=run_id, step_id="approve", approver="alice", decision="approve", digest="a" * 64, created_at=at
        )
    )
    conn.execute(
        execution_records.insert().values(
            client_id=f"{run_id}-pay-0",
            run_id=run_id,
            step_id="pay",
            leg=0,
            operation="withdraw",
            key_profile="withdrawals",
            params={"coin": "USDT", "quantity": "5000.00", "clientOrderId": f"{run_id}-pay-0"},
            params_digest="b" * 64,
            state="SUCCEEDED",
            attempts=2,
            response={"success": True, "id": "W1"},
            created_at=at,
            updated_at=at,
            version=0,
        )
    )
