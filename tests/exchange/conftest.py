"""Fixtures for the exchange tests: the demo world in-process, a recording transport, profiles."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from treasury.clock import ManualClock
from treasury.exchange import HashKeyClient, LocalRateLimiter
from treasury.keys import KeyProfile
from treasury.models import Permission
from treasury.settings import RateLimits
from treasury.simulator import Simulator
from treasury.simulator.state import load_state

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "config"
BASE_URL = "http://sim.local"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that keeps every request it passes on (the network's view)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.handler(request)


def profile(name: str, api_key: str, *perms: Permission, secret: str | None = None,
            totp_secret: str | None = None) -> KeyProfile:
    return KeyProfile(
        name=name,
        api_key=api_key,
        secret=SecretStr(secret or f"{api_key}-secret"),
        permissions=frozenset(perms),
        totp_secret=SecretStr(totp_secret) if totp_secret else None,
    )


R, T, W, F, X, WL = (Permission.READ, Permission.TRADE, Permission.WITHDRAW, Permission.FIAT_WITHDRAW,
                     Permission.TRANSFER, Permission.WHITELIST)
PROFILES = {
    "ops-read": profile("ops-read", "demo-read", R),
    "trading": profile("trading", "demo-trade", R, T),
    "transfers": profile("transfers", "demo-transfer", R, X),
    "withdrawals": profile("withdrawals", "demo-withdraw", R, W),
    "fiat": profile("fiat", "demo-fiat", R, F),
    "whitelisting": profile("whitelisting", "demo-whitelist", R, WL),
    "admin": profile("admin", "demo-admin", *Permission),
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim_config() -> Any:
    return load_state(CONFIG_DIR / "simulator.yaml")


@pytest.fixture
def sim(sim_config: Any, clock: ManualClock) -> Simulator:
    """The demo world, in-process, on the same manual clock as the client."""
    return Simulator(sim_config, clock=clock, seed=1)


@pytest.fixture
def recorder(sim: Simulator) -> Recorder:
    return Recorder(sim.handle)


@pytest.fixture
def make_client(clock: ManualClock) -> Callable[..., HashKeyClient]:
    def make(handler: Handler, *, limits: RateLimits | None = None, limiter: Any = "local",
             **kwargs: Any) -> HashKeyClient:
        if limiter == "local":
            limiter = LocalRateLimiter(limits or RateLimits(), clock)
        http = httpx.Client(transport=httpx.MockTransport(handler))
        return HashKeyClient(BASE_URL, http, clock=clock, limiter=limiter, **kwargs)

    return make


@pytest.fixture
def client(make_client: Callable[..., HashKeyClient], recorder: Recorder) -> HashKeyClient:
    return make_client(recorder)
