"""Scheduled runs act as the schedule, not as a person: their authority is the workflow file on
disk; an approval step in a scheduled workflow still needs signed human approvals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text, update

from tests.worker.test_beat import clock, scheduled, wf  # noqa: F401 - fixtures
from treasury.audit import query_events
from treasury.clock import ManualClock
from treasury.runs.reverify import verify_decisions
from treasury.runtime import build_runtime
from treasury.schedules.beat import Beat
from treasury.settings import Settings
from treasury.store.tables import runs, steps


def _fire(sqlite_engine: Engine, config_dir: Path, wf: Path, clock: ManualClock) -> tuple[object, str]:  # noqa: F811
    (wf / "payout.yaml").write_text(scheduled("payout", "* * * * *", approval=True))
    # the simulator persists next to the database file: keep both in this test's folder
    settings = Settings(config_dir=config_dir, workflows_dir=wf, database_url=f"sqlite:///{wf.parent / 'sim.db'}")
    rt = build_runtime(settings, clock=clock, engine=sqlite_engine)
    beat = Beat(sqlite_engine, rt.service, wf, clock=clock)
    beat.tick()
    clock.advance(60)
    (fired,) = beat.tick().fired
    rt.service.kick(fired.run_id)
    return rt, fired.run_id


def test_a_scheduled_run_moves_money_after_a_signed_human_approval(
    sqlite_engine: Engine, config_dir: Path, wf: Path, clock: ManualClock  # noqa: F811
) -> None:
    rt, run_id = _fire(sqlite_engine, config_dir, wf, clock)
    assert rt.service.state_of(run_id) == "AWAITING_APPROVAL"  # type: ignore[attr-defined]
    assert rt.service.approve(run_id, "alice") == "SUCCEEDED"  # type: ignore[attr-defined]
    assert len(rt.simulator.state()["transfers"]) == 1  # type: ignore[attr-defined]


def test_a_scheduled_runs_snapshot_edited_in_the_database_is_not_sent(
    sqlite_engine: Engine, config_dir: Path, wf: Path, clock: ManualClock  # noqa: F811
) -> None:
    rt, run_id = _fire(sqlite_engine, config_dir, wf, clock)
    with sqlite_engine.begin() as conn:
        snapshot = conn.execute(text("SELECT workflow_snapshot FROM runs WHERE id = :r"), {"r": run_id}).scalar_one()
        cut = snapshot[:snapshot.index("  - id: approve")] + snapshot[snapshot.index("  - id: move"):]
        conn.execute(update(runs).where(runs.c.id == run_id).values(workflow_snapshot=cut, state="RUNNING"))
        conn.execute(text("DELETE FROM steps WHERE run_id = :r AND step_id = 'approve'"), {"r": run_id})
        conn.execute(update(steps).where(steps.c.run_id == run_id, steps.c.step_id == "move").values(state="RUNNING"))
    rt.service.execute_step(run_id, "move")  # type: ignore[attr-defined]
    shown = rt.service.show(run_id)  # type: ignore[attr-defined]
    assert shown["steps"][0]["state"] == "NEEDS_ATTENTION" and "no signed request" in shown["steps"][0]["error"]
    assert rt.simulator.state()["transfers"] == []  # type: ignore[attr-defined]
    assert any(e.type == "decision.unverified" for e in query_events(sqlite_engine, run_id=run_id))


def _fire_sweep(engine: Engine, config_dir: Path, folder: Path, at: ManualClock, *, cron: str,
                every: float) -> tuple[Any, Any]:
    """A scheduled 5 USDT transfer (``cron``) that beat fires once, ``every`` seconds after its
    first tick; returns the runtime and the fired run, not yet kicked."""
    (folder / "sweep.yaml").write_text(scheduled("sweep", cron, amount="5"))
    settings = Settings(config_dir=config_dir, workflows_dir=folder,
                        database_url=f"sqlite:///{folder.parent / 'sim.db'}")
    rt = build_runtime(settings, clock=at, engine=engine)
    beat = Beat(engine, rt.service, folder, clock=at)
    beat.tick()
    at.advance(every)
    (fired,) = beat.tick().fired
    return rt, fired


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_a_scheduled_runs_inputs_edited_in_the_database_are_not_sent(
    db: str, request: pytest.FixtureRequest, config_dir: Path, wf: Path, clock: ManualClock  # noqa: F811
) -> None:
    # no approval step: the schedule's own inputs (in its file) are all that authorises the amount
    engine: Engine = request.getfixturevalue("pg_engine" if db == "postgres" else "sqlite_engine")
    rt, fired = _fire_sweep(engine, config_dir, wf, clock, cron="* * * * *", every=60)
    with engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == fired.run_id).values(inputs={"amount": "4000"}))
    rt.service.kick(fired.run_id)  # type: ignore[attr-defined]
    shown = rt.service.show(fired.run_id)  # type: ignore[attr-defined]
    assert shown["steps"][0]["state"] == "NEEDS_ATTENTION", shown
    assert "inputs" in shown["steps"][0]["error"]
    assert rt.simulator.state()["transfers"] == []  # type: ignore[attr-defined]
    assert any(e.type == "decision.unverified" for e in query_events(engine, run_id=fired.run_id))
    problems = verify_decisions(engine).problems
    assert f"run {fired.run_id} (schedule sweep): its stored inputs are not the inputs its schedule declares" \
        in problems


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_a_scheduled_run_at_an_instant_its_cron_never_fires_is_not_sent(
    db: str, request: pytest.FixtureRequest, config_dir: Path, wf: Path, clock: ManualClock  # noqa: F811
) -> None:
    # a database owner adds runs of a scheduled transfer at made-up due times (each a fresh
    # (schedule, due_at) pair): only the instants the schedule's cron fires are backed by its file
    from datetime import timedelta

    engine: Engine = request.getfixturevalue("pg_engine" if db == "postgres" else "sqlite_engine")
    rt, fired = _fire_sweep(engine, config_dir, wf, clock, cron="*/5 * * * *", every=300)
    with engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == fired.run_id).values(due_at=fired.due_at + timedelta(minutes=1)))
    rt.service.kick(fired.run_id)  # type: ignore[attr-defined]
    shown = rt.service.show(fired.run_id)  # type: ignore[attr-defined]
    assert shown["steps"][0]["state"] == "NEEDS_ATTENTION", shown
    assert rt.simulator.state()["transfers"] == []  # type: ignore[attr-defined]
    assert any("not an instant its schedule fires" in p for p in verify_decisions(engine).problems)
