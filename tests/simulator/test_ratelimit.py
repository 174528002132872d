"""Rate limits: weights per class over a 1 s sliding window, 429 then suspension, 418 and ban."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.simulator.conftest import HK, STATE_FILE
from treasury.clock import ManualClock
from treasury.simulator import Simulator, load_state


@pytest.fixture
def limited(clock: ManualClock) -> Simulator:
    cfg = load_state(STATE_FILE).tuned(rate_limits={"suspension_seconds": 2, "ban_seconds": 5})
    return Simulator(cfg, clock=clock)


@pytest.fixture
def lclient(limited: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(limited.handle), base_url="https://sim.test") as c:
        yield c


def signer(lclient: httpx.Client, clock: ManualClock, key: str) -> HK:
    return HK(lclient, clock, key)


def test_429_then_418_then_ban_expires(limited: Simulator, lclient: httpx.Client, clock: ManualClock) -> None:
    reader = signer(lclient, clock, "demo-read")
    other = signer(lclient, clock, "demo-trade")
    assert reader.get("/api/v1/account/checkApiKey").status_code == 200
    assert reader.get("/api/v1/account/checkApiKey").status_code == 200
    r = reader.get("/api/v1/account/checkApiKey")
    assert (r.status_code, r.json()["code"]) == (429, "0003")
    assert "rate limit" in r.json()["msg"].lower()
    assert "demo-read" in limited.state()["rate_limits"]["suspended"]
    # another key and public endpoints are unaffected while only the key is suspended
    assert other.get("/api/v1/account/checkApiKey").status_code == 200
    clock.advance(1.5)  # the window has slid, but the key is still suspended
    r = reader.get("/api/v1/account/checkApiKey")
    assert r.status_code == 418
    # now the whole source is banned: every request, any key, public too
    assert other.get("/api/v1/account/checkApiKey").status_code == 418
    assert lclient.get("/api/v1/time").status_code == 418
    clock.advance(4.9)
    assert lclient.get("/api/v1/time").status_code == 418
    clock.advance(0.2)
    assert lclient.get("/api/v1/time").status_code == 200
    assert reader.get("/api/v1/account/checkApiKey").status_code == 200
    assert limited.state()["rate_limits"] == {"enabled": True, "suspended": {}, "banned": {}}


def test_suspension_expires_without_ban_if_the_client_waits(lclient: httpx.Client, clock: ManualClock) -> None:
    reader = signer(lclient, clock, "demo-read")
    for _ in range(2):
        reader.get("/api/v1/account/checkApiKey")
    assert reader.get("/api/v1/account/checkApiKey").status_code == 429
    clock.advance(2)
    assert reader.get("/api/v1/account/checkApiKey").status_code == 200


def test_weights_count_against_the_class_budget(lclient: httpx.Client, clock: ManualClock) -> None:
    reader = signer(lclient, clock, "demo-read")
    assert reader.get("/api/v1/account").status_code == 200  # weight 5 admitted into an empty window
    assert reader.get("/api/v1/account/checkApiKey").status_code == 429
    clock.advance(2)
    assert reader.get("/api/v1/account/checkApiKey").status_code == 200
    clock.advance(0.5)
    assert reader.get("/api/v1/account/checkApiKey").status_code == 200
    clock.advance(0.6)  # the first request slid out; the second (weight 1) is still inside
    assert reader.get("/api/v1/account/checkApiKey").status_code == 200


def test_transfer_class_allows_one_per_second_and_refusal_has_no_effect(
    limited: Simulator, lclient: httpx.Client, clock: ManualClock
) -> None:
    mover = signer(lclient, clock, "demo-transfer")
    params = {"fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT", "quantity": "1"}
    assert mover.post("/api/v1/account/assetTransfer", clientOrderId="r1", **params).status_code == 200
    r = mover.post("/api/v1/account/assetTransfer", clientOrderId="r2", **params)
    assert r.status_code == 429
    assert [t["clientOrderId"] for t in limited.state()["transfers"]] == ["r1"]
    # queries of the same key have their own class, but the key is suspended as a whole
    assert mover.get("/api/v1/account").status_code == 418


def test_order_class_allows_ten(lclient: httpx.Client, clock: ManualClock) -> None:
    trader = signer(lclient, clock, "demo-trade")
    codes = [
        trader.post("/api/v1/spot/orderTest", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="1").status_code
        for _ in range(11)
    ]
    assert codes == [200] * 10 + [429]


def test_weight_override_from_settings(limited: Simulator, lclient: httpx.Client, clock: ManualClock) -> None:
    limited.cfg.settings.rate_limits.weights = {"POST /api/v1/spot/orderTest": 10}
    trader = signer(lclient, clock, "demo-trade")
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"}
    assert trader.post("/api/v1/spot/orderTest", **params).status_code == 200
    assert trader.post("/api/v1/spot/orderTest", **params).status_code == 429


def test_disabled_limits(hk: Any, sim: Simulator) -> None:
    assert sim.cfg.settings.rate_limits.enabled is False
    reader = hk("demo-read")
    assert all(reader.get("/api/v1/account").status_code == 200 for _ in range(50))


def test_bad_signature_still_counts_and_unknown_key_does_not(lclient: httpx.Client, clock: ManualClock) -> None:
    wrong = HK(lclient, clock, "demo-read", "not-the-secret")
    assert wrong.get("/api/v1/account/checkApiKey").json()["code"] == "0002"
    assert wrong.get("/api/v1/account/checkApiKey").json()["code"] == "0002"
    assert wrong.get("/api/v1/account/checkApiKey").status_code == 429
    stranger = HK(lclient, clock, "nobody", "x")
    assert all(stranger.get("/api/v1/account").json()["code"] == "0102" for _ in range(5))
