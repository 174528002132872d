"""Client-side rate limiting and the halt switches (429 suspension, 418 ban).

One budget per (API key, rate class), counted in endpoint weights over a sliding window:
no window of that length ever holds more weight than the budget, so callers never exceed
the exchange's limit. ``acquire`` waits (through the injected clock) for room, and refuses
with :class:`~treasury.errors.ExchangeHalted` instead of sending while the key is suspended
or the host is banned.

A request keeps its place in the window from the moment it is admitted until one window
after its *answer*, not after its sending. The exchange counts a request when it arrives,
which is somewhere between the two, so this holds however late a request arrives: for any
window of the exchange's, every request counted in it was still holding its place when the
last of them was admitted, hence they fit in one budget. A request that gets no answer (a
timeout, a dropped connection) may still arrive: it holds its place for ``inflight``
seconds, the HTTP timeout plus recvWindow, after which the exchange refuses it anyway.

Two implementations share the arithmetic in :class:`Budget`:

- :class:`LocalRateLimiter`: in-process and thread-safe (embedded mode, tests);
- :class:`RedisRateLimiter`: one atomic Lua script shared by every worker process, timed by
  Redis ``TIME``; suspensions and the ban are Redis keys that every process sees.

Each API key's budget is independent: a sub-account's key never waits for another's. The
state of one key (its windows and its suspension) is kept and locked apart from every other
key's, in every implementation; only the host-wide ban is shared, and it is only read on the
way to a grant.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from treasury.clock import Clock
from treasury.errors import ExchangeHalted
from treasury.models import RateClass
from treasury.settings import RateLimits

# Holding places until the answer covers late arrivals; the margin only covers the exchange
# and us measuring a second slightly differently.
DEFAULT_MARGIN_SECONDS = 0.02
# How long a request without an answer holds its place (the default HTTP timeout + recvWindow).
DEFAULT_INFLIGHT_SECONDS = 15.0
# While the room a caller waits for is held by requests still awaiting their answer, it looks
# again this often (an answer frees room at once; its time cannot be known in advance).
INFLIGHT_POLL_SECONDS = 0.01

RESUME_HINT = "a person must run `treasury resume-exchange --as USER`"


class RateLimiter(Protocol):
    """What the client needs from a limiter; every worker of a fleet must share one."""

    def acquire(self, api_key: str, rate_class: RateClass, weight: int = 1) -> str | None:
        """Wait until ``weight`` fits in the key's budget for ``rate_class``, then take it.

        Returns a ticket for :meth:`answered` (None if the limiter keeps no per-request place).

        Raises:
            ExchangeHalted: the key is suspended or the host is banned; nothing may be sent.
        """

    def answered(self, api_key: str, rate_class: RateClass, ticket: str | None) -> None:
        """The request of ``ticket`` got an answer (or was never sent): its place now ends one
        window from now instead of when an unanswered request could no longer arrive."""

    def suspend(self, api_key: str, seconds: float, reason: str) -> None:
        """Stop all traffic on ``api_key`` for ``seconds`` (after a 429)."""

    def ban(self, reason: str) -> None:
        """Stop all traffic from this host until :meth:`resume` (after a 418)."""

    def resume(self, by: str) -> None:
        """Lift the host-wide ban; ``by`` names the person."""

    def halted(self, api_key: str) -> str | None:
        """Why ``api_key`` may not send right now, or None."""


def halted_error(reason: str) -> ExchangeHalted:
    """The refusal raised instead of sending; ``.reason`` keeps the plain reason for re-raising."""
    exc = ExchangeHalted(f"exchange traffic halted: {reason}; nothing was sent")
    exc.reason = reason  # type: ignore[attr-defined]
    return exc


@dataclass(frozen=True)
class Budget:
    """The budget of one rate class: at most ``capacity`` weight in any ``window`` seconds."""

    capacity: int
    window: float

    @classmethod
    def for_rate(cls, per_second: float, margin: float = DEFAULT_MARGIN_SECONDS) -> Budget:
        """Budget for ``per_second`` requests of weight 1.

        Rates below 1/s get a longer window holding one unit (0.5/s: 1 per 2 s); fractional
        rates above 1 round down, so the budget never exceeds the configured rate.
        """
        if per_second <= 0:
            raise ValueError("a rate must be positive")
        window = max(1.0, 1.0 / per_second)
        capacity = max(1, math.floor(per_second * window + 1e-9))
        return cls(capacity=capacity, window=window + margin)

    def cost(self, weight: int) -> int:
        """Weight counted for one request. A request heavier than the whole budget (balances,
        weight 5, against a 2/s query budget) waits for an empty window and fills it."""
        if weight < 1:
            raise ValueError("weight must be at least 1")
        return min(weight, self.capacity)


def budgets(limits: RateLimits, margin: float | None = None) -> dict[RateClass, Budget]:
    """One :class:`Budget` per rate class from the settings (margin: the settings' unless given)."""
    if margin is None:
        margin = limits.margin_seconds
    return {
        RateClass.QUERY: Budget.for_rate(limits.query, margin),
        RateClass.ORDER: Budget.for_rate(limits.order, margin),
        RateClass.TRANSFER: Budget.for_rate(limits.transfer, margin),
    }


def take(entries: list[list[Any]], now: float, cost: int, budget: Budget, *, ticket: str = "",
         inflight: float = 0.0) -> float:
    """One sliding-window step over ``entries`` (``[time, cost, ticket]``, edited in place).

    An entry's time is when its request was answered, or, while it awaits its answer, the
    latest moment it could still arrive (admission + ``inflight``). Drops entries older than
    the window, then takes ``cost`` under ``ticket`` and returns 0 if it fits, or returns the
    seconds to wait before trying again.
    """
    horizon = now - budget.window
    entries[:] = sorted((e for e in entries if float(e[0]) > horizon), key=lambda e: float(e[0]))
    used = sum(int(e[1]) for e in entries)
    if used + cost <= budget.capacity:
        entries.append([now + inflight, cost, ticket])
        return 0.0
    need = used + cost - budget.capacity
    freed = 0
    for entry in entries:
        freed += int(entry[1])
        if freed >= need:
            at = float(entry[0])
            if at > now:  # still awaiting its answer, which frees it early
                return INFLIGHT_POLL_SECONDS
            return max(at + budget.window - now, 1e-6)
    return budget.window  # pragma: no cover - cost <= capacity guarantees a return above


def settle(entries: list[list[Any]], now: float, ticket: str | None) -> None:
    """The request of ``ticket`` was answered at ``now``: its place ends a window from now."""
    if not ticket:
        return
    for entry in entries:
        if len(entry) > 2 and entry[2] == ticket and float(entry[0]) > now:
            entry[0] = now


@dataclass
class LimiterState:
    """Everything a limiter remembers: windows per "class|api key", suspensions, the ban."""

    windows: dict[str, list[list[Any]]] = field(default_factory=dict)  # [time, cost, ticket]
    suspended: dict[str, list[Any]] = field(default_factory=dict)  # api key -> [until, reason]
    ban: str | None = None

    def halt_reason(self, api_key: str, now: float) -> str | None:
        if self.ban is not None:
            return f"host banned ({self.ban}); {RESUME_HINT}"
        entry = self.suspended.get(api_key)
        if entry is not None:
            until, reason = float(entry[0]), str(entry[1])
            if now < until:
                return f"key suspended for another {until - now:.1f} s ({reason})"
            del self.suspended[api_key]
        return None


class StateLimiter:
    """The limiter logic over a :class:`LimiterState` that subclasses keep somewhere.

    Subclasses provide ``_state(api_key)`` and ``_now()`` (the time base of that state).
    ``_state(api_key)`` is a context manager giving exclusive, saved access to that key's
    windows and suspension, with the current ban to read; keys never share its lock, so
    different keys are never serialised. ``_state(None)`` gives the host-wide state, where
    only the ban is kept (and written).
    """

    def __init__(self, limits: RateLimits, clock: Clock, *, margin: float | None = None,
                 inflight: float = DEFAULT_INFLIGHT_SECONDS) -> None:
        self.limits = limits
        self.clock = clock
        self.inflight = inflight
        self._budgets = budgets(limits, margin)

    def _state(self, api_key: str | None) -> AbstractContextManager[LimiterState]:
        raise NotImplementedError

    def _now(self) -> float:
        raise NotImplementedError

    def budget(self, rate_class: RateClass) -> Budget:
        return self._budgets[rate_class]

    def acquire(self, api_key: str, rate_class: RateClass, weight: int = 1) -> str | None:
        """See :meth:`RateLimiter.acquire`.

        Raises:
            ExchangeHalted: suspended key or banned host (checked again after every wait).
        """
        rc = RateClass(rate_class)
        budget = self._budgets[rc]
        cost = budget.cost(weight)
        ticket = uuid.uuid4().hex
        while True:
            with self._state(api_key) as state:
                now = self._now()
                reason = state.halt_reason(api_key, now)
                if reason is not None:
                    raise halted_error(reason)
                wait = take(state.windows.setdefault(f"{rc.value}|{api_key}", []), now, cost, budget,
                            ticket=ticket, inflight=self.inflight)
            if wait <= 0:
                return ticket
            self.clock.sleep(wait)  # outside the lock, so other keys and classes keep moving

    def answered(self, api_key: str, rate_class: RateClass, ticket: str | None) -> None:
        if not ticket:
            return
        with self._state(api_key) as state:
            settle(state.windows.get(f"{RateClass(rate_class).value}|{api_key}", []), self._now(), ticket)

    def suspend(self, api_key: str, seconds: float, reason: str) -> None:
        with self._state(api_key) as state:
            until = self._now() + seconds
            current = state.suspended.get(api_key)
            if current is None or float(current[0]) < until:  # never shorten a suspension
                state.suspended[api_key] = [until, reason]

    def ban(self, reason: str) -> None:
        with self._state(None) as state:
            state.ban = reason

    def resume(self, by: str) -> None:
        with self._state(None) as state:
            state.ban = None

    def halted(self, api_key: str) -> str | None:
        with self._state(api_key) as state:
            return state.halt_reason(api_key, self._now())


class LocalRateLimiter(StateLimiter):
    """In-process limiter: thread-safe, timed by ``clock.monotonic``, waits with ``clock.sleep``.

    Suspensions end by themselves; a ban lasts until :meth:`resume`. Nothing is shared with
    other processes: see :class:`~treasury.exchange.hostlimit.HostRateLimiter` (one host) and
    :class:`RedisRateLimiter` (a fleet).
    """

    def __init__(self, limits: RateLimits, clock: Clock, *, margin: float | None = None,
                 inflight: float = DEFAULT_INFLIGHT_SECONDS) -> None:
        super().__init__(limits, clock, margin=margin, inflight=inflight)
        self._host = LimiterState()  # the ban
        self._host_lock = threading.Lock()
        self._keys: dict[str, tuple[threading.Lock, LimiterState]] = {}
        self._keys_lock = threading.Lock()  # only to add a key's entry, never held while counting

    def _entry(self, api_key: str) -> tuple[threading.Lock, LimiterState]:
        entry = self._keys.get(api_key)
        if entry is None:
            with self._keys_lock:
                entry = self._keys.setdefault(api_key, (threading.Lock(), LimiterState()))
        return entry

    @contextmanager
    def _state(self, api_key: str | None) -> Iterator[LimiterState]:
        if api_key is None:
            with self._host_lock:
                yield self._host
            return
        lock, state = self._entry(api_key)
        with lock:
            state.ban = self._host.ban  # a read of one reference: no lock shared between keys
            yield state

    def _now(self) -> float:
        return self.clock.monotonic()


# --------------------------------------------------------------------------- shared (Redis)

# KEYS: 1 window (sorted set), 2 the key's suspension, 3 the host ban.
# ARGV: 1 capacity, 2 window in microseconds, 3 cost, 4 a unique member id, 5 in-flight hold
# in microseconds, 6 poll in microseconds. A member's score is when its request was answered,
# or admission + hold while it awaits the answer (see the module's docstring).
# Returns {1, member} granted, {0, wait_us} no room yet, {-1, reason} banned,
# {-2, reason, remaining_ms} suspended. Time is Redis TIME, so worker clocks do not matter.
_ACQUIRE_LUA = """
local ban = redis.call('GET', KEYS[3])
if ban then return {-1, ban} end
local susp = redis.call('GET', KEYS[2])
if susp then return {-2, susp, redis.call('PTTL', KEYS[2])} end
local capacity = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do
  used = used + tonumber(string.match(entries[i], ':(%d+)$'))
end
local hold = tonumber(ARGV[5])
if used + cost <= capacity then
  local member = ARGV[4] .. ':' .. cost
  redis.call('ZADD', KEYS[1], now + hold, member)
  redis.call('PEXPIRE', KEYS[1], math.ceil((window + hold) / 1000) + 1000)
  return {1, member}
end
local need = used + cost - capacity
local freed = 0
for i = 1, #entries, 2 do
  freed = freed + tonumber(string.match(entries[i], ':(%d+)$'))
  if freed >= need then
    local at = tonumber(entries[i + 1])
    if at > now then return {0, tonumber(ARGV[6])} end
    return {0, math.max(1, at + window - now)}
  end
end
return {0, window}
"""

# KEYS: 1 window. ARGV: 1 member. Its request was answered: its place ends a window from now
# (only ever earlier than the hold it had; a member already gone stays gone).
_ANSWERED_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > now then
  redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
end
return 1
"""

# KEYS: 1 the suspension. ARGV: 1 reason, 2 milliseconds. Never shortens a longer suspension.
_SUSPEND_LUA = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisRateLimiter:
    """The fleet-wide limiter: budgets, suspensions and the ban live in Redis.

    Every worker process that builds one over the same Redis and ``namespace`` shares the
    budgets; the check-and-take is a single Lua script, so it is atomic across processes.
    ``clock`` only serves to wait.
    """

    def __init__(
        self,
        redis: Any,
        limits: RateLimits,
        clock: Clock,
        namespace: str = "treasury",
        *,
        margin: float | None = None,
        inflight: float = DEFAULT_INFLIGHT_SECONDS,
    ) -> None:
        self.redis = redis
        self.limits = limits
        self.clock = clock
        self.namespace = namespace
        self.inflight = inflight
        self._budgets = budgets(limits, margin)
        self._acquire = redis.register_script(_ACQUIRE_LUA)
        self._answered = redis.register_script(_ANSWERED_LUA)
        self._suspend = redis.register_script(_SUSPEND_LUA)

    def budget(self, rate_class: RateClass) -> Budget:
        return self._budgets[rate_class]

    def _window_key(self, api_key: str, rate_class: RateClass) -> str:
        return f"{self.namespace}:rl:{rate_class.value}:{api_key}"

    def _suspend_key(self, api_key: str) -> str:
        return f"{self.namespace}:suspended:{api_key}"

    @property
    def ban_key(self) -> str:
        return f"{self.namespace}:banned"

    def acquire(self, api_key: str, rate_class: RateClass, weight: int = 1) -> str | None:
        """See :meth:`RateLimiter.acquire`.

        Raises:
            ExchangeHalted: suspended key or banned host (checked atomically with the take).
        """
        rc = RateClass(rate_class)
        budget = self._budgets[rc]
        cost = budget.cost(weight)
        keys = [self._window_key(api_key, rc), self._suspend_key(api_key), self.ban_key]
        window_us = int(budget.window * 1_000_000)
        args = [budget.capacity, window_us, cost, uuid.uuid4().hex, int(self.inflight * 1_000_000),
                int(INFLIGHT_POLL_SECONDS * 1_000_000)]
        while True:
            result = self._acquire(keys=keys, args=args)
            status = int(result[0])
            if status == 1:
                return _text(result[1])
            if status == -1:
                raise halted_error(f"host banned ({_text(result[1])}); {RESUME_HINT}")
            if status == -2:
                remaining = max(0, int(result[2])) / 1000
                raise halted_error(f"key suspended for another {remaining:.1f} s ({_text(result[1])})")
            self.clock.sleep(int(result[1]) / 1_000_000)

    def answered(self, api_key: str, rate_class: RateClass, ticket: str | None) -> None:
        if ticket:
            self._answered(keys=[self._window_key(api_key, RateClass(rate_class))], args=[ticket])

    def suspend(self, api_key: str, seconds: float, reason: str) -> None:
        ms = max(1, int(seconds * 1000))
        self._suspend(keys=[self._suspend_key(api_key)], args=[reason, ms])

    def ban(self, reason: str) -> None:
        self.redis.set(self.ban_key, reason)

    def resume(self, by: str) -> None:
        self.redis.delete(self.ban_key)

    def halted(self, api_key: str) -> str | None:
        pipe = self.redis.pipeline()
        pipe.get(self.ban_key)
        pipe.get(self._suspend_key(api_key))
        pipe.pttl(self._suspend_key(api_key))
        ban, susp, ttl = pipe.execute()
        if ban is not None:
            return f"host banned ({_text(ban)}); {RESUME_HINT}"
        if susp is not None:
            return f"key suspended for another {max(0, int(ttl)) / 1000:.1f} s ({_text(susp)})"
        return None
