"""Templates in a workflow: where they may appear, and what each ``${{ ... }}`` may name.

Templates are resolved in step ``params`` only. Each one is a lookup of a declared input,
``run.id`` / ``run.requested_by``, or a field of the result of an operation step that runs
before it; a result field is checked against what the exchange answers for that operation.
Problems are (field path, message) pairs, located at the value by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from treasury.language.graph import Finding, StepGraph
from treasury.language.hints import listing, suggest
from treasury.language.positions import Path_
from treasury.language.spec import InputSpec, StepSpec, WorkflowSpec
from treasury.language.templates import OPEN, RUN_FIELDS, TEMPLATE, Ref, TemplateError, parse_ref, refs_in_string
from treasury.operations.registry import operations

# Result fields by operation, as each operation declares them (``OperationSpec.result_fields``:
# the exchange's response JSON as the runner stores it). Operations without them are not checked.
RESULT_FIELDS: Mapping[str, frozenset[str]] = {
    op.name: op.result_fields for op in operations() if op.result_fields is not None
}
# Operations whose result is a JSON list: a reference must start with an index.
LIST_RESULTS = frozenset(op.name for op in operations() if op.list_result)
# Free text where ``${{`` is just text (never resolved, so never refused).
PROSE = frozenset({"description", "comment"})
STRAY_TEMPLATE = "templates are resolved only in step params; this value would be used as written"


def stray_templates(data: Any) -> list[Path_]:
    """Paths of values outside step params (and prose) that hold ``${{``: they would be used as written."""
    out: list[Path_] = []

    def walk(value: Any, path: Path_) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in PROSE:
                    walk(v, (*path, k))
        elif isinstance(value, list):
            for n, v in enumerate(value):
                walk(v, (*path, n))
        elif isinstance(value, str) and OPEN in value:
            out.append(path)

    data = data if isinstance(data, dict) else {}
    for key, value in data.items():
        if key == "steps" and isinstance(value, list):
            for i, step in enumerate(value):
                if isinstance(step, dict):
                    # for_each, and a for_each step's key, hold templates (checked by fanout.py)
                    templated = {"for_each", "key"} if "for_each" in step else set()
                    for k, v in step.items():
                        if k not in PROSE and k != "params" and k not in templated:
                            walk(v, ("steps", i, k))
        elif key not in PROSE:
            walk(value, (key,))
    return out


def param_templates(
    graph: StepGraph, i: int, step: StepSpec, params: Mapping[str, Any]
) -> tuple[list[Finding], list[Path_]]:
    """Check every template in step ``i``'s params.

    Returns the problems (paths from the file root) and the paths below params that hold a
    template.
    """
    problems: list[Finding] = []
    templated: list[Path_] = []

    def walk(value: Any, path: Path_) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, (*path, k))
        elif isinstance(value, list):
            for n, v in enumerate(value):
                walk(v, (*path, n))
        elif isinstance(value, str):
            where = ("steps", i, "params", *path)
            if "{{" in TEMPLATE.sub("", value).replace(OPEN, "") or "}}" in TEMPLATE.sub("", value):
                problems.append((where, "looks like a template, but templates are written ${{ inputs.<name> }}"))
            if OPEN not in value:
                return
            templated.append(path)
            try:
                refs = refs_in_string(value)
            except TemplateError as exc:
                problems.append((where, str(exc)))
                return
            for ref in refs:
                message = ref_problem(graph, step, ref)
                if message:
                    problems.append((where, message))

    walk(params, ())
    return problems, templated


def ref_problem(graph: StepGraph, step: StepSpec, ref: Ref) -> str | None:
    """What is wrong with reference ``ref`` in ``step``, or None when it names something it may use."""
    spec: WorkflowSpec = graph.spec
    shown = f"${{{{ {ref.text} }}}}"
    if ref.kind == "inputs":
        name = ref.parts[0]
        if name not in spec.inputs:
            known = f"; inputs: {', '.join(spec.inputs)}" if spec.inputs else "; no inputs declared"
            hint = suggest(name, spec.inputs) or known
            return f"{shown} names unknown input {name!r}{hint}"
        return None
    if ref.kind == "run":
        if ref.parts[0] not in RUN_FIELDS:
            return f"{shown}: a run has only {' and '.join('run.' + f for f in RUN_FIELDS)}"
        return None
    if ref.kind == "item":
        return item_ref_problem(spec, step, ref)
    target_id, *fields = ref.parts
    if target_id not in graph.index:
        return f"{shown} names unknown step {target_id!r}{suggest(target_id, graph.index)}"
    if target_id == step.id:
        return f"{shown}: a step cannot use its own result"
    target = spec.steps[graph.index[target_id]]
    if target.approval is not None:
        return f"{shown}: step {target_id!r} is an approval and has no result"
    if target_id not in graph.ancestors(step.id):
        return (f"{shown}: step {target_id!r} does not run before {step.id!r}; "
                f"add it to the needs of {step.id!r}")
    return result_field_problem(shown, target.op or "", fields)


def item_ref_problem(spec: WorkflowSpec, step: StepSpec, ref: Ref) -> str | None:
    """What is wrong with ``${{ item... }}`` in ``step``: it needs for_each over a list input,
    and a field must be one of the items' declared fields."""
    shown = f"${{{{ {ref.text} }}}}"
    if step.for_each is None:
        return f"{shown}: only a step with for_each has an item"
    source = for_each_input(spec, step.for_each)
    if source is None or source.items is None:
        return None  # the for_each itself is reported
    fields = source.item_fields
    if not ref.parts:
        if fields is not None:
            return (f"{shown} is a whole item, which has fields ({', '.join(fields)}); a template stands "
                    "for a single value: use item.<field>")
        return None
    if fields is None:
        return f"{shown}: the items are single {source.items.type} values, with no fields; use ${{{{ item }}}}"
    if ref.parts[0] not in fields:
        return f"{shown}: an item has no field {ref.parts[0]!r}{suggest(ref.parts[0], fields) or listing(list(fields))}"
    if len(ref.parts) > 1:
        return f"{shown}: item.{ref.parts[0]} is a single value, with no fields"
    return None


def for_each_input(spec: WorkflowSpec, text: str) -> InputSpec | None:
    """The list input that ``for_each: ${{ inputs.NAME }}`` names, or None."""
    m = TEMPLATE.fullmatch(text.strip())
    if m is None:
        return None
    try:
        ref = parse_ref(m.group(1))
    except TemplateError:
        return None
    if ref.kind != "inputs":
        return None
    found = spec.inputs.get(ref.parts[0])
    return found if found is not None and found.type == "list" else None


def result_field_problem(shown: str, op_name: str, fields: Sequence[str]) -> str | None:
    """What is wrong with using ``fields`` of ``op_name``'s result, or None (also when unknown)."""
    if op_name in LIST_RESULTS:
        if not fields[0].isdigit():
            return f"{shown}: the result of {op_name} is a list; index it, as in result.0.{fields[0]}"
        return None
    known = RESULT_FIELDS.get(op_name)
    if known is None or fields[0] in known:
        return None
    return (f"{shown}: the result of {op_name} has no field {fields[0]!r}"
            f"{suggest(fields[0], known) or listing(sorted(known))}")
