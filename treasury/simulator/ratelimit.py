"""Rate limits per (API key, rate class), key suspension after a 429, and source bans (418).

Model (documented in docs/simulator.md):

* Each (api_key, class) has a sliding window of ``window_seconds``. A request is admitted when
  the weight already used inside the window is **below** the class limit; its full weight is
  then recorded. So a weight-5 balance read passes a 2/s query budget when the window is
  empty, and then blocks that key's queries until it slides out.
* A refused request answers 429 ``{"code": "0003"}`` (it adds no weight) and suspends the key
  for ``suspension_seconds``.
* Any request from a suspended key answers 418 and bans its *source* (client host; in-process
  calls share the source ``127.0.0.1``) for ``ban_seconds``. During a ban every request from
  that source answers 418, public endpoints included.

Time comes from the simulator clock, so tests move it instead of sleeping.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from treasury.simulator.ledger import TimeSource
from treasury.simulator.protocol import ApiError
from treasury.simulator.state import SimulatorConfig


class RateLimiter:
    def __init__(self, cfg: SimulatorConfig, clock: TimeSource) -> None:
        self._cfg = cfg
        self._clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._windows: dict[tuple[str, str], deque[tuple[float, int]]] = {}
            self._suspended: dict[str, float] = {}
            self._banned: dict[str, float] = {}

    def _ms(self, t: float) -> int:
        return int(t * 1000)

    def check_ban(self, source: str) -> None:
        """Raises ApiError 418 while ``source`` is banned."""
        settings = self._cfg.settings.rate_limits
        if not settings.enabled:
            return
        now = self._clock.time()
        with self._lock:
            until = self._banned.get(source)
            if until is not None and now < until:
                raise ApiError("0003", f"Too many requests after a 429; IP banned until {self._ms(until)}", 418)

    def admit(self, api_key: str, rate_class: str, weight: int, source: str) -> None:
        """Count one request of ``weight`` for (api_key, rate_class) or refuse it.

        Raises:
            ApiError: 418 when the key is suspended (and bans ``source``); 429 when over the limit
                (and suspends the key).
        """
        settings = self._cfg.settings.rate_limits
        if not settings.enabled:
            return
        now = self._clock.time()
        with self._lock:
            until = self._suspended.get(api_key)
            if until is not None and now < until:
                ban_until = now + settings.ban_seconds
                self._banned[source] = ban_until
                raise ApiError(
                    "0003",
                    f"Request sent during a rate-limit suspension; IP banned until {self._ms(ban_until)}",
                    418,
                )
            window = self._windows.setdefault((api_key, rate_class), deque())
            while window and window[0][0] <= now - settings.window_seconds:
                window.popleft()
            used = sum(w for _, w in window)
            if used >= settings.limit(rate_class):
                suspend_until = now + settings.suspension_seconds
                self._suspended[api_key] = suspend_until
                raise ApiError(
                    "0003",
                    f"Rate limit exceeded: {rate_class} limit {settings.limit(rate_class)} per "
                    f"{settings.window_seconds:g}s; key suspended until {self._ms(suspend_until)}",
                    429,
                )
            window.append((now, weight))

    def state(self) -> dict[str, Any]:
        now = self._clock.time()
        with self._lock:
            return {
                "enabled": self._cfg.settings.rate_limits.enabled,
                "suspended": {k: self._ms(t) for k, t in self._suspended.items() if t > now},
                "banned": {s: self._ms(t) for s, t in self._banned.items() if t > now},
            }
