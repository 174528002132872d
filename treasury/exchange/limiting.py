"""Rate limits and halts around the transport: an ``httpx.BaseTransport`` wrapper.

A request that carries a :class:`RateSlot` in ``request.extensions[RATE_EXTENSION]`` takes
its place from the limiter before a byte is written, gives it back once answered (or when it
surely never left), and turns a 429 (or a rate-limit code) into a suspension of the key and a
418 into a host-wide ban. While the key is suspended or the host banned, the request is
refused with ``ExchangeHalted`` and the inner transport is never called.

Whether an answer means "rate limited" or "banned" is read from the one response mapping,
:func:`treasury.exchange.responses.interpret`, so the two never disagree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from treasury.clock import Clock
from treasury.errors import Banned, ExchangeError, ExchangeHalted, RateLimited
from treasury.exchange.ratelimit import RateLimiter
from treasury.exchange.responses import interpret, was_sent
from treasury.models import RateClass
from treasury.observe import metrics

log = logging.getLogger("treasury.exchange")

RATE_EXTENSION = "treasury.rate"
"""``request.extensions`` key holding the request's :class:`RateSlot`."""


@dataclass(frozen=True)
class RateSlot:
    """What the limiter needs to know about one request."""

    api_key: str
    rate_class: RateClass
    weight: int
    operation: str
    client_id: str | None = None


class LimitingTransport(httpx.BaseTransport):
    """Wraps ``inner`` with the shared limiter and the exchange halts.

    Args:
        inner: the transport that sends (``httpx.HTTPTransport`` or ``httpx.MockTransport``).
        limiter: the shared limiter (a ``HaltGuard`` also makes halts durable and audited).
        clock: measures the wait for metrics.
        suspension_seconds: how long a 429 suspends the key.
    """

    def __init__(self, inner: httpx.BaseTransport, limiter: RateLimiter, *, clock: Clock,
                 suspension_seconds: float = 60.0) -> None:
        self.inner = inner
        self.limiter = limiter
        self.clock = clock
        self.suspension_seconds = suspension_seconds

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through ``inner`` once its rate slot (if any) is granted.

        Raises:
            ExchangeHalted: the key is suspended or the host banned; nothing was sent.
            httpx.HTTPError: from the inner transport.
        """
        slot = request.extensions.get(RATE_EXTENSION)
        if not isinstance(slot, RateSlot):
            return self.inner.handle_request(request)
        ticket = self._acquire(slot)
        try:
            response = self.inner.handle_request(request)
        except httpx.HTTPError as exc:
            if not was_sent(exc):
                self._answered(slot, ticket)
            raise  # a request that may still be on its way keeps its place
        self._answered(slot, ticket)
        self._halt_on(slot, response)
        return response

    def close(self) -> None:
        self.inner.close()

    def _acquire(self, slot: RateSlot) -> str | None:
        started = self.clock.monotonic()
        try:
            ticket = self.limiter.acquire(slot.api_key, slot.rate_class, slot.weight)
        except ExchangeHalted as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            raise ExchangeHalted(
                f"exchange traffic halted: {reason}; nothing was sent",
                operation=slot.operation, client_id=slot.client_id,
            ) from None
        metrics.rate_limit_granted(slot.api_key, slot.rate_class.value, slot.weight,
                                   self.clock.monotonic() - started)
        return ticket

    def _answered(self, slot: RateSlot, ticket: str | None) -> None:
        if ticket is None:
            return
        try:
            self.limiter.answered(slot.api_key, slot.rate_class, ticket)
        except Exception as exc:  # the place is only held longer; the answer must not be lost
            log.warning("rate-limit place not released early: %s: %s", type(exc).__name__, exc)

    def _halt_on(self, slot: RateSlot, response: httpx.Response) -> None:
        try:
            interpret(sent=True, status=response.status_code, body=response.read(),
                      operation=slot.operation, client_id=slot.client_id)
        except RateLimited as exc:
            metrics.throttled(exc.status or 429, slot.api_key)
            what = f"HTTP {exc.status}" + (f" code {exc.code}" if exc.code else "")
            self.limiter.suspend(slot.api_key, self.suspension_seconds, f"{what} on {slot.operation}")
        except Banned as exc:
            metrics.throttled(exc.status or 418, slot.api_key)
            self.limiter.ban(f"HTTP {exc.status} on {slot.operation}")
        except ExchangeError:
            pass  # any other error is the client's to raise; only halts are decided here
