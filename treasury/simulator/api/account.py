"""Public endpoints and account endpoints: time, exchangeInfo, account types, balances,
internal transfers and the fund statement (balanceFlow)."""

from __future__ import annotations

from typing import Any

from treasury.models import Permission, RateClass
from treasury.simulator.api.routes import Call, Endpoint
from treasury.simulator.ledger import amt
from treasury.simulator.orders import Trade
from treasury.simulator.protocol import ApiError, invalid
from treasury.simulator.state import DEFAULT_LABELS

DAY_MS = 86_400_000
FLOW_TYPES = ("trade", "deposit", "fiatDeposit", "withdraw", "fiatWithdraw", "transfer", "reversal", "refund")


def server_time(call: Call) -> dict[str, int]:
    return {"serverTime": call.ledger.now_ms()}


def ping(call: Call) -> dict[str, Any]:
    return {}


def exchange_info(call: Call) -> dict[str, Any]:
    symbols = []
    for sym in call.book.symbols.values():
        symbols.append(
            {
                "symbol": sym.symbol,
                "symbolName": sym.symbol,
                "status": "TRADING",
                "baseAsset": sym.base,
                "baseAssetName": sym.base,
                "baseAssetPrecision": "0.00000001",
                "quoteAsset": sym.quote,
                "quoteAssetName": sym.quote,
                "quotePrecision": "0.00000001",
                "retailAllowed": True,
                "piAllowed": True,
                "corporateAllowed": True,
                "omnibusAllowed": True,
                "icebergAllowed": False,
                "isAggregate": False,
                "allowMargin": False,
                "filters": [
                    {
                        "minPrice": "0.00000001",
                        "maxPrice": "100000000",
                        "tickSize": "0.00000001",
                        "filterType": "PRICE_FILTER",
                    },
                    {
                        "minQty": "0.00000001",
                        "maxQty": "100000000",
                        "stepSize": "0.00000001",
                        "filterType": "LOT_SIZE",
                    },
                    {"minNotional": "0", "filterType": "MIN_NOTIONAL"},
                ],
            }
        )
    coins = []
    for coin in call.funding.coins.values():
        coins.append(
            {
                "orderPoint": 0,
                "coinId": coin.coin,
                "coinName": coin.coin,
                "coinFullName": coin.name or coin.coin,
                "allowWithdraw": any(c.allow_withdraw for c in coin.chains),
                "allowDeposit": any(c.allow_deposit for c in coin.chains),
                "chainTypes": [
                    {
                        "chainType": c.chain,
                        "withdrawFee": amt(c.withdraw_fee),
                        "minWithdrawQuantity": amt(c.min_withdraw),
                        "maxWithdrawQuantity": amt(c.max_withdraw) if c.max_withdraw is not None else "0",
                        "minDepositQuantity": amt(c.min_deposit),
                        "allowDeposit": c.allow_deposit,
                        "allowWithdraw": c.allow_withdraw,
                    }
                    for c in coin.chains
                ],
            }
        )
    return {
        "timezone": "UTC",
        "serverTime": str(call.ledger.now_ms()),
        "brokerFilters": [],
        "symbols": symbols,
        "options": [],
        "contracts": [],
        "coins": coins,
    }


def ticker_price(call: Call) -> list[dict[str, str]]:
    symbol = call.params.get("symbol")
    with call.ledger.atomic():
        prices = dict(call.book.prices)
    if symbol is not None and symbol not in prices:
        raise ApiError("0201", f"Instrument not found: {symbol}")
    return [{"s": s, "p": amt(p)} for s, p in prices.items() if symbol is None or s == symbol]


def check_api_key(call: Call) -> dict[str, str]:
    assert call.key is not None
    return {"accountType": "master" if call.key.master else call.ledger.cfg.settings.sub_key_account_type}


def account_types(call: Call) -> list[dict[str, Any]]:
    user_id = call.ledger.cfg.settings.user_id
    return [
        {
            "accountId": a.id,
            "accountLabel": a.label or DEFAULT_LABELS[a.type],
            "accountType": a.type_code,
            "accountIndex": 0,
            "userId": user_id,
        }
        for a in call.ledger.accounts.values()
    ]


def account_balances(call: Call) -> dict[str, Any]:
    account_id = call.params.get("accountId") or call.account_id
    led = call.ledger
    with led.atomic():
        led.account(account_id)
        book = led.balances.get(account_id, {})
        balances = [
            {
                "asset": asset,
                "assetId": asset,
                "assetName": asset,
                "total": amt(b.total),
                "free": amt(b.free),
                "locked": amt(b.locked),
            }
            for asset, b in sorted(book.items())
        ]
    return {"balances": balances, "userId": led.cfg.settings.user_id}


def asset_transfer(call: Call) -> dict[str, Any]:
    p = call.params
    record = call.ledger.transfer(
        api_key=call.api_key,
        from_account=p.text("fromAccountId"),
        to_account=p.text("toAccountId"),
        coin=p.text("coin"),
        quantity=p.amount("quantity"),
        client_order_id=p.opt_text("clientOrderId"),
        remark=p.opt_text("remark", max_len=128) or "",
    )
    return {
        "success": True,
        "timestamp": record.time_ms,
        "clientOrderId": record.client_order_id,
        "orderId": record.order_id,
    }


def time_range(call: Call, *, max_days: int) -> tuple[int | None, int | None]:
    """startTime/endTime (optional); -2027 when the range exceeds ``max_days``."""
    start = call.params.opt_int("startTime")
    end = call.params.opt_int("endTime")
    if start is not None and end is not None:
        if end < start:
            raise invalid("endTime", "must not be before startTime")
        if end - start > max_days * DAY_MS:
            raise ApiError("-2027", f"Exceed maximum time range of {max_days} days")
    return start, end


def balance_flow(call: Call) -> list[dict[str, Any]]:
    settings = call.ledger.cfg.settings
    if call.key is not None and not call.key.master and not settings.sub_key_fund_statement:
        raise ApiError(settings.fund_statement_refused_code,
                       "No permission: only a master account's master API key may read the fund statement")
    p = call.params
    kind = p.choice("type", FLOW_TYPES)
    start, end = time_range(call, max_days=7 if kind == "trade" else 30)
    account_id = p.get("accountId")
    client_id = p.get("clientOrderId")
    remark = p.get("remark")
    begin_id = p.opt_int("beginId")
    limit = p.limit(default=100, maximum=1000)
    led, funding = call.ledger, call.funding
    rows: list[tuple[int, int, dict[str, Any]]] = []  # (flow id, time, row)
    with led.atomic():
        funding.refresh()
        if account_id is not None:
            led.account(account_id)
        if kind == "transfer":
            for t in led.transfers:
                if account_id is None or account_id in (t.from_account, t.to_account):
                    rows.append((t.flow_id, t.time_ms, t.flow()))
        elif kind == "withdraw":
            for w in funding.withdrawals:
                if w.status == "successful" and account_id in (None, w.account_id):
                    rows.append((w.flow_id, w.status_since, w.flow()))
        elif kind == "fiatWithdraw":
            for f in funding.fiat_withdrawals:
                if f.status == "successful" and account_id in (None, f.account_id):
                    rows.append((f.flow_id, f.status_since, f.flow()))
        elif kind == "deposit":
            for d in funding.deposits:
                if account_id in (None, d.account_id):
                    rows.append((d.flow_id, d.time_ms, d.flow()))
        elif kind == "trade":
            for fill in call.book.fills(account_id, limit=10**9):
                rows.append((fill.trade_id, fill.time_ms, _trade_flow(call, fill)))
    out = [
        row
        for fid, at, row in rows
        if (start is None or at >= start)
        and (end is None or at <= end)
        and (client_id is None or row.get("clientOrderId") == client_id)
        and (remark is None or row.get("remark") == remark)
        and (begin_id is None or fid > begin_id)
    ]
    out.sort(key=lambda r: int(r["id"]), reverse=True)
    return out[:limit]


def _trade_flow(call: Call, t: Trade) -> dict[str, Any]:
    sym = call.book.symbols[t.order.symbol]
    sign = 1 if t.order.side == "BUY" else -1
    return {
        "id": str(t.trade_id),
        "accountId": t.order.account_id,
        "type": "trade",
        "netBaseAmount": amt(t.qty) if sign > 0 else "-" + amt(t.qty),
        "baseCcy": sym.base,
        "netQuoteAmount": "-" + amt(t.quote) if sign > 0 else amt(t.quote),
        "quoteCcy": sym.quote,
        "direction": t.order.side.lower(),
        "fee": "0",
        "feeCcy": sym.quote,
        "clientOrderId": t.order.client_order_id,
        "orderId": t.order.order_id,
        "tradeId": str(t.trade_id),
        "remark": "",
        "transactTime": str(t.time_ms),
    }


_R, _Q = Permission.READ, RateClass.QUERY
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/api/v1/time", server_time, None, None),
    Endpoint("GET", "/api/v1/ping", ping, None, None),
    Endpoint("GET", "/api/v1/exchangeInfo", exchange_info, None, None),
    Endpoint("GET", "/quote/v1/ticker/price", ticker_price, None, None),
    Endpoint("GET", "/api/v1/account/checkApiKey", check_api_key, _R, _Q, 1),
    Endpoint("GET", "/api/v1/account/type", account_types, _R, _Q, 5),
    Endpoint("GET", "/api/v1/account", account_balances, _R, _Q, 5),
    Endpoint("POST", "/api/v1/account/assetTransfer", asset_transfer, Permission.TRANSFER, RateClass.TRANSFER, 1),
    Endpoint("GET", "/api/v1/account/balanceFlow", balance_flow, _R, _Q, 3),
]
