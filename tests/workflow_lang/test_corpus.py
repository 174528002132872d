"""The broken corpus: each file states the problems it must produce, by line, column and text.

Header lines::

    # expect: LINE:COL fragment of the message
    # requires: policy        (skipped when config/policy.yaml or the policy module is absent)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from treasury.errors import WorkflowInvalid
from treasury.keys import KeySpec
from treasury.language.loader import load_workflow
from treasury.language.validate import validate_workflow
from treasury.people.approvers import Approvers

BROKEN = Path(__file__).parent / "broken"
EXPECT = re.compile(rb"^# expect: (\d+):(\d+) (.+)$")
FILES = sorted(BROKEN.glob("*.yaml"))


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= 40


def _expectations(path: Path) -> tuple[list[tuple[int, int, str]], bool]:
    out = []
    needs_policy = False
    for line in path.read_bytes().splitlines():
        if m := EXPECT.match(line):
            out.append((int(m.group(1)), int(m.group(2)), m.group(3).decode()))
        elif line.strip() == b"# requires: policy":
            needs_policy = True
    return out, needs_policy


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_broken_file(
    path: Path, keys: Mapping[str, KeySpec], approvers: Approvers, policy: Any | None
) -> None:
    expected, needs_policy = _expectations(path)
    assert expected, f"{path.name} has no '# expect:' header"
    if needs_policy and policy is None:
        pytest.skip("config/policy.yaml or treasury.policy is not available")
    try:
        loaded = load_workflow(path)
    except WorkflowInvalid as exc:
        found = exc.problems
    else:
        found = validate_workflow(loaded, keys=keys, approvers=approvers, policy=policy)
    rendered = "\n".join(str(p) for p in found)
    for line, col, fragment in expected:
        hits = [p for p in found if p.line == line and p.col == col and fragment in p.message]
        assert hits, f"expected {line}:{col} {fragment!r}; got:\n{rendered}"
    for p in found:
        assert p.file == str(path)
        assert p.line >= 1 and p.col >= 1
        assert "Traceback" not in p.message
