"""A stored step result edited in the database never decides what a later step sends.

The second step's quantity comes from the first step's result (a balance read). Editing that
result between the two steps parks the second step with nothing sent, and ``audit verify``
names the run.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from treasury.audit import query_events
from treasury.runs.reverify import verify_decisions
from treasury.store.tables import steps

from .conftest import HeldDispatcher

TRANSFER = "/api/v1/account/assetTransfer"
SWEEP_ALL = """\
name: sweep-all
description: Move the whole USDT balance of trading to custody
steps:
  - id: check-balance
    op: balances
    key: ops-read
    params: {accountId: "1001"}
  - id: sweep
    op: asset_transfer
    key: transfers
    params:
      fromAccountId: "1001"
      toAccountId: "1002"
      coin: USDT
      quantity: "${{ steps.check-balance.result.balances.2.free }}"
"""


def _run_first_step(rt: Any, dispatcher: HeldDispatcher) -> str:
    run_id = str(rt.service.start(rt.service.load_and_check(SWEEP_ALL, source="sweep-all.yaml"), {},
                                  requested_by="erin"))
    dispatcher.queue.clear()
    rt.service.execute_step(run_id, "check-balance")
    assert [s for _, s in dispatcher.queue] == ["sweep"]
    return run_id


def _transfers(wire: Any) -> list[Any]:
    return [r for r in wire.writes() if r.url.path == TRANSFER]


def _runtime(make_runtime: Any, db: str, request: pytest.FixtureRequest) -> tuple[Any, Any, HeldDispatcher]:
    engine = request.getfixturevalue("pg_engine") if db == "postgres" else None
    dispatcher = HeldDispatcher()
    rt, wire = make_runtime(engine=engine, dispatcher=dispatcher)
    return rt, wire, dispatcher


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_untouched_result_is_sent(make_runtime: Any, db: str, request: pytest.FixtureRequest) -> None:
    rt, wire, dispatcher = _runtime(make_runtime, db, request)
    run_id = _run_first_step(rt, dispatcher)
    dispatcher.release(rt.service)
    assert rt.service.state_of(run_id) == "SUCCEEDED"
    (sent,) = _transfers(wire)
    assert "quantity=250000" in sent.url.query.decode() + sent.content.decode()
    success = [e for e in query_events(rt.engine, run_id=run_id, type="step.state")
               if e.step_id == "check-balance" and e.payload["to"] == "SUCCEEDED"]
    assert success[0].payload["result_digest"].startswith("sha256:")
    assert verify_decisions(rt.engine).problems == []


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_edited_result_parks_the_step_and_sends_nothing(make_runtime: Any, db: str,
                                                         request: pytest.FixtureRequest) -> None:
    rt, wire, dispatcher = _runtime(make_runtime, db, request)
    run_id = _run_first_step(rt, dispatcher)
    where = (steps.c.run_id == run_id, steps.c.step_id == "check-balance")
    with rt.engine.begin() as conn:
        result = conn.execute(select(steps.c.result).where(*where)).scalar_one()
        result["balances"][2]["free"] = "999999"
        conn.execute(update(steps).where(*where).values(result=result))
    dispatcher.release(rt.service)
    assert _transfers(wire) == []
    sweep = next(s for s in rt.service.show(run_id)["steps"] if s["id"] == "sweep")
    assert sweep["state"] == "NEEDS_ATTENTION"
    assert sweep["error"].startswith("not sent: the stored result of step 'check-balance' is not the result "
                                     "recorded in the audit trail")
    assert rt.service.state_of(run_id) == "NEEDS_ATTENTION"
    (changed,) = [e for e in query_events(rt.engine, run_id=run_id) if e.type == "step.result_changed"]
    assert changed.payload["steps"] == ["check-balance"]
    assert verify_decisions(rt.engine).problems == [
        f"run {run_id}: the stored result of step 'check-balance' is not the result recorded in the audit "
        "trail when it succeeded"]


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_stored_parameters_written_by_hand_are_never_sent(make_runtime: Any, db: str,
                                                          request: pytest.FixtureRequest) -> None:
    # params are stored at a step's first start and reused by later starts: writing them
    # before the first (or between two) must not choose what is sent
    rt, wire, dispatcher = _runtime(make_runtime, db, request)
    run_id = _run_first_step(rt, dispatcher)
    forged = {"fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT", "quantity": "999"}
    with rt.engine.begin() as conn:
        conn.execute(update(steps).where(steps.c.run_id == run_id, steps.c.step_id == "sweep")
                     .values(params=forged))
    dispatcher.release(rt.service)
    assert _transfers(wire) == []
    sweep = next(s for s in rt.service.show(run_id)["steps"] if s["id"] == "sweep")
    assert sweep["state"] == "NEEDS_ATTENTION"
    assert sweep["error"] == ("not sent: the stored parameters of step 'sweep' are not what its templates "
                              "resolve to from the signed inputs and the audited results (edited in the database?)")
    assert any(e.type == "step.params_changed" for e in query_events(rt.engine, run_id=run_id))
