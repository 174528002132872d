"""Text that reaches a screen: names refuse control characters, free text has them escaped.

A name or a reason holding an ESC sequence (``\\x1b[2J``), a carriage return or a bidi
override can rewrite what a terminal shows, so that a reviewer reads something other than
what is stored. Two rules keep the screen honest:

- **names and identifiers** (workflow names, step ids, user names, input names, key profile
  names) refuse such characters where they enter: ``check_name`` for CLI arguments,
  ``name_problem`` for config-file validators;
- **free text** (comments, reasons, notes, input values, exchange error texts) is stored as
  given and escaped wherever it is shown: ``escape_text`` turns every such character into a
  visible ``\\xNN`` / ``\\uNNNN``. JSON output needs nothing more (``json.dumps`` escapes
  control characters); rich tables take cells as ``rich.text.Text`` (``cell``), so ``[...]``
  is never read as markup.

The web console uses the same functions.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from treasury.errors import ParameterError

if TYPE_CHECKING:
    from rich.text import Text

# C0 and C1 controls, DEL, line/paragraph separators, and the bidi marks and overrides that
# can reorder what is shown (the "Trojan Source" characters).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# json.dumps already escapes C0 controls inside strings; what remains unsafe is the rest.
# Tab, newline and CR stay: outside strings they are JSON's own whitespace.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def unsafe_chars(text: str) -> list[str]:
    """The characters of ``text`` that could change how a terminal shows it (in order)."""
    return _UNSAFE.findall(text)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_text(value: Any) -> str:
    """``value`` as text with every control, separator or bidi character written as ``\\xNN``."""
    return _UNSAFE.sub(_visible, value if isinstance(value, str) else str(value))


def escape_lines(text: str) -> str:
    """``escape_text`` line by line: a multi-line message keeps its line breaks."""
    return "\n".join(escape_text(line) for line in text.split("\n"))


def json_safe(text: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with every unsafe character
    written as a ``\\uXXXX`` escape; still the same JSON (outside strings JSON holds none)."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def cell(value: Any) -> Text:
    """A rich table cell: escaped text, never interpreted as markup."""
    from rich.text import Text

    return Text(escape_text(value))


def name_problem(value: str, what: str = "name") -> str | None:
    """Why ``value`` cannot be a name (None when it can): it holds control characters."""
    bad = unsafe_chars(value)
    if not bad:
        return None
    shown = ", ".join(dict.fromkeys(escape_text(c) for c in bad))
    return f"{what} '{escape_text(value)}' holds control characters ({shown}); names may not"


def check_name(value: str, param: str) -> str:
    """``value`` unchanged, or ParameterError naming ``param`` when it holds control characters.

    Raises:
        ParameterError: ``value`` holds a control, separator or bidi character.
    """
    problem = name_problem(value, "value")
    if problem is not None:
        raise ParameterError(param, problem.removeprefix("value "))
    return value


__all__ = ["cell", "check_name", "escape_lines", "escape_text", "json_safe", "name_problem", "unsafe_chars"]
