"""config/notify.yaml: routes, secrets from the environment, every problem located."""

from __future__ import annotations

from pathlib import Path

import pytest

from treasury.errors import ConfigError
from treasury.notify.config import load_notify, parse_notify

GOOD = b"""\
channels:
  ops-webhook:
    type: webhook
    url: https://hooks.example.com/treasury
    secret_env: HOOK_SECRET
  desk-slack:
    type: slack
    url_env: SLACK_URL
routes:
  - {events: [approval.requested, approval.expiring], channels: [desk-slack]}
  - {events: ["*"], channels: [ops-webhook, desk-slack]}
"""
ENV = {"HOOK_SECRET": "s3cret", "SLACK_URL": "https://hooks.slack.com/services/T/B/X"}


def test_routes_pick_channels_in_order_each_once() -> None:
    config = parse_notify(GOOD, "notify.yaml", ENV)
    assert config.channels_for("approval.requested") == ["desk-slack", "ops-webhook"]
    assert config.channels_for("exchange.banned") == ["ops-webhook", "desk-slack"]
    hook = config.channels["ops-webhook"]
    assert hook.secret is not None and hook.secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config) and "hooks.slack.com" not in repr(config)


def test_every_problem_is_located(tmp_path: Path) -> None:
    bad = b"""\
channels:
  hook:
    type: webhook
    url: ftp://x
  plain:
    type: webhook
    url: https://x
  slack:
    type: slack
    url_env: MISSING_URL
    colour: red
routes:
  - {events: [approval.requested, payday], channels: [hook]}
  - {events: ["*"], channels: [nowhere]}
"""
    with pytest.raises(ConfigError) as info:
        parse_notify(bad, "notify.yaml", {})
    text = str(info.value)
    assert "notify.yaml:4:10: must be an http:// or https:// URL (channels.hook.url)" in text
    assert "notify.yaml:11:5: Extra inputs are not permitted (channels.slack.colour)" in text
    assert "notify.yaml:13:35: unknown event 'payday'" in text
    # a file that parses: the cross-checks report all of theirs
    bad2 = bad.replace(b"ftp://x", b"https://x").replace(b"    colour: red\n", b"").replace(b", payday", b"")
    with pytest.raises(ConfigError) as info:
        parse_notify(bad2, "notify.yaml", {})
    lines = str(info.value).splitlines()
    assert lines == [
        "notify.yaml:3:5: a webhook needs secret_env: the variable holding its signing key (channels.hook)",
        "notify.yaml:6:5: a webhook needs secret_env: the variable holding its signing key (channels.plain)",
        "notify.yaml:10:14: environment variable MISSING_URL is not set (channels.slack.url_env)",
        "notify.yaml:13:32: no channel named 'nowhere' (routes[1].channels[0])",
    ]


def test_a_missing_file_means_no_channels(tmp_path: Path) -> None:
    config = load_notify(tmp_path / "notify.yaml")
    assert config.channels == {} and config.channels_for("exchange.banned") == []


def test_the_cli_check_prints_located_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from treasury.cli.main import cli

    (tmp_path / "notify.yaml").write_text("channels:\n  hook: {type: webhook, url: 'https://x'}\n")
    monkeypatch.setenv("TREASURY_CONFIG_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["notify", "check"])
    assert result.exit_code == 2
    assert f"{tmp_path / 'notify.yaml'}:2:9: a webhook needs secret_env" in result.output
    (tmp_path / "notify.yaml").write_bytes(GOOD)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["notify", "check"])
    assert result.exit_code == 0, result.output
    assert "approval.requested -> desk-slack, ops-webhook" in result.output
    assert "s3cret" not in result.output and "hooks.slack.com" not in result.output


def test_the_shipped_example_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "notify.example.yaml"
    config = load_notify(example, {"TREASURY_NOTIFY_WEBHOOK_SECRET": "k",
                                   "TREASURY_NOTIFY_SLACK_URL": "https://hooks.slack.com/services/x"})
    assert config.channels_for("exchange.banned") == ["desk-slack", "ops-webhook"]
