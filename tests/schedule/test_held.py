"""A due time is never silently lost: times that fall due while a schedule's file is broken are
held, and once the file is mended its catch-up policy decides them. ``status`` says which times
did not fire and why, shows no next fire time while paused, and pairs the last run with its own
due time. SQLite and PostgreSQL, injected clock."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from treasury.clock import ManualClock
from treasury.language.timing import CatchUp
from treasury.schedules.tables import schedule_ticks
from treasury.schedules.tick import Scheduler

from .conftest import T0, audit_rows, minutes, run_dues, spec, tick_rows

FILE = "workflows/payout.yaml"
PROBLEM = f"{FILE}:3:7: steps[0].op: unknown operation 'withdrawl'"
BROKEN = [(FILE, PROBLEM + "\nsteps[1]: another problem")]


def m(n: float) -> timedelta:
    return timedelta(minutes=n)


def reasons(db: Engine) -> dict[int, tuple[str, str | None]]:
    t = schedule_ticks.c
    with db.connect() as conn:
        rows = conn.execute(select(t.due_at, t.status, t.reason).order_by(t.due_at)).all()
    return {int((r.due_at - T0).total_seconds() // 60): (r.status, r.reason) for r in rows}


def break_for_three_due_times(sched: Scheduler, catchup: CatchUp, clock: ManualClock) -> None:
    s = spec("payout", "*/5 * * * *", catchup=catchup)
    sched.tick([s])
    for _ in range(3):  # 5, 10, 15 fall due while the file is broken
        clock.advance(minutes(5))
        report = sched.tick([], invalid=BROKEN)
        assert report.fired == [] and report.skipped_invalid == [("payout", clock.now())]
    clock.advance(minutes(5))  # 20: mended


@pytest.mark.parametrize(
    ("catchup", "fired", "missed"),
    [
        (CatchUp.NONE, [20], [5, 10, 15]),
        (CatchUp.LATEST, [15, 20], [5, 10]),
        (CatchUp.ALL, [10, 15, 20], [5]),  # the cap is 2 late ones; 20 is on time
    ],
)
def test_once_mended_the_catchup_policy_decides_the_times_held_while_broken(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler],
    catchup: CatchUp, fired: list[int], missed: list[int],
) -> None:
    sched = make_scheduler(catchup_cap=2)
    break_for_three_due_times(sched, catchup, clock)
    assert [status for _, _, status, _ in tick_rows(db)] == ["skipped_invalid"] * 3
    held = audit_rows(db, "schedule.held")
    assert len(held) == 3 and held[0]["payload"]["error"] == PROBLEM
    assert audit_rows(db, "schedule.missed") == []  # not decided yet

    report = sched.tick([spec("payout", "*/5 * * * *", catchup=catchup)])
    assert [f.due_at for f in report.fired] == [T0 + m(n) for n in fired]
    assert run_dues(db, "payout") == [T0 + m(n) for n in fired]
    got = reasons(db)
    assert {n for n, (status, _) in got.items() if status == "fired"} == set(fired)
    # the missed ones keep why: the file's problem, not "no scheduler was running"
    assert {n: got[n] for n in missed} == {n: ("missed", PROBLEM) for n in missed}
    [event] = audit_rows(db, "schedule.missed")
    assert event["payload"]["due_at"] == [(T0 + m(n)).isoformat() for n in missed]
    # decided once: the next ticks add nothing
    clock.advance(minutes(1))
    assert sched.tick([spec("payout", "*/5 * * * *", catchup=catchup)]).fired == []
    assert run_dues(db, "payout") == [T0 + m(n) for n in fired]


def test_a_file_mended_within_the_grace_period_fires_the_held_time_even_without_catchup(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    s = spec("payout", "*/5 * * * *", catchup=CatchUp.NONE)
    sched.tick([s])
    clock.advance(minutes(5))
    assert sched.tick([], invalid=BROKEN).skipped_invalid == [("payout", T0 + m(5))]
    clock.advance(30)  # mended 30 s after it fell due
    assert [f.due_at for f in sched.tick([s]).fired] == [T0 + m(5)]
    assert tick_rows(db)[0][2] == "fired"


def test_two_schedulers_hold_and_then_fire_each_time_once(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    a, b = make_scheduler(), make_scheduler()
    s = spec("payout", "*/5 * * * *", catchup=CatchUp.ALL)
    a.tick([s])
    for _ in range(3):
        clock.advance(minutes(5))
        a.tick([], invalid=BROKEN)
        b.tick([], invalid=BROKEN)
    assert len(tick_rows(db)) == 3 and len(audit_rows(db, "schedule.held")) == 3
    clock.advance(minutes(5))
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda sched: sched.tick([s]), (a, b)))
    assert sorted(f.due_at for r in reports for f in r.fired) == [T0 + m(n) for n in (5, 10, 15, 20)]
    assert run_dues(db, "payout") == [T0 + m(n) for n in (5, 10, 15, 20)]
    assert len(audit_rows(db, "schedule.fired")) == 4


def test_status_names_missed_and_held_times_with_why(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    s = spec("payout", "*/5 * * * *", catchup=CatchUp.NONE)
    sched.tick([s])
    clock.advance(minutes(5))
    first = sched.tick([s]).fired[0]
    clock.advance(minutes(12))  # no scheduler ran at 10 and 15: missed (catchup: none)
    sched.tick([s])
    clock.advance(minutes(3))  # 20: held, the file is broken
    sched.tick([], invalid=BROKEN)

    [st] = sched.status([], invalid=BROKEN)
    assert st.problem == PROBLEM and st.next_fire_utc is None
    assert [(mt.due_at, mt.status, mt.why) for mt in st.missed] == [
        (T0 + m(20), "held", "workflow file broken (line 3: steps[0].op: unknown operation 'withdrawl')"),
        (T0 + m(15), "missed", "no scheduler was running when it fell due"),
        (T0 + m(10), "missed", "no scheduler was running when it fell due"),
    ]
    assert st.missed_total == 3
    # the last run is paired with its own due time, not with the newest handled one
    assert (st.last_run_id, st.last_run_due_at) == (first.run_id, T0 + m(5))

    # mended after the grace period with catchup none: the held time becomes missed, reason kept
    clock.advance(minutes(2))
    sched.tick([s])
    [st] = sched.status([s])
    assert (st.missed[0].status, st.missed[0].why) == (
        "missed", "workflow file broken (line 3: steps[0].op: unknown operation 'withdrawl')")
    assert st.next_fire_utc == T0 + m(25)


def test_a_paused_schedule_shows_no_next_fire_time(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    s = spec("payout", "*/5 * * * *")
    sched.tick([s])
    assert sched.status([s])[0].next_fire_utc == T0 + m(5)
    sched.pause("payout", by="alice")
    [st] = sched.status([s])
    assert st.paused and st.next_fire_utc is None and st.next_fire_local is None
    sched.resume("payout", by="bob")
    assert sched.status([s])[0].next_fire_utc == T0 + m(5)


def test_times_held_before_the_cron_changed_never_run_and_show_as_missed(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    sched.tick([spec("payout", "*/5 * * * *", catchup=CatchUp.ALL)])
    clock.advance(minutes(5))
    sched.tick([], invalid=BROKEN)
    clock.advance(minutes(5))
    changed = spec("payout", "*/10 * * * *", catchup=CatchUp.ALL)  # mended with a new cron
    assert sched.tick([changed]).fired == []
    assert run_dues(db, "payout") == []
    [st] = sched.status([changed])
    assert [(mt.due_at, mt.status) for mt in st.missed] == [(T0 + m(5), "missed")]



def test_a_database_from_before_the_reason_column_is_upgraded_and_keeps_its_ticks(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from treasury import schema
    from treasury.errors import ConfigError

    sched = make_scheduler()
    s = spec("payout", "*/5 * * * *")
    sched.tick([s])
    clock.advance(minutes(5))
    sched.tick([s])
    with db.begin() as conn:  # the table as the release before the column made it
        command.downgrade(schema.alembic_config(conn), "0001_baseline")
    assert "reason" not in {c["name"] for c in inspect(db).get_columns("schedule_ticks")}
    with pytest.raises(ConfigError, match="treasury db upgrade"):
        schema.create_schema(db)  # what every process does when it starts
    schema.upgrade(db)
    assert "reason" in {c["name"] for c in inspect(db).get_columns("schedule_ticks")}
    assert reasons(db) == {5: ("fired", None)}
    clock.advance(minutes(5))
    assert len(sched.tick([], invalid=BROKEN).skipped_invalid) == 1
    assert reasons(db)[10] == ("skipped_invalid", PROBLEM)
