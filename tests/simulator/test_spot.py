"""Spot orders: fills at the configured price, resting orders, cancels, batches, reads, duplicates."""

from __future__ import annotations

from typing import Any

from tests.simulator.conftest import HK, balance, effects, sign
from treasury.clock import ManualClock
from treasury.simulator import Simulator

ORDER = "/api/v1.1/spot/order"


def place(signer: HK, **params: Any) -> dict[str, Any]:
    r = signer.post(ORDER, **params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_marketable_limit_buy_fills_at_the_symbol_price(hk: Any, sim: Simulator) -> None:
    order = place(
        hk("demo-trade"),
        symbol="BTCUSDT",
        side="BUY",
        type="LIMIT",
        quantity="0.5",
        price="61000",
        newClientOrderId="tr-0001",
    )
    assert order["status"] == "FILLED" and order["executedQty"] == "0.5" and order["clientOrderId"] == "tr-0001"
    assert order["accountId"] == "1001" and order["symbol"] == "BTCUSDT" and order["orderId"].isdigit()
    assert balance(sim, "1001", "USDT") == "220000"
    assert balance(sim, "1001", "BTC") == "3.5"
    detail = hk("demo-read").get("/api/v1/spot/order", origClientOrderId="tr-0001").json()
    assert detail["avgPrice"] == "60000" and detail["cumulativeQuoteQty"] == "30000"
    [fill] = hk("demo-read").get("/api/v1/account/tradesByClOrderId", clientOrderId="tr-0001").json()
    assert (fill["price"], fill["qty"], fill["isBuyer"], fill["orderId"]) == ("60000", "0.5", True, order["orderId"])
    assert hk("demo-read").get("/api/v1/account/trades", clientOrderId="tr-0001").json() == [fill]


def test_non_marketable_limit_rests_with_funds_locked_then_cancels(hk: Any, sim: Simulator) -> None:
    order = place(
        hk("demo-trade"),
        symbol="BTCUSDT",
        side="BUY",
        type="LIMIT",
        quantity="1",
        price="50000",
        newClientOrderId="rest-1",
    )
    assert order["status"] == "NEW"
    assert balance(sim, "1001", "USDT", "locked") == "50000"
    assert balance(sim, "1001", "USDT", "free") == "200000"
    opened = hk("demo-read").get("/api/v1/spot/openOrders", symbol="BTCUSDT").json()
    assert [o["clientOrderId"] for o in opened] == ["rest-1"]
    cancelled = hk("demo-trade").delete("/api/v1/spot/order", clientOrderId="rest-1").json()
    assert cancelled["status"] == "CANCELED"
    assert balance(sim, "1001", "USDT", "locked") == "0"
    assert balance(sim, "1001", "USDT", "free") == "250000"
    r = hk("demo-trade").delete("/api/v1/spot/order", orderId=order["orderId"])
    assert r.json()["code"] == "-1142"
    history = hk("demo-read").get("/api/v1/spot/tradeOrders").json()
    assert [o["status"] for o in history] == ["CANCELED"]


def test_sell_limit_and_market_orders(hk: Any, sim: Simulator) -> None:
    trader = hk("demo-trade")
    assert place(trader, symbol="ETHUSDT", side="SELL", type="LIMIT", quantity="2", price="2900")["status"] == "FILLED"
    assert balance(sim, "1001", "ETH") == "48"
    assert balance(sim, "1001", "USDT") == "256000"
    sell = place(trader, symbol="ETHUSDT", side="SELL", type="LIMIT", quantity="1", price="3500")
    assert sell["status"] == "NEW" and balance(sim, "1001", "ETH", "locked") == "1"
    buy = place(trader, symbol="ETHUSDT", side="BUY", type="MARKET", amount="3000")  # v1.1: quote amount
    assert buy["status"] == "FILLED" and buy["executedQty"] == "1"
    qty = place(trader, symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.1")
    assert qty["executedQty"] == "0.1" and balance(sim, "1001", "BTC") == "2.9"


def test_ioc_limit_that_cannot_fill_is_cancelled_and_limit_maker_refuses_to_take(hk: Any, sim: Simulator) -> None:
    ioc = place(
        hk("demo-trade"), symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="1", price="1", timeInForce="IOC"
    )
    assert ioc["status"] == "CANCELED" and balance(sim, "1001", "USDT", "locked") == "0"
    r = hk("demo-trade").post(ORDER, symbol="BTCUSDT", side="BUY", type="LIMIT_MAKER", quantity="1", price="70000")
    assert r.json()["code"] == "-1149"
    maker = place(hk("demo-trade"), symbol="BTCUSDT", side="BUY", type="LIMIT_MAKER", quantity="1", price="100")
    assert maker["status"] == "NEW"


def test_moving_the_price_fills_resting_orders_as_maker(hk: Any, sim: Simulator) -> None:
    order = place(hk("demo-trade"), symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="1", price="55000")
    assert sim.set_price("BTCUSDT", "54000") == [order["orderId"]]
    detail = hk("demo-read").get("/api/v1/spot/order", orderId=order["orderId"]).json()
    assert detail["status"] == "FILLED" and detail["avgPrice"] == "55000"
    assert balance(sim, "1001", "USDT") == "195000" and balance(sim, "1001", "USDT", "locked") == "0"
    assert balance(sim, "1001", "BTC") == "4"


def test_order_errors(hk: Any, sim: Simulator) -> None:
    trader = hk("demo-trade")
    cases = [
        ({"symbol": "DOGEUSDT", "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "1"}, "0201"),
        ({"symbol": "BTCUSDT", "side": "HOLD", "type": "LIMIT", "quantity": "1", "price": "1"}, "0001"),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "STOP", "quantity": "1", "price": "1"}, "0206"),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "1"}, "-100012"),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "abc"}, "0207"),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1", "amount": "5"}, "-1129"),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "100"}, "0401"),
        ({"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "quantity": "10", "price": "90000"}, "0401"),
        (
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "1",
                "price": "1",
                "newClientOrderId": "x" * 256,
            },
            "-1123",
        ),
    ]
    for params, code in cases:
        r = trader.post(ORDER, **params)
        assert (r.status_code, r.json()["code"]) == (400, code), (params, r.text)
    r = trader.post("/api/v1/spot/order", symbol="BTCUSDT", side="BUY", type="MARKET", amount="5")
    assert r.json()["code"] == "0001"  # v1.0 has no amount
    assert effects(sim)["orders"] == 0
    assert balance(sim, "1001", "USDT") == "250000"


def test_v10_order_and_order_test(hk: Any, sim: Simulator) -> None:
    trader = hk("demo-trade")
    r = trader.post("/api/v1/spot/orderTest", symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="1", price="1")
    assert (r.status_code, r.json()) == (200, {})
    assert effects(sim)["orders"] == 0
    r = trader.post("/api/v1/spot/orderTest", symbol="NOPE", side="BUY", type="LIMIT", quantity="1", price="1")
    assert r.json()["code"] == "0201"
    r = trader.post("/api/v1/spot/order", symbol="BTCUSDT", side="SELL", type="LIMIT", quantity="1", price="60000")
    assert r.json()["status"] == "FILLED"


def test_duplicate_client_order_id_is_refused_with_1141(hk: Any, sim: Simulator) -> None:
    trader = hk("demo-trade")
    params = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "quantity": "0.1",
        "price": "60000",
        "newClientOrderId": "once",
    }
    place(trader, **params)
    r = trader.post(ORDER, **params)
    assert (r.status_code, r.json()["code"]) == (400, "-1141")
    assert effects(sim)["orders"] == 1 and balance(sim, "1001", "BTC") == "3.1"


def test_batch_orders(hk: Any, sim: Simulator) -> None:
    trader: HK = hk("demo-trade")
    r = trader.batch(
        [
            {
                "symbol": "BTCUSDT",
                "side": "SELL",
                "type": "LIMIT",
                "price": "62000",
                "quantity": "0.01",
                "newClientOrderId": "b1-0001",
            },
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "price": 43000,
                "quantity": 0.01,
                "newClientOrderId": "b1-0002",
            },
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "price": "43000",
                "quantity": "1000",
                "newClientOrderId": "b1-0003",
            },
        ]
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == 0
    ok = {i["order"]["clientOrderId"]: i for i in body["result"] if i["code"] == "0000"}
    assert set(ok) == {"b1-0001", "b1-0002"}
    failed = [i for i in body["result"] if i["code"] != "0000"]
    assert failed == [{"code": "0401", "msg": failed[0]["msg"]}]
    assert ok["b1-0002"]["order"]["price"] == "43000"
    again = trader.batch(
        [
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "price": "1",
                "quantity": "1",
                "newClientOrderId": "b1-0001",
            }
        ]
    ).json()
    assert again["result"][0]["code"] == "-1141"
    too_many = [{"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "1", "quantity": "1"}] * 21
    assert trader.batch(too_many).json()["code"] == "-2022"
    mixed = [
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "1", "quantity": "1"},
        {"symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT", "price": "1", "quantity": "1"},
    ]
    assert trader.batch(mixed).json()["code"] == "-1004"
    assert len(sim.state()["orders"]) == 2


def test_batch_body_is_not_signed_but_query_is(hk: Any, client: Any, clock: ManualClock) -> None:
    qs = f"timestamp={int(clock.time() * 1000)}"
    r = client.post(
        f"/api/v1/spot/batchOrders?{qs}&signature=00",
        content=b"[]",
        headers={"X-HK-APIKEY": "demo-trade", "Content-Type": "application/json"},
    )
    assert r.json()["code"] == "0002"
    r = client.post(
        f"/api/v1/spot/batchOrders?{qs}&signature={sign('demo-trade-secret', qs)}",
        content=b"[not json",
        headers={"X-HK-APIKEY": "demo-trade", "Content-Type": "application/json"},
    )
    assert r.json()["code"] == "-1004"


def test_cancel_all_and_cancel_by_ids(hk: Any, sim: Simulator) -> None:
    trader = hk("demo-trade")
    ids = [
        place(trader, symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="0.1", price=str(50000 + i))["orderId"]
        for i in range(3)
    ]
    eth = place(trader, symbol="ETHUSDT", side="BUY", type="LIMIT", quantity="1", price="100")["orderId"]
    filled = place(trader, symbol="ETHUSDT", side="BUY", type="MARKET", quantity="1")["orderId"]
    r = trader.delete("/api/v1/spot/cancelOrderByIds", ids=f"{ids[0]},{ids[1]},{filled},123")
    assert r.json() == {
        "code": "0000",
        "result": [{"orderId": filled, "code": "-1139"}, {"orderId": "123", "code": "0211"}],
    }
    assert trader.delete("/api/v1/spot/openOrders", symbol="BTCUSDT").json() == {"success": True}
    still_open = hk("demo-read").get("/api/v1/spot/openOrders").json()
    assert [o["orderId"] for o in still_open] == [eth]
    assert balance(sim, "1001", "USDT", "locked") == "100"
    r = trader.delete("/api/v1/spot/cancelOrderByIds", ids=",".join(str(i) for i in range(101)))
    assert r.json()["code"] == "0001"
    assert trader.delete("/api/v1/spot/openOrders").json()["code"] == "-100012"


def test_order_lookups_not_found(hk: Any) -> None:
    reader = hk("demo-read")
    assert reader.get("/api/v1/spot/order", orderId="1").json()["code"] == "0211"
    assert reader.get("/api/v1/spot/order", origClientOrderId="ghost").json()["code"] == "0211"
    assert reader.get("/api/v1/spot/order").json()["code"] == "-100012"
    assert hk("demo-trade").delete("/api/v1/spot/order", orderId="1").json()["code"] == "0211"
    assert reader.get("/api/v1/account/tradesByClOrderId", clientOrderId="ghost").json() == []
