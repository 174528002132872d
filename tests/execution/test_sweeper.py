"""The sweeper picks up what crashed workers left, never sends, and respects live leases."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from treasury.execution import StepExecutor, client_id_for, sweep
from treasury.execution import records as R
from treasury.models import ExecState, StepState

from .harness import PATHS, effects, make_world


def _leave(world, req, state: ExecState, *, lease_seconds: float = 1) -> str:
    cid = client_id_for(req.run_id, req.step_id)
    at = world.clock.now()
    with world.engine.begin() as conn:
        R.insert_prepared(conn, run_id=req.run_id, step_id=req.step_id, operation=req.operation,
                          key_profile=req.key_profile,
                          legs=[R.NewRecord(cid, 0, {**req.params, "clientOrderId": cid})], at=at)
        if state is not ExecState.PREPARED:
            rec = R.claim(conn, R.load(conn, cid), owner="dead", at=at, lease_seconds=lease_seconds)
            R.change(conn, rec, owner="dead", at=at, lease_seconds=lease_seconds, state=state, attempts=1,
                     sent_at=at, unknown_since=at if state is ExecState.UNKNOWN else None)
    return cid


def test_sweep_settles_what_crashed_workers_left(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    happened = world.request("withdraw", step_id="a")
    lost = world.request("asset_transfer", step_id="b")
    never = world.request("fiat_withdraw", step_id="c")
    cid_a = _leave(world, happened, ExecState.SENDING)
    world.client.call("withdraw", world.profiles["withdrawals"], {**happened.params, "clientOrderId": cid_a})
    cid_b = _leave(world, lost, ExecState.UNKNOWN)
    cid_c = _leave(world, never, ExecState.PREPARED)
    posts = len(world.seen)
    assert sweep(world.executor, older_than_seconds=60) == []  # nothing is stale yet
    world.clock.advance(120)
    result = dict(sweep(world.executor, older_than_seconds=60))
    assert result == {cid_a: ExecState.SUCCEEDED, cid_b: ExecState.PREPARED, cid_c: ExecState.PREPARED}
    assert [r for r in world.seen[posts:] if r.method == "POST"] == []  # the sweeper never sends
    # The steps' next executions finish the job, once each.
    assert world.executor.execute(lost).state is StepState.SUCCEEDED
    assert world.executor.execute(never).state is StepState.SUCCEEDED
    assert world.executor.execute(happened).state is StepState.SUCCEEDED
    state = world.sim.state()
    assert [effects(state, c) for c in (cid_a, cid_b, cid_c)] == [1, 1, 1]


def test_sweep_leaves_records_under_a_live_lease_alone(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    req = world.request("withdraw")
    cid = _leave(world, req, ExecState.UNKNOWN, lease_seconds=3600)
    world.clock.advance(120)
    assert sweep(world.executor, older_than_seconds=60) == []
    assert world.executor.reconcile_record(cid) is ExecState.UNKNOWN  # held: untouched
    assert world.seen == []


def test_sweep_turns_an_unprovable_withdrawal_into_needs_attention(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    world.sim.set_faults([{"method": "GET", "path": "/api/v1/account/balanceFlow", "mode": "error_before"}])
    req = world.request("withdraw")
    cid = _leave(world, req, ExecState.UNKNOWN)
    world.clock.advance(60)
    assert dict(sweep(world.executor, older_than_seconds=30)) == {cid: ExecState.UNKNOWN}
    world.clock.advance(world.executor.settings.deadline_seconds)
    assert dict(sweep(world.executor, older_than_seconds=30)) == {cid: ExecState.NEEDS_ATTENTION}
    out = world.executor.execute(req)
    assert out.state is StepState.NEEDS_ATTENTION and out.reason and cid in out.reason
    assert world.sent(PATHS["withdraw"]) == []


def test_two_sweepers_at_once_reconcile_each_record_once(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    cids = []
    for i in range(6):
        req = world.request("asset_transfer", step_id=f"s{i}")
        cid = _leave(world, req, ExecState.SENDING)
        world.client.call("asset_transfer", world.profiles["transfers"], {**req.params, "clientOrderId": cid})
        cids.append(cid)
    world.clock.advance(120)
    other = StepExecutor(sqlite_engine, clients=world.executor.clients, clock=world.clock, owner="worker:b")
    results: list[list[tuple[str, ExecState]]] = []
    threads = [threading.Thread(target=lambda ex=ex: results.append(sweep(ex, older_than_seconds=60)))
               for ex in (world.executor, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    with sqlite_engine.connect() as conn:
        assert {R.load(conn, c).state for c in cids} == {ExecState.SUCCEEDED}
    verdicts = [e for e in world.events("execution.state") if e["payload"].get("to") == "SUCCEEDED"]
    assert len(verdicts) == len(cids)  # each record was settled by exactly one sweeper
