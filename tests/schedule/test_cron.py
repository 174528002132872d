"""Cron parsing and matching: validation messages, names and aliases, and croniter as an oracle."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from croniter import croniter

from treasury.errors import ConfigError
from treasury.language.timing import (
    ScheduleSpec,
    _parse,
    due_between,
    next_fire,
    validate_cron,
    validate_timezone,
)

from .conftest import utc


@pytest.mark.parametrize(
    "expr",
    [
        "0 9 * * MON-FRI",
        "*/5 * * * *",
        "0 0 1 JAN,jul *",
        "5/15 8-18/2 1,15 * *",
        "0 0 * * 7",
        "0 0 * * FRI-SUN",
        "@daily",
        "@HOURLY",
        "@weekly",
        "@monthly",
        "@yearly",
        "0 0 29 2 *",
        "  0   9 * * 1-5  ",
    ],
)
def test_valid_crons(expr: str) -> None:
    assert validate_cron(expr) is None


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("", "non-empty"),
        ("* * *", "has 3 fields; expected 5"),
        ("0 0 * * * *", "has 6 fields"),
        ("60 * * * *", "minute field: 60 is out of range 0-59"),
        ("0 24 * * *", "hour field: 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month field: 0 is out of range 1-31"),
        ("0 0 * 13 *", "month field: 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field: 8 is out of range 0-7"),
        ("0 0 * * FOO", "'FOO' is not a number or a name"),
        ("0 0 L * *", "not supported"),
        ("0 0 * * MON#2", "not supported"),
        ("0 0 15W * *", "not supported"),
        ("0 0 ? * *", "not supported"),
        ("*/0 * * * *", "step '0'"),
        ("*/x * * * *", "step 'x'"),
        ("30-10 * * * *", "range '30-10' runs backwards"),
        ("0 0 * * FRI-MON", "runs backwards"),
        ("1,,2 * * * *", "empty item"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6 *", "never fires"),
    ],
)
def test_invalid_crons_name_the_problem(expr: str, fragment: str) -> None:
    message = validate_cron(expr)
    assert message is not None and fragment in message


def test_validate_cron_rejects_non_strings() -> None:
    assert validate_cron(None) is not None  # type: ignore[arg-type]
    assert validate_cron(5) is not None  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["Asia/Hong_Kong", "America/New_York", "Europe/London", "UTC"])
def test_valid_timezones(name: str) -> None:
    assert validate_timezone(name) is None


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../../etc/passwd", "Asia/Hong Kong"])
def test_invalid_timezones(name: str) -> None:
    message = validate_timezone(name)
    assert message is not None and "timezone" in message


def test_bad_spec_raises_config_error_naming_file_and_field() -> None:
    bad = ScheduleSpec("p", "0 9 * * MONDAY", "UTC", workflow_file="workflows/p.yaml")
    with pytest.raises(ConfigError) as err:
        next_fire(bad, utc(2026, 1, 1))
    assert err.value.source == "workflows/p.yaml" and err.value.field == "schedule.cron"
    with pytest.raises(ConfigError) as err:
        nowhere = ScheduleSpec("p", "0 9 * * *", "Nowhere/City", workflow_file="w.yaml")
        due_between(nowhere, utc(2026, 1, 1), utc(2026, 1, 2))
    assert err.value.field == "schedule.timezone"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire(ScheduleSpec("p", "0 9 * * *", "UTC"), datetime(2026, 1, 1))


def test_weekday_names_in_hong_kong() -> None:
    s = ScheduleSpec("p", "0 9 * * MON-FRI", "Asia/Hong_Kong")
    # 2026-01-02 is a Friday; 09:00 HKT is 01:00 UTC
    got = due_between(s, utc(2026, 1, 1, 12), utc(2026, 1, 8, 12))
    assert got == [utc(2026, 1, 2, 1), utc(2026, 1, 5, 1), utc(2026, 1, 6, 1), utc(2026, 1, 7, 1), utc(2026, 1, 8, 1)]


def test_next_fire_is_strictly_after() -> None:
    s = ScheduleSpec("p", "0 * * * *", "UTC")
    assert next_fire(s, utc(2026, 1, 1, 5)) == utc(2026, 1, 1, 6)
    assert next_fire(s, utc(2026, 1, 1, 5) - timedelta(microseconds=1)) == utc(2026, 1, 1, 5)
    assert next_fire(s, datetime(2026, 1, 1, 13, 0, tzinfo=UTC).astimezone()) == utc(2026, 1, 1, 14)


def test_due_between_limit_keeps_the_earliest() -> None:
    s = ScheduleSpec("p", "*/10 * * * *", "UTC")
    assert due_between(s, utc(2026, 1, 1), utc(2026, 1, 2), limit=3) == [
        utc(2026, 1, 1, 0, 10),
        utc(2026, 1, 1, 0, 20),
        utc(2026, 1, 1, 0, 30),
    ]
    assert due_between(s, utc(2026, 1, 1), utc(2026, 1, 2), limit=0) == []
    assert len(due_between(s, utc(2026, 1, 1), utc(2026, 1, 2))) == 144


def test_leap_day_schedule() -> None:
    s = ScheduleSpec("p", "0 12 29 2 *", "UTC")
    assert next_fire(s, utc(2026, 1, 1)) == utc(2028, 2, 29, 12)
    assert next_fire(s, utc(2096, 3, 1)) == utc(2104, 2, 29, 12)  # 2100 is not a leap year


ORACLE_EXPRS = [
    "0 9 * * MON-FRI",
    "*/7 3-20/3 * * *",
    "0 0 29 2 *",
    "5 4 1,15 * SUN",
    "0 12 */2 * MON",
    "59 23 31 * *",
    "0 0 * JAN,JUL *",
    "10-20/5 1 * * 5-7",
    "0 0 13 * FRI",
    "*/15 * * * SAT-SUN",
    "0 0 1 */3 *",
    "30 2 * * *",
]


@pytest.mark.parametrize("expr", ORACLE_EXPRS)
def test_matches_croniter_both_directions(expr: str) -> None:
    """Naive wall-clock matching agrees with croniter (which follows the same Vixie rules)."""
    cron = _parse(expr)
    rnd = random.Random(expr)
    for _ in range(200):
        t = datetime(2020, 1, 1) + timedelta(minutes=rnd.randrange(10 * 365 * 1440), seconds=rnd.randrange(60))
        assert cron.next_after(t) == croniter(expr, t).get_next(datetime), t
        start = t.replace(second=0) + timedelta(minutes=1)
        assert cron.at_or_before(t) == croniter(expr, start).get_prev(datetime), t


def test_utc_due_between_matches_croniter_sequence() -> None:
    expr = "*/7 3-20/3 * * 1-5"
    s = ScheduleSpec("p", expr, "UTC")
    it = croniter(expr, datetime(2026, 5, 1))
    expected = [it.get_next(datetime).replace(tzinfo=UTC) for _ in range(300)]
    assert due_between(s, utc(2026, 5, 1), expected[-1]) == expected
    assert expected[0].tzinfo is UTC
    assert all(d.tzinfo == UTC for d in due_between(s, utc(2026, 5, 1), expected[5]))


def _random_field(rnd: random.Random, lo: int, hi: int) -> str:
    items = []
    for _ in range(rnd.choice([1, 1, 1, 2, 3])):
        kind, a = rnd.random(), rnd.randint(lo, hi - 1)
        b = rnd.randint(a + 1, hi)
        if kind < 0.3:
            return "*"
        items.append(
            f"*/{rnd.randint(2, (hi - lo + 1) // 2)}" if kind < 0.45
            else str(a) if kind < 0.65
            else f"{a}-{b}" if kind < 0.85
            else f"{a}-{b}/{rnd.randint(2, max(2, b - a))}"
        )  # fmt: skip
    return ",".join(items)


def test_random_expressions_match_croniter() -> None:
    rnd = random.Random(20260101)
    checked = 0
    for _ in range(400):
        fields = [_random_field(rnd, lo, hi) for lo, hi in ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))]
        expr = " ".join(fields)
        if validate_cron(expr) is not None:
            continue
        cron = _parse(expr)
        if (cron.dom_any and fields[2] != "*") or (cron.dow_any and fields[4] != "*"):
            continue  # croniter is inconsistent when a day field lists every day; see the next test
        for _ in range(5):
            t = datetime(2020, 1, 1) + timedelta(minutes=rnd.randrange(8 * 365 * 1440))
            assert cron.next_after(t) == croniter(expr, t).get_next(datetime), (expr, t)
            assert cron.at_or_before(t) == croniter(expr, t + timedelta(minutes=1)).get_prev(datetime), (expr, t)
            checked += 1
    assert checked > 1500


def test_a_day_field_listing_every_day_does_not_restrict() -> None:
    # "0-6" is every weekday, so only the day of month restricts: the 13th, not every day
    s = ScheduleSpec("p", "0 0 13 * 0-6", "UTC")
    assert due_between(s, utc(2026, 1, 1), utc(2026, 3, 31)) == [utc(2026, 1, 13), utc(2026, 2, 13), utc(2026, 3, 13)]
    both = ScheduleSpec("p", "0 0 13 * FRI", "UTC")  # both restrict: the 13th or any Friday
    assert len(due_between(both, utc(2026, 1, 1), utc(2026, 2, 1))) == 6
