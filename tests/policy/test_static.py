"""Static evaluation (treasury validate): per-transaction limits and allowlists, without DB or clock."""

from __future__ import annotations

import json

import pytest

from tests.policy.helpers import PAYROLL, UNLISTED, VENDOR_A, VENDOR_B, policy_from, usdt_withdraw
from treasury.errors import PolicyDenied
from treasury.policy import Policy, Verdict, denials, evaluate_static, raise_if_denied


def _by_rule(verdicts: list[Verdict]) -> dict[str | None, Verdict]:
    return {v.rule: v for v in verdicts}


@pytest.mark.parametrize(
    ("quantity", "shown", "allowed"),
    [
        ("49999.99", "49999.99", True),
        ("50000", "50000", True),
        ("50000.00", "50000", True),
        ("50000.000001", "50000.000001", False),
        ("60000", "60000", False),
    ],
)
def test_per_tx_limit_boundary(shipped: Policy, quantity: str, shown: str, allowed: bool) -> None:
    verdict = _by_rule(evaluate_static(shipped, "withdraw", usdt_withdraw(quantity)))["limits[0].max_per_tx"]
    assert verdict.allowed is allowed
    assert (verdict.details["amount"], verdict.details["limit"]) == (shown, "50000")


def test_denial_names_rule_and_numbers_and_is_json(shipped: Policy) -> None:
    verdicts = evaluate_static(shipped, "withdraw", usdt_withdraw("60000"))
    [denied] = denials(verdicts)
    assert denied.to_dict() == {
        "verdict": "deny",
        "allowed": False,
        "rule": "limits[0].max_per_tx",
        "message": "withdraw 60000 USDT exceeds the per-transaction limit of 50000",
        "details": {"op": "withdraw", "asset": "USDT", "amount": "60000", "limit": "50000"},
    }
    assert Verdict.from_dict(json.loads(json.dumps(denied.to_dict()))) == denied
    with pytest.raises(PolicyDenied) as info:
        raise_if_denied(verdicts)
    assert info.value.rule == "limits[0].max_per_tx"
    assert info.value.details["amount"] == "60000"


def test_limits_only_match_their_asset_and_op(shipped: Policy) -> None:
    btc = {"coin": "BTC", "chainType": "BTC", "address": "bc1qxyz", "quantity": "900000"}
    rules = _by_rule(evaluate_static(shipped, "withdraw", btc))
    assert "limits[0].max_per_tx" not in rules
    # but the allowlist still applies to every withdrawal
    assert rules["destinations.withdraw"].allowed is False


@pytest.mark.parametrize("address", [VENDOR_A, VENDOR_B, VENDOR_A.upper().replace("0X", "0x")])
def test_listed_addresses_are_allowed(shipped: Policy, address: str) -> None:
    [verdict] = [v for v in evaluate_static(shipped, "withdraw", usdt_withdraw("10", address))
                 if v.rule and v.rule.startswith("destinations")]
    assert verdict.allowed
    assert verdict.details["label"] in ("Vendor A", "Vendor B")


@pytest.mark.parametrize(
    ("params", "why"),
    [
        (usdt_withdraw("10", UNLISTED), "unlisted address"),
        (usdt_withdraw("10", VENDOR_A, chain="TRON"), "listed address on another chain"),
        ({**usdt_withdraw("10"), "coin": "USDC"}, "listed address for another coin"),
        ({**usdt_withdraw("10"), "addressExt": "memo-1"}, "a memo the entry does not have"),
    ],
)
def test_unlisted_destinations_are_refused(shipped: Policy, params: dict[str, str], why: str) -> None:
    verdict = _by_rule(evaluate_static(shipped, "withdraw", params))["destinations.withdraw"]
    assert not verdict.allowed, why
    assert "not on the allowlist" in verdict.message


def test_non_evm_addresses_compare_exactly() -> None:
    policy = policy_from("""
        destinations:
          withdraw:
            - {coin: USDT, chain: TRON, address: TXYZabc, label: T}
            - {coin: XRP, chain: XRP, address: rAbc, address_ext: "42", label: X}
        """)
    tron = {"coin": "USDT", "chainType": "TRON", "quantity": "1"}
    assert evaluate_static(policy, "withdraw", {**tron, "address": "TXYZabc"})[0].allowed
    assert not evaluate_static(policy, "withdraw", {**tron, "address": "txyzabc"})[0].allowed
    xrp = {"coin": "XRP", "chainType": "XRP", "address": "rAbc", "quantity": "1"}
    assert evaluate_static(policy, "withdraw", {**xrp, "addressExt": "42"})[0].allowed
    assert not evaluate_static(policy, "withdraw", {**xrp, "addressExt": "43"})[0].allowed
    assert not evaluate_static(policy, "withdraw", xrp)[0].allowed


def test_fiat_allowlist(shipped: Policy) -> None:
    ok = evaluate_static(shipped, "fiat_withdraw", {"asset": "USD", "amount": "5000", "bankAccount": PAYROLL})
    assert [v.rule for v in ok] == ["destinations.fiat_withdraw[0]"] and ok[0].allowed
    bad = evaluate_static(shipped, "fiat_withdraw", {"asset": "USD", "amount": "5", "bankAccount": "HSBC-999"})
    assert [(v.rule, v.allowed) for v in bad] == [("destinations.fiat_withdraw", False)]
    assert bad[0].details["reference"] == "HSBC-999"


def test_fiat_allowlist_without_assets_ignores_a_templated_asset(shipped: Policy) -> None:
    params = {"asset": "${{ inputs.asset }}", "amount": "5", "bankAccount": "HSBC-999"}
    [verdict] = evaluate_static(shipped, "fiat_withdraw", params)
    assert (verdict.rule, verdict.allowed) == ("destinations.fiat_withdraw", False)
    restricted = policy_from("destinations: {fiat_withdraw: [{reference: HSBC-1, asset: HKD, label: HK}]}")
    assert evaluate_static(restricted, "fiat_withdraw", params) == []
    usd = {**params, "asset": "USD", "bankAccount": "HSBC-1"}
    assert not evaluate_static(restricted, "fiat_withdraw", usd)[0].allowed


def test_empty_allowlist_refuses_everything() -> None:
    policy = policy_from("destinations: {fiat_withdraw: []}")
    [verdict] = evaluate_static(policy, "fiat_withdraw", {"asset": "USD", "amount": "1", "bankAccount": PAYROLL})
    assert not verdict.allowed


def test_no_allowlist_means_no_destination_rule() -> None:
    policy = policy_from("destinations: {fiat_withdraw: []}")
    assert evaluate_static(policy, "withdraw", usdt_withdraw("10", UNLISTED)) == []


def test_templates_skip_the_rules_that_need_them(shipped: Policy) -> None:
    templated = usdt_withdraw("${{ inputs.amount }}", "${{ inputs.address }}")
    assert evaluate_static(shipped, "withdraw", templated) == []
    # a literal address is still checked while the amount is a template
    [verdict] = evaluate_static(shipped, "withdraw", usdt_withdraw("${{ inputs.amount }}", UNLISTED))
    assert verdict.rule == "destinations.withdraw" and not verdict.allowed
    # and a literal amount is checked while the address is a template
    [verdict] = evaluate_static(shipped, "withdraw", usdt_withdraw("70000", "${{ inputs.address }}"))
    assert verdict.rule == "limits[0].max_per_tx" and not verdict.allowed


def test_resolvable_predicate_decides_what_is_known(shipped: Policy) -> None:
    params = usdt_withdraw("60000", "@vendor")

    def only_literals(value: str) -> bool:
        return not value.startswith("@")

    rules = _by_rule(evaluate_static(shipped, "withdraw", params, resolvable=only_literals))
    assert set(rules) == {"limits[0].max_per_tx"}


@pytest.mark.parametrize(("quantity", "reason"), [("abc", "not a plain decimal"), ("-5", "negative")])
def test_malformed_amount_denies(shipped: Policy, quantity: str, reason: str) -> None:
    verdict = _by_rule(evaluate_static(shipped, "withdraw", usdt_withdraw(quantity)))["limits[0].max_per_tx"]
    assert not verdict.allowed and reason in verdict.message


def test_missing_amount_denies(shipped: Policy) -> None:
    params = {"coin": "USDT", "chainType": "ETH", "address": VENDOR_A}
    verdict = _by_rule(evaluate_static(shipped, "withdraw", params))["limits[0].max_per_tx"]
    assert not verdict.allowed and "'quantity' is missing" in verdict.message


def test_asset_transfer_limit(shipped: Policy) -> None:
    params = {"fromAccountId": "1001", "toAccountId": "1002", "coin": "usdt"}
    assert evaluate_static(shipped, "asset_transfer", {**params, "quantity": "1000000"})[0].allowed
    [verdict] = evaluate_static(shipped, "asset_transfer", {**params, "quantity": "1000000.01"})
    assert (verdict.rule, verdict.allowed) == ("limits[1].max_per_tx", False)


def test_account_and_destination_scoped_limits() -> None:
    policy = policy_from("""
        limits:
          - {op: asset_transfer, coin: USDT, account: "1001", max_per_tx: "10"}
          - {op: withdraw, coin: USDT, destination: Vendor A, max_per_tx: "20"}
        destinations:
          withdraw:
            - {coin: USDT, chain: ETH, address: "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90", label: Vendor A}
            - {coin: USDT, chain: ETH, address: "0x8ba1f109551bd432803012645ac136ddd64dba72", label: Vendor B}
        """)
    transfer = {"toAccountId": "1002", "coin": "USDT", "quantity": "11"}
    assert not evaluate_static(policy, "asset_transfer", {**transfer, "fromAccountId": "1001"})[0].allowed
    assert evaluate_static(policy, "asset_transfer", {**transfer, "fromAccountId": "1003"}) == []
    to_a = _by_rule(evaluate_static(policy, "withdraw", usdt_withdraw("21", VENDOR_A)))
    assert not to_a["limits[1].max_per_tx"].allowed
    to_b = _by_rule(evaluate_static(policy, "withdraw", usdt_withdraw("21", VENDOR_B)))
    assert "limits[1].max_per_tx" not in to_b


def test_spot_order_limits_use_quote_notional() -> None:
    policy = policy_from('limits: [{op: spot_order, symbol: BTCUSDT, max_per_tx: "120000"}]')
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "60000"}
    assert evaluate_static(policy, "spot_order", {**order, "quantity": "2"})[0].allowed
    [verdict] = evaluate_static(policy, "spot_order", {**order, "quantity": "2.5"})
    assert not verdict.allowed and verdict.details["amount"] == "150000"
    market_buy = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "amount": "130000"}
    assert not evaluate_static(policy, "spot_order", market_buy)[0].allowed
    # a market sell by quantity has no notional: refused rather than guessed
    market_sell = {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "1"}
    [verdict] = evaluate_static(policy, "spot_order", market_sell)
    assert not verdict.allowed and "needs a price" in verdict.message


def test_batch_orders_count_per_symbol_summed() -> None:
    policy = policy_from('limits: [{op: spot_order, symbol: BTCUSDT, max_per_tx: "100000"}]')
    leg = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "60000", "quantity": "1"}
    other = {"symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT", "price": "3000", "quantity": "100"}
    # each BTC leg alone (60000) fits; together (120000) they do not
    [verdict] = evaluate_static(policy, "batch_orders", {"orders": [leg, other, leg]})
    assert not verdict.allowed and verdict.details["amount"] == "120000"
    assert evaluate_static(policy, "batch_orders", {"orders": [leg, other]})[0].allowed
    assert evaluate_static(policy, "batch_orders", {"orders": "${{ inputs.orders }}"}) == []
    assert evaluate_static(policy, "batch_orders", {"orders": [{**leg, "quantity": "${{ inputs.q }}"}]}) == []


def test_operations_without_amounts_have_no_verdicts(shipped: Policy) -> None:
    assert evaluate_static(shipped, "cancel_order", {"orderId": "1"}) == []
