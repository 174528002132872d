"""One duration grammar for workflows, policy windows and ``audit --since/--until``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
import pytest

from treasury.cli.audit import parse_time
from treasury.durations import MAX_DURATION, parse_duration, read_duration
from treasury.language.spec import ApprovalSpec
from treasury.policy.model import LimitRule
from treasury.policy.model import parse_duration as parse_window

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", timedelta(seconds=30)), ("2w", timedelta(weeks=2)), ("1w2d3h4m5s", timedelta(9, 3 * 3600 + 245)),
     ("0m", timedelta(0)), (" 7d ", timedelta(days=7))],
)
def test_the_grammar(text: str, expected: timedelta) -> None:
    assert read_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "5 m", "1.5h", "-5m", "1y", "1W", "1234567s", "24 hours", "h"])
def test_what_is_not_a_duration(text: str) -> None:
    assert read_duration(text) is None


def test_weeks_are_accepted_everywhere() -> None:
    assert parse_duration("1w") == timedelta(weeks=1)
    assert parse_window("2w") == timedelta(weeks=2)
    rule = LimitRule.model_validate({"op": "withdraw", "coin": "USDT", "max_per_window": "5", "window": "1w"})
    assert rule.window_delta == timedelta(weeks=1)
    assert ApprovalSpec.model_validate({"approvers": ["a"], "quorum": 1, "expires_in": "1w"}).expires_in == "1w"
    assert parse_time("1w", "--since", NOW) == NOW - timedelta(weeks=1)
    assert parse_time("1h30m", "--since", NOW) == NOW - timedelta(minutes=90)


def test_callers_differ_only_in_their_bound() -> None:
    with pytest.raises(ValueError, match="longer than 366 days"):
        parse_duration("400d")
    assert parse_duration("366d") == MAX_DURATION
    assert parse_window("400d") == timedelta(days=400)  # policy windows were never bounded
    assert parse_time("0m", "--since", NOW) == NOW  # "0 minutes ago" has always meant now


def test_messages_name_the_value() -> None:
    with pytest.raises(ValueError, match=r"^window '24 hours' is not a duration; write a number and a unit"):
        parse_window("24 hours")
    with pytest.raises(ValueError, match=r"^window '0h' must be longer than zero$"):
        parse_window("0h")
    with pytest.raises(ValueError, match=r"^invalid duration '5'; write a number and a unit \(s, m, h, d, w\)"):
        parse_duration("5")
    with pytest.raises(click.BadParameter, match="further back than any time"):
        parse_time("999999w", "--since", NOW)
