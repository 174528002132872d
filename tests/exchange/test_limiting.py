"""``LimitingTransport`` alone: the limiter and the halts around an ``httpx.MockTransport``."""

from __future__ import annotations

import httpx
import pytest

from treasury.clock import ManualClock
from treasury.errors import ExchangeHalted
from treasury.exchange.limiting import RATE_EXTENSION, LimitingTransport, RateSlot
from treasury.exchange.ratelimit import LocalRateLimiter
from treasury.models import RateClass
from treasury.settings import RateLimits


class RecordingLimiter:
    """Delegates to a real local limiter and records every call."""

    def __init__(self, clock: ManualClock) -> None:
        self.inner = LocalRateLimiter(RateLimits(), clock)
        self.calls: list[tuple[object, ...]] = []

    def acquire(self, api_key: str, rate_class: RateClass, weight: int = 1) -> str | None:
        self.calls.append(("acquire", api_key, rate_class, weight))
        return self.inner.acquire(api_key, rate_class, weight)

    def answered(self, api_key: str, rate_class: RateClass, ticket: str | None) -> None:
        self.calls.append(("answered", api_key, rate_class))
        self.inner.answered(api_key, rate_class, ticket)

    def suspend(self, api_key: str, seconds: float, reason: str) -> None:
        self.calls.append(("suspend", api_key, seconds, reason))
        self.inner.suspend(api_key, seconds, reason)

    def ban(self, reason: str) -> None:
        self.calls.append(("ban", reason))
        self.inner.ban(reason)

    def resume(self, by: str) -> None:
        self.inner.resume(by)

    def halted(self, api_key: str) -> str | None:
        return self.inner.halted(api_key)


SLOT = RateSlot("key-1", RateClass.ORDER, 5, "batch_orders", "cid-1")


def _setup(status: int = 200, body: bytes = b"{}") -> tuple[httpx.Client, RecordingLimiter, list[httpx.Request]]:
    clock = ManualClock()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, content=body)

    limiter = RecordingLimiter(clock)
    transport = LimitingTransport(httpx.MockTransport(handler), limiter, clock=clock, suspension_seconds=60)
    return httpx.Client(transport=transport), limiter, seen


def _send(http: httpx.Client, slot: RateSlot | None = SLOT) -> httpx.Response:
    extensions = {RATE_EXTENSION: slot} if slot is not None else {}
    return http.send(http.build_request("POST", "https://exchange.test/x", extensions=extensions))


def test_the_slot_class_and_weight_are_acquired_and_released_once_answered() -> None:
    http, limiter, seen = _setup()
    assert _send(http).status_code == 200
    assert limiter.calls == [("acquire", "key-1", RateClass.ORDER, 5), ("answered", "key-1", RateClass.ORDER)]
    assert len(seen) == 1


def test_a_halted_key_sends_nothing() -> None:
    http, limiter, seen = _setup()
    limiter.inner.suspend("key-1", 60, "HTTP 429 on spot_order")
    with pytest.raises(ExchangeHalted, match="nothing was sent") as caught:
        _send(http)
    assert seen == []
    assert caught.value.operation == "batch_orders" and caught.value.client_id == "cid-1"


def test_a_banned_host_sends_nothing_even_on_another_key() -> None:
    http, limiter, seen = _setup()
    limiter.inner.ban("HTTP 418 on balances")
    with pytest.raises(ExchangeHalted):
        _send(http, RateSlot("key-2", RateClass.QUERY, 1, "balances"))
    assert seen == []


def test_a_429_suspends_the_key_and_the_next_request_is_refused() -> None:
    http, limiter, seen = _setup(429, b'{"code": "-3145", "msg": "too many"}')
    assert _send(http).status_code == 429  # the answer itself is the client's to map
    assert ("suspend", "key-1", 60, "HTTP 429 code -3145 on batch_orders") in limiter.calls
    with pytest.raises(ExchangeHalted):
        _send(http)
    assert len(seen) == 1


def test_a_418_bans_the_host() -> None:
    http, limiter, _ = _setup(418, b"{}")
    _send(http)
    assert ("ban", "HTTP 418 on batch_orders") in limiter.calls
    assert limiter.halted("another-key") is not None


def test_a_request_without_a_slot_passes_straight_through() -> None:
    http, limiter, seen = _setup()
    _send(http, None)
    assert limiter.calls == [] and len(seen) == 1
