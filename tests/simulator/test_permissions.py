"""Every private endpoint refuses a key without its permission: -1005 and no effect."""

from __future__ import annotations

from typing import Any

import pytest

from tests.simulator.conftest import HK, WHITE_USDT
from treasury.clock import ManualClock
from treasury.models import Permission
from treasury.simulator import Simulator
from treasury.simulator.app import ROUTES
from treasury.simulator.state import KeySpec

CALLS: list[tuple[str, str, dict[str, str], Permission]] = [
    ("GET", "/api/v1/account/checkApiKey", {}, Permission.READ),
    ("GET", "/api/v1/account/type", {}, Permission.READ),
    ("GET", "/api/v1/account", {}, Permission.READ),
    ("GET", "/api/v1/account/balanceFlow", {"type": "transfer"}, Permission.READ),
    ("GET", "/api/v1/account/withdrawOrders", {}, Permission.READ),
    ("GET", "/api/v1/account/depositOrders", {}, Permission.READ),
    ("GET", "/api/v1/account/fiat/history", {"type": "withdraw"}, Permission.READ),
    ("GET", "/api/v1/spot/order", {"orderId": "1"}, Permission.READ),
    ("GET", "/api/v1/spot/openOrders", {}, Permission.READ),
    ("GET", "/api/v1/spot/tradeOrders", {}, Permission.READ),
    ("GET", "/api/v1/account/trades", {}, Permission.READ),
    ("GET", "/api/v1/account/tradesByClOrderId", {"clientOrderId": "x"}, Permission.READ),
    (
        "POST",
        "/api/v1/spot/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"},
        Permission.TRADE,
    ),
    (
        "POST",
        "/api/v1.1/spot/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"},
        Permission.TRADE,
    ),
    (
        "POST",
        "/api/v1/spot/orderTest",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"},
        Permission.TRADE,
    ),
    ("POST", "/api/v1/spot/batchOrders", {}, Permission.TRADE),
    ("DELETE", "/api/v1/spot/order", {"orderId": "1"}, Permission.TRADE),
    ("DELETE", "/api/v1/spot/openOrders", {"symbol": "BTCUSDT"}, Permission.TRADE),
    ("DELETE", "/api/v1/spot/cancelOrderByIds", {"ids": "1,2"}, Permission.TRADE),
    (
        "POST",
        "/api/v1/account/assetTransfer",
        {"fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT", "quantity": "1"},
        Permission.TRANSFER,
    ),
    (
        "POST",
        "/api/v1/account/withdraw",
        {"coin": "USDT", "chainType": "ETH", "address": WHITE_USDT, "quantity": "10"},
        Permission.WITHDRAW,
    ),
    (
        "POST",
        "/api/v1/account/fiat/withdraw",
        {"asset": "USD", "amount": "100", "bankAccount": "HSBC-001-234567-838"},
        Permission.FIAT_WITHDRAW,
    ),
    ("GET", "/api/v1/account/deposit/address", {"coin": "USDT", "chainType": "ETH"}, Permission.WHITELIST),
    (
        "POST",
        "/api/v1/whitelist/walletSigning",
        {"coin": "USDT", "chainType": "ETH", "address": "0x1", "message": "m", "walletSignature": "00"},
        Permission.WHITELIST,
    ),
    ("GET", "/api/v1/whitelist/verify", {"coin": "USDT", "chainType": "ETH", "address": "0x1"}, Permission.WHITELIST),
]


def test_the_table_covers_every_private_endpoint() -> None:
    private = {(e.method, e.path): e.permission for e in ROUTES.values() if e.permission is not None}
    assert {(m, p): perm for m, p, _, perm in CALLS} == private


def _comparable(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in ("serverTime", "rate_limits")}


@pytest.mark.parametrize(("method", "path", "params", "permission"), CALLS, ids=[f"{c[0]} {c[1]}" for c in CALLS])
def test_missing_permission_is_refused_without_effect(
    sim: Simulator,
    client: Any,
    clock: ManualClock,
    method: str,
    path: str,
    params: dict[str, str],
    permission: Permission,
) -> None:
    others = [p for p in Permission if p != permission]
    sim.keys["lacking"] = KeySpec(api_key="lacking", secret="s3cret", account="1001", permissions=others)
    signer = HK(client, clock, "lacking", "s3cret")
    before = _comparable(sim.state())
    if path.endswith("batchOrders"):
        r = signer.batch([{"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"}])
    elif method == "GET":
        r = signer.get(path, **params)
    elif method == "DELETE":
        r = signer.delete(path, **params)
    else:
        r = signer.post(path, **params)
    assert (r.status_code, r.json()["code"]) == (400, "-1005"), r.text
    assert "permission" in r.json()["msg"].lower()
    assert _comparable(sim.state()) == before


def test_demo_admin_has_every_permission(hk: Any) -> None:
    admin = hk("demo-admin")
    assert admin.get("/api/v1/account").status_code == 200
    assert (
        admin.post(
            "/api/v1/account/assetTransfer", fromAccountId="1001", toAccountId="1002", coin="USDT", quantity="1"
        ).status_code
        == 200
    )
    assert admin.get("/api/v1/account/deposit/address", coin="BTC", chainType="Bitcoin").status_code == 200
