"""Fixtures for the simulator tests: the demo world, a manual clock and a tiny signer.

The signer is written here from HashKey's documentation only (urlencode with quote, HMAC-SHA256
hex, ``signature`` appended, ``X-HK-APIKEY`` header); it deliberately shares no code with the
project's exchange client or with the simulator.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest

from treasury.clock import ManualClock
from treasury.simulator import Simulator, SimulatorConfig, load_state

STATE_FILE = Path(__file__).resolve().parents[2] / "config" / "simulator.yaml"
WHITE_USDT = "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90"
WHITE_USDT_2 = "0x8ba1f109551bd432803012645ac136ddd64dba72"
WHITE_BTC = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"


def sign(secret: str, total_params: str) -> str:
    return hmac.new(secret.encode(), total_params.encode(), hashlib.sha256).hexdigest()


class HK:
    """A minimal HashKey PRO caller: one API key, signs exactly the bytes it sends."""

    def __init__(self, client: httpx.Client, clock: ManualClock, api_key: str, secret: str | None = None) -> None:
        self.client = client
        self.clock = clock
        self.api_key = api_key
        self.secret = secret if secret is not None else f"{api_key}-secret"
        self.headers: dict[str, str] = {}

    def encode(self, params: dict[str, Any]) -> str:
        params = dict(params)
        params.setdefault("timestamp", int(self.clock.time() * 1000))
        return urlencode(params, quote_via=quote)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"X-HK-APIKEY": self.api_key, **self.headers, **(extra or {})}

    def get(self, path: str, headers: Any = None, **params: Any) -> httpx.Response:
        qs = self.encode(params)
        return self.client.get(f"{path}?{qs}&signature={sign(self.secret, qs)}", headers=self._headers(headers))

    def delete(self, path: str, headers: Any = None, **params: Any) -> httpx.Response:
        qs = self.encode(params)
        url = f"{path}?{qs}&signature={sign(self.secret, qs)}"
        return self.client.request("DELETE", url, headers=self._headers(headers))

    def post(self, path: str, headers: Any = None, **params: Any) -> httpx.Response:
        body = self.encode(params)
        hdrs = self._headers({"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
        return self.client.post(path, content=f"{body}&signature={sign(self.secret, body)}", headers=hdrs)

    def batch(self, orders: list[dict[str, Any]]) -> httpx.Response:
        qs = self.encode({})
        hdrs = self._headers({"Content-Type": "application/json"})
        url = f"/api/v1/spot/batchOrders?{qs}&signature={sign(self.secret, qs)}"
        return self.client.post(url, content=json.dumps(orders), headers=hdrs)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cfg() -> SimulatorConfig:
    """The demo world with rate limits off (rate-limit tests turn them on)."""
    return load_state(STATE_FILE).tuned(rate_limits={"enabled": False})


@pytest.fixture
def sim(cfg: SimulatorConfig, clock: ManualClock) -> Simulator:
    return Simulator(cfg, clock=clock, seed=1)


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="https://sim.test") as c:
        yield c


@pytest.fixture
def hk(client: httpx.Client, clock: ManualClock) -> Any:
    """``hk("demo-trade")`` -> a signer for that demo key."""

    def make(api_key: str, secret: str | None = None) -> HK:
        return HK(client, clock, api_key, secret)

    return make


def balance(sim: Simulator, account: str, asset: str, part: str = "total") -> str:
    return str(sim.state()["balances"].get(account, {}).get(asset, {}).get(part, "0"))


def effects(sim: Simulator) -> dict[str, int]:
    """How many effects of each kind exist (for "no effect" assertions)."""
    state = sim.state()
    kinds = ("orders", "transfers", "withdrawals", "fiat_withdrawals", "wallet_signings", "trades")
    return {k: len(state[k]) for k in kinds}
