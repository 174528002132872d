"""``asset_transfer``: an internal transfer between two accounts of the same owner.

Reconciliation reads the fund statement (``balanceFlow type=transfer clientOrderId=``) over
sent_at - 5 min .. now. A key that may not read it (``fund_statement: false``: only a master
account's master key may) reads both accounts' balances instead. That is a final
INCONCLUSIVE: balances are too weak to prove anything while other movements touch the same
accounts, so the change since the baseline noted before sending goes to a person as evidence.

For the policy, ``fromAccountId`` is the account and ``toAccountId`` the destination.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import Field, model_validator

from treasury.errors import ExchangeError, ExchangePermissionDenied, OperationNotPermitted
from treasury.models import Permission, RateClass, RetryStrategy
from treasury.operations import lookups as lk
from treasury.operations.balances import total_of
from treasury.operations.movement import Movement, ReadMovements, Values
from treasury.operations.params import AccountId, Amount, ClientId, Coin, Params
from treasury.operations.spec import OperationSpec


class AssetTransferParams(Params):
    fromAccountId: AccountId
    toAccountId: AccountId
    coin: Coin
    quantity: Amount
    remark: Annotated[str, Field(max_length=128)] | None = None
    clientOrderId: ClientId | None = None

    @model_validator(mode="after")
    def _distinct(self) -> AssetTransferParams:
        if self.fromAccountId == self.toAccountId:
            raise ValueError("fromAccountId and toAccountId must differ")
        return self


def accounts(params: Mapping[str, Any]) -> tuple[str, str]:
    """The transfer's (from, to) account ids."""
    return str(params.get("fromAccountId", "")), str(params.get("toAccountId", ""))


# --------------------------------------------------------------------------- reconciliation


def transfer_verdict(client_id: str, answer: lk.Answer) -> lk.Verdict:
    """Verdict from ``balanceFlow type=transfer``."""
    verdict = lk.match(client_id, answer, "balance_flow")
    if isinstance(verdict, lk.Inconclusive) and isinstance(answer, OperationNotPermitted | ExchangeError):
        hint = ""
        if isinstance(answer, ExchangePermissionDenied):
            hint = ("; HashKey lets only a master account's master key read it: if this key is not one, "
                    "set fund_statement: false on its profile in keys.yaml, so that both accounts' "
                    "balances are noted before each transfer")
        return lk.Inconclusive(
            verdict.reason + "; the fund statement is the only exact record of a transfer "
            "(balance changes cannot prove it while other transfers move the same accounts)" + hint
        )
    return verdict


def balance_verdict(
    params: Mapping[str, Any], noted: Mapping[str, Any] | None, answers: Mapping[str, lk.Answer]
) -> lk.Verdict:
    """For a transfer whose key cannot read the fund statement: never FOUND nor ABSENT (balances
    prove neither), but a final INCONCLUSIVE that tells a person what the balances did."""
    coin = str(params.get("coin", ""))
    now: dict[str, Any] = {}
    for source, answer in answers.items():
        account = source.split(":", 1)[1]
        if isinstance(answer, BaseException):
            now[account] = lk.failure(f"balances of {account}", answer).reason
        else:
            total = total_of(answer, coin)
            now[account] = total if total is not None else "an unreadable answer"
    return lk.Inconclusive(
        "the key cannot read the fund statement (fund_statement: false in keys.yaml), so the "
        "transfer cannot be looked up by its client id; " + describe(params, noted, now),
        final=True,
    )


class TransferLookup:
    def plan(self, client_id: str, params: Mapping[str, Any], *, sent_at: datetime | None,
             now: datetime, fund_statement: bool) -> list[lk.Lookup]:
        if not fund_statement:
            return [lk.Lookup(f"balances:{account}", "balances", {"accountId": account})
                    for account in dict.fromkeys(accounts(params))]
        return [lk.history("balance_flow", "balance_flow", {"type": "transfer"}, client_id, sent_at, now)]

    def verdict(self, client_id: str, answers: Mapping[str, lk.Answer], *, params: Mapping[str, Any],
                noted: Mapping[str, Any] | None, fund_statement: bool) -> lk.Verdict:
        if not fund_statement:
            return balance_verdict(params, noted, answers)
        return transfer_verdict(client_id, answers.get("balance_flow"))


# --------------------------------------------------------------------------- baseline


def describe(params: Mapping[str, Any], baseline: Mapping[str, Any] | None, now: Mapping[str, Any]) -> str:
    """What the balances did since the baseline, in words, and whether that fits the transfer.

    ``now`` is account id -> total (a string or Decimal), or an error text for a failed read.
    """
    source, target = accounts(params)
    coin = str(params.get("coin", ""))
    try:
        quantity = Decimal(str(params.get("quantity")))
    except (InvalidOperation, ValueError):
        quantity = None
    if not baseline or not isinstance(baseline.get("totals"), dict):
        return "no balances were noted before sending, so there is nothing to compare"
    before = baseline["totals"]
    parts: list[str] = []
    deltas: dict[str, Decimal] = {}
    for account in dict.fromkeys((source, target)):
        was, is_ = before.get(account), now.get(account)
        if was is None:
            parts.append(f"{account}: not noted before sending")
            continue
        try:
            delta = Decimal(str(is_)) - Decimal(str(was))
        except (InvalidOperation, ValueError):
            parts.append(f"{account}: {coin} {was} before, now unreadable ({is_})")
            continue
        deltas[account] = delta
        parts.append(f"{account}: {coin} {was} -> {is_} ({delta:+f})")
    text = "balances since before sending: " + "; ".join(parts)
    if quantity is None or set(deltas) != {source, target} or source == target:
        return text + "; this cannot be compared with the transfer"
    if deltas[source] == -quantity and deltas[target] == quantity:
        verdict = f"both moved by exactly {quantity}, as this transfer would make them"
    elif deltas[source] == 0 and deltas[target] == 0:
        verdict = "neither moved, as if this transfer had not happened"
    else:
        verdict = f"the change does not match a transfer of {quantity}: other activity moved these accounts"
    return (f"{text}; {verdict}. Balances are evidence, not proof (other movements on the same "
            "accounts can fake or hide a transfer): check the accounts' history before deciding")


class TransferBaseline:
    def accounts(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(accounts(params)))

    def coin(self, params: Mapping[str, Any]) -> str:
        return str(params.get("coin", ""))

    def describe(self, params: Mapping[str, Any], noted: Mapping[str, Any] | None,
                 now: Mapping[str, Any]) -> str:
        return describe(params, noted, now)


# --------------------------------------------------------------------------- policy


class TransferMoney(ReadMovements):
    policy_op = "asset_transfer"
    counted_note = None
    has_destination = True
    allowlist_needs = ("destination",)

    def _read(self, r: Values, account: str | None) -> list[Movement]:
        amount, error = r.amount("quantity")
        source = r.text("fromAccountId", "account")
        return [Movement(
            op=self.policy_op, leg=0, asset=r.text("coin", "asset", upper=True), amount=amount,
            account=source if source is not None or "account" in r.unknown else account,
            destination=r.text("toAccountId", "destination"), amount_param="quantity",
            amount_error=error, unknown=frozenset(r.unknown),
        )]

    def allowlist_text(self, mv: Movement) -> tuple[str, dict[str, str]]:
        return (f"{mv.asset} to account {mv.destination}",
                {"asset": mv.asset or "", "account": mv.destination or ""})


SPEC = OperationSpec(
    "asset_transfer", "POST", "/api/v1/account/assetTransfer", Permission.TRANSFER,
    RateClass.TRANSFER, 1, AssetTransferParams, RetryStrategy.RECONCILE_THEN_RETRY,
    "internal transfer between accounts", mutates=True, client_id_field="clientOrderId",
    noun="internal transfer", history="fund statement (balance flow) for transfers",
    reconcile=TransferLookup(), money=TransferMoney(), baseline=TransferBaseline(),
    result_fields=frozenset({"success", "timestamp", "clientOrderId", "orderId"}),
)
