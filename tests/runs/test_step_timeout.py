"""A workflow step's ``timeout:`` reaches execution, counted from the step's first start."""

from __future__ import annotations

from typing import Any

TIMED = """\
name: timed-move
steps:
  - id: move
    op: asset_transfer
    key: transfers
    timeout: 1m
    params: {fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "5"}
"""


def test_a_step_still_unsent_after_its_timeout_fails_and_nothing_is_sent(make_runtime: Any) -> None:
    rt, wire = make_runtime()
    rt.simulator.set_faults([{"method": "POST", "path": "/api/v1/account/assetTransfer", "mode": "error_before",
                              "status": 429, "count": 1}])
    loaded = rt.service.load_and_check(TIMED, source="timed-move.yaml")
    run_id = rt.service.start(loaded, {}, requested_by="erin")
    # the 429 suspends the key for 60 s; waiting it out uses up the step's minute
    shown = rt.service.show(run_id)
    assert shown["state"] == "FAILED"
    move = shown["steps"][0]
    assert move["state"] == "FAILED" and "timeout (1m) passed before it was sent" in (move["error"] or "")
    assert (move["finished_at"] - move["started_at"]).total_seconds() == 60
    assert len([r for r in wire.writes() if r.url.path == "/api/v1/account/assetTransfer"]) == 1
    assert rt.simulator.state()["transfers"] == []


def test_a_timeout_longer_than_the_wait_lets_the_step_go_through(make_runtime: Any) -> None:
    rt, _ = make_runtime()
    rt.simulator.set_faults([{"method": "POST", "path": "/api/v1/account/assetTransfer", "mode": "error_before",
                              "status": 429, "count": 1}])
    loaded = rt.service.load_and_check(TIMED.replace("timeout: 1m", "timeout: 5m"), source="timed-move.yaml")
    run_id = rt.service.start(loaded, {}, requested_by="erin")
    assert rt.service.state_of(run_id) == "SUCCEEDED"
    assert len(rt.simulator.state()["transfers"]) == 1
