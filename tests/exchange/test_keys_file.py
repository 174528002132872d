"""Errors in keys.yaml are located as FILE:LINE:COL: message (field.path), like workflow errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from treasury.errors import ConfigError
from treasury.keys import load_key_specs

BROKEN = """\
profiles:
  ops-read: {api_key: demo-read, secret_file: s.secret, permissions: [read]}
  trading:
    api_key: demo-trade
    secret_env: TREASURY_SECRET_TRADING
    permissions: [read, trading]
  both: {api_key: k, secret_env: A, secret_file: b.secret, permissions: [read]}
  typo: {api_key: k, secret_env: A, permisions: [read]}
  ops-read: {api_key: again, secret_env: B, permissions: [read]}
"""


def _lines(tmp_path: Path, text: str) -> tuple[Path, list[str]]:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_key_specs(path)
    assert info.value.source == str(path)
    return path, str(info.value).splitlines()


def test_every_problem_in_keys_yaml_is_located(tmp_path: Path) -> None:
    path, lines = _lines(tmp_path, BROKEN)
    assert f"{path}:6:25: " in lines[0] and "(profiles.trading.permissions[1])" in lines[0]
    assert lines[1].startswith(f"{path}:7:9: give exactly one of secret_env or secret_file (profiles.both)")
    assert any(x.startswith(f"{path}:8:37: Extra inputs are not permitted (profiles.typo.permisions)") for x in lines)
    assert any(x.startswith(f"{path}:8:9: ") and "permissions" in x for x in lines)  # the missing field
    assert any(x.startswith(f"{path}:9:3: duplicate key 'ops-read'") for x in lines)


def test_a_yaml_syntax_error_in_keys_yaml_is_located(tmp_path: Path) -> None:
    path, lines = _lines(tmp_path, "profiles:\n  ops: {api_key: k, secret_env: A\n")
    assert lines[0].startswith(f"{path}:3:1: ")


def test_a_missing_keys_file_keeps_its_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"keys\.yaml: file not found"):
        load_key_specs(tmp_path / "keys.yaml")
