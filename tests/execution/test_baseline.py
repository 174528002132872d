"""Transfers with a key that cannot read the fund statement: balances noted before sending,
and shown (never acted on) when the answer is lost."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine

from treasury.execution import reconcile as rc
from treasury.execution import records as R
from treasury.models import ExecState, StepState
from treasury.operations import asset_transfer
from treasury.operations.balances import total_of
from treasury.operations.registry import get_operation

from .harness import PATHS, effects, make_world

PARAMS = {"fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT", "quantity": "10"}
NOTED = {"coin": "USDT", "at": "2026-01-01T00:00:00+00:00", "totals": {"1001": "250000", "1002": "0"}}
BALANCES = "/api/v1/account"
FLOW = "/api/v1/account/balanceFlow"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- pure


def test_total_of_reads_the_coin_and_counts_an_unlisted_coin_as_zero() -> None:
    answer = {"balances": [{"asset": "USDT", "total": "12.5", "free": "10", "locked": "2.5"}]}
    assert total_of(answer, "USDT") == Decimal("12.5")
    assert total_of(answer, "BTC") == Decimal(0)
    assert total_of({"balances": [{"asset": "USDT", "total": "x"}]}, "USDT") is None
    assert total_of(["not", "balances"], "USDT") is None


@pytest.mark.parametrize(("now", "says"), [
    ({"1001": "249990", "1002": "10"}, "both moved by exactly 10, as this transfer would make them"),
    ({"1001": "250000", "1002": "0"}, "neither moved, as if this transfer had not happened"),
    ({"1001": "249980", "1002": "10"}, "does not match a transfer of 10: other activity moved these accounts"),
])
def test_describe_compares_both_accounts_with_the_quantity(now: dict[str, str], says: str) -> None:
    text = asset_transfer.describe(PARAMS, NOTED, now)
    assert says in text and "evidence, not proof" in text
    assert f"1001: USDT 250000 -> {now['1001']}" in text


def test_describe_without_a_baseline_or_a_readable_balance_says_so() -> None:
    assert "no balances were noted" in asset_transfer.describe(PARAMS, None, {"1001": "1", "1002": "2"})
    text = asset_transfer.describe(PARAMS, NOTED, {"1001": "the lookup failed (HTTP 500)", "1002": "10"})
    assert "now unreadable (the lookup failed (HTTP 500))" in text and "cannot be compared" in text
    partial = {**NOTED, "totals": {"1002": "0"}, "errors": {"1001": "HTTP 500"}}
    assert "1001: not noted before sending" in asset_transfer.describe(PARAMS, partial, {"1001": "1", "1002": "10"})


def test_the_plan_reads_balances_and_the_verdict_is_final_but_never_found_or_absent() -> None:
    lookups = rc.plan(get_operation("asset_transfer"), "T1", PARAMS, sent_at=None, now=NOW,
                      fund_statement=False)
    assert [(lk.source, lk.operation, lk.params) for lk in lookups] == [
        ("balances:1001", "balances", {"accountId": "1001"}), ("balances:1002", "balances", {"accountId": "1002"})]
    answers: dict[str, Any] = {"balances:1001": {"balances": [{"asset": "USDT", "total": "249990"}]},
                               "balances:1002": {"balances": [{"asset": "USDT", "total": "10"}]}}
    v = rc.verdict_for(get_operation("asset_transfer"), "T1", answers, params=PARAMS, noted=NOTED, fund_statement=False)
    assert isinstance(v, rc.Inconclusive) and v.final
    assert "fund_statement: false" in v.reason and "both moved by exactly 10" in v.reason


# --------------------------------------------------------------------------- through the executor


def _stored(world: Any, client_id: str) -> R.ExecRecord:
    with world.engine.connect() as conn:
        rec = R.load(conn, client_id)
    assert rec is not None
    return rec


def test_a_sub_key_transfer_notes_balances_before_sending(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine, sub_keys=["demo-transfer"])
    out = world.executor.execute(world.request("asset_transfer", key="transfers-sub"))
    assert out.state is StepState.SUCCEEDED
    paths = [r.url.path for r in world.seen if r.url.path != "/api/v1/time"]
    assert paths == [BALANCES, BALANCES, PATHS["asset_transfer"]]  # noted first, then sent
    rec = _stored(world, out.client_ids[0])
    assert rec.baseline is not None and rec.baseline["totals"] == {"1001": "250000", "1002": "0"}
    (event,) = world.events("execution.baseline")
    assert event["payload"]["totals"] == {"1001": "250000", "1002": "0"} and event["payload"]["coin"] == "USDT"


@pytest.mark.parametrize(("mode", "happened", "says"), [
    ("timeout_after", 1, "both moved by exactly 10"),
    ("error_before", 0, "neither moved"),
])
def test_a_lost_answer_goes_to_a_person_with_the_balance_change_and_is_never_resent(
    sqlite_engine: Engine, mode: str, happened: int, says: str
) -> None:
    world = make_world(sqlite_engine, sub_keys=["demo-transfer"])
    world.sim.set_faults([{"method": "POST", "path": PATHS["asset_transfer"], "mode": mode, "status": 500}])
    req = world.request("asset_transfer", key="transfers-sub", max_seconds=300)
    start = world.clock.time()
    out = world.executor.execute(req)
    assert out.state is StepState.NEEDS_ATTENTION and out.reason
    assert says in out.reason and "fund_statement: false" in out.reason and "treasury resolve" in out.reason
    assert len(world.sent(PATHS["asset_transfer"])) == 1  # never re-sent on balances alone
    assert world.sent(FLOW) == []  # the fund statement is not even asked
    assert effects(world.sim.state(), out.client_ids[0]) == happened
    # escalated once the settle window passed, not after the whole deadline
    settings = world.executor.settings
    assert settings.settle_seconds <= world.clock.time() - start < settings.deadline_seconds
    verdicts = [e["payload"] for e in world.events("reconcile.verdict")]
    assert verdicts[-1]["verdict"] == "INCONCLUSIVE" and verdicts[-1]["final"] is True
    assert _stored(world, out.client_ids[0]).state is ExecState.NEEDS_ATTENTION


def test_a_sub_key_wrongly_configured_as_master_is_told_how_to_fix_it(sqlite_engine: Engine) -> None:
    world = make_world(sqlite_engine, sub_keys=["demo-transfer"])
    assert world.client.call("check_api_key", world.profiles["transfers"], {}).data == {"accountType": "sub"}
    world.sim.set_faults([{"method": "POST", "path": PATHS["asset_transfer"], "mode": "timeout_after"}])
    out = world.executor.execute(world.request("asset_transfer", max_seconds=300))
    assert out.state is StepState.NEEDS_ATTENTION and out.reason
    assert "code -1005" in out.reason and "set fund_statement: false on its profile" in out.reason
    assert len(world.sent(PATHS["asset_transfer"])) == 1


def test_keys_yaml_fund_statement_reaches_the_profile_and_a_bad_value_names_the_field(tmp_path: Any) -> None:
    from treasury.errors import ConfigError
    from treasury.keys import load_key_specs

    path = tmp_path / "keys.yaml"
    path.write_text("profiles:\n  sub: {api_key: k, secret_env: SUB_SECRET, permissions: [read, transfer], "
                    "fund_statement: false}\n  main: {api_key: m, secret_env: SUB_SECRET, permissions: [read]}\n")
    specs = load_key_specs(path)
    assert specs["sub"].fund_statement is False and specs["main"].fund_statement is True
    assert specs["sub"].resolve({"SUB_SECRET": "s"}).fund_statement is False
    path.write_text("profiles:\n  sub: {api_key: k, secret_env: S, permissions: [read], fund_statement: maybe}\n")
    with pytest.raises(ConfigError, match="fund_statement"):
        load_key_specs(path)
