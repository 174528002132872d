"""``sub_accounts:`` in a simulator state file: N sub-accounts with balances and a key each;
today's ``accounts``/``keys`` stay valid beside it; problems name the block's field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from treasury.errors import ConfigError
from treasury.simulator import load_state
from treasury.simulator.state import parse_state

STATE = """\
accounts:
  - {id: "1001", type: trading, label: Master, balances: {USDT: "0"}}
keys:
  - {api_key: master, secret: master-secret, account: "1001", permissions: [read, transfer]}
sub_accounts:
  - ids: {from: 2001, count: 100}
    balances: {USDT: "125.50"}
    key: {api_key: "sub-{account}", secret: "sub-{account}-secret", permissions: [read, transfer]}
  - ids: ["custody-a"]
    type: custody
"""


def test_a_block_makes_accounts_with_balances_and_one_key_each(tmp_path: Path) -> None:
    path = tmp_path / "simulator.yaml"
    path.write_text(STATE)
    cfg = load_state(path)
    assert len(cfg.accounts) == 1 + 100 + 1 and len(cfg.keys) == 1 + 100
    sub = next(a for a in cfg.accounts if a.id == "2042")
    assert (sub.type, sub.label, sub.balances) == ("trading", "Sub-account 2042", {"USDT": Decimal("125.50")})
    key = next(k for k in cfg.keys if k.account == "2042")
    assert (key.api_key, key.secret, key.master) == ("sub-2042", "sub-2042-secret", False)
    assert next(a for a in cfg.accounts if a.id == "custody-a").type == "custody"
    assert cfg.keys[0].api_key == "master"  # listed ones come first, unchanged
    assert parse_state(cfg.model_dump(mode="json")).accounts == cfg.accounts  # expands to today's format


@pytest.mark.parametrize(
    ("block", "field", "message"),
    [
        ({"ids": {"from": 1, "count": 0}}, "sub_accounts[0].ids", "greater than or equal to 1"),
        ({"ids": ["9"], "balances": {"USDT": 1.5}}, "sub_accounts[0].balances.USDT", "quoted"),
        ({"ids": ["9"], "key": {"api_key": "same", "secret": "s-{account}", "permissions": ["read"]}},
         "sub_accounts[0].key", "must contain {account}"),
        ({"ids": ["9"], "colour": "blue"}, "sub_accounts[0].colour", "Extra inputs"),
        ({"ids": ["1001"]}, "accounts[1].id", "duplicate account id '1001'"),
    ],
)
def test_a_bad_block_is_named(block: dict[str, object], field: str, message: str) -> None:
    data = {"accounts": [{"id": "1001", "type": "trading"}], "sub_accounts": [block]}
    with pytest.raises(ConfigError) as info:
        parse_state(data, "sim.yaml")
    assert info.value.field == field and message in str(info.value)


def test_a_file_of_sub_accounts_alone_is_a_world() -> None:
    cfg = parse_state({"sub_accounts": [{"ids": ["a", "b"], "balances": {"BTC": "1"}}]})
    assert [a.id for a in cfg.accounts] == ["a", "b"] and cfg.keys == []
