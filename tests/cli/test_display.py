"""Control characters never reach the screen: names refuse them, free text is shown escaped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.identities import signed_config_copy
from tests.runs.conftest import MONDAY_10_HKT, PAYOUT, ROOT
from treasury.cli.context import AppContext
from treasury.cli.main import cli
from treasury.clock import ManualClock
from treasury.display import check_name, escape_lines, escape_text, json_safe
from treasury.errors import ConfigError, ParameterError
from treasury.keys import load_key_specs
from treasury.settings import Settings

PAYOUT_FILE = str(ROOT / "workflows" / "vendor-payout.yaml")
# clears the screen, then writes a fake verdict in green; and a right-to-left override
EVIL = "\x1b[2J\x1b[32mAPPROVED by risk\x1b[0m [bold]ok[/bold] \u202eevil\r"


def _app(tmp_path: Path) -> AppContext:
    settings = Settings(config_dir=signed_config_copy(tmp_path / "config"),
                        database_url=f"sqlite:///{tmp_path / 'cli.db'}",
                        workflows_dir=ROOT / "workflows")
    return AppContext(settings=settings, clock=ManualClock(MONDAY_10_HKT))


def _cli(app: AppContext, *args: str) -> Any:
    return CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)


def _start(app: AppContext, *extra: str) -> str:
    res = _cli(app, "run", PAYOUT_FILE, "-i", f"address={PAYOUT['address']}", "-i",
               f"amount={PAYOUT['amount']}", "--as", "erin", "--json", *extra)
    assert res.exit_code == 0, res.output
    return str(json.loads(res.stdout)["id"])


def _no_raw_controls(text: str) -> None:
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text, repr(text)


def test_escape_text_makes_every_control_visible() -> None:
    assert escape_text("a\x1b[2Jb\u202ec\x9bd\te") == "a\\x1b[2Jb\\u202ec\\x9bd\\x09e"
    assert escape_lines("one\x1b\ntwo") == "one\\x1b\ntwo"
    shown = json_safe(json.dumps({"r": "x\u202ey\x85"}, ensure_ascii=False))
    assert "\u202e" not in shown and json.loads(shown) == {"r": "x\u202ey\x85"}
    assert check_name("alice", "--as") == "alice"
    with pytest.raises(ParameterError, match=r"--as.*control characters \(\\x1b\)"):
        check_name("al\x1bice", "--as")


def test_names_with_control_characters_are_refused_on_the_command_line(tmp_path: Path) -> None:
    app = _app(tmp_path)
    res = _cli(app, "run", PAYOUT_FILE, "-i", f"address={PAYOUT['address']}", "-i", "amount=5",
               "--as", "erin\x1b[2J")
    assert res.exit_code == 2 and "control characters" in res.output
    _no_raw_controls(res.output)
    res = _cli(app, "run", PAYOUT_FILE, "-i", f"address={PAYOUT['address']}", "-i", "amo\x1bunt=5")
    assert res.exit_code == 2 and "control characters" in res.output
    _no_raw_controls(res.output)
    res = _cli(app, "runs", "--json")
    assert json.loads(res.stdout) == []  # nothing was started


def test_free_text_is_escaped_in_show_runs_and_audit(tmp_path: Path) -> None:
    app = _app(tmp_path)
    run_id = _start(app)
    assert _cli(app, "approve", run_id, "--as", "alice", "--comment", EVIL).exit_code == 0
    assert _cli(app, "reject", run_id, "--as", "bob", "--reason", EVIL).exit_code == 0
    shown = _cli(app, "show", run_id)
    assert shown.exit_code == 0
    _no_raw_controls(shown.stdout)
    assert "\\x1b[32mAPPROVED by risk\\x1b[0m" in shown.stdout
    assert "[bold]ok[/bold]" in shown.stdout  # rich markup is shown as text, not applied
    as_json = _cli(app, "show", run_id, "--json")
    _no_raw_controls(as_json.stdout)
    comments = {a["comment"] for a in json.loads(as_json.stdout)["approvals"]}
    assert EVIL in comments  # stored and exported exactly as given
    for fmt in ("--jsonl", "--json"):
        out = _cli(app, "audit", "--run", run_id, fmt).stdout
        _no_raw_controls(out)
    table = _cli(app, "audit", "--run", run_id).stdout
    _no_raw_controls(table)


def test_key_profile_names_with_control_characters_are_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text('profiles:\n  "ops\\e[2J": {api_key: k, secret_env: X, permissions: [read]}\n')
    with pytest.raises(ConfigError, match=r"control characters"):
        load_key_specs(keys)


def test_input_names_must_be_identifiers_to_the_end(tmp_path: Path) -> None:
    from treasury.errors import WorkflowInvalid
    from treasury.language.loader import load_workflow_text

    text = (ROOT / "workflows" / "vendor-payout.yaml").read_text()
    bad = text.replace("  amount:", '  "amount\\n":', 1)
    assert bad != text
    with pytest.raises(WorkflowInvalid, match="must be an identifier"):
        load_workflow_text(bad, source="wf.yaml")
