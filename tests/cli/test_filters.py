"""Filters behave: any case matches, an unknown value or run id is exit 2 with the valid values listed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from tests.identities import signed_config_copy
from tests.runs.conftest import MONDAY_10_HKT, PAYOUT, ROOT
from treasury.cli.context import AppContext
from treasury.cli.main import cli
from treasury.clock import ManualClock
from treasury.settings import Settings

PAYOUT_FILE = str(ROOT / "workflows" / "vendor-payout.yaml")


@pytest.fixture
def app(tmp_path: Path, engine: Engine) -> AppContext:
    settings = Settings(config_dir=signed_config_copy(tmp_path / "config"),
                        database_url=f"sqlite:///{tmp_path / 'cli.db'}",
                        workflows_dir=ROOT / "workflows")
    return AppContext(settings=settings, clock=ManualClock(MONDAY_10_HKT), _engine=engine)


def _cli(app: AppContext, *args: str) -> Any:
    return CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)


def _start(app: AppContext) -> str:
    res = _cli(app, "run", PAYOUT_FILE, "-i", f"address={PAYOUT['address']}", "-i",
               f"amount={PAYOUT['amount']}", "--as", "erin", "--json")
    assert res.exit_code == 0, res.output
    return str(json.loads(res.stdout)["id"])


def _ids(res: Any) -> list[str]:
    assert res.exit_code == 0, res.output
    return [r["id"] for r in json.loads(res.stdout)]


def test_runs_filters_match_any_case_and_refuse_unknown_values(app: AppContext) -> None:
    run_id = _start(app)
    assert _ids(_cli(app, "runs", "--state", "awaiting_approval", "--json")) == [run_id]
    assert _ids(_cli(app, "runs", "--state", "Awaiting_Approval", "--workflow", "VENDOR-payout", "--json")) == [run_id]
    assert _ids(_cli(app, "runs", "--state", "succeeded", "--json")) == []  # a real state, no runs in it
    bad = _cli(app, "runs", "--state", "BOGUS")
    assert bad.exit_code == 2 and "'BOGUS' is not a run state" in bad.output
    assert "AWAITING_APPROVAL" in bad.output and "NEEDS_ATTENTION" in bad.output
    bad = _cli(app, "runs", "--workflow", "no-such-flow")
    assert bad.exit_code == 2 and "vendor-payout" in bad.output


def test_audit_filters_refuse_unknown_types_workflows_and_runs(app: AppContext) -> None:
    run_id = _start(app)
    res = _cli(app, "audit", "--type", "RUN.REQUESTED", "--jsonl")
    assert res.exit_code == 0 and [json.loads(line)["run_id"] for line in res.stdout.splitlines()] == [run_id]
    bad = _cli(app, "audit", "--type", "run.requestd")
    assert bad.exit_code == 2 and "run.requested" in bad.output and "approval.granted" in bad.output
    bad = _cli(app, "audit", "--workflow", "nope")
    assert bad.exit_code == 2 and "vendor-payout" in bad.output
    assert _cli(app, "audit", "--run", "rnosuchrun00").exit_code == 2
    assert _cli(app, "audit", "export", "rnosuchrun00").exit_code == 2


@pytest.mark.parametrize("args", [
    ("show", "rnosuchrun00"),
    ("approve", "rnosuchrun00", "--as", "alice"),
    ("reject", "rnosuchrun00", "--as", "alice", "--reason", "no"),
    ("cancel", "rnosuchrun00", "--as", "alice"),
    ("resolve", "rnosuchrun00", "pay", "--as", "dave", "--outcome", "failed", "--note", "n"),
])
def test_a_run_id_that_does_not_exist_is_a_usage_error(app: AppContext, args: tuple[str, ...]) -> None:
    res = CliRunner().invoke(cli, list(args), obj=app)
    assert res.exit_code == 2 and "no run 'rnosuchrun00'" in res.output, res.output


def test_a_step_the_run_does_not_have_is_a_usage_error_naming_its_steps(app: AppContext) -> None:
    run_id = _start(app)
    res = CliRunner().invoke(cli, ["resolve", run_id, "payy", "--as", "dave", "--outcome", "failed",
                                   "--note", "n"], obj=app)
    assert res.exit_code == 2 and "has no step 'payy'; its steps: approve, pay" in res.output
