"""Input coercion: typed values, defaults, and one error naming the input."""

from __future__ import annotations

from decimal import Decimal

import pytest

from treasury.errors import ParameterError
from treasury.language.inputs import coerce_inputs, input_problems

from .helpers import load

SPEC = load("""\
    name: x
    inputs:
      amount: {type: decimal, min: "0.01", max: "1000"}
      count: {type: integer, min: 1, max: 10, default: 2}
      dry: {type: boolean, default: false}
      account: {type: account, default: "1001"}
      address: {type: address}
      coin: {type: asset, enum: [USDT, USDC], default: USDT}
      memo: {type: string, pattern: "^[a-z ]*$", default: "pay day"}
      level: {type: decimal, enum: ["1", "2.5"], default: "2.50"}
    steps: [{id: t, op: server_time, key: ops-read}]
    """).spec


def test_typed_values_and_defaults() -> None:
    out = coerce_inputs(SPEC, {"amount": "12.50", "address": "0xabc", "dry": "TRUE", "count": "3"})
    assert out == {
        "amount": Decimal("12.50"), "count": 3, "dry": True, "account": "1001", "address": "0xabc",
        "coin": "USDT", "memo": "pay day", "level": Decimal("2.50"),
    }
    assert list(out) == list(SPEC.inputs)  # declaration order


def test_native_yaml_values_are_accepted() -> None:
    out = coerce_inputs(SPEC, {"amount": 5, "address": "a", "dry": True, "count": 4, "account": 1002})
    assert out["amount"] == Decimal(5) and out["dry"] is True and out["account"] == "1002"


@pytest.mark.parametrize(
    ("raw", "param", "fragment"),
    [
        ({"address": "a"}, "amount", "is required by workflow 'x' and has no default"),
        ({"amount": "0.001", "address": "a"}, "amount", "must be at least 0.01"),
        ({"amount": "1000.01", "address": "a"}, "amount", "must be at most 1000"),
        ({"amount": 1.5, "address": "a"}, "amount", "float"),
        ({"amount": "1e3", "address": "a"}, "amount", "not a plain decimal"),
        ({"amount": "-1", "address": "a"}, "amount", "must not be negative"),
        ({"amount": "NaN", "address": "a"}, "amount", "not a plain decimal"),
        ({"amount": "1", "address": "a", "count": "11"}, "count", "must be at most 10"),
        ({"amount": "1", "address": "a", "count": "two"}, "count", "whole number"),
        ({"amount": "1", "address": "a", "count": True}, "count", "whole number"),
        ({"amount": "1", "address": "a", "dry": "yes"}, "dry", "must be true or false"),
        ({"amount": "1", "address": "a", "account": "12ab"}, "account", "account id is 1-32 digits"),
        ({"amount": "1", "address": "a b"}, "address", "an address is"),
        ({"amount": "1", "address": "a", "coin": "BTC"}, "coin", "is not one of: USDT, USDC"),
        ({"amount": "1", "address": "a", "coin": "usdt"}, "coin", "capital letters"),
        ({"amount": "1", "address": "a", "memo": "Pay!"}, "memo", "does not match the pattern"),
        ({"amount": "1", "address": "a", "level": "3"}, "level", "is not one of"),
        ({"amount": "1", "address": "a", "extra": "1"}, "extra", "is not an input of workflow 'x'"),
    ],
)
def test_bad_inputs_name_the_input(raw: dict[str, object], param: str, fragment: str) -> None:
    with pytest.raises(ParameterError) as info:
        coerce_inputs(SPEC, raw, source="-i")
    assert info.value.param == param
    assert fragment in str(info.value)
    assert "(in -i)" in str(info.value)


def test_every_problem_is_in_the_message() -> None:
    with pytest.raises(ParameterError) as info:
        coerce_inputs(SPEC, {"amount": "0", "dry": "maybe", "bogus": 1})
    text = str(info.value)
    assert info.value.param == "bogus"
    assert "amount: must be at least 0.01" in text and "dry: must be true or false" in text
    assert "address: is required" in text


def test_input_problems_lists_all() -> None:
    assert [n for n, _ in input_problems(SPEC, {"amount": "x", "dry": "x"})] == ["amount", "dry", "address"]
    assert input_problems(SPEC, {"amount": "1", "address": "a"}) == []
