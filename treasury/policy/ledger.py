"""The reservation ledger: totals in a rolling window, locks, reserve/release/confirm rows.

Concurrency: two runs that each fit under a cap but together exceed it must not both
pass. ``lock`` serializes reservations per (op, asset) inside the caller's transaction:
on PostgreSQL with ``pg_advisory_xact_lock`` (released at commit or rollback), on SQLite
by the ``BEGIN IMMEDIATE`` every transaction already starts with. A reservation then
reads the committed and reserved totals, decides, and inserts before the lock is released.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Connection, and_, delete, insert, select, text, update

from treasury.errors import ConfigError
from treasury.models import format_amount
from treasury.policy.tables import policy_reservations as res
from treasury.store.db import is_postgres

RESERVED = "reserved"
COMMITTED = "committed"
RELEASED = "released"
COUNTING = (RESERVED, COMMITTED)
_LOCK_NAMESPACE = 72_531  # first key of the two-key advisory lock: "treasury policy"


def utc(at: datetime) -> datetime:
    """``at`` in UTC. Naive datetimes are refused: a window must know its instant.

    Raises:
        ValueError: ``at`` is naive.
    """
    if at.tzinfo is None:
        raise ValueError("at must be a timezone-aware datetime")
    return at.astimezone(UTC)


def lock(conn: Connection, keys: Iterable[tuple[str, str]]) -> None:
    """Serialize reservations for each (op, asset) until the caller's transaction ends.

    Keys are taken in sorted order so two steps locking the same pair cannot deadlock.

    Raises:
        ConfigError: PostgreSQL runs the transaction at REPEATABLE READ, whose snapshot
            predates the lock and would let two reservations read the same totals.
    """
    if not is_postgres(conn):
        return  # SQLite: BEGIN IMMEDIATE already holds the database's only write lock
    level = conn.execute(text("SELECT current_setting('transaction_isolation')")).scalar_one()
    if level == "repeatable read":
        raise ConfigError(
            "policy reservations need READ COMMITTED (or SERIALIZABLE) transactions, not REPEATABLE READ",
            source="database",
        )
    for op, asset in sorted(set(keys)):
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:ns, hashtext(:key))"),
            {"ns": _LOCK_NAMESPACE, "key": f"{op}:{asset}"},
        )


def used(
    conn: Connection,
    *,
    op: str,
    asset: str,
    since: datetime,
    account: str | None = None,
    destinations: set[str] | None = None,
) -> Decimal:
    """Sum of reserved and committed amounts for (op, asset) with ``at`` after ``since``.

    ``account`` and ``destinations`` narrow the sum for limits scoped to them. Rows dated
    after now (a worker with a fast clock) count too: the window is never made shorter.
    """
    conditions = [
        res.c.op == op,
        res.c.asset == asset,
        res.c.status.in_(COUNTING),
        res.c.at > utc(since),
    ]
    if account is not None:
        conditions.append(res.c.account == account)
    if destinations is not None:
        conditions.append(res.c.destination.in_(sorted(destinations)))
    rows = conn.execute(select(res.c.amount).where(and_(*conditions))).scalars()
    return sum((Decimal(a) for a in rows), Decimal(0))


@dataclass(frozen=True)
class Reservation:
    leg: int
    op: str
    asset: str
    amount: Decimal
    account: str | None
    destination: str | None
    status: str


def step_reservations(conn: Connection, *, run_id: str, step_id: str) -> list[Reservation]:
    """The reservation rows of one step, by leg."""
    rows = conn.execute(
        select(res).where(res.c.run_id == run_id, res.c.step_id == step_id).order_by(res.c.leg)
    ).mappings()
    return [
        Reservation(r["leg"], r["op"], r["asset"], Decimal(r["amount"]), r["account"], r["destination"],
                    r["status"])
        for r in rows
    ]


def insert_reservations(
    conn: Connection, *, run_id: str, step_id: str, at: datetime, policy_digest: str,
    rows: Sequence[Reservation],
) -> None:
    """Insert reserved rows, first dropping released ones of the same step (it is being retried)."""
    when = utc(at)
    conn.execute(delete(res).where(
        res.c.run_id == run_id, res.c.step_id == step_id, res.c.status == RELEASED
    ))
    if not rows:
        return
    conn.execute(insert(res), [
        {
            "run_id": run_id, "step_id": step_id, "leg": r.leg, "op": r.op, "asset": r.asset,
            "amount": format_amount(r.amount), "account": r.account, "destination": r.destination,
            "status": RESERVED, "at": when, "updated_at": when, "policy_digest": policy_digest,
        }
        for r in rows
    ])


def release(conn: Connection, *, run_id: str, step_id: str, at: datetime) -> None:
    """The step failed definitively: its reserved amounts stop counting.

    Committed rows stay committed (money that moved keeps counting); idempotent.
    """
    conn.execute(
        update(res)
        .where(res.c.run_id == run_id, res.c.step_id == step_id, res.c.status == RESERVED)
        .values(status=RELEASED, updated_at=utc(at))
    )


def confirm(conn: Connection, *, run_id: str, step_id: str, at: datetime) -> None:
    """The step succeeded: its amounts are committed and keep counting in the window.

    A released row is committed too: if the money moved after all, it must count. Idempotent.
    """
    conn.execute(
        update(res)
        .where(res.c.run_id == run_id, res.c.step_id == step_id, res.c.status.in_((RESERVED, RELEASED)))
        .values(status=COMMITTED, updated_at=utc(at))
    )

