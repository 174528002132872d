"""plan_tick: on-time instants always fire; older ones follow the catch-up policy."""

from __future__ import annotations

from datetime import timedelta

import pytest

from treasury.language.timing import CatchUp, ScheduleSpec, TickPlan, plan_tick

from .conftest import T0


def at(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


def every(minutes: int, catchup: CatchUp | str = CatchUp.LATEST) -> ScheduleSpec:
    cron = "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    return ScheduleSpec("p", cron, "UTC", catchup=catchup)  # type: ignore[arg-type]


def test_nothing_from_before_first_seen() -> None:
    s = every(1)
    assert plan_tick(s, last_due=None, now=T0 + at(0.5), first_seen=T0 + at(0.5)) == TickPlan([], [])
    plan = plan_tick(s, last_due=None, now=T0 + at(60), first_seen=T0 + at(59.5))
    assert plan.fire == [T0 + at(60)] and plan.missed == []
    assert plan_tick(s, last_due=None, now=T0 + at(60), first_seen=None) == TickPlan([], [])


def test_first_seen_after_last_due_wins() -> None:
    plan = plan_tick(every(1, "none"), last_due=T0, now=T0 + at(10.5), first_seen=T0 + at(8.5))
    assert plan.fire == [T0 + at(10)] and plan.missed == [T0 + at(9)]


def test_on_time_within_grace_inclusive() -> None:
    s = every(5, CatchUp.NONE)
    on_edge = plan_tick(s, last_due=T0, now=T0 + at(6), first_seen=None)  # 60 s old
    assert on_edge.fire == [T0 + at(5)] and on_edge.missed == []
    late = plan_tick(s, last_due=T0, now=T0 + at(6) + timedelta(seconds=1), first_seen=None)
    assert late.fire == [] and late.missed == [T0 + at(5)]
    wide = plan_tick(s, last_due=T0, now=T0 + at(11), first_seen=None, grace=at(10))
    assert wide.fire == [T0 + at(5), T0 + at(10)]


@pytest.mark.parametrize(
    ("catchup", "cap", "fire", "missed"),
    [
        (CatchUp.NONE, 100, [], [5, 10, 15]),
        (CatchUp.LATEST, 100, [15], [5, 10]),
        (CatchUp.ALL, 100, [5, 10, 15], []),
        (CatchUp.ALL, 2, [10, 15], [5]),
        (CatchUp.ALL, 0, [], [5, 10, 15]),
    ],
)
def test_catchup_after_an_outage(catchup: CatchUp, cap: int, fire: list[int], missed: list[int]) -> None:
    plan = plan_tick(every(5, catchup), last_due=T0, now=T0 + at(17), first_seen=T0, catchup_cap=cap)
    assert plan.fire == [T0 + at(m) for m in fire]
    assert plan.missed == [T0 + at(m) for m in missed]
    assert plan.newest == T0 + at(15)


@pytest.mark.parametrize(
    ("catchup", "fire"), [(CatchUp.NONE, [20]), (CatchUp.LATEST, [15, 20]), (CatchUp.ALL, [5, 10, 15, 20])]
)
def test_an_on_time_instant_fires_besides_the_catch_up(catchup: CatchUp, fire: list[int]) -> None:
    plan = plan_tick(every(5, catchup), last_due=T0, now=T0 + at(20) + timedelta(seconds=5), first_seen=None)
    assert plan.fire == [T0 + at(m) for m in fire]
    assert sorted(plan.fire + plan.missed) == [T0 + at(m) for m in (5, 10, 15, 20)]


def test_missed_list_is_bounded_and_keeps_the_newest() -> None:
    now = T0 + timedelta(days=1, seconds=30)
    plan = plan_tick(every(1, CatchUp.NONE), last_due=T0, now=now, first_seen=None, missed_limit=100)
    assert plan.fire == [T0 + timedelta(days=1)]
    assert plan.missed == [T0 + timedelta(days=1) - at(m) for m in range(100, 0, -1)]
    assert plan.more_missed
    assert plan.newest == T0 + timedelta(days=1)
    full = plan_tick(every(1, CatchUp.NONE), last_due=T0, now=T0 + at(30.5), first_seen=None)
    assert len(full.missed) == 29 and not full.more_missed


def test_nothing_due_and_clock_behind() -> None:
    s = every(5)
    assert plan_tick(s, last_due=T0 + at(5), now=T0 + at(9), first_seen=T0).newest is None
    assert plan_tick(s, last_due=T0 + at(5), now=T0 + at(2), first_seen=T0) == TickPlan([], [])


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_tick(every(5), last_due=None, now=T0.replace(tzinfo=None), first_seen=T0)
