"""The database side of schedules: each tick starts every due run exactly once.

Exactly one run per (schedule, due instant), whether two beats run at once, a beat restarts or
a tick is replayed after a crash, because of three guards:

1. Each schedule with work is handled in a transaction of its own that first locks its
   ``schedule_state`` row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite serializes writers
   with ``BEGIN IMMEDIATE``) and plans again from the committed ``last_due_at``. A second beat
   waits, then finds nothing left to do.
2. ``schedule_ticks`` has one row per (schedule, due instant). Its insert runs in a SAVEPOINT;
   a conflict means another beat already handled that instant.
3. ``runs`` is unique on (schedule, due_at); ``start_run`` inserts inside the same transaction.

The transaction of a schedule holds its run, its tick rows, its audit events and its new
``last_due_at``, so a crash leaves all of them or none. A failure in one schedule is logged
and reported, and the others keep firing; the failed one is tried again on the next tick.

What happens to a due instant besides firing on time:

- older than the grace period (beat was down): the schedule's catch-up policy (``plan_tick``);
- due while the schedule is paused: never runs; ``resume`` starts afresh and its audit event
  counts the instants that did not run;
- due while the workflow file is invalid: held (a ``skipped_invalid`` tick with the file's
  problem as its reason, audited as ``schedule.held``) from the cron and timezone last seen
  valid, and ``last_due_at`` stays where it was. Once the file is mended, the catch-up policy
  decides the held instants like any the scheduler did not see in time: fired (a late one
  with ``latest`` or ``all``, or one still within the grace period) or missed, reason kept;
- a changed cron or timezone, or a file that comes back after removal, starts afresh: nothing
  from before that moment fires. A change elsewhere in the file does not.

``tick`` must be given every schedule there is: one missing from ``specs`` (and not in
``invalid``) is treated as removed.

This module owns the tick and the firing; ``schedule_rows`` keeps the state rows in step with
the files and reports invalid files, ``schedule_admin`` pauses, resumes and lists schedules, and
``schedule`` (with ``cron``) plans what is due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache, partial
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Connection, Engine, Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from treasury.audit.log import AuditSink
from treasury.clock import Clock
from treasury.language.timing import (
    ScheduleSpec,
    TickPlan,
    due_between,
    next_fire,
    next_fire_screened,
    plan_tick,
    validate_cron,
    validate_timezone,
)
from treasury.schedules.admin import ScheduleAdmin, ScheduleStatus
from treasury.schedules.state import (
    NOT_RUNNING,
    STATE,
    TICK_READ,
    held_spec,
    iso,
    lock,
    report_invalid,
    restarts,
    start_of,
    sync,
)
from treasury.schedules.tables import (
    TICK_FIRED,
    TICK_MISSED,
    TICK_SKIPPED_INVALID,
    schedule_invalid,
    schedule_state,
    schedule_ticks,
)
from treasury.store.db import insert_ignoring_conflicts
from treasury.store.tables import runs

log = logging.getLogger(__name__)


class StartRun(Protocol):
    """Start the run for one due instant inside ``conn``'s transaction; return its id.

    The run layer inserts into ``runs`` with ``schedule=spec.name``, ``due_at=due_at`` and
    ``requested_by="scheduler"``.
    """

    def __call__(self, conn: Connection, spec: ScheduleSpec, due_at: datetime) -> str: ...


class Fired(NamedTuple):
    schedule: str
    due_at: datetime
    run_id: str


@dataclass
class TickReport:
    """What one tick did. ``errors`` are (schedule, message) left for the next tick."""

    at: datetime
    fired: list[Fired] = field(default_factory=list)
    missed: list[tuple[str, datetime]] = field(default_factory=list)
    skipped_invalid: list[tuple[str, datetime]] = field(default_factory=list)
    already_handled: list[tuple[str, datetime]] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (file, message) newly reported
    errors: list[tuple[str, str]] = field(default_factory=list)

    def merge(self, other: TickReport) -> None:
        for name in ("fired", "missed", "skipped_invalid", "already_handled"):
            getattr(self, name).extend(getattr(other, name))


@lru_cache(maxsize=4096)
def _problem(cron: str, timezone: str) -> str | None:
    return validate_cron(cron) or validate_timezone(timezone)


def screen(specs: Sequence[ScheduleSpec]) -> tuple[list[ScheduleSpec], list[tuple[str, str]]]:
    """Split specs into usable ones (sorted by name) and (file, message) for the rest.

    A spec is unusable when its cron or timezone is invalid, or when an earlier file (by path)
    already defines a schedule of the same name.
    """
    usable: dict[str, ScheduleSpec] = {}
    bad: list[tuple[str, str]] = []
    for spec in sorted(specs, key=lambda s: (s.name, s.workflow_file)):
        problem = _problem(spec.cron, spec.timezone)
        if problem is None and spec.name in usable:
            problem = f"schedule {spec.name!r} is already defined in {usable[spec.name].workflow_file}"
        if problem:
            bad.append((spec.workflow_file or spec.name, problem))
        else:
            usable[spec.name] = spec
    return list(usable.values()), bad


class Scheduler:
    """Fires due schedules into runs, exactly once per (schedule, due instant)."""

    def __init__(
        self,
        engine: Engine,
        *,
        start_run: StartRun,
        clock: Clock,
        actor: str = "scheduler",
        audit: AuditSink | None = None,
        catchup_cap: int = 100,
        grace: timedelta = timedelta(seconds=60),
        missed_limit: int = 10_000,
    ) -> None:
        self._engine = engine
        self._start_run = start_run
        self._clock = clock
        self._actor = actor
        self._audit_hook = audit
        self._catchup_cap = catchup_cap
        self._grace = grace
        self._missed_limit = missed_limit
        self._logged_invalid: dict[str, str] = {}  # log each invalid file once per change per process
        # the newest instant this process has held for a schedule whose file is invalid: the
        # cheap "anything new to hold?" check, without a transaction (the database decides)
        self._held_through: dict[str, datetime] = {}

    # ------------------------------------------------------------------ tick

    def tick(self, specs: Sequence[ScheduleSpec], *, invalid: Sequence[tuple[str, str]] = ()) -> TickReport:
        """Handle every instant due by now: fire, record as missed, or skip for an invalid file.

        ``specs`` are all valid schedules; ``invalid`` are (file, message) for workflow files that
        failed validation: each is audited once per change, and the schedules they defined record
        their due instants as ``skipped_invalid``. Raises only when the database itself fails
        before any schedule is handled; per-schedule failures land in ``TickReport.errors``.
        """
        now = self._clock.now()
        report = TickReport(at=now)
        usable, bad = screen(specs)
        bad_files = dict(invalid)
        bad_files.update(bad)
        with self._engine.begin() as conn:
            states = {row.name: row for row in conn.execute(TICK_READ).all()}
            reported = {row.file: row.message for row in conn.execute(select(schedule_invalid))}
        restarted = sync(self._engine, usable, states, bad_files, now)
        report.invalid.extend(report_invalid(self._engine, self._audit, self._logged_invalid, bad_files, reported, now))
        for spec in usable:
            state = states.get(spec.name)
            if state is None or state.paused or spec.name in restarted:
                continue  # new, paused or restarted just now: nothing can be due yet
            # screen() has checked the cron and zone, so the cached lookup alone answers the
            # cheap question for 10,000 schedules: is anything due?
            if next_fire_screened(spec, start_of(state)) <= now:
                self._guarded(spec.name, report, partial(self._fire_schedule, spec, now))
        names = {spec.name for spec in usable}
        for state in states.values():
            # a schedule whose file is invalid now; not a paused one, nor one whose file had been
            # removed (which name the returning file defines is unknown)
            held = state.workflow_file in bad_files and not state.paused and state.removed_at is None
            if held and state.name not in names:
                problem = (bad_files[state.workflow_file].splitlines() or ["the file does not validate"])[0]
                self._guarded(state.name, report, partial(self._skip_invalid, state, now, problem))
        return report

    def _plan(self, spec: ScheduleSpec, state: Row[Any], now: datetime) -> TickPlan:
        return plan_tick(
            spec,
            last_due=state.last_due_at,
            now=now,
            first_seen=state.effective_at,
            catchup_cap=self._catchup_cap,
            grace=self._grace,
            missed_limit=self._missed_limit,
        )

    def _guarded(self, name: str, report: TickReport, work: Callable[[], TickReport]) -> None:
        try:
            report.merge(work())
        except Exception as exc:  # one schedule's failure must not stop the others
            log.exception("schedule %s: tick failed; it will be retried on the next tick", name)
            report.errors.append((name, f"{type(exc).__name__}: {exc}"))

    # ------------------------------------------------------------------ one schedule

    def _lock(self, conn: Connection, name: str) -> Row[Any] | None:
        return lock(conn, name)

    def _fire_schedule(self, spec: ScheduleSpec, now: datetime) -> TickReport:
        done = TickReport(at=now)
        with self._engine.begin() as conn:
            state = self._lock(conn, spec.name)
            if state is None or state.paused or restarts(state, spec):
                return done
            plan = self._plan(spec, state, now)
            if plan.newest is None:
                return done  # another beat got here first
            missed = self._record(conn, spec.name, plan.missed, TICK_MISSED, now,
                                  reason=NOT_RUNNING)
            if missed or plan.more_missed:
                payload: dict[str, Any] = {
                    "schedule": spec.name,
                    "catchup": str(spec.catchup),
                    "count": len(missed),
                    "due_at": iso(missed),
                }
                if plan.more_missed:  # too many to list: say which span holds the rest
                    payload["also_missed_between"] = [start_of(state).isoformat(), plan.missed[0].isoformat()]
                self._audit(conn, "schedule.missed", at=now, payload=payload)
            for due in plan.fire:
                run_id = self._fire(conn, spec, due, now)
                if run_id is None:
                    done.already_handled.append((spec.name, due))
                    continue
                payload = {"schedule": spec.name, "due_at": due.isoformat(), "workflow_file": spec.workflow_file}
                self._audit(conn, "schedule.fired", at=now, run_id=run_id, payload=payload)
                done.fired.append(Fired(spec.name, due, run_id))
            conn.execute(
                update(schedule_state).where(STATE.name == spec.name).values(last_due_at=plan.newest, updated_at=now)
            )
        done.missed = [(spec.name, due) for due in missed]
        return done

    def _fire(self, conn: Connection, spec: ScheduleSpec, due: datetime, now: datetime) -> str | None:
        """Claim the tick and start its run; None when another beat (or run) already has it."""
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(schedule_ticks).values(schedule=spec.name, due_at=due, status=TICK_FIRED, created_at=now)
                )
        except IntegrityError:
            # held while the file was invalid: the catch-up policy now says it runs
            claimed = conn.execute(
                update(schedule_ticks)
                .where(schedule_ticks.c.schedule == spec.name, schedule_ticks.c.due_at == due,
                       schedule_ticks.c.status == TICK_SKIPPED_INVALID)
                .values(status=TICK_FIRED)
            ).rowcount
            if not claimed:
                return None
        try:
            with conn.begin_nested():
                run_id = self._start_run(conn, spec, due)
        except IntegrityError:
            existing = conn.execute(
                select(runs.c.id).where(runs.c.schedule == spec.name, runs.c.due_at == due)
            ).scalar_one_or_none()
            if existing is None:
                raise  # not the (schedule, due_at) guard: a real failure
            log.warning("schedule %s: a run for %s already exists (%s)", spec.name, due.isoformat(), existing)
            self._link(conn, spec.name, due, existing)
            return None
        self._link(conn, spec.name, due, run_id)
        return run_id

    def _link(self, conn: Connection, name: str, due: datetime, run_id: str) -> None:
        conn.execute(
            update(schedule_ticks)
            .where(schedule_ticks.c.schedule == name, schedule_ticks.c.due_at == due)
            .values(run_id=run_id)
        )

    def _record(
        self, conn: Connection, name: str, dues: Sequence[datetime], status: str, now: datetime,
        *, reason: str | None = None,
    ) -> list[datetime]:
        """Insert tick rows, skipping instants already recorded; returns those inserted, ascending.

        Recording instants as missed also decides the held ones among them (their reason, the
        file's problem, is kept); they are returned too.
        """
        if not dues:
            return []
        stmt = insert_ignoring_conflicts(conn, schedule_ticks).returning(schedule_ticks.c.due_at)
        rows = list(conn.execute(
            stmt, [dict(schedule=name, due_at=due, status=status, reason=reason, created_at=now) for due in dues]
        ).scalars())
        if status == TICK_MISSED:
            t = schedule_ticks.c
            rows += conn.execute(
                update(schedule_ticks)
                .where(t.schedule == name, t.status == TICK_SKIPPED_INVALID, t.due_at >= dues[0], t.due_at <= dues[-1])
                .values(status=TICK_MISSED)
                .returning(t.due_at)
            ).scalars()
        return sorted(rows)

    def _skip_invalid(self, seen: Row[Any], now: datetime, problem: str) -> TickReport:
        """Hold the due instants of a schedule whose workflow file is invalid (``problem``).

        They are recorded with the problem as their reason, and ``last_due_at`` does not move:
        once the file is mended, the catch-up policy decides them (see ``_fire_schedule``).
        """
        done = TickReport(at=now)
        spec = held_spec(seen)
        start = max(start_of(seen), self._held_through.get(spec.name, start_of(seen)))
        if next_fire(spec, start) > now:
            return done  # the common case, from the cache and without a transaction
        t = schedule_ticks.c
        with self._engine.begin() as conn:
            state = self._lock(conn, spec.name)
            if state is None or state.paused or state.removed_at is not None:
                return done
            base = start_of(state)
            newest_held = conn.execute(
                select(func.max(t.due_at)).where(t.schedule == spec.name, t.due_at > base)
            ).scalar_one_or_none()
            start = max(base, newest_held) if newest_held is not None else base
            dues = due_between(spec, start, now, limit=self._missed_limit)  # the rest: later ticks
            held = self._record(conn, spec.name, dues, TICK_SKIPPED_INVALID, now, reason=problem) if dues else []
            if held:
                payload = {
                    "schedule": spec.name,
                    "reason": "workflow file is invalid",
                    "error": problem,
                    "status": TICK_SKIPPED_INVALID,
                    "workflow_file": spec.workflow_file,
                    "count": len(held),
                    "due_at": iso(held),
                    "then": "the schedule's catch-up policy decides them once the file is mended",
                }
                self._audit(conn, "schedule.held", at=now, payload=payload)
        self._held_through[spec.name] = dues[-1] if dues else start
        done.skipped_invalid = [(spec.name, due) for due in held]
        return done

    def _audit(
        self,
        conn: Connection,
        type_: str,
        *,
        at: datetime,
        actor: str | None = None,
        run_id: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        if self._audit_hook is not None:
            self._audit_hook(conn, type=type_, actor=actor or self._actor, at=at, run_id=run_id, payload=payload)

    # ------------------------------------------------------------------ pause / resume / status

    def _admin(self) -> ScheduleAdmin:
        return ScheduleAdmin(self._engine, self._clock, audit=self._audit, lock=self._lock,
                             missed_limit=self._missed_limit)

    def pause(self, name: str, *, by: str, specs: Sequence[ScheduleSpec] = ()) -> None:
        """Pause a schedule: nothing fires until it is resumed. Pausing a paused one does nothing.

        ``specs`` (the schedules in the workflow files) lets a schedule that beat has not seen
        yet be paused. Raises ParameterError for an unknown schedule or an empty ``by``.
        """
        self._admin().pause(name, by=by, specs=specs)

    def resume(self, name: str, *, by: str, specs: Sequence[ScheduleSpec] = ()) -> None:
        """Resume a paused schedule. Instants that fell due while it was paused never run;
        the audit event counts them. Resuming a running one does nothing.

        Raises ParameterError for an unknown schedule or an empty ``by``.
        """
        self._admin().resume(name, by=by, specs=specs)

    def status(
        self, specs: Sequence[ScheduleSpec], invalid: Sequence[tuple[str, str]] = ()
    ) -> list[ScheduleStatus]:
        """Each schedule with its next fire time (UTC and local), last run and paused state;
        schedules held because their file is in ``invalid`` are listed with their problem."""
        return self._admin().status(specs, invalid)
