"""The YAML layer: safe loading, positions, refusals, and every problem located."""

from __future__ import annotations

import hashlib
import time
from decimal import Decimal
from pathlib import Path

import pytest

from treasury.errors import WorkflowInvalid
from treasury.language.loader import MAX_WORKFLOW_BYTES, load_workflow, load_workflow_bytes, load_workflow_text

from .helpers import load, load_problems, located, only

MINIMAL = """\
name: sweep
steps:
  - id: t
    op: server_time
    key: ops-read
"""


def test_loads_a_minimal_workflow_with_digest_and_source(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_bytes(MINIMAL.encode())
    loaded = load_workflow(path)
    assert loaded.spec.name == "sweep"
    assert loaded.source == str(path)
    assert loaded.text == MINIMAL
    assert loaded.digest == hashlib.sha256(MINIMAL.encode()).hexdigest()
    assert load_workflow_text(MINIMAL, source="x").digest == loaded.digest


def test_positions_point_at_keys_and_values() -> None:
    loaded = load("""\
        name: sweep
        steps:
          - id: t
            op: asset_transfer
            key: transfers
            params:
              quantity: "${{ inputs.amount }}"
        """)
    assert loaded.positions[("name",)] == (1, 1)
    assert loaded.positions[("steps", 0)] == (3, 5)
    assert loaded.positions[("steps", 0, "op")] == (4, 5)
    assert loaded.positions.value_at(("steps", 0, "params", "quantity")) == (7, 17)
    # An absent path falls back to its nearest parent.
    assert loaded.positions.locate(("steps", 0, "params", "nothing", 3)) == (6, 5)
    assert loaded.positions.locate(("nowhere",)) == (1, 1)


def test_python_tags_are_refused_and_never_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    found = load_problems(f"""\
        name: pwn
        description: !!python/object/apply:os.system ["touch {marker}"]
        steps:
          - id: x
            op: !!python/name:os.system
            key: ops-read
        """)
    assert not marker.exists()
    assert [(p.line, p.col) for p in found if "tag" in p.message] == [(2, 14), (5, 9)]
    assert "!!python/object/apply:os.system is not allowed" in found[0].message


@pytest.mark.parametrize("tag", ["!!binary", "!!timestamp", "!!set", "!!omap", "!custom", "!<tag:x.org,1:y>"])
def test_other_non_standard_tags_are_refused(tag: str) -> None:
    found = load_problems(f"name: x\ndescription: {tag} aGk=\nsteps: []\n")
    assert any(p.line == 2 and "is not allowed" in p.message for p in found)


def test_standard_tags_are_allowed_and_checked() -> None:
    loaded = load("""\
        name: !!str sweep
        steps:
          - id: t
            op: server_time
            key: ops-read
            retry: {max_attempts: !!int 3}
        """)
    assert loaded.spec.steps[0].retry is not None and loaded.spec.steps[0].retry.max_attempts == 3
    found = load_problems("name: x\nsteps:\n  - {id: t, op: server_time, key: r, retry: {max_attempts: !!int abc}}\n")
    assert "'abc' is not a valid !!int" in found[0].message


def test_billion_laughs_is_refused_fast() -> None:
    lines = ["name: lol", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, 10):
        refs = ",".join([f"*a{n - 1}"] * 9)
        lines.append(f"a{n}: &a{n} [{refs}]")
    lines.append("steps: [{id: t, op: server_time, key: ops-read}]")
    started = time.perf_counter()
    found = load_problems("\n".join(lines) + "\n")
    assert time.perf_counter() - started < 1.0
    assert any("anchors (&a0) are not allowed" in p.message for p in found)
    assert any("aliases (*a0) are not allowed" in p.message for p in found)


def test_oversized_files_are_refused_before_parsing() -> None:
    text = MINIMAL + "#" * MAX_WORKFLOW_BYTES
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow_text(text, source="big.yaml")
    assert "limited to 256 KiB" in info.value.problems[0].message
    with pytest.raises(WorkflowInvalid):
        load_workflow_bytes(text.encode(), source="big.yaml")


def test_deep_nesting_is_refused() -> None:
    text = "name: x\nsteps: [{id: t, op: server_time, key: r, params: {a: " + "[" * 5000 + "]" * 5000 + "}}]\n"
    found = load_problems(text)
    assert "nesting is deeper than 64 levels" in found[0].message


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    found = load_problems("""\
        name: sweep
        name: other
        steps: [{id: t, op: server_time, key: ops-read}]
        """)
    assert located(found) == [(2, 1, "duplicate key 'name' (first at line 1)")]


def test_non_scalar_keys_are_refused() -> None:
    found = load_problems("name: x\n? [a, b]\n: 1\nsteps: [{id: t, op: server_time, key: ops-read}]\n")
    assert only(found, "mapping keys must be plain names").line == 2


def test_yaml_1_1_surprises_are_strings() -> None:
    loaded = load("""\
        name: sweep
        inputs:
          country: {type: string, default: no}
          when: {type: string, default: 12:30}
          day: {type: string, default: 2024-01-01}
          code: {type: account, default: 007}
        steps: [{id: t, op: server_time, key: ops-read}]
        """)
    defaults = {name: spec.default for name, spec in loaded.spec.inputs.items()}
    assert defaults == {"country": "no", "when": "12:30", "day": "2024-01-01", "code": "007"}


def test_float_amounts_are_refused_with_a_hint_to_quote() -> None:
    found = load_problems("""\
        name: sweep
        inputs:
          amount: {type: decimal, max: 1e5}
        steps: [{id: t, op: server_time, key: ops-read}]
        """)
    p = only(found, "YAML float")
    assert (p.line, p.col, p.path) == (3, 27, "inputs.amount.max")
    assert "quote it as a string" in p.message


def test_every_schema_problem_is_reported_in_one_pass() -> None:
    found = load_problems("""\
        name: Bad Name
        colour: blue
        steps:
          - id: a
            op: server_time
          - id: b
            approval: {approvers: [alice], quorum: 0}
          - id: c
            op: server_time
            key: ops-read
            retry: {max_attempts: 0, max_seconds: -1}
        """)
    assert [(p.line, p.col, p.path) for p in found] == [
        (1, 1, "name"),
        (2, 1, "colour"),
        (4, 5, "steps[0]"),
        (7, 36, "steps[1].approval.quorum"),
        (11, 13, "steps[2].retry.max_attempts"),
        (11, 30, "steps[2].retry.max_seconds"),
    ]


def test_unknown_fields_suggest_the_close_name() -> None:
    found = load_problems("""\
        name: sweep
        steps:
          - id: t
            op: server_time
            key: ops-read
            timout: 5m
        """)
    assert "unknown field 'timout'; did you mean 'timeout'?" in only(found, "timout").message


def test_refusals_do_not_cause_follow_on_noise() -> None:
    # The alias stands in for a value; no "must be a string" on top of the alias refusal.
    found = load_problems("name: x\nsteps:\n  - id: t\n    op: *nothing\n    key: ops-read\n")
    assert [p.message for p in found] == ["aliases (*nothing) are not allowed in workflow files; write the value out"]


def test_syntax_errors_are_located() -> None:
    found = load_problems("name: x\nsteps:\n  - id: t\n    op: [server_time\n")
    assert len(found) == 1 and found[0].message.startswith("YAML syntax error")
    assert found[0].line >= 4


def test_root_must_be_a_mapping() -> None:
    assert "got a str" in load_problems("just text\n")[0].message


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(tmp_path / "missing.yaml")
    assert "cannot read the file" in info.value.problems[0].message
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: x\ndescription: caf\xe9\n")
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(path)
    assert located(info.value.problems) == [(2, 17, "the file is not valid UTF-8 text")]


def test_text_that_no_file_could_hold_is_refused() -> None:
    assert located(load_problems("name: x\ud800\nsteps: []\n")) == [(1, 8, "the text is not valid Unicode")]


def test_decimal_strings_stay_exact() -> None:
    loaded = load("""\
        name: sweep
        inputs:
          amount: {type: decimal, min: "0.000000000000000001", default: "12345678901234567890.12"}
        steps: [{id: t, op: server_time, key: ops-read}]
        """)
    spec = loaded.spec.inputs["amount"]
    assert Decimal(str(spec.default)) == Decimal("12345678901234567890.12")


def test_a_flood_of_problems_is_capped() -> None:
    text = "name: x\n" + "".join(f"field{i}: 1\n" for i in range(300)) + MINIMAL.split("\n", 1)[1]
    found = load_problems(text)
    assert len(found) == 201
    assert found[-1].message == "... and about 100 more problems"
