"""What a person does with schedules: pause, resume, and list them with their status.

``Scheduler.pause``/``resume``/``status`` delegate here, so callers keep using the scheduler.
A pause is a flag on the schedule's ``schedule_state`` row, changed under the same row lock
the tick takes; a resume starts the schedule afresh, and its audit event counts the instants
that fell due while it was paused (they never run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, Row, and_, func, select, update

from treasury.clock import Clock
from treasury.errors import ConfigError, ParameterError
from treasury.language.timing import ScheduleSpec, due_between, next_fire
from treasury.schedules.state import (
    NOT_RUNNING,
    STATE,
    AuditFn,
    held_spec,
    iso,
    new_state,
    start_of,
)
from treasury.schedules.tables import (
    TICK_FIRED,
    TICK_MISSED,
    TICK_SKIPPED_INVALID,
    schedule_state,
    schedule_ticks,
)
from treasury.store.db import insert_ignoring_conflicts

# the tick's log: one logger for the scheduler and the parts it is made of
log = logging.getLogger("treasury.schedules.tick")

LockFn = Callable[[Connection, str], Row[Any] | None]


@dataclass(frozen=True)
class MissedTime:
    """A due instant that did not fire, and why.

    ``status`` is ``missed`` (it never runs) or ``held`` (it fell due while the workflow file
    was broken; the schedule's catch-up policy decides it once the file is mended).
    """

    due_at: datetime
    due_local: datetime
    status: str
    why: str


def why_missed(reason: str | None, workflow_file: str) -> str:
    """Say why an instant did not fire on time, from its tick's recorded reason.

    A file problem ``FILE:LINE:COL: message`` reads ``workflow file broken (line LINE: message)``.
    """
    if reason is None or reason == NOT_RUNNING:
        return NOT_RUNNING
    text = reason
    if workflow_file and text.startswith(workflow_file + ":"):
        line, _, rest = text[len(workflow_file) + 1:].partition(":")
        col, sep, message = rest.partition(":")
        if line.isdigit() and col.isdigit() and sep:
            text = f"line {line}: {message.strip()}"
    return f"workflow file broken ({text})"


@dataclass(frozen=True)
class ScheduleStatus:
    """One line of ``treasury schedules``. ``next_fire_*`` is None when the spec is invalid."""

    name: str
    workflow_file: str
    timezone: str
    cron: str
    catchup: str
    paused: bool
    paused_by: str | None
    next_fire_utc: datetime | None
    next_fire_local: datetime | None
    last_due_at: datetime | None  # the last due instant handled: fired, missed or skipped
    last_run_id: str | None  # the run of the newest fired instant
    last_run_due_at: datetime | None = None  # that instant
    # why the schedule is held: its workflow file no longer validates (it does not fire, and its
    # due instants are recorded as skipped until the file is mended); cron and timezone are then
    # the last valid ones
    problem: str | None = None
    # the newest instants that did not fire, newest first (at most ``MISSED_SHOWN``), and how
    # many there are in all
    missed: tuple[MissedTime, ...] = ()
    missed_total: int = 0


MISSED_SHOWN = 20


def _missed(spec: ScheduleSpec, state: Row[Any] | None, rows: list[Row[Any]]) -> tuple[MissedTime, ...]:
    zone = ZoneInfo(spec.timezone)
    out = []
    for row in rows:
        # held only while nothing has decided it: not once the schedule started afresh (a new
        # cron or timezone, a resume) or while it is paused
        held = (row.status == TICK_SKIPPED_INVALID and state is not None and not state.paused
                and row.due_at > start_of(state))
        out.append(MissedTime(row.due_at, row.due_at.astimezone(zone), "held" if held else "missed",
                              why_missed(row.reason, spec.workflow_file)))
    return tuple(out)


def _status(
    spec: ScheduleSpec, state: Row[Any] | None, nxt: datetime | None, last_run: tuple[Any, Any] | None,
    catchup: str, problem: str | None = None, missed: list[Row[Any]] | None = None,
) -> ScheduleStatus:
    run_id, run_due_at = last_run or (None, None)
    if state is not None and state.paused:
        nxt = None  # nothing fires until it is resumed
    missed = missed or []
    return ScheduleStatus(
        name=spec.name,
        workflow_file=spec.workflow_file,
        timezone=spec.timezone,
        cron=spec.cron,
        catchup=catchup,
        paused=bool(state is not None and state.paused),
        paused_by=state.paused_by if state is not None else None,
        next_fire_utc=nxt,
        next_fire_local=nxt.astimezone(ZoneInfo(spec.timezone)) if nxt else None,
        last_due_at=state.last_due_at if state is not None else None,
        last_run_id=run_id,
        last_run_due_at=run_due_at,
        problem=problem,
        missed=_missed(spec, state, missed),
        missed_total=missed[0].total if missed else 0,
    )


@dataclass(frozen=True)
class ScheduleAdmin:
    """Pause, resume and status over the scheduler's database, clock, audit and row lock."""

    engine: Engine
    clock: Clock
    audit: AuditFn
    lock: LockFn
    missed_limit: int

    def pause(self, name: str, *, by: str, specs: Sequence[ScheduleSpec] = ()) -> None:
        """Pause a schedule: nothing fires until it is resumed. Pausing a paused one does nothing.

        ``specs`` (the schedules in the workflow files) lets a schedule that beat has not seen
        yet be paused. Raises ParameterError for an unknown schedule or an empty ``by``.
        """
        if not by or not by.strip():
            raise ParameterError("by", "must name who pauses the schedule")
        now = self.clock.now()
        spec = next((s for s in specs if s.name == name), None)
        with self.engine.begin() as conn:
            if spec is not None:  # make sure the row exists, then lock it like any other
                conn.execute(insert_ignoring_conflicts(conn, schedule_state).values(new_state(spec, now)))
            state = self.lock(conn, name)
            if state is None:
                raise self._unknown(conn, name, specs)
            if state.paused:
                return
            conn.execute(
                update(schedule_state)
                .where(STATE.name == name)
                .values(paused=True, paused_by=by, paused_at=now, updated_at=now)
            )
            self.audit(conn, "schedule.paused", at=now, actor=by, payload={"schedule": name})
        log.info("schedule %s paused by %s", name, by)

    def resume(self, name: str, *, by: str, specs: Sequence[ScheduleSpec] = ()) -> None:
        """Resume a paused schedule. Instants that fell due while it was paused never run;
        the audit event counts them. Resuming a running one does nothing.

        Raises ParameterError for an unknown schedule or an empty ``by``.
        """
        if not by or not by.strip():
            raise ParameterError("by", "must name who resumes the schedule")
        now = self.clock.now()
        with self.engine.begin() as conn:
            state = self.lock(conn, name)
            if state is None:
                if any(s.name == name for s in specs):
                    return  # in the files, never seen by beat and never paused: it is running
                raise self._unknown(conn, name, specs)
            if not state.paused:
                return
            not_run = due_between(held_spec(state), start_of(state), now, limit=self.missed_limit + 1)
            conn.execute(
                update(schedule_state)
                .where(STATE.name == name)
                .values(paused=False, paused_by=None, paused_at=None, effective_at=now, updated_at=now)
            )
            payload = {
                "schedule": name,
                "paused_by": state.paused_by,
                "paused_at": state.paused_at.isoformat() if state.paused_at else None,
                "not_run_while_paused": min(len(not_run), self.missed_limit),
                "more_not_run": len(not_run) > self.missed_limit,
                "due_at": iso(not_run),
            }
            self.audit(conn, "schedule.resumed", at=now, actor=by, payload=payload)
        log.info("schedule %s resumed by %s", name, by)

    def _unknown(self, conn: Connection, name: str, specs: Sequence[ScheduleSpec]) -> ParameterError:
        known = sorted({*conn.execute(select(STATE.name)).scalars(), *(s.name for s in specs)})
        hint = f"; known schedules: {', '.join(known[:20])}" if known else "; there are no schedules"
        return ParameterError("schedule", f"{name!r} is not a known schedule{hint}")

    def status(
        self, specs: Sequence[ScheduleSpec], invalid: Sequence[tuple[str, str]] = ()
    ) -> list[ScheduleStatus]:
        """Each schedule with its next fire time (UTC and local), last run and paused state.

        ``invalid`` is (file, message) for workflow files that fail validation: a schedule such
        a file used to define is listed too, held, with the message's first line as its problem.
        """
        now = self.clock.now()
        ticks = schedule_ticks.c
        newest = (
            select(ticks.schedule, func.max(ticks.due_at).label("due_at"))
            .where(ticks.status == TICK_FIRED, ticks.run_id.is_not(None))
            .group_by(ticks.schedule)
            .subquery()
        )
        last_run = select(ticks.schedule, ticks.run_id, ticks.due_at).join(
            newest, and_(ticks.schedule == newest.c.schedule, ticks.due_at == newest.c.due_at)
        )
        ranked = (
            select(ticks.schedule, ticks.due_at, ticks.status, ticks.reason,
                   func.row_number().over(partition_by=ticks.schedule, order_by=ticks.due_at.desc()).label("n"),
                   func.count().over(partition_by=ticks.schedule).label("total"))
            .where(ticks.status.in_([TICK_MISSED, TICK_SKIPPED_INVALID]))
            .subquery()
        )
        missed: dict[str, list[Row[Any]]] = {}
        with self.engine.begin() as conn:
            states = {row.name: row for row in conn.execute(select(schedule_state))}
            last_runs = {row.schedule: (row.run_id, row.due_at) for row in conn.execute(last_run)}
            for row in conn.execute(select(ranked).where(ranked.c.n <= MISSED_SHOWN).order_by(ranked.c.n)):
                missed.setdefault(row.schedule, []).append(row)
        out: list[ScheduleStatus] = []
        for spec in specs:
            try:
                nxt: datetime | None = next_fire(spec, now)
            except ConfigError:
                nxt = None
            out.append(_status(spec, states.get(spec.name), nxt, last_runs.get(spec.name), str(spec.catchup),
                               missed=missed.get(spec.name)))
        bad = dict(invalid)
        names = {spec.name for spec in specs}
        for state in states.values():
            if state.name in names or state.removed_at is not None or state.workflow_file not in bad:
                continue
            # held: listed with its last valid cron and zone, and the file's first problem
            problem = (bad[state.workflow_file].splitlines() or ["the file does not validate"])[0]
            out.append(_status(held_spec(state), state, None, last_runs.get(state.name), "-", problem,
                               missed=missed.get(state.name)))
        out.sort(key=lambda st: st.name)
        return out
