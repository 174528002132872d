"""Tables that fit the terminal, with every cell escaped (``treasury.display``).

A table is printed at its natural width when that fits; when it does not, rich wraps the
columns at the terminal's width as long as every column keeps its longest word; when even
that is too wide (an exchange answer with twenty fields), each row is printed as a block of
``field  value`` lines, as ``psql``'s expanded display does. Nothing is cut off. The width
is the terminal's, ``COLUMNS`` when set, and 160 when the output is not a terminal.

A list of plain values (the client ids of a batch order's legs) is printed one per line,
not as a Python repr.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from treasury import canonical
from treasury.display import cell, escape_text

DEFAULT_WIDTH = 160
_MEASURE_WIDTH = 100_000


def terminal_width() -> int:
    """The width to fit: the terminal's, ``COLUMNS``, or ``DEFAULT_WIDTH`` when piped."""
    return max(40, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)


def to_jsonable(value: Any) -> Any:
    """Decimals as written (``"1.50"``), datetimes ISO 8601 with their offset, enums and sets, for output.

    Values with no JSON form are left as they are (:func:`treasury.canonical.to_jsonable`).
    """
    return canonical.to_jsonable(value, "output", utc=False, strict=False)


def cell_text(value: Any) -> str:
    """One value as display text (not yet escaped): lists one item per line, mappings as JSON."""
    value = to_jsonable(value)
    if value is None:
        return ""
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return "\n".join("" if v is None else str(v) for v in value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _cell(value: Any) -> Text:
    # escape each line on its own so a list keeps one item per line
    return Text("\n".join(escape_text(line) for line in cell_text(value).split("\n")))


def print_fitted(console: Console, columns: Sequence[str], rows: Iterable[Sequence[Any]],
                 *, title: str | None = None, width: int | None = None) -> None:
    """Print a table that fits ``width`` (default ``terminal_width()``); see the module doc."""
    width = width or terminal_width()
    body = [[_cell(v) for v in row] for row in rows]
    table = Table(title=cell(title) if title else None)
    for col in columns:
        table.add_column(cell(col), overflow="fold")
    for row in body:
        table.add_row(*row)
    measure = Measurement.get(console, console.options.update_width(_MEASURE_WIDTH), table)
    if measure.maximum <= width:
        _like(console, measure.maximum, soft_wrap=True).print(table)
    elif measure.minimum <= width:
        _like(console, width, soft_wrap=False).print(table)
    else:
        _print_vertical(console, [str(c) for c in columns], body, title=title, width=width)


def _like(console: Console, width: int, *, soft_wrap: bool) -> Console:
    """A console writing where ``console`` writes, at ``width``, with its colour choice."""
    return Console(file=console.file, width=width, soft_wrap=soft_wrap, highlight=False,
                   color_system="auto" if console.color_system else None)


def _print_vertical(console: Console, columns: Sequence[str], body: Sequence[Sequence[Text]], *,
                    title: str | None, width: int) -> None:
    label_width = max((len(escape_text(c)) for c in columns), default=0)
    out = _like(console, width, soft_wrap=True)
    name = escape_text(title) if title else "row"
    for index, row in enumerate(body, start=1):
        out.print(Text(f"── {name} {index} of {len(body)} ──"))
        for column, value in zip(columns, row, strict=True):
            lines = value.plain.split("\n")
            out.print(Text(f"  {escape_text(column).ljust(label_width)}  {lines[0]}".rstrip()))
            for more in lines[1:]:
                out.print(Text(f"  {'':<{label_width}}  {more}".rstrip()))
    if not body and title:
        out.print(Text(f"{name}: no rows"))
