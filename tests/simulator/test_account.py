"""Account endpoints: exchangeInfo, key type, account types, balances, transfers, balanceFlow."""

from __future__ import annotations

from typing import Any

import httpx

from tests.simulator.conftest import balance, effects
from treasury.clock import ManualClock
from treasury.simulator import Simulator


def test_exchange_info_lists_symbols_and_coins_with_chains(client: httpx.Client) -> None:
    info = client.get("/api/v1/exchangeInfo").json()
    assert {s["symbol"] for s in info["symbols"]} == {"BTCUSDT", "ETHUSDT"}
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    assert (btc["baseAsset"], btc["quoteAsset"], btc["status"]) == ("BTC", "USDT", "TRADING")
    usdt = next(c for c in info["coins"] if c["coinId"] == "USDT")
    eth = next(c for c in usdt["chainTypes"] if c["chainType"] == "ETH")
    assert (eth["withdrawFee"], eth["minWithdrawQuantity"], eth["allowWithdraw"]) == ("1", "2", True)
    assert {c["coinId"] for c in info["coins"]} == {"USDT", "BTC", "ETH"}
    prices = client.get("/quote/v1/ticker/price", params={"symbol": "ETHUSDT"}).json()
    assert prices == [{"s": "ETHUSDT", "p": "3000"}]


def test_check_api_key_and_account_types(hk: Any) -> None:
    assert hk("demo-read").get("/api/v1/account/checkApiKey").json() == {"accountType": "master"}
    types = hk("demo-read").get("/api/v1/account/type").json()
    assert [(t["accountId"], t["accountType"], t["accountLabel"]) for t in types] == [
        ("1001", 1, "Main Trading Account"),
        ("1002", 5, "Custody Account"),
        ("1003", 6, "Fiat Account"),
    ]
    assert all(isinstance(t["accountId"], str) for t in types)


def test_balances_default_to_the_keys_account_and_accept_account_id(hk: Any) -> None:
    own = hk("demo-read").get("/api/v1/account").json()
    rows = {b["asset"]: b for b in own["balances"]}
    assert rows["USDT"] == {
        "asset": "USDT",
        "assetId": "USDT",
        "assetName": "USDT",
        "total": "250000",
        "free": "250000",
        "locked": "0",
    }
    fiat = hk("demo-read").get("/api/v1/account", accountId="1003").json()
    assert {b["asset"]: b["total"] for b in fiat["balances"]} == {"USD": "100000", "HKD": "500000"}
    r = hk("demo-read").get("/api/v1/account", accountId="4242")
    assert r.status_code == 400 and r.json()["code"] == "-1160"


def test_transfer_moves_money_and_echoes_client_id(hk: Any, sim: Simulator, clock: ManualClock) -> None:
    r = hk("demo-transfer").post(
        "/api/v1/account/assetTransfer",
        fromAccountId="1001",
        toAccountId="1002",
        coin="USDT",
        quantity="1234.5",
        clientOrderId="xfer-0001",
        remark="to custody",
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["clientOrderId"] == "xfer-0001"
    assert body["timestamp"] == int(clock.time() * 1000) and body["orderId"].isdigit()
    assert balance(sim, "1001", "USDT") == "248765.5"
    assert balance(sim, "1002", "USDT") == "1234.5"
    [t] = sim.state()["transfers"]
    assert (t["clientOrderId"], t["orderId"], t["apiKey"]) == ("xfer-0001", body["orderId"], "demo-transfer")
    r = hk("demo-transfer").post(
        "/api/v1/account/assetTransfer", fromAccountId="1001", toAccountId="1002", coin="USDT", quantity="1"
    )
    assert r.json()["clientOrderId"] == ""


def test_transfer_errors_have_no_effect(hk: Any, sim: Simulator) -> None:
    before = sim.state()["balances"]
    signer = hk("demo-transfer")
    cases = [
        ({"fromAccountId": "1001", "toAccountId": "1001", "coin": "USDT", "quantity": "1"}, "-1174"),
        ({"fromAccountId": "9", "toAccountId": "1002", "coin": "USDT", "quantity": "1"}, "-1172"),
        ({"fromAccountId": "1001", "toAccountId": "9", "coin": "USDT", "quantity": "1"}, "-1173"),
        ({"fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT", "quantity": "250000.01"}, "0401"),
        ({"fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT", "quantity": "-1"}, "0001"),
        ({"fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT", "quantity": "1.5e2"}, "0001"),
        ({"fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT"}, "-100012"),
    ]
    for params, code in cases:
        r = signer.post("/api/v1/account/assetTransfer", **params)
        assert (r.status_code, r.json()["code"]) == (400, code), (params, r.text)
    assert sim.state()["balances"] == before
    assert sim.state()["transfers"] == []


def test_duplicate_transfer_client_id_has_no_second_effect(hk: Any, sim: Simulator) -> None:
    signer = hk("demo-transfer")
    params = {"fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT", "quantity": "10", "clientOrderId": "d1"}
    assert signer.post("/api/v1/account/assetTransfer", **params).status_code == 200
    r = signer.post("/api/v1/account/assetTransfer", **params)
    assert (r.status_code, r.json()["code"]) == (400, "-1024")
    assert balance(sim, "1002", "USDT") == "10"
    assert effects(sim)["transfers"] == 1
    sim.cfg.settings.duplicate_codes.transfer = "-4013"
    r = signer.post("/api/v1/account/assetTransfer", **params)
    assert r.json()["code"] == "-4013"


def test_balance_flow_by_type_client_id_and_time(hk: Any, sim: Simulator, clock: ManualClock) -> None:
    t0 = int(clock.time() * 1000)
    xfer = hk("demo-transfer")
    xfer.post(
        "/api/v1/account/assetTransfer",
        fromAccountId="1001",
        toAccountId="1002",
        coin="USDT",
        quantity="5",
        clientOrderId="f-1",
    )
    clock.advance(60)
    xfer.post(
        "/api/v1/account/assetTransfer",
        fromAccountId="1002",
        toAccountId="1001",
        coin="USDT",
        quantity="2",
        clientOrderId="f-2",
    )
    reader = hk("demo-read")
    rows = reader.get("/api/v1/account/balanceFlow", type="transfer").json()
    assert [r["clientOrderId"] for r in rows] == ["f-2", "f-1"]
    [row] = reader.get("/api/v1/account/balanceFlow", type="transfer", clientOrderId="f-1").json()
    assert row["netTransferAmount"] == "5" and row["transferCcy"] == "USDT"
    assert row["fromAccountId"] == "1001" and row["toAccountId"] == "1002" and row["type"] == "transfer"
    assert row["orderId"] == sim.state()["transfers"][0]["orderId"]
    early = reader.get("/api/v1/account/balanceFlow", type="transfer", startTime=t0, endTime=t0 + 1000).json()
    assert [r["clientOrderId"] for r in early] == ["f-1"]
    r = reader.get("/api/v1/account/balanceFlow", type="transfer", startTime=t0, endTime=t0 + 31 * 86_400_000)
    assert r.json()["code"] == "-2027"
    r = reader.get("/api/v1/account/balanceFlow", type="nonsense")
    assert r.json()["code"] == "0001"
    r = reader.get("/api/v1/account/balanceFlow")
    assert r.json()["code"] == "-100012"


def test_balance_flow_trades(hk: Any) -> None:
    hk("demo-trade").post(
        "/api/v1.1/spot/order", symbol="ETHUSDT", side="SELL", type="MARKET", quantity="2", newClientOrderId="sell-eth"
    )
    [row] = hk("demo-read").get("/api/v1/account/balanceFlow", type="trade").json()
    assert (row["netBaseAmount"], row["netQuoteAmount"], row["clientOrderId"]) == ("-2", "6000", "sell-eth")
