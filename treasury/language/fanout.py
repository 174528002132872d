"""Fan-out: a ``for_each`` step becomes one step instance per item of a list input.

    - id: pay
      for_each: "${{ inputs.payouts }}"     # a list input, known when the run starts
      concurrency: 10                      # at most 10 instances running at once
      op: withdraw
      key: "sub-${{ item.account }}"       # each instance's key profile, from its item
      params: {quantity: "${{ item.amount }}", ...}

Each instance has a deterministic id, ``pay[0007]`` (the step id and the item's index), so
its client id (run id + hash of the instance id, ``treasury.execution.ids``) is unique and
the same on every retry or redelivery. The list comes from the run's inputs only: an
approval must bind the final list, and a step's result is not known when approval is asked.
Everything here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from treasury.language.positions import Path_
from treasury.language.references import for_each_input, item_ref_problem
from treasury.language.spec import StepSpec, WorkflowSpec
from treasury.language.templates import (
    OPEN,
    TEMPLATE,
    TemplateContext,
    TemplateError,
    lookup,
    parse_ref,
    refs_in_string,
    render_scalar,
)

INDEX_DIGITS = 4  # up to MAX_ITEMS (inputs.py) items, sorted in order as text
_INSTANCE = re.compile(r"^(?P<step>[a-z0-9][a-z0-9_-]*)\[(?P<index>[0-9]+)\]$")

NOT_FROM_RESULTS = (
    "for_each runs over a list input (${{ inputs.<name> }}); a list from a step's result is not "
    "known when approval is asked, so no approval could bind it"
)


@dataclass(frozen=True)
class Instance:
    """One item of a for_each step: its instance id, the step it belongs to, and the item."""

    id: str
    step_id: str
    index: int
    item: Any


def instance_id(step_id: str, index: int) -> str:
    """``pay``, 7 -> ``pay[0007]``."""
    return f"{step_id}[{index:0{INDEX_DIGITS}d}]"


def split_instance(step_instance_id: str) -> tuple[str, int | None]:
    """``pay[0007]`` -> (``pay``, 7); a plain step id -> (the id, None)."""
    m = _INSTANCE.match(step_instance_id)
    if m is None:
        return step_instance_id, None
    return m.group("step"), int(m.group("index"))


def items_of(spec: WorkflowSpec, step: StepSpec, inputs: Mapping[str, Any]) -> list[Any]:
    """The items a for_each step runs over, from the run's typed (or stored) inputs.

    Raises:
        TemplateError: ``for_each`` does not name a list input, or the input is not a list.
    """
    assert step.for_each is not None
    m = TEMPLATE.fullmatch(step.for_each.strip())
    if m is None or for_each_input(spec, step.for_each) is None:
        raise TemplateError(f"step {step.id!r}: for_each must be ${{{{ inputs.<a list input> }}}}")
    name = parse_ref(m.group(1)).parts[0]
    value = inputs.get(name)
    if not isinstance(value, list):
        raise TemplateError(f"step {step.id!r}: input {name!r} is not a list", ref=m.group(1))
    return list(value)


def expand(spec: WorkflowSpec, inputs: Mapping[str, Any]) -> dict[str, list[Instance]]:
    """Every for_each step's instances, in item order, by step id (other steps are absent).

    Raises:
        TemplateError: see ``items_of``.
    """
    out: dict[str, list[Instance]] = {}
    for step in spec.steps:
        if step.for_each is not None:
            items = items_of(spec, step, inputs)
            out[step.id] = [Instance(instance_id(step.id, n), step.id, n, item) for n, item in enumerate(items)]
    return out


def expanded(spec: WorkflowSpec, inputs: Mapping[str, Any]) -> WorkflowSpec:
    """``spec`` with each for_each step replaced by its instances, in item order.

    Each instance is the step with its own id, its key and params with ``${{ item... }}``
    filled in from its item (other templates stay for later), and explicit ``needs``: the
    step's own dependencies, where a dependency on a for_each step means every instance of it.
    A spec with no for_each step is returned as it is.

    Raises:
        TemplateError: a for_each names no list input, or an item lacks a field it uses.
    """
    groups = expand(spec, inputs)
    if not groups:
        return spec
    deps = spec.dependencies()
    widened: dict[str, list[str]] = {}

    def widen(ids: Sequence[str]) -> list[str]:
        out: list[str] = []
        for d in ids:
            out.extend(widened.get(d, [d]))
        return list(dict.fromkeys(out))

    steps: list[StepSpec] = []
    for step in spec.steps:
        needs = widen(deps[step.id])
        if step.id not in groups:
            steps.append(step.model_copy(update={"needs": needs}))
            continue
        instances = groups[step.id]
        # an empty list: what needs the step needs what it needed
        widened[step.id] = [i.id for i in instances] or needs
        for inst in instances:
            steps.append(step.model_copy(update={
                "id": inst.id, "needs": needs,
                "key": fill_item(step.key, inst.item), "params": fill_item(step.params, inst.item),
            }))
    return spec.model_copy(update={"steps": steps})


def fill_item(value: Any, item: Any) -> Any:
    """``value`` with every ``${{ item... }}`` replaced by the item's value (rendered as text);
    every other template is kept as written.

    Raises:
        TemplateError: the item lacks a field that is used.
    """
    if isinstance(value, str):
        if OPEN not in value:
            return value
        ctx = TemplateContext(item={"item": item})

        def substitute(m: re.Match[str]) -> str:
            ref = parse_ref(m.group(1))
            if ref.kind != "item":
                return m.group(0)
            return render_scalar(lookup(ref, ctx), ref)

        return TEMPLATE.sub(substitute, value)
    if isinstance(value, Mapping):
        return {k: fill_item(v, item) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [fill_item(v, item) for v in value]
    return value


def group_of(spec: WorkflowSpec, step_id: str) -> str | None:
    """The for_each step that ``step_id`` (of the expanded spec) is an instance of, or None."""
    base, index = split_instance(step_id)
    if index is None:
        return None
    try:
        return base if spec.step(step_id).for_each is not None else None
    except KeyError:
        return None


def fanout_problems(spec: WorkflowSpec) -> list[tuple[Path_, str]]:
    """Problems with ``for_each`` and templated ``key`` fields, as (path, message)."""
    out: list[tuple[Path_, str]] = []
    for i, step in enumerate(spec.steps):
        if step.for_each is not None:
            out.extend((("steps", i, "for_each"), m) for m in _for_each_problems(spec, step))
        if step.key is not None and OPEN in step.key and step.for_each is not None:
            out.extend((("steps", i, "key"), m) for m in _key_problems(spec, step, step.key))
    return out


def _for_each_problems(spec: WorkflowSpec, step: StepSpec) -> Sequence[str]:
    assert step.for_each is not None
    text = step.for_each.strip()
    try:
        refs = refs_in_string(text)
    except TemplateError as exc:
        return [str(exc)]
    if len(refs) != 1 or TEMPLATE.fullmatch(text) is None:
        return [f"for_each must be one template naming a list input, such as \"${{{{ inputs.payouts }}}}\"; "
                f"got {step.for_each!r}"]
    ref = refs[0]
    if ref.kind == "steps":
        return [NOT_FROM_RESULTS]
    if ref.kind != "inputs":
        return [f"for_each must name a list input (${{{{ inputs.<name> }}}}), not ${{{{ {ref.text} }}}}"]
    declared = spec.inputs.get(ref.parts[0])
    if declared is None:
        known = ", ".join(n for n, s in spec.inputs.items() if s.type == "list") or "none declared"
        return [f"for_each names unknown input {ref.parts[0]!r}; list inputs: {known}"]
    if declared.type != "list":
        return [f"for_each needs a list input; {ref.parts[0]!r} is a {declared.type} "
                "(declare it type: list with items:)"]
    return []


def _key_problems(spec: WorkflowSpec, step: StepSpec, key: str) -> Sequence[str]:
    try:
        refs = refs_in_string(key)
    except TemplateError as exc:
        return [str(exc)]
    problems: list[str] = []
    for ref in refs:
        if ref.kind == "item":
            message = item_ref_problem(spec, step, ref)
            if message:
                problems.append(message)
        elif ref.kind == "inputs":
            if ref.parts[0] not in spec.inputs:
                problems.append(f"${{{{ {ref.text} }}}} names unknown input {ref.parts[0]!r}")
        else:
            problems.append(f"${{{{ {ref.text} }}}}: a key profile is chosen from the item or the inputs only, "
                            "so it is known when approval is asked")
    return problems
