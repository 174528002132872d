"""What every command shares: settings, the database engine, the clock and output helpers."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from sqlalchemy import Engine

from treasury.cli.tables import print_fitted, to_jsonable
from treasury.clock import Clock, SystemClock
from treasury.display import escape_lines
from treasury.errors import ConfigError
from treasury.settings import Settings


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, sort_keys=False)


@dataclass
class AppContext:
    """Built once per invocation from ``Settings``; passed to commands via click's context."""

    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    _engine: Engine | None = None
    _runtime: Any = None
    _progress: Any = None
    console: Console = field(default_factory=lambda: Console(
        soft_wrap=True, width=shutil.get_terminal_size((160, 24)).columns))
    err_console: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))

    def require_config(self) -> None:
        """Refuse to go on without a config folder, saying how to get one.

        Raises:
            ConfigError: ``TREASURY_CONFIG_DIR`` (default ``./config``) is not a folder.
        """
        folder = self.settings.config_dir
        if not folder.is_dir():
            raise ConfigError(
                f"no config folder: {folder} not found (in {Path.cwd()}). Run this in a folder made by "
                "`treasury demo --dir FOLDER` (then `cd FOLDER`), or point TREASURY_CONFIG_DIR (and "
                "TREASURY_WORKFLOWS_DIR) at your config and workflows", field="TREASURY_CONFIG_DIR")

    def engine(self) -> Engine:
        """The database engine, with the schema created and audit checkpointing installed on first use.

        Raises:
            ConfigError: a SQLite file that does not exist yet, outside a config folder (it
                would only leave an empty database behind; see ``require_config``); a database
                behind this release (see ``treasury.schema.create_schema``).
        """
        if self._engine is None:
            from treasury.runtime import open_engine

            if _new_sqlite_file(self.settings) and not self.settings.config_dir.is_dir():
                self.require_config()

            self._engine = open_engine(self.settings, self.clock)
        return self._engine

    def runtime(self) -> Any:
        """The run service and everything behind it (built once per invocation)."""
        if self._runtime is None:
            from treasury.runtime import build_runtime

            self.require_config()
            self._runtime = build_runtime(self.settings, clock=self.clock, engine=self.engine(),
                                          progress=self.progress())
        return self._runtime

    def progress(self) -> Any:
        """Where waits are shown (standard error): a live line in a terminal, else a line per change."""
        if self._progress is None:
            from treasury.cli.progress import progress_for

            self._progress = progress_for(self.err_console, self.clock)
        return self._progress

    def print_json(self, value: Any) -> None:
        click.echo(dumps(value))

    def print_table(
        self, columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None
    ) -> None:
        """Print rows as a table that fits the terminal (see ``treasury.cli.tables``)."""
        print_fitted(self.console, columns, rows, title=title)

    def fail(self, message: str, code: int = 1) -> None:
        click.echo(f"error: {escape_lines(message)}", err=True)  # plain: messages may contain [brackets]
        sys.exit(code)


def _new_sqlite_file(settings: Settings) -> bool:
    """Whether the database is a SQLite file that does not exist yet (connecting creates it)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(settings.database_url.get_secret_value())
    except ArgumentError:
        return False
    database = url.database or ""
    if not url.drivername.startswith("sqlite") or database in ("", ":memory:") or database.startswith("file:"):
        return False
    return not Path(database).exists()


pass_app = click.make_pass_decorator(AppContext)

CommandRegistrar = Callable[[click.Group], None]
