"""Account-scoped policy rules reach withdrawals through the key profile's ``account_id``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.identities import signed_config_copy
from treasury.audit import query_events
from treasury.errors import ConfigError
from treasury.keys import load_key_specs

from .conftest import PAYOUT, load

RULE = 'limits:\n  - {op: withdraw, coin: USDT, account: "1001", max_per_tx: "1000"}\n'


def _config(tmp_path: Path, account_line: str) -> Path:
    config = tmp_path / "config"
    signed_config_copy(config)
    keys = (config / "keys.yaml").read_text()
    old = "permissions: [read, withdraw]}"
    assert old in keys
    (config / "keys.yaml").write_text(keys.replace(old, f"permissions: [read, withdraw]{account_line}}}"))
    (config / "policy.yaml").write_text(RULE)
    return config


def _pay(rt: Any) -> str:
    run_id = rt.service.start(load(rt, "vendor-payout.yaml"), PAYOUT, requested_by="erin")
    if rt.service.state_of(run_id) == "AWAITING_APPROVAL":
        rt.service.approve(run_id, "alice")
        rt.service.approve(run_id, "bob")
    return run_id


def test_a_rule_for_the_keys_account_applies_to_its_withdrawals(make_runtime: Any, tmp_path: Path) -> None:
    rt, wire = make_runtime(config_dir=_config(tmp_path, ', account_id: "1001"'))
    run_id = _pay(rt)
    shown = rt.service.show(run_id)
    assert shown["state"] == "FAILED" and "1000" in str(shown) and "account is not known" not in str(shown)
    assert [r for r in wire.writes() if r.url.path == "/api/v1/account/withdraw"] == []
    decisions = [e.payload for e in query_events(rt.engine, run_id=run_id) if e.type == "policy.decision"]
    assert decisions and not decisions[0]["verdicts"][0]["allowed"]


def test_a_rule_for_another_account_does_not(make_runtime: Any, tmp_path: Path) -> None:
    rt, wire = make_runtime(config_dir=_config(tmp_path, ', account_id: "2002"'))
    run_id = _pay(rt)
    assert rt.service.state_of(run_id) == "SUCCEEDED"
    assert len([r for r in wire.writes() if r.url.path == "/api/v1/account/withdraw"]) == 1


def test_without_an_account_the_rule_cannot_be_decided_and_denies(make_runtime: Any, tmp_path: Path) -> None:
    rt, wire = make_runtime(config_dir=_config(tmp_path, ""))
    run_id = _pay(rt)
    shown = rt.service.show(run_id)
    assert shown["state"] == "FAILED" and "account is not known" in str(shown)
    assert [r for r in wire.writes() if r.url.path == "/api/v1/account/withdraw"] == []


def test_an_empty_account_id_is_refused_naming_the_field(tmp_path: Path) -> None:
    config = _config(tmp_path, ', account_id: ""')
    with pytest.raises(ConfigError, match="account_id"):
        load_key_specs(config / "keys.yaml")
