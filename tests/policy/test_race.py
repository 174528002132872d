"""Velocity caps hold under concurrency: runs that each fit but together exceed the cap cannot all pass."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select

from tests.policy.helpers import HK_TUESDAY_10, usdt_withdraw
from treasury.policy import Policy, denials, reserve
from treasury.policy.tables import policy_reservations

RUNS = 10


def _race(engine: Engine, policy: Policy, amount: str) -> list[bool]:
    """RUNS threads, each on its own connection, reserve at the same moment; True = allowed."""
    start = threading.Barrier(RUNS)

    def one(i: int) -> bool:
        with engine.connect() as conn:
            start.wait(timeout=30)
            with conn.begin():
                verdicts = reserve(conn, policy, run_id=f"run{i}", step_id="pay", op="withdraw",
                                   params=usdt_withdraw(amount), at=HK_TUESDAY_10)
        return not denials(verdicts)

    with ThreadPoolExecutor(max_workers=RUNS) as pool:
        return list(pool.map(one, range(RUNS)))


def _reserved_total(engine: Engine) -> Decimal:
    with engine.connect() as conn:
        amounts = conn.execute(select(policy_reservations.c.amount)).scalars().all()
    return sum((Decimal(a) for a in amounts), Decimal(0))


@pytest.mark.postgres
def test_ten_concurrent_runs_at_a_fifth_of_the_cap_on_postgres(pg_engine: Engine, shipped: Policy) -> None:
    # shipped cap: 200000 USDT per 24h; each run asks for 20% of it
    outcomes = _race(pg_engine, shipped, "40000")
    assert outcomes.count(True) == 5
    assert outcomes.count(False) == 5
    assert _reserved_total(pg_engine) == Decimal("200000")


def test_ten_concurrent_runs_at_a_fifth_of_the_cap_on_sqlite(sqlite_engine: Engine, shipped: Policy) -> None:
    outcomes = _race(sqlite_engine, shipped, "40000")
    assert outcomes.count(True) == 5
    assert _reserved_total(sqlite_engine) == Decimal("200000")
