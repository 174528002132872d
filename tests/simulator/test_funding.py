"""Funding: VA withdrawals and their status, deposits, deposit address, fiat, wallet proofs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.simulator.conftest import HK, WHITE_BTC, WHITE_USDT, WHITE_USDT_2, balance, effects
from treasury.clock import ManualClock
from treasury.simulator import Simulator
from treasury.simulator.funding import wallet_signature

WITHDRAW = "/api/v1/account/withdraw"
FIAT = "/api/v1/account/fiat/withdraw"


def withdraw(signer: HK, **params: Any) -> Any:
    base = {"coin": "USDT", "chainType": "ETH", "address": WHITE_USDT, "quantity": "100"}
    return signer.post(WITHDRAW, **{**base, **params})


def test_withdraw_debits_quantity_plus_fee_and_progresses(hk: Any, sim: Simulator, clock: ManualClock) -> None:
    r = withdraw(hk("demo-withdraw"), clientOrderId="usdt-1", remark="vendor A")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["orderId"].startswith("W") and body["accountId"] == "1001"
    assert body["clientOrderId"] == "usdt-1"
    assert balance(sim, "1001", "USDT") == "249899"  # 100 + fee 1
    reader = hk("demo-read")
    [item] = reader.get("/api/v1/account/withdrawOrders", coin="USDT").json()
    assert (item["id"], item["clientOrderId"], item["status"], item["fee"]) == (
        body["orderId"],
        "usdt-1",
        "processing",
        "1",
    )
    assert item["address"] == WHITE_USDT and item["chainType"] == "ETH" and item["txId"] == ""
    assert reader.get("/api/v1/account/balanceFlow", type="withdraw").json() == []  # only final records
    clock.advance(10)
    [item] = reader.get("/api/v1/account/withdrawOrders", clientOrderId="usdt-1").json()
    assert item["status"] == "successful" and item["txId"]
    [flow] = reader.get("/api/v1/account/balanceFlow", type="withdraw", clientOrderId="usdt-1").json()
    assert (flow["orderId"], flow["netVaAmount"], flow["fee"]) == (body["orderId"], "100", "1")
    assert reader.get("/api/v1/account/withdrawOrders", clientOrderId="other").json() == []
    assert sim.state()["withdrawals"][0]["status"] == "successful"


def test_custom_status_progression(hk: Any, sim: Simulator, clock: ManualClock) -> None:
    sim.cfg.settings.withdraw_statuses = [
        type(sim.cfg.settings.withdraw_statuses[0])(status="under_review", after_seconds=0),
        type(sim.cfg.settings.withdraw_statuses[0])(status="failed", after_seconds=3),
    ]
    withdraw(hk("demo-withdraw"), clientOrderId="rev")
    assert sim.state()["withdrawals"][0]["status"] == "under_review"
    clock.advance(3)
    assert sim.state()["withdrawals"][0]["status"] == "failed"


def test_withdraw_errors_have_no_effect(hk: Any, sim: Simulator) -> None:
    signer = hk("demo-withdraw")
    cases = [
        ({"address": "0xnotwhitelisted"}, "-1171"),
        ({"address": WHITE_USDT, "chainType": "Tron"}, "-1171"),
        ({"chainType": "Solana"}, "0001"),
        ({"quantity": "1"}, "-1167"),
        ({"quantity": "250000"}, "0401"),
        ({"quantity": "abc"}, "-1168"),
        ({"coin": "DOGE"}, "-1169"),
    ]
    for params, code in cases:
        r = withdraw(signer, **params)
        assert (r.status_code, r.json()["code"]) == (400, code), (params, r.text)
    r = signer.post(WITHDRAW, coin="USDT", address=WHITE_USDT, quantity="5")  # USDT has two chains
    assert r.json()["code"] == "-100012"
    assert effects(sim)["withdrawals"] == 0 and balance(sim, "1001", "USDT") == "250000"


def test_single_chain_coin_needs_no_chain_type(hk: Any, sim: Simulator) -> None:
    r = hk("demo-withdraw").post(WITHDRAW, coin="BTC", address=WHITE_BTC, quantity="0.5", clientOrderId="b")
    assert r.status_code == 200, r.text
    assert balance(sim, "1001", "BTC") == "2.4998"


def test_duplicate_withdraw_client_id(hk: Any, sim: Simulator) -> None:
    signer = hk("demo-withdraw")
    assert withdraw(signer, clientOrderId="same").status_code == 200
    r = withdraw(signer, clientOrderId="same", address=WHITE_USDT_2)
    assert (r.status_code, r.json()["code"]) == (400, "-1024")
    assert effects(sim)["withdrawals"] == 1 and balance(sim, "1001", "USDT") == "249899"


def test_deposits_and_deposit_address(hk: Any, sim: Simulator) -> None:
    wl = hk("demo-whitelist")
    a1 = wl.get("/api/v1/account/deposit/address", coin="USDT", chainType="ETH").json()
    a2 = wl.get("/api/v1/account/deposit/address", coin="USDT", chainType="ETH").json()
    a3 = wl.get("/api/v1/account/deposit/address", coin="USDT", chainType="Tron").json()
    assert a1 == a2 and a1["address"].startswith("0x") and a3["address"].startswith("T")
    assert a1["canDeposit"] is True and a1["requiredConfirmTimes"] == 64
    assert wl.get("/api/v1/account/deposit/address", coin="USDT").json()["code"] == "-100012"
    record = sim.deposit("1002", "USDT", "42", "ETH")
    assert record["depositOrderId"].startswith("D")
    assert balance(sim, "1002", "USDT") == "42"
    reader = hk("demo-read")
    [item] = reader.get("/api/v1/account/depositOrders", coin="ETH_USDT").json()
    assert item["quantity"] == "42" and item["status"] == 4
    assert reader.get("/api/v1/account/depositOrders", coin="BTC").json() == []
    [flow] = reader.get("/api/v1/account/balanceFlow", type="deposit").json()
    assert flow["orderId"] == record["depositOrderId"]


def test_fiat_withdraw_and_history(hk: Any, sim: Simulator, clock: ManualClock) -> None:
    fiat = hk("demo-fiat")
    r = fiat.post(
        FIAT, asset="USD", amount="2500", bankAccount="HSBC-001-234567-838", clientOrderId="fw-1", remark="payroll May"
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["orderId"].startswith("FW") and body["clientOrderId"] == "fw-1" and body["status"] == "under_review"
    assert balance(sim, "1003", "USD") == "97500"
    reader = hk("demo-read")
    [item] = reader.get("/api/v1/account/fiat/history", type="withdraw", clientOrderId="fw-1").json()
    assert (item["orderId"], item["grossAmount"], item["status"], item["remark"]) == (
        body["orderId"],
        "2500",
        "under_review",
        "payroll May",
    )
    clock.advance(5)
    assert reader.get("/api/v1/account/fiat/history", type="withdraw").json()[0]["status"] == "processing"
    clock.advance(15)
    assert (
        reader.get("/api/v1/account/fiat/history", type="withdraw", status="successful").json()[0]["orderId"]
        == (body["orderId"])
    )
    [flow] = reader.get("/api/v1/account/balanceFlow", type="fiatWithdraw", clientOrderId="fw-1").json()
    assert flow["netFiatAmount"] == "2500" and flow["fiatCcy"] == "USD"
    assert reader.get("/api/v1/account/fiat/history", type="deposit").json() == []
    assert reader.get("/api/v1/account/fiat/history", type="refund").json()["code"] == "-1177"
    assert reader.get("/api/v1/account/fiat/history", type="withdraw", status="lost").json()["code"] == "-1176"


def test_fiat_withdraw_errors_and_duplicates(hk: Any, sim: Simulator) -> None:
    fiat = hk("demo-fiat")
    bank = "HSBC-001-234567-838"
    cases = [
        ({"asset": "EUR", "amount": "100", "bankAccount": bank}, "-4001"),
        ({"asset": "USD", "amount": "1", "bankAccount": bank}, "-4002"),
        ({"asset": "USD", "amount": "100001", "bankAccount": bank}, "-4003"),
        ({"asset": "USD", "amount": "100", "bankAccount": "UNKNOWN-1"}, "-4004"),
        ({"asset": "USD", "amount": "ten", "bankAccount": bank}, "-4012"),
    ]
    for params, code in cases:
        r = fiat.post(FIAT, **params)
        assert (r.status_code, r.json()["code"]) == (400, code), (params, r.text)
    assert fiat.post(FIAT, asset="HKD", amount="100", bankAccount=bank, clientOrderId="d").status_code == 200
    assert fiat.post(FIAT, asset="HKD", amount="100", bankAccount=bank, clientOrderId="d").json()["code"] == "-1024"
    assert effects(sim)["fiat_withdrawals"] == 1 and balance(sim, "1003", "HKD") == "499900"
    # a key on the trading account withdraws fiat from the fiat account
    assert hk("demo-admin").post(FIAT, asset="USD", amount="10", bankAccount=bank).json()["accountId"] == "1003"


def test_any_bank_account_when_no_list_is_configured(hk: Any, sim: Simulator) -> None:
    sim.cfg.fiat_bank_accounts = None
    r = hk("demo-fiat").post(FIAT, asset="USD", amount="100", bankAccount="ANY-BANK-9")
    assert r.status_code == 200, r.text


def test_wallet_signing_whitelists_the_address(hk: Any, sim: Simulator) -> None:
    address = "0x1111111111111111111111111111111111111111"
    wl = hk("demo-whitelist")
    message = "I own this wallet: treasury 2026-01-01"
    r = wl.post(
        "/api/v1/whitelist/walletSigning",
        coin="USDT",
        chainType="ETH",
        address=address,
        message=message,
        walletSignature="00" * 32,
    )
    assert r.json()["code"] == "-1179"
    assert withdraw(hk("demo-withdraw"), address=address).json()["code"] == "-1171"
    r = wl.post(
        "/api/v1/whitelist/walletSigning",
        coin="USDT",
        chainType="ETH",
        address=address,
        message=message,
        walletSignature="0x" + wallet_signature(address, message),
    )
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True and r.json()["whitelisted"] is True
    assert withdraw(hk("demo-withdraw"), address=address).status_code == 200
    state = sim.state()
    assert state["wallet_signings"][0]["address"] == address
    assert any(e["address"] == address for e in state["withdraw_whitelist"])


def test_wallet_signing_without_whitelisting(hk: Any, sim: Simulator) -> None:
    sim.cfg.settings.wallet_signing_whitelists = False
    address = "0x2222222222222222222222222222222222222222"
    r = hk("demo-whitelist").post(
        "/api/v1/whitelist/walletSigning",
        coin="USDT",
        chainType="ETH",
        address=address,
        message="m",
        walletSignature=wallet_signature(address, "m"),
    )
    assert r.json()["whitelisted"] is False
    assert withdraw(hk("demo-withdraw"), address=address).json()["code"] == "-1171"


def test_whitelist_verify_is_deterministic(hk: Any) -> None:
    wl = hk("demo-whitelist")
    params = {"coin": "USDT", "chainType": "ETH", "address": "0x3333333333333333333333333333333333333333"}
    first = wl.get("/api/v1/whitelist/verify", **params).json()
    assert first == wl.get("/api/v1/whitelist/verify", **params).json()
    assert first["address"].startswith("0x") and first["walletAddress"] == params["address"]
    assert Decimal(0) < Decimal(first["amount"]) < Decimal("0.01")
    other = wl.get("/api/v1/whitelist/verify", **{**params, "address": "0x4444"}).json()
    assert other["address"] != first["address"]
