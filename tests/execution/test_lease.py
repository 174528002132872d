"""The lease heartbeat: renewals under compare-and-set, a sweeper that never takes a working step,
and a stalled worker that lost its lease sending nothing when it resumes. Time is a ManualClock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from treasury.clock import ManualClock
from treasury.execution import ExecutionSettings, StepExecutor, client_id_for, sweep
from treasury.execution import records as R
from treasury.execution.lease import LeaseKeeper
from treasury.models import ExecState, StepState

from .harness import PATHS, World, effects, make_world

RUN = "r0000000000b"
AT = datetime(2026, 1, 1, tzinfo=UTC)


def _claimed(engine: Engine, owner: str = "a", lease: float = 20) -> R.ExecRecord:
    cid = client_id_for(RUN, "pay")
    with engine.begin() as conn:
        R.insert_prepared(conn, run_id=RUN, step_id="pay", operation="asset_transfer", key_profile="t",
                          legs=[R.NewRecord(cid, 0, {"coin": "USDT", "clientOrderId": cid})], at=AT)
        rec = R.load(conn, cid)
        assert rec is not None
        return R.claim(conn, rec, owner=owner, at=AT, lease_seconds=lease)


def _load(engine: Engine, cid: str) -> R.ExecRecord:
    with engine.begin() as conn:
        rec = R.load(conn, cid)
    assert rec is not None
    return rec


def _keeper(engine: Engine, clock: ManualClock, legs: dict[str, R.ExecRecord], owner: str = "a") -> LeaseKeeper:
    keeper = LeaseKeeper(engine, clock, owner, lease_seconds=20, renew_seconds=None, legs=lambda: legs.values())
    for rec in legs.values():
        keeper.note(rec)
    return keeper


def test_a_renewal_extends_a_running_lease_and_notes_when_the_worker_last_saw_it(engine: Engine) -> None:
    rec = _claimed(engine)
    clock = ManualClock(start=AT.timestamp())
    keeper = _keeper(engine, clock, {rec.client_id: rec})
    clock.advance(15)
    assert keeper.renew() is True
    fresh = _load(engine, rec.client_id)
    assert fresh.lease_until == AT + timedelta(seconds=35) and fresh.updated_at == AT + timedelta(seconds=15)
    assert fresh.version == rec.version  # the step's own next change still holds
    assert keeper.held([rec.client_id], AT + timedelta(seconds=34))
    with engine.begin() as conn:  # so a sweeper 30 s after the claim leaves it alone
        assert R.stale(conn, at=AT + timedelta(seconds=30), older_than_seconds=0) == []


def test_a_renewal_never_revives_a_lease_that_ran_out(engine: Engine) -> None:
    rec = _claimed(engine)
    clock = ManualClock(start=AT.timestamp())
    keeper = _keeper(engine, clock, {rec.client_id: rec})
    clock.advance(21)  # a stall (SIGSTOP, a long pause) longer than the lease
    assert keeper.renew() is False
    assert rec.client_id in keeper.lost and not keeper.held([rec.client_id], AT + timedelta(seconds=21))
    assert _load(engine, rec.client_id).lease_until == AT + timedelta(seconds=20)
    with engine.begin() as conn:  # stale at once, however recently it changed
        assert [r.client_id for r in R.stale(conn, at=AT + timedelta(seconds=21), older_than_seconds=3600)] \
            == [rec.client_id]


def test_a_renewal_never_extends_a_lease_another_worker_holds(engine: Engine) -> None:
    rec = _claimed(engine)
    clock = ManualClock(start=AT.timestamp())
    legs = {rec.client_id: rec}
    keeper = _keeper(engine, clock, legs)
    with engine.begin() as conn:
        theirs = R.claim(conn, rec, owner="b", at=AT + timedelta(seconds=21), lease_seconds=20)
    clock.advance(22)
    assert keeper.renew() is False
    assert _load(engine, rec.client_id).lease_until == theirs.lease_until  # b's lease, untouched
    # compare-and-set on the version too: a renewal that read an old version renews nothing
    clock2 = ManualClock(start=(AT + timedelta(seconds=25)).timestamp())
    stale_view = {rec.client_id: theirs}
    keeper_b = _keeper(engine, clock2, stale_view, owner="b")
    with engine.begin() as conn:
        R.change(conn, theirs, owner="b", at=AT + timedelta(seconds=24), lease_seconds=20, state=ExecState.SENDING)
    assert keeper_b.renew() is False


def _hooked(world: World, hook: Any) -> None:
    """Make ``world.clock.sleep`` call ``hook()`` after every wait."""
    clock = world.clock
    original = clock.sleep
    busy: list[bool] = []

    def sleep(seconds: float) -> None:
        original(seconds)
        if not busy:  # the hook's own waits (its read retries) do not call it again
            busy.append(True)
            try:
                hook()
            finally:
                busy.clear()

    clock.sleep = sleep


def test_a_sweeper_never_takes_over_a_step_that_is_still_working(sqlite_engine: Engine) -> None:
    # The answer is lost and the lookups keep failing: the step polls for the 120 s deadline,
    # far longer than its 10 s lease. A sweeper runs after every wait (the step's own and the
    # client's rate-limit pacing), with no staleness grace: it must find the lease renewed every
    # time. (No heartbeat thread here: the step's own waits renew.)
    settings = ExecutionSettings(lease_seconds=10, settle_seconds=5)
    world = make_world(sqlite_engine, settings=settings)
    world.sim.set_faults([
        {"method": "POST", "path": PATHS["withdraw"], "mode": "error_after", "status": 500, "count": 1},
        {"method": "GET", "path": "/api/v1/account/balanceFlow", "mode": "error_before", "status": 503},
        {"method": "GET", "path": "/api/v1/account/withdrawOrders", "mode": "error_before", "status": 503},
    ])
    other = StepExecutor(sqlite_engine, clients=world.executor.clients, clock=world.clock, settings=settings,
                         owner="sweeper")
    taken: list[Any] = []
    _hooked(world, lambda: taken.extend(s for s in sweep(other, older_than_seconds=0)
                                        if s[1] is not ExecState.UNKNOWN))
    req = world.request("withdraw")
    out = world.executor.execute(req)
    assert out.state is StepState.NEEDS_ATTENTION  # the step itself decided, at its deadline
    assert taken == []
    actors = {e["actor"] for e in world.events("execution.state")}
    assert actors == {"alice"}  # no state change by the sweeper
    assert len(world.clock.sleeps) > 10


class StallingClient:
    """The real client, but the first money-moving call stalls first (as a SIGSTOP would)."""

    def __init__(self, world: World, stall: Any) -> None:
        self.world = world
        self.stall = stall
        self.stalled = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.world.client, name)

    def call(self, op: Any, profile: Any, params: Any = None, **kw: Any) -> Any:
        name = op if isinstance(op, str) else op.name
        if name == "asset_transfer" and not self.stalled:
            self.stalled = True
            self.stall()
        return self.world.client.call(op, profile, params, **kw)


def _stalling_executor(world: World, stall: Any) -> StepExecutor:
    client = StallingClient(world, stall)
    return StepExecutor(world.engine, clients=lambda name: (client, world.profiles[name]), clock=world.clock,
                        settings=world.executor.settings, owner="worker:stalled")


def test_a_worker_that_stalls_and_loses_its_lease_sends_nothing_when_it_resumes(engine: Engine) -> None:
    # Worker A commits SENDING and stalls before signing. Its lease runs out; the sweeper takes
    # the record over, proves the transfer absent after the settle window, and the step's next
    # execution (worker B) sends it. When A resumes, its check before signing fails its
    # compare-and-set: A sends nothing. One request, one effect.
    settings = ExecutionSettings(lease_seconds=20, settle_seconds=5)
    world = make_world(engine, settings=settings)
    req = world.request("asset_transfer")
    cid = client_id_for(req.run_id, req.step_id)
    worker_b = StepExecutor(engine, clients=world.executor.clients, clock=world.clock, settings=settings,
                            owner="worker:b")

    def stall() -> None:
        world.clock.advance(60)
        assert dict(sweep(worker_b, older_than_seconds=45)) == {cid: ExecState.PREPARED}
        assert worker_b.execute(req).state is StepState.SUCCEEDED

    out = _stalling_executor(world, stall).execute(req)
    assert out.state is StepState.RUNNING and "another worker" in (out.error or "")
    assert len(world.sent(PATHS["asset_transfer"])) == 1
    assert effects(world.sim.state(), cid) == 1
    assert _load(engine, cid).state is ExecState.SUCCEEDED


def test_a_worker_that_stalls_but_keeps_its_records_sends_once_and_restarts_the_settle_window(
    engine: Engine,
) -> None:
    # Nobody took the records over during the stall (no claim moved their version): sending is
    # still this worker's to do, and ``sent_at`` becomes the signing time, so a later
    # reconciliation counts its settle window from when the request could really have left.
    settings = ExecutionSettings(lease_seconds=20, settle_seconds=5)
    world = make_world(engine, settings=settings)
    req = world.request("asset_transfer")
    cid = client_id_for(req.run_id, req.step_id)
    started = world.clock.now()
    out = _stalling_executor(world, lambda: world.clock.advance(60)).execute(req)
    assert out.state is StepState.SUCCEEDED
    assert len(world.sent(PATHS["asset_transfer"])) == 1
    rec = _load(engine, cid)
    assert rec.sent_at == started + timedelta(seconds=60)


def test_the_heartbeat_thread_renews_while_the_step_blocks(sqlite_engine: Engine) -> None:
    import threading
    import time

    from treasury.clock import SystemClock

    clock = SystemClock()
    cid = client_id_for(RUN, "pay")
    now = clock.now()
    with sqlite_engine.begin() as conn:
        R.insert_prepared(conn, run_id=RUN, step_id="pay", operation="asset_transfer", key_profile="t",
                          legs=[R.NewRecord(cid, 0, {"clientOrderId": cid})], at=now)
        rec = R.claim(conn, R.load(conn, cid), owner="a", at=now, lease_seconds=0.6)  # type: ignore[arg-type]
    legs = {cid: rec}
    keeper = LeaseKeeper(sqlite_engine, clock, "a", lease_seconds=0.6, renew_seconds=0.1, legs=lambda: legs.values())
    keeper.note(rec)
    keeper.start()
    try:
        done = threading.Event()
        done.wait(1.5)  # a blocking call, more than twice the lease
        assert keeper.renewals >= 5 and not keeper.lost
        assert keeper.held([cid], clock.now())
    finally:
        keeper.stop()
    time.sleep(0.7)
    with sqlite_engine.begin() as conn:  # stopped: the lease runs out and the record is free
        assert [r.client_id for r in R.stale(conn, at=clock.now(), older_than_seconds=3600)] == [cid]


@pytest.mark.parametrize("lease", [20.0])
def test_the_runtime_heartbeats_every_quarter_lease(lease: float, tmp_path: Any) -> None:
    from treasury.runtime import build_runtime
    from treasury.settings import Settings

    from .harness import ROOT

    rt = build_runtime(Settings(database_url=f"sqlite:///{tmp_path / 't.db'}", config_dir=ROOT / "config",
                                lease_seconds=lease))
    assert (rt.executor.settings.lease_seconds, rt.executor.settings.renew_seconds) == (lease, lease / 4)
    assert Settings().lease_seconds == 20.0
