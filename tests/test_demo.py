"""`treasury demo` end to end, and issue 7's 'done when' on the demo's database."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from treasury.cli.main import cli


def _invoke(args: list[str], env: dict[str, str] | None = None) -> object:
    return CliRunner().invoke(cli, args, env=env or {}, catch_exceptions=False)


def test_demo_runs_every_case_as_expected_and_the_chain_verifies(tmp_path: Path) -> None:
    res = _invoke(["demo", "--dir", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    summary = json.loads(res.output)  # type: ignore[attr-defined]
    assert summary["audit"]["ok"] is True and summary["audit"]["events"] > 50
    workflows = {c["workflow"] for c in summary["cases"]}
    assert workflows == {"fiat-payout.yaml", "onboard-address.yaml", "rebalance.yaml", "treasury-sweep.yaml",
                         "vendor-payout.yaml"}
    assert all(c["as_expected"] for c in summary["cases"]), summary["cases"]
    payout = next(c for c in summary["cases"] if c["workflow"] == "vendor-payout.yaml" and c["state"] == "SUCCEEDED")
    assert any("four eyes" in r for r in payout["refusals"])
    # the demo leaves its files for people to inspect and edit
    assert (tmp_path / "config" / "keys.yaml").is_file() and (tmp_path / "workflows" / "vendor-payout.yaml").is_file()
    # every demo decision was signed with a demo key the demo made for its people (0600)
    keys = sorted(p for p in (tmp_path / "config" / "demo-keys").iterdir() if p.suffix != ".pub")
    assert [k.name for k in keys] == ["alice", "bob", "carol", "dave", "erin", "frank"]
    assert all(k.stat().st_mode & 0o777 == 0o600 for k in keys)

    env = {"TREASURY_DATABASE_URL": f"sqlite:///{tmp_path / 'treasury.db'}",
           "TREASURY_CONFIG_DIR": str(tmp_path / "config")}
    verify = _invoke(["audit", "verify", "--json"], env)
    assert verify.exit_code == 0, verify.output  # type: ignore[attr-defined]
    head = json.loads(verify.output)  # type: ignore[attr-defined]
    assert head["decisions"]["ok"] and head["decisions"]["approval_rows"] >= 4

    bundle_file = tmp_path / "bundle.json"
    exp = _invoke(["audit", "export", payout["run_id"], "--out", str(bundle_file)], env)
    assert exp.exit_code == 0, exp.output  # type: ignore[attr-defined]
    bundle_text = bundle_file.read_text()
    bundle = json.loads(bundle_text)
    assert "erin" in bundle_text and "alice" in bundle_text and "bob" in bundle_text
    assert "/api/v1/account/withdraw" in bundle_text and "request.sent" in bundle_text
    assert "response.received" in bundle_text
    assert "secret" not in bundle_text.lower().replace("secret_file", "").replace("[redacted]", "")
    assert bundle
    assert _invoke(["audit", "verify-bundle", str(bundle_file)], env).exit_code == 0  # type: ignore[attr-defined]

    # change one byte of one payload directly in SQLite (after dropping the trigger)
    con = sqlite3.connect(tmp_path / "treasury.db")
    triggers = [r[0] for r in con.execute("select name from sqlite_master where type='trigger'")]
    for name in triggers:
        con.execute(f'drop trigger "{name}"')
    seq, payload = con.execute("select seq, payload from audit_events where seq = 7").fetchone()
    text = payload if isinstance(payload, str) else payload.decode()
    i = next(k for k, ch in enumerate(text) if ch.isalnum())
    tampered = text[:i] + ("x" if text[i] != "x" else "y") + text[i + 1:]
    con.execute("update audit_events set payload = ? where seq = ?", (tampered, seq))
    con.commit()
    con.close()
    broken = _invoke(["audit", "verify", "--json"], env)
    assert broken.exit_code == 1  # type: ignore[attr-defined]
    assert json.loads(broken.output)["first_bad_seq"] == 7  # type: ignore[attr-defined]
    assert head["head_hash"]


def _fake_earlier_demo(folder: Path) -> bytes:
    """A folder holding an earlier demo's database (one run's worth of rows) and simulator world."""
    from treasury.schema import create_schema
    from treasury.store.db import make_engine

    folder.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{folder / 'treasury.db'}")
    create_schema(engine)
    engine.dispose()
    world = b'{"balances": "the earlier demo\'s"}'
    (folder / "treasury.db.simulator.json").write_bytes(world)
    return world


def test_a_second_demo_into_the_same_folder_refuses_and_deletes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "desk"
    world = _fake_earlier_demo(folder)
    db_before = (folder / "treasury.db").read_bytes()
    res = CliRunner().invoke(cli, ["demo", "--dir", str(folder)], env={})
    assert res.exit_code == 2, res.output
    # names what exists and how to proceed
    assert f"{folder / 'treasury.db'} (the database: 0 runs, 0 audit events)" in res.output
    assert "treasury.db.simulator.json" in res.output and "--reset" in res.output and "treasury runs" in res.output
    assert (folder / "treasury.db").read_bytes() == db_before
    assert (folder / "treasury.db.simulator.json").read_bytes() == world


def test_the_default_folder_is_kept_too_and_reset_names_what_it_deletes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = CliRunner().invoke(cli, ["demo", "--json"], env={}, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    folder = tmp_path / "treasury-demo"
    assert json.loads(first.stdout)["dir"] == "treasury-demo"
    con = sqlite3.connect(folder / "treasury.db")
    runs_before = con.execute("select count(*) from runs").fetchone()[0]
    events_before = con.execute("select count(*) from audit_events").fetchone()[0]
    con.close()
    assert runs_before > 0 and events_before > 50

    again = CliRunner().invoke(cli, ["demo"], env={})
    assert again.exit_code == 2, again.output
    assert f"treasury.db (the database: {runs_before} runs, {events_before} audit events)" in again.output
    con = sqlite3.connect(folder / "treasury.db")
    assert con.execute("select count(*) from audit_events").fetchone()[0] == events_before
    con.close()

    (folder / "config" / "NOTES.txt").write_text("mine\n")  # a person's files are kept
    reset = CliRunner().invoke(cli, ["demo", "--reset", "--json"], env={}, catch_exceptions=False)
    assert reset.exit_code == 0, reset.output
    listed = reset.stderr
    assert "--reset deletes" in listed and str(Path("treasury-demo") / "treasury.db") in listed
    assert "treasury.db.simulator.json" in listed and f"{runs_before} runs" in listed
    assert json.loads(reset.stdout)["audit"]["ok"] is True
    assert (folder / "config" / "NOTES.txt").read_text() == "mine\n"
