"""The registry's digest is in the audit history whenever it changes, and decisions are judged
against the registry in force when they were made."""

from __future__ import annotations

from pathlib import Path

from tests.people.test_cli_signing import PAYOUT_FILE, Desk, _run, pytestmark  # noqa: F401
from treasury.audit import query_events
from treasury.people.edit import add_key
from treasury.people.registry import load_people
from treasury.store.db import make_engine


def _changed(tmp_path: Path) -> list[str]:
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    return [e.payload["digest"] for e in query_events(engine, type="people.changed")]


def test_registry_changes_are_recorded_and_old_decisions_still_verify(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    erin, alice = desk.keygen("erin"), desk.keygen("alice")
    run_id = _run(desk, erin)
    assert desk.cli("approve", run_id, "--identity", str(alice))[0] == 0
    first = load_people(desk.config / "people.yaml").digest
    assert _changed(tmp_path) == [first]  # recorded once, not once per decision
    # alice's key is revoked: later decisions with it are refused, earlier ones still verify
    people = desk.config / "people.yaml"
    pub = (tmp_path / "alice_ed25519.pub").read_text().split()[1]
    people.write_text("".join(line for line in people.read_text().splitlines(keepends=True) if pub not in line))
    bob = desk.keygen("bob")
    second = _run(desk, erin)
    code, out = desk.cli("approve", second, "--identity", str(alice))
    assert code == 2 and "not registered to anyone" in out
    assert desk.cli("approve", second, "--identity", str(bob))[0] == 0
    assert _changed(tmp_path) == [first, load_people(people).digest]
    code, out = desk.cli("audit", "verify")
    assert code == 0 and "4 signatures verify; 2 approval rows" in out, out


def test_add_key_keeps_the_file_and_refuses_a_key_registered_to_someone_else(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    desk.keygen("alice")
    path = desk.config / "people.yaml"
    before = path.read_text()
    second = desk.keygen("alice")  # a second key goes after the first, same layout
    after = path.read_text()
    assert after.count("alice@laptop") == 2 and "# Who may decide" in after
    assert len(load_people(path).persons["alice"].keys) == 2 and len(after.splitlines()) == len(before.splitlines()) + 1
    try:
        add_key(path, "bob", Path(f"{second}.pub").read_text())
    except Exception as exc:
        assert "already registered to 'alice'" in str(exc)
    else:
        raise AssertionError("a key registered to alice was added to bob")
    assert path.read_text() == after
