"""Typed workflow inputs: checking declarations, and turning given values into typed ones.

Values arrive as strings from the command line (``-i amount=5000``) or as YAML scalars
from a schedule block. ``coerce_inputs`` applies defaults, refuses unknown and missing
inputs, and returns typed values: ``Decimal`` for decimals, ``int``, ``bool``, and
strings for accounts, addresses and assets.

A ``list`` input (what a ``for_each`` step runs over) holds ``items`` of one declared type,
often an ``object`` with declared ``fields``. It arrives as a list, or as JSON text (``-i
payouts=@payouts.json`` on the command line). Every item is checked, and every problem is
reported with its place: ``[3].amount: must be at least 0.01``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal, Protocol

from treasury.errors import ParameterError
from treasury.models import amount_value, format_amount

InputType = Literal["decimal", "string", "integer", "boolean", "account", "address", "asset", "list", "object"]
SubPath = tuple[str | int, ...]
Issue = tuple[SubPath, str]
"""A problem below some node of a workflow file: (field path below it, message)."""


class InputSpec(Protocol):
    """One input's declaration as these checks read it (``treasury.language.spec.InputSpec``)."""

    @property
    def type(self) -> InputType: ...
    @property
    def default(self) -> str | int | bool | None: ...
    @property
    def min(self) -> str | int | None: ...
    @property
    def max(self) -> str | int | None: ...
    @property
    def pattern(self) -> str | None: ...
    @property
    def enum(self) -> list[str] | None: ...
    @property
    def required(self) -> bool: ...
    @property
    def items(self) -> InputSpec | None: ...
    @property
    def fields(self) -> Mapping[str, InputSpec] | None: ...
    @property
    def min_items(self) -> int | None: ...
    @property
    def max_items(self) -> int | None: ...


class WorkflowSpec(Protocol):
    """A workflow's name and declared inputs (``treasury.language.spec.WorkflowSpec``)."""

    @property
    def name(self) -> str: ...
    @property
    def inputs(self) -> Mapping[str, InputSpec]: ...

# The same shapes as the operation parameters they usually feed (treasury.operations.params).
_ACCOUNT = re.compile(r"^[0-9]{1,32}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9:._-]{1,200}$")
_ASSET = re.compile(r"^[A-Z0-9]{1,20}$")
_INTEGER = re.compile(r"^[+-]?[0-9]{1,18}$")
_STRINGLIKE = ("string", "account", "address", "asset")
_COMPOUND = ("list", "object")
MAX_STRING = 1000
MAX_ITEMS = 1000  # the most a list input may hold: each item may become a step instance
MAX_ITEM_PROBLEMS = 20  # shown per list input; the count of the rest follows


def coerce_value(spec: InputSpec, value: Any) -> Any:
    """Turn one given value into the input's type and check its constraints.

    Raises:
        ValueError: with a message that names the expected form (not the input: callers add it).
    """
    kind = spec.type
    if isinstance(value, float):
        raise ValueError(f"got the float {value!r}; write numbers as strings, such as \"12.50\"")
    if kind in _COMPOUND:
        problems: list[tuple[str, str]] = []
        compound = _compound(spec, _from_json(value) if isinstance(value, str) else value, "", problems)
        if problems:
            shown = [f"{at}: {msg}" if at else msg for at, msg in problems[:MAX_ITEM_PROBLEMS]]
            more = len(problems) - MAX_ITEM_PROBLEMS
            raise ValueError("; ".join(shown) + (f"; and {more} more problems" if more > 0 else ""))
        return compound
    out: Any
    if kind == "decimal":
        out = _decimal(value)
    elif kind == "integer":
        out = _integer(value)
    elif kind == "boolean":
        out = _boolean(value)
    else:
        out = _stringlike(kind, value)
    if kind in ("decimal", "integer"):
        _check_bounds(spec, out)
    if spec.pattern is not None and isinstance(out, str) and not re.fullmatch(spec.pattern, out):
        raise ValueError(f"{out!r} does not match the pattern {spec.pattern!r}")
    if spec.enum is not None:
        canonical = _canonical(out)
        allowed = [_canonical_enum(kind, e) for e in spec.enum]
        if canonical not in allowed:
            raise ValueError(f"{canonical!r} is not one of: {', '.join(spec.enum)}")
    return out


def _from_json(text: str) -> Any:
    """A list or object given as JSON text; floats are refused (amounts are quoted strings)."""

    def refuse_float(number: str) -> Any:
        raise ValueError(f"has the number {number} unquoted; write amounts as strings, such as \"{number}\"")

    try:
        return json.loads(text, parse_float=refuse_float)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def _compound(spec: InputSpec, value: Any, at: str, problems: list[tuple[str, str]]) -> Any:
    """A list or object checked item by item; each problem is recorded as (place, message)."""
    if spec.type == "list":
        if not isinstance(value, list | tuple):
            problems.append((at, f"must be a list, got {_kind_of(value)}"))
            return None
        low = spec.min_items if spec.min_items is not None else 0
        high = spec.max_items if spec.max_items is not None else MAX_ITEMS
        if len(value) < low:
            problems.append((at, f"must hold at least {low} item{'s' if low != 1 else ''}, got {len(value)}"))
        if len(value) > high:
            problems.append((at, f"must hold at most {high} items, got {len(value)}"))
            return None
        assert spec.items is not None  # the declaration check requires it
        return [_compound(spec.items, item, f"{at}[{n}]", problems) for n, item in enumerate(value)]
    if spec.type == "object":
        if not isinstance(value, Mapping):
            problems.append((at, f"must be a mapping of {', '.join(spec.fields or {})}, got {_kind_of(value)}"))
            return None
        fields = spec.fields or {}
        out: dict[str, Any] = {}
        for name in value:
            if name not in fields:
                problems.append((f"{at}.{name}", f"is not a field; fields: {', '.join(fields)}"))
        for name, field_spec in fields.items():
            where = f"{at}.{name}"
            if name in value and value[name] is not None:
                out[name] = _compound(field_spec, value[name], where, problems)
            elif field_spec.required:
                problems.append((where, "is required and missing"))
            else:
                out[name] = _compound(field_spec, field_spec.default, where, problems)
        return out
    try:
        return coerce_value(spec, value)
    except ValueError as exc:
        problems.append((at, str(exc)))
        return None


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _decimal(value: Any) -> Decimal:
    return amount_value(value, field="value", allow_zero=True)


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.match(value.strip()):
        return int(value.strip())
    raise ValueError(f"must be a whole number, got {value!r}")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"must be true or false, got {value!r}")


def _stringlike(kind: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"must be a string, got {type(value).__name__} {value!r}")
    text = str(value)
    if kind == "account" and not _ACCOUNT.match(text):
        raise ValueError(f"an account id is 1-32 digits, such as \"1001\"; got {text!r}")
    if kind == "address" and not _ADDRESS.match(text):
        raise ValueError(f"an address is 1-200 characters of letters, digits and :._- ; got {text!r}")
    if kind == "asset" and not _ASSET.match(text):
        raise ValueError(f"an asset is 1-20 capital letters or digits, such as \"USDT\"; got {text!r}")
    if kind == "string" and len(text) > MAX_STRING:
        raise ValueError(f"is longer than {MAX_STRING} characters")
    return text


def _check_bounds(spec: InputSpec, value: Decimal | int) -> None:
    low = _bound_value(spec, spec.min)
    high = _bound_value(spec, spec.max)
    if low is not None and value < low:
        raise ValueError(f"must be at least {spec.min}, got {_canonical(value)}")
    if high is not None and value > high:
        raise ValueError(f"must be at most {spec.max}, got {_canonical(value)}")


def _bound_value(spec: InputSpec, bound: str | int | None) -> Decimal | int | None:
    if bound is None:
        return None
    return _decimal(bound) if spec.type == "decimal" else _integer(bound)


def _canonical(value: Any) -> str:
    if isinstance(value, Decimal):
        return format_amount(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _canonical_enum(kind: str, entry: str) -> str:
    if kind == "decimal":
        try:
            return format_amount(_decimal(entry))
        except ValueError:
            return entry
    return entry


def check_input_declaration(spec: InputSpec) -> list[Issue]:
    """Problems with one input's declaration, as (field below the input, message)."""
    issues: list[Issue] = _compound_declaration(spec)
    kind = spec.type
    numeric = kind in ("decimal", "integer")
    for name in ("min", "max"):
        bound = getattr(spec, name)
        if bound is None:
            continue
        if not numeric:
            issues.append(((name,), f"{name} applies only to decimal and integer inputs, not {kind}"))
            continue
        if kind == "integer" and not isinstance(bound, int):
            issues.append(((name,), f"{name} of an integer input must be a whole number, got {bound!r}"))
            continue
        try:
            _bound_value(spec, bound)
        except ValueError as exc:
            issues.append(((name,), f"{name} {exc}"))
    if not any(at[:1] in (("min",), ("max",)) for at, _ in issues) and spec.min is not None and spec.max is not None:
        low, high = _bound_value(spec, spec.min), _bound_value(spec, spec.max)
        assert low is not None and high is not None
        if low > high:
            issues.append((("min",), f"min {spec.min} is larger than max {spec.max}"))
    if spec.pattern is not None:
        if kind not in _STRINGLIKE:
            issues.append((("pattern",), f"pattern applies only to string-like inputs, not {kind}"))
        else:
            try:
                re.compile(spec.pattern)
            except re.error as exc:
                issues.append((("pattern",), f"pattern is not a valid regular expression: {exc}"))
    if spec.enum is not None:
        if kind == "boolean":
            issues.append((("enum",), "enum does not apply to boolean inputs"))
        elif kind == "decimal":
            for i, entry in enumerate(spec.enum):
                try:
                    _decimal(entry)
                except ValueError as exc:
                    issues.append((("enum", i), f"enum entry {exc}"))
    if spec.default is not None and not issues and kind not in _COMPOUND:
        if kind == "boolean" and not isinstance(spec.default, bool):
            issues.append((("default",), f"the default of a boolean input is true or false, got "
                                         f"{spec.default!r}"))
        else:
            try:
                coerce_value(spec, spec.default)
            except ValueError as exc:
                issues.append((("default",), f"default {exc}"))
    return issues


def _compound_declaration(spec: InputSpec) -> list[Issue]:
    """Problems with ``items``/``fields``/``min_items``/``max_items``, and with defaults of a list."""
    issues: list[Issue] = []
    kind = spec.type
    if kind == "list":
        if spec.items is None:
            issues.append(((), "a list input needs items: (the type of each item)"))
        elif spec.items.type == "list":
            issues.append((("items", "type"), "a list of lists is not supported; use a list of objects"))
        if spec.default is not None:
            issues.append((("default",), "a list input has no default; give it when the run starts"))
        for name in ("min_items", "max_items"):
            bound = getattr(spec, name)
            if bound is not None and not 0 <= bound <= MAX_ITEMS:
                issues.append(((name,), f"{name} must be between 0 and {MAX_ITEMS}, got {bound}"))
        if spec.min_items is not None and spec.max_items is not None and spec.min_items > spec.max_items:
            issues.append((("min_items",), f"min_items {spec.min_items} is larger than max_items {spec.max_items}"))
    else:
        for name in ("items", "min_items", "max_items"):
            if getattr(spec, name) is not None:
                issues.append(((name,), f"{name} applies only to list inputs, not {kind}"))
    if kind == "object":
        if not spec.fields:
            issues.append(((), "an object input needs fields: (each field's name and type)"))
        for name, field_spec in (spec.fields or {}).items():
            if field_spec.type in _COMPOUND:
                issues.append((("fields", name, "type"), "an object's fields are single values "
                                                         "(decimal, string, account, ...), not lists or objects"))
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or len(name) > 64:
                issues.append((("fields", name), f"field name {name!r} must be an identifier (letters, digits, _)"))
        if spec.default is not None:
            issues.append((("default",), "an object input has no default"))
    elif spec.fields is not None:
        issues.append((("fields",), f"fields applies only to object inputs (the items of a list), not {kind}"))
    return issues


def input_problems(spec: WorkflowSpec, raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every problem with ``raw`` as (input name, message); empty when valid."""
    problems: list[tuple[str, str]] = []
    for name in raw:
        if name not in spec.inputs:
            known = ", ".join(spec.inputs) or "(none)"
            problems.append((name, f"is not an input of workflow {spec.name!r}; inputs: {known}"))
    for name, ispec in spec.inputs.items():
        if name in raw:
            try:
                coerce_value(ispec, raw[name])
            except ValueError as exc:
                problems.append((name, str(exc)))
        elif ispec.required:
            problems.append((name, f"is required by workflow {spec.name!r} and has no default"))
    return problems


def coerce_inputs(spec: WorkflowSpec, raw: Mapping[str, Any], *, source: str = "inputs") -> dict[str, Any]:
    """Typed input values for a run: given values checked and converted, defaults applied.

    ``source`` says where the values came from (``-i``, ``schedule.inputs``) for the message.

    Raises:
        ParameterError: naming the first bad input; the message lists every problem.
    """
    problems = input_problems(spec, raw)
    if problems:
        first_name, first_msg = problems[0]
        rest = "; ".join(f"{n}: {m}" for n, m in problems[1:])
        message = f"{first_msg} (in {source})" + (f"; also {rest}" if rest else "")
        raise ParameterError(first_name, message)
    out: dict[str, Any] = {}
    for name, ispec in spec.inputs.items():
        value = raw.get(name, ispec.default)
        out[name] = coerce_value(ispec, value)
    return out
