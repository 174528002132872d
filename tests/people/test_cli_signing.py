"""Signing on the real command line: ssh-keygen keys, --identity, decide export/submit, audit verify."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, insert, text

from treasury.cli.context import AppContext
from treasury.cli.main import cli
from treasury.clock import ManualClock
from treasury.settings import Environment, Settings
from treasury.store.tables import approvals

ROOT = Path(__file__).resolve().parents[2]
PAYOUT_FILE = str(ROOT / "workflows" / "vendor-payout.yaml")
ADDRESS = "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90"
SSH_KEYGEN = shutil.which("ssh-keygen")
pytestmark = pytest.mark.skipif(
    SSH_KEYGEN is None and os.environ.get("CI") != "true", reason="ssh-keygen (openssh-client) is not installed")


class Desk:
    """A config folder whose people registered keys made by ssh-keygen, and a CLI to drive it."""

    def __init__(self, tmp: Path, engine: Engine | None = None, env: Environment = Environment.SIMULATOR) -> None:
        self.tmp = tmp
        self.config = tmp / "config"
        if not self.config.exists():
            shutil.copytree(ROOT / "config", self.config)
        self.clock = ManualClock(1_780_279_200.0)
        self.engine = engine
        self.env = env

    def keygen(self, person: str) -> Path:
        assert SSH_KEYGEN is not None
        path = self.tmp / f"{person}_ed25519"
        n = 1
        while path.exists():
            n += 1
            path = self.tmp / f"{person}_{n}_ed25519"
        subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", f"{person}@laptop", "-f", str(path)],
                       check=True)
        code, out = self.cli("people", "add-key", person, f"{path}.pub")
        assert code == 0, out
        return path

    def cli(self, *args: str, raw: bool = False) -> tuple[int, Any]:
        """Run one command in a fresh process context; JSON output is parsed unless ``raw``."""
        remote: dict[str, object] = {}
        if self.env != Environment.SIMULATOR:
            remote["base_url"] = "http://127.0.0.1:9"
        if self.env == Environment.PRODUCTION:  # production needs its audit anchoring set up
            key = self.tmp / "server.key"
            if not key.exists():
                from treasury.audit.server_key import ServerKey

                ServerKey(key, create=True, production=False).load()
            remote["checkpoint_dir"] = self.tmp / "checkpoints"
            remote["server_key_file"] = key
        settings = Settings(config_dir=self.config, database_url=f"sqlite:///{self.tmp / 'cli.db'}",
                            workflows_dir=ROOT / "workflows", env=self.env, **remote)  # type: ignore[arg-type]
        app = AppContext(settings=settings, clock=self.clock, _engine=self.engine)
        result = CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)
        if raw:
            return result.exit_code, result.stdout
        try:
            return result.exit_code, json.loads(result.stdout)
        except json.JSONDecodeError:
            return result.exit_code, result.stdout + result.stderr

    def sign(self, key: Path, document: str) -> Path:
        assert SSH_KEYGEN is not None
        doc = self.tmp / "decision.json"
        doc.write_text(document)
        doc.with_name("decision.json.sig").unlink(missing_ok=True)
        subprocess.run([SSH_KEYGEN, "-Y", "sign", "-n", "treasury", "-f", str(key), str(doc)], check=True,
                       capture_output=True)
        return doc.with_name("decision.json.sig")


def _run(desk: Desk, key: Path, amount: str = "1200") -> str:
    code, data = desk.cli("run", PAYOUT_FILE, "-i", f"address={ADDRESS}", "-i", f"amount={amount}",
                          "--identity", str(key), "--json")
    assert code == 0 and data["state"] == "AWAITING_APPROVAL", data
    return str(data["id"])


def test_keys_from_ssh_keygen_sign_on_the_command_line_and_offline(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    erin, alice, bob = desk.keygen("erin"), desk.keygen("alice"), desk.keygen("bob")
    code, listed = desk.cli("people", "list", "--json")
    assert code == 0 and [k["comment"] for k in next(p for p in listed["people"] if p["id"] == "bob")["keys"]] \
        == ["bob@laptop"]
    run_id = _run(desk, erin)
    # --as is a cross-check only: it must name the key's owner
    code, out = desk.cli("approve", run_id, "--as", "bob", "--identity", str(alice))
    assert code == 2 and "does not match the identity key, which is 'alice'" in out
    code, refused = desk.cli("audit", "--type", "decision.refused", "--json")
    assert code == 0 and "does not match the identity key" in refused[-1]["payload"]["reason"]
    code, out = desk.cli("approve", run_id, "--identity", str(alice))
    assert code == 0 and "AWAITING_APPROVAL" in out
    # bob signs on another machine: export, ssh-keygen -Y sign, submit
    code, document = desk.cli("decide", "export", run_id, "approve", "--as", "bob", "--comment", "invoice ok")
    assert code == 0 and isinstance(document, dict) and document["kind"] == "approve"
    code, document_text = desk.cli("decide", "export", run_id, "--as", "bob", raw=True)
    forged = desk.sign(alice, document_text)  # alice's key over bob's document
    code, out = desk.cli("decide", "submit", str(forged))
    assert code == 2 and "not one of the person's keys" in out
    sig = desk.sign(bob, document_text)
    code, out = desk.cli("decide", "submit", str(sig))
    assert code == 0 and "SUCCEEDED" in out, out
    code, out = desk.cli("decide", "submit", str(sig))  # the same signed document again
    assert code != 0
    code, out = desk.cli("audit", "verify")
    assert code == 0 and "3 signatures verify; 2 approval rows are backed by them" in out, out
    # the evidence bundle checks offline with ssh-keygen -Y verify
    code, bundle = desk.cli("audit", "export", run_id)
    assert code == 0
    evidence = bundle["decisions"]
    (tmp_path / "allowed_signers").write_text(evidence["allowed_signers"])
    assert sorted(d["kind"] for d in evidence["documents"]) == ["approve", "approve", "request"]
    for d in evidence["documents"]:
        (tmp_path / "d.json").write_text(d["document"])
        (tmp_path / "d.json.sig").write_text(d["sshsig"])
        assert SSH_KEYGEN is not None
        ok = subprocess.run([SSH_KEYGEN, "-Y", "verify", "-f", str(tmp_path / "allowed_signers"), "-I", d["person"],
                             "-n", "treasury", "-s", str(tmp_path / "d.json.sig")],
                            input=d["document"].encode(), capture_output=True)
        assert ok.returncode == 0, ok.stderr
    code, out = desk.cli("audit", "verify-bundle", str(_write(tmp_path / "b.json", bundle)))
    assert code == 0, out


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_an_inserted_approval_row_makes_audit_verify_fail_naming_it(tmp_path: Path, db: str,
                                                                      request: pytest.FixtureRequest) -> None:
    engine = request.getfixturevalue("pg_engine") if db == "postgres" else None
    desk = Desk(tmp_path, engine=engine)
    erin, alice = desk.keygen("erin"), desk.keygen("alice")
    run_id = _run(desk, erin)
    assert desk.cli("approve", run_id, "--identity", str(alice))[0] == 0
    assert desk.cli("audit", "verify")[0] == 0
    from treasury.store.db import make_engine

    eng = engine or make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    with eng.begin() as conn:
        digest = conn.execute(text("SELECT digest FROM approvals WHERE run_id = :r"), {"r": run_id}).scalar_one()
        row = conn.execute(insert(approvals).values(run_id=run_id, step_id="approve", approver="bob",
                                                    decision="approve", comment=None, digest=digest,
                                                    created_at=desk.clock.now())).inserted_primary_key[0]
    code, out = desk.cli("audit", "verify")
    assert code == 1 and f"approvals row {row} (run {run_id}, step approve, approve by bob)" in out, out
    code, data = desk.cli("audit", "verify", "--json")
    assert code == 1 and data["decisions"]["ok"] is False and not data["ok"]
    with eng.begin() as conn:  # a stored document edited after it was signed
        nonce = conn.execute(text("SELECT nonce FROM decisions WHERE kind = 'approve'")).scalar_one()
        conn.execute(text("UPDATE decisions SET document = replace(document, :a, :b) WHERE nonce = :n"),
                     {"a": '"kind":"approve"', "b": '"comment":"edited","kind":"approve"', "n": nonce})
    code, out = desk.cli("audit", "verify")
    assert code == 1 and f"decision {nonce} (approve by alice, run {run_id})" in out, out


def test_production_refuses_people_without_keys_and_unsigned_decisions(tmp_path: Path) -> None:
    desk = Desk(tmp_path, env=Environment.PRODUCTION)
    erin = desk.keygen("erin")
    code, out = desk.cli("run", PAYOUT_FILE, "-i", f"address={ADDRESS}", "-i", "amount=1", "--identity", str(erin))
    assert code == 2 and "in production every person needs a credential; no key for alice, bob" in out
    for person in ("alice", "bob", "carol", "dave", "frank"):
        desk.keygen(person)
    code, out = desk.cli("approve", "rxxxxxxxxxxx", "--as", "bob")
    assert code == 2 and "outside the simulator every decision is signed" in out
    code, out = desk.cli("people", "demo-keys")
    assert code == 2 and "simulator only" in out and not (desk.config / "demo-keys").exists()
