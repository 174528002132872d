"""A rate limiter shared by every process on one host, without Redis.

In embedded mode each CLI invocation is a process of its own: two quick ``treasury query``
calls would each start with an empty in-process budget, and the second one would earn a 429
and a one-minute suspension. :class:`HostRateLimiter` keeps the budgets, suspensions and the
ban in a small JSON file, read and rewritten only while holding the exclusive lock on its
sidecar ``<file>.lock`` (``filelock``), so consecutive and concurrent processes on the host
share them. Time is the wall clock (``clock.time``), the one all processes share.

``filelock`` waits for a held lock by polling; the poll is kept short (``LOCK_POLL_SECONDS``)
because the lock is held only for one read and one write of a small file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from treasury.clock import Clock
from treasury.exchange.ratelimit import DEFAULT_INFLIGHT_SECONDS, LimiterState, StateLimiter
from treasury.settings import RateLimits

log = logging.getLogger("treasury.exchange")

LOCK_POLL_SECONDS = 0.001


def default_state_path(exchange: str) -> Path:
    """Per user and per exchange URL, in the system temp folder."""
    digest = hashlib.sha256(exchange.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"treasury-ratelimit-{os.getuid()}-{digest}.json"


class HostRateLimiter(StateLimiter):
    """Budgets, suspensions and the ban in ``path``, shared by all processes that use it."""

    def __init__(
        self, limits: RateLimits, clock: Clock, path: Path, *, margin: float | None = None,
        inflight: float = DEFAULT_INFLIGHT_SECONDS,
    ) -> None:
        super().__init__(limits, clock, margin=margin, inflight=inflight)
        self.path = path
        # threads of this process take turns on _thread_lock first, so the file lock needs no
        # per-thread state of its own
        self._thread_lock = threading.Lock()
        self._file_lock = FileLock(path.with_name(path.name + ".lock"), mode=0o600, thread_local=False)

    def _now(self) -> float:
        return self.clock.time()

    @contextmanager
    def _state(self) -> Iterator[LimiterState]:
        with self._thread_lock, self._file_lock.acquire(poll_interval=LOCK_POLL_SECONDS):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            with os.fdopen(fd, "r+", encoding="utf-8") as fh:
                state = self._load(fh.read())
                yield state
                fh.seek(0)
                fh.truncate()
                json.dump({"windows": state.windows, "suspended": state.suspended, "ban": state.ban}, fh)

    def _load(self, text: str) -> LimiterState:
        if not text.strip():
            return LimiterState()
        try:
            raw = json.loads(text)
            return LimiterState(
                # [time, cost, ticket]; a file from before tickets holds [time, cost]
                windows={str(k): [[float(e[0]), int(e[1]), str(e[2]) if len(e) > 2 else ""] for e in v]
                         for k, v in raw["windows"].items()},
                suspended={str(k): [float(v[0]), str(v[1])] for k, v in raw["suspended"].items()},
                ban=None if raw["ban"] is None else str(raw["ban"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            # A damaged file must not stop traffic for good; the ban also lives in the database.
            log.warning("rate-limit state %s is unreadable; starting from an empty budget", self.path)
            return LimiterState()
