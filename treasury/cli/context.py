"""What every command shares: settings, the database engine, the clock and output helpers."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import click
from rich.console import Console
from sqlalchemy import Engine

from treasury.clock import Clock, SystemClock
from treasury.display import escape_lines
from treasury.settings import Settings


def to_jsonable(value: Any) -> Any:
    """Convert Decimals (to strings), datetimes (ISO 8601), enums and sets for JSON output."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return value


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, sort_keys=False)


@dataclass
class AppContext:
    """Built once per invocation from ``Settings``; passed to commands via click's context."""

    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    _engine: Engine | None = None
    _runtime: Any = None
    console: Console = field(default_factory=lambda: Console(
        soft_wrap=True, width=shutil.get_terminal_size((160, 24)).columns))
    err_console: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))

    def engine(self) -> Engine:
        """The database engine, with the schema created on first use."""
        if self._engine is None:
            from treasury.store.db import create_schema, make_engine

            self._engine = make_engine(self.settings.database_url)
            create_schema(self._engine)
        return self._engine

    def runtime(self) -> Any:
        """The run service and everything behind it (built once per invocation)."""
        if self._runtime is None:
            from treasury.runtime import build_runtime

            self._runtime = build_runtime(self.settings, clock=self.clock, engine=self.engine())
        return self._runtime

    def print_json(self, value: Any) -> None:
        click.echo(dumps(value))

    def print_table(
        self, columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None
    ) -> None:
        """Print rows as a table that fits the terminal (see ``treasury.cli.tables``)."""
        from treasury.cli.tables import print_fitted

        print_fitted(self.console, columns, rows, title=title)

    def fail(self, message: str, code: int = 1) -> None:
        click.echo(f"error: {escape_lines(message)}", err=True)  # plain: messages may contain [brackets]
        sys.exit(code)


pass_app = click.make_pass_decorator(AppContext)

CommandRegistrar = Callable[[click.Group], None]
