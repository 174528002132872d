"""Loading a workflow file: safe YAML with positions, then the pydantic models.

The YAML layer (``treasury.language.yamlsafe``) is deliberately smaller than YAML: no tags
beyond plain values, lists and mappings, no anchors or aliases, no duplicate or merge keys,
one document, at most 256 KiB, nesting of at most 64 levels, and YAML 1.2-style scalars
(only ``true``/``false`` are booleans; ``007`` stays a string).

Every problem is located (``FILE:LINE:COL``) through a map from field paths to the
positions of the composed nodes, and every problem is reported, not just the first.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from treasury.durations import DURATION_PATTERN
from treasury.errors import FileRefused, Problem, WorkflowInvalid
from treasury.files import decode_text, read_bounded
from treasury.language.positions import Path_, Position, PositionMap, field_path
from treasury.language.spec import (
    ApprovalSpec,
    InputSpec,
    RetryBudget,
    ScheduleBlock,
    StepSpec,
    WorkflowSpec,
)
from treasury.language.yamlsafe import (
    MAX_DEPTH,
    MAX_NUMBER_DIGITS,
    MAX_WORKFLOW_BYTES,
    Builder,
    compose,
    line_col,
    node_position,
    too_large,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_NUMBER_DIGITS",
    "MAX_PROBLEMS",
    "MAX_WORKFLOW_BYTES",
    "LoadedWorkflow",
    "Path_",
    "Position",
    "PositionMap",
    "cap_problems",
    "field_path",
    "load_workflow",
    "load_workflow_bytes",
    "load_workflow_text",
    "parse_yaml",
    "read_workflow_bytes",
    "read_workflow_text",
    "schema_problems",
]

# Past this many problems a file is not a workflow with typos; the rest is summarised.
MAX_PROBLEMS = 200


@dataclass
class LoadedWorkflow:
    """A parsed workflow with where it came from and where each field is."""

    spec: WorkflowSpec
    text: str
    source: str
    digest: str
    positions: PositionMap
    data: Any = None  # the plain YAML data the spec was built from

    def problem(self, path: Path_, message: str, *, at_value: bool = False) -> Problem:
        """A located problem in this file."""
        line, col = self.positions.value_at(path) if at_value else self.positions.locate(path)
        return Problem(self.source, line, col, field_path(path), message)


# --------------------------------------------------------------------------- loading


def load_workflow(path: Path) -> LoadedWorkflow:
    """Read and load a workflow file (``source`` is the path as given).

    Raises:
        WorkflowInvalid: unreadable, too large, not UTF-8, bad YAML, or not a valid workflow;
            every problem located.
    """
    source = str(path)
    return load_workflow_bytes(read_workflow_bytes(path), source=source)


def read_workflow_bytes(path: Path | str) -> bytes:
    """The bytes of a workflow file, read with the size limit applied while reading.

    Raises:
        WorkflowInvalid: missing, unreadable or over ``MAX_WORKFLOW_BYTES``, at ``FILE:1:1``.
    """
    try:
        return read_bounded(path, MAX_WORKFLOW_BYTES)
    except FileRefused as exc:
        if exc.too_large:
            raise WorkflowInvalid([too_large(str(path), exc.size)]) from None
        reason = "cannot read the file: no such file" if exc.missing else exc.reason
        raise WorkflowInvalid([Problem(str(path), 1, 1, "", reason)]) from None


def read_workflow_text(path: Path | str) -> str:
    """The text of a workflow file (for ``treasury run``, beat and cases).

    Raises:
        WorkflowInvalid: as ``read_workflow_bytes``, or not UTF-8 (located at the bad byte).
    """
    data = read_workflow_bytes(path)
    try:
        return decode_text(data, path)
    except FileRefused as exc:
        raise WorkflowInvalid([Problem(str(path), exc.line or 1, exc.col or 1, "", exc.reason)]) from None


def load_workflow_bytes(data: bytes, *, source: str) -> LoadedWorkflow:
    """Load a workflow from the file's bytes (the digest is of these bytes).

    Raises:
        WorkflowInvalid: as ``load_workflow``.
    """
    if len(data) > MAX_WORKFLOW_BYTES:
        raise WorkflowInvalid([too_large(source, len(data))])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise WorkflowInvalid([Problem(source, line, col, "", "the file is not valid UTF-8 text")]) from None
    return _load(text, source=source, digest=hashlib.sha256(data).hexdigest())


def load_workflow_text(text: str, *, source: str) -> LoadedWorkflow:
    """Load a workflow from text; ``source`` names it in problems.

    Raises:
        WorkflowInvalid: every problem located (YAML syntax, refused tags, anchors and
            aliases, duplicate keys, size, and every schema problem).
    """
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: not text a file could hold
        line, col = line_col(text, exc.start)
        raise WorkflowInvalid([Problem(source, line, col, "", "the text is not valid Unicode")]) from None
    if len(raw) > MAX_WORKFLOW_BYTES:
        raise WorkflowInvalid([too_large(source, len(raw))])
    return _load(text, source=source, digest=hashlib.sha256(raw).hexdigest())


def parse_yaml(text: str, *, source: str) -> Any:
    """The plain data of a workflow text, before the schema (for tools such as schema checks).

    Raises:
        WorkflowInvalid: YAML syntax errors and refused YAML (tags, anchors, duplicate keys...).
    """
    node, refusals, poisoned_nodes = compose(text, source)
    builder = Builder(source, poisoned_nodes)
    problems = [Problem(source, m.line + 1, m.column + 1, "", msg) for m, msg in refusals]
    data = builder.build(node, ()) if node is not None else None
    problems += builder.problems
    if problems:
        raise WorkflowInvalid(_dedupe(problems))
    return data


def _load(text: str, *, source: str, digest: str) -> LoadedWorkflow:
    node, refusals, poisoned_nodes = compose(text, source)
    builder = Builder(source, poisoned_nodes)
    for mark, message in refusals:
        builder.problems.append(Problem(source, mark.line + 1, mark.column + 1, "", message))
    if node is None:
        builder.problems.append(Problem(source, 1, 1, "", "the file is empty; a workflow needs name and steps"))
        raise WorkflowInvalid(builder.problems)
    builder.positions.fields[()] = node_position(node)
    builder.positions.starts[()] = node_position(node)
    data = builder.build(node, ())
    problems = list(builder.problems)
    if not isinstance(data, dict):
        problems.append(Problem(source, *node_position(node), "", "a workflow file is a mapping with name, steps and "
                                                        f"optionally description, inputs, schedule; got "
                                                        f"{_kind(data)}"))
        raise WorkflowInvalid(problems)
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        for path, message, cross_field in schema_problems(exc, data, limit=MAX_PROBLEMS):
            if _follows_refusal(path, cross_field, builder.poisoned):
                continue
            line, col = builder.positions.locate(path)
            problems.append(Problem(source, line, col, field_path(path), message))
        partial, dropped = (None, ()) if builder.problems else _partial(exc, data, text, source, digest,
                                                                         builder.positions)
        raise WorkflowInvalid(cap_problems(_dedupe(problems), exc.error_count()), partial=partial,
                              dropped_steps=dropped) from None
    if problems:
        raise WorkflowInvalid(cap_problems(_dedupe(problems)))
    return LoadedWorkflow(
        spec=spec, text=text, source=source, digest=digest, positions=builder.positions, data=data
    )


def _partial(
    exc: ValidationError, data: dict[str, Any], text: str, source: str, digest: str, positions: PositionMap
) -> tuple[LoadedWorkflow | None, tuple[str, ...]]:
    """The workflow minus what failed the schema, for the checks beyond it, and the ids of the
    steps left out; (None, ()) when too little is left.

    Unknown fields are left out and broken steps are dropped; any other schema problem (name,
    inputs, schedule) gives None. Positions are remapped so that what remains is still located
    in the file.
    """
    nothing: tuple[None, tuple[str, ...]] = (None, ())
    extras: list[tuple[Any, ...]] = []
    broken: set[int] = set()
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            extras.append(loc)
        elif len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            broken.add(loc[1])
        else:
            return nothing
    pruned = copy.deepcopy(data)
    for loc in sorted(extras, key=len, reverse=True):
        if len(loc) >= 2 and loc[0] == "steps" and loc[1] in broken:
            continue
        parent: Any = pruned
        for part in loc[:-1]:
            if isinstance(parent, dict):
                parent = parent.get(part)
            elif isinstance(parent, list) and isinstance(part, int) and 0 <= part < len(parent):
                parent = parent[part]
            else:
                return nothing
        if isinstance(parent, dict):
            parent.pop(loc[-1], None)
    steps = pruned.get("steps")
    if not isinstance(steps, list):
        return nothing
    kept = [i for i in range(len(steps)) if i not in broken]
    if not kept:
        return nothing
    dropped = tuple(str(steps[i]["id"]) for i in sorted(broken)
                    if isinstance(steps[i], dict) and steps[i].get("id"))
    pruned["steps"] = [steps[i] for i in kept]
    try:
        spec = WorkflowSpec.model_validate(pruned)
    except ValidationError:
        return nothing
    moved = {old: new for new, old in enumerate(kept)}  # a kept step's index before -> after
    remap = PositionMap()
    for table, out in ((positions.fields, remap.fields), (positions.starts, remap.starts)):
        for path, pos in table.items():
            if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
                if path[1] in broken:
                    continue
                path = ("steps", moved[path[1]], *path[2:])
            out[path] = pos
    return LoadedWorkflow(spec=spec, text=text, source=source, digest=digest, positions=remap, data=pruned), dropped


def _follows_refusal(path: Path_, cross_field: bool, poisoned: set[Path_]) -> bool:
    """True for an error caused by a refused value (it stands in as null or as text).

    Errors at or below a refused value are noise; so is a cross-field error (``needs
    either op or approval``) on a mapping holding one, except at the top level.
    """
    for bad in poisoned:
        if path[: len(bad)] == bad:
            return True
        if cross_field and path and bad[: len(path)] == path:
            return True
    return False


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[int, int, str, str]] = set()
    out = []
    for p in sorted(problems, key=lambda p: (p.line, p.col)):
        k = (p.line, p.col, p.path, p.message)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return out


# --------------------------------------------------------------------------- pydantic errors


def cap_problems(problems: list[Problem], total: int | None = None) -> list[Problem]:
    """At most ``MAX_PROBLEMS``, then one line saying how many more there are."""
    total = max(total or 0, len(problems))
    if total <= MAX_PROBLEMS:
        return problems
    kept = problems[:MAX_PROBLEMS]
    last = kept[-1]
    more = total - MAX_PROBLEMS
    return [*kept, Problem(last.file, last.line, last.col, "", f"... and about {more} more problems")]


def schema_problems(
    exc: ValidationError, data: Any, *, limit: int | None = None
) -> list[tuple[Path_, str, bool]]:
    """Each pydantic error as (path in the data, plain message, whether it is a cross-field rule)."""
    out: list[tuple[Path_, str, bool]] = []
    for err in exc.errors()[:limit]:
        path = _real_path(data, tuple(err["loc"]), err["type"])
        ctx = err.get("ctx") or {}
        if err["type"] == "workflow":
            out.append(((*path, *ctx.get("wf_at", ())), err["msg"], True))
            out.extend(((*path, *at), msg, True) for at, msg in ctx.get("wf_more", ()))
            continue
        out.append((path, _message(err, path), False))
    return out


def _real_path(data: Any, loc: tuple[Any, ...], kind: str) -> Path_:
    """Keep the parts of a pydantic location that exist in the data (drop union/validator tags)."""
    out: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        in_dict = isinstance(current, dict) and isinstance(part, str) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            out.append(part)
            current = current[part]
        elif i == len(loc) - 1 and kind in ("missing", "extra_forbidden") and isinstance(part, str):
            out.append(part)
    return tuple(out)


_PATTERN_HINTS = {
    r"^[a-z0-9][a-z0-9-]*$": "must be lowercase letters, digits and '-' (such as \"vendor-payout\")",
    r"^[a-z0-9][a-z0-9_-]*$": "must be lowercase letters, digits, '-' and '_' (such as \"pay-vendor\")",
    r"^(group:)?[a-z0-9][a-z0-9._-]*$": "must be an approver name or group:NAME (such as \"group:risk\")",
    DURATION_PATTERN: "must be a duration: a number and a unit (s, m, h, d, w), such as \"30m\", \"24h\" "
                      "or \"7d\"",
}


def _message(err: Any, path: Path_) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = _describe(err.get("input"))
    name = path[-1] if path else "workflow"
    if kind == "missing":
        return f"missing required field {name!r}"
    if kind == "extra_forbidden":
        return _unknown_field(str(name), path[:-1])
    if kind == "string_type":
        return f"must be a string, got {got}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, got {got}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, got {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping (key: value), got {got}"
    if kind == "list_type":
        return f"must be a list, got {got}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {got}"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        hint = _PATTERN_HINTS.get(pattern, f"must match the pattern {pattern}")
        return f"{hint}; got {got}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    msg = msg.replace(" after validation", "")
    return msg.replace("Input should be", "must be").replace("String should", "must").replace(
        "List should", "must"
    )


def _describe(value: Any) -> str:
    if value is None:
        return "null (nothing)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    if len(text) > 60:
        text = text[:59] + "…"
    return f"{type(value).__name__} {text}"


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return f"a {type(value).__name__}"


def _unknown_field(name: str, parent: Path_) -> str:
    model = _model_at(parent)
    if model is None:
        return f"unknown field {name!r}"
    known = list(model.model_fields)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(known)}"
    return f"unknown field {name!r}{hint}"


def _model_at(path: Path_) -> type[BaseModel] | None:
    shapes: list[tuple[tuple[Any, ...], type[BaseModel]]] = [
        ((), WorkflowSpec),
        (("inputs", str), InputSpec),
        (("schedule",), ScheduleBlock),
        (("steps", int), StepSpec),
        (("steps", int, "approval"), ApprovalSpec),
        (("steps", int, "retry"), RetryBudget),
    ]
    for shape, model in shapes:
        if len(shape) == len(path) and all(
            (isinstance(p, s) if isinstance(s, type) else p == s) for s, p in zip(shape, path, strict=True)
        ):
            return model
    return None
