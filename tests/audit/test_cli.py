"""``treasury audit``: listing formats, filters, verify exit codes, export and verify-bundle."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from tests.audit.helpers import disable_guards, make_run, seed
from treasury.audit import verify_chain
from treasury.cli.audit import register
from treasury.cli.context import AppContext
from treasury.clock import ManualClock
from treasury.errors import UnknownRun
from treasury.settings import Settings


@pytest.fixture
def invoke(engine: Engine):
    group = click.Group()
    register(group)
    clock = ManualClock()
    clock.advance(3600)  # "now" is an hour after the seeded events start

    def run(*args: str) -> Result:
        app = AppContext(settings=Settings(database_url=str(engine.url)), clock=clock, _engine=engine)
        return CliRunner().invoke(group, ["audit", *args], obj=app, catch_exceptions=False)

    return run


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    with engine.begin() as conn:
        make_run(conn, "r1", workflow="vendor-payout")
        make_run(conn, "r2", workflow="payroll")
    seed(engine, 6, runs_=("r1", "r2"))  # at 00:00:00 .. 00:00:05 on ManualClock's day
    return engine


def test_table_is_the_default(seeded: Engine, invoke) -> None:
    result = invoke("--run", "r1")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["seq", "at", "actor", "run", "step", "type", "payload"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "3", "5"]
    assert "2026-01-01T00:00:00Z" in lines[1] and '{"i":0,"state":"RUNNING"}' in lines[1]


def test_json_jsonl_and_csv(seeded: Engine, invoke) -> None:
    array = json.loads(invoke("--json").output)
    assert [e["seq"] for e in array] == [1, 2, 3, 4, 5, 6]
    assert set(array[0]) == {"seq", "at", "actor", "run_id", "step_id", "type", "payload", "prev_hash", "hash"}
    assert json.loads(invoke("--json", "--actor", "nobody").output) == []
    with pytest.raises(UnknownRun):  # main() turns this into "error: no run 'none'…" and exit 2
        invoke("--json", "--run", "none")
    lines = invoke("--jsonl", "--workflow", "payroll").output.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [2, 4, 6]
    rows = list(csv.DictReader(io.StringIO(invoke("--csv", "--limit", "2").output)))
    assert [r["seq"] for r in rows] == ["1", "2"]
    assert json.loads(rows[0]["payload"]) == {"i": 0, "state": "RUNNING"}
    assert rows[1]["prev_hash"] == rows[0]["hash"]


def test_filters_by_time_actor_and_type(seeded: Engine, invoke) -> None:
    def seqs(*args: str) -> list[int]:
        return [e["seq"] for e in json.loads(invoke("--json", *args).output)]

    assert seqs("--since", "2026-01-01T00:00:02Z", "--until", "2026-01-01T00:00:04") == [3, 4]
    assert seqs("--since", "2h") == [1, 2, 3, 4, 5, 6]  # relative to the clock
    assert seqs("--since", "30m") == []
    assert seqs("--actor", "alice", "--type", "step.state", "--type", "run.state") == [1, 2, 3, 4, 5, 6]
    assert seqs("--type", "run.state") == []


def test_bad_time_is_a_usage_error_naming_the_option(seeded: Engine, invoke) -> None:
    result = invoke("--since", "yesterday")
    assert result.exit_code == 2
    assert "--since" in result.output and "yesterday" in result.output


def test_verify_ok_then_broken(seeded: Engine, invoke) -> None:
    ok = invoke("verify")
    assert ok.exit_code == 0, ok.output
    head = verify_chain(seeded)
    assert ok.output.splitlines()[0] == f"OK: 6 events, head seq 6 hash {head.head_hash}"
    as_json = json.loads(invoke("verify", "--json").output)
    assert as_json["ok"] is True and as_json["anchor"] == f"6:{head.head_hash}"
    assert invoke("verify", "--expect-head", head.anchor).exit_code == 0

    with seeded.begin() as conn:
        disable_guards(conn)
        conn.exec_driver_sql("UPDATE audit_events SET actor = 'mallory' WHERE seq = 4")
    broken = invoke("verify")
    assert broken.exit_code == 1
    assert broken.output.startswith("BROKEN at seq 4: ")
    data = json.loads(invoke("verify", "--json").output)
    assert (data["ok"], data["first_bad_seq"]) == (False, 4)


def test_verify_with_a_malformed_anchor_is_a_usage_error(seeded: Engine, invoke) -> None:
    result = invoke("verify", "--expect-head", "deadbeef")
    assert result.exit_code == 2 and "--expect-head" in result.output


def test_export_and_verify_bundle(seeded: Engine, invoke, tmp_path: Path) -> None:
    out = tmp_path / "r1.json"
    result = invoke("export", "r1", "--out", str(out))
    assert result.exit_code == 0 and "chain seq 1..5" in result.output
    assert json.loads(invoke("export", "r1").output)["run_id"] == "r1"
    good = invoke("verify-bundle", str(out))
    assert good.exit_code == 0 and good.output.startswith("OK: 5 chain entries, head seq 5")
    assert invoke("verify-bundle", str(out), "--against-db").exit_code == 0

    bundle = json.loads(out.read_text())
    bundle["events"][1]["payload"]["state"] = "SUCCEEDED"
    out.write_text(json.dumps(bundle))
    bad = invoke("verify-bundle", str(out), "--json")
    assert bad.exit_code == 1
    assert json.loads(bad.output)["first_bad_seq"] == 3

    out.write_text("not json")
    assert invoke("verify-bundle", str(out)).exit_code == 2


def test_export_of_unknown_run_fails(seeded: Engine, invoke) -> None:
    with pytest.raises(UnknownRun):  # main() turns this into "error: …" and exit 2 (a usage error)
        invoke("export", "nope")


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "table"])
def test_every_format_writes_each_event_before_reading_the_next(seeded: Engine, fmt: str) -> None:
    import treasury.cli.audit as cli_audit
    from treasury.audit import query_events

    writer = {
        "json": cli_audit._write_json_array,
        "jsonl": cli_audit._write_jsonl,
        "csv": cli_audit._write_csv,
        "table": cli_audit._write_table,
    }[fmt]
    out = io.StringIO()
    written_before_next: list[bool] = []

    def source():
        for record in query_events(seeded, batch=2):
            size = len(out.getvalue())
            yield record
            written_before_next.append(len(out.getvalue()) > size)

    assert writer(source(), out) == 6
    assert written_before_next == [True] * 6
    if fmt == "json":
        assert [e["seq"] for e in json.loads(out.getvalue())] == [1, 2, 3, 4, 5, 6]
