"""The state file: the demo world loads; every kind of mistake names the file and the field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.simulator.conftest import STATE_FILE
from treasury.errors import ConfigError
from treasury.models import Permission
from treasury.simulator import SimulatorConfig, load_faults, load_state, parse_state

MINIMAL = """
accounts:
  - {id: "1001", type: trading, label: Main, balances: {USDT: "10"}}
keys:
  - {api_key: k, secret: s, account: "1001", permissions: [read]}
"""


def write(tmp_path: Path, text: str, name: str = "sim.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_demo_world_loads() -> None:
    cfg = load_state(STATE_FILE)
    assert [a.id for a in cfg.accounts] == ["1001", "1002", "1003"]
    assert cfg.accounts[0].balances == {"USDT": Decimal(250000), "BTC": Decimal(3), "ETH": Decimal(50)}
    assert cfg.accounts[2].balances == {"USD": Decimal(100000), "HKD": Decimal(500000)}
    keys = {k.api_key: k for k in cfg.keys}
    assert set(keys) == {
        "demo-read",
        "demo-trade",
        "demo-transfer",
        "demo-withdraw",
        "demo-fiat",
        "demo-whitelist",
        "demo-admin",
    }
    assert keys["demo-fiat"].account == "1003"
    assert set(keys["demo-admin"].permissions) == set(Permission)
    assert all(k.secret == f"{k.api_key}-secret" for k in cfg.keys)
    assert {(s.symbol, s.price) for s in cfg.symbols} == {("BTCUSDT", Decimal(60000)), ("ETHUSDT", Decimal(3000))}
    assert cfg.fiat_bank_accounts == ["HSBC-001-234567-838"]
    assert cfg.settings.rate_limits.enabled is True
    assert cfg.settings.duplicate_codes.order == "-1141"


def test_defaults_without_settings(tmp_path: Path) -> None:
    cfg = load_state(write(tmp_path, MINIMAL))
    s = cfg.settings
    assert (s.recv_window_default_ms, s.max_ahead_ms, s.timeout_after_seconds) == (5000, 1000, 10.0)
    r = s.rate_limits
    assert (r.query, r.order, r.transfer, r.window_seconds, r.suspension_seconds, r.ban_seconds) == (
        2,
        10,
        1,
        1.0,
        60.0,
        300.0,
    )
    assert s.duplicate_codes.transfer == s.duplicate_codes.withdraw == s.duplicate_codes.fiat_withdraw == "-1024"
    assert "USDT" in cfg.effective_coins()


def test_yaml_float_amount_is_refused_naming_the_field(tmp_path: Path) -> None:
    text = MINIMAL.replace('balances: {USDT: "10"}', "balances: {USDT: 1.5}")
    with pytest.raises(ConfigError) as err:
        load_state(write(tmp_path, text))
    assert err.value.source == str(tmp_path / "sim.yaml")
    assert err.value.field == "accounts[0].balances.USDT"
    assert "float" in str(err.value) and "quoted" in str(err.value)
    assert str(err.value).startswith(f"{tmp_path / 'sim.yaml'}: accounts[0].balances.USDT: ")


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("type: trading", "type: savings", "accounts[0].type", "trading"),
        ("label: Main,", "label: Main, colour: red,", "accounts[0].colour", "Extra"),
        ("permissions: [read]", "permissions: [read, admin]", "keys[0].permissions[1]", "read"),
        ('account: "1001"', 'account: "9999"', "keys[0].account", "unknown account"),
        ('account: "1001"', "account: 1001", "keys[0].account", "quoted string"),
        ('{USDT: "10"}', '{USDT: "-10"}', "accounts[0].balances.USDT", "negative"),
        ('{USDT: "10"}', '{USDT: "1e3"}', "accounts[0].balances.USDT", "plain decimal"),
    ],
)
def test_bad_fields_are_named(tmp_path: Path, old: str, new: str, field: str, words: str) -> None:
    assert old in MINIMAL
    with pytest.raises(ConfigError) as err:
        load_state(write(tmp_path, MINIMAL.replace(old, new, 1)))
    assert err.value.field == field
    assert words in str(err.value)


def test_cross_section_problems_are_all_reported(tmp_path: Path) -> None:
    text = MINIMAL + (
        "withdraw_whitelist:\n"
        '  - {coin: USDT, chain: Solana, address: "0xabc"}\n'
        "  - {coin: USDT, chain: ETH, address: 0x5b1f}\n"
        'symbols:\n  - {symbol: X, base: USDT, quote: USDT, price: "1"}\n'
    )
    with pytest.raises(ConfigError) as err:
        load_state(write(tmp_path, text))
    # the unquoted hex address is a YAML int: refused on its own field
    assert err.value.field == "withdraw_whitelist[1].address"
    fixed = text.replace("address: 0x5b1f", 'address: "0x5b1f"')
    with pytest.raises(ConfigError) as err:
        load_state(write(tmp_path, fixed))
    assert err.value.field == "withdraw_whitelist[0].chain"
    assert "Solana" in str(err.value) and "symbols[0].quote" in str(err.value)


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_state(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_state(write(tmp_path, "accounts: [\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_state(write(tmp_path, "- just a list\n"))
    with pytest.raises(ConfigError) as err:
        parse_state({"accounts": []}, "mem")
    assert err.value.field == "accounts"


def test_settings_block_and_shorthands(tmp_path: Path) -> None:
    text = MINIMAL + "settings:\n  limits: false\n  rate_limits: {ban_seconds: 5}\n  recv_window_default_ms: 3000\n"
    cfg = load_state(write(tmp_path, text))
    assert cfg.settings.rate_limits.enabled is False
    assert cfg.settings.rate_limits.ban_seconds == 5
    assert cfg.settings.recv_window_default_ms == 3000
    cfg2 = load_state(write(tmp_path, MINIMAL + "settings: {rate_limits: false}\n"))
    assert cfg2.settings.rate_limits.enabled is False
    with pytest.raises(ConfigError) as err:
        load_state(write(tmp_path, MINIMAL + "settings: {rate_limit: {}}\n"))
    assert err.value.field == "settings.rate_limit"


def test_overrides_by_constructor_attribute_and_tuned() -> None:
    cfg = load_state(STATE_FILE)
    tuned = cfg.tuned(rate_limits={"suspension_seconds": 2}, timeout_after_seconds=0.5)
    assert tuned.settings.rate_limits.suspension_seconds == 2
    assert tuned.settings.rate_limits.query == 2  # untouched values survive the merge
    assert tuned.settings.timeout_after_seconds == 0.5
    assert cfg.settings.rate_limits.suspension_seconds == 60  # the original is not changed
    cfg.settings.rate_limits.enabled = False
    assert cfg.settings.rate_limits.enabled is False
    built = SimulatorConfig(accounts=[{"id": "1", "type": "trading"}], settings={"max_ahead_ms": 10})
    assert built.settings.max_ahead_ms == 10


def test_faults_file(tmp_path: Path) -> None:
    good = write(
        tmp_path,
        "- {method: POST, path: /api/v1/account/withdraw, mode: error_after, status: 500, probability: 0.3}\n",
        "faults.yaml",
    )
    assert load_faults(good) == [
        {"method": "POST", "path": "/api/v1/account/withdraw", "mode": "error_after", "status": 500, "probability": 0.3}
    ]
    bad = write(tmp_path, "- {method: POST, path: /x, mode: explode}\n", "bad.yaml")
    with pytest.raises(ConfigError) as err:
        load_faults(bad)
    assert err.value.field == "[0].mode" and str(bad) in str(err.value)
