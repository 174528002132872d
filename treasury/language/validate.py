"""Everything about a workflow beyond its shape, reported all at once and located.

``validate_workflow`` checks, for a file that ``loader`` already parsed:

- the step graph: duplicate ids, unknown or repeated ``needs``, cycles (an approval
  guards every operation step after it in the file, and that edge counts too);
- operations: known names, parameters (unknown, missing, wrong type), and a parameter
  that the runner fills (the client id) set by hand;
- templates: only in ``params``; each one a lookup of a declared input, ``run.id`` /
  ``run.requested_by``, or a field of an earlier operation step's result;
- key profiles: known, and holding the permission the operation needs;
- approvals: known approvers and groups, and a quorum that the eligible people can reach;
- the schedule block: its inputs give every required input and fit their types;
- the policy (when one is given and ``treasury.policy`` provides the checks): per-transaction
  limits and allowlists for literal parameters, and approval tiers.

About the quorum: the requester never counts toward it. Validation does not know who will
request a run, so it checks ``quorum <= eligible approvers``; a run requested by one of the
eligible people is refused when it starts or is planned (``RunService.check_quorums``: it
then needs ``quorum <= eligible - 1``), before anything is stored.

The step-graph checks live in ``treasury.language.graph`` and the template checks in
``treasury.language.references``; this module runs them all and locates every problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from treasury.errors import Problem, TreasuryError, WorkflowInvalid
from treasury.keys import KeySpec
from treasury.language.fanout import fanout_problems
from treasury.language.graph import StepGraph
from treasury.language.hints import listing, suggest
from treasury.language.inputs import input_problems
from treasury.language.loader import LoadedWorkflow, Path_, cap_problems, load_workflow
from treasury.language.references import (
    LIST_RESULTS,
    RESULT_FIELDS,
    STRAY_TEMPLATE,
    param_templates,
    stray_templates,
)
from treasury.language.spec import StepSpec
from treasury.language.templates import OPEN, TEMPLATE
from treasury.operations.registry import REGISTRY, OperationSpec, param_problems
from treasury.people.approvers import Approvers
from treasury.policy import ApprovalGuard, check_tiers, evaluate_static, required_approval


def validate_workflow(
    loaded: LoadedWorkflow,
    *,
    keys: Mapping[str, KeySpec] | None,
    approvers: Approvers | None,
    policy: Any | None = None,
    unavailable_keys: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Every problem beyond the schema, sorted by position; empty when the workflow is valid.

    ``keys``/``approvers``/``policy`` of None skip the checks that need them.
    ``unavailable_keys`` maps a key profile to why its secret cannot be had here (a variable
    that is not set); a step using it gets that problem at its ``key``.
    """
    checker = _Checker(loaded, keys, approvers, policy, unavailable_keys or {})
    checker.run()
    return cap_problems(sorted(set(checker.problems), key=lambda p: (p.line, p.col, p.message)))


def ensure_valid(
    loaded: LoadedWorkflow,
    *,
    keys: Mapping[str, KeySpec] | None,
    approvers: Approvers | None,
    policy: Any | None = None,
) -> LoadedWorkflow:
    """``validate_workflow``, raising instead of returning.

    Raises:
        WorkflowInvalid: with every problem.
    """
    problems = validate_workflow(loaded, keys=keys, approvers=approvers, policy=policy)
    if problems:
        raise WorkflowInvalid(problems)
    return loaded


def check_files(
    paths: Iterable[Path | str],
    *,
    keys: Mapping[str, KeySpec] | None,
    approvers: Approvers | None,
    policy: Any | None = None,
    unavailable_keys: Mapping[str, str] | None = None,
) -> dict[str, list[Problem]]:
    """Load and validate each file; also refuses two files with the same workflow ``name``.

    Returns every file (as given) with its problems (an empty list when valid).
    ``unavailable_keys``: see ``validate_workflow``.
    """
    out: dict[str, list[Problem]] = {}
    names: dict[str, str] = {}
    for path in paths:
        source = str(path)
        try:
            loaded = load_workflow(Path(path))
        except WorkflowInvalid as exc:
            out[source] = _with_partial_checks(exc, keys=keys, approvers=approvers, policy=policy,
                                               unavailable_keys=unavailable_keys)
            continue
        problems = validate_workflow(loaded, keys=keys, approvers=approvers, policy=policy,
                                     unavailable_keys=unavailable_keys)
        name = loaded.spec.name
        if name in names and names[name] != source:
            problems.append(loaded.problem(("name",), f"workflow name {name!r} is also used by {names[name]}"))
        names.setdefault(name, source)
        out[source] = sorted(problems, key=lambda p: (p.line, p.col, p.message))
    return out


def _with_partial_checks(
    exc: WorkflowInvalid,
    *,
    keys: Mapping[str, KeySpec] | None,
    approvers: Approvers | None,
    policy: Any | None,
    unavailable_keys: Mapping[str, str] | None = None,
) -> list[Problem]:
    """The schema's problems plus, when enough of the file passed the schema, every other
    check on that part, so one pass reports everything (the loader leaves out unknown fields
    and broken steps; a problem that names a dropped step is its echo and is left out)."""
    problems = list(exc.problems)
    partial = exc.partial
    if partial is None:
        return problems
    dropped = [f"{step_id!r}" for step_id in exc.dropped_steps]
    seen = {(p.line, p.col, p.message) for p in problems}
    for p in validate_workflow(partial, keys=keys, approvers=approvers, policy=policy,
                               unavailable_keys=unavailable_keys):
        if (p.line, p.col, p.message) in seen or any(d in p.message for d in dropped):
            continue
        problems.append(p)
    return sorted(problems, key=lambda p: (p.line, p.col, p.message))


class _Checker:
    def __init__(
        self,
        loaded: LoadedWorkflow,
        keys: Mapping[str, KeySpec] | None,
        approvers: Approvers | None,
        policy: Any | None,
        unavailable_keys: Mapping[str, str] | None = None,
    ) -> None:
        self.loaded = loaded
        self.spec = loaded.spec
        self.keys = keys
        self.unavailable_keys = unavailable_keys or {}
        self.approvers = approvers
        self.policy = policy
        self.problems: list[Problem] = []
        self.graph = StepGraph(self.spec)

    def add(self, path: Path_, message: str, *, at_value: bool = False) -> None:
        self.problems.append(self.loaded.problem(path, message, at_value=at_value))

    def run(self) -> None:
        for path, message in self.graph.id_problems(self.loaded.positions):
            self.add(path, message)
        for path, message in self.graph.needs_problems():
            self.add(path, message)
        for path, message in self.graph.cycle_problems():
            self.add(path, message)
        for path in stray_templates(self.loaded.data):
            self.add(path, STRAY_TEMPLATE, at_value=True)
        for path, message in fanout_problems(self.spec):
            self.add(path, message, at_value=True)
        for i, step in enumerate(self.spec.steps):
            if step.approval is not None:
                self.check_approval(i, step)
            else:
                self.check_operation(i, step)
        self.check_schedule()

    # ------------------------------------------------------------------ operation steps

    def check_operation(self, i: int, step: StepSpec) -> None:
        assert step.op is not None
        op = REGISTRY.get(step.op)
        if op is None:
            self.add(("steps", i, "op"), f"unknown operation {step.op!r}{suggest(step.op, REGISTRY)} "
                                         "(`treasury ops` lists them)")
        params = step.params or {}
        template_problems, templated = param_templates(self.graph, i, step, params)
        for path, message in template_problems:
            self.add(path, message, at_value=True)
        templates_ok = not template_problems
        if op is not None:
            literal_ok = self.check_params(i, op, params, templated)
            self.check_key(i, step, op)
            # The policy reads amounts and destinations from the params: only when they make sense.
            if self.policy is not None and literal_ok and templates_ok:
                self.check_policy(i, step, op, params)

    def check_params(self, i: int, op: OperationSpec, params: Mapping[str, Any], templated: list[Path_]) -> bool:
        """Parameter problems; returns True when the literal parameters are all valid."""
        ok = True
        base: Path_ = ("steps", i, "params")
        if op.client_id_field:
            for path in _keys_named(params, op.client_id_field):
                ok = False
                self.add((*base, *path), f"{op.client_id_field} is set by the runner (from the run and step "
                                         "ids, so a retry can be recognised); remove it")
        known = list(op.params_model.model_fields)
        for loc, msg in param_problems(op, params):
            path = _loc_path(loc)
            under_template = any(path[: len(t)] == t for t in templated)
            if msg.startswith("unknown parameter"):
                self.add((*base, *path), f"unknown parameter {path[-1]!r} for {op.name}"
                                         f"{suggest(str(path[-1]), known) or listing(known)}")
            elif msg.startswith("required by"):
                self.add((*base, *path[:-1]), f"missing parameter {field_of(path)!r}, required by {op.name}")
            elif under_template and ("valid list" in msg or "valid dictionary" in msg):
                self.add((*base, *path), f"parameter {field_of(path)!r} needs a "
                                         f"{'list' if 'list' in msg else 'mapping'}; a template stands "
                                         "for a single value")
            elif under_template:
                continue  # checked again once the template is resolved, before anything is sent
            else:
                self.add((*base, *path), f"parameter {field_of(path)!r}: {_plain(msg)}")
            ok = False
        return ok

    def check_key(self, i: int, step: StepSpec, op: OperationSpec) -> None:
        if self.keys is None or step.key is None or OPEN in step.key:
            return  # a templated key (for_each) is each instance's, checked when the run starts
        profile = self.keys.get(step.key)
        path = ("steps", i, "key")
        if profile is None:
            known = ", ".join(sorted(self.keys)) or "(none)"
            self.add(path, f"unknown key profile {step.key!r}{suggest(step.key, self.keys)}; "
                           f"profiles in keys.yaml: {known}")
        elif op.permission not in profile.permissions:
            has = ", ".join(sorted(p.value for p in profile.permissions))
            self.add(path, f"key profile {step.key!r} lacks the {op.permission.value!r} permission that "
                           f"{op.name} needs (it has: {has})")
        if profile is not None and step.key in self.unavailable_keys:
            self.add(path, f"key profile {step.key!r} {self.unavailable_keys[step.key]}", at_value=True)

    # ------------------------------------------------------------------ approval steps

    def check_approval(self, i: int, step: StepSpec) -> None:
        approval = step.approval
        assert approval is not None
        base: Path_ = ("steps", i, "approval")
        eligible: set[str] = set()
        unknown = False
        if self.approvers is None:
            if approval.groups:
                return  # group sizes are unknown without people.yaml
            eligible = approval.users
        else:
            for j, ref in enumerate(approval.approvers):
                try:
                    eligible |= self.approvers.expand_one(ref)
                except ValueError as exc:
                    unknown = True
                    self.add((*base, "approvers", j), str(exc))
        if not unknown and approval.quorum > len(eligible):
            who = ", ".join(sorted(eligible)) or "nobody"
            self.add((*base, "quorum"), f"quorum {approval.quorum} is larger than the {len(eligible)} eligible "
                                        f"approver{'s' if len(eligible) != 1 else ''} ({who})")

    # ------------------------------------------------------------------ schedule

    def check_schedule(self) -> None:
        schedule = self.spec.schedule
        if schedule is None:
            return
        for name, message in input_problems(self.spec, schedule.inputs):
            if name in schedule.inputs:
                self.add(("schedule", "inputs", name), f"schedule input {name!r} {message}")
            else:
                self.add(("schedule", "inputs"), f"input {name!r} is required and has no default; "
                                                 "give it in schedule.inputs")

    # ------------------------------------------------------------------ policy

    def check_policy(self, i: int, step: StepSpec, op: OperationSpec, params: Mapping[str, Any]) -> None:
        policy = self.policy
        if policy is None:
            return
        base: Path_ = ("steps", i, "params")
        try:
            verdicts = evaluate_static(policy, op.name, params)
            tiers = required_approval(policy, op.name, self._bounded(params))
        except (TreasuryError, ValueError, TypeError, LookupError) as exc:
            self.add(base, f"policy check failed: {exc}")
            return
        for verdict in verdicts:
            if not verdict.allowed:
                self.add(base, f"policy {verdict.rule}: {verdict.message}")
        if not tiers:
            return
        members = dict(self.approvers.users) if self.approvers is not None else {}
        guards = []
        for guard_id in self.spec.guards().get(step.id, []):
            approval = self.spec.steps[self.graph.index[guard_id]].approval
            assert approval is not None
            guards.append(ApprovalGuard(
                quorum=approval.quorum, approvers=frozenset(approval.users),
                groups=frozenset(approval.groups), members=members,
            ))
        for message in check_tiers(tiers, guards):
            self.add(("steps", i, "op"), f"policy {message}")

    def _bounded(self, params: Any) -> Any:
        """Params with each whole-value ``${{ inputs.x }}`` of a bounded decimal input set to its max.

        The amount of a run can never exceed the input's ``max``, so an approval tier above
        that max can never apply; without a max the tier stays conditional.
        """
        if isinstance(params, dict):
            return {k: self._bounded(v) for k, v in params.items()}
        if isinstance(params, list):
            return [self._bounded(v) for v in params]
        if isinstance(params, str):
            m = TEMPLATE.fullmatch(params)
            if m and m.group(1).startswith("inputs."):
                spec = self.spec.inputs.get(m.group(1).removeprefix("inputs."))
                if spec is not None and spec.type == "decimal" and spec.max is not None:
                    return str(spec.max)
        return params


# --------------------------------------------------------------------------- helpers


def _keys_named(value: Any, name: str, path: Path_ = ()) -> list[Path_]:
    out: list[Path_] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k == name:
                out.append((*path, k))
            out.extend(_keys_named(v, name, (*path, k)))
    elif isinstance(value, list):
        for n, v in enumerate(value):
            out.extend(_keys_named(v, name, (*path, n)))
    return out


def _loc_path(loc: str) -> Path_:
    if loc == "(parameters)":
        return ()
    return tuple(int(p) if p.isdigit() else p for p in loc.split("."))


def field_of(path: Path_) -> str:
    """``("orders", 0, "price")`` → ``orders[0].price`` (``(parameters)`` for the whole set)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(parameters)"


def _plain(message: str) -> str:
    return message.replace("Input should be", "must be").replace("String should", "must")


__all__ = [
    "LIST_RESULTS",
    "RESULT_FIELDS",
    "check_files",
    "ensure_valid",
    "validate_workflow",
]
