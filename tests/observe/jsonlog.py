"""A JSON log capture: the handler the runner installs in JSON mode, writing to a buffer."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from treasury.observe.logs import ContextFilter, JsonFormatter


class JsonLog:
    def __init__(self) -> None:
        self.buffer = io.StringIO()

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@contextmanager
def json_log(level: int = logging.DEBUG) -> Iterator[JsonLog]:
    """Every record (DEBUG and up, httpx and httpcore included) as a JSON line in a buffer."""
    capture = JsonLog()
    handler = logging.StreamHandler(capture.buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    saved = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "treasury")}
    for name in saved:
        logging.getLogger(name).setLevel(level)
    try:
        yield capture
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for name, lvl in saved.items():
            logging.getLogger(name).setLevel(lvl)
