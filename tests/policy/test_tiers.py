"""Approval tiers: which apply to a step, and whether the approval steps before it satisfy them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.policy.helpers import policy_from, usdt_withdraw
from treasury.policy import ApprovalGuard, ApprovalTier, Policy, check_tiers, required_approval

MANAGERS = {"alice": {"treasury-managers"}, "bob": {"treasury-managers"}, "carol": {"risk"}}


@pytest.mark.parametrize(("quantity", "applies"), [("100000", False), ("100000.01", True), ("150000", True)])
def test_tier_applies_strictly_above(shipped: Policy, quantity: str, applies: bool) -> None:
    tiers = required_approval(shipped, "withdraw", usdt_withdraw(quantity))
    if not applies:
        assert tiers == []
        return
    [tier] = tiers
    assert (tier.rule, tier.quorum, tier.group, tier.conditional) == (
        "approval_tiers[0]", 2, "treasury-managers", False)
    assert tier.amount == Decimal(quantity)


def test_unknown_amount_gives_a_conditional_tier(shipped: Policy) -> None:
    [tier] = required_approval(shipped, "withdraw", usdt_withdraw("${{ inputs.amount }}"))
    assert tier.conditional and tier.amount is None
    assert tier.to_dict() == {
        "rule": "approval_tiers[0]", "op": "withdraw", "asset": "USDT", "above": "100000", "quorum": 2,
        "group": "treasury-managers", "amount": None, "conditional": True,
    }


def test_other_assets_and_ops_need_no_tier(shipped: Policy) -> None:
    assert required_approval(shipped, "withdraw", {**usdt_withdraw("900000"), "coin": "BTC"}) == []
    assert required_approval(shipped, "asset_transfer", {"coin": "USDT", "quantity": "900000"}) == []


def test_batch_orders_tier_counts_the_batch_per_symbol() -> None:
    policy = policy_from('approval_tiers: [{op: spot_order, symbol: BTCUSDT, above: "100000"}]')
    leg = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "60000", "quantity": "1"}
    assert required_approval(policy, "batch_orders", {"orders": [leg]}) == []
    [tier] = required_approval(policy, "batch_orders", {"orders": [leg, leg]})
    assert tier.amount == Decimal("120000") and tier.quorum is None


def _tier(shipped: Policy) -> list[ApprovalTier]:
    return required_approval(shipped, "withdraw", usdt_withdraw("150000"))


def test_group_step_with_quorum_satisfies(shipped: Policy) -> None:
    guard = ApprovalGuard(quorum=2, groups={"treasury-managers"})
    assert check_tiers(_tier(shipped), [guard]) == []


def test_named_members_satisfy_when_membership_is_known(shipped: Policy) -> None:
    guard = ApprovalGuard(quorum=2, approvers={"alice", "bob"}, members=MANAGERS)
    assert check_tiers(_tier(shipped), [guard]) == []
    # without membership information the validator cannot know alice is a manager
    [problem] = check_tiers(_tier(shipped), [ApprovalGuard(quorum=2, approvers={"alice", "bob"})])
    assert "alice may approve and is not known to be in group treasury-managers" in problem


def test_missing_approval_step_is_a_problem(shipped: Policy) -> None:
    [problem] = check_tiers(_tier(shipped), [])
    assert problem == (
        "approval_tiers[0]: withdraw of USDT above 100000 (here 150000) needs an approval step before it "
        "with quorum >= 2 and every approver from group treasury-managers; "
        "there is no approval step before it"
    )


def test_low_quorum_is_a_problem(shipped: Policy) -> None:
    [problem] = check_tiers(_tier(shipped), [ApprovalGuard(quorum=1, groups={"treasury-managers"})])
    assert "quorum 1 is below 2" in problem


def test_outsiders_in_the_step_are_a_problem(shipped: Policy) -> None:
    mixed = ApprovalGuard(quorum=2, approvers={"alice", "bob"}, groups={"risk"}, members=MANAGERS)
    [problem] = check_tiers(_tier(shipped), [mixed])
    assert "group:risk may approve" in problem
    carol = ApprovalGuard(quorum=2, approvers={"alice", "carol"}, members=MANAGERS)
    [problem] = check_tiers(_tier(shipped), [carol])
    assert "carol may approve" in problem


def test_any_one_sufficient_guard_is_enough(shipped: Policy) -> None:
    weak = ApprovalGuard(quorum=1, approvers={"carol"}, members=MANAGERS)
    strong = ApprovalGuard(quorum=2, groups={"treasury-managers"})
    assert check_tiers(_tier(shipped), [weak, strong]) == []


def test_quorum_only_tier_accepts_anyone() -> None:
    policy = policy_from('approval_tiers: [{op: withdraw, coin: USDT, above: "10", quorum: 2}]')
    tiers = required_approval(policy, "withdraw", usdt_withdraw("11"))
    assert check_tiers(tiers, [ApprovalGuard(quorum=2, approvers={"x", "y"})]) == []
    assert check_tiers(tiers, [ApprovalGuard(quorum=1, approvers={"x"})]) != []


def test_conditional_tier_problem_says_if(shipped: Policy) -> None:
    tiers = required_approval(shipped, "withdraw", usdt_withdraw("${{ inputs.amount }}"))
    [problem] = check_tiers(tiers, [])
    assert "withdraw of USDT if its amount is above 100000 needs an approval step" in problem
