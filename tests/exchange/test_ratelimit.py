"""Rate limiters: the sliding-window budget never exceeded (weights included), halts refuse
instead of sending, and the Redis limiter shares all of it between limiter instances."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from treasury.clock import ManualClock, SystemClock
from treasury.errors import ExchangeHalted
from treasury.exchange.hostlimit import HostRateLimiter
from treasury.exchange.ratelimit import Budget, LocalRateLimiter, RedisRateLimiter
from treasury.models import RateClass
from treasury.settings import RateLimits


def send(limiter: Any, key: str, rate_class: RateClass, weight: int = 1) -> None:
    """A request answered at once: admitted, then its answer reported."""
    limiter.answered(key, rate_class, limiter.acquire(key, rate_class, weight))


def max_in_window(grants: list[tuple[float, int]], window: float) -> int:
    """The largest total cost found in any half-open window (t - window, t]."""
    worst = 0
    for t, _ in grants:
        worst = max(worst, sum(c for u, c in grants if t - window < u <= t))
    return worst


# ------------------------------------------------------------------ budgets


@pytest.mark.parametrize(
    ("rate", "capacity", "window"),
    [(2, 2, 1.0), (10, 10, 1.0), (1, 1, 1.0), (2.5, 2, 1.0), (0.5, 1, 2.0), (0.25, 1, 4.0)],
)
def test_budget_never_exceeds_the_rate(rate: float, capacity: int, window: float) -> None:
    budget = Budget.for_rate(rate, margin=0)
    assert (budget.capacity, budget.window) == (capacity, window)
    assert budget.capacity / budget.window <= rate


def test_heavy_requests_cost_the_whole_budget_at_most() -> None:
    budget = Budget.for_rate(2)
    assert budget.cost(1) == 1 and budget.cost(5) == 2
    with pytest.raises(ValueError):
        budget.cost(0)


# ------------------------------------------------------------------ local limiter


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.sampled_from([1, 1, 1, 2, 3, 5]), min_size=1, max_size=60),
    gaps=st.lists(st.sampled_from([0.0, 0.0, 0.01, 0.3, 1.2]), min_size=60, max_size=60),
    rate=st.sampled_from([1, 2, 10]),
)
def test_local_limiter_never_exceeds_the_limit(weights: list[int], gaps: list[float], rate: int) -> None:
    clock = ManualClock()
    limiter = LocalRateLimiter(RateLimits(order=rate), clock)
    grants: list[tuple[float, int]] = []
    for weight, gap in zip(weights, gaps, strict=False):
        clock.advance(gap)
        send(limiter, "k", RateClass.ORDER, weight)
        grants.append((clock.monotonic(), min(weight, rate)))
    assert max_in_window(grants, 1.0) <= rate
    assert max_in_window(grants, 1.02) <= rate  # the safety margin is real, too


def test_local_limiter_waits_through_the_clock_and_keeps_keys_apart() -> None:
    clock = ManualClock()
    limiter = LocalRateLimiter(RateLimits(query=2), clock)
    for _ in range(2):
        send(limiter, "a", RateClass.QUERY)
    send(limiter, "b", RateClass.QUERY)  # another key: no wait
    send(limiter, "a", RateClass.ORDER)  # another class: no wait
    assert clock.sleeps == []
    send(limiter, "a", RateClass.QUERY)
    assert clock.sleeps == [pytest.approx(1.02)]


def test_local_suspension_refuses_then_expires() -> None:
    clock = ManualClock()
    limiter = LocalRateLimiter(RateLimits(), clock)
    limiter.suspend("a", 60, "HTTP 429 on balances")
    limiter.suspend("a", 5, "shorter one")  # never shortens a suspension
    with pytest.raises(ExchangeHalted, match="suspended"):
        limiter.acquire("a", RateClass.QUERY)
    limiter.acquire("b", RateClass.QUERY)
    clock.advance(59)
    assert "HTTP 429" in (limiter.halted("a") or "")
    clock.advance(1)
    assert limiter.halted("a") is None
    limiter.acquire("a", RateClass.QUERY)


def test_local_ban_lasts_until_resumed() -> None:
    clock = ManualClock()
    limiter = LocalRateLimiter(RateLimits(), clock)
    limiter.ban("HTTP 418 on withdraw")
    clock.advance(86_400)
    for key in ("a", "b"):
        with pytest.raises(ExchangeHalted, match="resume-exchange"):
            limiter.acquire(key, RateClass.ORDER)
    limiter.resume("alice")
    limiter.acquire("a", RateClass.ORDER)


def test_halt_checked_again_after_waiting() -> None:
    clock = ManualClock()
    limiter = LocalRateLimiter(RateLimits(query=1), clock)
    limiter.acquire("a", RateClass.QUERY)
    original_sleep = clock.sleep

    def sleep_and_get_banned(seconds: float) -> None:
        original_sleep(seconds)
        limiter.ban("418 seen by another thread")

    clock.sleep = sleep_and_get_banned  # type: ignore[method-assign]
    with pytest.raises(ExchangeHalted):
        limiter.acquire("a", RateClass.QUERY)


# ------------------------------------------------------------------ Redis limiter (real Redis, real time)


@pytest.fixture
def rdb(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_redis_limiter_never_exceeds_the_limit(rdb: redis.Redis) -> None:
    a = RedisRateLimiter(rdb, RateLimits(order=20), SystemClock(), "t1")
    b = RedisRateLimiter(rdb, RateLimits(order=20), SystemClock(), "t1")  # a second "process"
    grants: list[tuple[float, int]] = []
    start = time.monotonic()
    for i in range(22):
        weight = 2 if i % 10 == 0 else 1
        send(a if i % 2 else b, "k", RateClass.ORDER, weight)
        grants.append((time.monotonic(), weight))
    assert max_in_window(grants, 1.0) <= 20
    assert time.monotonic() - start >= 1.0  # 25 units at 20 per 1.02 s needed a wait


def test_redis_halts_are_shared(rdb: redis.Redis) -> None:
    a = RedisRateLimiter(rdb, RateLimits(), SystemClock(), "t2")
    b = RedisRateLimiter(rdb, RateLimits(), SystemClock(), "t2")
    other_ns = RedisRateLimiter(rdb, RateLimits(), SystemClock(), "elsewhere")
    a.suspend("k", 30, "HTTP 429 on spot_order")
    a.suspend("k", 1, "shorter")  # never shortens
    with pytest.raises(ExchangeHalted, match="suspended"):
        b.acquire("k", RateClass.ORDER)
    assert "HTTP 429 on spot_order" in (b.halted("k") or "")
    assert 29 <= rdb.pttl("t2:suspended:k") / 1000 <= 30
    b.acquire("other", RateClass.ORDER)
    other_ns.acquire("k", RateClass.ORDER)

    a.ban("HTTP 418 on withdraw")
    with pytest.raises(ExchangeHalted, match="banned"):
        b.acquire("other", RateClass.QUERY)
    assert rdb.ttl("t2:banned") == -1  # no expiry: a person resumes
    b.resume("alice")
    a.acquire("other", RateClass.QUERY)
    assert a.halted("other") is None


def test_redis_suspension_expires_by_itself(rdb: redis.Redis) -> None:
    a = RedisRateLimiter(rdb, RateLimits(), SystemClock(), "t3")
    a.suspend("k", 0.2, "short")
    with pytest.raises(ExchangeHalted):
        a.acquire("k", RateClass.QUERY)
    time.sleep(0.25)
    a.acquire("k", RateClass.QUERY)


# ------------------------------------------------------------------ host limiter (a file shared by processes)


def test_host_limiter_shares_budget_and_halts_between_instances(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "limits.json"
    first = HostRateLimiter(RateLimits(query=2), clock, path)
    second = HostRateLimiter(RateLimits(query=2), clock, path)  # the next CLI invocation
    send(first, "k", RateClass.QUERY, 5)  # a balances read fills the window
    send(second, "k", RateClass.QUERY)
    assert clock.sleeps == [pytest.approx(1.02)]
    first.suspend("k", 60, "HTTP 429 on balances")
    with pytest.raises(ExchangeHalted, match="suspended"):
        second.acquire("k", RateClass.QUERY)
    second.ban("HTTP 418")
    with pytest.raises(ExchangeHalted, match="banned"):
        first.acquire("other", RateClass.ORDER)
    first.resume("alice")
    second.acquire("other", RateClass.ORDER)
    assert path.stat().st_mode & 0o777 == 0o600


def test_host_limiter_survives_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "limits.json"
    path.write_text("{not json")
    limiter = HostRateLimiter(RateLimits(), ManualClock(), path)
    limiter.acquire("k", RateClass.QUERY)
    assert json.loads(limiter.key_path("k").read_text())["windows"]["query|k"]  # the key's own file


def test_host_limiter_state_that_shrinks_leaves_no_old_tail(tmp_path: Path) -> None:
    # the state is written over the old text and then cut: a shorter one must not keep its end
    clock = ManualClock()
    limiter = HostRateLimiter(RateLimits(query=50), clock, tmp_path / "limits.json")
    for _ in range(10):
        send(limiter, "k", RateClass.QUERY)
    path = limiter.key_path("k")
    long = len(path.read_text())
    clock.advance(120)  # every entry has run out: the next write holds one
    send(limiter, "k", RateClass.QUERY)
    text = path.read_text()
    assert len(text) < long
    assert len(json.loads(text)["windows"]["query|k"]) == 1


def test_host_limiter_is_exclusive_under_concurrency(tmp_path: Path) -> None:
    path = tmp_path / "limits.json"
    grants: list[tuple[float, int]] = []
    lock = threading.Lock()

    def work() -> None:
        limiter = HostRateLimiter(RateLimits(order=100), SystemClock(), path, margin=0.02)
        for _ in range(40):
            send(limiter, "k", RateClass.ORDER)
            with lock:
                grants.append((time.monotonic(), 1))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(grants) == 120
    assert max_in_window(grants, 1.0) <= 100


def test_the_window_margin_is_a_setting() -> None:
    from treasury.exchange.ratelimit import budgets
    from treasury.settings import RateLimits

    assert budgets(RateLimits())[RateClass.ORDER].window == pytest.approx(1.02)
    assert budgets(RateLimits(margin_seconds=0.05))[RateClass.ORDER].window == pytest.approx(1.05)
    assert budgets(RateLimits(margin_seconds=0.05), 0.0)[RateClass.ORDER].window == pytest.approx(1.0)


# ------------------------------------------------------------------ places held until the answer


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.sampled_from([0.0, 0.0, 0.01, 0.05, 0.3]), min_size=40, max_size=40),
    latencies=st.lists(st.sampled_from([0.001, 0.002, 0.05, 0.5, 0.9]), min_size=40, max_size=40),
    fractions=st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=40, max_size=40),
    answered=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_late_arrivals_never_exceed_the_limit_at_the_exchange(
    gaps: list[float], latencies: list[float], fractions: list[float], answered: list[bool]
) -> None:
    """Requests run concurrently and reach the exchange anywhere between sending and answer (or,
    unanswered, up to the in-flight bound): the exchange never counts more than its limit."""
    clock = ManualClock()
    limiter = LocalRateLimiter(RateLimits(order=5), clock, margin=0.0, inflight=2.0)
    pending: list[tuple[float, str | None]] = []  # (answer time, ticket)

    def deliver_due() -> None:
        for due in sorted(p for p in pending if p[0] <= clock.monotonic()):
            pending.remove(due)
            limiter.answered("k", RateClass.ORDER, due[1])

    real_sleep = clock.sleep

    def sleep(seconds: float) -> None:  # answers keep arriving while a caller waits
        real_sleep(seconds)
        deliver_due()

    clock.sleep = sleep  # type: ignore[method-assign]
    arrivals: list[tuple[float, int]] = []
    for gap, latency, fraction, gets_answer in zip(gaps, latencies, fractions, answered, strict=True):
        clock.advance(gap)
        deliver_due()
        ticket = limiter.acquire("k", RateClass.ORDER)
        sent = clock.monotonic()
        if gets_answer:
            arrivals.append((sent + fraction * latency, 1))
            pending.append((sent + latency, ticket))
        else:  # timed out: it may still arrive until the in-flight bound
            arrivals.append((sent + fraction * 2.0, 1))
    assert max_in_window(arrivals, 1.0) <= 5


def test_an_unanswered_request_holds_its_place_and_an_answer_frees_it() -> None:
    clock = ManualClock()
    limiter = LocalRateLimiter(RateLimits(query=1), clock, margin=0.0, inflight=6.0)
    ticket = limiter.acquire("k", RateClass.QUERY)
    clock.advance(3)
    limiter.answered("k", RateClass.QUERY, ticket)  # answered 3 s after sending
    limiter.acquire("k", RateClass.QUERY)  # never answered
    assert clock.monotonic() == pytest.approx(4.0)  # one window after the answer, not the send
    start = clock.monotonic()
    limiter.acquire("k", RateClass.QUERY)
    assert clock.monotonic() - start == pytest.approx(7.0)  # the hold (6 s) plus a window


def test_redis_places_are_held_until_answered(rdb: redis.Redis) -> None:
    rdb.delete("t4:rl:order:k")
    limiter = RedisRateLimiter(rdb, RateLimits(), SystemClock(), "t4", inflight=30.0)
    now_us = lambda: int(rdb.time()[0]) * 1_000_000 + int(rdb.time()[1])  # noqa: E731
    ticket = limiter.acquire("k", RateClass.ORDER)
    assert ticket is not None
    held = rdb.zscore("t4:rl:order:k", ticket)
    assert held is not None and held - now_us() > 29_000_000  # held for the in-flight bound
    limiter.answered("k", RateClass.ORDER, ticket)
    answered_at = rdb.zscore("t4:rl:order:k", ticket)
    assert answered_at is not None and abs(answered_at - now_us()) < 1_000_000
    limiter.answered("k", RateClass.ORDER, ticket)  # twice: never later than it was
    assert rdb.zscore("t4:rl:order:k", ticket) == answered_at
    assert rdb.pttl("t4:rl:order:k") > 30_000  # the key outlives the longest hold


def test_host_limiter_reads_a_file_written_before_tickets(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "limits.json"
    full = {"windows": {"query|k": [[clock.time(), 2]]}, "suspended": {}, "ban": None}  # [time, cost]
    path.write_text(json.dumps(full))
    limiter = HostRateLimiter(RateLimits(query=2), clock, path)
    send(limiter, "k", RateClass.QUERY)
    assert clock.sleeps == [pytest.approx(1.02)]  # the old entry still counted
    saved = json.loads(limiter.key_path("k").read_text())["windows"]["query|k"]  # now in the key's own file
    assert [len(e) for e in saved] == [3]  # [time, cost, ticket]
