"""Hints ("did you mean ...?") for names a workflow gets wrong: steps, inputs, fields, profiles."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


def suggest(name: str, known: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest known name, or "" when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def listing(known: Sequence[str]) -> str:
    """``; known: a, b, c`` (or "" when nothing is known)."""
    return f"; known: {', '.join(known)}" if known else ""
