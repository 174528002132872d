"""Waits are visible: an inline approve that reconciles a lost answer says what it waits for, one
line per change on standard error when that is not a terminal; ``--json`` stdout stays JSON."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

from click.testing import CliRunner

from treasury.cli.context import AppContext
from treasury.cli.main import cli
from treasury.clock import ManualClock
from treasury.settings import Settings

from .conftest import MONDAY_10_HKT, PAYOUT, ROOT

PAYOUT_FILE = str(ROOT / "workflows" / "vendor-payout.yaml")


def _app(tmp_path: Path, config: Path) -> AppContext:
    settings = Settings(config_dir=config, database_url=f"sqlite:///{tmp_path / 'cli.db'}",
                        workflows_dir=ROOT / "workflows", settle_seconds=16)
    return AppContext(settings=settings, clock=ManualClock(MONDAY_10_HKT))


def test_an_inline_approve_shows_each_wait_on_stderr_and_keeps_json_on_stdout(
    tmp_path: Path, signed_config: Path
) -> None:
    app = _app(tmp_path, signed_config)
    runner = CliRunner()
    started = runner.invoke(cli, ["run", PAYOUT_FILE, "-i", f"address={PAYOUT['address']}", "-i",
                                  f"amount={PAYOUT['amount']}", "--as", "erin", "--json"], obj=app,
                            catch_exceptions=False)
    run_id = json.loads(started.stdout)["id"]
    runner.invoke(cli, ["approve", run_id, "--as", "alice"], obj=app, catch_exceptions=False)
    # the withdrawal's answer is lost, and both lookups fail for a while
    app.runtime().simulator.set_faults([
        {"method": "POST", "path": "/api/v1/account/withdraw", "mode": "error_after", "status": 500, "count": 1},
        {"method": "GET", "path": "/api/v1/account/withdrawOrders", "mode": "error_before", "status": 503,
         "count": 8},
        {"method": "GET", "path": "/api/v1/account/balanceFlow", "mode": "error_before", "status": 503, "count": 8},
    ])
    result = runner.invoke(cli, ["approve", run_id, "--as", "bob", "--json"], obj=app, catch_exceptions=False)
    assert json.loads(result.stdout)["state"] == "SUCCEEDED"  # nothing but the JSON on stdout
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith(f"waiting: run {run_id} step pay: ") for line in lines)
    assert all(a != b for a, b in pairwise(lines))  # one line per change
    text = "\n".join(lines)
    assert "sending the withdrawal T" in text and "attempt 1 of" in text
    assert "reconciling the withdrawal T" in text
    assert "lookup round 1, lookup 1 of 2 (withdraw_orders), settle window 16 s" in text
    assert "lookup 2 of 2 (balance_flow)" in text
    assert "retrying withdraw_orders, attempt 1 failed" in text
    assert "next lookup round in" in text
    assert " UTC at the latest" in text  # how long it may take


def test_a_terminal_gets_one_live_line_with_the_time_left() -> None:
    import io

    from rich.console import Console

    from treasury.cli.progress import LineProgress, TerminalProgress, progress_for
    from treasury.execution.progress import Wait

    clock = ManualClock(MONDAY_10_HKT)
    screen = io.StringIO()
    shown = progress_for(Console(file=screen, force_terminal=True, width=300), clock)
    assert isinstance(shown, TerminalProgress)
    shown.waiting(Wait("reconciling the withdrawal T1 [its answer was lost]", "lookup 2 of 2 (balance_flow), "
                       "settle window 15 s", until=clock.time() + 42, run_id="r1", step_id="pay"))
    shown.finished()
    text = screen.getvalue()
    assert "run r1 step pay: reconciling the withdrawal T1 [its answer was lost], lookup 2 of 2" in text
    assert "(at most 42 s from now)" in text
    assert isinstance(progress_for(Console(file=io.StringIO(), force_terminal=False), clock), LineProgress)
