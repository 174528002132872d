"""Each API key's budget is independent: many sub-account keys get many full budgets in the
same window, and nothing one key holds (a wait, a file lock) holds up another key."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from treasury.clock import ManualClock
from treasury.exchange.hostlimit import HostRateLimiter
from treasury.exchange.ratelimit import LocalRateLimiter, RedisRateLimiter
from treasury.models import RateClass
from treasury.settings import RateLimits

KEYS = [f"sub-{n:03d}" for n in range(100)]


@pytest.fixture
def rdb(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def full_budgets(limiter: LocalRateLimiter | HostRateLimiter | RedisRateLimiter, clock: ManualClock) -> None:
    """Every key takes its whole transfer budget and two orders' worth at one instant."""
    for key in KEYS:
        limiter.answered(key, RateClass.TRANSFER, limiter.acquire(key, RateClass.TRANSFER))
    for key in KEYS[:2]:
        for _ in range(10):
            limiter.answered(key, RateClass.ORDER, limiter.acquire(key, RateClass.ORDER))
    assert clock.sleeps == []  # a hundred budgets, not one
    limiter.acquire(KEYS[0], RateClass.TRANSFER)  # past its own budget: that key alone waits
    assert len(clock.sleeps) >= 1


def test_local_limiter_gives_every_key_its_full_budget() -> None:
    clock = ManualClock()
    full_budgets(LocalRateLimiter(RateLimits(), clock), clock)


def test_host_limiter_gives_every_key_its_full_budget(tmp_path: Path) -> None:
    clock = ManualClock()
    full_budgets(HostRateLimiter(RateLimits(), clock, tmp_path / "limits.json"), clock)
    assert len(list((tmp_path / "limits.json.keys").iterdir())) == len(KEYS)  # one file per key


def test_redis_limiter_gives_every_key_its_full_budget(rdb: redis.Redis) -> None:
    clock = ManualClock()
    limiter = RedisRateLimiter(rdb, RateLimits(), clock, "kb1")
    # Redis times the windows itself: the manual clock only records that a wait was asked for
    full_budgets(limiter, clock)


def test_a_held_key_file_does_not_hold_up_another_key(tmp_path: Path) -> None:
    """Another process holding key a's lock (mid-grant) leaves key b free to send."""
    limiter = HostRateLimiter(RateLimits(), ManualClock(), tmp_path / "limits.json")
    limiter.acquire("a", RateClass.ORDER)
    fd = os.open(limiter.key_path("a"), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    done = threading.Event()
    try:
        worker = threading.Thread(target=lambda: (limiter.acquire("b", RateClass.ORDER), done.set()), daemon=True)
        worker.start()
        assert done.wait(5), "key b waited for key a's lock"
        blocked = threading.Event()
        other = threading.Thread(target=lambda: (limiter.acquire("a", RateClass.ORDER), blocked.set()), daemon=True)
        other.start()
        assert not blocked.wait(0.3)  # key a itself is locked: the lock is real
    finally:
        os.close(fd)
    assert blocked.wait(5)


def test_a_key_waiting_for_room_does_not_hold_up_another_key() -> None:
    """With the real clock: key a waits a window for room while key b takes its whole budget."""
    from treasury.clock import SystemClock

    limiter = LocalRateLimiter(RateLimits(transfer=1), SystemClock())
    limiter.acquire("a", RateClass.TRANSFER)
    waiting = threading.Thread(target=lambda: limiter.acquire("a", RateClass.TRANSFER))
    waiting.start()
    took = threading.Event()
    threading.Thread(target=lambda: (limiter.acquire("b", RateClass.TRANSFER), took.set()), daemon=True).start()
    assert took.wait(0.3)  # b does not queue behind a's one-second wait
    assert waiting.is_alive()
    waiting.join(5)


def test_host_limiter_adopts_a_key_window_from_the_one_file_layout(tmp_path: Path) -> None:
    import json

    clock = ManualClock()
    path = tmp_path / "limits.json"
    path.write_text(json.dumps({"windows": {"transfer|a": [[clock.time(), 1, "t"]]}, "suspended": {},
                                "ban": None}))
    limiter = HostRateLimiter(RateLimits(), clock, path)
    limiter.acquire("b", RateClass.TRANSFER)
    assert clock.sleeps == []
    limiter.acquire("a", RateClass.TRANSFER)  # the window written before the layout changed counts
    assert clock.sleeps == [pytest.approx(1.02)]
