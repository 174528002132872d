"""Workflow cases as data: inputs, exchange behaviour, human actions and the expected outcome.

A case file sits beside the workflows (``workflows/cases/<name>.yaml``). The same runner
drives the test suite and ``treasury demo``, so the demo shows exactly what is tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from treasury.errors import ApprovalRefused, TreasuryError
from treasury.language.loader import read_workflow_text
from treasury.yamlfile import config_error_from, load_yaml

EFFECT_KINDS = ("transfers", "withdrawals", "fiat_withdrawals", "orders", "wallet_signings")


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approve: str | None = None
    reject: str | None = None
    cancel: str | None = None
    comment: str | None = None
    reason: str | None = None
    refused: bool = False  # the action must be refused (and audited)

    @model_validator(mode="after")
    def _one(self) -> Action:
        if sum(x is not None for x in (self.approve, self.reject, self.cancel)) != 1:
            raise ValueError("an action is exactly one of approve, reject or cancel")
        return self


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: str
    steps: dict[str, str] = {}
    effects: dict[str, int] = {}
    error_contains: str | None = None


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    requested_by: str = "erin"
    # scalars as strings; a list input as a list of strings or of mappings of strings
    inputs: dict[str, str | list[str] | list[dict[str, str]]] = {}
    faults: list[dict[str, Any]] = []
    actions: list[Action] = []
    expect: Expect
    demo: bool = False


class CaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow: str  # file name relative to the workflows folder
    cases: list[Case] = Field(min_length=1)


def load_case_file(path: Path) -> CaseFile:
    """Raises ConfigError naming the file and field."""
    try:
        return CaseFile.model_validate(load_yaml(path))
    except ValidationError as exc:
        raise config_error_from(exc, str(path)) from exc


@dataclass
class CaseResult:
    case: str
    workflow: str
    run_id: str | None
    state: str | None
    steps: dict[str, str] = field(default_factory=dict)
    effects: dict[str, int] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _effect_counts(sim: Any) -> dict[str, int]:
    state = sim.state()
    return {k: len(state.get(k, [])) for k in EFFECT_KINDS}


def run_case(runtime: Any, workflows_dir: Path, workflow_file: str, case: Case) -> CaseResult:
    """Run one case against a runtime with an in-process simulator and compare the outcome."""
    service = runtime.service
    sim = runtime.simulator
    before = _effect_counts(sim)
    sim.set_faults(case.faults)
    result = CaseResult(case=case.name, workflow=workflow_file, run_id=None, state=None)
    path = workflows_dir / workflow_file
    try:
        loaded = service.load_and_check(read_workflow_text(path), source=str(path))
        run_id = service.start(loaded, case.inputs, requested_by=case.requested_by)
        result.run_id = run_id
        for action in case.actions:
            try:
                if action.approve:
                    service.approve(run_id, action.approve, action.comment)
                elif action.reject:
                    service.reject(run_id, action.reject, action.reason or "rejected in case")
                else:
                    assert action.cancel is not None
                    service.cancel(run_id, action.cancel)
                if action.refused:
                    result.mismatches.append(f"action {action.model_dump(exclude_none=True)} was not refused")
            except ApprovalRefused as exc:
                result.refusals.append(str(exc))
                if not action.refused:
                    result.mismatches.append(f"action refused unexpectedly: {exc}")
    except TreasuryError as exc:
        result.error = str(exc)
    finally:
        sim.set_faults([])
    after = _effect_counts(sim)
    result.effects = {k: after[k] - before[k] for k in EFFECT_KINDS if after[k] != before[k]}
    if result.run_id:
        shown = service.show(result.run_id, with_audit=False)
        result.state = shown["state"]
        result.steps = {s["id"]: s["state"] for s in shown["steps"]}
        if shown.get("error") and not result.error:
            result.error = shown["error"]
    _compare(case.expect, result)
    return result


def _compare(expect: Expect, got: CaseResult) -> None:
    if got.state != expect.state:
        got.mismatches.append(f"state {got.state}, expected {expect.state} (error: {got.error})")
    for step, state in expect.steps.items():
        if got.steps.get(step) != state:
            got.mismatches.append(f"step {step} is {got.steps.get(step)}, expected {state}")
    for kind in EFFECT_KINDS:
        want = expect.effects.get(kind, 0)
        if got.effects.get(kind, 0) != want:
            got.mismatches.append(f"{got.effects.get(kind, 0)} {kind}, expected {want}")
    if expect.error_contains and expect.error_contains not in (got.error or ""):
        got.mismatches.append(f"error {got.error!r} does not mention {expect.error_contains!r}")


def case_files(workflows_dir: Path) -> list[Path]:
    return sorted((workflows_dir / "cases").glob("*.yaml"))


def run_all(runtime: Any, workflows_dir: Path, *, demo_only: bool = False) -> list[CaseResult]:
    out = []
    for path in case_files(workflows_dir):
        cf = load_case_file(path)
        for case in cf.cases:
            if demo_only and not case.demo:
                continue
            out.append(run_case(runtime, workflows_dir, cf.workflow, case))
    return out


