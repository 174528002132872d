"""The step executor against the in-process simulator: outcomes, results and the audit trail."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine

from treasury.errors import RunStateError
from treasury.exchange.client import HashKeyClient
from treasury.execution import StepRequest, client_id_for, new_run_id
from treasury.execution import records as R
from treasury.models import ExecState, StepState
from treasury.policy import parse_policy

from .harness import OPS, PATHS, effects, make_world


@pytest.mark.parametrize("op", list(OPS))
def test_each_write_succeeds_once_with_ids_in_the_result(engine: Engine, op: str) -> None:
    world = make_world(engine)
    out = world.executor.execute(world.request(op))
    assert out.state is StepState.SUCCEEDED, out
    state = world.sim.state()
    assert [effects(state, c) for c in out.client_ids] == [1] * len(out.client_ids)
    assert out.result is not None
    if op == "batch_orders":
        assert [leg["clientOrderId"] for leg in out.result["legs"]] == out.client_ids
        assert all(leg["orderId"] and leg["status"] == "SUCCEEDED" for leg in out.result["legs"])
    else:
        assert out.result["clientOrderId"] == out.client_ids[0] and out.result["orderId"]
    sent = world.events("request.sent")
    assert sent and sent[0]["payload"]["key_profile"] == OPS[op][0]
    assert "secret" not in str(sent) and "signature" not in str(sent)


def test_read_operation_returns_the_data_and_is_audited(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    req = StepRequest(run_id=new_run_id(), step_id="look", operation="balances", key_profile="reader",
                      params={"accountId": "1001"}, actor="alice")
    world.sim.set_faults([{"method": "GET", "path": "/api/v1/account", "mode": "error_before", "count": 2}])
    out = world.executor.execute(req)
    assert out.state is StepState.SUCCEEDED and out.result is not None and "balances" in out.result
    assert [e["type"] for e in world.events(run_id=req.run_id)].count("request.sent") == 3
    assert len(world.events("retry.scheduled")) == 2


def test_redelivery_returns_the_stored_outcome_without_sending(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    req = world.request("withdraw")
    first = world.executor.execute(req)
    second = world.executor.execute(req)
    assert first == second and first.state is StepState.SUCCEEDED
    assert len(world.sent(PATHS["withdraw"])) == 1
    assert effects(world.sim.state(), first.client_ids[0]) == 1
    assert world.events("execution.duplicate_suppressed")


def _left_in_flight(world, req: StepRequest, state: ExecState = ExecState.SENDING) -> str:
    """A record as a crashed worker leaves it: SENDING committed, lease run out."""
    cid = client_id_for(req.run_id, req.step_id)
    params = {**req.params, "clientOrderId": cid}
    at = world.clock.now()
    with world.engine.begin() as conn:
        R.insert_prepared(conn, run_id=req.run_id, step_id=req.step_id, operation=req.operation,
                          key_profile=req.key_profile, legs=[R.NewRecord(cid, 0, params)], at=at)
        rec = R.claim(conn, R.load(conn, cid), owner="dead-worker", at=at, lease_seconds=1)
        R.change(conn, rec, owner="dead-worker", at=at, lease_seconds=1, state=state, attempts=1,
                 sent_at=at, unknown_since=at if state is ExecState.UNKNOWN else None)
    world.clock.advance(2)
    return cid


def test_record_left_in_sending_whose_request_arrived_is_reconciled_not_resent(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    req = world.request("asset_transfer")
    cid = _left_in_flight(world, req)
    world.client.call("asset_transfer", world.profiles["transfers"], {**req.params, "clientOrderId": cid})
    before = len(world.sent(PATHS["asset_transfer"]))
    out = world.executor.execute(req)
    assert out.state is StepState.SUCCEEDED and out.result and out.result["orderId"]
    assert len(world.sent(PATHS["asset_transfer"])) == before  # no blind re-send
    assert effects(world.sim.state(), cid) == 1
    verdicts = world.events("reconcile.verdict")
    assert verdicts[-1]["payload"]["verdict"] == "FOUND"


def test_record_left_in_sending_that_never_arrived_is_resent_after_settle(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    req = world.request("fiat_withdraw")
    cid = _left_in_flight(world, req)
    out = world.executor.execute(req)
    assert out.state is StepState.SUCCEEDED
    assert effects(world.sim.state(), cid) == 1
    with world.engine.begin() as conn:
        rec = R.load(conn, cid)
    assert rec is not None and rec.attempts == 2
    assert rec.sent_at is not None


def test_error_after_is_found_by_lookup_and_adopts_the_exchange_id(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    world.sim.set_faults([{"method": "POST", "path": PATHS["withdraw"], "mode": "error_after", "status": 500}])
    out = world.executor.execute(world.request("withdraw"))
    assert out.state is StepState.SUCCEEDED and out.result is not None
    (withdrawal,) = world.sim.state()["withdrawals"]
    assert out.result["orderId"] == withdrawal["id"]
    assert len(world.sent(PATHS["withdraw"])) == 1


def test_absent_after_settle_is_resent_with_the_same_client_id(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    world.sim.set_faults([{"method": "POST", "path": PATHS["asset_transfer"], "mode": "error_before",
                           "status": 503, "count": 1}])
    start = world.clock.time()
    out = world.executor.execute(world.request("asset_transfer"))
    assert out.state is StepState.SUCCEEDED
    bodies = [r.content.decode() for r in world.sent(PATHS["asset_transfer"])]
    assert len(bodies) == 2
    assert all(f"clientOrderId={out.client_ids[0]}" in b for b in bodies)
    assert bodies[0] != bodies[1]  # re-signed with a fresh timestamp
    assert world.clock.time() - start >= world.executor.settings.settle_seconds
    assert effects(world.sim.state(), out.client_ids[0]) == 1


def test_inconclusive_until_deadline_needs_attention_with_a_plain_reason(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    world.sim.set_faults([
        {"method": "POST", "path": PATHS["asset_transfer"], "mode": "timeout_after"},
        {"method": "GET", "path": "/api/v1/account/balanceFlow", "mode": "error_before", "status": 500},
    ])
    req = world.request("asset_transfer", max_seconds=300)
    start = world.clock.time()
    out = world.executor.execute(req)
    assert out.state is StepState.NEEDS_ATTENTION
    cid = out.client_ids[0]
    assert out.reason and cid in out.reason and f"treasury resolve {req.run_id} pay" in out.reason
    assert "internal transfer" in out.reason and "lookups over" in out.reason
    assert world.clock.time() - start >= world.executor.settings.deadline_seconds
    assert len(world.sent(PATHS["asset_transfer"])) == 1
    # A person checks the exchange, sees it happened, and settles the step.
    world.executor.resolve(run_id=req.run_id, step_id="pay", outcome="succeeded", by="bob", note="seen in UI")
    assert world.executor.execute(req).state is StepState.SUCCEEDED
    assert world.events("step.resolved")[0]["actor"] == "bob"
    with pytest.raises(RunStateError):
        world.executor.resolve(run_id=req.run_id, step_id="pay", outcome="failed", by="bob", note="again")


def test_duplicate_client_id_answer_is_looked_up(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    req = world.request("spot_order")
    cid = client_id_for(req.run_id, req.step_id)
    with world.engine.begin() as conn:
        R.insert_prepared(conn, run_id=req.run_id, step_id="pay", operation="spot_order", key_profile="trading",
                          legs=[R.NewRecord(cid, 0, {**req.params, "newClientOrderId": cid})],
                          at=world.clock.now())
    # The order exists already (an earlier attempt whose answer was lost).
    world.client.call("spot_order", world.profiles["trading"], {**req.params, "newClientOrderId": cid})
    out = world.executor.execute(req)
    assert out.state is StepState.SUCCEEDED
    answers = [e["payload"] for e in world.events("response.received")]
    assert answers[0]["code"] == "-1141"
    assert effects(world.sim.state(), cid) == 1


def test_va_withdrawal_whose_lookups_fail_needs_attention_and_is_never_resent(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    world.sim.set_faults([
        {"method": "POST", "path": PATHS["withdraw"], "mode": "error_before", "status": 500},
        {"method": "GET", "path": "/api/v1/account/withdrawOrders", "mode": "error_before", "status": 500},
    ])
    out = world.executor.execute(world.request("withdraw", max_seconds=300))
    assert out.state is StepState.NEEDS_ATTENTION and out.reason
    assert "withdrawal history" in out.reason and "withdraw_orders lookup failed" in out.reason
    assert len(world.sent(PATHS["withdraw"])) == 1
    assert world.sim.state()["withdrawals"] == []


def test_va_withdrawal_with_a_key_that_cannot_read_needs_attention(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    world.sim.set_faults([{"method": "POST", "path": PATHS["withdraw"], "mode": "reset_after"}])
    out = world.executor.execute(world.request("withdraw", key="withdraw-only", max_seconds=300))
    assert out.state is StepState.NEEDS_ATTENTION and out.reason and "read permission" in out.reason
    assert len(world.sent(PATHS["withdraw"])) == 1
    assert len(world.sim.state()["withdrawals"]) == 1  # it did happen: a person will say so


def test_policy_denial_fails_before_anything_is_sent(sqlite_engine: Engine) -> None:
    policy = parse_policy(b'limits:\n  - {op: withdraw, coin: USDT, max_per_tx: "3"}\n', "policy.yaml")
    world = make_world(sqlite_engine, policy=policy)
    req = world.request("withdraw")
    out = world.executor.execute(req)
    assert out.state is StepState.FAILED and out.error and "policy denied" in out.error
    assert world.seen == []
    assert world.events("policy.decision")[0]["payload"]["allowed"] is False
    assert world.executor.execute(req).state is StepState.FAILED and world.seen == []


def test_policy_reservation_is_confirmed_on_success(sqlite_engine: Engine) -> None:
    from treasury.policy.ledger import step_reservations

    policy = parse_policy(b'limits:\n  - {op: withdraw, coin: USDT, max_per_tx: "50"}\n', "policy.yaml")
    world = make_world(sqlite_engine, policy=policy)
    ok = world.request("withdraw")
    assert world.executor.execute(ok).state is StepState.SUCCEEDED
    bad = world.request("withdraw", params={**OPS["withdraw"][1], "address": "0x" + "1" * 40})
    assert world.executor.execute(bad).state is StepState.FAILED  # -1171 not whitelisted
    with sqlite_engine.connect() as conn:
        assert {r.status for r in step_reservations(conn, run_id=ok.run_id, step_id="pay")} == {"committed"}
        assert {r.status for r in step_reservations(conn, run_id=bad.run_id, step_id="pay")} == {"released"}


def test_definite_rejection_fails_with_zero_effects(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    params = {**OPS["withdraw"][1], "address": "0x" + "2" * 40}
    out = world.executor.execute(world.request("withdraw", params=params))
    assert out.state is StepState.FAILED and out.error and "-1171" in out.error
    assert world.sim.state()["withdrawals"] == []


def test_batch_leg_errors_are_per_leg(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    orders = [dict(OPS["batch_orders"][1]["orders"][0]),
              {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "price": "70000", "quantity": "500"}]
    out = world.executor.execute(world.request("batch_orders", params={"orders": orders}))
    assert out.state is StepState.FAILED and out.result is not None
    first, second = out.result["legs"]
    assert first["status"] == "SUCCEEDED" and first["orderId"]
    assert second["status"] == "FAILED" and "0401" in second["error"]
    state = world.sim.state()
    assert [effects(state, c) for c in out.client_ids] == [1, 0]


def test_wallet_signing_with_unknown_outcome_needs_attention_and_is_sent_once(sqlite_engine: Engine) -> None:
    from treasury.simulator.funding import wallet_signature

    world = make_world(sqlite_engine)
    address = "0x" + "3" * 40
    params = {"coin": "USDT", "chainType": "ETH", "address": address, "message": "I own this",
              "walletSignature": wallet_signature(address, "I own this")}
    world.sim.set_faults([{"method": "POST", "path": "/api/v1/whitelist/walletSigning", "mode": "error_after"}])
    req = StepRequest(run_id=new_run_id(), step_id="sign", operation="whitelist_wallet_signing",
                      key_profile="whitelist", params=params, actor="alice")
    out = world.executor.execute(req)
    assert out.state is StepState.NEEDS_ATTENTION and out.reason and "no lookup" in out.reason
    assert world.executor.execute(req).state is StepState.NEEDS_ATTENTION
    assert len(world.sent("/api/v1/whitelist/walletSigning")) == 1


def test_rate_limit_is_waited_out_within_the_step_budget(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    world.sim.set_faults([{"method": "POST", "path": PATHS["asset_transfer"], "mode": "error_before",
                           "status": 429, "code": "0003", "count": 1}])
    out = world.executor.execute(world.request("asset_transfer"))
    assert out.state is StepState.SUCCEEDED
    assert 60.0 in world.clock.sleeps
    assert effects(world.sim.state(), out.client_ids[0]) == 1


def test_rate_limit_beyond_the_budget_leaves_the_step_running(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    world.sim.set_faults([{"method": "POST", "path": PATHS["asset_transfer"], "mode": "error_before",
                           "status": 429, "count": 1}])
    req = world.request("asset_transfer", max_seconds=10)
    out = world.executor.execute(req)
    assert out.state is StepState.RUNNING and out.error == "rate limited; will retry"
    with world.engine.begin() as conn:
        assert R.load(conn, out.client_ids[0]).state is ExecState.PREPARED
    world.clock.advance(61)
    assert world.executor.execute(req).state is StepState.SUCCEEDED


def test_ban_halts_until_a_person_resumes(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    world.sim.set_faults([{"method": "POST", "path": PATHS["withdraw"], "mode": "error_before", "status": 418,
                           "count": 1}])
    req = world.request("withdraw")
    out = world.executor.execute(req)
    assert out.state is StepState.RUNNING and out.error and "resume-exchange" in out.error
    assert world.executor.execute(req).state is StepState.RUNNING
    assert len(world.sent(PATHS["withdraw"])) == 1
    world.client.limiter.resume("bob")
    assert world.executor.execute(req).state is StepState.SUCCEEDED
    assert len(world.sim.state()["withdrawals"]) == 1


def test_unreachable_exchange_fails_with_nothing_sent(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    world.executor.clients = lambda name: (
        HashKeyClient("http://sim.local", httpx.Client(transport=httpx.MockTransport(refuse)), clock=world.clock),
        world.profiles[name])
    out = world.executor.execute(world.request("asset_transfer"))
    assert out.state is StepState.FAILED and out.error and "nothing was sent" in out.error
    assert len(world.clock.sleeps) == world.executor.settings.send_retry_attempts - 1
    with world.engine.begin() as conn:
        rec = R.load(conn, out.client_ids[0])
    assert rec.state is ExecState.FAILED and rec.attempts == 0


def test_bad_parameters_fail_without_a_record(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    out = world.executor.execute(world.request("withdraw", params={"coin": "USDT", "quantity": "1e5"}))
    assert out.state is StepState.FAILED and out.error and "nothing was sent" in out.error
    with world.engine.begin() as conn:
        assert R.load_step(conn, "x", "pay") == []
    assert world.seen == []


def test_changed_parameters_for_an_existing_step_are_refused(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine)
    req = world.request("withdraw")
    assert world.executor.execute(req).state is StepState.SUCCEEDED
    changed = StepRequest(**{**req.__dict__, "params": {**req.params, "quantity": "6"}})
    out = world.executor.execute(changed)
    assert out.state is StepState.NEEDS_ATTENTION and out.reason and "other parameters" in out.reason
    assert len(world.sim.state()["withdrawals"]) == 1


def test_a_recording_audit_function_sees_every_step_of_the_protocol(sqlite_engine: Engine) -> None:
    seen: list[tuple[str, dict]] = []

    def record(conn, *, type, actor, at, run_id=None, step_id=None, payload=None):
        seen.append((type, dict(payload or {})))

    world = make_world(sqlite_engine, audit=record)
    world.sim.set_faults([{"method": "POST", "path": PATHS["withdraw"], "mode": "timeout_after"}])
    assert world.executor.execute(world.request("withdraw")).state is StepState.SUCCEEDED
    types = [t for t, _ in seen]
    assert types.index("request.sent") < types.index("response.received") < types.index("reconcile.lookup")
    assert types.count("reconcile.lookup") >= 2 and "reconcile.verdict" in types
    transitions = [(p["from"], p["to"]) for t, p in seen if t == "execution.state" and "from" in p]
    assert transitions == [("PREPARED", "SENDING"), ("SENDING", "UNKNOWN"), ("UNKNOWN", "SUCCEEDED")]
