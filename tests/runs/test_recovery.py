"""A worker killed mid-send: one sweep, as soon as its lease ran out, both reconciles the record and
re-dispatches the step; a step whose worker still renews its lease is never re-dispatched."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from treasury.execution import client_id_for, sweep_records
from treasury.execution.context import StepContext
from treasury.runtime import Runtime

from .conftest import Wire, load


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def dispatch(self, run_id: str, step_id: str) -> None:
        self.sent.append((run_id, step_id))

    def flush(self, service: Any) -> None:
        pass


class Killed(BaseException):
    """What SIGKILL does to a step: it stops right there, and no ``finally`` runs."""


def _transfers(wire: Wire, cid: str) -> int:
    return sum(1 for t in wire.sim.state()["transfers"] if t.get("clientOrderId") == cid)


def _kill_mid_send(rt: Runtime, monkeypatch: pytest.MonkeyPatch, run_id: str) -> None:
    """Execute the run's transfer step until the request has reached the exchange, then "die"."""
    real = rt.executor.clients

    class Dying:
        def __getattr__(self, name: str) -> Any:
            return getattr(real("transfers")[0], name)

        def call(self, op: Any, profile: Any, params: Any = None, **kw: Any) -> Any:
            real("transfers")[0].call(op, profile, params, **kw)
            raise Killed()

    monkeypatch.setattr(rt.executor, "clients", lambda name: (Dying(), real(name)[1]))
    # the heartbeat stops with the process; the lease is not given back
    monkeypatch.setattr(StepContext, "release", lambda self: self.keeper.stop())
    with pytest.raises(Killed):
        rt.service.execute_step(run_id, "sweep")
    monkeypatch.undo()


def test_one_sweep_recovers_a_killed_workers_step_once_its_lease_ran_out(
    make_runtime: Callable[..., tuple[Runtime, Wire]], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    rt, wire = make_runtime(dispatcher=recorder)
    lease = rt.settings.lease_seconds
    run_id = rt.service.start(load(rt, "treasury-sweep.yaml"), {"amount": "100"}, requested_by="erin")
    rt.service.execute_step(run_id, "check-balance")
    assert recorder.sent[-1] == (run_id, "sweep")
    _kill_mid_send(rt, monkeypatch, run_id)
    cid = client_id_for(run_id, "sweep")
    assert _transfers(wire, cid) == 1 and rt.service.state_of(run_id) == "RUNNING"
    recorder.sent.clear()

    rt.clock.advance(lease / 2)  # the dead worker's lease is still running: nothing is touched
    assert sweep_records(rt.executor, older_than_seconds=45) == []
    assert rt.service.recover(older_than=timedelta(seconds=45))["running_steps"] == 0

    rt.clock.advance(lease / 2 + 1)  # it ran out; the step changed only 21 s ago
    swept = sweep_records(rt.executor, older_than_seconds=45)
    assert [(s.client_id, s.state.value, s.step_id) for s in swept] == [(cid, "SUCCEEDED", "sweep")]
    counts = rt.service.recover(older_than=timedelta(seconds=45), steps=[(s.run_id, s.step_id) for s in swept])
    assert counts["running_steps"] == 1 and recorder.sent == [(run_id, "sweep")]  # in the same pass
    rt.service.execute_step(run_id, "sweep")
    assert rt.service.state_of(run_id) == "SUCCEEDED"
    assert _transfers(wire, cid) == 1
    # re-dispatched steps count their staleness from the re-dispatch: no second copy at once
    recorder.sent.clear()
    assert rt.service.recover(older_than=timedelta(seconds=45))["running_steps"] == 0


def test_a_step_whose_lease_is_renewed_is_not_redispatched_however_long_it_runs(
    make_runtime: Callable[..., tuple[Runtime, Wire]], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    rt, _wire = make_runtime(dispatcher=recorder)
    run_id = rt.service.start(load(rt, "treasury-sweep.yaml"), {"amount": "100"}, requested_by="erin")
    rt.service.execute_step(run_id, "check-balance")
    _kill_mid_send(rt, monkeypatch, run_id)
    recorder.sent.clear()
    from treasury.execution import records as R

    cid = client_id_for(run_id, "sweep")
    for _ in range(10):  # 100 s: a worker still renewing (as the heartbeat does) keeps it
        rt.clock.advance(10)
        with rt.engine.begin() as conn:
            rec = R.load(conn, cid)
            assert rec is not None
            assert R.renew(conn, [rec], owner=str(rec.lease_owner), at=rt.clock.now(),
                           lease_seconds=rt.settings.lease_seconds)
        assert rt.service.recover(older_than=timedelta(seconds=45))["running_steps"] == 0
    assert recorder.sent == []
