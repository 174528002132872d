"""Beat's schedules from workflow files: exactly one run per (schedule, due time), files added,
changed, removed or broken without a restart, and the ``schedules`` commands."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from tests.worker.conftest import TWO_TRANSFERS
from treasury.audit import query_events
from treasury.cli.context import AppContext
from treasury.cli.main import cli
from treasury.clock import ManualClock
from treasury.errors import ConfigError, TreasuryError
from treasury.language.timing import CatchUp
from treasury.runtime import Runtime, build_runtime
from treasury.schedules.beat import Beat, ScheduleLoader, load_schedules
from treasury.settings import Settings
from treasury.store.tables import runs

START = datetime(2026, 3, 2, 1, 0, 30, tzinfo=UTC)  # a Monday, 09:00:30 in Hong Kong


def scheduled(name: str, cron: str, *, approval: bool = False, amount: str = "5") -> str:
    guard = "  - id: approve\n    approval: {approvers: [alice, bob], quorum: 1}\n" if approval else ""
    return f"""\
name: {name}
inputs:
  amount: {{type: decimal, min: "0.01"}}
schedule:
  cron: "{cron}"
  timezone: Asia/Hong_Kong
  catchup: latest
  inputs: {{amount: "{amount}"}}
steps:
{guard}  - id: move
    op: asset_transfer
    key: transfers
    params: {{fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "${{{{ inputs.amount }}}}"}}
"""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START.timestamp())


@pytest.fixture
def wf(tmp_path: Path) -> Path:
    folder = tmp_path / "workflows"
    folder.mkdir()
    return folder


def _runtime(engine: Engine, config_dir: Path, wf: Path, clock: ManualClock) -> Runtime:
    settings = Settings(config_dir=config_dir, workflows_dir=wf)
    return build_runtime(settings, clock=clock, engine=engine)


def _runs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(runs).order_by(runs.c.due_at)))


def test_two_beats_over_an_hour_start_exactly_one_run_per_due_time(
    engine: Engine, config_dir: Path, wf: Path, clock: ManualClock
) -> None:
    (wf / "sweep.yaml").write_text(scheduled("sweep", "*/5 * * * *"))
    rt = _runtime(engine, config_dir, wf, clock)
    beats = [Beat(engine, rt.service, wf, clock=clock) for _ in range(2)]
    fired: list[str] = []
    with ThreadPoolExecutor(2) as pool:
        for _ in range(61):  # 09:00:30 to 10:00:30, a tick a minute on each beat at the same moment
            reports = list(pool.map(lambda b: b.tick(), beats))
            assert all(not r.errors for r in reports), [r.errors for r in reports]
            fired += [f.run_id for r in reports for f in r.fired]
            clock.advance(60)
    rows = _runs(engine)
    expected = [START.replace(second=0) + timedelta(minutes=m) for m in range(5, 61, 5)]
    assert [r.due_at.astimezone(UTC) for r in rows] == expected
    assert sorted(fired) == sorted(r.id for r in rows)  # every run reported once, by one beat
    assert {(r.schedule, r.requested_by, r.state) for r in rows} == {("sweep", "scheduler", "PENDING")}
    assert {r.inputs["amount"] for r in rows} == {"5"}


def test_beat_follows_files_added_changed_broken_and_removed(
    sqlite_engine: Engine, config_dir: Path, wf: Path, clock: ManualClock
) -> None:
    engine = sqlite_engine
    rt = _runtime(engine, config_dir, wf, clock)
    beat = Beat(engine, rt.service, wf, clock=clock)
    (wf / "a.yaml").write_text(scheduled("a", "* * * * *"))
    assert beat.tick().fired == []  # first seen: nothing is due before now

    def step() -> set[str]:
        clock.advance(60)
        return {f.schedule for f in beat.tick().fired}

    assert step() == {"a"}
    (wf / "b.yaml").write_text(scheduled("b", "* * * * *"))
    assert step() == {"a"}  # b is seen now and fires from the next minute
    assert step() == {"a", "b"}
    (wf / "b.yaml").write_text("name: b\nsteps: [{id: x, op: no_such_op, key: transfers}]\n")
    assert step() == {"a"}  # the broken file is skipped; a keeps firing
    invalid = list(query_events(engine, type="schedule.invalid"))
    assert [e.payload["file"] for e in invalid] == [str(wf / "b.yaml")]
    assert "no_such_op" in invalid[0].payload["error"]
    assert step() == {"a"}
    assert len(list(query_events(engine, type="schedule.invalid"))) == 1  # audited once, not every tick
    (wf / "a.yaml").write_text(scheduled("a", "*/2 * * * *", amount="7"))  # changed cron: starts afresh
    (wf / "b.yaml").write_text(scheduled("b", "* * * * *"))  # fixed
    # a starts afresh (nothing at 01:06:30, then every even minute); b resumes where it was skipped
    assert [step() for _ in range(4)] == [{"b"}, {"b"}, {"a", "b"}, {"b"}]
    (wf / "a.yaml").unlink()
    assert step() == {"b"}
    assert step() == {"b"}
    a_runs = [r for r in _runs(engine) if r.schedule == "a"]
    assert [r.inputs["amount"] for r in a_runs] == ["5"] * 5 + ["7"]


def test_scheduled_run_with_an_approval_step_waits_for_approval(
    sqlite_engine: Engine, config_dir: Path, wf: Path, clock: ManualClock
) -> None:
    (wf / "payout.yaml").write_text(scheduled("payout", "* * * * *", approval=True))
    rt = _runtime(sqlite_engine, config_dir, wf, clock)
    beat = Beat(sqlite_engine, rt.service, wf, clock=clock)
    beat.tick()
    clock.advance(60)
    (fired,) = beat.tick().fired
    rt.service.kick(fired.run_id)  # what the kick_run task does
    shown = rt.service.show(fired.run_id)
    assert shown["state"] == "AWAITING_APPROVAL"
    assert (shown["requested_by"], shown["schedule"]) == ("scheduler", "payout")
    assert shown["due_at"] == fired.due_at
    assert rt.simulator.state()["transfers"] == []


def test_load_schedules_specs_invalid_files_and_the_digest_cache(
    sqlite_engine: Engine, config_dir: Path, wf: Path, clock: ManualClock
) -> None:
    (wf / "daily.yaml").write_text(scheduled("daily", "0 18 * * MON-FRI"))
    (wf / "adhoc.yml").write_text(TWO_TRANSFERS)  # no schedule block: not a schedule, not a problem
    (wf / "broken.yaml").write_text("name: [unclosed\n")
    (wf / "notes.txt").write_text("not a workflow")
    rt = _runtime(sqlite_engine, config_dir, wf, clock)
    specs, invalid = load_schedules(wf, rt.service)
    (spec,) = specs
    assert (spec.name, spec.cron, spec.timezone, spec.catchup) == ("daily", "0 18 * * MON-FRI", "Asia/Hong_Kong",
                                                                   CatchUp.LATEST)
    assert dict(spec.inputs) == {"amount": "5"} and spec.workflow_file == str(wf / "daily.yaml")
    assert len(spec.digest) == 64
    ((file, message),) = invalid
    assert file == str(wf / "broken.yaml") and message.startswith(f"{wf / 'broken.yaml'}:2:1: YAML syntax error")

    calls: list[str] = []
    real = rt.service.load_and_check

    def counting(text: str, *, source: str) -> Any:
        calls.append(source)
        return real(text, source=source)

    rt.service.load_and_check = counting  # type: ignore[method-assign]
    loader = ScheduleLoader(wf, rt.service)
    loader.load()
    loader.load()
    assert sorted(calls) == sorted(str(wf / n) for n in ("daily.yaml", "adhoc.yml", "broken.yaml"))
    (wf / "daily.yaml").write_text(scheduled("daily", "0 19 * * MON-FRI"))
    specs, _ = loader.load()
    assert calls[-1] == str(wf / "daily.yaml") and specs[0].cron == "0 19 * * MON-FRI"
    with pytest.raises(ConfigError, match="TREASURY_WORKFLOWS_DIR"):
        load_schedules(wf / "missing", rt.service)


def test_loader_lists_files_only_follows_links_and_reuses_unchanged_schedules(
    sqlite_engine: Engine, config_dir: Path, wf: Path, clock: ManualClock, tmp_path: Path
) -> None:
    (wf / "daily.yaml").write_text(scheduled("daily", "0 18 * * MON-FRI"))
    (wf / ".hidden.yaml").write_text(scheduled("hidden", "0 18 * * *"))  # dot files are editors' leftovers
    (wf / "folder.yaml").mkdir()  # a folder with a workflow's name is not a workflow
    (wf / "folder.yaml" / "inner.yaml").write_text(scheduled("inner", "0 18 * * *"))
    elsewhere = tmp_path / "shared-weekly.yaml"
    elsewhere.write_text(scheduled("weekly", "0 9 * * MON"))
    (wf / "weekly.yaml").symlink_to(elsewhere)
    (wf / "dangling.yaml").symlink_to(tmp_path / "nowhere.yaml")
    rt = _runtime(sqlite_engine, config_dir, wf, clock)
    loader = ScheduleLoader(wf, rt.service)
    assert loader.files() == [wf / "daily.yaml", wf / "weekly.yaml"]
    first, invalid = loader.load()
    assert [s.name for s in first] == ["daily", "weekly"] and invalid == []
    assert first[1].workflow_file == str(wf / "weekly.yaml")
    again, _ = loader.load()
    assert [a is b for a, b in zip(first, again, strict=True)] == [True, True]  # nothing rebuilt
    elsewhere.write_text(scheduled("weekly", "0 10 * * MON"))  # the link's target changes
    changed, _ = loader.load()
    assert changed[0] is first[0] and changed[1].cron == "0 10 * * MON"


def test_a_tick_holds_the_collector_off_and_restores_it(
    sqlite_engine: Engine, config_dir: Path, wf: Path, clock: ManualClock
) -> None:
    import gc

    from treasury.schedules.beat import collector_paused

    seen: list[bool] = []
    rt = _runtime(sqlite_engine, config_dir, wf, clock)
    beat = Beat(sqlite_engine, rt.service, wf, clock=clock)
    real_load = beat.loader.load

    def spying_load() -> Any:
        seen.append(gc.isenabled())
        return real_load()

    beat.loader.load = spying_load  # type: ignore[method-assign]
    assert gc.isenabled()
    beat.tick()
    assert seen == [False] and gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("a tick that fails")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # it was off before: the pause does not switch it on
    finally:
        gc.enable()


def _cli(app: AppContext, *args: str) -> tuple[int, str, str]:
    """Invoke the real command group; errors get the exit code ``treasury`` would give them."""
    result = CliRunner().invoke(cli, list(args), obj=app)
    code = result.exception.exit_code if isinstance(result.exception, TreasuryError) else result.exit_code
    return code, result.stdout, result.stderr


def test_schedules_command_pause_and_resume(
    pg_engine: Engine, config_dir: Path, wf: Path, clock: ManualClock
) -> None:
    (wf / "sweep.yaml").write_text(scheduled("sweep", "*/5 * * * *"))
    (wf / "broken.yaml").write_text("name: [unclosed\n")
    rt = _runtime(pg_engine, config_dir, wf, clock)
    beat = Beat(pg_engine, rt.service, wf, clock=clock)
    for _ in range(11):  # 09:00:30 to 09:10:30 Hong Kong time
        beat.tick()
        clock.advance(60)
    last = _runs(pg_engine)[-1]
    app = AppContext(settings=Settings(config_dir=config_dir, workflows_dir=wf), clock=clock, _engine=pg_engine)

    code, out, err = _cli(app, "schedules", "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["next_fire_utc"] == "2026-03-02T01:15:00+00:00"
    assert row["next_fire_local"] == "2026-03-02T09:15:00+08:00"
    assert (row["last_run_id"], row["last_due_at"]) == (last.id, "2026-03-02T01:10:00+00:00")
    assert (row["last_run_state"], row["paused"], row["cron"], row["timezone"]) == (
        "PENDING", False, "*/5 * * * *", "Asia/Hong_Kong")
    assert "broken.yaml is skipped" in err
    code, out, _ = _cli(app, "schedules")
    assert code == 0 and "09:15 HKT" in out and "01:15 UTC" in out

    assert _cli(app, "schedule", "pause", "sweep", "--as", "mallory")[0] == 1  # not a known person
    code, out, _ = _cli(app, "schedule", "pause", "sweep", "--as", "alice")
    assert code == 0 and "paused" in out
    code, out, _ = _cli(app, "schedules", "--json")
    assert [(r["paused"], r["paused_by"]) for r in json.loads(out)] == [(True, "alice")]
    for _ in range(10):
        clock.advance(60)
        assert beat.tick().fired == []  # paused: nothing fires
    code, out, _ = _cli(app, "schedule", "resume", "sweep", "--as", "bob", "--json")
    assert code == 0 and json.loads(out)["paused"] is False
    clock.advance(300)
    assert [f.due_at.isoformat() for f in beat.tick().fired] == ["2026-03-02T01:25:00+00:00"]
    assert _cli(app, "schedule", "pause", "nope", "--as", "alice")[0] == 2
    types = [e.type for e in query_events(pg_engine, type=["schedule.paused", "schedule.resumed"])]
    assert types == ["schedule.paused", "schedule.resumed"]


def test_schedules_lists_a_schedule_held_by_its_broken_file(
    sqlite_engine: Engine, config_dir: Path, wf: Path, clock: ManualClock
) -> None:
    (wf / "sweep.yaml").write_text(scheduled("sweep", "*/5 * * * *"))
    (wf / "daily.yaml").write_text(scheduled("daily", "0 18 * * MON-FRI"))
    rt = _runtime(sqlite_engine, config_dir, wf, clock)
    beat = Beat(sqlite_engine, rt.service, wf, clock=clock)
    beat.tick()
    clock.advance(300)
    (fired,) = beat.tick().fired
    (wf / "sweep.yaml").write_text(scheduled("sweep", "*/5 * * * *").replace("key: transfers", "key: nobody"))
    clock.advance(300)
    assert beat.tick().fired == []  # held: the file no longer validates
    app = AppContext(settings=Settings(config_dir=config_dir, workflows_dir=wf), clock=clock, _engine=sqlite_engine)

    code, out, err = _cli(app, "schedules", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert sorted(rows) == ["daily", "sweep"]
    held = rows["sweep"]
    assert held["held"] is True and rows["daily"]["held"] is False and rows["daily"]["problem"] is None
    assert held["problem"].startswith(f"{wf / 'sweep.yaml'}:") and "nobody" in held["problem"]
    assert (held["cron"], held["next_fire_utc"], held["last_run_id"]) == ("*/5 * * * *", None, fired.run_id)
    assert "sweep.yaml is skipped by the scheduler" in err
    code, out, _ = _cli(app, "schedules")
    assert code == 0 and "HELD" in out  # in the next-fire column, which is too narrow for more

    (wf / "sweep.yaml").write_text(scheduled("sweep", "*/5 * * * *"))  # mended: listed as running again
    code, out, err = _cli(app, "schedules", "--json")
    assert code == 0 and err == ""
    assert [r["held"] for r in json.loads(out)] == [False, False]


def test_catchup_all_is_capped_by_the_worker_setting(
    sqlite_engine: Engine, config_dir: Path, wf: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from treasury.broker.options import WorkerOptions

    monkeypatch.setenv("TREASURY_CATCHUP_CAP", "3")
    options = WorkerOptions()
    assert options.catchup_cap == 3
    (wf / "sweep.yaml").write_text(scheduled("sweep", "*/5 * * * *").replace("catchup: latest", "catchup: all"))
    rt = _runtime(sqlite_engine, config_dir, wf, clock)
    beat = Beat(sqlite_engine, rt.service, wf, clock=clock, catchup_cap=options.catchup_cap)
    beat.tick()
    clock.advance(3600)  # beat was away for an hour: twelve instants fell due
    fired = beat.tick().fired
    # the on-time instant (02:00, within the grace period) and the newest 3 missed ones
    assert [f.due_at.isoformat() for f in fired] == [
        "2026-03-02T01:45:00+00:00", "2026-03-02T01:50:00+00:00", "2026-03-02T01:55:00+00:00",
        "2026-03-02T02:00:00+00:00"]
    monkeypatch.setenv("TREASURY_CATCHUP_CAP", "0")
    with pytest.raises(ValueError, match="catchup_cap"):
        WorkerOptions()


def test_a_file_broken_across_a_due_time_catches_up_once_mended_and_schedules_says_so(
    engine: Engine, config_dir: Path, wf: Path, clock: ManualClock
) -> None:
    good = scheduled("daily", "0 10 * * *")  # 10:00 Hong Kong, catchup: latest
    (wf / "daily.yaml").write_text(good)
    rt = _runtime(engine, config_dir, wf, clock)
    beat = Beat(engine, rt.service, wf, clock=clock)
    beat.tick()  # 09:00:30: seen
    (wf / "daily.yaml").write_text(good.replace("key: transfers", "key: nobody"))  # broken before 10:00
    clock.advance(3600)  # 10:00:30
    assert beat.tick().fired == []
    from rich.console import Console

    app = AppContext(settings=Settings(config_dir=config_dir, workflows_dir=wf), clock=clock, _engine=engine,
                     console=Console(width=400, soft_wrap=True))
    code, out, _ = _cli(app, "schedules")
    assert code == 0 and "2026-03-02 10:00 HKT held until the file is mended" in out
    assert "workflow file broken (line 12:" in out and "nobody" in out

    clock.advance(1800)  # 10:30:30, long after the grace period: mended
    (wf / "daily.yaml").write_text(good)
    (fired,) = beat.tick().fired
    assert fired.due_at == datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # catchup: latest ran 10:00
    code, out, err = _cli(app, "schedules", "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert (row["last_run_id"], row["last_run_due_at"]) == (fired.run_id, "2026-03-02T02:00:00+00:00")
    assert row["missed"] == []

    # a day without any scheduler: catchup latest runs the newest; the one before is missed
    clock.advance(2 * 86400)  # 2026-03-04 10:30:30
    (late,) = beat.tick().fired
    assert late.due_at == datetime(2026, 3, 4, 2, 0, tzinfo=UTC)
    code, out, _ = _cli(app, "schedules")
    assert "daily: 2026-03-03 10:00 HKT missed: no scheduler was running when it fell due" in out
    assert f"{late.run_id} PENDING (due 2026-03-04 10:00 HKT)" in out

    code, _, _ = _cli(app, "schedule", "pause", "daily", "--as", "alice")
    code, out, _ = _cli(app, "schedules", "--json")
    assert json.loads(out)[0]["next_fire_utc"] is None
    code, out, _ = _cli(app, "schedules")
    assert "PAUSED" in out and "2026-03-05" not in out
