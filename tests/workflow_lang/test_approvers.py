"""approvers.yaml and expanding approver references."""

from __future__ import annotations

from pathlib import Path

import pytest

from treasury.errors import ConfigError
from treasury.workflow.approvers import Approvers, load_approvers

from .conftest import CONFIG


def test_repository_approvers_file() -> None:
    approvers = load_approvers(CONFIG / "approvers.yaml")
    assert approvers.users["dave"] == frozenset({"risk", "treasury-managers"})
    assert approvers.groups["treasury-managers"] == frozenset({"alice", "bob", "dave"})
    assert approvers.groups["risk"] == frozenset({"carol", "dave"})
    assert approvers.users["erin"] == frozenset({"operations"})


def test_expand_and_eligible() -> None:
    a = Approvers(users={"alice": frozenset({"m"}), "bob": frozenset({"m", "r"}), "carol": frozenset()})
    assert a.expand(["alice", "group:r"]) == {"alice", "bob"}
    assert a.expand(["group:m", "bob"]) == {"alice", "bob"}  # one person counts once
    assert a.eligible(["group:m", "carol"], exclude="bob") == {"alice", "carol"}
    assert a.is_eligible("bob", ["group:r"]) and not a.is_eligible("carol", ["group:m"])
    assert not a.is_eligible("mallory", ["mallory"])
    with pytest.raises(ValueError, match=r"unknown approver 'zed'; approvers in approvers\.yaml: alice, bob, carol"):
        a.expand(["zed"])
    with pytest.raises(ValueError, match="unknown approver group 'ops'"):
        a.eligible(["group:ops"])


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("approvers:\n  Alice: {groups: [x]}\n", "approvers.Alice"),
        ("approvers:\n  alice: {groups: [x], role: boss}\n", "approvers.alice.role"),
        ("approvers:\n  alice: {groups: [Bad Group]}\n", "approvers.alice.groups[0]"),
        ("approvers: {}\n", "lists no approvers"),
        ("people: {}\n", "people"),
        ("approvers: [alice]\n", "approvers"),
    ],
)
def test_invalid_files_name_the_field(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "approvers.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_approvers(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_a_person_in_no_group(tmp_path: Path) -> None:
    path = tmp_path / "approvers.yaml"
    path.write_text("approvers:\n  erin:\n  alice: {groups: [m]}\n")
    assert load_approvers(path).users == {"erin": frozenset(), "alice": frozenset({"m"})}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_approvers(tmp_path / "nope.yaml")
