"""Approvals: four eyes, quorum, expiry, and the digest that binds exactly what is sent."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from treasury.audit import query_events
from treasury.errors import ApprovalRefused
from treasury.models import RunState
from treasury.store.tables import approvals, runs, steps

from .conftest import PAYOUT, HeldDispatcher, load


def _approved_but_not_sent(make_runtime: Any, engine: Any = None) -> tuple[Any, Any, HeldDispatcher, str]:
    held = HeldDispatcher()
    rt, wire = make_runtime(dispatcher=held, engine=engine)
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    assert rt.service.state_of(run_id) == RunState.AWAITING_APPROVAL
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    assert list(held.queue) == [(run_id, "pay")]
    assert wire.writes() == []
    return rt, wire, held, run_id


def test_quorum_of_two_distinct_approvers_sends_exactly_once(make_runtime: Any) -> None:
    rt, wire, held, run_id = _approved_but_not_sent(make_runtime)
    held.release(rt.service)
    shown = rt.service.show(run_id)
    assert shown["state"] == "SUCCEEDED"
    pay = next(s for s in shown["steps"] if s["id"] == "pay")
    assert pay["client_order_id"].startswith("T" + run_id)
    assert pay["result"]["orderId"].startswith("W")
    sent = [r for r in wire.writes() if r.url.path == "/api/v1/account/withdraw"]
    assert len(sent) == 1
    assert f"clientOrderId={pay['client_order_id']}".encode() in sent[0].content


@pytest.mark.parametrize("tamper", ["inputs", "vote_digest", "workflow_snapshot"])
def test_altering_guarded_data_after_approval_refuses_the_step_and_sends_nothing(
    make_runtime: Any, tamper: str, engine: Any
) -> None:
    rt, wire, held, run_id = _approved_but_not_sent(make_runtime, engine)  # on SQLite and PostgreSQL
    with rt.engine.begin() as conn:
        if tamper == "inputs":
            conn.execute(update(runs).where(runs.c.id == run_id).values(
                inputs={**PAYOUT, "amount": "9999"}))
        elif tamper == "vote_digest":
            conn.execute(update(approvals).where(approvals.c.run_id == run_id, approvals.c.approver == "bob")
                         .values(digest="0" * 64))
        else:
            snap = conn.execute(select(runs.c.workflow_snapshot).where(runs.c.id == run_id)).scalar_one()
            conn.execute(update(runs).where(runs.c.id == run_id).values(
                workflow_snapshot=snap.replace("coin: USDT", "coin: USDC")))
    held.release(rt.service)
    shown = rt.service.show(run_id)
    assert shown["state"] == "FAILED"
    pay = next(s for s in shown["steps"] if s["id"] == "pay")
    assert pay["state"] == "FAILED" and "approved" in pay["error"]
    assert wire.writes() == [], "nothing may be sent after a digest mismatch"
    assert any(e.type == "approval.digest_mismatch" for e in query_events(rt.engine, run_id=run_id))


def test_altering_stored_step_params_before_sending_is_refused(make_runtime: Any, engine: Any) -> None:
    """Parameters resolved and stored, then changed in the database: the digest catches it."""
    rt, wire, held, run_id = _approved_but_not_sent(make_runtime, engine)
    with rt.engine.begin() as conn:
        conn.execute(update(steps).where(steps.c.run_id == run_id, steps.c.step_id == "pay").values(params={
            "coin": "USDT", "chainType": "ETH", "address": PAYOUT["address"], "quantity": "49000"}))
    held.release(rt.service)
    assert rt.service.state_of(run_id) == "FAILED"
    assert wire.writes() == []


def test_requester_unknown_user_double_vote_and_not_waiting_are_refused_and_audited(make_runtime: Any) -> None:
    rt, _ = make_runtime()
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    with pytest.raises(ApprovalRefused, match="four eyes"):
        rt.service.approve(run_id, "erin")
    with pytest.raises(ApprovalRefused, match="not a known approver"):
        rt.service.approve(run_id, "mallory")
    rt.service.approve(run_id, "alice")
    with pytest.raises(ApprovalRefused, match="already voted"):
        rt.service.approve(run_id, "alice")
    with pytest.raises(ApprovalRefused, match="not an approver for this step"):
        rt.service.approve(run_id, "frank")  # known, but not alice, bob or group:risk
    rt.service.approve(run_id, "dave")  # dave (risk) completes the quorum
    assert rt.service.state_of(run_id) == "SUCCEEDED"
    with pytest.raises(ApprovalRefused, match="not waiting for approval"):
        rt.service.approve(run_id, "carol")
    refused = [e for e in query_events(rt.engine, run_id=run_id) if e.type == "approval.refused"]
    assert [e.actor for e in refused] == ["erin", "mallory", "alice", "frank", "carol"]


def test_expired_approval_fails_closed(make_runtime: Any) -> None:
    rt, wire = make_runtime()
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    rt.service.approve(run_id, "alice")
    rt.clock.advance(24 * 3600 + 1)  # type: ignore[attr-defined]
    with pytest.raises(ApprovalRefused, match="not waiting"):
        rt.service.approve(run_id, "bob")
    shown = rt.service.show(run_id)
    assert shown["state"] == "EXPIRED"
    assert wire.writes() == []
    assert any(e.type == "approval.expired" for e in query_events(rt.engine, run_id=run_id))


def test_one_rejection_ends_the_run_with_its_reason(make_runtime: Any) -> None:
    rt, wire = make_runtime()
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    rt.service.reject(run_id, "carol", "vendor changed bank details")
    shown = rt.service.show(run_id)
    assert shown["state"] == "REJECTED" and "vendor changed bank details" in shown["error"]
    assert shown["approvals"][0]["decision"] == "reject"
    assert wire.writes() == []
