"""Loading config/policy.yaml: the shipped example, digests, and located errors."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path

import pytest

from tests.policy.helpers import SHIPPED, VENDOR_A, VENDOR_B, policy_from
from treasury.errors import ConfigError
from treasury.policy import Policy, load_policy


def test_shipped_policy_has_every_rule_kind(shipped: Policy) -> None:
    assert shipped.digest == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    assert not shipped.is_empty()
    withdraw = shipped.limits[0]
    assert (withdraw.op, withdraw.target, withdraw.max_per_tx, withdraw.max_per_window, withdraw.window) == (
        "withdraw", "USDT", Decimal("50000"), Decimal("200000"), "24h")
    assert withdraw.window_delta is not None and withdraw.window_delta.total_seconds() == 86400
    assert (shipped.limits[1].op, shipped.limits[1].max_per_tx) == ("asset_transfer", Decimal("1000000"))
    assert [d.address for d in shipped.destinations.withdraw or []] == [VENDOR_A, VENDOR_B]
    assert [d.reference for d in shipped.destinations.fiat_withdraw or []] == ["HSBC-001-234567-838"]
    window = shipped.windows[0]
    assert (window.op, window.days, window.hours, window.timezone) == (
        "fiat_withdraw", ["MON", "TUE", "WED", "THU", "FRI"], "09:00-17:00", "Asia/Hong_Kong")
    tier = shipped.approval_tiers[0]
    assert (tier.op, tier.target, tier.above, tier.quorum, tier.group) == (
        "withdraw", "USDT", Decimal("100000"), 2, "treasury-managers")


def test_to_dict_keeps_amounts_as_strings(shipped: Policy) -> None:
    data = shipped.to_dict()
    assert data["limits"][0] == {
        "op": "withdraw", "coin": "USDT", "max_per_tx": "50000", "max_per_window": "200000", "window": "24h",
    }
    assert data["approval_tiers"][0]["above"] == "100000"
    assert data["digest"] == shipped.digest


def test_digest_changes_with_any_byte(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("limits: []\n")
    first = load_policy(path).digest
    path.write_text("limits: []  # comment\n")
    assert load_policy(path).digest != first


def test_missing_file_is_an_error_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    with pytest.raises(ConfigError, match="policy file not found") as info:
        load_policy(path)
    assert info.value.source == str(path)
    empty = load_policy(path, allow_missing=True)
    assert empty.is_empty()
    assert empty.digest == hashlib.sha256(b"").hexdigest()


def test_empty_file_is_an_empty_policy() -> None:
    assert policy_from("").is_empty()
    assert policy_from("# nothing yet\n").is_empty()


def test_an_empty_allowlist_is_not_an_empty_policy() -> None:
    assert not policy_from("destinations: {withdraw: []}").is_empty()


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        policy_from(text, source="cfg/policy.yaml")
    return str(info.value).splitlines()


def test_float_amount_is_located_at_its_value() -> None:
    lines = _problems("""\
        limits:
          - op: withdraw
            coin: USDT
            max_per_tx: 50000.5
        """)
    assert lines == [
        "cfg/policy.yaml:4:17: must be a quoted decimal string such as \"50000\", not float 50000.5 "
        "(limits[0].max_per_tx)"
    ]


def test_every_problem_is_reported_with_its_path() -> None:
    lines = _problems("""\
        limits:
          - {op: withdraw, coin: USDT, max_per_tx: "-5"}
          - {op: payout, coin: USDT, max_per_tx: "1"}
        windows:
          - {op: fiat_withdraw, days: [MON, FUNDAY], hours: "9-17", timezone: Mars/Olympus}
        approval_tiers:
          - {op: withdraw, coin: USDT, above: "100", quorum: 0}
        """)
    assert len(lines) == 6
    assert lines[0].startswith("cfg/policy.yaml:2:44: must not be negative")
    assert lines[0].endswith("(limits[0].max_per_tx)")
    assert lines[1].startswith("cfg/policy.yaml:3:10: unknown operation 'payout'")
    assert "(limits[1].op)" in lines[1]
    assert "unknown day 'FUNDAY'" in lines[2] and "(windows[0].days)" in lines[2]
    assert 'hours \'9-17\' must look like "09:00-17:00"' in lines[3] and "(windows[0].hours)" in lines[3]
    assert "unknown timezone 'Mars/Olympus'" in lines[4] and "(windows[0].timezone)" in lines[4]
    assert lines[5].startswith("cfg/policy.yaml:7:54: ") and "(approval_tiers[0].quorum)" in lines[5]


def test_error_carries_source_and_field() -> None:
    with pytest.raises(ConfigError) as info:
        policy_from("limits:\n  - {op: withdraw, coin: USDT, max_per_tx: 5}\n", source="p.yaml")
    assert info.value.source == "p.yaml"
    assert info.value.field == "limits[0].max_per_tx"


def test_unknown_field_points_at_the_key() -> None:
    lines = _problems("""\
        limits:
          - op: withdraw
            coin: USDT
            max_per_txn: "5"
        """)
    assert lines == ["cfg/policy.yaml:4:5: Extra inputs are not permitted (limits[0].max_per_txn)"]


def test_a_rule_level_problem_points_at_the_rule() -> None:
    lines = _problems("""\
        limits:
          - op: withdraw
            coin: USDT
        """)
    assert lines == ["cfg/policy.yaml:2:5: give max_per_tx, max_per_window, or both (limits[0])"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ('{op: withdraw, coin: USDT, max_per_window: "5"}', "max_per_window needs a window"),
        ('{op: withdraw, coin: USDT, max_per_tx: "5", window: 24h}', "window is only meaningful"),
        ('{op: withdraw, max_per_tx: "5"}', "give exactly one of coin, asset or symbol"),
        ('{op: withdraw, coin: USDT, asset: USDT, max_per_tx: "5"}', "give exactly one of coin"),
        ('{op: spot_order, symbol: BTCUSDT, max_per_tx: "5", destination: x}', "spot_order has no destination"),
        ('{op: batch_orders, symbol: BTCUSDT, max_per_tx: "5"}', "batch_orders is covered by spot_order"),
        ('{op: withdraw, coin: USDT, max_per_window: "5", window: 24 hours}', "is not a duration"),
        ('{op: withdraw, coin: USDT, max_per_window: "5", window: 0h}', "longer than zero"),
        ('{op: withdraw, coin: USDT, max_per_tx: "5", account: 1001}', "valid string"),
    ],
)
def test_limit_rule_problems(rule: str, message: str) -> None:
    lines = _problems(f"limits:\n  - {rule}\n")
    assert any(message in line and line.startswith("cfg/policy.yaml:2:") for line in lines), lines


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("destinations: {withdraw: }", "give a list of entries"),
        ("destinations: {payouts: []}", "Extra inputs are not permitted"),
        ("destinations: {withdraw: [{coin: USDT, chain: ETH, address: '0x1'}]}", "Field required"),
        ("windows: [{op: withdraw, days: [], hours: '09:00-17:00', timezone: UTC}]", "at least 1 item"),
        ("windows: [{op: withdraw, days: [MON], hours: '09:00-09:00', timezone: UTC}]", "is empty"),
        ("windows: [{op: withdraw, days: [MON], hours: '09:00-24:30', timezone: UTC}]", "not a valid time"),
        ("approval_tiers: [{op: withdraw, coin: USDT, above: '1', quorum: '2'}]", "valid integer"),
        ("surprise: 1", "Extra inputs are not permitted"),
        ("- just a list", "valid dictionary"),
    ],
)
def test_other_problems(text: str, message: str) -> None:
    lines = _problems(text + "\n")
    assert any(message in line and line.startswith("cfg/policy.yaml:1:") for line in lines), lines


def test_duplicate_keys_are_refused() -> None:
    # safe_load would silently keep the second max_per_tx
    lines = _problems("""\
        limits:
          - op: withdraw
            coin: USDT
            max_per_tx: "50000"
            max_per_tx: "5000000"
        """)
    assert lines == ["cfg/policy.yaml:5:5: duplicate key 'max_per_tx' (limits[0].max_per_tx)"]


def test_yaml_syntax_error_is_located() -> None:
    with pytest.raises(ConfigError) as info:
        policy_from("limits:\n  - {op: withdraw, coin: USDT\n", source="cfg/policy.yaml")
    assert str(info.value).startswith("cfg/policy.yaml:3:1: ")
    assert info.value.source == "cfg/policy.yaml"


def test_lowercase_days_and_overnight_hours_are_accepted() -> None:
    policy = policy_from("windows: [{op: spot_order, days: [mon, sat], hours: '22:00-06:00', timezone: UTC}]")
    assert policy.windows[0].days == ["MON", "SAT"]


def test_policy_none_is_an_explicit_opt_out_that_takes_no_rules_and_no_other_value() -> None:
    opted = policy_from("# local simulator only\npolicy: none\n")
    assert opted.opt_out and opted.is_empty() and opted.to_dict()["opt_out"] is True
    with pytest.raises(ConfigError) as info:
        policy_from('policy: none\nlimits:\n  - {op: withdraw, coin: USDT, max_per_tx: "1"}\n',
                    source="cfg/policy.yaml")
    assert str(info.value).startswith("cfg/policy.yaml:1:1: `policy: none` opts out of every rule")
    with pytest.raises(ConfigError) as info:
        policy_from("policy: off\n", source="cfg/policy.yaml")
    assert str(info.value).startswith("cfg/policy.yaml:1:9: the only value is `none`")
    assert "(policy)" in str(info.value)
