"""Every example workflow runs through its data-driven cases (workflows/cases/*.yaml).

Each case gets a fresh database and simulator; the clock is a ManualClock shared by the
runner and the simulator, so reconciliation's settle window costs no real time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runs.conftest import SHORT_FLIGHT
from treasury.clock import ManualClock
from treasury.runs.cases import case_files, load_case_file, run_case
from treasury.runtime import build_runtime
from treasury.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
CASES = [
    pytest.param(path, idx, id=f"{path.stem}-{idx}")
    for path in case_files(WORKFLOWS)
    for idx in range(len(load_case_file(path).cases))
]


def test_every_example_workflow_has_cases() -> None:
    with_cases = {load_case_file(p).workflow for p in case_files(WORKFLOWS)}
    assert {p.name for p in WORKFLOWS.glob("*.yaml")} <= with_cases


@pytest.mark.parametrize(("path", "idx"), CASES)
def test_case(path: Path, idx: int, tmp_path: Path, signed_config: Path) -> None:
    cf = load_case_file(path)
    case = cf.cases[idx]
    settings = Settings(config_dir=signed_config, database_url=f"sqlite:///{tmp_path / 't.db'}",
                        workflows_dir=WORKFLOWS, settle_seconds=2, reconcile_deadline_seconds=30,
                        **SHORT_FLIGHT)
    rt = build_runtime(settings, clock=ManualClock(start=1_780_279_200.0))  # Monday 2026-06-01 10:00 HKT
    result = run_case(rt, WORKFLOWS, cf.workflow, case)
    assert result.ok, "\n".join(result.mismatches)
