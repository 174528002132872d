"""The safe YAML layer of workflow files: composing, refusing, and building plain data.

The YAML accepted here is deliberately smaller than YAML:

- no tags beyond the standard scalar/collection ones (``!!python/...`` and friends are
  refused and never constructed: nothing is constructed except plain scalars, lists
  and mappings);
- no anchors or aliases (this is what kills "billion laughs");
- no duplicate keys, no merge keys (``<<``), one document, at most 256 KiB, nesting of
  at most 64 levels;
- YAML 1.2-style scalars: only ``true``/``false`` are booleans (``no``, ``on``, ``yes``
  stay strings), no sexagesimal numbers or timestamps, and a leading zero keeps a
  number a string (``007``).

``compose`` turns text into one node (refusals collected, not raised, so that every problem
is reported); ``Builder`` turns the node into plain data, recording each field's position
and every problem it finds on the way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from treasury.errors import Problem, WorkflowInvalid
from treasury.language.positions import Path_, Position, PositionMap, field_path

MAX_WORKFLOW_BYTES = 256 * 1024
MAX_DEPTH = 64
MAX_NUMBER_DIGITS = 100

_STD = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {f"{_STD}{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?[0-9]+[eE][-+]?[0-9]+"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_SCALAR_FORMS = {f"{_STD}bool": _BOOL, f"{_STD}int": _INT, f"{_STD}float": _FLOAT, f"{_STD}null": _NULL}


class _Resolver(yaml.resolver.BaseResolver):
    """YAML 1.2 core-schema scalars (see the module docstring)."""


_Resolver.add_implicit_resolver(f"{_STD}bool", _BOOL, list("tTfF"))
_Resolver.add_implicit_resolver(f"{_STD}int", _INT, list("-+0123456789"))
_Resolver.add_implicit_resolver(f"{_STD}float", _FLOAT, list("-+0123456789."))
_Resolver.add_implicit_resolver(f"{_STD}null", _NULL, ["~", "n", "N", ""])


class _TooDeep(Exception):
    def __init__(self, mark: Any) -> None:
        self.mark = mark


class _Composer(yaml.composer.Composer):
    """Composes nodes while refusing tags, anchors and aliases, and capping the depth."""

    # Provided by the parser this is mixed with.
    check_event: Callable[..., bool]
    get_event: Callable[[], Any]
    peek_event: Callable[[], Any]

    def __init__(self) -> None:
        super().__init__()
        self.refusals: list[tuple[Any, str]] = []  # (mark, message)
        self.poisoned: set[int] = set()  # ids of nodes whose value stands in for a refused one
        self.depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.get_event()
            self.refusals.append(
                (event.start_mark, f"aliases (*{event.anchor}) are not allowed in workflow files; "
                                   "write the value out")
            )
            stand_in = ScalarNode(f"{_STD}null", "", event.start_mark, event.end_mark)
            self.poisoned.add(id(stand_in))
            return stand_in
        event = self.peek_event()
        poisoned = False
        if event.anchor is not None:
            self.refusals.append(
                (event.start_mark, f"anchors (&{event.anchor}) are not allowed in workflow files")
            )
            event.anchor = None
        if event.tag not in (None, "!") and event.tag not in _ALLOWED_TAGS:
            self.refusals.append(
                (event.start_mark, f"tag {_short_tag(event.tag)} is not allowed in workflow files; "
                                   "only plain values, lists and mappings")
            )
            event.tag = None
            poisoned = True
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _TooDeep(event.start_mark)
        node = super().compose_node(parent, index)
        self.depth -= 1
        if poisoned:
            self.poisoned.add(id(node))
        return node


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_STD):] if tag.startswith(_STD) else tag


try:
    from yaml._yaml import CParser

    _HAVE_LIBYAML = True
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    _HAVE_LIBYAML = False

if _HAVE_LIBYAML:  # libyaml scans and parses; composition stays in Python (ours)

    class _Loader(_Composer, CParser, _Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _Composer.__init__(self)
            _Resolver.__init__(self)

else:  # pragma: no cover - depends on how PyYAML was built

    class _Loader(  # type: ignore[no-redef]
        yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, _Composer, _Resolver
    ):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            _Composer.__init__(self)
            _Resolver.__init__(self)


# --------------------------------------------------------------------------- building data


class Builder:
    """Turns composed nodes into plain data, recording positions and problems.

    Refused values (merge keys, bad scalars, refused tags) are recorded in ``poisoned`` by
    path, so that schema errors they cause can be left out as noise.
    """

    def __init__(self, source: str, poisoned_nodes: set[int]) -> None:
        self.source = source
        self.positions = PositionMap()
        self.problems: list[Problem] = []
        self.poisoned_nodes = poisoned_nodes
        self.poisoned: set[Path_] = set()

    def problem_at(self, mark: Any, path: Path_, message: str) -> None:
        self.problems.append(Problem(self.source, mark.line + 1, mark.column + 1, field_path(path), message))

    def build(self, node: Node, path: Path_) -> Any:
        """The plain data of ``node`` (found at ``path``): dicts, lists and scalars only."""
        if id(node) in self.poisoned_nodes:
            self.poisoned.add(path)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, SequenceNode):
            items = []
            for i, child in enumerate(node.value):
                self.positions.fields[(*path, i)] = node_position(child)
                self.positions.starts[(*path, i)] = node_position(child)
                items.append(self.build(child, (*path, i)))
            return items
        assert isinstance(node, MappingNode)
        out: dict[str, Any] = {}
        first_seen: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.problem_at(key_node.start_mark, path, "mapping keys must be plain names, not lists or mappings")
                self.poisoned.add(path)
                continue
            key = key_node.value
            child = (*path, key)
            if key == "<<" and not key_node.style:  # plain style: None (Python parser) or "" (libyaml)
                self.problem_at(key_node.start_mark, child, "merge keys (<<) are not allowed in workflow files")
                self.poisoned.add(path)
                continue
            if key in first_seen:
                line = first_seen[key].line + 1
                self.problem_at(key_node.start_mark, child, f"duplicate key {key!r} (first at line {line})")
                continue
            first_seen[key] = key_node.start_mark
            self.positions.fields[child] = node_position(key_node)
            self.positions.starts[child] = node_position(value_node)
            out[key] = self.build(value_node, child)
        return out

    def scalar(self, node: ScalarNode, path: Path_) -> Any:
        tag, value = node.tag, node.value
        form = _SCALAR_FORMS.get(tag)
        if form is not None and not form.match(value):
            self.problem_at(node.start_mark, path, f"{value!r} is not a valid {_short_tag(tag)}")
            self.poisoned.add(path)
            return value
        if tag == f"{_STD}null":
            return None
        if tag == f"{_STD}bool":
            return value.lower() == "true"
        if tag == f"{_STD}int":
            if len(value) > MAX_NUMBER_DIGITS:
                self.problem_at(node.start_mark, path, f"number has more than {MAX_NUMBER_DIGITS} digits")
                self.poisoned.add(path)
                return value
            return int(value)
        if tag == f"{_STD}float":
            low = value.lower().lstrip("+")
            if low in (".inf", "-.inf", ".nan"):
                return float(low.replace(".", ""))
            if len(value) > MAX_NUMBER_DIGITS:
                self.problem_at(node.start_mark, path, f"number has more than {MAX_NUMBER_DIGITS} digits")
                self.poisoned.add(path)
                return value
            return float(value)
        return value  # str (and a refused tag's value, already poisoned)


def node_position(node: Node) -> Position:
    """Where ``node`` starts, as (line, col), 1-based."""
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def too_large(source: str, size: int | None) -> Problem:
    """The problem for a file of ``size`` bytes (None: unknown, a device), over ``MAX_WORKFLOW_BYTES``."""
    told = f"{size} bytes" if size is not None else f"larger than {MAX_WORKFLOW_BYTES} bytes"
    return Problem(source, 1, 1, "", f"the file is {told}; workflow files are limited to "
                                     f"{MAX_WORKFLOW_BYTES // 1024} KiB")


# --------------------------------------------------------------------------- composing


def compose(text: str, source: str) -> tuple[Node | None, list[tuple[Any, str]], set[int]]:
    """Compose ``text`` into one node (None for an empty document).

    Returns the node, the refusals as (mark, message), and the ids of nodes that stand in
    for a refused value.

    Raises:
        WorkflowInvalid: a syntax error, a character YAML does not allow, or nesting too deep.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except _TooDeep as exc:
        raise WorkflowInvalid([
            Problem(source, exc.mark.line + 1, exc.mark.column + 1, "",
                    f"nesting is deeper than {MAX_DEPTH} levels")
        ]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        if exc.context == "expected a single document in the stream":
            message = "a workflow file holds one YAML document; another one starts here"
        else:
            what = exc.problem or exc.context or "cannot be parsed"
            context = f" ({exc.context})" if exc.context and exc.problem else ""
            message = f"YAML syntax error: {what}{context}"
        raise WorkflowInvalid([Problem(source, line, col, "", message)]) from None
    except yaml.reader.ReaderError as exc:
        line, col = line_col(text, exc.position)
        raise WorkflowInvalid([
            Problem(source, line, col, "", f"character {exc.character!r} is not allowed in a YAML file")
        ]) from None
    except yaml.YAMLError as exc:  # libyaml reports some errors without marks
        line, col = _mark_of(exc)
        raise WorkflowInvalid([Problem(source, line, col, "", f"YAML syntax error: {exc}")]) from None
    except RecursionError:
        raise WorkflowInvalid([Problem(source, 1, 1, "", "nesting is too deep")]) from None
    finally:
        loader.dispose()
    return node, loader.refusals, loader.poisoned


def line_col(text: str, index: int) -> Position:
    """The 1-based (line, col) of character ``index`` in ``text``."""
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def _mark_of(exc: yaml.YAMLError) -> Position:
    mark = getattr(exc, "problem_mark", None)
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
