"""A secret file that others may read gets a warning, and in production a refusal (as ssh does)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from treasury.errors import ConfigError
from treasury.keys import load_key_specs
from treasury.runtime.exchange import load_profile
from treasury.secretfiles import check_private_file
from treasury.settings import Environment, Settings

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")

KEYS = "profiles:\n  ops: {api_key: k1, secret_file: ops.secret, permissions: [read]}\n"


def _secret(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "ops.secret"
    path.write_text("s3cr3t-value\n")
    path.chmod(mode)
    (tmp_path / "keys.yaml").write_text(KEYS)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400])
@pytest.mark.parametrize("env", list(Environment))
def test_a_file_only_its_owner_can_read_passes_everywhere(tmp_path: Path, mode: int, env: Environment) -> None:
    assert check_private_file(_secret(tmp_path, mode), env) is None


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606])
@pytest.mark.parametrize("env", [Environment.SIMULATOR, Environment.SANDBOX])
def test_group_or_world_access_is_a_warning_outside_production(
    tmp_path: Path, mode: int, env: Environment, caplog: pytest.LogCaptureFixture
) -> None:
    path = _secret(tmp_path, mode)
    with caplog.at_level(logging.WARNING, logger="treasury.secretfiles"):
        warning = check_private_file(path, env, what="secret file of key profile 'ops'")
    assert warning is not None and str(path) in warning and f"{mode:04o}" in warning
    assert f"chmod 600 {path}" in warning and "key profile 'ops'" in warning
    assert warning in caplog.text
    assert "s3cr3t" not in warning


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_group_or_world_access_is_refused_in_production(tmp_path: Path, mode: int) -> None:
    path = _secret(tmp_path, mode)
    with pytest.raises(ConfigError) as info:
        check_private_file(path, "production")
    assert str(path) in str(info.value) and "chmod 600" in str(info.value)
    assert "TREASURY_ENV=production" in str(info.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.secret"):
        check_private_file(tmp_path / "nope.secret", "simulator")


def test_loading_a_key_profile_checks_its_secret_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _secret(tmp_path, 0o644)
    prod = Settings(env=Environment.PRODUCTION, config_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        load_profile(prod, "ops")
    assert str(path) in str(info.value) and "s3cr3t" not in str(info.value)
    with caplog.at_level(logging.WARNING):
        profile = load_profile(Settings(config_dir=tmp_path), "ops")  # simulator: a warning
    assert profile.secret.get_secret_value() == "s3cr3t-value"
    assert str(path) in caplog.text
    path.chmod(0o600)
    assert load_profile(prod, "ops").secret.get_secret_value() == "s3cr3t-value"
    # a spec resolved without naming the environment is held to production's rule
    path.chmod(0o644)
    with pytest.raises(ConfigError):
        load_key_specs(tmp_path / "keys.yaml")["ops"].resolve()


def test_the_shipped_demo_secrets_only_warn_in_the_simulator() -> None:
    # git checks files out 0644: the normal dev flow (TREASURY_ENV=simulator) must keep working
    shipped = Path(__file__).resolve().parents[2] / "config" / "secrets" / "ops-read.secret"
    mode = stat.S_IMODE(shipped.stat().st_mode)
    result = check_private_file(shipped, Environment.SIMULATOR)
    assert (result is None) == (mode & 0o077 == 0)
