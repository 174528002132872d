"""What the process is working on, for every log line written meanwhile.

The step runner binds the run and step, the executor the client id, the CLI the person; a
log record picks up whatever is bound where it was written. Context variables follow threads
started with ``contextvars.copy_context`` and are private to each Celery task's thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

FIELDS = ("run_id", "step_id", "client_order_id", "operation", "person")

_vars: dict[str, ContextVar[str | None]] = {name: ContextVar(f"treasury_{name}", default=None) for name in FIELDS}


def current() -> dict[str, str]:
    """The fields bound now (unset ones left out)."""
    out: dict[str, str] = {}
    for name, var in _vars.items():
        value = var.get()
        if value is not None:
            out[name] = value
    return out


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Bind log fields for the ``with`` block (None leaves a field as it is).

    Raises:
        KeyError: a field that is not one of ``FIELDS``.
    """
    tokens: list[tuple[ContextVar[str | None], Token[str | None]]] = []
    for name, value in fields.items():
        if value is None:
            continue
        var = _vars[name]
        tokens.append((var, var.set(str(value))))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind(**fields: str | None) -> None:
    """Bind log fields until the process (or context) ends: for entry points such as the CLI.

    Raises:
        KeyError: a field that is not one of ``FIELDS``.
    """
    for name, value in fields.items():
        if value is not None:
            _vars[name].set(str(value))
