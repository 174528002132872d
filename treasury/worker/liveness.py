"""Which workers consume a queue: every worker checks in to Redis every few seconds.

A worker's parent process writes its node name into the sorted set
``<broker key prefix>treasury:workers:<queue>`` with the time as its score, every
:data:`CHECK_IN_SECONDS`, and removes it when it shuts down. A member whose last check-in is
older than :data:`STALE_AFTER` (a worker that was killed) no longer counts. Reading the set is
one ``ZRANGE``: cheap enough for ``treasury show`` and ``treasury run --wait``, and it needs no
worker to answer (unlike ``celery inspect``), so "nobody is consuming" is known at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("treasury.worker")

CHECK_IN_SECONDS = 5.0
STALE_AFTER = 30.0  # six missed check-ins


def registry_key(queue: str, prefix: str = "") -> str:
    """The Redis key of the workers consuming ``queue``."""
    return f"{prefix}treasury:workers:{queue}"


def _client(url: str, timeout: float) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


class Beacon:
    """Checks a worker in for its queues every ``interval`` seconds, from a daemon thread.

    Args:
        url: the broker's Redis URL.
        name: the worker's node name (``celery@host``).
        queues: the queues it consumes.
        prefix: the broker key prefix (``TREASURY_BROKER_KEY_PREFIX``).
        now: the wall clock (epoch seconds).
    """

    def __init__(self, url: str, name: str, queues: Sequence[str], *, prefix: str = "",
                 interval: float = CHECK_IN_SECONDS, now: Callable[[], float] = time.time) -> None:
        self.url = url
        self.name = name
        self.keys = [registry_key(q, prefix) for q in queues]
        self.interval = interval
        self.now = now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._redis: Any = None

    def check_in(self) -> None:
        """Record this worker as consuming now. A broker that does not answer is logged."""
        try:
            if self._redis is None:
                self._redis = _client(self.url, 2.0)
            stamp = self.now()
            with self._redis.pipeline() as pipe:
                for key in self.keys:
                    pipe.zadd(key, {self.name: stamp})
                    pipe.zremrangebyscore(key, "-inf", stamp - 10 * STALE_AFTER)  # long-dead members
                pipe.execute()
        except Exception as exc:  # the broker is down: check-ins resume when it is back
            log.warning("worker check-in failed: %s: %s", type(exc).__name__, exc)

    def start(self) -> None:
        self.check_in()

        def loop() -> None:
            while not self._stop.wait(self.interval):
                self.check_in()

        self._thread = threading.Thread(target=loop, name="treasury-worker-check-in", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop checking in and leave the registry (a clean shutdown is known at once)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            if self._redis is not None:
                for key in self.keys:
                    self._redis.zrem(key, self.name)
                self._redis.close()
        except Exception as exc:
            log.warning("worker check-out failed: %s: %s", type(exc).__name__, exc)


def consumers(url: str, queue: str, *, prefix: str = "", now: float, timeout: float = 1.0) -> dict[str, float]:
    """The workers that checked in for ``queue`` within :data:`STALE_AFTER` seconds of ``now``,
    with the time of their last check-in.

    Raises:
        Exception: whatever redis raises when the broker does not answer within ``timeout``.
    """
    client = _client(url, timeout)
    try:
        rows = client.zrangebyscore(registry_key(queue, prefix), now - STALE_AFTER, "+inf", withscores=True)
    finally:
        client.close()
    return {(m.decode() if isinstance(m, bytes) else str(m)): float(score) for m, score in rows}
