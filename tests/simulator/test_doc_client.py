"""A client written only from HashKey PRO's documentation, over real HTTP with the stdlib.

It follows the official sample: ``urlencode(params, quote_via=quote)``, HMAC-SHA256 hex of that
string with the secret, ``signature`` appended, ``X-HK-APIKEY`` header; GET parameters in the
query, POST parameters in a form body; batch orders as a JSON array with only the query signed;
the clock synced from ``GET /api/v1/time``. Every field it reads is one the documentation names.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.simulator.conftest import WHITE_USDT
from treasury.simulator import Simulator, SimulatorServer, serve


class DocClient:
    def __init__(self, base_url: str, api_key: str, secret: str) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.secret = secret
        server_time = self.call("GET", "/api/v1/time", signed=False)[1]["serverTime"]
        self.offset_ms = server_time - int(time.time() * 1000)

    def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        signed: bool = True,
        json_body: Any = None,
        split_at: int | None = None,
    ) -> tuple[int, Any]:
        params = dict(params or {})
        headers = {}
        if signed:
            params["timestamp"] = int(time.time() * 1000) + self.offset_ms
            headers["X-HK-APIKEY"] = self.api_key
        encoded = urlencode(params, quote_via=quote)
        signature = hmac.new(self.secret.encode(), encoded.encode(), hashlib.sha256).hexdigest()
        url, data = self.base_url + path, None
        if json_body is not None:  # batch: only the query is signed, the body is JSON
            url += f"?{encoded}&signature={signature}"
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif method == "GET" or method == "DELETE":
            url += f"?{encoded}" + (f"&signature={signature}" if signed else "")
        elif split_at is not None:  # the doc's mixed form: totalParams = query + body, no '&'
            pairs = encoded.split("&")
            query, body = "&".join(pairs[:split_at]), "&".join(pairs[split_at:])
            signature = hmac.new(self.secret.encode(), (query + body).encode(), hashlib.sha256).hexdigest()
            url += f"?{query}"
            data = f"{body}&signature={signature}".encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = f"{encoded}&signature={signature}".encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            with err:
                return err.code, json.loads(err.read())


@pytest.fixture
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    with serve(sim) as srv:
        yield srv


def test_documented_flows(server: SimulatorServer) -> None:
    admin = DocClient(server.url, "demo-admin", "demo-admin-secret")
    assert admin.call("GET", "/api/v1/ping", signed=False) == (200, {})
    assert admin.call("GET", "/api/v1/account/checkApiKey") == (200, {"accountType": "master"})

    status, types = admin.call("GET", "/api/v1/account/type")
    assert status == 200
    assert {"accountId", "accountLabel", "accountType", "accountIndex", "userId"} <= set(types[0])
    trading = next(t["accountId"] for t in types if t["accountType"] == 1)
    custody = next(t["accountId"] for t in types if t["accountType"] == 5)

    status, account = admin.call("GET", "/api/v1/account", {"accountId": trading})
    for row in account["balances"]:
        assert {"asset", "assetId", "assetName", "total", "free", "locked"} <= set(row)
        assert Decimal(row["total"]) == Decimal(row["free"]) + Decimal(row["locked"])

    # v1.1 order with a client order id, then the primary reconciliation read
    status, order = admin.call(
        "POST",
        "/api/v1.1/spot/order",
        {
            "symbol": "ETHUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "quantity": "0.03",
            "price": "1900",
            "newClientOrderId": "tr-20250101-0001",
            "timeInForce": "GTC",
        },
    )
    assert status == 200
    assert {
        "accountId",
        "symbol",
        "symbolName",
        "clientOrderId",
        "orderId",
        "transactTime",
        "price",
        "origQty",
        "executedQty",
        "status",
        "timeInForce",
        "type",
        "side",
        "reqAmount",
        "concentration",
    } <= set(order)
    status, found = admin.call("GET", "/api/v1/spot/order", {"origClientOrderId": "tr-20250101-0001"})
    assert status == 200 and found["orderId"] == order["orderId"] and found["status"] == "NEW"
    assert {"cumulativeQuoteQty", "avgPrice", "time", "updateTime", "feeCoin", "feeAmount"} <= set(found)
    status, cancelled = admin.call("DELETE", "/api/v1/spot/order", {"orderId": order["orderId"]})
    assert status == 200 and cancelled["orderId"] == order["orderId"]

    # the documented mixed example: some parameters in the query, the rest in the body
    status, mixed = admin.call(
        "POST",
        "/api/v1/spot/order",
        {
            "symbol": "ETHUSDT",
            "side": "SELL",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "1",
            "price": "2900",
            "newClientOrderId": "mixed-1",
        },
        split_at=4,
    )
    assert status == 200 and mixed["status"] == "FILLED"

    status, batch = admin.call(
        "POST",
        "/api/v1/spot/batchOrders",
        json_body=[
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
                "price": "43000",
                "quantity": "0.01",
                "newClientOrderId": "b1-0002",
            },
        ],
    )
    assert status == 200 and batch["code"] in (0, "0")
    by_client = {i["order"]["clientOrderId"]: i["order"] for i in batch["result"] if i["code"] == "0000"}
    assert set(by_client) == {"b1-0001", "b1-0002"}
    status, bulk = admin.call(
        "DELETE", "/api/v1/spot/cancelOrderByIds", {"ids": ",".join(o["orderId"] for o in by_client.values())}
    )
    assert status == 200 and bulk["code"] == "0000" and bulk["result"] == []

    # internal transfer, then the fund statement by client id
    status, xfer = admin.call(
        "POST",
        "/api/v1/account/assetTransfer",
        {
            "fromAccountId": trading,
            "toAccountId": custody,
            "coin": "USDT",
            "quantity": "1",
            "clientOrderId": "xfer-0001",
            "remark": "doc test",
        },
    )
    assert status == 200 and xfer["success"] is True and xfer["clientOrderId"] == "xfer-0001"
    status, flows = admin.call(
        "GET",
        "/api/v1/account/balanceFlow",
        {
            "type": "transfer",
            "clientOrderId": "xfer-0001",
            "startTime": xfer["timestamp"] - 60_000,
            "endTime": xfer["timestamp"] + 60_000,
        },
    )
    assert status == 200 and [f["orderId"] for f in flows] == [xfer["orderId"]]
    assert {"fromAccountId", "toAccountId", "netTransferAmount", "transferCcy", "transactTime"} <= set(flows[0])

    # VA withdrawal to a whitelisted address and the withdrawal history
    status, wd = admin.call(
        "POST",
        "/api/v1/account/withdraw",
        {"coin": "USDT", "chainType": "ETH", "address": WHITE_USDT, "quantity": "20", "clientOrderId": "usdteth1"},
    )
    assert status == 200 and wd["success"] is True and wd["orderId"].startswith("W")
    status, history = admin.call("GET", "/api/v1/account/withdrawOrders", {"coin": "USDT"})
    assert status == 200 and history[0]["id"] == wd["orderId"]
    assert {"time", "id", "coin", "address", "quantity", "arriveQuantity", "txId", "fee"} <= set(history[0])

    # documented error shape: HTTP 400 with {"code", "msg"}
    status, error = admin.call("GET", "/api/v1/spot/order", {"orderId": "1563277167764290304"})
    assert status == 400 and error["code"] == "0211" and error["msg"]
    status, error = admin.call(
        "POST",
        "/api/v1/account/withdraw",
        {"coin": "USDT", "chainType": "ETH", "address": "0x000000000000000000000000000000000000dEaD", "quantity": "20"},
    )
    assert status == 400 and error["code"] == "-1171"


def test_a_wrong_secret_is_refused(server: SimulatorServer) -> None:
    client = DocClient(server.url, "demo-read", "not-my-secret")
    status, error = client.call("GET", "/api/v1/account")
    assert status == 400 and "signature" in error["msg"].lower()
