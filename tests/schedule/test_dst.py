"""Daylight saving: a skipped local time fires once at the end of the gap, a repeated one once
at its first occurrence; forward and backward enumeration agree across transitions."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from treasury.language.timing import CatchUp, ScheduleSpec, _parse, due_between, next_fire, plan_tick

from .conftest import utc

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")


def local(d: datetime, tz: ZoneInfo) -> tuple[int, int, int, int, int, str | None]:
    wall = d.astimezone(tz)
    return (wall.year, wall.month, wall.day, wall.hour, wall.minute, wall.tzname())


def test_new_york_spring_forward_gap_fires_once_at_three() -> None:
    s = ScheduleSpec("p", "30 2 * * *", "America/New_York")
    got = due_between(s, utc(2026, 3, 7), utc(2026, 3, 10))
    assert got == [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]
    assert local(got[1], NY) == (2026, 3, 8, 3, 0, "EDT")
    assert [local(d, NY)[3:5] for d in (got[0], got[2])] == [(2, 30), (2, 30)]


def test_several_times_in_one_gap_collapse_into_one_instant() -> None:
    s = ScheduleSpec("p", "*/15 2 * * *", "America/New_York")
    assert due_between(s, utc(2026, 3, 8), utc(2026, 3, 9)) == [utc(2026, 3, 8, 7, 0)]
    assert len(due_between(s, utc(2026, 3, 7), utc(2026, 3, 8))) == 4
    # a time in the gap and 03:00 itself are the same instant, due once
    both = ScheduleSpec("p", "0,30 2,3 * * *", "America/New_York")
    assert due_between(both, utc(2026, 3, 8), utc(2026, 3, 9)) == [utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 7, 30)]


def test_new_york_fall_back_fires_once_at_first_occurrence() -> None:
    s = ScheduleSpec("p", "30 1 * * *", "America/New_York")
    got = due_between(s, utc(2026, 10, 31), utc(2026, 11, 3))
    assert got == [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    assert local(got[1], NY) == (2026, 11, 1, 1, 30, "EDT")


def test_fall_back_half_hourly_skips_the_repeated_wall_times() -> None:
    s = ScheduleSpec("p", "*/30 * * * *", "America/New_York")
    got = due_between(s, utc(2026, 11, 1, 3, 59), utc(2026, 11, 1, 8, 0))
    assert got == [
        utc(2026, 11, 1, 4, 0),
        utc(2026, 11, 1, 4, 30),
        utc(2026, 11, 1, 5, 0),
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 7, 0),
        utc(2026, 11, 1, 7, 30),
        utc(2026, 11, 1, 8, 0),
    ]


def test_next_fire_from_inside_the_second_pass_of_the_repeated_hour() -> None:
    after = utc(2026, 11, 1, 6, 15)  # 01:15 EST, the second 01:15 of the night
    assert after.astimezone(NY).fold == 1
    assert next_fire(ScheduleSpec("p", "30 1 * * *", "America/New_York"), after) == utc(2026, 11, 2, 6, 30)
    assert next_fire(ScheduleSpec("p", "45 * * * *", "America/New_York"), after) == utc(2026, 11, 1, 7, 45)
    assert next_fire(ScheduleSpec("p", "0 2 * * *", "America/New_York"), after) == utc(2026, 11, 1, 7, 0)


def test_london_transitions() -> None:
    s = ScheduleSpec("p", "30 1 * * *", "Europe/London")
    spring = due_between(s, utc(2026, 3, 28), utc(2026, 3, 31))
    assert spring == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]
    assert local(spring[1], LONDON) == (2026, 3, 29, 2, 0, "BST")
    autumn = due_between(s, utc(2026, 10, 24), utc(2026, 10, 27))
    assert autumn == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    assert local(autumn[1], LONDON) == (2026, 10, 25, 1, 30, "BST")


def test_a_skipped_day_fires_at_the_first_instant_after_it() -> None:
    # Samoa skipped 2011-12-30 entirely (UTC-10 → UTC+14)
    apia = ZoneInfo("Pacific/Apia")
    s = ScheduleSpec("p", "0 12 * * *", "Pacific/Apia")
    got = due_between(s, utc(2011, 12, 29), utc(2011, 12, 31))  # 14:00 on the 31st in Apia
    assert [local(d, apia)[:5] for d in got] == [(2011, 12, 29, 12, 0), (2011, 12, 31, 0, 0), (2011, 12, 31, 12, 0)]


ZONES_AND_CRONS = [
    ("America/New_York", "30 2 * * *"),
    ("America/New_York", "*/20 1-3 * * *"),
    ("Europe/London", "*/30 * * * 0"),
    ("Australia/Lord_Howe", "*/10 1-2 * * *"),
    ("Pacific/Chatham", "45 2,3 * * *"),
    ("Asia/Hong_Kong", "0 9 * * 1-5"),
]


@pytest.mark.parametrize(("zone", "expr"), ZONES_AND_CRONS)
def test_backward_and_forward_enumerations_agree_across_a_year(zone: str, expr: str) -> None:
    s = ScheduleSpec("p", expr, zone, catchup=CatchUp.ALL)
    start, end = utc(2026, 1, 1), utc(2027, 1, 1)
    forward = due_between(s, start, end)
    assert forward == sorted(set(forward)), "strictly increasing, each once"
    plan = plan_tick(s, last_due=start, now=end, first_seen=None, catchup_cap=10**6, grace=timedelta(0))
    assert plan.fire == forward and plan.missed == []
    tz, cron = ZoneInfo(zone), _parse(expr)
    for due in forward:
        wall = due.astimezone(tz)
        naive = wall.replace(tzinfo=None)
        matches = cron.at_or_before(naive) == naive and wall.fold == 0
        ends_gap = (due - timedelta(seconds=1)).astimezone(tz).utcoffset() < wall.utcoffset()  # type: ignore[operator]
        assert matches or ends_gap, wall


def test_backward_walk_from_inside_the_repeated_hour() -> None:
    s = ScheduleSpec("p", "*/30 * * * *", "America/New_York", catchup=CatchUp.ALL)
    now = utc(2026, 11, 1, 6, 45)  # 01:45 EST, second pass
    plan = plan_tick(s, last_due=utc(2026, 11, 1, 4, 10), now=now, first_seen=None, grace=timedelta(0))
    assert plan.fire == [utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 5, 0), utc(2026, 11, 1, 5, 30)]
