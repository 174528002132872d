"""``${{ ... }}`` templates: resolved by lookup only, never by evaluation.

The only expressions are dotted paths::

    ${{ inputs.<name> }}
    ${{ steps.<id>.result.<field>[.<field>...] }}     (a digit part indexes a list)
    ${{ run.<field> }}                                (run.id, run.requested_by)
    ${{ item }}, ${{ item.<field> }}                  (in a ``for_each`` step: this instance's item)

Anything else inside ``${{ }}`` (operators, calls, filters, brackets, quotes) is a
``TemplateError``. Resolution walks plain mappings and lists with ``[]``; it never calls
``getattr``, ``eval`` or ``str.format``, so there is nothing to escape from. Text outside a
template is kept exactly as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from treasury.errors import WorkflowError
from treasury.models import format_amount

TEMPLATE = re.compile(r"\$\{\{\s*([^{}]*?)\s*\}\}")
OPEN = "${{"

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_STEP_ID = r"[a-z0-9][a-z0-9_-]*"
_FIELD = r"[A-Za-z0-9_][A-Za-z0-9_-]*"
_INPUT_REF = re.compile(rf"^inputs\.({_IDENT})$")
_STEP_REF = re.compile(rf"^steps\.({_STEP_ID})\.result((?:\.{_FIELD})+)$")
_RUN_REF = re.compile(rf"^run\.({_IDENT})$")
_ITEM_REF = re.compile(rf"^item((?:\.{_FIELD})*)$")

RUN_FIELDS = ("id", "requested_by")
RefKind = Literal["inputs", "steps", "run", "item"]


class TemplateError(WorkflowError, ValueError):
    """A template is malformed, or names something that is not there. ``ref`` is its text."""

    def __init__(self, message: str, ref: str | None = None) -> None:
        self.ref = ref
        super().__init__(message)


@dataclass(frozen=True)
class Ref:
    """One reference. ``parts`` excludes the kind and, for steps, the word ``result``:
    ``steps.pay.result.orderId`` is ``Ref("steps", ("pay", "orderId"), ...)``."""

    kind: RefKind
    parts: tuple[str, ...]
    text: str

    @property
    def step(self) -> str | None:
        return self.parts[0] if self.kind == "steps" else None


@dataclass(frozen=True)
class TemplateContext:
    """What templates may look up: typed inputs, finished steps' results, and the run."""

    inputs: Mapping[str, Any] = field(default_factory=dict)
    steps: Mapping[str, Any] = field(default_factory=dict)
    run: Mapping[str, Any] = field(default_factory=dict)
    # a for_each step instance's item, as a one-entry mapping {"item": value}; empty elsewhere
    item: Mapping[str, Any] = field(default_factory=dict)


def parse_ref(expr: str) -> Ref:
    """Parse the text between ``${{`` and ``}}``.

    Raises:
        TemplateError: anything but a supported dotted path.
    """
    text = expr.strip()
    if m := _INPUT_REF.match(text):
        return Ref("inputs", (m.group(1),), text)
    if m := _STEP_REF.match(text):
        return Ref("steps", (m.group(1), *m.group(2)[1:].split(".")), text)
    if m := _RUN_REF.match(text):
        return Ref("run", (m.group(1),), text)
    if m := _ITEM_REF.match(text):
        return Ref("item", tuple(m.group(1)[1:].split(".")) if m.group(1) else (), text)
    raise TemplateError(
        f"template ${{{{ {text} }}}} is not a lookup; templates are only inputs.<name>, "
        "steps.<id>.result.<field>, run.id / run.requested_by or item / item.<field> "
        "(nothing is evaluated)",
        ref=text,
    )


def refs_in_string(text: str) -> list[Ref]:
    """Every reference in one string.

    Raises:
        TemplateError: a malformed expression, or a ``${{`` that is never closed.
    """
    refs = [parse_ref(m.group(1)) for m in TEMPLATE.finditer(text)]
    if OPEN in TEMPLATE.sub("", text):
        raise TemplateError(
            f"unclosed or malformed template in {_clip(text)!r}; write ${{{{ inputs.<name> }}}}",
        )
    return refs


def find_refs(value: Any) -> list[Ref]:
    """Every reference in a nested structure of mappings, lists and strings (keys included).

    Raises:
        TemplateError: the first malformed template found.
    """
    out: list[Ref] = []
    if isinstance(value, str):
        out.extend(refs_in_string(value))
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(k, str):
                out.extend(refs_in_string(k))
            out.extend(find_refs(v))
    elif isinstance(value, list | tuple):
        for item in value:
            out.extend(find_refs(item))
    return out


def has_template(value: Any) -> bool:
    """True when a string (or anything nested) contains ``${{``."""
    if isinstance(value, str):
        return OPEN in value
    if isinstance(value, Mapping):
        return any(has_template(k) or has_template(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_template(v) for v in value)
    return False


def lookup(ref: Ref, ctx: TemplateContext) -> Any:
    """The raw value a reference names.

    Raises:
        TemplateError: naming the reference when any part is missing.
    """
    if ref.kind == "inputs":
        return _get(ctx.inputs, ref.parts[0], ref, "no input")
    if ref.kind == "run":
        return _get(ctx.run, ref.parts[0], ref, "no run field")
    if ref.kind == "item":
        if "item" not in ctx.item:
            raise TemplateError(f"${{{{ {ref.text} }}}}: only a step with for_each has an item", ref=ref.text)
        return _walk(ctx.item["item"], ref.parts, ref)
    step_id, *fields = ref.parts
    return _walk(_get(ctx.steps, step_id, ref, "no result yet for step"), fields, ref)


def _walk(current: Any, fields: Sequence[str], ref: Ref) -> Any:
    """Follow ``fields`` down mappings (by key) and lists (by a digit part)."""
    if current is None:
        raise TemplateError(f"${{{{ {ref.text} }}}} is null", ref=ref.text)
    for part in fields:
        if isinstance(current, Mapping):
            current = _get(current, part, ref, "no field")
        elif isinstance(current, list | tuple) and part.isdigit():
            index = int(part)
            if index >= len(current):
                raise TemplateError(f"${{{{ {ref.text} }}}}: list has no item {index}", ref=ref.text)
            current = current[index]
        else:
            raise TemplateError(
                f"${{{{ {ref.text} }}}}: cannot look up {part!r} in a {_kind(current)}", ref=ref.text
            )
    return current


def render_scalar(value: Any, ref: Ref) -> str:
    """Render a looked-up value as text: Decimals plain, booleans true/false.

    Raises:
        TemplateError: the value is null, a list or a mapping (only scalars fill parameters).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format_amount(value)
    if isinstance(value, float):
        # A float from a JSON result: go through its shortest repr, never binary noise.
        return format_amount(Decimal(repr(value)))
    if isinstance(value, int | str):
        return str(value)
    raise TemplateError(
        f"${{{{ {ref.text} }}}} is a {_kind(value)}; a template can only stand for a single value",
        ref=ref.text,
    )


def resolve_string(text: str, ctx: TemplateContext) -> str:
    """Replace every template in ``text`` by its looked-up value.

    Raises:
        TemplateError: malformed template or missing lookup.
    """
    refs_in_string(text)  # syntax first, so a bad template never half-renders

    def substitute(m: re.Match[str]) -> str:
        ref = parse_ref(m.group(1))
        return render_scalar(lookup(ref, ctx), ref)

    # A function replacement is inserted literally: backslashes or group syntax in a
    # looked-up value are never interpreted.
    return TEMPLATE.sub(substitute, text)


def resolve(value: Any, ctx: TemplateContext) -> Any:
    """Resolve every template in a nested structure; non-string scalars are returned as they are.

    Raises:
        TemplateError: malformed template or missing lookup, naming the reference.
    """
    if isinstance(value, str):
        return resolve_string(value, ctx) if OPEN in value else value
    if isinstance(value, Mapping):
        return {k: resolve(v, ctx) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, ctx) for v in value]
    return value


def is_resolvable(value: Any, *, available_inputs: set[str], finished_steps: set[str],
                  has_item: bool = False) -> bool:
    """True when every template in ``value`` can be looked up now (run fields always can; the
    item when ``has_item``, in a for_each step instance).

    A malformed template is never resolvable. Result fields are not checked here: a
    finished step's missing field is reported by ``resolve``.
    """
    try:
        refs = find_refs(value)
    except TemplateError:
        return False
    for ref in refs:
        if ref.kind == "inputs" and ref.parts[0] not in available_inputs:
            return False
        if ref.kind == "steps" and ref.parts[0] not in finished_steps:
            return False
        if ref.kind == "run" and ref.parts[0] not in RUN_FIELDS:
            return False
        if ref.kind == "item" and not has_item:
            return False
    return True


def _get(mapping: Mapping[str, Any], key: str, ref: Ref, what: str) -> Any:
    # Membership on a plain mapping: no attribute access, no __missing__ tricks on dict subclasses.
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise TemplateError(f"${{{{ {ref.text} }}}}: {what} {key!r}", ref=ref.text)
    value = mapping[key]
    if value is None:
        raise TemplateError(f"${{{{ {ref.text} }}}}: {key!r} is null", ref=ref.text)
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
