"""``treasury policy check``: validates the file, prints rules and headroom; exit 2 when invalid."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from freezegun import freeze_time

from tests.policy.helpers import HK_TUESDAY_10, SHIPPED, usdt_withdraw
from treasury.cli.main import main
from treasury.policy import load_policy, reserve
from treasury.schema import create_schema
from treasury.store.db import make_engine


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "config"
    folder.mkdir()
    shutil.copy(SHIPPED, folder / "policy.yaml")
    monkeypatch.setenv("TREASURY_CONFIG_DIR", str(folder))
    monkeypatch.setenv("TREASURY_DATABASE_URL", f"sqlite:///{tmp_path / 'treasury.db'}")
    return folder


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_check_json_shows_rules_windows_and_headroom(
    config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'treasury.db'}")
    create_schema(engine)
    with engine.begin() as conn:
        reserve(conn, load_policy(SHIPPED), run_id="r1", step_id="pay", op="withdraw",
                params=usdt_withdraw("30000"), at=HK_TUESDAY_10)
    engine.dispose()
    with freeze_time(HK_TUESDAY_10):
        code, out, _ = _run(["policy", "check", "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["digest"] == load_policy(SHIPPED).digest
    assert report["limits"][0]["max_per_tx"] == "50000"
    assert report["windows"][0]["open_now"] is True
    assert report["windows"][0]["timezone"] == "Asia/Hong_Kong"
    assert report["headroom"] == [{
        "rule": "limits[0].max_per_window", "op": "withdraw", "asset": "USDT", "window": "24h",
        "limit": "200000", "used": "30000", "remaining": "170000", "account": None, "destination": None,
    }]


def test_check_text(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["policy", "check"], capsys)
    assert code == 0
    assert out.startswith(f"policy {config_dir / 'policy.yaml'}: valid, sha256 ")
    for title in ("limits", "destinations (allowlists)", "windows", "approval tiers", "headroom at"):
        assert title in out


def test_invalid_policy_exits_2_with_location(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_dir / "policy.yaml"
    path.write_text('limits:\n  - {op: withdraw, coin: USDT, max_per_tx: 50000}\n')
    code, _, err = _run(["policy", "check"], capsys)
    assert code == 2
    assert f"{path}:2:44: must be a quoted decimal string" in err
    assert "(limits[0].max_per_tx)" in err


def test_check_another_file(config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "empty.yaml"
    other.write_text("")
    code, out, _ = _run(["policy", "check", "--file", str(other)], capsys)
    assert code == 0 and "no rules: every operation is allowed" in out
    code, _, err = _run(["policy", "check", "--file", str(tmp_path / "absent.yaml")], capsys)
    assert code == 2 and "policy file not found" in err
