"""``withdraw``: a VA (crypto) withdrawal to an address.

Reconciliation makes two independent reads: ``withdrawOrders`` filtered by clientOrderId
(and matched again here) **and** ``balanceFlow type=withdraw clientOrderId=``. FOUND if
either has it; ABSENT only if both say absent (an unproven absence would mean a second
withdrawal); INCONCLUSIVE otherwise.

For the policy the parameters name no account (the key profile's is used), and the
destination is ``address`` on ``chainType`` with its ``addressExt``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from treasury.models import Permission, RateClass, RetryStrategy
from treasury.operations import lookups as lk
from treasury.operations.movement import (
    Movement,
    ReadMovements,
    Values,
    normalize_destination,
)
from treasury.operations.params import Address, Amount, Chain, ClientId, Coin, Params
from treasury.operations.spec import OperationSpec


class WithdrawParams(Params):
    coin: Coin
    chainType: Chain
    address: Address
    addressExt: Annotated[str, Field(max_length=100)] | None = None
    quantity: Amount
    clientOrderId: ClientId | None = None


def withdraw_verdict(client_id: str, orders_answer: lk.Answer, flow_answer: lk.Answer) -> lk.Verdict:
    """Verdict from ``withdrawOrders`` and ``balanceFlow type=withdraw`` together.

    FOUND when either read has the client id; ABSENT only when both say absent.
    """
    by_orders = lk.match(client_id, orders_answer, "withdraw_orders")
    by_flow = lk.match(client_id, flow_answer, "balance_flow")
    for verdict in (by_orders, by_flow):
        if isinstance(verdict, lk.Found):
            return verdict
    if isinstance(by_orders, lk.Absent) and isinstance(by_flow, lk.Absent):
        return lk.Absent(by_orders.sources + by_flow.sources)
    reasons = [v.reason for v in (by_orders, by_flow) if isinstance(v, lk.Inconclusive)]
    return lk.Inconclusive("; ".join(reasons))


class WithdrawLookup:
    def plan(self, client_id: str, params: Mapping[str, Any], *, sent_at: datetime | None,
             now: datetime, fund_statement: bool) -> list[lk.Lookup]:
        orders = lk.history("withdraw_orders", "withdraw_orders", {}, client_id, sent_at, now)
        if params.get("coin"):
            orders.params["coin"] = params["coin"]
        return [orders,
                lk.history("balance_flow", "balance_flow", {"type": "withdraw"}, client_id, sent_at, now)]

    def verdict(self, client_id: str, answers: Mapping[str, lk.Answer], *, params: Mapping[str, Any],
                noted: Mapping[str, Any] | None, fund_statement: bool) -> lk.Verdict:
        return withdraw_verdict(client_id, answers.get("withdraw_orders"), answers.get("balance_flow"))


class WithdrawMoney(ReadMovements):
    policy_op = "withdraw"
    counted_note = None
    has_destination = True
    allowlist_needs = ("asset", "chain", "destination", "address_ext")

    def _read(self, r: Values, account: str | None) -> list[Movement]:
        amount, error = r.amount("quantity")
        address = r.text("address", "destination")
        return [Movement(
            op=self.policy_op, leg=0, asset=r.text("coin", "asset", upper=True), amount=amount,
            account=account, destination=normalize_destination(address) if address else None,
            chain=r.text("chainType", "chain", upper=True), address_ext=r.text("addressExt", "address_ext"),
            amount_param="quantity", amount_error=error, unknown=frozenset(r.unknown),
        )]

    def allowlist_text(self, mv: Movement) -> tuple[str, dict[str, str]]:
        shown = f"{mv.asset} on {mv.chain} to {mv.destination}" + (
            f" (addressExt {mv.address_ext})" if mv.address_ext else "")
        return shown, {"coin": mv.asset or "", "chain": mv.chain or "", "address": mv.destination or ""}


SPEC = OperationSpec(
    "withdraw", "POST", "/api/v1/account/withdraw", Permission.WITHDRAW, RateClass.ORDER, 1,
    WithdrawParams, RetryStrategy.RECONCILE_THEN_ESCALATE, "VA (crypto) withdrawal",
    mutates=True, client_id_field="clientOrderId", two_fa=True,
    noun="withdrawal", history="withdrawal history",
    reconcile=WithdrawLookup(), money=WithdrawMoney(),
    result_fields=frozenset({"success", "id", "orderId", "accountId", "clientOrderId"}),
)
