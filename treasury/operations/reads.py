"""The operations that move no money: reads, whitelist reads and cancels.

They carry no client id, so nothing is reconciled: a read is retried (``safe``), and a
cancel is safe to repeat (cancelling a cancelled order changes nothing).
"""

from __future__ import annotations

from treasury.models import Permission, RateClass, RetryStrategy
from treasury.operations import params as p
from treasury.operations.spec import OperationSpec, Shown

R, Q = Permission.READ, RateClass.QUERY
SAFE = RetryStrategy.SAFE

READS: tuple[OperationSpec, ...] = (
    OperationSpec("server_time", "GET", "/api/v1/time", R, Q, 1, p.NoParams, SAFE,
                  "exchange server time", signed=False,
                  result_fields=frozenset({"serverTime"})),
    OperationSpec("exchange_info", "GET", "/api/v1/exchangeInfo", R, Q, 5, p.NoParams, SAFE,
                  "symbols, coins and chains", signed=False),
    OperationSpec("check_api_key", "GET", "/api/v1/account/checkApiKey", R, Q, 1, p.NoParams, SAFE,
                  "is this a master or sub key",
                  result_fields=frozenset({"accountType"})),
    OperationSpec("account_types", "GET", "/api/v1/account/type", R, Q, 5, p.NoParams, SAFE,
                  "account ids and their types", list_result=True),
    OperationSpec("balances", "GET", "/api/v1/account", R, Q, 5, p.BalancesParams, SAFE,
                  "balances of one account",
                  result_fields=frozenset({"balances", "userId"}),
                  shown=Shown("balances", ("asset", "total", "free", "locked"), "balances (user {userId})")),
    OperationSpec("order", "GET", "/api/v1/spot/order", R, Q, 1, p.OrderQueryParams, SAFE,
                  "one order by orderId or origClientOrderId"),
    OperationSpec("open_orders", "GET", "/api/v1/spot/openOrders", R, Q, 1, p.OpenOrdersParams, SAFE,
                  "orders on the book", list_result=True),
    OperationSpec("trade_orders", "GET", "/api/v1/spot/tradeOrders", R, Q, 5, p.TradeOrdersParams, SAFE,
                  "order history", list_result=True),
    OperationSpec("withdraw_orders", "GET", "/api/v1/account/withdrawOrders", R, Q, 1,
                  p.WithdrawOrdersParams, SAFE, "VA withdrawal history", list_result=True),
    OperationSpec("deposit_orders", "GET", "/api/v1/account/depositOrders", R, Q, 5,
                  p.DepositOrdersParams, SAFE, "deposit history", list_result=True),
    OperationSpec("fiat_history", "GET", "/api/v1/account/fiat/history", R, Q, 5, p.FiatHistoryParams,
                  SAFE, "fiat deposits and withdrawals, in flight and failed too", list_result=True),
    OperationSpec("balance_flow", "GET", "/api/v1/account/balanceFlow", R, Q, 3, p.BalanceFlowParams,
                  SAFE, "fund statement (final records)", list_result=True),
    # ---- whitelist
    OperationSpec("deposit_address", "GET", "/api/v1/account/deposit/address", Permission.WHITELIST, Q, 1,
                  p.DepositAddressParams, SAFE, "deposit address for a coin and chain",
                  result_fields=frozenset({
                      "canDeposit", "address", "addressExt", "minQuantity", "needAddressTag",
                      "requiredConfirmTimes", "canWithdrawConfirmTimes", "coinType",
                  })),
    OperationSpec("whitelist_verify", "GET", "/api/v1/whitelist/verify", Permission.WHITELIST, Q, 1,
                  p.WhitelistVerifyParams, SAFE, "micro-payment address and amount to verify a wallet",
                  two_fa=True),
)

CANCELS: tuple[OperationSpec, ...] = (
    OperationSpec("cancel_order", "DELETE", "/api/v1/spot/order", Permission.TRADE, RateClass.ORDER, 1,
                  p.CancelOrderParams, SAFE, "cancel one order", mutates=True),
    OperationSpec("cancel_orders_by_ids", "DELETE", "/api/v1/spot/cancelOrderByIds", Permission.TRADE,
                  RateClass.ORDER, 5, p.CancelOrdersByIdsParams, SAFE, "cancel up to 100 orders by id",
                  mutates=True, result_fields=frozenset({"code", "result"})),
    OperationSpec("cancel_open_orders", "DELETE", "/api/v1/spot/openOrders", Permission.TRADE,
                  RateClass.ORDER, 5, p.CancelOpenOrdersParams, SAFE, "cancel all open orders on a symbol",
                  mutates=True, result_fields=frozenset({"success"})),
)
