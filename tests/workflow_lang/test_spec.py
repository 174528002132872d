"""The models: step kinds, inputs, durations, and the graph helpers engines rely on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from treasury.durations import format_duration, parse_duration

from .helpers import load, load_problems, located, only


def test_step_kinds_and_their_fields() -> None:
    loaded = load("""\
        name: payout
        steps:
          - id: approve
            approval: {approvers: [alice, "group:risk"], quorum: 2, expires_in: 1h30m}
          - id: pay
            op: fiat_withdraw
            key: fiat
            timeout: 90s
            retry: {max_attempts: 3, max_seconds: 30}
            params: {asset: USD, amount: "10", bankAccount: HSBC-001-234567-838}
        """)
    approve, pay = loaded.spec.steps
    assert approve.is_approval and not pay.is_approval
    assert approve.approval is not None
    assert approve.approval.expires_after == timedelta(minutes=90)
    assert approve.approval.users == {"alice"} and approve.approval.groups == {"risk"}
    assert pay.timeout_after == timedelta(seconds=90)
    assert pay.retry is not None and (pay.retry.max_attempts, pay.retry.max_seconds) == (3, 30.0)


def test_defaults() -> None:
    loaded = load("""\
        name: x
        schedule: {cron: "0 18 * * MON-FRI"}
        steps:
          - id: approve
            approval: {approvers: [alice], quorum: 1}
          - {id: t, op: server_time, key: ops-read, retry: {}}
        """)
    approval = loaded.spec.steps[0].approval
    assert approval is not None and approval.expires_in == "24h"
    retry = loaded.spec.steps[1].retry
    assert retry is not None and (retry.max_attempts, retry.max_seconds) == (5, 120.0)
    assert loaded.spec.schedule is not None
    assert (loaded.spec.schedule.timezone, loaded.spec.schedule.catchup) == ("UTC", "latest")


def test_approval_steps_refuse_operation_fields_all_at_once() -> None:
    found = load_problems("""\
        name: x
        steps:
          - id: approve
            key: withdrawals
            params: {coin: USDT}
            timeout: 5m
            retry: {max_attempts: 2}
            approval: {approvers: [alice], quorum: 1}
        """)
    assert located(found) == [
        (4, 5, "an approval step uses no key"),
        (5, 5, "an approval step takes no params"),
        (6, 5, "an approval step expires with approval.expires_in, not timeout"),
        (7, 5, "an approval step is not retried"),
    ]


def test_quorum_and_counts_are_strict_integers() -> None:
    found = load_problems("""\
        name: x
        steps:
          - id: approve
            approval: {approvers: [alice, bob], quorum: "2"}
        """)
    assert "must be a whole number, got str '2'" in only(found, "whole number").message


def test_needs_accepts_a_single_name() -> None:
    loaded = load("""\
        name: x
        steps:
          - {id: a, op: server_time, key: ops-read}
          - {id: b, op: server_time, key: ops-read, needs: a}
        """)
    assert loaded.spec.steps[1].needs == ["a"]


def test_dependencies_default_to_the_previous_step() -> None:
    loaded = load("""\
        name: x
        steps:
          - {id: a, op: server_time, key: ops-read}
          - {id: b, op: server_time, key: ops-read}
          - {id: c, op: server_time, key: ops-read, needs: []}
          - {id: d, op: server_time, key: ops-read, needs: [a, b, a]}
        """)
    assert loaded.spec.dependencies() == {"a": [], "b": ["a"], "c": [], "d": ["a", "b"]}
    assert loaded.spec.ancestors("d") == {"a", "b"}
    assert loaded.spec.ancestors("c") == set()
    assert loaded.spec.step("c").needs == []
    with pytest.raises(KeyError):
        loaded.spec.step("zz")


def test_guards_are_every_approval_before_an_operation_in_file_order() -> None:
    loaded = load("""\
        name: x
        steps:
          - {id: read, op: server_time, key: ops-read}
          - {id: first, approval: {approvers: [alice], quorum: 1}}
          - {id: pay, op: server_time, key: ops-read}
          - {id: second, approval: {approvers: [bob], quorum: 1}}
          - {id: pay2, op: server_time, key: ops-read}
        """)
    assert loaded.spec.guards() == {"read": [], "pay": ["first"], "pay2": ["first", "second"]}


def test_required_inputs() -> None:
    loaded = load("""\
        name: x
        inputs:
          amount: {type: decimal}
          memo: {type: string, default: hi}
          flag: {type: boolean, default: false}
        steps: [{id: t, op: server_time, key: ops-read}]
        """)
    assert loaded.spec.required_inputs() == ["amount"]
    assert not loaded.spec.inputs["flag"].required


@pytest.mark.parametrize(
    ("declaration", "fragment"),
    [
        ('{type: decimal, min: "5", max: "1"}', "min 5 is larger than max 1"),
        ('{type: decimal, min: "-1"}', "min must not be negative"),
        ('{type: integer, min: "1"}', "min of an integer input must be a whole number"),
        ("{type: boolean, default: 1}", "the default of a boolean input is true or false"),
        ("{type: boolean, enum: [a]}", "enum does not apply to boolean inputs"),
        ('{type: decimal, enum: ["1", "x"]}', "enum entry is not a plain decimal number"),
        ('{type: decimal, pattern: "^1$"}', "pattern applies only to string-like inputs"),
        ('{type: asset, default: usdt}', "an asset is 1-20 capital letters"),
        ('{type: account, default: "10a"}', "an account id is 1-32 digits"),
        ('{type: address, default: "a b"}', "an address is 1-200 characters"),
        ('{type: string, pattern: "^[a-z]+$", default: "ABC"}', "does not match the pattern"),
        ("{type: integer, max: 10, default: 11}", "default must be at most 10"),
        ("{type: string, default: [a]}", "must be a string, an integer or a boolean"),
    ],
)
def test_input_declaration_problems(declaration: str, fragment: str) -> None:
    found = load_problems(f"name: x\ninputs:\n  v: {declaration}\nsteps: [{{id: t, op: server_time, key: r}}]\n")
    assert any(fragment in p.message and p.line == 3 for p in found), [str(p) for p in found]


def test_account_default_written_as_a_number_becomes_a_string() -> None:
    loaded = load("""\
        name: x
        inputs:
          acct: {type: account, default: 1001}
        steps: [{id: t, op: server_time, key: r}]
        """)
    assert loaded.spec.inputs["acct"].default == "1001"


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", timedelta(seconds=30)), ("15m", timedelta(minutes=15)), ("24h", timedelta(hours=24)),
     ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2)), ("1h30m", timedelta(minutes=90)),
     (" 5m ", timedelta(minutes=5))],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("", "invalid duration"), ("5", "invalid duration"), ("5 m", "invalid duration"), ("1.5h", "invalid"),
     ("-5m", "invalid"), ("0m", "longer than zero"), ("400d", "longer than 366 days"), (5, "is a string")],
)
def test_parse_duration_refuses(text: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(text)  # type: ignore[arg-type]


def test_format_duration_round_trips() -> None:
    for text in ("30s", "15m", "1h30m", "2w", "1d2h"):
        assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)
    assert format_duration(timedelta(minutes=90)) == "1h30m"
    assert format_duration(timedelta(0)) == "0s"
