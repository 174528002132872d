"""The NEEDS_ATTENTION message prints commands that work as printed; after a person settles the
step, `show` no longer prints the old error."""

from __future__ import annotations

import json
import os
import re
import shlex
from typing import Any

import pytest
from click.testing import CliRunner

from treasury.cli.context import AppContext
from treasury.cli.main import cli

from .conftest import PAYOUT, load

LOST = [
    {"method": "POST", "path": "/api/v1/account/withdraw", "mode": "error_after", "status": 500},
    {"method": "GET", "path": "/api/v1/account/withdrawOrders", "mode": "error_before", "status": 503},
    {"method": "GET", "path": "/api/v1/account/balanceFlow", "mode": "error_before", "status": 503},
]


def _parked(make_runtime: Any) -> tuple[Any, AppContext, str, str]:
    rt, _ = make_runtime()
    rt.simulator.set_faults(LOST)
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    rt.simulator.set_faults([])
    app = AppContext(settings=rt.settings, _engine=rt.engine, _runtime=rt)
    reason = rt.service.show(run_id, with_audit=False)["steps"][1]["error"]
    assert rt.service.state_of(run_id) == "NEEDS_ATTENTION"
    return rt, app, run_id, reason


def _printed_commands(text: str) -> dict[str, list[str]]:
    """The `treasury resolve ...` commands in a message, as a shell would split them (USER=dave)."""
    out = {}
    for command in re.findall(r"`(treasury resolve [^`]+)`", text):
        argv = shlex.split(os.path.expandvars(command))
        out[argv[argv.index("--outcome") + 1]] = argv[1:]
    return out


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_the_printed_command_settles_the_step(make_runtime: Any, monkeypatch: pytest.MonkeyPatch,
                                              outcome: str) -> None:
    rt, app, run_id, reason = _parked(make_runtime)
    monkeypatch.setenv("USER", "dave")  # the person at the terminal
    commands = _printed_commands(reason)
    assert set(commands) == {"succeeded", "failed"}, reason
    result = CliRunner().invoke(cli, commands[outcome], obj=app, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert rt.service.state_of(run_id) == ("SUCCEEDED" if outcome == "succeeded" else "FAILED")


def test_show_stops_printing_the_old_error_once_a_person_resolved_the_step(make_runtime: Any) -> None:
    rt, app, run_id, _ = _parked(make_runtime)
    before = CliRunner().invoke(cli, ["show", run_id], obj=app).stdout
    assert "needs attention" in before
    rt.service.resolve(run_id, "pay", user="dave", outcome="succeeded", note="W-order in the history")
    after = CliRunner().invoke(cli, ["show", run_id], obj=app)
    assert after.exit_code == 0 and "state SUCCEEDED" in after.stdout
    assert "needs attention" not in after.stdout and "no definite answer" not in after.stdout, after.stdout
    shown = json.loads(CliRunner().invoke(cli, ["show", run_id, "--json"], obj=app).stdout)
    assert shown["error"] is None and shown["steps"][1]["error"] is None
    # the history keeps what happened: the reason is in the audit trail, the person's note on the record
    assert any(e["type"] == "run.state" and (e["payload"].get("error") or "").startswith("step 'pay' needs attention")
               for e in shown["audit"])
    assert shown["steps"][1]["executions"][0]["reason"] == "resolved by dave: W-order in the history"
