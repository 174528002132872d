"""Business-hours windows: edges, weekends, overnight windows, and DST changes (zoneinfo)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine

from tests.policy.helpers import PAYROLL, policy_from
from treasury.policy import Policy, Verdict
from treasury.policy.evaluate import evaluate

FIAT = {"asset": "USD", "amount": "1000", "bankAccount": PAYROLL}
US = timedelta(microseconds=1)


@pytest.fixture
def conn(sqlite_engine: Engine) -> Iterator[Connection]:
    with sqlite_engine.begin() as c:
        yield c


def _window(conn: Connection, policy: Policy, at: datetime, op: str = "fiat_withdraw") -> Verdict:
    [verdict] = [v for v in evaluate(conn, policy, op=op, params=FIAT, at=at)
                 if v.rule and v.rule.startswith("windows")]
    return verdict


def _utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "allowed"),
    [
        (_utc(2026, 3, 3, 1, 0) - US, False),  # Tue 08:59:59.999999 HKT
        (_utc(2026, 3, 3, 1, 0), True),  # Tue 09:00 HKT: the start is inside
        (_utc(2026, 3, 3, 9, 0) - US, True),  # Tue 16:59:59.999999 HKT
        (_utc(2026, 3, 3, 9, 0), False),  # Tue 17:00 HKT: the end is outside
        (_utc(2026, 3, 7, 2, 0), False),  # Sat 10:00 HKT
        (_utc(2026, 3, 6, 16, 0), False),  # Fri 16:00 UTC is Sat 00:00 HKT
        (_utc(2026, 3, 1, 17, 0), False),  # Sun 17:00 UTC is Mon 01:00 HKT: the right day, too early
        (_utc(2026, 3, 2, 1, 30), True),  # Mon 09:30 HKT
    ],
)
def test_shipped_fiat_window_edges(conn: Connection, shipped: Policy, at: datetime, allowed: bool) -> None:
    verdict = _window(conn, shipped, at)
    assert verdict.allowed is allowed
    assert verdict.details["timezone"] == "Asia/Hong_Kong"


def test_denial_says_when_and_where(conn: Connection, shipped: Policy) -> None:
    verdict = _window(conn, shipped, _utc(2026, 3, 7, 2, 0))
    assert verdict.rule == "windows[0]"
    assert verdict.message == (
        "fiat_withdraw is outside its allowed window (MON,TUE,WED,THU,FRI 09:00-17:00 Asia/Hong_Kong); "
        "it is SAT 10:00 in Asia/Hong_Kong"
    )
    assert verdict.details["local_time"] == "2026-03-07T10:00:00+08:00"


def test_operations_without_a_window_are_not_restricted(conn: Connection, shipped: Policy) -> None:
    verdicts = evaluate(conn, shipped, op="asset_transfer", at=_utc(2026, 3, 7, 2, 0),
                        params={"coin": "USDT", "quantity": "1", "fromAccountId": "1", "toAccountId": "2"})
    assert not any(v.rule and v.rule.startswith("windows") for v in verdicts)


NEW_YORK = policy_from(
    "windows: [{op: fiat_withdraw, days: [MON, TUE, WED, THU, FRI], hours: '09:00-17:00', "
    "timezone: America/New_York}]"
)


@pytest.mark.parametrize(
    ("at", "allowed"),
    [
        # Friday 2026-03-06, EST (UTC-5): 09:00 local is 14:00 UTC
        (_utc(2026, 3, 6, 14, 0) - US, False),
        (_utc(2026, 3, 6, 14, 0), True),
        (_utc(2026, 3, 6, 22, 0) - US, True),
        (_utc(2026, 3, 6, 22, 0), False),
        # clocks go forward on Sunday 2026-03-08; Monday 2026-03-09 is EDT (UTC-4): 09:00 is 13:00 UTC
        (_utc(2026, 3, 9, 13, 0) - US, False),
        (_utc(2026, 3, 9, 13, 0), True),
        (_utc(2026, 3, 9, 14, 0), True),  # 10:00 EDT; the same UTC time on Friday was 09:00 EST
        (_utc(2026, 3, 9, 21, 0), False),  # 17:00 EDT; on Friday 21:00 UTC was still open (16:00 EST)
        (_utc(2026, 3, 6, 21, 0), True),
    ],
)
def test_window_across_spring_forward_in_new_york(conn: Connection, at: datetime, allowed: bool) -> None:
    assert _window(conn, NEW_YORK, at).allowed is allowed


def test_window_across_bst_start_in_london(conn: Connection) -> None:
    london = policy_from(
        "windows: [{op: fiat_withdraw, days: [MON, FRI], hours: '09:00-17:00', timezone: Europe/London}]"
    )
    # Friday 2026-03-27 is GMT: 09:00 local = 09:00 UTC
    assert not _window(conn, london, _utc(2026, 3, 27, 8, 30)).allowed
    assert _window(conn, london, _utc(2026, 3, 27, 9, 0)).allowed
    # BST starts Sunday 2026-03-29; Monday 2026-03-30 09:00 BST = 08:00 UTC
    assert _window(conn, london, _utc(2026, 3, 30, 8, 0)).allowed
    assert not _window(conn, london, _utc(2026, 3, 30, 8, 0) - US).allowed
    assert not _window(conn, london, _utc(2026, 3, 30, 16, 0)).allowed  # 17:00 BST
    assert _window(conn, london, _utc(2026, 3, 30, 16, 0) - US).allowed


def test_skipped_hour_never_opens_and_repeated_hour_opens_twice(conn: Connection) -> None:
    night = policy_from(
        "windows: [{op: fiat_withdraw, days: [SUN], hours: '02:00-03:00', timezone: America/New_York}]"
    )
    # Sunday 2026-03-08: 01:59:59 EST (06:59:59 UTC) is followed by 03:00 EDT (07:00 UTC)
    assert not _window(conn, night, _utc(2026, 3, 8, 7, 0) - US).allowed
    assert not _window(conn, night, _utc(2026, 3, 8, 7, 0)).allowed
    # the week before, the hour existed: 02:30 EST = 07:30 UTC
    assert _window(conn, night, _utc(2026, 3, 1, 7, 30)).allowed

    early = policy_from(
        "windows: [{op: fiat_withdraw, days: [SUN], hours: '01:00-02:00', timezone: America/New_York}]"
    )
    # Sunday 2026-11-01: 01:30 happens at 05:30 UTC (EDT) and again at 06:30 UTC (EST)
    assert _window(conn, early, _utc(2026, 11, 1, 5, 30)).allowed
    assert _window(conn, early, _utc(2026, 11, 1, 6, 30)).allowed
    assert not _window(conn, early, _utc(2026, 11, 1, 7, 0)).allowed  # 02:00 EST
    assert not _window(conn, early, _utc(2026, 11, 1, 5, 0) - US).allowed  # 00:59:59 EDT


def test_overnight_window_belongs_to_the_day_it_starts(conn: Connection) -> None:
    policy = policy_from("windows: [{op: fiat_withdraw, days: [FRI], hours: '22:00-06:00', timezone: UTC}]")
    assert _window(conn, policy, _utc(2026, 3, 6, 22, 0)).allowed  # Fri 22:00
    assert _window(conn, policy, _utc(2026, 3, 7, 6, 0) - US).allowed  # Sat 05:59:59
    assert not _window(conn, policy, _utc(2026, 3, 7, 6, 0)).allowed  # Sat 06:00
    assert not _window(conn, policy, _utc(2026, 3, 6, 22, 0) - US).allowed  # Fri 21:59:59
    assert not _window(conn, policy, _utc(2026, 3, 6, 3, 0)).allowed  # Fri 03:00 belongs to Thursday
    assert not _window(conn, policy, _utc(2026, 3, 7, 23, 0)).allowed  # Sat 23:00


def test_window_to_midnight(conn: Connection) -> None:
    policy = policy_from("windows: [{op: fiat_withdraw, days: [MON], hours: '18:00-24:00', timezone: UTC}]")
    assert _window(conn, policy, _utc(2026, 3, 3, 0, 0) - US).allowed  # Mon 23:59:59.999999
    assert not _window(conn, policy, _utc(2026, 3, 3, 0, 0)).allowed  # Tue 00:00


def test_several_windows_for_one_op_are_a_union(conn: Connection) -> None:
    policy = policy_from("""
        windows:
          - {op: fiat_withdraw, days: [MON, TUE, WED, THU, FRI], hours: "09:00-17:00", timezone: UTC}
          - {op: fiat_withdraw, days: [SAT], hours: "10:00-12:00", timezone: UTC}
        """)
    assert _window(conn, policy, _utc(2026, 3, 7, 11, 0)).rule == "windows[1]"
    denied = _window(conn, policy, _utc(2026, 3, 7, 13, 0))
    assert (denied.allowed, denied.rule) == (False, "windows[0],windows[1]")


def test_spot_order_window_covers_batch_orders(conn: Connection) -> None:
    policy = policy_from("windows: [{op: spot_order, days: [MON], hours: '09:00-10:00', timezone: UTC}]")
    leg = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "1", "quantity": "1"}
    verdicts = evaluate(conn, policy, op="batch_orders", params={"orders": [leg]}, at=_utc(2026, 3, 3, 9, 30))
    assert [(v.rule, v.allowed) for v in verdicts] == [("windows[0]", False)]


def test_naive_time_is_refused(conn: Connection, shipped: Policy) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(conn, shipped, op="fiat_withdraw", params=FIAT, at=datetime(2026, 3, 3, 10, 0))
