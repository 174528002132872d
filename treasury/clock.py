"""Time as an argument: every component takes a Clock so tests never sleep."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; a naive value is taken to be UTC already (SQLite hands
    back the stored UTC wall time without an offset)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def time(self) -> float:
        """Seconds since the epoch (wall clock)."""

    def monotonic(self) -> float:
        """Monotonic seconds, for measuring intervals."""

    def sleep(self, seconds: float) -> None:
        """Wait; a test clock advances instead."""


class SystemClock:
    """The real clock. ``time`` and ``now`` read ``time.time`` so freezegun can steer them."""

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time(), tz=UTC)

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock that only moves when told to; ``sleep`` advances it and records the wait."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._t = start
        self._mono = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._t, tz=UTC)

    def time(self) -> float:
        return self._t

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        self._t += seconds
        self._mono += seconds
