"""Schedules: cron in an IANA timezone, DST-correct due instants, and what one tick should do.

Pure: no I/O and no clock. Every datetime in or out is timezone-aware; results are UTC.

Cron syntax lives in ``treasury.language.cron`` and croniter matches (five fields, names, aliases;
when both day fields are restricted a day matches either one, as in Vixie cron and croniter).

Cron times are wall-clock times in the schedule's timezone. Daylight saving:

- a local time that does not exist (the spring-forward gap) fires once, at the first valid
  instant after the gap: ``30 2 * * *`` on 2026-03-08 in New York fires at 03:00 EDT;
- a local time that happens twice (fall-back) fires once, at its first occurrence;
- several cron times inside one gap collapse into that one instant, so the due instants of a
  schedule are strictly increasing and each is due exactly once.

Parsed crons and next-fire answers are cached, so a tick over thousands of schedules where
nothing is due costs a dictionary lookup and a comparison per schedule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfoNotFoundError

from treasury.errors import ConfigError
from treasury.language.cron import Cron, CronSyntax, parse_cron, validate_cron, validate_timezone
from treasury.language.cron import zone as _zone

__all__ = [
    "CatchUp",
    "Cron",
    "CronSyntax",
    "ScheduleSpec",
    "TickPlan",
    "due_between",
    "next_fire",
    "parse_cron",
    "plan_tick",
    "validate_cron",
    "validate_timezone",
]

_MINUTE = timedelta(minutes=1)
# The cron parser under its former name here (tests and callers use it; one shared cache).
_parse = parse_cron


class CatchUp(StrEnum):
    """What a tick does with due instants that are older than the grace period."""

    NONE = "none"  # record them as missed
    LATEST = "latest"  # run the newest one, record the rest as missed
    ALL = "all"  # run each, up to a cap (the newest), record the rest as missed


@dataclass(frozen=True)
class ScheduleSpec:
    """One workflow's ``schedule:`` block, as the workflow loader hands it over."""

    name: str
    cron: str
    timezone: str
    catchup: CatchUp = CatchUp.LATEST
    inputs: Mapping[str, str] = field(default_factory=dict)
    workflow_file: str = ""
    digest: str = ""


@dataclass(frozen=True)
class TickPlan:
    """What a tick should do for one schedule. Both lists are ascending.

    ``more_missed`` is true when older missed instants exist (after the schedule's last handled
    instant, before ``missed[0]``) that were left out to bound the work.
    """

    fire: list[datetime]
    missed: list[datetime]
    more_missed: bool = False

    @property
    def newest(self) -> datetime | None:
        """The newest instant this plan handles, which becomes the schedule's last due instant."""
        return max(self.fire[-1:] + self.missed[-1:], default=None)


# --------------------------------------------------------------------------- timezones and compiled specs


@lru_cache(maxsize=4096)
def _compile(cron: str, timezone: str) -> tuple[Cron, tzinfo]:
    return parse_cron(cron), _zone(timezone)


def _compiled(spec: ScheduleSpec) -> tuple[Cron, tzinfo]:
    """The spec's parsed cron and zone, cached. Raises ConfigError naming the file and field."""
    try:
        return _compile(spec.cron, spec.timezone)
    except (CronSyntax, ZoneInfoNotFoundError, ValueError, TypeError, AttributeError):
        pass  # say precisely what is wrong, below
    for field_name, problem in (
        ("schedule.cron", validate_cron(spec.cron)),
        ("schedule.timezone", validate_timezone(spec.timezone)),
    ):
        if problem:
            raise ConfigError(problem, source=spec.workflow_file or spec.name, field=field_name)
    raise AssertionError("unreachable: the spec compiled after all")  # pragma: no cover


# --------------------------------------------------------------------------- wall clock -> UTC


def _to_utc(naive: datetime, tz: tzinfo) -> datetime:
    """The instant a local wall time fires: its first occurrence, or the end of a DST gap."""
    utc = naive.replace(tzinfo=tz).astimezone(UTC)  # fold=0 is the first occurrence
    if utc.astimezone(tz).replace(tzinfo=None) == naive:
        return utc
    return _gap_end(naive, tz)


@lru_cache(maxsize=1024)
def _gap_end(naive: datetime, tz: tzinfo) -> datetime:
    """First instant after the gap holding ``naive``: the transition itself, by bisection.

    zoneinfo does not expose transitions; reading ``naive`` with the offsets before and after
    the gap brackets the transition, and the wall clock is monotonic across it.
    """
    lo, hi = sorted(int(naive.replace(tzinfo=tz, fold=f).timestamp()) for f in (0, 1))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) > naive:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def _forward(cron: Cron, tz: tzinfo, after: datetime) -> Iterator[datetime]:
    """Due instants strictly after UTC ``after``, ascending, each once."""
    naive = after.astimezone(tz).replace(tzinfo=None)
    last = after
    while True:
        naive = cron.next_after(naive)
        due = _to_utc(naive, tz)
        # not later than the last one: a repeat of a gap's end, or (when ``after`` is in a
        # repeated hour's second pass) a wall time whose first occurrence is already behind us
        if due > last:
            last = due
            yield due


def _backward(cron: Cron, tz: tzinfo, before: datetime) -> Iterator[datetime]:
    """Due instants at or before UTC ``before``, descending, each once."""
    wall = before.astimezone(tz)
    naive = wall.replace(tzinfo=None)
    if wall.fold:  # second pass of a repeated hour: later wall times of the first pass are earlier
        offsets = (wall.replace(fold=0).utcoffset(), wall.utcoffset())
        if offsets[0] is not None and offsets[1] is not None:
            naive += max(offsets[0] - offsets[1], timedelta(0))
    newest: datetime | None = None
    while True:
        naive = cron.at_or_before(naive)
        due = _to_utc(naive, tz)
        naive -= _MINUTE
        if due <= before and (newest is None or due < newest):
            newest = due
            yield due


@lru_cache(maxsize=65536)
def _next_cached(cron: str, timezone: str, after: datetime) -> datetime:
    return next(_forward(*_compile(cron, timezone), after))


def next_fire(spec: ScheduleSpec, after: datetime) -> datetime:
    """The first due instant strictly after ``after`` (aware), in UTC.

    Raises:
        ConfigError: the spec's cron or timezone is invalid.
        ValueError: ``after`` is naive.
    """
    _compiled(spec)
    return _next_cached(spec.cron, spec.timezone, _utc(after, "after"))


def next_fire_screened(spec: ScheduleSpec, after: datetime) -> datetime:
    """:func:`next_fire` for a spec whose cron and zone are known to be valid, and an aware ``after``.

    The per-tick check over every schedule; it skips the validation and conversion that
    :func:`next_fire` does for callers it cannot trust.
    """
    return _next_cached(spec.cron, spec.timezone, after.astimezone(UTC))


def due_between(spec: ScheduleSpec, start: datetime, end: datetime, limit: int | None = None) -> list[datetime]:
    """Due instants in ``(start, end]``, ascending and each once; at most ``limit`` (the earliest).

    Raises:
        ConfigError: the spec's cron or timezone is invalid.
        ValueError: ``start`` or ``end`` is naive.
    """
    cron, tz = _compiled(spec)
    start, end = _utc(start, "start"), _utc(end, "end")
    found: list[datetime] = []
    if limit is not None and limit <= 0:
        return found
    for due in _forward(cron, tz, start):
        if due > end:
            break
        found.append(due)
        if limit is not None and len(found) >= limit:
            break
    return found


def plan_tick(
    spec: ScheduleSpec,
    *,
    last_due: datetime | None,
    now: datetime,
    first_seen: datetime | None,
    catchup_cap: int = 100,
    grace: timedelta = timedelta(seconds=60),
    missed_limit: int = 10_000,
) -> TickPlan:
    """Decide what to do now with the due instants in ``(last_due or first_seen, now]``.

    The later of ``last_due`` and ``first_seen`` is the start, so a schedule first seen (or
    resumed, or changed) fires nothing from before then. An instant at most ``grace`` old is on
    time and always fires. Older ones follow ``spec.catchup``: ``none`` records all as missed,
    ``latest`` fires the newest and records the rest, ``all`` fires the newest ``catchup_cap``
    and records the rest. At most ``missed_limit`` missed instants are listed (the newest);
    ``more_missed`` says older ones were left out.

    Raises:
        ConfigError: the spec's cron or timezone is invalid.
        ValueError: a datetime is naive.
    """
    cron, tz = _compiled(spec)
    now = _utc(now, "now")
    starts = [_utc(d, "last_due/first_seen") for d in (last_due, first_seen) if d is not None]
    start = max(starts, default=now)
    if start >= now or _next_cached(spec.cron, spec.timezone, start) > now:
        return TickPlan([], [])  # the common case, answered from the cache
    quota = {CatchUp.NONE: 0, CatchUp.LATEST: 1, CatchUp.ALL: max(catchup_cap, 0)}[CatchUp(spec.catchup)]
    on_time: list[datetime] = []
    late: list[datetime] = []
    missed: list[datetime] = []
    more = False
    for due in _backward(cron, tz, now):  # newest first, so caps keep the newest
        if due <= start:
            break
        if now - due <= grace:
            on_time.append(due)
        elif len(late) < quota:
            late.append(due)
        elif len(missed) < missed_limit:
            missed.append(due)
        else:
            more = True
            break
    return TickPlan(fire=(on_time + late)[::-1], missed=missed[::-1], more_missed=more)
