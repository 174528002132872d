"""Spot endpoints: create (v1.0, v1.1, test, batch), cancel (one, all, by ids) and order/fill reads."""

from __future__ import annotations

from typing import Any

from treasury.models import Permission, RateClass
from treasury.simulator.api.routes import Call, Endpoint
from treasury.simulator.orders import SIDES, parse_order
from treasury.simulator.protocol import ApiError, invalid, missing

MAX_BATCH = 20
MAX_CANCEL_IDS = 100


def create_v10(call: Call) -> dict[str, Any]:
    req = parse_order(call.params.values, v11=False, symbols=call.book.symbols)
    return call.book.place(req, account_id=call.account_id, api_key=call.api_key).created()


def create_v11(call: Call) -> dict[str, Any]:
    req = parse_order(call.params.values, v11=True, symbols=call.book.symbols)
    return call.book.place(req, account_id=call.account_id, api_key=call.api_key).created()


def order_test(call: Call) -> dict[str, Any]:
    parse_order(call.params.values, v11=False, symbols=call.book.symbols)
    return {}


def batch_orders(call: Call) -> dict[str, Any]:
    items = call.json_body
    if not isinstance(items, list) or not items:
        raise ApiError("-1004", "Bad request: the body must be a non-empty JSON array of orders")
    if len(items) > MAX_BATCH:
        raise ApiError("-2022", f"Order batch size exceeds the limit of {MAX_BATCH}")
    symbols = {str(item.get("symbol", "")) for item in items if isinstance(item, dict)}
    if len(symbols) > 1:
        raise ApiError("-1004", "Bad request: all orders of a batch must be on the same symbol")
    result: list[dict[str, Any]] = []
    for item in items:
        try:
            if not isinstance(item, dict):
                raise ApiError("-1004", "Bad request: each batch item must be a JSON object")
            values = {str(k): "" if v is None else str(v) for k, v in item.items()}
            req = parse_order(values, v11=True, symbols=call.book.symbols)
            order = call.book.place(req, account_id=call.account_id, api_key=call.api_key)
            result.append({"code": "0000", "order": order.created()})
        except ApiError as exc:
            result.append({"code": exc.code, "msg": exc.msg})
    return {"code": 0, "result": result, "concentration": ""}


def cancel_order(call: Call) -> dict[str, Any]:
    order_id = call.params.get("orderId")
    client_id = call.params.get("clientOrderId")
    if order_id is None and client_id is None:
        raise missing("orderId")
    order = call.book.find(call.account_id, order_id, client_id)
    return call.book.cancel(order).detail()


def cancel_open_orders(call: Call) -> dict[str, Any]:
    symbol = call.params.text("symbol")
    if symbol not in call.book.symbols:
        raise ApiError("0201", f"Instrument not found: {symbol}")
    side = call.params.choice("side", SIDES, required=False)
    call.book.cancel_all(call.account_id, symbol, side)
    return {"success": True}


def cancel_by_ids(call: Call) -> dict[str, Any]:
    ids = [i.strip() for i in call.params.text("ids", max_len=10_000).split(",") if i.strip()]
    if not ids:
        raise missing("ids")
    if len(ids) > MAX_CANCEL_IDS:
        raise invalid("ids", f"at most {MAX_CANCEL_IDS} ids")
    return {"code": "0000", "result": call.book.cancel_ids(call.account_id, ids)}


def query_order(call: Call) -> dict[str, Any]:
    order_id = call.params.get("orderId")
    client_id = call.params.get("origClientOrderId")
    if order_id is None and client_id is None:
        raise missing("orderId")
    return call.book.find(call.params.get("accountId"), order_id, client_id).detail()


def open_orders(call: Call) -> list[dict[str, Any]]:
    p = call.params
    rows = call.book.open_orders(
        p.get("accountId"),
        symbol=p.get("symbol"),
        side=p.choice("side", SIDES, required=False),
        before_id=_order_id(call, "orderId"),
        limit=p.limit(default=500, maximum=1000),
    )
    return [o.detail() for o in rows]


def trade_orders(call: Call) -> list[dict[str, Any]]:
    p = call.params
    rows = call.book.history(
        p.get("accountId"),
        symbol=p.get("symbol"),
        side=p.choice("side", SIDES, required=False),
        before_id=_order_id(call, "orderId"),
        start_ms=p.opt_int("startTime"),
        end_ms=p.opt_int("endTime"),
        limit=p.limit(default=500, maximum=1000),
    )
    return [o.detail() for o in rows]


def _order_id(call: Call, name: str) -> str | None:
    value = call.params.get(name)
    if value is not None and not value.isdigit():
        raise invalid(name, "must be a numeric order id")
    return value


def account_trades(call: Call) -> list[dict[str, Any]]:
    p = call.params
    rows = call.book.fills(
        p.get("accountId"),
        symbol=p.get("symbol"),
        client_id=p.get("clientOrderId"),
        start_ms=p.opt_int("startTime"),
        end_ms=p.opt_int("endTime"),
        from_id=p.opt_int("fromId"),
        to_id=p.opt_int("toId"),
        limit=p.limit(default=500, maximum=1000),
    )
    return [t.json() for t in rows]


def trades_by_client_id(call: Call) -> list[dict[str, Any]]:
    p = call.params
    rows = call.book.fills(
        None,
        client_id=p.text("clientOrderId"),
        from_id=p.opt_int("fromId"),
        to_id=p.opt_int("toId"),
        limit=p.limit(default=500, maximum=1000),
    )
    return [t.json() for t in rows]


_T, _O, _R, _Q = Permission.TRADE, RateClass.ORDER, Permission.READ, RateClass.QUERY
ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", "/api/v1/spot/order", create_v10, _T, _O, 1),
    Endpoint("POST", "/api/v1.1/spot/order", create_v11, _T, _O, 1),
    Endpoint("POST", "/api/v1/spot/orderTest", order_test, _T, _O, 1),
    Endpoint("POST", "/api/v1/spot/batchOrders", batch_orders, _T, _O, 5, json_body=True),
    Endpoint("DELETE", "/api/v1/spot/order", cancel_order, _T, _O, 1),
    Endpoint("DELETE", "/api/v1/spot/openOrders", cancel_open_orders, _T, _O, 5),
    Endpoint("DELETE", "/api/v1/spot/cancelOrderByIds", cancel_by_ids, _T, _O, 5),
    Endpoint("GET", "/api/v1/spot/order", query_order, _R, _Q, 1),
    Endpoint("GET", "/api/v1/spot/openOrders", open_orders, _R, _Q, 1),
    Endpoint("GET", "/api/v1/spot/tradeOrders", trade_orders, _R, _Q, 5),
    Endpoint("GET", "/api/v1/account/trades", account_trades, _R, _Q, 5),
    Endpoint("GET", "/api/v1/account/tradesByClOrderId", trades_by_client_id, _R, _Q, 1),
]
