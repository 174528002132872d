"""Scheduler.tick on SQLite and PostgreSQL: firing, catch-up, replays, failures, file changes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Connection, Engine, insert, select, update

from treasury.clock import ManualClock
from treasury.language.timing import CatchUp, ScheduleSpec
from treasury.schedules.tables import schedule_state
from treasury.schedules.tick import Scheduler
from treasury.store.tables import runs

from .conftest import T0, audit_rows, minutes, run_dues, run_rows, spec, start_run, tick_rows


def m(n: float) -> timedelta:
    return timedelta(minutes=n)


def test_fires_each_due_instant_once_as_scheduler(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    s = spec("payout", "*/5 * * * *", inputs={"amount": "5000"})
    assert sched.tick([s]).fired == []  # first seen at T0: nothing from before
    clock.advance(minutes(5))
    report = sched.tick([s])
    assert [(f.schedule, f.due_at) for f in report.fired] == [("payout", T0 + m(5))]
    assert sched.tick([s]).fired == []  # same instant again: nothing
    clock.advance(minutes(1))
    assert sched.tick([s]).fired == []
    assert run_rows(db) == [("payout", T0 + m(5), "scheduler")]
    assert tick_rows(db) == [("payout", T0 + m(5), "fired", report.fired[0].run_id)]
    [event] = audit_rows(db, "schedule.fired")
    assert event["actor"] == "scheduler" and event["run_id"] == report.fired[0].run_id
    assert event["payload"]["due_at"] == (T0 + m(5)).isoformat()


@pytest.mark.parametrize(
    ("catchup", "fired", "missed"),
    [
        (CatchUp.NONE, [], [5, 10, 15, 20, 25, 30]),
        (CatchUp.LATEST, [30], [5, 10, 15, 20, 25]),
        (CatchUp.ALL, [25, 30], [5, 10, 15, 20]),
    ],
)
def test_catchup_after_an_outage(
    db: Engine,
    clock: ManualClock,
    make_scheduler: Callable[..., Scheduler],
    catchup: CatchUp,
    fired: list[int],
    missed: list[int],
) -> None:
    sched = make_scheduler(catchup_cap=2)
    s = spec("payout", "*/5 * * * *", catchup=catchup)
    sched.tick([s])
    clock.advance(minutes(32))  # beat was down from T0 to T0+32min
    report = sched.tick([s])
    assert [f.due_at for f in report.fired] == [T0 + m(n) for n in fired]
    assert [due for _, due in report.missed] == [T0 + m(n) for n in missed]
    assert run_dues(db, "payout") == [T0 + m(n) for n in fired]
    rows = tick_rows(db, "payout")
    assert [(due, status) for _, due, status, _ in rows] == sorted(
        [(T0 + m(n), "fired") for n in fired] + [(T0 + m(n), "missed") for n in missed]
    )
    events = audit_rows(db, "schedule.missed")
    if missed:
        [event] = events
        assert event["payload"]["count"] == len(missed) and event["payload"]["catchup"] == str(catchup)
    else:
        assert events == []
    clock.advance(minutes(3))  # back to normal: the next instant is on time for every policy
    assert [f.due_at for f in sched.tick([s]).fired] == [T0 + m(35)]


def test_a_replayed_tick_with_rewound_state_creates_nothing(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    s = spec("payout", "* * * * *", catchup=CatchUp.ALL)
    sched.tick([s])
    for _ in range(5):
        clock.advance(minutes(1))
        sched.tick([s])
    before = run_rows(db)
    assert len(before) == 5
    # a crash that lost the state row's progress (or a restore from an older backup)
    with db.begin() as conn:
        conn.execute(update(schedule_state).values(last_due_at=None, effective_at=T0))
    report = Scheduler(db, start_run=start_run, clock=clock).tick([s])  # a restarted beat
    assert report.fired == [] and report.errors == []
    assert [due for _, due in report.already_handled] == [T0 + m(n) for n in range(1, 6)]
    assert run_rows(db) == before
    assert len(tick_rows(db)) == 5


def test_replayed_missed_instants_are_not_recorded_or_audited_twice(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    s = spec("payout", "*/5 * * * *", catchup=CatchUp.NONE)
    sched.tick([s])
    clock.advance(minutes(17))
    assert len(sched.tick([s]).missed) == 3
    with db.begin() as conn:
        conn.execute(update(schedule_state).values(last_due_at=None, effective_at=T0))
    report = sched.tick([s])
    assert report.missed == [] and report.fired == []
    assert len(tick_rows(db)) == 3 and len(audit_rows(db, "schedule.missed")) == 1


def test_a_long_outage_records_the_newest_missed_and_names_the_span_of_the_rest(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler(missed_limit=5)
    s = spec("sweep", "* * * * *", catchup=CatchUp.NONE)
    sched.tick([s])
    clock.advance(minutes(30) + 30)
    report = sched.tick([s])
    assert [f.due_at for f in report.fired] == [T0 + m(30)]
    assert [due for _, due in report.missed] == [T0 + m(n) for n in range(25, 30)]
    [event] = audit_rows(db, "schedule.missed")
    assert event["payload"]["also_missed_between"] == [T0.isoformat(), (T0 + m(25)).isoformat()]
    clock.advance(minutes(1))
    assert [f.due_at for f in sched.tick([s]).fired] == [T0 + m(31)]


def test_a_run_that_already_exists_for_the_instant_is_linked_not_repeated(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    s = spec("payout", "*/5 * * * *")
    sched.tick([s])
    with db.begin() as conn:
        existing = start_run(conn, s, T0 + m(5))  # made by another path, with the same key
    clock.advance(minutes(5))
    report = sched.tick([s])
    assert report.fired == [] and report.already_handled == [("payout", T0 + m(5))]
    assert tick_rows(db) == [("payout", T0 + m(5), "fired", existing)]
    assert len(run_rows(db)) == 1


def test_a_failing_start_run_does_not_stop_other_schedules(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    broken = {"bad"}

    def flaky_start(conn: Connection, s: ScheduleSpec, due: object) -> str:
        if s.name in broken:
            raise RuntimeError("workflow snapshot unreadable")
        return start_run(conn, s, due)  # type: ignore[arg-type]

    sched = make_scheduler(start_run=flaky_start)
    specs = [spec("bad", "*/5 * * * *"), spec("good", "*/5 * * * *")]
    sched.tick(specs)
    clock.advance(minutes(5))
    report = sched.tick(specs)
    assert [f.schedule for f in report.fired] == ["good"]
    assert report.errors == [("bad", "RuntimeError: workflow snapshot unreadable")]
    assert tick_rows(db, "bad") == [] and audit_rows(db, "schedule.fired")[0]["payload"]["schedule"] == "good"
    broken.clear()
    clock.advance(minutes(0.5))
    assert [(f.schedule, f.due_at) for f in sched.tick(specs).fired] == [("bad", T0 + m(5))]  # retried


def test_an_integrity_error_that_is_not_the_guard_is_an_error(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    def same_id(conn: Connection, s: ScheduleSpec, due: object) -> str:
        run_id = start_run(conn, s, due)  # type: ignore[arg-type]
        row = conn.execute(select(runs).where(runs.c.id == run_id)).one()._asdict()
        conn.execute(insert(runs).values({**row, "due_at": None}))  # a bug: the same primary key again
        return run_id

    sched = make_scheduler(start_run=same_id)
    s = spec("payout", "*/5 * * * *")
    sched.tick([s])
    clock.advance(minutes(5))
    report = sched.tick([s])
    assert report.fired == [] and report.errors and report.errors[0][0] == "payout"
    assert run_rows(db) == [] and tick_rows(db) == []


def test_invalid_files_are_audited_once_per_change_and_others_keep_firing(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler], caplog: pytest.LogCaptureFixture
) -> None:
    sched = make_scheduler()
    a, b = spec("alpha", "*/5 * * * *"), spec("beta", "*/5 * * * *")
    sched.tick([a, b])
    broken = [(b.workflow_file, "steps[0].op: unknown operation 'withdrawl'")]
    with caplog.at_level(logging.ERROR, logger="treasury.schedules.tick"):
        for _ in range(3):
            clock.advance(minutes(5))
            report = sched.tick([a], invalid=broken)
            assert [f.schedule for f in report.fired] == ["alpha"]
            assert report.skipped_invalid == [("beta", clock.now().replace(second=0))]
    assert len(audit_rows(db, "schedule.invalid")) == 1
    assert sum("withdrawl" in r.getMessage() for r in caplog.records) == 1
    assert [s for _, _, s, _ in tick_rows(db, "beta")] == ["skipped_invalid"] * 3
    held_events = [e for e in audit_rows(db, "schedule.held") if e["payload"]["status"] == "skipped_invalid"]
    assert len(held_events) == 3 and "withdrawl" in held_events[0]["payload"]["error"]
    # another beat (its own process) sees the same file: no second audit event
    other = make_scheduler()
    assert other.tick([a], invalid=broken).invalid == []
    # a different problem in the same file is reported again
    broken2 = [(b.workflow_file, "schedule.cron: hour field: 24 is out of range 0-23")]
    assert sched.tick([a], invalid=broken2).invalid == broken2
    assert len(audit_rows(db, "schedule.invalid")) == 2
    # fixed: beta fires its next instant, and its catch-up policy (latest) decides the three held
    # while the file was broken: the newest runs, the older two are missed with the file's problem
    clock.advance(minutes(5))
    report = sched.tick([a, b])
    assert sorted(f.schedule for f in report.fired) == ["alpha", "beta", "beta"]
    assert run_dues(db, "beta") == [T0 + m(15), T0 + m(20)]
    assert [(due, st) for _, due, st, _ in tick_rows(db, "beta")] == [
        (T0 + m(5), "missed"), (T0 + m(10), "missed"), (T0 + m(15), "fired"), (T0 + m(20), "fired")]
    # broken again with the first message: a new change, audited again
    assert sched.tick([a], invalid=broken).invalid == broken
    assert len(audit_rows(db, "schedule.invalid")) == 3


def test_specs_with_bad_cron_or_duplicate_names_are_screened(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    good = spec("alpha", "*/5 * * * *", workflow_file="workflows/a.yaml")
    twin = spec("alpha", "*/5 * * * *", workflow_file="workflows/z.yaml")
    bad = spec("gamma", "0 25 * * *")
    report = sched.tick([twin, bad, good])
    assert sorted(report.invalid) == [
        ("workflows/gamma.yaml", "hour field: 25 is out of range 0-23"),
        ("workflows/z.yaml", "schedule 'alpha' is already defined in workflows/a.yaml"),
    ]
    clock.advance(minutes(5))
    assert [f.schedule for f in sched.tick([twin, bad, good]).fired] == ["alpha"]
    assert [s.workflow_file for s in sched.status([good])] == ["workflows/a.yaml"]


def test_a_changed_cron_starts_afresh_and_a_changed_digest_does_not(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    hourly = spec("payout", "0 * * * *")
    sched.tick([hourly])
    clock.advance(minutes(45))
    # 00:30 is in the past when the new cron is seen: it must not fire as a "missed" instant
    half_past = spec("payout", "30 * * * *", catchup=CatchUp.ALL)
    assert sched.tick([half_past]).fired == []
    clock.advance(minutes(45))  # 01:30
    assert [f.due_at for f in sched.tick([half_past]).fired] == [T0 + m(90)]
    edited = spec("payout", "30 * * * *", catchup=CatchUp.ALL, digest="e" * 64)
    clock.advance(minutes(60))
    assert [f.due_at for f in sched.tick([edited]).fired] == [T0 + m(150)]


def test_a_removed_schedule_does_not_catch_up_when_it_comes_back(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    s = spec("payout", "*/5 * * * *", catchup=CatchUp.ALL)
    sched.tick([s])
    clock.advance(minutes(5))
    sched.tick([s])
    for _ in range(6):  # file removed for half an hour
        clock.advance(minutes(5))
        assert sched.tick([]).fired == []
    # it comes back broken: reported, but nothing is recorded against the removed schedule
    report = sched.tick([], invalid=[(s.workflow_file, "steps: field required")])
    assert report.invalid and report.skipped_invalid == [] and tick_rows(db, "payout")[-1][1] == T0 + m(5)
    clock.advance(minutes(1))
    assert sched.tick([s]).fired == []  # back: nothing from its absence
    clock.advance(minutes(4))
    assert [f.due_at for f in sched.tick([s]).fired] == [T0 + m(40)]
    assert run_dues(db, "payout") == [T0 + m(5), T0 + m(40)]


def test_status_shows_next_fire_in_local_time_and_utc(
    db: Engine, clock: ManualClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    sched = make_scheduler()
    hk = spec("hk-payout", "0 9 * * MON-FRI", "Asia/Hong_Kong")
    minutely = spec("sweep", "* * * * *")
    unseen = spec("unseen", "0 0 1 * *")
    sched.tick([hk, minutely])
    clock.advance(minutes(3))
    report = sched.tick([hk, minutely])
    hk_status, sweep, never = sched.status([unseen, minutely, hk])
    assert hk_status.name == "hk-payout" and not hk_status.paused
    assert hk_status.next_fire_utc == T0 + m(60)  # 2026-01-01 is a Thursday; 09:00 HKT = 01:00 UTC
    assert hk_status.next_fire_local is not None
    assert (hk_status.next_fire_local.hour, str(hk_status.next_fire_local.tzinfo)) == (9, "Asia/Hong_Kong")
    assert hk_status.last_run_id is None and hk_status.last_due_at is None
    assert sweep.last_due_at == T0 + m(3) and sweep.last_run_id == report.fired[-1].run_id
    assert sweep.last_run_due_at == T0 + m(3) and hk_status.last_run_due_at is None
    assert sweep.next_fire_utc == T0 + m(4) and sweep.cron == "* * * * *" and sweep.catchup == "latest"
    assert never.name == "unseen" and never.last_due_at is None and never.next_fire_utc == T0 + timedelta(days=31)
