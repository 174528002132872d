"""Small helpers shared by the workflow-language tests."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

from treasury.errors import Problem, WorkflowInvalid
from treasury.keys import KeySpec
from treasury.language.loader import LoadedWorkflow, load_workflow_text
from treasury.language.validate import validate_workflow
from treasury.people.approvers import Approvers


def load(text: str, source: str = "wf.yaml") -> LoadedWorkflow:
    return load_workflow_text(textwrap.dedent(text), source=source)


def load_problems(text: str) -> list[Problem]:
    """The loader's problems for ``text`` (fails the test if it loads)."""
    try:
        load(text)
    except WorkflowInvalid as exc:
        return exc.problems
    raise AssertionError("expected WorkflowInvalid")


def problems(
    text: str,
    *,
    keys: Mapping[str, KeySpec] | None = None,
    approvers: Approvers | None = None,
    policy: Any | None = None,
) -> list[Problem]:
    """Every problem, from the loader or the validator."""
    try:
        loaded = load(text)
    except WorkflowInvalid as exc:
        return exc.problems
    return validate_workflow(loaded, keys=keys, approvers=approvers, policy=policy)


def located(found: list[Problem]) -> list[tuple[int, int, str]]:
    return [(p.line, p.col, p.message) for p in found]


def only(found: list[Problem], fragment: str) -> Problem:
    """The single problem whose message contains ``fragment``."""
    matching = [p for p in found if fragment in p.message]
    assert len(matching) == 1, f"{fragment!r} in {[str(p) for p in found]}"
    return matching[0]
