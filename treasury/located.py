"""YAML with positions: compose a document, remember where every value sits, locate errors.

The one located loader for config files (``policy.yaml``, ``keys.yaml``): every problem is
reported as ``FILE:LINE:COL: message (field.path)``, as workflow errors are.

PyYAML's ``compose`` keeps a start mark on every node. Walking the node tree once gives a
map from a field path (``("limits", 0, "max_per_tx")``, the same shape as a pydantic error
``loc``) to the line and column of that value, so a validation error can be reported as
``FILE:LINE:COL: message (limits[0].max_per_tx)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from treasury.errors import ConfigError, Problem
from treasury.yamlfile import MAX_CONFIG_BYTES, field_path

Loc = tuple[int | str, ...]


@dataclass
class LocatedDocument:
    """A parsed YAML document with the position of every value and mapping key."""

    source: str
    data: Any
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # found while walking (duplicate keys)

    def where(self, loc: Loc, *, key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of ``loc``, or of its nearest located parent."""
        table = self.keys if key else self.values
        for end in range(len(loc), -1, -1):
            prefix = loc[:end]
            if prefix in table:
                return table[prefix]
            if key and prefix in self.values:
                return self.values[prefix]
        return (1, 1)

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> Problem:
        line, col = self.where(loc, key=key)
        return Problem(self.source, line, col, field_path(loc), message)

    def problems_from(self, exc: ValidationError) -> list[Problem]:
        """One located Problem per pydantic error."""
        out = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            message = str(err["msg"]).removeprefix("Value error, ")
            out.append(self.problem(loc, message, key=err["type"] == "extra_forbidden"))
        return out


def compose(data: bytes, source: str) -> LocatedDocument:
    """Parse one YAML document with the safe loader and record positions.

    Raises:
        ConfigError: the YAML does not parse (with line and column).
    """
    loader = yaml.SafeLoader(data)
    try:
        node = loader.get_single_node()
        value = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        err = ConfigError(f"{where}: {problem}")
        err.source = source
        raise err from exc
    finally:
        loader.dispose()
    doc = LocatedDocument(source=source, data=value)
    if node is not None:
        _walk(node, (), doc)
    return doc


def load_located(path: Path) -> LocatedDocument:
    """Read a config file (size-capped) and compose it with positions.

    Raises:
        ConfigError: missing, unreadable, oversized or unparsable (with line and column).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError("file not found", source=str(path)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", source=str(path)) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"file is larger than {MAX_CONFIG_BYTES} bytes", source=str(path))
    return compose(data, str(path))


def _pos(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _walk(node: yaml.Node, loc: Loc, doc: LocatedDocument) -> None:
    doc.values.setdefault(loc, _pos(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*loc, key)
            if key in seen:
                # safe_load keeps the last one silently; in a policy that hides a limit.
                doc.problems.append(
                    Problem(doc.source, *_pos(key_node), field_path(child), f"duplicate key {key!r}")
                )
                continue
            seen.add(key)
            doc.keys[child] = _pos(key_node)
            _walk(value_node, child, doc)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*loc, index), doc)


def raise_problems(problems: Iterable[Problem]) -> None:
    """Raise one ConfigError listing every problem (``FILE:LINE:COL: message (path)``), if any.

    Raises:
        ConfigError: ``source`` is the file, ``field`` the first problem's path.
    """
    found = sorted(problems, key=lambda p: (p.line, p.col))
    if not found:
        return
    err = ConfigError("\n".join(str(p) for p in found))
    err.source = found[0].file
    err.field = found[0].path
    raise err
