"""Log output: JSON lines (``TREASURY_LOG_FORMAT=json``) or console text (the default).

Both go through the standard library's ``logging``, so every library's records (Celery,
httpx) come out in the same format. A JSON line holds ``ts`` (UTC, ISO 8601), ``level``,
``logger``, ``message``, the bound context (``run_id``, ``step_id``, ``client_order_id``,
``operation``, ``person``; see ``observe.context``) and ``exc`` for a traceback.

Secrets never reach a log record in the first place (they are ``SecretStr``, and exception
messages never carry them); as a second line of defence both formats blank any
``signature=`` value, which is replayable inside recvWindow.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from treasury.observe import context
from treasury.settings import LogFormat

_SIGNATURE = re.compile(r"(signature=)[0-9A-Za-z]+")
_CONSOLE = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"


def _scrub(text: str) -> str:
    return _SIGNATURE.sub(r"\1<redacted>", text) if "signature=" in text else text


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record (as attributes, and as ``context`` text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = context.current()
        for name, value in fields.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        if not hasattr(record, "context"):
            record.context = "".join(f" {k}={v}" for k, v in fields.items()) if fields else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; keys are stable so a log store can index them."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _scrub(record.getMessage()),
        }
        for name in context.FIELDS:
            value = getattr(record, name, None)
            if value is None:
                value = context.current().get(name)
            if value is not None:
                doc[name] = str(value)
        if record.exc_info:
            doc["exc"] = _scrub(self.formatException(record.exc_info))
        if record.stack_info:
            doc["stack"] = _scrub(self.formatStack(record.stack_info))
        return json.dumps(doc, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    """The familiar one-line text, with the bound context appended as ``name=value``."""

    def __init__(self, fmt: str = _CONSOLE) -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "context"):
            fields = context.current()
            record.context = "".join(f" {k}={v}" for k, v in fields.items()) if fields else ""
        return _scrub(super().format(record))


def formatter_for(fmt: LogFormat | str) -> logging.Formatter:
    """The formatter for a format name.

    Raises:
        ValueError: an unknown format name.
    """
    return JsonFormatter() if LogFormat(fmt) is LogFormat.JSON else ConsoleFormatter()


def apply_format(fmt: LogFormat | str, logger: logging.Logger | None = None) -> None:
    """Put ``fmt``'s formatter and the context filter on ``logger``'s handlers (root by default).

    For handlers someone else made, such as Celery's: its loglevel and stream stay as they are.
    """
    target = logger if logger is not None else logging.getLogger()
    formatter = formatter_for(fmt)
    for handler in target.handlers:
        handler.setFormatter(formatter)
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (click's test runner swaps it)."""

    _treasury = True

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure(fmt: LogFormat | str, level: int = logging.WARNING) -> None:
    """Send log records to stderr in ``fmt``, for a command's own process (the CLI).

    Console is what Python does anyway (warnings and errors as plain text), so only JSON
    installs a handler. Replaces a handler this function installed before; leaves others
    alone (pytest's, Celery's).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_treasury", False):
            root.removeHandler(handler)
    if LogFormat(fmt) is not LogFormat.JSON:
        return
    handler = _StderrHandler()
    handler.setFormatter(formatter_for(fmt))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
