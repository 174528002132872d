"""Beat ticks count their time, each fired run's lag behind its due time, and missed instants."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import Engine

from tests.worker.test_beat import START, scheduled
from treasury.clock import ManualClock
from treasury.runtime import build_runtime
from treasury.schedules.beat import Beat
from treasury.settings import Settings
from treasury.worker.process import beat_tick


def _value(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_tick_time_and_schedule_lag(sqlite_engine: Engine, config_dir: Path, tmp_path: Path) -> None:
    wf = tmp_path / "workflows"
    wf.mkdir()
    (wf / "every-minute.yaml").write_text(scheduled("every-minute", "* * * * *"))
    clock = ManualClock(START.timestamp())  # hh:mm:30
    rt = build_runtime(Settings(config_dir=config_dir, workflows_dir=wf), clock=clock, engine=sqlite_engine)
    kicked: list[str] = []
    wrt: Any = SimpleNamespace(beat=Beat(sqlite_engine, rt.service, wf, clock=clock), runtime=rt,
                               dispatcher=SimpleNamespace(kick=kicked.append))
    ticks, lag_n, lag_sum = (_value("treasury_beat_tick_seconds_count"), _value("treasury_schedule_lag_seconds_count"),
                             _value("treasury_schedule_lag_seconds_sum"))
    assert beat_tick(wrt) == []  # first seen: nothing due yet
    clock.advance(60)
    fired = beat_tick(wrt)
    assert len(fired) == 1 and kicked == fired
    assert _value("treasury_beat_tick_seconds_count") == ticks + 2
    assert _value("treasury_schedule_lag_seconds_count") == lag_n + 1
    assert _value("treasury_schedule_lag_seconds_sum") == lag_sum + 30  # due at hh:mm:00, fired at :30
