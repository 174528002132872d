"""Safe YAML loading for config files: safe loader only, size-capped, errors name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from treasury.errors import ConfigError
from treasury.files import read_bounded

MAX_CONFIG_BYTES = 1_000_000


def load_yaml(path: Path) -> Any:
    """Read one YAML document with the safe loader.

    Raises:
        ConfigError: unparsable file; FileRefused (a ConfigError): missing, unreadable or oversized.
    """
    data = read_bounded(path, MAX_CONFIG_BYTES)
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}{problem}", source=str(path)) from exc


def field_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as ``profiles.ops-read.permissions[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def config_error_from(exc: ValidationError, source: str) -> ConfigError:
    """Turn a pydantic ValidationError into one ConfigError listing every problem."""
    lines = [f"{field_path(tuple(e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()]
    first = exc.errors()[0] if exc.errors() else None
    field = field_path(tuple(first["loc"])) if first else None
    err = ConfigError("; ".join(lines), source=source)
    err.field = field
    return err
