"""Velocity caps hold for whole runs racing each other, not only for the reservation call."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine

RUNS = 10
PAYOUT = """\
name: quick-payout
steps:
  - id: pay
    op: withdraw
    key: withdrawals
    params: {coin: USDT, chainType: ETH, address: "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90", quantity: "40000"}
"""


@pytest.mark.postgres
def test_ten_payouts_at_a_fifth_of_the_daily_cap_five_go_out_five_send_nothing(
    make_runtime: Any, pg_engine: Engine
) -> None:
    # the shipped policy: 200,000 USDT of withdrawals per rolling 24 h, 50,000 per withdrawal
    runtimes = [make_runtime(engine=pg_engine) for _ in range(RUNS)]  # one "process" per run
    start = threading.Barrier(RUNS)

    def one(i: int) -> str:
        rt, _ = runtimes[i]
        loaded = rt.service.load_and_check(PAYOUT, source="quick-payout.yaml")
        start.wait(timeout=30)
        return str(rt.service.start(loaded, {}, requested_by="erin"))

    with ThreadPoolExecutor(max_workers=RUNS) as pool:
        run_ids = list(pool.map(one, range(RUNS)))
    rt, _ = runtimes[0]
    states = [rt.service.state_of(r) for r in run_ids]
    assert states.count("SUCCEEDED") == 5 and states.count("FAILED") == 5, states
    sim = rt.simulator
    withdrawals = sim.state()["withdrawals"]
    assert len(withdrawals) == 5  # exactly the allowed ones reached the exchange, once each
    sent = sum(len([r for r in wire.writes() if r.url.path == "/api/v1/account/withdraw"]) for _, wire in runtimes)
    assert sent == 5
    for run_id, state in zip(run_ids, states, strict=True):
        if state == "FAILED":
            # refused at send (the step's error) or, when the others' reservations were already
            # there when it started, at start (the run's error; its steps were never started)
            shown = rt.service.show(run_id)
            error = shown["steps"][0]["error"] or shown.get("error") or ""
            assert "max_per_window" in error, error
