"""Durations as workflow files write them: ``30s``, ``15m``, ``24h``, ``7d``, ``2w`` or ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"([0-9]{1,6})([smhdw])")
DURATION_PATTERN = r"^([0-9]{1,6}[smhdw])+$"
_WHOLE = re.compile(DURATION_PATTERN)
# A year is far beyond any approval window or step timeout; a longer value is a typo.
MAX_DURATION = timedelta(days=366)


def parse_duration(text: str) -> timedelta:
    """Parse ``30s``/``15m``/``24h``/``7d``/``2w`` (parts may be combined: ``1h30m``).

    Raises:
        ValueError: not a string, malformed, zero, or longer than a year; the message says
            how to write one.
    """
    if not isinstance(text, str):
        raise ValueError(f"a duration is a string such as \"30m\", \"24h\" or \"7d\", not {text!r}")
    value = text.strip()
    if not _WHOLE.match(value):
        raise ValueError(
            f"invalid duration {text!r}; write a number and a unit (s, m, h, d, w), "
            "such as \"30m\", \"24h\", \"7d\" or \"1h30m\""
        )
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(value))
    if seconds == 0:
        raise ValueError(f"duration {text!r} must be longer than zero")
    delta = timedelta(seconds=seconds)
    if delta > MAX_DURATION:
        raise ValueError(f"duration {text!r} is longer than {MAX_DURATION.days} days")
    return delta


def format_duration(delta: timedelta) -> str:
    """Render a timedelta in the same notation (``90m`` → ``1h30m``), whole seconds only."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    out = []
    for unit in ("w", "d", "h", "m", "s"):
        n, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)
