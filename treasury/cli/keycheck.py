"""Checking many key profiles at once: bounded concurrency, and progress while it runs.

Every key has a rate budget of its own, so the checks of different keys run side by side
(at most ``concurrency`` at a time); the checks of one key still queue in its own budget.
Progress goes to standard error: a bar on a terminal, one line per finished key otherwise,
so ``--json`` output on standard output stays exactly the JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Protocol

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

DEFAULT_CONCURRENCY = 16

Result = dict[str, Any]


class CheckProgress(Protocol):
    def start(self, total: int) -> None: ...

    def done(self, result: Result) -> None: ...

    def stop(self) -> None: ...


class LineCheckProgress:
    """One line per finished profile (``checked 3/50: sub-2003 ok``), for logs and pipes."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self.write = write if write is not None else (lambda line: click.echo(line, err=True))
        self._total = 0
        self._count = 0

    def start(self, total: int) -> None:
        self._total, self._count = total, 0

    def done(self, result: Result) -> None:
        self._count += 1
        verdict = "ok" if result["ok"] else "FAILED"
        self.write(f"checked {self._count}/{self._total}: {result['profile']} {verdict}")

    def stop(self) -> None:
        pass


class BarCheckProgress:
    """A progress bar redrawn in place on a terminal."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(TextColumn("checking keys"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(),
                                  console=console, transient=True)
        self._task: Any = None
        self._failed = 0

    def start(self, total: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task("keys", total=total, failed=0)

    def done(self, result: Result) -> None:
        self._failed += 0 if result["ok"] else 1
        self._progress.update(self._task, advance=1, failed=self._failed)

    def stop(self) -> None:
        self._progress.stop()


def check_progress_for(console: Console, *, quiet_lines: bool = False) -> CheckProgress:
    """A bar when ``console`` (standard error) is a terminal, lines otherwise.

    ``quiet_lines`` (``--json``) drops the lines: a script reading the JSON often reads
    standard error with it, while a bar on a terminal is gone once the check ends.
    """
    if console.is_terminal:
        return BarCheckProgress(console)
    return LineCheckProgress((lambda line: None) if quiet_lines else None)


def check_all(names: Sequence[str], check: Callable[[str], Result], progress: CheckProgress, *,
              concurrency: int = DEFAULT_CONCURRENCY) -> list[Result]:
    """``check(name)`` for every profile, at most ``concurrency`` at a time; results in ``names``' order.

    The first profile is checked alone, so the client's one clock sync happens before the
    others start (concurrent first calls would each measure it).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    results: dict[str, Result] = {}
    progress.start(len(names))
    try:
        if names:
            results[names[0]] = check(names[0])
            progress.done(results[names[0]])
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="keys-check") as pool:
            futures = {pool.submit(check, name): name for name in names[1:]}
            for future in as_completed(futures):
                results[futures[future]] = result = future.result()
                progress.done(result)
    finally:
        progress.stop()
    return [results[name] for name in names]
