"""A for_each payout end to end: one approval for the whole list, each item sent once."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from treasury.audit import query_events, verify_chain
from treasury.cli.main import cli
from treasury.errors import ParameterError
from treasury.execution.ids import client_id_for
from treasury.language.fanout import instance_id
from treasury.models import format_amount
from treasury.store.tables import steps

from .conftest import ROOT, HeldDispatcher, load

VENDORS = ("0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90", "0x8ba1f109551bd432803012645ac136ddd64dba72")
WITHDRAW = "/api/v1/account/withdraw"


def payouts(n: int) -> list[dict[str, str]]:
    return [{"address": VENDORS[i % 2], "amount": f"{10 + i % 7}.25"} for i in range(n)]


def withdrawals(wire: Any) -> list[dict[str, Any]]:
    return list(wire.sim.state()["withdrawals"])


def test_two_hundred_payouts_are_one_approval_and_each_is_sent_once(make_runtime: Any, engine: Any) -> None:
    rt, wire = make_runtime(engine=engine)  # on SQLite and PostgreSQL
    items = payouts(200)
    run_id = rt.service.start(load(rt, "batch-payout.yaml"), {"payouts": items}, requested_by="erin")
    shown = rt.service.show(run_id, with_audit=False)
    assert shown["state"] == "AWAITING_APPROVAL"
    total = format_amount(sum((Decimal(p["amount"]) for p in items), Decimal(0)))
    assert shown["fan_out"] == [{"step": "pay", "items": 200, "concurrency": 10, "totals": {"USDT": total},
                                 "states": {"PENDING": 200}}]
    (approval,) = [s for s in shown["steps"] if s["kind"] == "approval"]
    # one decision binds every item's parameters
    assert sorted(approval["waiting_for"]) == [instance_id("pay", n) for n in range(200)]
    assert approval["waiting_for"]["pay[0007]"]["params"]["quantity"] == "10.25"
    rt.service.approve(run_id, "alice")
    assert wire.writes() == []
    rt.service.approve(run_id, "bob")
    shown = rt.service.show(run_id, with_audit=False)
    assert shown["state"] == "SUCCEEDED"
    assert shown["fan_out"][0]["states"] == {"SUCCEEDED": 200}
    done = withdrawals(wire)
    expected = {client_id_for(run_id, instance_id("pay", n)) for n in range(200)}
    assert sorted(w["clientOrderId"] for w in done) == sorted(expected)  # each exactly once
    assert len([r for r in wire.writes() if r.url.path == WITHDRAW]) == 200
    assert verify_chain(rt.engine).ok
    events = list(query_events(rt.engine, run_id=run_id))
    assert len([e for e in events if e.type == "approval.requested"]) == 1


def test_a_failed_item_does_not_stop_the_others(make_runtime: Any) -> None:
    rt, wire = make_runtime()
    items = payouts(12)
    items[4]["amount"] = "1"  # below the exchange's minimum withdrawal: a definite refusal
    run_id = rt.service.start(load(rt, "batch-payout.yaml"), {"payouts": items}, requested_by="erin")
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    shown = rt.service.show(run_id, with_audit=False)
    assert shown["state"] == "FAILED"
    assert shown["fan_out"][0]["states"] == {"FAILED": 1, "SUCCEEDED": 11}
    (failed,) = [s for s in shown["steps"] if s["state"] == "FAILED"]
    assert failed["id"] == "pay[0004]" and "minimum withdrawal" in failed["error"]
    assert len(withdrawals(wire)) == 11
    assert shown["error"] == "pay: 1 FAILED, 11 SUCCEEDED"
    (final,) = [e for e in query_events(rt.engine, run_id=run_id, type="run.state") if e.payload["to"] == "FAILED"]
    assert final.payload["items"] == {"pay": {"FAILED": 1, "SUCCEEDED": 11}}


def test_an_instance_whose_stored_params_were_edited_is_refused_and_the_rest_are_sent(make_runtime: Any) -> None:
    held = HeldDispatcher()
    rt, wire = make_runtime(dispatcher=held)
    run_id = rt.service.start(load(rt, "batch-payout.yaml"), {"payouts": payouts(5)}, requested_by="erin")
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    forged = {"coin": "USDT", "chainType": "ETH", "address": VENDORS[0], "quantity": "49999"}
    with rt.engine.begin() as conn:  # a database owner writes parameters before the first start
        conn.execute(update(steps).where(steps.c.run_id == run_id, steps.c.step_id == "pay[0003]")
                     .values(params=forged))
    held.release(rt.service)
    shown = rt.service.show(run_id, with_audit=False)
    states = {s["id"]: s["state"] for s in shown["steps"]}
    # what is about to be sent is not what the approvers signed for this instance
    assert states["pay[0003]"] == "FAILED"
    assert shown["fan_out"][0]["states"] == {"FAILED": 1, "SUCCEEDED": 4}
    assert shown["state"] == "FAILED"
    mismatches = [e for e in query_events(rt.engine, run_id=run_id) if e.type == "approval.digest_mismatch"]
    assert [e.step_id for e in mismatches] == ["pay[0003]"]
    sent = {w["clientOrderId"]: w for w in withdrawals(wire)}
    assert client_id_for(run_id, "pay[0003]") not in sent and len(sent) == 4
    assert all(Decimal(w["quantity"]) < 100 for w in sent.values())


def test_an_item_that_chooses_an_unknown_key_profile_is_refused_at_start(make_runtime: Any, tmp_path: Any) -> None:
    rt, wire = make_runtime()
    text = (ROOT / "workflows" / "batch-payout.yaml").read_text()
    text = text.replace("key: withdrawals", 'key: "${{ item.profile }}"').replace(
        "        amount: {type: decimal", "        profile: {type: string}\n        amount: {type: decimal")
    loaded = rt.service.load_and_check(text, source="batch.yaml")
    items = [dict(p, profile="withdrawals") for p in payouts(3)]
    items[2]["profile"] = "ops-read"
    with pytest.raises(ParameterError, match=r"pay\[0002\].*'ops-read', which lacks the 'withdraw' permission"):
        rt.service.start(loaded, {"payouts": items}, requested_by="erin")
    items[2]["profile"] = "nobody"
    with pytest.raises(ParameterError, match=r"'nobody', which is not in keys.yaml"):
        rt.service.start(loaded, {"payouts": items}, requested_by="erin")
    items[2]["profile"] = "withdrawals"
    run_id = rt.service.start(loaded, {"payouts": items}, requested_by="erin")
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    assert rt.service.state_of(run_id) == "SUCCEEDED" and len(withdrawals(wire)) == 3


def test_cli_pays_two_hundred_items_from_a_file_after_one_approval(tmp_path: Path, signed_config: Path) -> None:
    """issue 18 'done when': a fan-out of 200 payouts from the command line, one approval."""
    env = {"TREASURY_CONFIG_DIR": str(signed_config), "TREASURY_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    items = payouts(200)
    sheet = tmp_path / "payouts.json"
    sheet.write_text(json.dumps(items))
    wf = str(ROOT / "workflows" / "batch-payout.yaml")

    def cli_run(*args: str) -> Any:
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    res = cli_run("run", wf, "-i", f"payouts=@{sheet}", "--dry-run")
    total = format_amount(sum((Decimal(p["amount"]) for p in items), Decimal(0)))
    assert res.exit_code == 0, res.output
    assert f"pay: 200 items, 10 at a time; total {total} USDT" in res.output
    res = cli_run("run", wf, "-i", f"payouts=@{sheet}", "--as", "erin", "--json")
    assert res.exit_code == 0, res.output
    run = json.loads(res.output)
    assert run["state"] == "AWAITING_APPROVAL"
    assert run["fan_out"] == [{"step": "pay", "items": 200, "concurrency": 10, "totals": {"USDT": total},
                               "states": {"PENDING": 200}}]
    shown = cli_run("show", run["id"])
    assert f"guards pay: 200 items, 10 at a time; PENDING 200; total {total} USDT" in shown.output
    assert "guards pay[0199]: withdraw with key withdrawals" in shown.output
    assert cli_run("approve", run["id"], "--as", "alice").exit_code == 0
    assert cli_run("approve", run["id"], "--as", "bob").exit_code == 0
    shown = cli_run("show", run["id"])
    assert f"pay: 200 items, 10 at a time; SUCCEEDED 200; total {total} USDT" in shown.output
    data = json.loads(cli_run("show", run["id"], "--json").output)
    assert data["state"] == "SUCCEEDED"
    assert len({s["client_order_id"] for s in data["steps"] if s["kind"] == "operation"}) == 200
    assert len([a for a in data["approvals"] if a["decision"] == "approve"]) == 2
    assert cli_run("audit", "verify").exit_code == 0


def test_cli_reports_each_bad_item_with_its_place(tmp_path: Path, signed_config: Path) -> None:
    env = {"TREASURY_CONFIG_DIR": str(signed_config), "TREASURY_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    items = payouts(3)
    items[1]["amount"] = "0"
    items[2]["address"] = "not an address!"
    sheet = tmp_path / "payouts.json"
    sheet.write_text(json.dumps(items))
    wf = str(ROOT / "workflows" / "batch-payout.yaml")
    res = CliRunner().invoke(cli, ["run", wf, "-i", f"payouts=@{sheet}", "--as", "erin"], env=env)
    assert res.exit_code == 2
    assert "[1].amount: must be at least 0.01" in res.output and "[2].address: an address is" in res.output
    res = CliRunner().invoke(cli, ["run", wf, "-i", f"payouts=@{tmp_path / 'missing.json'}", "--as", "erin"], env=env)
    assert res.exit_code == 2 and "cannot read" in res.output


def test_the_rolling_cap_judges_the_whole_list_at_start(make_runtime: Any) -> None:
    rt, wire = make_runtime()
    # each item is within the 50000 per-transaction limit; together they pass the 200000 daily cap
    items = [{"address": VENDORS[0], "amount": "45000"} for _ in range(5)]
    run_id = rt.service.start(load(rt, "batch-payout.yaml"), {"payouts": items}, requested_by="erin")
    shown = rt.service.show(run_id, with_audit=False)
    assert shown["state"] == "FAILED"
    assert "for_each step 'pay' as a whole (5 items, 225000 USDT in total)" in shown["error"]
    assert "max_per_window" in shown["error"] or "200000" in shown["error"]
    assert all(s["state"] == "SKIPPED" for s in shown["steps"])
    assert wire.writes() == []
    whole = [e for e in query_events(rt.engine, run_id=run_id, type="policy.decision") if e.step_id == "pay"]
    assert [(e.payload["total"], e.payload["allowed"]) for e in whole] == [("225000", False)]
    # four of them fit: approved as one, and sent
    run_id = rt.service.start(load(rt, "batch-payout.yaml"), {"payouts": items[:4]}, requested_by="erin")
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    assert rt.service.state_of(run_id) == "SUCCEEDED" and len(withdrawals(wire)) == 4
