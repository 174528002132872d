"""``treasury serve``: schedules fire without a broker, their steps execute inline, the sweeper
recovers lost work, two servers on one database fire each due time once, and the real command
stops cleanly on SIGTERM. The loop runs on an injected clock: no test waits for real time, except
the one that runs the real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from tests.worker.conftest import wait_for
from tests.worker.test_beat import START, scheduled
from treasury.cli.context import AppContext
from treasury.cli.main import cli
from treasury.clock import ManualClock
from treasury.runtime import Runtime, build_runtime
from treasury.schedules.beat import Beat
from treasury.schema import create_schema
from treasury.settings import Settings
from treasury.simulator import Simulator, load_state
from treasury.store.db import make_engine
from treasury.store.tables import runs
from treasury.worker.serve import ServeOptions, Server, build_server

OPTIONS = ServeOptions(tick_interval=15, sweep_interval=60, sweep_older_than=120, grace=5)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START.timestamp())  # a Monday, 09:00:30 in Hong Kong


@pytest.fixture
def wf(tmp_path: Path) -> Path:
    folder = tmp_path / "workflows"
    folder.mkdir()
    return folder


def _runtime(engine: Engine, config_dir: Path, wf: Path, clock: ManualClock, sim: Simulator) -> Runtime:
    settings = Settings(config_dir=config_dir, workflows_dir=wf)
    return build_runtime(settings, clock=clock, engine=engine, simulator=sim)


def _runs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(runs).order_by(runs.c.due_at, runs.c.created_at)))


def _until(clock: ManualClock, stop: threading.Event, end: datetime) -> Callable[[float], None]:
    """The loop's wait: advance the manual clock instead of sleeping; stop at ``end``."""

    def wait(seconds: float) -> None:
        clock.advance(seconds)
        if clock.now() >= end:
            stop.set()

    return wait


def _sim(config_dir: Path, clock: ManualClock) -> Simulator:
    return Simulator(load_state(config_dir / "simulator.yaml"), clock=clock)


def test_serve_fires_schedules_and_executes_their_steps_without_a_broker(
    engine: Engine, config_dir: Path, wf: Path, clock: ManualClock
) -> None:
    (wf / "sweep.yaml").write_text(scheduled("sweep", "*/5 * * * *"))
    sim = _sim(config_dir, clock)
    server = build_server(_runtime(engine, config_dir, wf, clock, sim), OPTIONS)
    stop = threading.Event()
    server.run(stop, wait=_until(clock, stop, START + timedelta(minutes=16)), threaded=False)
    done = _runs(engine)
    # 09:05, 09:10 and 09:15 Hong Kong time, each once, each carried out
    assert [r.due_at for r in done] == [datetime(2026, 3, 2, 1, m, tzinfo=UTC) for m in (5, 10, 15)]
    assert {r.state for r in done} == {"SUCCEEDED"} and {r.requested_by for r in done} == {"scheduler"}
    assert len(sim.state()["transfers"]) == 3


def test_the_sweeper_starts_a_run_whose_start_was_lost(
    engine: Engine, config_dir: Path, wf: Path, clock: ManualClock
) -> None:
    (wf / "once.yaml").write_text(scheduled("once", "0 0 1 1 *"))  # nothing due in this test
    rt = _runtime(engine, config_dir, wf, clock, _sim(config_dir, clock))
    loaded = rt.service.load_and_check((wf / "once.yaml").read_text(), source=str(wf / "once.yaml"))
    with engine.begin() as conn:  # created, but its kick never happened (a crash in between)
        run_id = rt.service.create_run(conn, loaded, {"amount": "7"}, requested_by="erin",
                                       request=rt.service.sign_request(loaded, {"amount": "7"}, "erin"))
    server = build_server(rt, OPTIONS)
    stop = threading.Event()
    server.run(stop, wait=_until(clock, stop, START + timedelta(minutes=4)), threaded=False)
    assert rt.service.state_of(run_id) == "SUCCEEDED"


def test_two_servers_on_one_database_fire_each_due_time_once(
    engine: Engine, config_dir: Path, wf: Path, clock: ManualClock
) -> None:
    (wf / "sweep.yaml").write_text(scheduled("sweep", "* * * * *"))
    sim = _sim(config_dir, clock)  # one exchange, as two processes on one desk would share
    servers = [build_server(_runtime(engine, config_dir, wf, clock, sim), OPTIONS) for _ in range(2)]
    fired: list[str] = []
    with ThreadPoolExecutor(2) as pool:
        for _ in range(20):  # 09:00:30 to 09:19:30, both servers ticking at the same moment
            for ids in pool.map(Server.tick, servers):
                fired.extend(ids)
            for server in servers:
                server.drain()
            clock.advance(60)
    done = _runs(engine)
    assert len(fired) == len(set(fired)) == len(done) == 19
    assert len({r.due_at for r in done}) == 19 and {r.state for r in done} == {"SUCCEEDED"}
    assert len(sim.state()["transfers"]) == 19  # no transfer twice


def test_a_tick_that_fails_is_logged_and_the_next_one_fires(
    sqlite_engine: Engine, config_dir: Path, wf: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    (wf / "sweep.yaml").write_text(scheduled("sweep", "*/5 * * * *"))
    rt = _runtime(sqlite_engine, config_dir, wf, clock, _sim(config_dir, clock))
    server = build_server(rt, OPTIONS)
    server.tick()
    hidden = wf.rename(wf.with_name("elsewhere"))  # the folder is gone for a while (a mount dropped)
    clock.advance(300)
    assert server.tick() == []
    assert "schedule tick skipped" in caplog.text and "TREASURY_WORKFLOWS_DIR" in caplog.text
    hidden.rename(wf)
    assert len(server.tick()) == 1 and server.drain() == 1


def test_serve_refuses_a_broker_and_an_unreadable_workflows_folder(tmp_path: Path, config_dir: Path) -> None:
    settings = Settings(config_dir=config_dir, workflows_dir=tmp_path / "missing",
                        database_url=f"sqlite:///{tmp_path / 't.db'}")
    res = CliRunner().invoke(cli, ["serve"], obj=AppContext(settings=settings))
    assert res.exit_code == 2 and "TREASURY_WORKFLOWS_DIR" in res.output, res.output
    brokered = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    res = CliRunner().invoke(cli, ["serve"], obj=AppContext(settings=brokered))
    assert res.exit_code == 2 and "TREASURY_BROKER_URL" in res.output and "treasury worker" in res.output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_treasury_serve_fires_a_due_schedule_and_stops_cleanly_on_a_signal(
    tmp_path: Path, config_dir: Path, wf: Path, sig: signal.Signals
) -> None:
    """The real command on SQLite: the schedule was seen five minutes ago, so its newest due
    minute is caught up (catchup: latest) on serve's first tick, runs inline, and succeeds."""
    (wf / "minutely.yaml").write_text(scheduled("minutely", "* * * * *"))
    db = tmp_path / "treasury.db"
    engine = make_engine(f"sqlite:///{db}")
    create_schema(engine)
    seen = ManualClock((datetime.now(UTC) - timedelta(minutes=5)).timestamp())
    settings = Settings(config_dir=config_dir, workflows_dir=wf, database_url=f"sqlite:///{db}")
    beat_rt = build_runtime(settings, clock=seen, engine=engine, simulator=_sim(config_dir, seen))
    Beat(engine, beat_rt.service, wf, clock=seen).tick()  # the schedule is known since then
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREASURY_") or k.startswith("TREASURY_TEST_")}
    env.update(TREASURY_CONFIG_DIR=str(config_dir), TREASURY_WORKFLOWS_DIR=str(wf),
               TREASURY_DATABASE_URL=f"sqlite:///{db}", TREASURY_BEAT_INTERVAL="0.2")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "treasury.cli.main", "serve"], env=env, cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            done = wait_for(lambda: [r for r in _runs(engine) if r.state == "SUCCEEDED"], 60,
                            "the scheduled run to succeed", detail=log.read_text)
            assert proc.poll() is None, log.read_text()
            proc.send_signal(sig)
            assert proc.wait(timeout=30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    engine.dispose()
    (run,) = done
    assert run.schedule == "minutely" and run.requested_by == "scheduler"
    text = log.read_text()
    assert f"{sig.name} received" in text and "stopped" in text and "Traceback" not in text
