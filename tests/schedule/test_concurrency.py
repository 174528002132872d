"""Two beats at once: exactly one run and one tick row per (schedule, due instant).

Runs on SQLite and on the real PostgreSQL server, with two engines (separate connection pools)
as two beat processes would have.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, Row, select

from treasury.clock import ManualClock
from treasury.language.timing import CatchUp, ScheduleSpec, due_between
from treasury.schedules.tables import schedule_state
from treasury.schedules.tick import Scheduler, TickReport

from .conftest import T0, audit_rows, record_audit, run_rows, spec, start_run, tick_rows

SPECS = [
    spec("every-minute", "* * * * *", catchup=CatchUp.ALL),
    spec("every-five", "*/5 * * * *", catchup=CatchUp.LATEST),
    spec("at-seven", "7 * * * *", catchup=CatchUp.NONE),
    spec("hk-weekdays", "*/10 8-9 * * MON-FRI", "Asia/Hong_Kong"),  # 2026-01-01 08:00 HKT is T0
]


class SkewedClock(ManualClock):
    """Another host's clock: ``lag`` seconds behind the base clock (ahead when negative)."""

    def __init__(self, base: ManualClock, lag: float) -> None:
        super().__init__()
        self._base, self._lag = base, lag

    def now(self) -> datetime:
        return self._base.now() - timedelta(seconds=self._lag)


def expected(specs: Sequence[ScheduleSpec], end: datetime) -> list[tuple[str, datetime, str]]:
    return sorted((s.name, due, "scheduler") for s in specs for due in due_between(s, T0, end))


def assert_exactly_once(engine: Engine, specs: Sequence[ScheduleSpec], end: datetime) -> None:
    want = expected(specs, end)
    assert run_rows(engine) == want
    ticks = tick_rows(engine)
    assert [(name, due) for name, due, _, _ in ticks] == [(name, due) for name, due, _ in want]
    assert {status for _, _, status, _ in ticks} == {"fired"}
    assert len({run_id for _, _, _, run_id in ticks}) == len(ticks)
    assert len(audit_rows(engine, "schedule.fired")) == len(want)


def test_two_beats_take_turns_over_an_hour(two_engines: tuple[Engine, Engine]) -> None:
    clock = ManualClock()
    a = Scheduler(two_engines[0], start_run=start_run, clock=clock, audit=record_audit)
    b = Scheduler(two_engines[1], start_run=start_run, clock=SkewedClock(clock, -7), audit=record_audit)
    fired = {"a": 0, "b": 0}
    for step in range(181):  # every 20 s for an hour
        if step == 90:  # beat A restarts: a new object, the same database
            a = Scheduler(two_engines[0], start_run=start_run, clock=clock, audit=record_audit)
        order = [("a", a), ("b", b)] if step % 2 else [("b", b), ("a", a)]
        for name, beat in order:
            report = beat.tick(SPECS)
            assert report.errors == [] and report.missed == []
            fired[name] += len(report.fired)
        clock.advance(20)
    assert fired["a"] > 0 and fired["b"] > 0, fired
    assert_exactly_once(two_engines[0], SPECS, T0 + timedelta(hours=1))


def test_two_beats_tick_at_the_same_moment_in_threads(two_engines: tuple[Engine, Engine]) -> None:
    clock = ManualClock()
    beats = [Scheduler(e, start_run=start_run, clock=clock, audit=record_audit) for e in two_engines]
    steps = 121  # every 30 s for an hour
    barrier = threading.Barrier(3, timeout=60)  # a deadlock fails the test instead of hanging it
    reports: list[list[TickReport]] = [[], []]
    failures: list[BaseException] = []

    def beat(index: int) -> None:
        try:
            for _ in range(steps):
                barrier.wait()  # both tick the same instant...
                reports[index].append(beats[index].tick(SPECS))
                barrier.wait()  # ...then the main thread moves the clock
        except BaseException as exc:  # surfaced below; a dead thread would hang the barrier
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=beat, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(steps):
            barrier.wait()
            barrier.wait()
            clock.advance(30)
    except threading.BrokenBarrierError:
        pass  # a beat failed; its exception is asserted below
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures
    assert all(r.errors == [] for rs in reports for r in rs)
    fired = [f for rs in reports for r in rs for f in r.fired]
    assert len(fired) == len({(f.schedule, f.due_at) for f in fired})
    assert_exactly_once(two_engines[0], SPECS, T0 + timedelta(hours=1))


def test_the_unique_keys_hold_even_without_the_row_lock(
    two_engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: with the state lock gone both beats plan the same instants, and the
    (schedule, due_at) keys alone must still let exactly one of them fire each."""

    def unlocked(self: Scheduler, conn: Connection, name: str) -> Row[Any] | None:
        return conn.execute(select(schedule_state).where(schedule_state.c.name == name)).first()

    monkeypatch.setattr(Scheduler, "_lock", unlocked)
    clock = ManualClock()
    beats = [Scheduler(e, start_run=start_run, clock=clock, audit=record_audit) for e in two_engines]
    specs = [spec(f"s{i}", "* * * * *") for i in range(5)]
    for _ in range(21):
        with ThreadPoolExecutor(2) as pool:
            reports = list(pool.map(lambda beat: beat.tick(specs), beats))
        assert all(r.errors == [] for r in reports)
        clock.advance(30)
    assert_exactly_once(two_engines[0], specs, T0 + timedelta(minutes=10))
