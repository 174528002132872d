"""A worker process for the fleet test: one client, the shared Redis limiter, orders in a loop.

Lives in its own module so ``multiprocessing`` (spawn) can import it.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import redis
from pydantic import SecretStr

from treasury.clock import SystemClock
from treasury.errors import Banned, ExchangeError, ExchangeHalted, RateLimited
from treasury.exchange import HashKeyClient, RedisRateLimiter
from treasury.keys import KeyProfile
from treasury.models import Permission
from treasury.settings import RateLimits


def run(base_url: str, redis_url: str, namespace: str, limits: dict[str, float], worker: int,
        barrier: Any, stop: Any, results: Any) -> None:
    """Place resting limit orders as fast as the shared limiter allows until ``stop`` is set."""
    clock = SystemClock()
    rate_limits = RateLimits(**limits)
    limiter = RedisRateLimiter(redis.Redis.from_url(redis_url), rate_limits, clock, namespace)
    http = httpx.Client(timeout=5)
    client = HashKeyClient(base_url, http, clock=clock, limiter=limiter,
                           suspension_seconds=rate_limits.suspension_seconds)
    profile = KeyProfile(name="trading", api_key="demo-trade", secret=SecretStr("demo-trade-secret"),
                         permissions=frozenset({Permission.READ, Permission.TRADE}))
    counts: Counter[str] = Counter()
    barrier.wait()
    i = 0
    while not stop.is_set():
        i += 1
        try:
            client.call("spot_order", profile, {
                "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "1000", "quantity": "0.001",
                "newClientOrderId": f"w{worker}n{i}",
            })
            counts["ok"] += 1
        except (RateLimited, Banned) as exc:
            counts[type(exc).__name__] += 1
        except ExchangeHalted:
            counts["halted"] += 1
            time.sleep(0.02)
        except ExchangeError as exc:
            counts[type(exc).__name__] += 1
    http.close()
    results.put((worker, dict(counts)))
