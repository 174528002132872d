"""The everyday commands end to end: run, approve with a comment, reject, cancel, show, runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from treasury.cli.context import AppContext
from treasury.cli.main import cli
from treasury.clock import ManualClock
from treasury.settings import Settings

from .conftest import MONDAY_10_HKT, PAYOUT, ROOT

PAYOUT_FILE = str(ROOT / "workflows" / "vendor-payout.yaml")


def _app(tmp_path: Path, config: Path) -> AppContext:
    settings = Settings(config_dir=config, database_url=f"sqlite:///{tmp_path / 'cli.db'}",
                        workflows_dir=ROOT / "workflows")
    return AppContext(settings=settings, clock=ManualClock(MONDAY_10_HKT))


def _cli(app: AppContext, *args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)
    out = result.stdout
    try:
        return result.exit_code, json.loads(out)
    except json.JSONDecodeError:
        return result.exit_code, out


def _start(app: AppContext) -> str:
    code, data = _cli(app, "run", PAYOUT_FILE, "-i", f"address={PAYOUT['address']}", "-i", f"amount={PAYOUT['amount']}",
                      "--as", "erin", "--json")
    assert code == 0 and data["state"] == "AWAITING_APPROVAL", data
    return str(data["id"])


def test_approve_with_comments_then_show_and_list(tmp_path: Path, signed_config: Path) -> None:
    app = _app(tmp_path, signed_config)
    run_id = _start(app)
    code, data = _cli(app, "approve", run_id, "--as", "alice", "--comment", "invoice 4711 checked", "--json")
    assert code == 0 and data["state"] == "AWAITING_APPROVAL"
    code, data = _cli(app, "approve", run_id, "--as", "bob", "--json")
    assert code == 0 and data["state"] == "SUCCEEDED"
    code, shown = _cli(app, "show", run_id, "--json")
    assert code == 0
    votes = {(a["approver"], a["decision"], a["comment"]) for a in shown["approvals"]}
    assert ("alice", "approve", "invoice 4711 checked") in votes and ("bob", "approve", None) in votes
    pay = shown["steps"][1]
    assert pay["state"] == "SUCCEEDED" and pay["executions"][0]["exchange_order_id"]
    approval = shown["steps"][0]
    # approvers saw the policy's verdict on what they approved, with the numbers
    seen = approval["policy"]["pay"]
    assert seen and all(v["allowed"] for v in seen)
    assert {v["rule"] for v in seen} >= {"limits[0].max_per_tx", "limits[0].max_per_window"}
    requested = [e for e in shown["audit"] if e["type"] == "approval.requested"]
    assert len(requested) == 1
    granted = [e for e in shown["audit"] if e["type"] == "approval.granted"]
    assert [e["actor"] for e in granted] == ["alice", "bob"]
    code, text = _cli(app, "show", run_id)  # the plain view names the comment and the policy too
    assert code == 0 and "invoice 4711 checked" in text
    policy_table = text[text.index("policy"):text.index("approvals")]  # titles of the two tables
    assert "allow" in policy_table and "DENY" not in policy_table
    code, runs = _cli(app, "runs", "--json")
    assert code == 0 and [(r["id"], r["state"]) for r in runs] == [(run_id, "SUCCEEDED")]


def test_reject_needs_a_reason_and_ends_the_run(tmp_path: Path, signed_config: Path) -> None:
    app = _app(tmp_path, signed_config)
    run_id = _start(app)
    result = CliRunner().invoke(cli, ["reject", run_id, "--as", "alice"], obj=app)
    assert result.exit_code == 2 and "--reason" in result.output
    code, data = _cli(app, "reject", run_id, "--as", "alice", "--reason", "wrong invoice", "--json")
    assert code == 0 and data["state"] == "REJECTED"
    code, shown = _cli(app, "show", run_id, "--json")
    assert ("alice", "reject", "wrong invoice") in {(a["approver"], a["decision"], a["comment"])
                                                     for a in shown["approvals"]}
    assert not shown["steps"][1].get("executions") and shown["steps"][1]["state"] != "SUCCEEDED"  # nothing sent


def test_the_requester_cancels_a_waiting_run(tmp_path: Path, signed_config: Path) -> None:
    app = _app(tmp_path, signed_config)
    run_id = _start(app)
    code, data = _cli(app, "cancel", run_id, "--as", "erin", "--json")
    assert code == 0 and data["state"] == "CANCELLED"
    late = CliRunner().invoke(cli, ["approve", run_id, "--as", "alice"], obj=app)  # too late: refused
    assert late.exit_code != 0
    _, shown = _cli(app, "show", run_id, "--json")
    assert shown["state"] == "CANCELLED" and not shown["steps"][1].get("executions")
