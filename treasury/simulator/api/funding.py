"""Funding endpoints: VA withdrawals, deposits, deposit address, fiat withdrawals and history,
wallet-signing and micro-payment verification for the address whitelist."""

from __future__ import annotations

from typing import Any

from treasury.models import Permission, RateClass
from treasury.simulator.api.account import time_range
from treasury.simulator.api.routes import Call, Endpoint
from treasury.simulator.protocol import ApiError

FIAT_STATUSES = ("under_review", "processing", "successful", "failed", "return", "withdraw_return")


def withdraw(call: Call) -> dict[str, Any]:
    p = call.params
    record = call.funding.withdraw(
        api_key=call.api_key,
        account_id=call.account_id,
        coin=p.text("coin"),
        chain=p.opt_text("chainType"),
        address=p.text("address", max_len=512),
        address_ext=p.opt_text("addressExt") or "",
        quantity=p.amount("quantity", code="-1168"),
        client_order_id=p.opt_text("clientOrderId"),
        remark=p.opt_text("remark", max_len=128) or "",
    )
    return {
        "success": True,
        "id": "0",
        "orderId": record.order_id,
        "accountId": record.account_id,
        "clientOrderId": record.client_order_id,
    }


def withdraw_orders(call: Call) -> list[dict[str, Any]]:
    p = call.params
    start, end = time_range(call, max_days=90)
    rows = call.funding.withdraw_orders(
        coin=p.get("coin"),
        start_ms=start,
        end_ms=end,
        limit=p.limit(default=50, maximum=1000),
        client_id=p.get("clientOrderId"),
        order_id=p.get("withdrawOrderId"),
    )
    return [w.json() for w in rows]


def deposit_orders(call: Call) -> list[dict[str, Any]]:
    p = call.params
    start, end = time_range(call, max_days=90)
    coin = p.get("coin")
    chain = None
    if coin is not None and "_" in coin:  # the documented chain_coin form, e.g. ETH_USDT
        chain, coin = coin.split("_", 1)
    order_id, client_id = p.get("depositOrderId"), p.get("clientOrderId")
    limit = p.limit(default=500, maximum=1000)
    with call.ledger.atomic():
        rows = [
            d
            for d in call.funding.deposits
            if (coin is None or d.coin == coin)
            and (chain is None or d.chain == chain)
            and (start is None or d.time_ms >= start)
            and (end is None or d.time_ms <= end)
            and (order_id is None or d.order_id == order_id)
            and client_id in (None, "")
        ]
    rows.sort(key=lambda d: d.flow_id, reverse=True)
    return [d.json() for d in rows[:limit]]


def deposit_address(call: Call) -> dict[str, Any]:
    p = call.params
    return call.funding.deposit_address(call.account_id, p.text("coin"), p.text("chainType"))


def fiat_withdraw(call: Call) -> dict[str, Any]:
    p = call.params
    record = call.funding.fiat_withdraw(
        api_key=call.api_key,
        key_account=call.account_id,
        asset=p.text("asset"),
        amount=p.amount("amount", code="-4012"),
        bank_account=p.text("bankAccount"),
        client_order_id=p.opt_text("clientOrderId"),
        remark=p.opt_text("remark", max_len=128) or "",
    )
    body = record.json()
    return {
        "success": True,
        "orderId": record.order_id,
        "clientOrderId": record.client_order_id,
        "accountId": record.account_id,
        "asset": record.asset,
        "amount": body["grossAmount"],
        "fee": body["fee"],
        "status": record.status,
    }


def fiat_history(call: Call) -> list[dict[str, Any]]:
    p = call.params
    kind = p.get("type")
    if kind is None:
        raise ApiError("-100012", "Parameter type [String] missing!")
    if kind not in ("deposit", "withdraw"):
        raise ApiError("-1177", f"Invalid fiat order type {kind!r}; use deposit or withdraw")
    status = p.get("status")
    if status is not None and status not in FIAT_STATUSES:
        raise ApiError("-1176", f"Invalid fiat withdrawal status {status!r}")
    start, end = time_range(call, max_days=90)
    rows = call.funding.fiat_history(
        kind=kind,
        status=status,
        start_ms=start,
        end_ms=end,
        client_id=p.get("clientOrderId"),
        remark=p.get("remark"),
        limit=p.limit(default=100, maximum=1000),
    )
    return [f.json() for f in rows]


def wallet_signing(call: Call) -> dict[str, Any]:
    p = call.params
    record = call.funding.wallet_signing(
        api_key=call.api_key,
        coin=p.text("coin"),
        chain=p.text("chainType"),
        address=p.text("address", max_len=512),
        message=p.text("message", max_len=2048),
        signature=p.text("walletSignature", max_len=512),
    )
    return {
        "success": True,
        "id": record.id,
        "coin": record.coin,
        "chainType": record.chain,
        "address": record.address,
        "verified": True,
        "whitelisted": record.whitelisted,
    }


def whitelist_verify(call: Call) -> dict[str, Any]:
    p = call.params
    return call.funding.verify_info(p.text("coin"), p.text("chainType"), p.text("address", max_len=512))


_R, _Q, _O, _W = Permission.READ, RateClass.QUERY, RateClass.ORDER, Permission.WHITELIST
ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", "/api/v1/account/withdraw", withdraw, Permission.WITHDRAW, _O, 1, twofa=True),
    Endpoint("GET", "/api/v1/account/withdrawOrders", withdraw_orders, _R, _Q, 1),
    Endpoint("GET", "/api/v1/account/depositOrders", deposit_orders, _R, _Q, 5),
    Endpoint("GET", "/api/v1/account/deposit/address", deposit_address, _W, _Q, 1),
    Endpoint("POST", "/api/v1/account/fiat/withdraw", fiat_withdraw, Permission.FIAT_WITHDRAW, _O, 1, twofa=True),
    Endpoint("GET", "/api/v1/account/fiat/history", fiat_history, _R, _Q, 5),
    Endpoint("POST", "/api/v1/whitelist/walletSigning", wallet_signing, _W, _O, 1, twofa=True),
    Endpoint("GET", "/api/v1/whitelist/verify", whitelist_verify, _W, _Q, 1, twofa=True),
]
