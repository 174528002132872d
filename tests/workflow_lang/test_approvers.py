"""people.yaml (the people registry) and expanding approver references."""

from __future__ import annotations

from pathlib import Path

import pytest

from treasury.errors import ConfigError
from treasury.people.approvers import Approvers
from treasury.people.registry import load_people

from .conftest import CONFIG

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMqhg+0AOVuQoYbxJaIfuuitThq77Q55AamN3CxKZozW a@x"


def test_repository_people_file() -> None:
    people = load_people(CONFIG / "people.yaml")
    assert people.users["dave"] == frozenset({"risk", "treasury-managers"})
    assert people.groups["treasury-managers"] == frozenset({"alice", "bob", "dave"})
    assert people.groups["risk"] == frozenset({"carol", "dave"})
    assert people.users["erin"] == frozenset({"operations"})
    assert people.has_role("alice", "approver") and not people.has_role("erin", "approver")
    assert people.digest.startswith("sha256:")


def test_expand_and_eligible() -> None:
    a = Approvers(users={"alice": frozenset({"m"}), "bob": frozenset({"m", "r"}), "carol": frozenset()})
    assert a.expand(["alice", "group:r"]) == {"alice", "bob"}
    assert a.expand(["group:m", "bob"]) == {"alice", "bob"}  # one person counts once
    assert a.eligible(["group:m", "carol"], exclude="bob") == {"alice", "carol"}
    assert a.is_eligible("bob", ["group:r"]) and not a.is_eligible("carol", ["group:m"])
    assert not a.is_eligible("mallory", ["mallory"])
    with pytest.raises(ValueError, match=r"unknown approver 'zed'; people in people\.yaml: alice, bob, carol"):
        a.expand(["zed"])
    with pytest.raises(ValueError, match="unknown approver group 'ops'"):
        a.eligible(["group:ops"])


def test_only_holders_of_the_approver_role_are_eligible(tmp_path: Path) -> None:
    path = tmp_path / "people.yaml"
    path.write_text("people:\n  alice: {roles: [approver], groups: [m]}\n  erin: {roles: [operator], groups: [m]}\n")
    assert load_people(path).eligible(["group:m"]) == {"alice"}


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ("people:\n  Alice: {roles: [approver]}\n", "2:10", "people.Alice"),
        ("people:\n  alice: {roles: [approver], role: boss}\n", "2:30", "people.alice.role"),
        ("people:\n  alice: {roles: [boss]}\n", "2:19", "people.alice.roles[0]"),
        ("people:\n  alice:\n    roles: [approver]\n    groups: [Bad Group]\n", "4:14", "people.alice.groups[0]"),
        ("people:\n  alice:\n    roles: [approver]\n    ssh_keys: [ssh-rsa AAAA x]\n", "4:15", "not supported"),
        ("people:\n  alice:\n    roles: [approver]\n    ssh_keys: [ssh-ed25519 !!!]\n", "4:15", "base64"),
        ("people:\n  alice: {roles: []}\n", "2:18", "people.alice.roles"),
        ("people: {}\n", "1:9", "people"),
        (f"people:\n  alice: {{roles: [approver], ssh_keys: ['{KEY}']}}\n"
         f"  bob: {{roles: [approver], ssh_keys: ['{KEY}']}}\n", "3:39", "already registered to 'alice'"),
    ],
)
def test_invalid_files_are_located(tmp_path: Path, text: str, where: str, fragment: str) -> None:
    path = tmp_path / "people.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_people(path)
    assert f"{path}:{where}:" in str(info.value) and fragment in str(info.value)


def test_an_old_approvers_file_says_how_to_move_it(tmp_path: Path) -> None:
    (tmp_path / "approvers.yaml").write_text("approvers:\n  alice: {groups: [m]}\n")
    with pytest.raises(ConfigError, match=r"approvers\.yaml is no longer read; move it to .*people\.yaml.*roles"):
        load_people(tmp_path / "people.yaml")
    (tmp_path / "people.yaml").write_text("approvers:\n  alice: {groups: [m]}\n")
    with pytest.raises(ConfigError, match=r"people.yaml:1:1: the approvers.yaml shape is replaced"):
        load_people(tmp_path / "people.yaml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_people(tmp_path / "nope.yaml")
