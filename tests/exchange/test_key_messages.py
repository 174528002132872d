"""Messages about keys that a person can act on: which profile, and what to check."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.exchange.conftest import CONFIG_DIR, R, W, profile
from treasury.cli.context import AppContext
from treasury.cli.main import cli
from treasury.errors import AuthenticationFailed
from treasury.exchange.client import HashKeyClient
from treasury.settings import Settings


def test_a_wrong_secret_names_the_key_profile_and_what_to_check(client: HashKeyClient) -> None:
    wrong = profile("withdrawals", "demo-withdraw", R, W, secret="not-the-secret")
    with pytest.raises(AuthenticationFailed) as info:
        client.call("balances", wrong)
    text = str(info.value)
    assert "key profile 'withdrawals'" in text and "demo-withdraw" in text and "secret" in text
    assert info.value.key_profile == "withdrawals" and info.value.to_dict()["key_profile"] == "withdrawals"
    assert "not-the-secret" not in text


def test_treasury_query_with_a_wrong_secret_file_names_the_profile(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    secret = config / "secrets" / "ops-read.secret"
    secret.write_text("a-wrong-secret\n")
    secret.chmod(0o600)
    settings = Settings(config_dir=config, database_url=f"sqlite:///{tmp_path / 't.db'}")
    result = CliRunner().invoke(cli, ["query", "balances", "--key", "ops-read"], obj=AppContext(settings=settings))
    assert result.exit_code != 0
    assert "key profile 'ops-read'" in result.output and "a-wrong-secret" not in result.output
