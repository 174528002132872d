"""Every human decision is signed and verified at the door; the database alone is never trusted.

Each refusal has zero effect at the (simulated) exchange. The attacks an adversarial review
tried (a stored snapshot without its approval step, a consistent rewrite of the amount, an
approval row inserted by SQL) end with nothing sent and the step parked with a plain reason.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, text, update

from tests.identities import signed_config_copy
from treasury.audit import query_events
from treasury.engine.quorum import GuardedStep, approval_digest, sha256_hex
from treasury.errors import ApprovalRefused, DecisionRefused
from treasury.people.decisions import sign_document
from treasury.runs import signing, votes
from treasury.runs.reverify import verify_decisions
from treasury.store.tables import approvals, runs, steps

from .conftest import PAYOUT, ROOT, HeldDispatcher, load

WITHDRAW = "/api/v1/account/withdraw"


def _withdrawals(wire: Any) -> list[Any]:
    return [r for r in wire.writes() if r.url.path == WITHDRAW]


def _refused(rt: Any, run_id: str) -> list[Any]:
    return [e for e in query_events(rt.engine, run_id=run_id) if e.type == "decision.refused"]


def _start(rt: Any, by: str = "erin", payout: dict[str, str] = PAYOUT) -> str:
    return str(rt.service.start(load(rt, "vendor-payout.yaml"), payout, requested_by=by))


def _key(rt: Any, person: str) -> Any:
    return rt.service.ctx.keyring.get(person)


def test_a_signed_two_of_three_approval_reaches_the_exchange(make_runtime: Any) -> None:
    rt, wire = make_runtime()
    run_id = _start(rt)
    rt.service.approve(run_id, "alice", "invoice checked")
    assert _withdrawals(wire) == []
    assert rt.service.approve(run_id, "carol") == "SUCCEEDED"
    assert len(_withdrawals(wire)) == 1
    granted = [e for e in query_events(rt.engine, run_id=run_id) if e.type == "approval.granted"]
    assert [e.actor for e in granted] == ["alice", "carol"]
    assert all(e.payload["decision"]["sshsig"].startswith("-----BEGIN SSH SIGNATURE-----") for e in granted)
    requested = next(e for e in query_events(rt.engine, run_id=run_id) if e.type == "run.requested")
    assert '"kind":"request"' in requested.payload["decision"]["document"]


def test_alices_document_signed_with_bobs_key_is_refused(make_runtime: Any) -> None:
    rt, wire = make_runtime()
    run_id = _start(rt)
    doc = signing.vote_document(rt.service, run_id, "alice", "approve", None)
    forged = sign_document(doc, _key(rt, "bob"))
    with pytest.raises(DecisionRefused, match="not one of the person's keys") as info:
        rt.service.approve(run_id, "alice", signed=forged)
    assert info.value.exit_code == 2
    with pytest.raises(DecisionRefused, match="is 'bob''s, not 'alice''s"):
        rt.service.approve(run_id, "alice", signer=_key(rt, "bob"))
    assert rt.service.show(run_id)["approvals"] == []
    assert len(_refused(rt, run_id)) == 2
    rt.service.approve(run_id, "bob")  # bob's own vote still counts once
    assert _withdrawals(wire) == [] and rt.service.state_of(run_id) == "AWAITING_APPROVAL"


def test_the_requesters_own_signature_is_refused(make_runtime: Any) -> None:
    rt, wire = make_runtime()
    run_id = _start(rt, by="alice")  # alice requests (she holds requester) and is listed as approver
    with pytest.raises(ApprovalRefused, match="four eyes"):
        rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    assert _withdrawals(wire) == [] and rt.service.state_of(run_id) == "AWAITING_APPROVAL"


def test_a_signature_over_other_parameters_is_refused(make_runtime: Any) -> None:
    rt, wire = make_runtime()
    run_id = _start(rt)
    other = _start(rt, payout={**PAYOUT, "amount": "9"})
    doc = signing.vote_document(rt.service, other, "alice", "approve", None)
    doc["run"] = run_id  # the approval of a small payout, presented for the big one
    with pytest.raises(DecisionRefused, match="params_digest"):
        rt.service.approve(run_id, "alice", signed=sign_document(doc, _key(rt, "alice")))
    assert _withdrawals(wire) == [] and rt.service.show(run_id)["approvals"] == []


def test_a_reused_nonce_and_a_stale_document_are_refused(make_runtime: Any) -> None:
    rt, wire = make_runtime()
    run_id = _start(rt)
    first = signing.vote_document(rt.service, run_id, "alice", "approve", None)
    rt.service.approve(run_id, "alice", signed=sign_document(first, _key(rt, "alice")))
    replay = signing.vote_document(rt.service, run_id, "bob", "approve", None)
    replay["nonce"] = first["nonce"]
    with pytest.raises(DecisionRefused, match=r"nonce .* was already used"):
        rt.service.approve(run_id, "bob", signed=sign_document(replay, _key(rt, "bob")))
    stale = signing.vote_document(rt.service, run_id, "bob", "approve", None)
    rt.clock.advance(11 * 60)
    with pytest.raises(DecisionRefused, match="TREASURY_DECISION_MAX_AGE"):
        rt.service.approve(run_id, "bob", signed=sign_document(stale, _key(rt, "bob")))
    assert _withdrawals(wire) == [] and rt.service.state_of(run_id) == "AWAITING_APPROVAL"
    assert [e.payload["kind"] for e in _refused(rt, run_id)] == ["approve", "approve"]


def test_a_person_without_the_approver_role_is_refused(make_runtime: Any, tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    people = config / "people.yaml"
    people.write_text(people.read_text() + "  grace:\n    roles: [auditor]\n    groups: [risk]\n    ssh_keys: []\n")
    from treasury.people.keyring import make_demo_identities

    make_demo_identities(config)
    rt, wire = make_runtime(config_dir=config)
    run_id = _start(rt)
    doc = signing.vote_document(rt.service, run_id, "grace", "approve", None)
    with pytest.raises((ApprovalRefused, DecisionRefused), match=r"not an approver|'approver' role"):
        rt.service.approve(run_id, "grace", signed=sign_document(doc, _key(rt, "grace")))
    with pytest.raises(DecisionRefused, match="'requester' role"):
        _start(rt, by="grace")
    assert _withdrawals(wire) == [] and rt.service.show(run_id)["approvals"] == []


def test_a_vote_arriving_after_expiry_is_refused_inside_the_locked_transaction(
    make_runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, wire = make_runtime()
    run_id = _start(rt)
    rt.service.approve(run_id, "alice")
    doc = signing.vote_document(rt.service, run_id, "bob", "approve", None)
    rt.clock.advance(24 * 3600 + 1)
    # the expiry sweep that runs before the vote has not seen it yet (a race): the lock must
    monkeypatch.setattr(votes, "expire_due", lambda svc: [])
    doc["issued_at"] = rt.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(ApprovalRefused, match="expired before this vote arrived"):
        rt.service.approve(run_id, "bob", signed=sign_document(doc, _key(rt, "bob")))
    assert rt.service.state_of(run_id) == "EXPIRED"
    assert _withdrawals(wire) == [] and len(rt.service.show(run_id)["approvals"]) == 1


# --------------------------------------------------------------------------- the database is not trusted


def _parked(rt: Any, run_id: str, wire: Any, why: str) -> None:
    shown = rt.service.show(run_id)
    pay = next(s for s in shown["steps"] if s["id"] == "pay")
    assert pay["state"] == "NEEDS_ATTENTION", pay
    assert (why in pay["error"] and "nothing was sent" in pay["error"]) or "not sent" in pay["error"]
    assert _withdrawals(wire) == []
    assert any(e.type == "decision.unverified" for e in query_events(rt.engine, run_id=run_id))


def test_attack_snapshot_without_its_approval_step_then_recover(make_runtime: Any) -> None:
    rt, wire = make_runtime()
    payout = {**PAYOUT, "amount": "49000"}
    run_id = _start(rt, payout=payout)
    with rt.engine.begin() as conn:
        snapshot = conn.execute(text("SELECT workflow_snapshot FROM runs WHERE id = :r"), {"r": run_id}).scalar_one()
        cut = snapshot[:snapshot.index("  - id: approve")] + snapshot[snapshot.index("  - id: pay"):]
        conn.execute(update(runs).where(runs.c.id == run_id).values(workflow_snapshot=cut, state="RUNNING"))
        conn.execute(text("DELETE FROM steps WHERE run_id = :r AND step_id = 'approve'"), {"r": run_id})
        conn.execute(update(steps).where(steps.c.run_id == run_id, steps.c.step_id == "pay")
                     .values(state="RUNNING"))
    rt.clock.advance(120)
    rt.service.recover(older_than=timedelta(seconds=60))
    _parked(rt, run_id, wire, "not the workflow the requester signed")
    assert f"run {run_id}: its stored workflow snapshot or inputs are not what its requester signed" in \
        verify_decisions(rt.engine).problems


def _rewrite_amount(engine: Engine, run_id: str, amount: str) -> None:
    """A consistent rewrite: inputs, the approval's bound parameters, its digest and the votes'."""
    with engine.begin() as conn:
        run = conn.execute(runs.select().where(runs.c.id == run_id)).one()
        row = conn.execute(steps.select().where(steps.c.run_id == run_id, steps.c.step_id == "approve")).one()
        inputs = {**run.inputs, "amount": amount}
        material = dict(row.params)
        material["guarded"]["pay"]["params"]["quantity"] = amount
        guarded = [GuardedStep(k, v["op"], v["key"], v["params"], v.get("account"))
                   for k, v in material["guarded"].items()]
        digest = approval_digest(approval_step="approve", workflow_digest=sha256_hex(run.workflow_snapshot),
                                 inputs=inputs, guarded=guarded)
        conn.execute(update(runs).where(runs.c.id == run_id).values(inputs=inputs))
        conn.execute(update(steps).where(steps.c.run_id == run_id, steps.c.step_id == "approve")
                     .values(params=material, digest=digest))
        conn.execute(update(approvals).where(approvals.c.run_id == run_id).values(digest=digest))


def test_attack_consistent_rewrite_of_the_amount(make_runtime: Any) -> None:
    dispatcher = HeldDispatcher()
    rt, wire = make_runtime(dispatcher=dispatcher)
    run_id = _start(rt)
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    _rewrite_amount(rt.engine, run_id, "49000")
    dispatcher.release(rt.service)
    _parked(rt, run_id, wire, "not the inputs the requester signed")
    problems = verify_decisions(rt.engine).problems
    assert f"run {run_id}: its stored workflow snapshot or inputs are not what its requester signed" in problems
    assert sum("no verified signed decision backs it" in p for p in problems) == 2


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_attack_an_approval_row_inserted_by_sql_is_never_counted(make_runtime: Any, db: str,
                                                                  request: pytest.FixtureRequest) -> None:
    engine = request.getfixturevalue("pg_engine") if db == "postgres" else None
    dispatcher = HeldDispatcher()
    rt, wire = make_runtime(engine=engine, dispatcher=dispatcher)
    run_id = _start(rt)
    rt.service.approve(run_id, "alice")
    with rt.engine.begin() as conn:
        digest = conn.execute(text("SELECT digest FROM steps WHERE run_id = :r AND step_id = 'approve'"),
                              {"r": run_id}).scalar_one()
        conn.execute(insert(approvals).values(run_id=run_id, step_id="approve", approver="bob", decision="approve",
                                              comment="inserted", digest=digest, created_at=rt.clock.now()))
        conn.execute(update(steps).where(steps.c.run_id == run_id, steps.c.step_id == "approve")
                     .values(state="SUCCEEDED"))
        conn.execute(update(steps).where(steps.c.run_id == run_id, steps.c.step_id == "pay").values(state="RUNNING"))
    rt.service.execute_step(run_id, "pay")
    _parked(rt, run_id, wire, "needs 2 verified signatures")
    assert "has 1 (alice)" in rt.service.show(run_id)["steps"][1]["error"]
    (problem,) = verify_decisions(rt.engine).problems
    assert problem.endswith(f"(run {run_id}, step approve, approve by bob): no verified signed decision backs it")
    # resolving the parked step is four-eyes: not by the run's requester
    with pytest.raises(DecisionRefused, match=r"requested run .* cannot resolve"):
        rt.service.resolve(run_id, "pay", user="erin", outcome="failed", note="forged approval row")
    assert rt.service.resolve(run_id, "pay", user="frank", outcome="failed", note="forged approval row") == "FAILED"
    assert _withdrawals(wire) == []


@pytest.mark.parametrize(("field", "value"), [("api_key", "demo-other"), ("account_id", "2002")])
def test_editing_keys_yaml_after_approval_sends_nothing(make_runtime: Any, tmp_path: Path, field: str,
                                                        value: str) -> None:
    config = signed_config_copy(tmp_path / "config")
    dispatcher = HeldDispatcher()
    rt, wire = make_runtime(config_dir=config, dispatcher=dispatcher)
    run_id = _start(rt)
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    keys = config / "keys.yaml"
    lines = keys.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.lstrip().startswith("withdrawals:"):
            if field == "api_key":
                _, _, rest = line.partition("api_key:")
                old = rest.split(",")[0].strip()
                lines[i] = line.replace(f"api_key: {old}", f"api_key: {value}", 1)
            else:
                lines[i] = line.rstrip().rstrip("}").rstrip() + f', account_id: "{value}"}}\n'
    keys.write_text("".join(lines))
    rt2, _ = make_runtime(engine=rt.engine, config_dir=config, dispatcher=dispatcher)  # e.g. the next CLI call
    dispatcher.release(rt2.service)
    shown = rt2.service.show(run_id)
    assert shown["state"] == "FAILED" and "differ from what was approved" in shown["error"]
    assert _withdrawals(wire) == []


def test_a_key_registered_while_the_process_runs_counts_without_a_restart(make_runtime: Any, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from treasury.people.edit import add_key
    from treasury.people.identity import load_key_file, write_key_file

    config = signed_config_copy(tmp_path / "config")
    rt, wire = make_runtime(config_dir=config)  # a long-running process: built once
    run_id = _start(rt)
    rt.service.approve(run_id, "alice")
    public = write_key_file(tmp_path / "bob_new", Ed25519PrivateKey.generate(), "bob@new-laptop")
    add_key(config / "people.yaml", "bob", public.openssh())
    assert rt.service.approve(run_id, "bob", signer=load_key_file(tmp_path / "bob_new")) == "SUCCEEDED"
    assert len(_withdrawals(wire)) == 1


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_attack_a_run_inserted_with_an_old_created_at_is_not_treated_as_legacy(
        make_runtime: Any, db: str, request: pytest.FixtureRequest) -> None:
    # a database owner copies an approved run under a new id (a second payout of the same amount),
    # backdated to before signed decisions existed, with its approval rows: it must neither be sent
    # nor pass audit verify as "legacy"
    from datetime import UTC, datetime

    engine = request.getfixturevalue("pg_engine") if db == "postgres" else None
    dispatcher = HeldDispatcher()
    rt, wire = make_runtime(engine=engine, dispatcher=dispatcher)
    run_id = _start(rt)
    rt.service.approve(run_id, "alice")
    rt.service.approve(run_id, "bob")
    forged = "rforged00001"
    old = datetime(2020, 1, 1, tzinfo=UTC)
    with rt.engine.begin() as conn:
        run = conn.execute(runs.select().where(runs.c.id == run_id)).one()._asdict()
        conn.execute(insert(runs).values({**run, "id": forged, "created_at": old, "updated_at": old,
                                          "state": "RUNNING"}))
        for row in conn.execute(steps.select().where(steps.c.run_id == run_id)).all():
            state = "SUCCEEDED" if row.step_id == "approve" else "RUNNING"
            values = {**row._asdict(), "run_id": forged, "state": state}
            values.pop("id", None)
            conn.execute(insert(steps).values(values))
        for row in conn.execute(approvals.select().where(approvals.c.run_id == run_id)).all():
            values = {**row._asdict(), "run_id": forged, "created_at": old}
            values.pop("id")
            conn.execute(insert(approvals).values(values))
    dispatcher.release(rt.service)
    rt.service.execute_step(forged, "pay")
    assert "no signed request" in rt.service.show(forged)["steps"][1]["error"]
    assert len(_withdrawals(wire)) == 1  # the real run's, and only it
    report = verify_decisions(rt.engine)
    assert report.legacy_runs == 0
    assert f"run {forged}: no signed request is on record for it" in report.problems


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_attack_replaying_a_finished_payout_by_deleting_its_execution_records(
        make_runtime: Any, db: str, request: pytest.FixtureRequest) -> None:
    # the signatures are genuine (same run, same digest): only the history of what was sent stops
    # a second withdrawal with the same client id (whether the exchange refuses a repeated client
    # id is not something to bet money on)
    from treasury.store.tables import execution_records

    engine = request.getfixturevalue("pg_engine") if db == "postgres" else None
    rt, wire = make_runtime(engine=engine)
    run_id = _start(rt)
    rt.service.approve(run_id, "alice")
    assert rt.service.approve(run_id, "bob") == "SUCCEEDED"
    assert len(_withdrawals(wire)) == 1
    with rt.engine.begin() as conn:
        conn.execute(execution_records.delete().where(execution_records.c.run_id == run_id))
        conn.execute(update(runs).where(runs.c.id == run_id).values(state="RUNNING"))
        conn.execute(update(steps).where(steps.c.run_id == run_id, steps.c.step_id == "pay")
                     .values(state="RUNNING", result=None, open_starts=0))
    rt.service.execute_step(run_id, "pay")
    assert len(_withdrawals(wire)) == 1
    pay = rt.service.show(run_id)["steps"][1]
    assert pay["state"] == "NEEDS_ATTENTION", pay
    assert "execution records" in pay["error"] and "audit" in pay["error"]


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
@pytest.mark.parametrize("ended_by", ["reject", "cancel"])
def test_attack_a_rejected_or_cancelled_run_set_back_in_the_database_is_never_sent(
        make_runtime: Any, db: str, ended_by: str, request: pytest.FixtureRequest) -> None:
    # carol's signed rejection (or erin's signed cancel) ended the run; a database owner sets it back
    # to waiting, and a second approver who trusts the screen approves: one rejection still ends it
    engine = request.getfixturevalue("pg_engine") if db == "postgres" else None
    dispatcher = HeldDispatcher()
    rt, wire = make_runtime(engine=engine, dispatcher=dispatcher)
    run_id = _start(rt)
    rt.service.approve(run_id, "alice")
    if ended_by == "reject":
        assert rt.service.reject(run_id, "carol", "wrong vendor") == "REJECTED"
    else:
        assert rt.service.cancel(run_id, "erin") == "CANCELLED"
    with rt.engine.begin() as conn:
        conn.execute(text("DELETE FROM approvals WHERE run_id = :r AND decision = 'reject'"), {"r": run_id})
        conn.execute(update(runs).where(runs.c.id == run_id).values(state="AWAITING_APPROVAL"))
        conn.execute(update(steps).where(steps.c.run_id == run_id, steps.c.step_id == "approve")
                     .values(state="AWAITING_APPROVAL", error=None))
        conn.execute(update(steps).where(steps.c.run_id == run_id, steps.c.step_id == "pay")
                     .values(state="PENDING", error=None))
    try:
        rt.service.approve(run_id, "bob")
    except (ApprovalRefused, DecisionRefused):
        pass  # refused at the door: as good
    dispatcher.release(rt.service)
    assert _withdrawals(wire) == []


def test_records_another_worker_commits_between_the_two_reads_are_not_taken_for_deleted(
        make_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two workers start the same step: this one reads no records, then the other commits its
    # records and their audit events before this one reads the audit history. On PostgreSQL each
    # statement sees what is committed by then, so the audit shows records this worker has not
    # read: they were not deleted, and the step must not be parked for a person.
    from treasury.execution import preparation
    from treasury.execution import records as R

    rt, wire = make_runtime()
    run_id = _start(rt)
    rt.service.approve(run_id, "alice")
    assert rt.service.approve(run_id, "bob") == "SUCCEEDED"
    real = R.load_step
    calls: list[int] = []

    def load_step(conn: Any, run: str, step: str) -> Any:
        calls.append(1)
        return [] if len(calls) == 1 else real(conn, run, step)  # the first read came too early

    monkeypatch.setattr(preparation.R, "load_step", load_step)
    from treasury.execution.outcomes import StepRequest
    from treasury.operations.registry import get_operation

    spec = get_operation("withdraw")
    step = rt.service.show(run_id)["steps"][1]
    req = StepRequest(run_id=run_id, step_id="pay", operation="withdraw", key_profile="withdrawals",
                      params=step["params"], actor="worker:test")
    legs = preparation.legs_for(spec, req)
    recs, inserted = preparation.prepare(rt.executor._services(), spec, req, legs)
    assert recs and not inserted and len(calls) == 2
    assert len(_withdrawals(wire)) == 1
