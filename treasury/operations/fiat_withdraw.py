"""``fiat_withdraw``: a fiat withdrawal to a bank account.

Reconciliation reads ``fiat/history type=withdraw clientOrderId=``; any status is FOUND
(``failed`` makes the record FAILED). For the policy, ``bankAccount`` is the destination.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from treasury.models import Permission, RateClass, RetryStrategy
from treasury.operations import lookups as lk
from treasury.operations.movement import Movement, ReadMovements, Values
from treasury.operations.params import Amount, ClientId, Params
from treasury.operations.spec import OperationSpec


class FiatWithdrawParams(Params):
    asset: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    amount: Amount
    bankAccount: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9 ._/-]+$")]
    remark: Annotated[str, Field(max_length=128)] | None = None
    clientOrderId: ClientId | None = None


def fiat_verdict(client_id: str, answer: lk.Answer) -> lk.Verdict:
    """Verdict from ``fiat/history type=withdraw``: any status is FOUND; ``failed`` is a failure."""
    return lk.match(client_id, answer, "fiat_history")


class FiatLookup:
    def plan(self, client_id: str, params: Mapping[str, Any], *, sent_at: datetime | None,
             now: datetime, fund_statement: bool) -> list[lk.Lookup]:
        return [lk.history("fiat_history", "fiat_history", {"type": "withdraw"}, client_id, sent_at, now)]

    def verdict(self, client_id: str, answers: Mapping[str, lk.Answer], *, params: Mapping[str, Any],
                noted: Mapping[str, Any] | None, fund_statement: bool) -> lk.Verdict:
        return fiat_verdict(client_id, answers.get("fiat_history"))


class FiatMoney(ReadMovements):
    policy_op = "fiat_withdraw"
    counted_note = None
    has_destination = True
    allowlist_needs = ("destination",)  # and the asset, where some entry names one

    def _read(self, r: Values, account: str | None) -> list[Movement]:
        amount, error = r.amount("amount")
        return [Movement(
            op=self.policy_op, leg=0, asset=r.text("asset", "asset", upper=True), amount=amount,
            account=account, destination=r.text("bankAccount", "destination"), amount_param="amount",
            amount_error=error, unknown=frozenset(r.unknown),
        )]

    def allowlist_text(self, mv: Movement) -> tuple[str, dict[str, str]]:
        return (f"{mv.asset} to bank account {mv.destination}",
                {"asset": mv.asset or "", "reference": mv.destination or ""})


SPEC = OperationSpec(
    "fiat_withdraw", "POST", "/api/v1/account/fiat/withdraw", Permission.FIAT_WITHDRAW,
    RateClass.ORDER, 1, FiatWithdrawParams, RetryStrategy.RECONCILE_THEN_RETRY,
    "fiat withdrawal to a bank account", mutates=True, client_id_field="clientOrderId", two_fa=True,
    noun="fiat withdrawal", history="fiat withdrawal history",
    reconcile=FiatLookup(), money=FiatMoney(),
    result_fields=frozenset({
        "success", "orderId", "clientOrderId", "accountId", "asset", "amount", "fee", "status",
    }),
)
