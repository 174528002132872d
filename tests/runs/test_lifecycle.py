"""Runs are durable: they execute their snapshot, survive restarts, and work on both engines."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.identities import signed_config_copy
from treasury.audit import query_events, verify_chain
from treasury.cli.main import cli

from .conftest import PAYOUT, ROOT, load


def test_a_run_executes_its_snapshot_not_the_edited_file(make_runtime: Any, tmp_path: Path) -> None:
    rt, wire = make_runtime()
    path = tmp_path / "payout.yaml"
    shutil.copy(ROOT / "workflows" / "vendor-payout.yaml", path)
    loaded = rt.service.load_and_check(path.read_text(), source=str(path))
    run_id = rt.service.start(loaded, PAYOUT, requested_by="erin")
    path.write_text(path.read_text().replace("chainType: ETH", "chainType: Tron"))  # edited after start
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    assert rt.service.state_of(run_id) == "SUCCEEDED"
    (sent,) = [r for r in wire.writes() if r.url.path == "/api/v1/account/withdraw"]
    assert b"chainType=ETH" in sent.content


def test_a_run_survives_a_restart_and_resumes_from_the_database(make_runtime: Any, engine: Any) -> None:
    first, _ = make_runtime(engine=engine)  # on SQLite and PostgreSQL
    run_id = first.service.start(load(first, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    first.service.approve(run_id, "alice")
    first.engine.dispose()  # every connection closed
    second, wire = make_runtime(engine=engine)  # a new process: same database, nothing in memory
    assert second.service.state_of(run_id) == "AWAITING_APPROVAL"
    second.service.approve(run_id, "bob")
    assert second.service.state_of(run_id) == "SUCCEEDED"
    assert len([r for r in wire.writes() if r.url.path == "/api/v1/account/withdraw"]) == 1


@pytest.mark.postgres
def test_full_run_on_postgresql_with_audit_chain(make_runtime: Any, pg_engine: Any) -> None:
    rt, _ = make_runtime(engine=pg_engine)
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    rt.service.approve(run_id, "alice", "checked")
    rt.service.approve(run_id, "carol")
    shown = rt.service.show(run_id)
    assert shown["state"] == "SUCCEEDED"
    assert [a["approver"] for a in shown["approvals"]] == ["alice", "carol"]
    assert verify_chain(pg_engine).ok
    types = [e.type for e in query_events(pg_engine, run_id=run_id)]
    assert types[0] == "run.requested" and "request.sent" in types and "response.received" in types
    assert types[-1] == "run.state"


def test_every_state_change_has_its_audit_event(make_runtime: Any) -> None:
    rt, _ = make_runtime()
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    events = list(query_events(rt.engine, run_id=run_id))
    run_moves = [(e.payload["from"], e.payload["to"]) for e in events if e.type == "run.state"]
    assert run_moves == [("PENDING", "AWAITING_APPROVAL"), ("AWAITING_APPROVAL", "RUNNING"),
                         ("RUNNING", "SUCCEEDED")]
    step_moves = [(e.step_id, e.payload["to"]) for e in events if e.type == "step.state"]
    assert step_moves == [("approve", "AWAITING_APPROVAL"), ("approve", "SUCCEEDED"), ("pay", "RUNNING"),
                          ("pay", "SUCCEEDED")]


def _cli(args: list[str], env: dict[str, str]) -> Any:
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def test_operator_cli_flow_payout(tmp_path: Path, signed_config: Path) -> None:
    """issue 5 'done when': run -> AWAITING_APPROVAL; requester refused; two approvers -> SUCCEEDED."""
    env = {"TREASURY_CONFIG_DIR": str(signed_config),
           "TREASURY_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    wf = str(ROOT / "workflows" / "vendor-payout.yaml")
    res = _cli(["run", wf, "-i", f"address={PAYOUT['address']}", "-i", "amount=1200", "--as", "erin", "--json"],
               env)
    assert res.exit_code == 0, res.output
    run = json.loads(res.output)
    assert run["state"] == "AWAITING_APPROVAL"
    waiting = run["steps"][0]
    assert waiting["waiting_for"]["pay"]["params"]["quantity"] == "1200" and len(waiting["digest"]) == 64

    res = _cli(["approve", run["id"], "--as", "erin"], env)
    assert res.exit_code == 1 and "four eyes" in res.output
    assert _cli(["approve", run["id"], "--as", "alice"], env).exit_code == 0
    res = _cli(["approve", run["id"], "--as", "bob", "--json"], env)
    assert res.exit_code == 0, res.output
    shown = json.loads(_cli(["show", run["id"], "--json"], env).output)
    assert shown["state"] == "SUCCEEDED"
    pay = shown["steps"][1]
    assert pay["client_order_id"].startswith("T" + run["id"]) and pay["result"]["orderId"]
    assert {"id", "workflow", "state", "steps", "approvals"} <= set(shown)
    assert {"id", "state", "client_order_id", "result", "error"} <= set(pay)
    listed = json.loads(_cli(["runs", "--json"], env).output)
    assert listed[0]["id"] == run["id"] and set(listed[0]) >= {"id", "workflow", "state", "requested_by", "created_at"}


def test_dry_run_sends_nothing_and_shows_policy_verdicts(tmp_path: Path, signed_config: Path) -> None:
    env = {"TREASURY_CONFIG_DIR": str(signed_config),
           "TREASURY_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    wf = str(ROOT / "workflows" / "vendor-payout.yaml")
    res = _cli(["run", wf, "-i", f"address={PAYOUT['address']}", "-i", "amount=60000", "--dry-run", "--json"], env)
    assert res.exit_code == 1  # the plan is refused by policy
    plan = json.loads(res.output)
    pay = plan["steps"][1]
    assert pay["params"]["quantity"] == "60000"
    assert any(not v["allowed"] and "max_per_tx" in (v["rule"] or "") for v in pay["policy"])
    assert json.loads(_cli(["runs", "--json"], env).output) == []


def test_bad_input_is_a_usage_error_naming_the_input(tmp_path: Path, signed_config: Path) -> None:
    env = {"TREASURY_CONFIG_DIR": str(signed_config),
           "TREASURY_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    wf = str(ROOT / "workflows" / "vendor-payout.yaml")
    res = _cli(["run", wf, "-i", f"address={PAYOUT['address']}", "-i", "amount=1e3"], env)
    assert res.exit_code == 2 and "amount" in res.output
    res = _cli(["run", wf, "-i", "amount"], env)
    assert res.exit_code == 2 and "name=value" in res.output


def test_unknown_withdrawal_needs_a_person_who_settles_it(make_runtime: Any) -> None:
    """The answer is lost and both lookups keep failing: the step parks with a plain reason, never re-sent."""
    rt, wire = make_runtime()
    rt.simulator.set_faults([
        {"method": "POST", "path": "/api/v1/account/withdraw", "mode": "error_after", "status": 500},
        {"method": "GET", "path": "/api/v1/account/withdrawOrders", "mode": "error_before", "status": 503},
        {"method": "GET", "path": "/api/v1/account/balanceFlow", "mode": "error_before", "status": 503},
    ])
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    shown = rt.service.show(run_id)
    assert shown["state"] == "NEEDS_ATTENTION"
    pay = shown["steps"][1]
    assert pay["state"] == "NEEDS_ATTENTION" and pay["client_order_id"] in pay["error"]
    assert "treasury resolve" in pay["error"]
    assert len([r for r in wire.writes() if r.url.path == "/api/v1/account/withdraw"]) == 1
    rt.simulator.set_faults([])
    with pytest.raises(Exception, match="note"):
        rt.service.resolve(run_id, "pay", user="dave", outcome="succeeded", note=" ")
    state = rt.service.resolve(run_id, "pay", user="dave", outcome="succeeded",
                               note="W-order found in the HashKey withdrawal history")
    assert state == "SUCCEEDED"
    events = [e for e in query_events(rt.engine, run_id=run_id) if e.type == "step.resolved"]
    assert len(events) == 1 and events[0].actor == "dave"
    assert len([r for r in wire.writes() if r.url.path == "/api/v1/account/withdraw"]) == 1


def test_policy_verdicts_show_per_step_and_a_policy_change_is_audited(make_runtime: Any, tmp_path: Path) -> None:
    rt, _ = make_runtime()
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    pay = rt.service.show(run_id)["steps"][1]
    stages = [p["stage"] for p in pay["policy"]]
    assert stages == ["start", "send"] and all(p["allowed"] for p in pay["policy"])
    assert any(v["rule"] == "limits[0].max_per_tx" for v in pay["policy"][1]["verdicts"])

    # a changed policy file: the next run records its new digest and the change is audited
    config = tmp_path / "config2"
    signed_config_copy(config)
    policy = config / "policy.yaml"
    policy.write_text(policy.read_text().replace('max_per_tx: "50000"', 'max_per_tx: "40000"'))
    from treasury.runtime import build_runtime
    from treasury.settings import Settings

    settings = Settings(config_dir=config, database_url=rt.settings.database_url, workflows_dir=ROOT / "workflows")
    rt2 = build_runtime(settings, clock=rt.clock, engine=rt.engine, simulator=rt.simulator)
    run2 = rt2.service.start(load(rt2, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    changed = [e for e in query_events(rt.engine, type="policy.changed")]
    assert len(changed) == 1 and changed[0].run_id == run2
    assert changed[0].payload["from"] != changed[0].payload["to"]
    assert rt2.service.show(run2)["policy_digest"] == changed[0].payload["to"]


def test_a_418_ban_is_durable_and_audited_until_a_person_resumes(make_runtime: Any) -> None:
    rt, wire = make_runtime()
    rt.simulator.set_faults([{"method": "POST", "path": "/api/v1/account/assetTransfer", "mode": "error_before",
                              "status": 418, "count": 1}])
    run_id = rt.service.start(load(rt, "treasury-sweep.yaml"), {"amount": "100"}, requested_by="erin")
    shown = rt.service.show(run_id)
    sweep = shown["steps"][1]
    assert shown["state"] == "RUNNING" and sweep["state"] == "RUNNING"
    assert "resume-exchange" in (sweep["error"] or "")
    assert any(e.type == "exchange.banned" for e in query_events(rt.engine))
    sent_before = len(wire.requests)

    later, wire2 = make_runtime()  # another process: the ban is in the database, not in memory
    later.service.execute_step(run_id, "sweep")
    assert len(wire2.requests) == 0 and len(wire.requests) == sent_before
    assert later.service.state_of(run_id) == "RUNNING"

    later.client.limiter.resume("dave")  # what `treasury resume-exchange --as dave` does
    later.service.execute_step(run_id, "sweep")
    assert later.service.state_of(run_id) == "SUCCEEDED"
    assert any(e.type == "exchange.resumed" and e.actor == "dave" for e in query_events(rt.engine))


def test_a_step_that_keeps_dying_is_parked_after_the_start_limit(make_runtime: Any, monkeypatch: Any) -> None:
    """A step whose every start dies mid-way (an OOM loop) is parked for a person, not started forever."""
    from .conftest import HeldDispatcher

    rt, wire = make_runtime(dispatcher=HeldDispatcher())
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    calls: list[str] = []

    def dies(request: Any) -> Any:
        calls.append(request.step_id)
        raise MemoryError("killed mid-step")

    monkeypatch.setattr(rt.service.ctx.executor, "execute", dies)
    limit = rt.settings.step_start_limit
    for _ in range(limit):
        with pytest.raises(MemoryError):
            rt.service.execute_step(run_id, "pay")
    assert rt.service.state_of(run_id) == "RUNNING"
    rt.service.execute_step(run_id, "pay")  # one start too many: parked, the executor not called
    assert calls == ["pay"] * limit
    shown = rt.service.show(run_id)
    pay = shown["steps"][1]
    assert shown["state"] == "NEEDS_ATTENTION" and pay["state"] == "NEEDS_ATTENTION"
    assert f"started {limit} times without finishing" in pay["error"] and "treasury resolve" in pay["error"]
    (event,) = [e for e in query_events(rt.engine, run_id=run_id) if e.type == "step.start_limit"]
    assert event.payload == {"starts": limit, "limit": limit}
    assert wire.writes() == []


def test_starts_that_reach_an_end_do_not_count_towards_the_limit(make_runtime: Any, monkeypatch: Any) -> None:
    """A step that keeps coming back 'still running' (waiting on the exchange) is never parked for it."""
    from treasury.execution.outcomes import StepOutcome
    from treasury.models import StepState

    from .conftest import HeldDispatcher

    rt, _ = make_runtime(dispatcher=HeldDispatcher())
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    real = rt.service.ctx.executor.execute
    monkeypatch.setattr(rt.service.ctx.executor, "execute",
                        lambda request: StepOutcome(state=StepState.RUNNING, error="waiting on the exchange"))
    for _ in range(rt.settings.step_start_limit * 2):
        rt.service.execute_step(run_id, "pay")
    assert rt.service.state_of(run_id) == "RUNNING"
    monkeypatch.setattr(rt.service.ctx.executor, "execute", real)
    rt.service.execute_step(run_id, "pay")
    assert rt.service.state_of(run_id) == "SUCCEEDED"


def test_a_person_cannot_settle_as_failed_what_the_exchange_shows_done(make_runtime: Any, monkeypatch: Any) -> None:
    """The withdrawal went through, then every start died before the step recorded it: parked.
    Settling it as failed would contradict the execution record, so it is refused."""
    from .conftest import HeldDispatcher

    rt, wire = make_runtime(dispatcher=HeldDispatcher())
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    real = rt.service.ctx.executor.execute

    def sends_then_dies(request: Any) -> Any:
        real(request)  # the first start sends and records SUCCEEDED; later ones find it done
        raise MemoryError("killed before the step recorded its outcome")

    monkeypatch.setattr(rt.service.ctx.executor, "execute", sends_then_dies)
    for _ in range(rt.settings.step_start_limit):
        with pytest.raises(MemoryError):
            rt.service.execute_step(run_id, "pay")
    rt.service.execute_step(run_id, "pay")
    assert rt.service.state_of(run_id) == "NEEDS_ATTENTION"
    with pytest.raises(Exception, match=r"cannot be settled as failed: the exchange shows it done") as info:
        rt.service.resolve(run_id, "pay", user="dave", outcome="failed", note="looks stuck")
    assert re.search(r"=SUCCEEDED, order W\w+\)", str(info.value))  # names the record and order id
    assert rt.service.state_of(run_id) == "NEEDS_ATTENTION"
    state = rt.service.resolve(run_id, "pay", user="dave", outcome="succeeded", note="W-order in history")
    assert state == "SUCCEEDED"
    assert len([r for r in wire.writes() if r.url.path == "/api/v1/account/withdraw"]) == 1


def _parked_after_prepare(make_runtime: Any, monkeypatch: Any) -> tuple[Any, Any, str]:
    """A payout whose every start died after writing its PREPARED record and reservation."""
    from treasury.execution.preparation import legs_for, prepare
    from treasury.operations.registry import get_operation

    from .conftest import HeldDispatcher

    rt, wire = make_runtime(dispatcher=HeldDispatcher())
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    executor = rt.service.ctx.executor

    def prepares_then_dies(request: Any) -> Any:
        spec = get_operation(request.operation)
        prepare(executor._services(), spec, request, legs_for(spec, request))
        raise MemoryError("killed before sending")

    monkeypatch.setattr(executor, "execute", prepares_then_dies)
    for _ in range(rt.settings.step_start_limit):
        with pytest.raises(MemoryError):
            rt.service.execute_step(run_id, "pay")
    rt.service.execute_step(run_id, "pay")
    assert rt.service.state_of(run_id) == "NEEDS_ATTENTION"
    return rt, wire, run_id


def test_a_parked_step_with_nothing_sent_settles_as_failed_and_frees_its_reservation(
    make_runtime: Any, monkeypatch: Any
) -> None:
    """'succeeded' is refused, 'failed' fails the PREPARED record and releases the policy
    reservation, and nothing reaches the exchange."""
    from sqlalchemy import select

    from treasury.policy.tables import policy_reservations
    from treasury.store.tables import execution_records

    rt, wire, run_id = _parked_after_prepare(make_runtime, monkeypatch)
    with pytest.raises(Exception, match=r"cannot be settled as succeeded: .*=PREPARED"):
        rt.service.resolve(run_id, "pay", user="dave", outcome="succeeded", note="assumed")
    state = rt.service.resolve(run_id, "pay", user="dave", outcome="failed", note="nothing in the history")
    assert state == "FAILED"
    with rt.engine.connect() as conn:
        records = list(conn.execute(select(execution_records.c.state).where(execution_records.c.run_id == run_id)))
        held = list(conn.execute(select(policy_reservations.c.status)
                                 .where(policy_reservations.c.run_id == run_id)))
    assert [r.state for r in records] == ["FAILED"]
    assert held and all(r.status == "released" for r in held)
    assert wire.writes() == []


def test_a_step_is_not_settled_while_its_request_is_being_reconciled(make_runtime: Any, monkeypatch: Any) -> None:
    """A record left SENDING (the worker died while sending) is the sweeper's to find out first."""
    from sqlalchemy import update

    from treasury.store.tables import execution_records

    rt, _, run_id = _parked_after_prepare(make_runtime, monkeypatch)
    with rt.engine.begin() as conn:
        conn.execute(update(execution_records).where(execution_records.c.run_id == run_id).values(state="SENDING"))
    for outcome in ("succeeded", "failed"):
        with pytest.raises(Exception, match=r"still has a request being reconciled \(T\w+=SENDING\)"):
            rt.service.resolve(run_id, "pay", user="dave", outcome=outcome, note="guess")
    assert rt.service.state_of(run_id) == "NEEDS_ATTENTION"
