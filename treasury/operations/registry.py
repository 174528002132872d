"""The operation registry: one entry per HashKey operation.

Each entry declares its HTTP method and path, the API-key permission it needs, its
rate class and weight, its parameter model, the field that carries the client id,
how an unknown outcome is looked up, and its retry strategy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from treasury.errors import ParameterError, UnknownOperation
from treasury.models import Permission, RateClass, RetryStrategy
from treasury.operations import params as p

Lookup = Literal["order", "batch_orders", "transfer", "withdraw", "fiat_withdraw"]


@dataclass(frozen=True)
class OperationSpec:
    name: str
    method: Literal["GET", "POST", "DELETE"]
    path: str
    permission: Permission
    rate_class: RateClass
    weight: int
    params_model: type[p.Params]
    retry_strategy: RetryStrategy
    description: str
    mutates: bool = False  # moves money or changes exchange state
    signed: bool = True
    client_id_field: str | None = None  # filled by the runner, never by a workflow author
    lookup: Lookup | None = None  # how reconciliation finds an unknown outcome
    body: Literal["form", "json"] = "form"  # json: batch orders (JSON array body, query signed)
    two_fa: bool = False  # accepts X-TWO-FA-TOKEN

    @property
    def moves_money(self) -> bool:
        return self.client_id_field is not None

    def describe(self) -> dict[str, Any]:
        """The shape of ``treasury ops --json``."""
        return {
            "name": self.name,
            "method": self.method,
            "path": self.path,
            "permission": self.permission.value,
            "rate_class": self.rate_class.value,
            "weight": self.weight,
            "retry_strategy": self.retry_strategy.value,
            "mutates": self.mutates,
            "client_id_field": self.client_id_field,
            "description": self.description,
        }


R, Q = Permission.READ, RateClass.QUERY
SAFE = RetryStrategy.SAFE

_OPERATIONS: tuple[OperationSpec, ...] = (
    # ---- reads
    OperationSpec("server_time", "GET", "/api/v1/time", R, Q, 1, p.NoParams, SAFE,
                  "exchange server time", signed=False),
    OperationSpec("exchange_info", "GET", "/api/v1/exchangeInfo", R, Q, 5, p.NoParams, SAFE,
                  "symbols, coins and chains", signed=False),
    OperationSpec("check_api_key", "GET", "/api/v1/account/checkApiKey", R, Q, 1, p.NoParams, SAFE,
                  "is this a master or sub key"),
    OperationSpec("account_types", "GET", "/api/v1/account/type", R, Q, 5, p.NoParams, SAFE,
                  "account ids and their types"),
    OperationSpec("balances", "GET", "/api/v1/account", R, Q, 5, p.BalancesParams, SAFE,
                  "balances of one account"),
    OperationSpec("order", "GET", "/api/v1/spot/order", R, Q, 1, p.OrderQueryParams, SAFE,
                  "one order by orderId or origClientOrderId"),
    OperationSpec("open_orders", "GET", "/api/v1/spot/openOrders", R, Q, 1, p.OpenOrdersParams, SAFE,
                  "orders on the book"),
    OperationSpec("trade_orders", "GET", "/api/v1/spot/tradeOrders", R, Q, 5, p.TradeOrdersParams, SAFE,
                  "order history"),
    OperationSpec("withdraw_orders", "GET", "/api/v1/account/withdrawOrders", R, Q, 1,
                  p.WithdrawOrdersParams, SAFE, "VA withdrawal history"),
    OperationSpec("deposit_orders", "GET", "/api/v1/account/depositOrders", R, Q, 5,
                  p.DepositOrdersParams, SAFE, "deposit history"),
    OperationSpec("fiat_history", "GET", "/api/v1/account/fiat/history", R, Q, 5, p.FiatHistoryParams,
                  SAFE, "fiat deposits and withdrawals, in flight and failed too"),
    OperationSpec("balance_flow", "GET", "/api/v1/account/balanceFlow", R, Q, 3, p.BalanceFlowParams,
                  SAFE, "fund statement (final records)"),
    # ---- whitelist
    OperationSpec("deposit_address", "GET", "/api/v1/account/deposit/address", Permission.WHITELIST, Q, 1,
                  p.DepositAddressParams, SAFE, "deposit address for a coin and chain"),
    OperationSpec("whitelist_verify", "GET", "/api/v1/whitelist/verify", Permission.WHITELIST, Q, 1,
                  p.WhitelistVerifyParams, SAFE, "micro-payment address and amount to verify a wallet",
                  two_fa=True),
    OperationSpec("whitelist_wallet_signing", "POST", "/api/v1/whitelist/walletSigning",
                  Permission.WHITELIST, RateClass.ORDER, 1, p.WalletSigningParams,
                  RetryStrategy.RECONCILE_THEN_ESCALATE, "prove wallet ownership by a signed message",
                  mutates=True, two_fa=True),
    # ---- money movement
    OperationSpec("asset_transfer", "POST", "/api/v1/account/assetTransfer", Permission.TRANSFER,
                  RateClass.TRANSFER, 1, p.AssetTransferParams, RetryStrategy.RECONCILE_THEN_RETRY,
                  "internal transfer between accounts", mutates=True, client_id_field="clientOrderId",
                  lookup="transfer"),
    OperationSpec("withdraw", "POST", "/api/v1/account/withdraw", Permission.WITHDRAW, RateClass.ORDER, 1,
                  p.WithdrawParams, RetryStrategy.RECONCILE_THEN_ESCALATE, "VA (crypto) withdrawal",
                  mutates=True, client_id_field="clientOrderId", lookup="withdraw", two_fa=True),
    OperationSpec("fiat_withdraw", "POST", "/api/v1/account/fiat/withdraw", Permission.FIAT_WITHDRAW,
                  RateClass.ORDER, 1, p.FiatWithdrawParams, RetryStrategy.RECONCILE_THEN_RETRY,
                  "fiat withdrawal to a bank account", mutates=True, client_id_field="clientOrderId",
                  lookup="fiat_withdraw", two_fa=True),
    OperationSpec("spot_order", "POST", "/api/v1.1/spot/order", Permission.TRADE, RateClass.ORDER, 1,
                  p.SpotOrderParams, RetryStrategy.RECONCILE_THEN_RETRY, "one spot order",
                  mutates=True, client_id_field="newClientOrderId", lookup="order"),
    OperationSpec("batch_orders", "POST", "/api/v1/spot/batchOrders", Permission.TRADE, RateClass.ORDER, 5,
                  p.BatchOrdersParams, RetryStrategy.RECONCILE_THEN_RETRY,
                  "up to 20 orders on one symbol", mutates=True, client_id_field="newClientOrderId",
                  lookup="batch_orders", body="json"),
    OperationSpec("cancel_order", "DELETE", "/api/v1/spot/order", Permission.TRADE, RateClass.ORDER, 1,
                  p.CancelOrderParams, SAFE, "cancel one order", mutates=True),
    OperationSpec("cancel_orders_by_ids", "DELETE", "/api/v1/spot/cancelOrderByIds", Permission.TRADE,
                  RateClass.ORDER, 5, p.CancelOrdersByIdsParams, SAFE, "cancel up to 100 orders by id",
                  mutates=True),
    OperationSpec("cancel_open_orders", "DELETE", "/api/v1/spot/openOrders", Permission.TRADE,
                  RateClass.ORDER, 5, p.CancelOpenOrdersParams, SAFE, "cancel all open orders on a symbol",
                  mutates=True),
)

REGISTRY: Mapping[str, OperationSpec] = {op.name: op for op in _OPERATIONS}


def get_operation(name: str) -> OperationSpec:
    """Look an operation up by name.

    Raises:
        UnknownOperation: listing the known names.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownOperation(name, list(REGISTRY)) from None


def operations() -> Iterator[OperationSpec]:
    return iter(_OPERATIONS)


def param_problems(spec: OperationSpec, raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every problem with ``raw`` as (parameter path, message); empty when valid."""
    try:
        spec.params_model.model_validate(dict(raw))
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(parameters)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown parameter for {spec.name}"
            elif err["type"] == "missing":
                msg = f"required by {spec.name}"
            out.append((loc, msg))
        return out
    return []


def parse_params(spec: OperationSpec, raw: Mapping[str, Any]) -> p.Params:
    """Validate parameters for ``spec``.

    Raises:
        ParameterError: naming the first bad parameter (all problems are in the message).
    """
    problems = param_problems(spec, raw)
    if problems:
        first = problems[0][0]
        detail = "; ".join(f"{loc}: {msg}" for loc, msg in problems)
        raise ParameterError(first, f"is invalid for {spec.name}: {detail}")
    return spec.params_model.model_validate(dict(raw))
