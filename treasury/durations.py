"""Durations, one grammar for every file and option: ``30s``, ``15m``, ``24h``, ``7d``, ``2w``, ``1h30m``.

Workflows (approval expiry, step timeouts), policy windows and ``audit --since/--until`` all
read durations here. Each part is 1 to 6 digits and one unit of ``s``, ``m``, ``h``, ``d`` or
``w`` (weeks are accepted everywhere: workflows always took them; policy windows and
``audit`` now do too). Callers differ only in the bound they put on the result.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"([0-9]{1,6})([smhdw])")
DURATION_PATTERN = r"^([0-9]{1,6}[smhdw])+$"
_WHOLE = re.compile(DURATION_PATTERN)
# A year is far beyond any approval window or step timeout; a longer value is a typo.
MAX_DURATION = timedelta(days=366)
_HOW = 'write a number and a unit (s, m, h, d, w), such as "30m", "24h", "7d" or "1h30m"'


def read_duration(text: str) -> timedelta | None:
    """The duration ``text`` writes (zero allowed), or None when it is not written as one."""
    value = text.strip()
    if not _WHOLE.match(value):
        return None
    try:
        return timedelta(seconds=sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(value)))
    except OverflowError:
        return None


def parse_duration(text: str, *, what: str = "duration", maximum: timedelta | None = MAX_DURATION) -> timedelta:
    """Parse a positive duration such as ``30s``/``15m``/``24h``/``7d``/``2w`` (parts combine: ``1h30m``).

    ``what`` names the value in messages (``window``); ``maximum`` is the longest allowed (None:
    no bound).

    Raises:
        ValueError: not a string, malformed, zero, or longer than ``maximum``; the message says
            how to write one.
    """
    if not isinstance(text, str):
        raise ValueError(f'a {what} is a string such as "30m", "24h" or "7d", not {text!r}')
    delta = read_duration(text)
    if delta is None:
        subject = f"invalid duration {text!r}" if what == "duration" else f"{what} {text!r} is not a duration"
        raise ValueError(f"{subject}; {_HOW}")
    if not delta:
        raise ValueError(f"{what} {text!r} must be longer than zero")
    if maximum is not None and delta > maximum:
        raise ValueError(f"{what} {text!r} is longer than {maximum.days} days")
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
