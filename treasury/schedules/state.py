"""The rows a tick keeps beside the runs: ``schedule_state`` and ``schedule_invalid``.

``sync`` keeps ``schedule_state`` in step with the workflow files (new, changed and removed
schedules); ``report_invalid`` records each invalid workflow file once per distinct message.
The helpers say where a schedule's unhandled instants start, how its row is created and
locked, and how a schedule is seen while its file is invalid or it is paused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, case, delete, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from treasury.language.timing import ScheduleSpec
from treasury.schedules.tables import UTCDateTime, schedule_invalid, schedule_state
from treasury.store.db import insert_ignoring_conflicts

# the tick's log: one logger for the scheduler and the parts it is made of
log = logging.getLogger("treasury.schedules.tick")

# the reason recorded for an instant that neither fired on time nor was run by catch-up
NOT_RUNNING = "no scheduler was running when it fell due"
AUDIT_LIST_LIMIT = 100  # due instants listed in one audit event; schedule_ticks holds them all
STATE = schedule_state.c
# what a tick reads for every schedule: only these, because 10,000 rows are read per tick
TICK_READ: Select[Any] = select(
    STATE.name,
    STATE.workflow_file,
    STATE.digest,
    STATE.cron,
    STATE.timezone,
    STATE.paused,
    STATE.effective_at,
    STATE.last_due_at,
    STATE.removed_at,
)
AuditFn = Callable[..., None]  # the scheduler's audit: (conn, type_, *, at, actor=None, run_id=None, payload=None)


def restarts(state: Row[Any], spec: ScheduleSpec) -> bool:
    """A new cron or timezone, or a return after removal, starts the schedule afresh."""
    return state.cron != spec.cron or state.timezone != spec.timezone or state.removed_at is not None


def new_state(spec: ScheduleSpec, now: datetime) -> dict[str, Any]:
    """The ``schedule_state`` row of a schedule first seen at ``now`` (running, effective now)."""
    return {
        "name": spec.name,
        "workflow_file": spec.workflow_file,
        "digest": spec.digest,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "paused": False,
        "first_seen_at": now,
        "effective_at": now,
        "updated_at": now,
    }


def held_spec(state: Row[Any]) -> ScheduleSpec:
    """The schedule as last seen valid, for a file that is invalid now or a paused schedule."""
    return ScheduleSpec(state.name, state.cron, state.timezone, workflow_file=state.workflow_file)


def start_of(state: Row[Any]) -> datetime:
    """Instants at or before this are handled or were never to run."""
    return max(state.effective_at, state.last_due_at or state.effective_at)


def iso(moments: Sequence[datetime]) -> list[str]:
    """The first ``AUDIT_LIST_LIMIT`` instants as ISO strings, for an audit payload."""
    return [m.isoformat() for m in moments[:AUDIT_LIST_LIMIT]]


def lock(conn: Connection, name: str) -> Row[Any] | None:
    """The schedule's ``schedule_state`` row, locked for the rest of ``conn``'s transaction."""
    return conn.execute(select(schedule_state).where(STATE.name == name).with_for_update()).first()


# --------------------------------------------------------------------------- syncing with the files


def sync(
    engine: Engine, specs: list[ScheduleSpec], states: dict[str, Row[Any]], bad_files: dict[str, str], now: datetime
) -> set[str]:
    """Record new schedules, changed files and removed files (one transaction, name order).

    Returns the names of the schedules that start afresh now (new cron or timezone, or back).
    """
    names = {spec.name for spec in specs}
    new = [s for s in specs if s.name not in states]
    changed: list[ScheduleSpec] = []
    restarted: set[str] = set()
    for s in specs:
        state = states.get(s.name)
        if state is None:
            continue
        if restarts(state, s):
            restarted.add(s.name)
            changed.append(s)
        elif state.digest != s.digest or state.workflow_file != s.workflow_file:
            changed.append(s)
    gone = sorted(
        name
        for name, st in states.items()
        if name not in names and st.removed_at is None and st.workflow_file not in bad_files
    )
    if not (new or changed or gone):
        return restarted
    with engine.begin() as conn:
        if new:
            conn.execute(insert_ignoring_conflicts(conn, schedule_state), [new_state(s, now) for s in new])
        for s in changed:
            # evaluated by the database, so a second beat holding the same (by then stale)
            # view does not move effective_at again
            restart = or_(STATE.cron != s.cron, STATE.timezone != s.timezone, STATE.removed_at.is_not(None))
            conn.execute(
                update(schedule_state)
                .where(STATE.name == s.name)
                .values(
                    workflow_file=s.workflow_file,
                    digest=s.digest,
                    cron=s.cron,
                    timezone=s.timezone,
                    removed_at=None,
                    updated_at=now,
                    effective_at=case((restart, literal(now, UTCDateTime())), else_=STATE.effective_at),
                )
            )
        if gone:
            conn.execute(
                update(schedule_state)
                .where(STATE.name.in_(gone), STATE.removed_at.is_(None))
                .values(removed_at=now, updated_at=now)
            )
    for s in new:
        log.info("schedule %s (%s) found in %s", s.name, s.cron, s.workflow_file)
    for s in changed:
        log.info("schedule %s changed in %s", s.name, s.workflow_file)
    for name in gone:
        log.info("schedule %s removed: its workflow file is gone", name)
    return restarted


def report_invalid(
    engine: Engine,
    audit: AuditFn,
    logged: dict[str, str],
    bad_files: dict[str, str],
    reported: dict[str, str],
    now: datetime,
) -> list[tuple[str, str]]:
    """Audit each invalid file once per distinct message; forget files that are valid again.

    ``logged`` is the process's memory of what it logged (each invalid file once per change);
    ``reported`` is what ``schedule_invalid`` held at the start of the tick. Returns the
    (file, message) pairs reported by this call.
    """
    out: list[tuple[str, str]] = []
    for file, message in sorted(bad_files.items()):
        if logged.get(file) != message:
            logged[file] = message
            log.error("workflow file %s skipped by the scheduler: %s", file, message)
    fixed = sorted(set(reported) - set(bad_files))
    for file in fixed:
        logged.pop(file, None)
    if fixed:
        with engine.begin() as conn:
            conn.execute(delete(schedule_invalid).where(schedule_invalid.c.file.in_(fixed)))
    for file, message in sorted(bad_files.items()):
        if reported.get(file) == message:
            continue
        with engine.begin() as conn:
            current = conn.execute(
                select(schedule_invalid.c.message).where(schedule_invalid.c.file == file).with_for_update()
            ).scalar_one_or_none()
            if current == message:
                continue  # another beat reported it since we looked
            if current is None:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(schedule_invalid).values(file=file, message=message, reported_at=now))
                except IntegrityError:
                    continue  # another beat is reporting it right now
            else:
                conn.execute(
                    update(schedule_invalid)
                    .where(schedule_invalid.c.file == file)
                    .values(message=message, reported_at=now)
                )
            audit(conn, "schedule.invalid", at=now, payload={"file": file, "error": message})
        out.append((file, message))
    return out
