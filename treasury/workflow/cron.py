"""Cron expressions: parsing, validation, and matching over naive wall-clock minutes.

Five fields (minute hour day-of-month month day-of-week) with ``*``, lists, ranges, steps,
``JAN``-``DEC`` and ``SUN``-``SAT`` names (``7`` is Sunday too) and the aliases ``@hourly
@daily @midnight @weekly @monthly @yearly @annually``. When both day fields are restricted
(neither covers every day), a day matches either one, as in Vixie cron and croniter.

Matching knows nothing of timezones: ``treasury.workflow.schedule`` turns the wall-clock
minutes found here into instants. Parsed crons are cached.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
_MAX_STEPS = 100_000  # a valid cron matches within 8 years; this only stops a bug from spinning

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12), ("day-of-week", 0, 7))
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}
_DOWS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # the most each month can have


class CronSyntax(ValueError):
    """A cron expression that cannot be parsed, or never fires; the message says why."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed cron over naive wall-clock minutes: finds the next and previous match."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    doms: tuple[int, ...]
    months: tuple[int, ...]
    dows: frozenset[int]  # 0 = Sunday
    dom_any: bool
    dow_any: bool

    def day_ok(self, t: datetime) -> bool:
        if self.dom_any:
            return self.dow_any or (t.weekday() + 1) % 7 in self.dows
        if self.dow_any:
            return t.day in self.doms
        return t.day in self.doms or (t.weekday() + 1) % 7 in self.dows

    def next_after(self, t: datetime) -> datetime:
        """The first matching minute strictly after naive ``t``."""
        t = t.replace(second=0, microsecond=0) + _MINUTE
        for _ in range(_MAX_STEPS):
            if t.month not in self.months:
                month = _after(self.months, t.month)
                t = datetime(t.year, month, 1) if month is not None else datetime(t.year + 1, self.months[0], 1)
            elif not self.day_ok(t):
                # when only the day of month restricts, jump straight to its next value
                day = _after(self.doms, t.day) if self.dow_any else None
                if day is not None and day <= _month_days(t):
                    t = datetime(t.year, t.month, day)
                else:
                    t = datetime(t.year, t.month, t.day) + _DAY
            elif t.hour not in self.hours:
                hour = _after(self.hours, t.hour)
                t = t.replace(hour=hour, minute=0) if hour is not None else datetime(t.year, t.month, t.day) + _DAY
            elif t.minute not in self.minutes:
                minute = _after(self.minutes, t.minute)
                t = t.replace(minute=minute) if minute is not None else t.replace(minute=0) + _HOUR
            else:
                return t
        raise AssertionError("cron search did not converge")  # pragma: no cover - validated crons match

    def at_or_before(self, t: datetime) -> datetime:
        """The last matching minute at or before naive ``t``."""
        t = t.replace(second=0, microsecond=0)
        for _ in range(_MAX_STEPS):
            if t.month not in self.months:
                month = _before(self.months, t.month)
                year, month = (t.year, month) if month is not None else (t.year - 1, self.months[-1])
                t = datetime(year, month, calendar.monthrange(year, month)[1], 23, 59)
            elif not self.day_ok(t):
                t = datetime(t.year, t.month, t.day) - _MINUTE
            elif t.hour not in self.hours:
                hour = _before(self.hours, t.hour)
                t = t.replace(hour=hour, minute=59) if hour is not None else datetime(t.year, t.month, t.day) - _MINUTE
            elif t.minute not in self.minutes:
                minute = _before(self.minutes, t.minute)
                t = t.replace(minute=minute) if minute is not None else t.replace(minute=0) - _MINUTE
            else:
                return t
        raise AssertionError("cron search did not converge")  # pragma: no cover


def _after(values: tuple[int, ...], value: int) -> int | None:
    """The smallest of sorted ``values`` above ``value``, if any."""
    i = bisect_right(values, value)
    return values[i] if i < len(values) else None


def _before(values: tuple[int, ...], value: int) -> int | None:
    """The largest of sorted ``values`` below ``value``, if any."""
    i = bisect_left(values, value)
    return values[i - 1] if i else None


def _month_days(t: datetime) -> int:
    return calendar.monthrange(t.year, t.month)[1]


def _value(token: str, index: int) -> int:
    name, lo, hi = _FIELDS[index]
    names = _MONTHS if index == 3 else _DOWS if index == 4 else {}
    if token.isdigit():
        value = int(token)
    elif token.upper() in names:
        value = names[token.upper()]
    else:
        kind = "a number or a name" if names else "a number"
        raise CronSyntax(
            f"{name} field: {token!r} is not {kind} (cron extensions such as L, W, # and ? are not supported)"
        )
    if not lo <= value <= hi:
        raise CronSyntax(f"{name} field: {value} is out of range {lo}-{hi}")
    return value


def _field(text: str, index: int) -> tuple[int, ...]:
    """Parse one field into its sorted values."""
    name, lo, hi = _FIELDS[index]
    if index == 4:
        hi = 6  # 7 is accepted as Sunday but stored as 0
    values: set[int] = set()
    for item in text.split(","):
        span, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronSyntax(f"{name} field: step {step_text!r} in {item!r} must be a whole number >= 1")
            step = int(step_text)
        if span == "*":
            first, last = lo, hi
        elif "-" in span:
            a, _, b = span.partition("-")
            first, last = _value(a, index), _value(b, index)
            if index == 4 and last == 0 and first > 0:
                last = 7  # "FRI-SUN": Sunday closes the week
            if first > last:
                raise CronSyntax(f"{name} field: range {span!r} runs backwards")
        elif span:
            first = _value(span, index)
            last = hi if slash else first  # "5/15" means 5 to the end, every 15
        else:
            raise CronSyntax(f"{name} field: empty item in {text!r}")
        values.update(v % 7 if index == 4 else v for v in range(first, last + 1, step))
    return tuple(sorted(values))


@lru_cache(maxsize=4096)
def parse_cron(expr: str) -> Cron:
    """Parse ``expr`` (cached).

    Raises:
        CronSyntax: a field is malformed or out of range, or the cron can never fire.
    """
    text = _ALIASES.get(expr.strip().lower(), expr)
    parts = text.split()
    if len(parts) != 5:
        raise CronSyntax(
            f"cron {expr!r} has {len(parts)} fields; expected 5: minute hour day-of-month month day-of-week"
        )
    minutes, hours, doms, months, dows = (_field(part, i) for i, part in enumerate(parts))
    # a day field that covers every day (``*``, ``*/1``, ``0-6``) does not restrict, as in croniter
    dom_any, dow_any = len(doms) == 31, len(dows) == 7
    if not dom_any and dow_any and not any(d <= _DAYS_IN_MONTH[m] for m in months for d in doms):
        raise CronSyntax(f"cron {expr!r} never fires: no month in it has any of its days of month")
    return Cron(minutes, hours, doms, months, frozenset(dows), dom_any, dow_any)


def validate_cron(expr: str) -> str | None:
    """Check a cron expression. Returns None when it is valid, else a message naming the problem."""
    if not isinstance(expr, str) or not expr.strip():
        return "cron must be a non-empty string such as '0 9 * * MON-FRI'"
    try:
        parse_cron(expr)
    except CronSyntax as exc:
        return str(exc)
    return None
