"""What a step is waiting for, told to whoever watches (the CLI's progress display).

The executor and the reconciler report every wait a person could otherwise sit through in
silence: a request on its way, a lookup round, the pause before the next one, a read retried, a
rate-limit suspension waited out. A :class:`ProgressListener` is passed down from the entry
point (``treasury approve``, ``run``, ``recover``); the default does nothing. Listeners only
display: they never change what the step does, and an exception from one is the caller's bug.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


@dataclass(frozen=True)
class Wait:
    """One wait, in words: what is happening and how long it may take.

    ``until`` is the latest moment (epoch seconds) the wait lasts, when one is known; ``detail``
    says how far it has got (``lookup 2 of 2 (balance_flow), settle window 15 s``).
    """

    what: str
    detail: str = ""
    until: float | None = None
    run_id: str | None = None
    step_id: str | None = None

    def line(self) -> str:
        """The wait as one line: stable for as long as the wait does not change."""
        where = ""
        if self.run_id is not None:
            where = f"run {self.run_id}" + (f" step {self.step_id}" if self.step_id else "") + ": "
        text = where + self.what
        if self.detail:
            text += f", {self.detail}"
        if self.until is not None:
            text += f", until {datetime.fromtimestamp(self.until, tz=UTC):%H:%M:%S} UTC at the latest"
        return text


class ProgressListener(Protocol):
    """Receives the waits of the work a command does (see :class:`Wait`)."""

    def waiting(self, wait: Wait) -> None:
        """A new wait begins (or the current one changed)."""

    def finished(self) -> None:
        """Nothing is being waited for any more (a step call ended)."""


class NoProgress:
    """The default listener: nobody is watching."""

    def waiting(self, wait: Wait) -> None:
        pass

    def finished(self) -> None:
        pass


NO_PROGRESS: ProgressListener = NoProgress()


def seconds_text(seconds: float) -> str:
    """``15 s``, ``2 min 30 s``: a duration as a person reads it."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min" + (f" {rest} s" if rest else "")
