"""Pause and resume per schedule: nothing fires while paused, nothing from the pause later."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from treasury.clock import ManualClock
from treasury.errors import ParameterError
from treasury.language.timing import CatchUp
from treasury.schedules.tick import Scheduler

from .conftest import T0, audit_rows, minutes, run_dues, spec, tick_rows


def m(n: float) -> timedelta:
    return timedelta(minutes=n)


def test_pause_stops_firing_and_resume_does_not_replay_the_pause(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    payout = spec("payout", "*/5 * * * *", catchup=CatchUp.ALL)
    sweep = spec("sweep", "*/5 * * * *")
    sched.tick([payout, sweep])
    clock.advance(minutes(5))
    sched.tick([payout, sweep])
    sched.pause("payout", by="alice")
    for _ in range(4):  # 10, 15, 20, 25: paused
        clock.advance(minutes(5))
        assert [f.schedule for f in sched.tick([payout, sweep]).fired] == ["sweep"]
    clock.advance(minutes(2))  # 27
    sched.resume("payout", by="bob")
    assert sched.tick([payout, sweep]).fired == []
    clock.advance(minutes(3))  # 30
    assert [(f.schedule, f.due_at) for f in sched.tick([payout, sweep]).fired] == [
        ("payout", T0 + m(30)),
        ("sweep", T0 + m(30)),
    ]
    assert run_dues(db, "payout") == [T0 + m(5), T0 + m(30)]
    assert [due for _, due, _, _ in tick_rows(db, "payout")] == [T0 + m(5), T0 + m(30)]
    [paused] = audit_rows(db, "schedule.paused")
    [resumed] = audit_rows(db, "schedule.resumed")
    assert (paused["actor"], paused["payload"]) == ("alice", {"schedule": "payout"})
    assert resumed["actor"] == "bob"
    assert resumed["payload"]["paused_by"] == "alice"
    assert resumed["payload"]["not_run_while_paused"] == 4
    assert resumed["payload"]["due_at"] == [(T0 + m(n)).isoformat() for n in (10, 15, 20, 25)]


def test_pause_and_resume_are_idempotent(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    s = spec("payout", "*/5 * * * *")
    sched.tick([s])
    sched.resume("payout", by="bob")  # not paused: nothing to do
    sched.pause("payout", by="alice")
    sched.pause("payout", by="carol")
    [status] = sched.status([s])
    assert status.paused and status.paused_by == "alice"
    sched.resume("payout", by="bob")
    sched.resume("payout", by="bob")
    assert len(audit_rows(db, "schedule.paused")) == 1 and len(audit_rows(db, "schedule.resumed")) == 1
    [status] = sched.status([s])
    assert not status.paused and status.paused_by is None


def test_a_schedule_beat_has_not_seen_yet_can_be_paused(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    s = spec("payout", "*/5 * * * *")
    sched.pause("payout", by="alice", specs=[s])
    clock.advance(minutes(5))
    assert sched.tick([s]).fired == []
    clock.advance(minutes(5))
    assert sched.tick([s]).fired == []
    assert sched.status([s])[0].paused
    sched.resume("payout", by="bob", specs=[s])
    clock.advance(minutes(5))
    assert [f.due_at for f in sched.tick([s]).fired] == [T0 + m(15)]
    other = spec("other", "*/5 * * * *")
    sched.resume("other", by="bob", specs=[other])  # never paused, never seen: running already


def test_unknown_schedule_and_missing_actor_are_refused(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    sched.tick([spec("payout")])
    with pytest.raises(ParameterError, match="'nope' is not a known schedule; known schedules: payout") as err:
        sched.pause("nope", by="alice")
    assert err.value.param == "schedule"
    with pytest.raises(ParameterError, match="not a known schedule"):
        sched.resume("nope", by="alice", specs=[spec("payout")])
    with pytest.raises(ParameterError) as err:
        sched.pause("payout", by=" ")
    assert err.value.param == "by"
    assert audit_rows(db) == []
