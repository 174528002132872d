"""The workflow language (docs/reference.md section 4) as strict pydantic models.

Everything here is shape: types, patterns, and rules that a single model can check
(one of ``op``/``approval`` per step, input defaults within their bounds). Rules that
need the registry, key profiles, approvers, the step graph or the policy live in
``treasury.language.validate``.

Cross-field problems are raised as ``PydanticCustomError("workflow", ...)`` whose
context carries ``wf_at`` (the path below the model that is at fault) and ``wf_more``
(further problems as ``(path, message)``), so the loader can locate each one and report
them all, not only the first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from treasury.durations import DURATION_PATTERN, parse_duration
from treasury.language.cron import validate_cron, validate_timezone
from treasury.language.inputs import InputType, Issue, check_input_declaration

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
STEP_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
INPUT_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
APPROVER_REF_PATTERN = r"^(group:)?[a-z0-9][a-z0-9._-]*$"
MAX_STEPS = 200
MAX_CONCURRENCY = 50

_FLOAT_HINT = (
    "is a YAML float, which cannot hold an exact amount; quote it as a string, such as \"{value}\""
)


def workflow_error(issues: Sequence[Issue]) -> PydanticCustomError:
    """One pydantic error carrying every issue (the first as the message, the rest in ``wf_more``)."""
    (first_at, first_msg), rest = issues[0], list(issues[1:])
    # The message is a template formatted with the context, so braces in it must not
    # collide with context keys: the keys are private names nobody writes.
    return PydanticCustomError("workflow", first_msg, {"wf_at": first_at, "wf_more": rest})


def _refuse_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError(_FLOAT_HINT.format(value=repr(value)))
    return value


def _scalar(value: Any) -> Any:
    """Input defaults and schedule inputs: a string, an integer or a boolean, never a float."""
    _refuse_float(value)
    if value is not None and not isinstance(value, str | int | bool):
        raise ValueError(f"must be a string, an integer or a boolean, not {type(value).__name__}")
    return value


def _bound(value: Any) -> Any:
    _refuse_float(value)
    if isinstance(value, bool) or (value is not None and not isinstance(value, str | int)):
        raise ValueError("must be a number: an integer, or a decimal written as a quoted string")
    return value


def _duration(value: str) -> str:
    parse_duration(value)  # zero and over-long durations; raises ValueError with the notation
    return value


def _needs(value: Any) -> Any:
    # ``needs: build`` is common shorthand for ``needs: [build]``.
    return [value] if isinstance(value, str) else value


Scalar = Annotated[str | int | bool | None, BeforeValidator(_scalar)]
Bound = Annotated[str | int | None, BeforeValidator(_bound)]
# Strict: pydantic's lax mode reads true as 1 and "2" as 2; a workflow should say what it means.
StrictCount = Annotated[int, Field(strict=True)]
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=40), AfterValidator(_duration)]
Text = Annotated[str, Field(max_length=2000)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, str_strip_whitespace=False)


class InputSpec(_Model):
    """One typed input. Decimal bounds and defaults are quoted strings (``min: "0.01"``)."""

    type: InputType
    description: Text | None = None
    default: Scalar = None
    min: Bound = None
    max: Bound = None
    pattern: Annotated[str, Field(max_length=500)] | None = None
    enum: Annotated[list[Annotated[str, BeforeValidator(_refuse_float)]], Field(min_length=1)] | None = None
    # list inputs: the type of each item, and how many there may be
    items: InputSpec | None = None
    min_items: StrictCount | None = None
    max_items: StrictCount | None = None
    # object inputs (the items of a list): each field's name and type
    fields: Annotated[dict[str, InputSpec], Field(min_length=1, max_length=50)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> InputSpec:
        issues = check_input_declaration(self)
        if issues:
            raise workflow_error(issues)
        if self.type == "account" and isinstance(self.default, int) and not isinstance(self.default, bool):
            self.default = str(self.default)  # account ids are strings
        return self

    @property
    def required(self) -> bool:
        return self.default is None

    @property
    def item_fields(self) -> dict[str, InputSpec] | None:
        """For a list of objects, the fields of each item; None for any other input."""
        if self.type == "list" and self.items is not None and self.items.type == "object":
            return dict(self.items.fields or {})
        return None


class ApprovalSpec(_Model):
    """A human approval: ``quorum`` distinct people among ``approvers`` (names or ``group:NAME``)."""

    approvers: Annotated[
        list[Annotated[str, Field(pattern=APPROVER_REF_PATTERN, max_length=100)]], Field(min_length=1)
    ]
    quorum: Annotated[StrictCount, Field(ge=1, le=100)]
    expires_in: Duration = "24h"
    comment: Text | None = None

    @model_validator(mode="after")
    def _distinct(self) -> ApprovalSpec:
        seen: set[str] = set()
        issues: list[Issue] = []
        for i, ref in enumerate(self.approvers):
            if ref in seen:
                issues.append((("approvers", i), f"approver {ref!r} is listed twice"))
            seen.add(ref)
        if issues:
            raise workflow_error(issues)
        return self

    @property
    def expires_after(self) -> timedelta:
        return parse_duration(self.expires_in)

    @property
    def users(self) -> set[str]:
        """The approvers named directly."""
        return {r for r in self.approvers if not r.startswith("group:")}

    @property
    def groups(self) -> set[str]:
        """The groups listed as ``group:NAME``."""
        return {r.removeprefix("group:") for r in self.approvers if r.startswith("group:")}


class RetryBudget(_Model):
    """How long the safe-retry layer may keep trying one step."""

    max_attempts: Annotated[StrictCount, Field(ge=1, le=100)] = 5
    max_seconds: Annotated[float, Field(strict=True, gt=0, le=86400)] = 120.0


class StepSpec(_Model):
    """One step: an operation (``op`` + ``key`` + ``params``) or an approval."""

    model_config = ConfigDict(
        extra="forbid",
        # For editors: exactly one kind of step (the model enforces the details).
        json_schema_extra={"oneOf": [{"required": ["op", "key"]}, {"required": ["approval"]}]},
    )

    id: Annotated[str, Field(pattern=STEP_ID_PATTERN, max_length=64)]
    needs: Annotated[
        list[Annotated[str, Field(max_length=64)]] | None,
        BeforeValidator(_needs),
        WithJsonSchema({"anyOf": [
            {"type": "string", "maxLength": 64},
            {"type": "array", "items": {"type": "string", "maxLength": 64}},
            {"type": "null"},
        ]}),
    ] = None
    op: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    key: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    params: dict[str, Any] | None = None
    approval: ApprovalSpec | None = None
    timeout: Duration | None = None
    retry: RetryBudget | None = None
    description: Text | None = None
    # fan-out: one step instance per item of a list input (``${{ inputs.payouts }}``), at most
    # ``concurrency`` of them running at once (see treasury.language.fanout)
    for_each: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    concurrency: Annotated[StrictCount, Field(ge=1, le=MAX_CONCURRENCY)] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> StepSpec:
        issues: list[Issue] = []
        if self.concurrency is not None and self.for_each is None:
            issues.append((("concurrency",), "concurrency applies only to a step with for_each"))
        if self.op is None and self.approval is None:
            issues.append(((), f"step {self.id!r} needs either op: (an operation) or approval:"))
        elif self.op is not None and self.approval is not None:
            issues.append((("approval",), f"step {self.id!r} has both op and approval; use one step for each"))
        elif self.op is not None:
            if self.key is None:
                issues.append(((), f"operation step {self.id!r} needs key: (a profile in keys.yaml)"))
        else:
            for name, hint in (
                ("key", "an approval step uses no key"),
                ("params", "an approval step takes no params"),
                ("retry", "an approval step is not retried"),
                ("timeout", "an approval step expires with approval.expires_in, not timeout"),
                ("for_each", "an approval step is one decision; it covers a for_each step after it whole"),
            ):
                if getattr(self, name) is not None:
                    issues.append(((name,), hint))
        if issues:
            raise workflow_error(issues)
        return self

    @property
    def is_approval(self) -> bool:
        return self.approval is not None

    @property
    def parallel(self) -> int:
        """How many instances of a for_each step may run at once (1: one after another)."""
        return self.concurrency or 1

    @property
    def timeout_after(self) -> timedelta | None:
        return parse_duration(self.timeout) if self.timeout else None


class ScheduleBlock(_Model):
    """When a workflow runs by itself (``treasury beat``), and with which inputs."""

    cron: Annotated[str, Field(min_length=1, max_length=200)]
    timezone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    catchup: Literal["none", "latest", "all"] = "latest"
    inputs: dict[str, Scalar] = {}

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        problem = validate_cron(value)  # the scheduler's own check: one cron grammar
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        problem = validate_timezone(value)
        if problem:
            raise ValueError(problem)
        return value


_INPUT_NAME = re.compile(INPUT_NAME_PATTERN)


class WorkflowSpec(_Model):
    """A whole workflow file."""

    model_config = ConfigDict(
        extra="forbid",
        title="treasury workflow",
        json_schema_extra={"description": "A treasury workflow file (docs/reference.md section 4)."},
    )

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
    description: Text | None = None
    inputs: dict[str, InputSpec] = {}
    schedule: ScheduleBlock | None = None
    steps: Annotated[list[StepSpec], Field(min_length=1, max_length=MAX_STEPS)]

    @field_validator("inputs")
    @classmethod
    def _input_names(cls, value: dict[str, InputSpec]) -> dict[str, InputSpec]:
        issues: list[Issue] = [
            ((name,), f"input name {name!r} must be an identifier (letters, digits, _)")
            for name in value
            if not _INPUT_NAME.fullmatch(name) or len(name) > 64
        ]
        if issues:
            raise workflow_error(issues)
        return value

    # ------------------------------------------------------------------ graph helpers

    def step(self, step_id: str) -> StepSpec:
        """The step with this id.

        Raises:
            KeyError: no such step.
        """
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def dependencies(self) -> dict[str, list[str]]:
        """Each step's dependencies: its ``needs`` if given, else the previous step in file order."""
        out: dict[str, list[str]] = {}
        previous: str | None = None
        for s in self.steps:
            if s.needs is not None:
                out[s.id] = list(dict.fromkeys(s.needs))
            else:
                out[s.id] = [previous] if previous is not None else []
            previous = s.id
        return out

    def guards(self) -> dict[str, list[str]]:
        """For each operation step, every approval step before it in file order (its guards)."""
        out: dict[str, list[str]] = {}
        approvals: list[str] = []
        for s in self.steps:
            if s.is_approval:
                approvals.append(s.id)
            else:
                out[s.id] = list(approvals)
        return out

    def ancestors(self, step_id: str) -> set[str]:
        """Every step that must finish before ``step_id`` (transitively through dependencies)."""
        deps = self.dependencies()
        seen: set[str] = set()
        stack = list(deps.get(step_id, []))
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(deps.get(current, []))
        seen.discard(step_id)
        return seen

    def required_inputs(self) -> list[str]:
        """Inputs without a default, in declaration order."""
        return [name for name, spec in self.inputs.items() if spec.required]
