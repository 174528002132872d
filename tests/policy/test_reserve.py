"""Velocity caps and the reservation ledger, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from tests.policy.helpers import HK_TUESDAY_10, PAYROLL, UNLISTED, VENDOR_A, VENDOR_B, policy_from, usdt_withdraw
from treasury.errors import ConfigError
from treasury.policy import Policy, Verdict, confirm, denials, headroom, release, reserve
from treasury.policy.evaluate import evaluate
from treasury.policy.tables import policy_reservations

T0 = HK_TUESDAY_10
US = timedelta(microseconds=1)


def _reserve(engine: Engine, policy: Policy, run: str, params: dict[str, Any], *, op: str = "withdraw",
             at: datetime = T0, step: str = "pay", account: str | None = None) -> list[Verdict]:
    with engine.begin() as conn:
        return reserve(conn, policy, run_id=run, step_id=step, op=op, params=params, at=at, account=account)


def _rows(engine: Engine) -> list[tuple[str, str, int, str, str, str]]:
    t = policy_reservations.c
    with engine.begin() as conn:
        rows = conn.execute(select(t.run_id, t.step_id, t.leg, t.asset, t.amount, t.status).order_by(t.id))
        return [(r.run_id, r.step_id, r.leg, r.asset, r.amount, r.status) for r in rows]


def _window_verdict(verdicts: list[Verdict]) -> Verdict:
    [verdict] = [v for v in verdicts if v.rule and v.rule.endswith("max_per_window")]
    return verdict


def test_cap_fills_up_to_exactly_the_limit(engine: Engine, shipped: Policy) -> None:
    for i in range(4):
        verdicts = _reserve(engine, shipped, f"r{i}", usdt_withdraw("50000"), at=T0 + timedelta(minutes=i))
        assert denials(verdicts) == []
    last = _window_verdict(verdicts)
    assert (last.details["used"], last.details["headroom"], last.details["limit"]) == ("150000", "50000", "200000")
    denied = _window_verdict(_reserve(engine, shipped, "r9", usdt_withdraw("0.000001"), at=T0 + timedelta(hours=1)))
    assert not denied.allowed
    assert denied.rule == "limits[0].max_per_window"
    assert (denied.details["used"], denied.details["headroom"], denied.details["window"]) == ("200000", "0", "24h")
    assert "would exceed 200000 per 24h" in denied.message
    # the denied reservation left nothing behind
    assert [r[0] for r in _rows(engine)] == ["r0", "r1", "r2", "r3"]


def test_window_edge_is_exclusive_of_the_old_reservation(engine: Engine) -> None:
    policy = policy_from('limits: [{op: withdraw, coin: USDT, max_per_window: "100", window: 24h}]')
    assert denials(_reserve(engine, policy, "old", usdt_withdraw("100"))) == []
    with engine.begin() as conn:
        just_before = evaluate(conn, policy, op="withdraw", params=usdt_withdraw("1"), at=T0 + timedelta(hours=24) - US)
        at_edge = evaluate(conn, policy, op="withdraw", params=usdt_withdraw("1"), at=T0 + timedelta(hours=24))
    assert not _window_verdict(just_before).allowed
    assert _window_verdict(at_edge).allowed and _window_verdict(at_edge).details["used"] == "0"


def test_evaluate_is_read_only_and_reports_headroom(engine: Engine, shipped: Policy) -> None:
    _reserve(engine, shipped, "r1", usdt_withdraw("30000"))
    with engine.begin() as conn:
        verdict = _window_verdict(evaluate(conn, shipped, op="withdraw", params=usdt_withdraw("40000"), at=T0))
        rooms = headroom(conn, shipped, at=T0)
    assert verdict.allowed and (verdict.details["used"], verdict.details["headroom"]) == ("30000", "170000")
    assert [h.to_dict() for h in rooms] == [{
        "rule": "limits[0].max_per_window", "op": "withdraw", "asset": "USDT", "window": "24h",
        "limit": "200000", "used": "30000", "remaining": "170000", "account": None, "destination": None,
    }]
    assert len(_rows(engine)) == 1


def test_release_frees_and_confirm_keeps_counting(engine: Engine) -> None:
    policy = policy_from('limits: [{op: withdraw, coin: USDT, max_per_window: "100", window: 24h}]')
    assert denials(_reserve(engine, policy, "a", usdt_withdraw("100"))) == []
    assert denials(_reserve(engine, policy, "b", usdt_withdraw("1")))
    with engine.begin() as conn:
        release(conn, run_id="a", step_id="pay", at=T0)
    assert denials(_reserve(engine, policy, "b", usdt_withdraw("60"))) == []
    with engine.begin() as conn:
        confirm(conn, run_id="b", step_id="pay", at=T0)
        release(conn, run_id="b", step_id="pay", at=T0)  # too late: the money moved
    assert denials(_reserve(engine, policy, "c", usdt_withdraw("41")))
    assert [(r[0], r[5]) for r in _rows(engine)] == [("a", "released"), ("b", "committed")]


def test_confirm_after_release_counts_again(engine: Engine) -> None:
    policy = policy_from('limits: [{op: withdraw, coin: USDT, max_per_window: "100", window: 24h}]')
    _reserve(engine, policy, "a", usdt_withdraw("100"))
    with engine.begin() as conn:
        release(conn, run_id="a", step_id="pay", at=T0)
        confirm(conn, run_id="a", step_id="pay", at=T0)  # reconciliation found it sent after all
    assert denials(_reserve(engine, policy, "b", usdt_withdraw("1")))


def test_reserve_is_idempotent_per_step(engine: Engine, shipped: Policy) -> None:
    assert denials(_reserve(engine, shipped, "r1", usdt_withdraw("50000"))) == []
    [again] = _reserve(engine, shipped, "r1", usdt_withdraw("50000"), at=T0 + timedelta(minutes=5))
    assert again.allowed and again.rule == "reservation"
    assert again.details["reserved"] == "50000 USDT (reserved)"
    [changed] = _reserve(engine, shipped, "r1", usdt_withdraw("40000"))
    assert not changed.allowed and "different reservation" in changed.message
    assert len(_rows(engine)) == 1
    with engine.begin() as conn:
        used = _window_verdict(evaluate(conn, shipped, op="withdraw", params=usdt_withdraw("1"), at=T0))
    assert used.details["used"] == "50000"


def test_a_released_step_can_reserve_again(engine: Engine, shipped: Policy) -> None:
    _reserve(engine, shipped, "r1", usdt_withdraw("50000"))
    with engine.begin() as conn:
        release(conn, run_id="r1", step_id="pay", at=T0)
    assert denials(_reserve(engine, shipped, "r1", usdt_withdraw("45000"))) == []
    assert [(r[4], r[5]) for r in _rows(engine)] == [("45000", "reserved")]


@pytest.mark.parametrize(
    ("op", "params", "rule"),
    [
        # the acceptance cases of the shipped policy: over the per-transaction limit, unlisted address
        ("withdraw", usdt_withdraw("60000"), "limits[0].max_per_tx"),
        ("withdraw", usdt_withdraw("100", UNLISTED), "destinations.withdraw"),
        ("fiat_withdraw", {"asset": "USD", "amount": "5", "bankAccount": "HSBC-999"}, "destinations.fiat_withdraw"),
        # at send time a template is literal text, so it is not an amount
        ("withdraw", usdt_withdraw("${{ inputs.amount }}"), "limits[0].max_per_tx"),
    ],
)
def test_any_denial_reserves_nothing(
    engine: Engine, shipped: Policy, op: str, params: dict[str, str], rule: str
) -> None:
    verdicts = _reserve(engine, shipped, "r1", params, op=op)
    assert rule in {v.rule for v in denials(verdicts)}
    assert _rows(engine) == []


@pytest.mark.postgres
def test_repeatable_read_is_refused_on_postgres(pg_engine: Engine, shipped: Policy) -> None:
    # its snapshot predates the lock, so two reservations could read the same totals
    with pg_engine.connect() as conn:
        conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin(), pytest.raises(ConfigError, match="READ COMMITTED"):
            reserve(conn, shipped, run_id="r1", step_id="pay", op="withdraw", params=usdt_withdraw("1"), at=T0)


def test_window_denial_at_send_time(engine: Engine, shipped: Policy) -> None:
    fiat = {"asset": "USD", "amount": "5000", "bankAccount": PAYROLL}
    assert denials(_reserve(engine, shipped, "r1", fiat, op="fiat_withdraw")) == []
    saturday = T0 + timedelta(days=4)
    [denied] = denials(_reserve(engine, shipped, "r2", fiat, op="fiat_withdraw", at=saturday))
    assert denied.rule == "windows[0]"
    assert [r[0] for r in _rows(engine)] == ["r1"]


def test_account_scoped_cap(engine: Engine) -> None:
    policy = policy_from('limits: [{op: withdraw, coin: USDT, account: "1001", max_per_window: "100", window: 1h}]')
    assert denials(_reserve(engine, policy, "a", usdt_withdraw("100"), account="1001")) == []
    assert denials(_reserve(engine, policy, "b", usdt_withdraw("100"), account="1002")) == []
    assert denials(_reserve(engine, policy, "c", usdt_withdraw("1"), account="1001"))
    # the step's account must be known for an account-scoped rule to be decided
    [unknown] = denials(_reserve(engine, policy, "d", usdt_withdraw("1")))
    assert unknown.rule == "limits[0]" and "account is not known" in unknown.message


def test_destination_scoped_cap_by_label(engine: Engine) -> None:
    policy = policy_from(f"""
        limits: [{{op: withdraw, coin: USDT, destination: Vendor B, max_per_window: "100", window: 24h}}]
        destinations:
          withdraw:
            - {{coin: USDT, chain: ETH, address: "{VENDOR_A}", label: Vendor A}}
            - {{coin: USDT, chain: ETH, address: "{VENDOR_B.upper().replace("0X", "0x")}", label: Vendor B}}
        """)
    assert denials(_reserve(engine, policy, "a", usdt_withdraw("100", VENDOR_B))) == []
    assert denials(_reserve(engine, policy, "b", usdt_withdraw("500", VENDOR_A))) == []
    [denied] = denials(_reserve(engine, policy, "c", usdt_withdraw("1", VENDOR_B)))
    assert denied.details["used"] == "100"


def test_batch_reserves_one_row_per_symbol(engine: Engine) -> None:
    policy = policy_from('limits: [{op: spot_order, symbol: BTCUSDT, max_per_window: "200000", window: 24h}]')
    btc = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "60000", "quantity": "1"}
    eth = {"symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT", "price": "3000", "quantity": "2"}
    assert denials(_reserve(engine, policy, "a", {"orders": [btc, eth, btc]}, op="batch_orders")) == []
    assert [(r[2], r[3], r[4]) for r in _rows(engine)] == [(0, "BTCUSDT", "120000"), (1, "ETHUSDT", "6000")]
    # a single spot order shares the cap with batches
    [denied] = denials(_reserve(engine, policy, "b", {**btc, "quantity": "1.5"}, op="spot_order"))
    assert denied.details["used"] == "120000"
    with engine.begin() as conn:
        release(conn, run_id="a", step_id="pay", at=T0)
    assert {r[5] for r in _rows(engine)} == {"released"}
    # an empty batch cannot be measured at send time
    assert denials(_reserve(engine, policy, "c", {"orders": []}, op="batch_orders"))


def test_unmeasured_operations_reserve_nothing(engine: Engine, shipped: Policy) -> None:
    assert _reserve(engine, shipped, "r1", {"orderId": "1"}, op="cancel_order") == []
    assert _rows(engine) == []


def test_no_rules_still_records_the_movement(engine: Engine) -> None:
    # a cap added later must see what already moved in its window
    empty = policy_from("")
    assert _reserve(engine, empty, "r1", usdt_withdraw("70")) == []
    later = policy_from('limits: [{op: withdraw, coin: USDT, max_per_window: "100", window: 24h}]')
    assert denials(_reserve(engine, later, "r2", usdt_withdraw("31")))
