"""Talking to HashKey PRO: pure signing, the client, the one response mapping, rate limits."""

from treasury.exchange.client import ExchangeResponse, HashKeyClient
from treasury.exchange.halts import HaltGuard
from treasury.exchange.hostlimit import HostRateLimiter
from treasury.exchange.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter

__all__ = [
    "ExchangeResponse",
    "HaltGuard",
    "HashKeyClient",
    "HostRateLimiter",
    "LocalRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
]
