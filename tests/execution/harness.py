"""A small world for execution tests: simulator, client, executor and effect counting.

Everything runs on one ManualClock, so settle windows, deadlines, rate-limit waits and
retry back-offs cost no real time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import Engine, select

from treasury.clock import Clock, ManualClock
from treasury.exchange.client import HashKeyClient
from treasury.exchange.ratelimit import LocalRateLimiter
from treasury.execution import ExecutionSettings, StepExecutor, StepRequest, new_run_id
from treasury.keys import KeyProfile
from treasury.models import Permission
from treasury.settings import RateLimits
from treasury.simulator import Simulator, load_state

ROOT = Path(__file__).resolve().parents[2]
STATE_FILE = ROOT / "config" / "simulator.yaml"
WHITELISTED = "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90"

_P = Permission
PROFILES: dict[str, tuple[str, frozenset[Permission]]] = {
    "transfers": ("demo-transfer", frozenset({_P.READ, _P.TRANSFER})),
    "withdrawals": ("demo-withdraw", frozenset({_P.READ, _P.WITHDRAW})),
    "fiat": ("demo-fiat", frozenset({_P.READ, _P.FIAT_WITHDRAW})),
    "trading": ("demo-trade", frozenset({_P.READ, _P.TRADE})),
    "reader": ("demo-read", frozenset({_P.READ})),
    "whitelist": ("demo-whitelist", frozenset({_P.READ, _P.WHITELIST})),
    # the withdraw key as a profile that was (mis)configured without read permission
    "withdraw-only": ("demo-withdraw", frozenset({_P.WITHDRAW})),
}

# One template per money-moving operation: (operation, profile, params).
OPS: dict[str, tuple[str, dict[str, Any]]] = {
    "asset_transfer": ("transfers", {"fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT",
                                     "quantity": "10"}),
    "withdraw": ("withdrawals", {"coin": "USDT", "chainType": "ETH", "address": WHITELISTED, "quantity": "5"}),
    "fiat_withdraw": ("fiat", {"asset": "USD", "amount": "100", "bankAccount": "HSBC-001-234567-838"}),
    "spot_order": ("trading", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "50000",
                               "quantity": "0.001"}),
    "batch_orders": ("trading", {"orders": [
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "50000", "quantity": "0.001"},
        {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "price": "70000", "quantity": "0.001"},
    ]}),
}

PATHS = {
    "asset_transfer": "/api/v1/account/assetTransfer",
    "withdraw": "/api/v1/account/withdraw",
    "fiat_withdraw": "/api/v1/account/fiat/withdraw",
    "spot_order": "/api/v1.1/spot/order",
    "batch_orders": "/api/v1/spot/batchOrders",
}


# profiles whose key cannot read the fund statement (a sub-account's key; see sub_keys below)
NO_FUND_STATEMENT = frozenset({"transfers-sub"})
PROFILES["transfers-sub"] = ("demo-transfer", frozenset({_P.READ, _P.TRANSFER}))


def profile(name: str) -> KeyProfile:
    api_key, perms = PROFILES[name]
    return KeyProfile(name=name, api_key=api_key, secret=SecretStr(f"{api_key}-secret"), permissions=perms,
                      fund_statement=name not in NO_FUND_STATEMENT)


def effects(state: dict[str, Any], client_id: str) -> int:
    """How many effects on the exchange carry ``client_id`` (every kind of effect counted)."""
    n = 0
    for kind in ("orders", "transfers", "withdrawals", "fiat_withdrawals"):
        n += sum(1 for e in state[kind] if e.get("clientOrderId") == client_id)
    return n


def all_client_ids(state: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for kind in ("orders", "transfers", "withdrawals", "fiat_withdrawals"):
        out += [e["clientOrderId"] for e in state[kind] if e.get("clientOrderId")]
    return out


@dataclass
class World:
    engine: Engine
    clock: Any
    sim: Simulator
    client: HashKeyClient
    executor: StepExecutor
    seen: list[httpx.Request] = field(default_factory=list)
    profiles: dict[str, KeyProfile] = field(default_factory=dict)

    def request(self, op: str, *, run_id: str | None = None, step_id: str = "pay",
                params: dict[str, Any] | None = None, key: str | None = None, **kw: Any) -> StepRequest:
        key_default, template = OPS[op]
        return StepRequest(run_id=run_id or new_run_id(), step_id=step_id, operation=op,
                           key_profile=key or key_default, params=params if params is not None else template,
                           actor="alice", **kw)

    def sent(self, path: str) -> list[httpx.Request]:
        return [r for r in self.seen if r.url.path == path]

    def events(self, type_: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        from treasury.audit.tables import audit_events

        q = select(audit_events).order_by(audit_events.c.seq)
        if type_ is not None:
            q = q.where(audit_events.c.type == type_)
        if run_id is not None:
            q = q.where(audit_events.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]


def make_world(
    engine: Engine,
    *,
    seed: int = 7,
    clock: Clock | None = None,
    settings: ExecutionSettings | None = None,
    policy: Any = None,
    audit: Callable[..., Any] | None = None,
    timeout: float = 10.0,
    sub_keys: Sequence[str] = (),
) -> World:
    """``sub_keys``: API keys the simulator treats as sub-account keys (no fund statement)."""
    clk: Any = clock if clock is not None else ManualClock()
    state = load_state(STATE_FILE)
    if sub_keys:
        state = state.model_copy(update={"keys": [k.model_copy(update={"master": k.api_key not in sub_keys})
                                                  for k in state.keys]})
    sim = Simulator(state, clock=clk, seed=seed)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sim.handle(request)

    http = httpx.Client(transport=httpx.MockTransport(handler), timeout=timeout)
    client = HashKeyClient("http://sim.local", http, clock=clk, limiter=LocalRateLimiter(RateLimits(), clk))
    profiles = {name: profile(name) for name in PROFILES}
    executor = StepExecutor(
        engine, clients=lambda name: (client, profiles[name]), clock=clk,
        settings=settings or ExecutionSettings(), policy=policy, audit=audit, owner="worker:test",
    )
    return World(engine, clk, sim, client, executor, seen, profiles)
