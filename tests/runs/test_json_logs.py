"""A step's log lines carry its run, step, client id and operation; the approvers' CLI its person."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.observe.jsonlog import json_log
from treasury.observe import context

from .conftest import PAYOUT, load


def test_every_line_a_step_writes_names_its_run_step_operation_and_client_id(
    make_runtime: Callable[..., tuple[Any, Any]],
) -> None:
    rt, _ = make_runtime()
    with json_log() as captured:
        run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
        rt.service.approve(run_id, "alice", comment="ok")
        rt.service.approve(run_id, "bob")
    assert rt.service.state_of(run_id) == "SUCCEEDED"
    withdraw = [ln for ln in captured.lines()
                if ln["logger"] == "treasury.exchange" and "/api/v1/account/withdraw " in ln["message"]]
    assert withdraw, captured.text[-2000:]
    pay = next(s for s in rt.service.show(run_id)["steps"] if s["id"] == "pay")
    assert pay["client_order_id"]
    for line in withdraw:
        assert line["run_id"] == run_id and line["step_id"] == "pay" and line["operation"] == "withdraw"
        assert line["client_order_id"] == pay["client_order_id"]
    assert context.current() == {}  # nothing the step bound outlives it
