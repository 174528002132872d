"""The ``schedule:`` block's grammar: cron expressions (parsed and validated here, matched over
naive wall-clock minutes by croniter) and the IANA timezone they are read in.

Five fields (minute hour day-of-month month day-of-week) with ``*``, lists, ranges, steps,
``JAN``-``DEC`` and ``SUN``-``SAT`` names (``7`` is Sunday too) and the aliases ``@hourly
@daily @midnight @weekly @monthly @yearly @annually``. When both day fields are restricted
(neither covers every day), a day matches either one, as in Vixie cron and croniter.

We parse and validate (so messages name the field and what is wrong, and the semantics above
are ours), then hand croniter a normalised expression of plain numbers to walk. Matching
knows nothing of timezones: ``treasury.language.timing`` turns the wall-clock
minutes found here into instants. Parsed crons are cached.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

_MINUTE = timedelta(minutes=1)
_EPOCH = datetime(2000, 1, 1)

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
_SIZES = (60, 24, 31, 12, 7)  # values a field has when it covers everything (day-of-week: 0-6)
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # the most each month can have


class CronSyntax(ValueError):
    """A cron expression that cannot be parsed, or never fires; the message says why."""


class _Walker:
    """One croniter per parsed cron, reused under a lock (building one costs ~10x a step)."""

    def __init__(self, expr: str) -> None:
        self._lock = threading.Lock()
        # day_or=True (croniter's default): both day fields restricted means either matches
        self._iter = croniter(expr, _EPOCH, day_or=True)

    def next_after(self, t: datetime) -> datetime:
        with self._lock:
            self._iter.set_current(t, force=True)
            return self._iter.get_next(datetime)

    def before(self, t: datetime) -> datetime:
        with self._lock:
            self._iter.set_current(t, force=True)
            return self._iter.get_prev(datetime)


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed cron over naive wall-clock minutes; croniter finds the next and previous match.

    ``expr`` is the expression croniter is given: numbers only (names, ``7`` for Sunday, ``FRI-SUN``,
    ``5/15`` and aliases already expanded), and ``*`` for a day field that covers every day.
    """

    expr: str
    dom_any: bool
    dow_any: bool
    _walker: _Walker = field(compare=False, repr=False)

    def next_after(self, t: datetime) -> datetime:
        """The first matching minute strictly after naive ``t``."""
        return self._walker.next_after(t)

    def at_or_before(self, t: datetime) -> datetime:
        """The last matching minute at or before naive ``t``."""
        return self._walker.before(t.replace(second=0, microsecond=0) + _MINUTE)


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
    fields = [_field(part, i) for i, part in enumerate(parts)]
    _, _, doms, months, dows = fields
    # A day field that covers every day (``*``, ``*/1``, ``0-6``) does not restrict. croniter
    # would OR a listed-out "0-6" with the day of month (every day); we give it ``*`` instead.
    dom_any, dow_any = len(doms) == 31, len(dows) == 7
    if not dom_any and dow_any and not any(d <= _DAYS_IN_MONTH[m] for m in months for d in doms):
        raise CronSyntax(f"cron {expr!r} never fires: no month in it has any of its days of month")
    normal = " ".join(
        "*" if len(values) == _SIZES[i] else ",".join(map(str, values)) for i, values in enumerate(fields)
    )
    return Cron(normal, dom_any, dow_any, _Walker(normal))


def validate_cron(expr: str) -> str | None:
    """Check a cron expression. Returns None when it is valid, else a message naming the problem."""
    if not isinstance(expr, str) or not expr.strip():
        return "cron must be a non-empty string such as '0 9 * * MON-FRI'"
    try:
        parse_cron(expr)
    except CronSyntax as exc:
        return str(exc)
    return None


def validate_timezone(name: str) -> str | None:
    """Check an IANA timezone name. Returns None when it is known, else a message."""
    if not isinstance(name, str) or not name.strip():
        return "timezone must be an IANA name such as 'Asia/Hong_Kong'"
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown timezone {name!r}; use an IANA name such as 'Asia/Hong_Kong' or 'UTC'"
    return None


@lru_cache(maxsize=1024)
def zone(name: str) -> tzinfo:
    """The IANA timezone ``name`` (cached). Raises ZoneInfoNotFoundError or ValueError."""
    return ZoneInfo(name)
