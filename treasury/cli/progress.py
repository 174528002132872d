"""Showing waits: a live status line in a terminal, one line per change otherwise.

Both go to standard error, so ``--json`` output on standard output stays exactly the JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from treasury.clock import Clock
from treasury.execution.progress import ProgressListener, Wait, seconds_text


class LineProgress:
    """One line per change of wait (``waiting: …``), for logs and pipes."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self.write = write if write is not None else (lambda line: click.echo(line, err=True))
        self._last: str | None = None

    def waiting(self, wait: Wait) -> None:
        line = wait.line()
        if line != self._last:
            self._last = line
            self.write(f"waiting: {line}")

    def finished(self) -> None:
        self._last = None


class TerminalProgress:
    """A spinner with the current wait and the time left, redrawn in place on a terminal."""

    def __init__(self, console: Console, clock: Clock) -> None:
        self.console = console
        self.clock = clock
        self._status: Any = None

    def waiting(self, wait: Wait) -> None:
        text = wait.line()
        if wait.until is not None:
            text += f" (at most {seconds_text(wait.until - self.clock.time())} from now)"
        shown = Text(text)  # never markup: names and errors may hold [brackets]
        if self._status is None:
            self._status = self.console.status(shown)
            self._status.start()
        else:
            self._status.update(shown)

    def finished(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def progress_for(console: Console, clock: Clock) -> ProgressListener:
    """The display that suits ``console`` (standard error): live in a terminal, lines otherwise."""
    if console.is_terminal:
        return TerminalProgress(console, clock)
    return LineProgress()
