"""Mutated YAML never crashes the loader: the only outcomes are a workflow or WorkflowInvalid."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from treasury.errors import WorkflowInvalid
from treasury.keys import KeySpec
from treasury.language.loader import load_workflow_text
from treasury.language.templates import TemplateContext, TemplateError, find_refs, resolve
from treasury.language.validate import _with_partial_checks, validate_workflow
from treasury.people.approvers import Approvers

from .conftest import WORKFLOWS

SEEDS = [p.read_text() for p in sorted(WORKFLOWS.glob("*.yaml"))]
SEEDS += [p.read_text() for p in sorted((Path(__file__).parent / "broken").glob("*.yaml"))[:20]
          if p.read_bytes().isascii()]

# YAML's syntax characters, plus the fragments that matter to us.
FRAGMENTS = [
    ":", "-", " ", "  ", "\n", "\t", "[", "]", "{", "}", ",", "&a ", "*a", "!!python/object:os.system ",
    "!tag ", "|", ">", "'", '"', "#", "?", "<<: ", "%YAML 1.1\n", "---\n", "...\n", "${{ ", " }}",
    "${{ inputs.amount }}", "${{ steps.x.result.y }}", "0.1", "1e5", "no", "~", "null", "true", "007",
    "id: x", "op: withdraw", "key: ops-read", "approval: {approvers: [alice], quorum: 1}", "needs: [a]",
    "\x00", "\u2028", "\ufeff", "é", "\ud800", "\x85",
]
PIECE = st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6))


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        lines = text.split("\n")
        kind = draw(st.sampled_from(["insert", "delete", "replace", "dup-line", "swap-lines", "indent"]))
        at = draw(st.integers(0, len(text)))
        if kind == "insert":
            text = text[:at] + draw(PIECE) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)):]
        elif kind == "replace":
            text = text[:at] + draw(PIECE) + text[at + draw(st.integers(1, 8)):]
        else:
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if kind == "dup-line":
                lines.insert(i, lines[i])
            elif kind == "swap-lines":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines[i] = " " * draw(st.integers(0, 6)) + lines[i].lstrip()
            text = "\n".join(lines)
    return text


def _outcome(text: str, keys: Mapping[str, KeySpec], approvers: Approvers, policy: Any | None) -> None:
    try:
        loaded = load_workflow_text(text, source="fuzz.yaml")
    except WorkflowInvalid as exc:
        assert exc.problems, "WorkflowInvalid without problems"
        for p in exc.problems:
            assert p.file == "fuzz.yaml" and p.line >= 1 and p.col >= 1 and p.message
        # what `validate` adds from the part that passed the schema never crashes either
        combined = _with_partial_checks(exc, keys=keys, approvers=approvers, policy=policy)
        assert len(combined) >= len(exc.problems)
        for p in combined:
            assert p.file == "fuzz.yaml" and p.line >= 1 and p.col >= 1 and p.message
        return
    found = validate_workflow(loaded, keys=keys, approvers=approvers, policy=policy)
    for p in found:
        assert p.line >= 1 and p.col >= 1 and p.message


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mutated())
def test_mutated_workflows_load_or_fail_cleanly(
    text: str, keys: Mapping[str, KeySpec], approvers: Approvers, policy: Any | None
) -> None:
    _outcome(text, keys, approvers, policy)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_arbitrary_text_loads_or_fails_cleanly(
    text: str, keys: Mapping[str, KeySpec], approvers: Approvers, policy: Any | None
) -> None:
    _outcome(text, keys, approvers, policy)


CTX = TemplateContext(inputs={"amount": "5"}, steps={"x": {"y": "1"}}, run={"id": "r", "requested_by": "u"})


@settings(max_examples=200, deadline=None)
@given(text=st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=8).map("".join))
def test_templates_resolve_or_raise_template_error(text: str) -> None:
    try:
        refs = find_refs(text)
    except TemplateError:
        return
    try:
        out = resolve(text, CTX)
    except TemplateError:
        return
    assert isinstance(out, str)
    if not refs:
        assert out == text  # nothing that is not a template is ever touched
