"""``treasury validate`` and ``treasury schema`` through the real click group."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from treasury.cli.main import cli

from .conftest import CONFIG, STAND_IN_KEYS, WORKFLOWS

BAD = """\
name: payout
steps:
  - id: pay
    op: withdrawl
    key: withdrawals
  - id: pay
    op: server_time
    key: nobody
"""


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A config folder with the repository's people (and keys, or the stand-in)."""
    out = tmp_path / "config"
    out.mkdir()
    shutil.copy(CONFIG / "people.yaml", out / "people.yaml")
    if (CONFIG / "keys.yaml").exists():
        shutil.copy(CONFIG / "keys.yaml", out / "keys.yaml")
    else:
        (out / "keys.yaml").write_text(STAND_IN_KEYS)
    if (CONFIG / "policy.yaml").exists():
        shutil.copy(CONFIG / "policy.yaml", out / "policy.yaml")
    return out


def _run(config_dir: Path, *args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(cli, list(args), env={"TREASURY_CONFIG_DIR": str(config_dir)})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_valid_files_print_ok_and_exit_0(config_dir: Path) -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yaml"))
    code, out, err = _run(config_dir, "validate", *files)
    assert code == 0, out + err
    assert out.splitlines() == [f"{f}: ok" for f in files]


def test_problems_are_located_sorted_and_exit_2(config_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    # both in one folder, so the expected order does not depend on where the checkout lives
    good = tmp_path / "fiat-payout.yaml"
    shutil.copy(WORKFLOWS / "fiat-payout.yaml", good)
    code, out, err = _run(config_dir, "validate", str(good), str(bad))
    assert code == 2
    assert out.splitlines() == [
        f"{bad}:4:5: unknown operation 'withdrawl'; did you mean 'withdraw'? (`treasury ops` lists them) (steps[0].op)",
        f"{bad}:6:5: duplicate step id 'pay' (first at line 3) (steps[1].id)",
        f"{bad}:8:5: unknown key profile 'nobody'; profiles in keys.yaml: fiat, ops-read, trading, transfers, "
        "whitelisting, withdrawals (steps[1].key)",
        f"{good}: ok",
    ]
    assert "3 problems in 1 file" in err


def test_json_output(config_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps: []\n")
    code, out, _ = _run(config_dir, "validate", "--json", str(bad))
    assert code == 2
    report = json.loads(out)
    assert report["ok"] is False
    (entry,) = report["files"]
    assert entry["file"] == str(bad) and entry["ok"] is False
    assert entry["problems"] == [{"file": str(bad), "line": 2, "col": 1, "path": "steps",
                                  "message": "must have at least 1 item, not 0"}]


def test_yaml_attacks_are_problems_not_tracebacks(config_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "evil.yaml"
    bad.write_text('name: !!python/object/apply:os.system ["echo hi"]\nsteps: [*x]\n')
    code, out, _ = _run(config_dir, "validate", str(bad))
    assert code == 2
    assert out.startswith(f"{bad}:1:7: tag !!python/object/apply:os.system is not allowed")
    assert "Traceback" not in out


def test_missing_config_files_are_notes(tmp_path: Path) -> None:
    empty = tmp_path / "empty-config"
    empty.mkdir()
    code, out, err = _run(empty, "validate", str(WORKFLOWS / "vendor-payout.yaml"))
    assert code == 0 and out.strip().endswith("vendor-payout.yaml: ok")
    assert "keys.yaml not found: key profiles and permissions not checked" in err
    assert "people.yaml not found" in err and "policy.yaml not found" in err


def test_an_invalid_config_file_is_a_config_error(config_dir: Path) -> None:
    (config_dir / "people.yaml").write_text("people: [alice]\n")
    code, out, err = _run(config_dir, "validate", str(WORKFLOWS / "vendor-payout.yaml"))
    assert code == 2 and out == ""
    assert err.startswith(f"error: {config_dir / 'people.yaml'}:1:9:")


def test_missing_file_argument_is_a_problem(config_dir: Path, tmp_path: Path) -> None:
    code, out, _ = _run(config_dir, "validate", str(tmp_path / "nope.yaml"))
    assert code == 2 and out.startswith(f"{tmp_path / 'nope.yaml'}:1:1: cannot read the file")


def test_validate_needs_a_file(config_dir: Path) -> None:
    code, _, err = _run(config_dir, "validate")
    assert code == 2 and "Missing argument" in err


def test_schema_prints_json_schema(config_dir: Path) -> None:
    code, out, _ = _run(config_dir, "schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"].startswith("https://json-schema.org/") and schema["title"] == "treasury workflow"
    assert set(schema["properties"]) == {"name", "description", "inputs", "schedule", "steps"}
