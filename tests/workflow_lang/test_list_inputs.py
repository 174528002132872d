"""List and object inputs: declarations checked where they are written, every item checked."""

from __future__ import annotations

from decimal import Decimal

import pytest

from treasury.canonical import inputs_json as jsonable
from treasury.errors import ParameterError
from treasury.language.inputs import MAX_ITEM_PROBLEMS, coerce_inputs

from .helpers import load, load_problems, only

SPEC = load("""\
    name: x
    inputs:
      payouts:
        type: list
        min_items: 1
        max_items: 300
        items:
          type: object
          fields:
            account: {type: account}
            address: {type: address}
            amount: {type: decimal, min: "0.01"}
            memo: {type: string, default: "payout"}
      coins: {type: list, items: {type: asset}}
    steps: [{id: t, op: server_time, key: ops-read}]
    """).spec


def test_a_list_of_objects_is_typed_item_by_item() -> None:
    out = coerce_inputs(SPEC, {
        "payouts": [{"account": "1001", "address": "0xA", "amount": "12.50"},
                    {"account": 1002, "address": "0xB", "amount": "1", "memo": "rent"}],
        "coins": ["USDT", "BTC"],
    })
    assert out["payouts"] == [
        {"account": "1001", "address": "0xA", "amount": Decimal("12.50"), "memo": "payout"},
        {"account": "1002", "address": "0xB", "amount": Decimal("1"), "memo": "rent"},
    ]
    assert out["coins"] == ["USDT", "BTC"]
    # stored with amounts as strings, inside the list too
    assert jsonable(out)["payouts"][0]["amount"] == "12.5"


def test_json_text_is_accepted_and_floats_are_refused() -> None:
    out = coerce_inputs(SPEC, {"payouts": '[{"account": "1001", "address": "0xA", "amount": "3"}]',
                               "coins": '["USDT"]'})
    assert out["payouts"][0]["amount"] == Decimal("3")
    with pytest.raises(ParameterError, match=r"number 3\.5 unquoted"):
        coerce_inputs(SPEC, {"payouts": '[{"account": "1001", "address": "0xA", "amount": 3.5}]',
                             "coins": "[]"})
    with pytest.raises(ParameterError, match="is not valid JSON"):
        coerce_inputs(SPEC, {"payouts": "[{", "coins": "[]"})


def test_every_item_problem_is_reported_with_its_place() -> None:
    with pytest.raises(ParameterError) as info:
        coerce_inputs(SPEC, {"payouts": [
            {"account": "1001", "address": "0xA", "amount": "5"},
            {"account": "x1", "address": "0xB", "amount": "0"},
            {"address": "0xC", "amount": "1", "colour": "red"},
        ], "coins": ["usdt"]})
    assert info.value.param == "payouts"
    message = str(info.value)
    for fragment in ("[1].account: an account id is 1-32 digits", "[1].amount: must be at least 0.01",
                     "[2].colour: is not a field", "[2].account: is required and missing",
                     "coins: [0]: an asset is 1-20 capital letters"):
        assert fragment in message, message
    assert "[0]" not in message.split("coins")[0]  # the good item has nothing to say


def test_item_problems_are_capped() -> None:
    bad = [{"account": "x", "address": "0xA", "amount": "1"}] * (MAX_ITEM_PROBLEMS + 5)
    with pytest.raises(ParameterError, match="and 5 more problems"):
        coerce_inputs(SPEC, {"payouts": bad, "coins": []})


def test_list_length_is_bounded() -> None:
    with pytest.raises(ParameterError, match="at least 1 item, got 0"):
        coerce_inputs(SPEC, {"payouts": [], "coins": []})
    many = [{"account": "1", "address": "a", "amount": "1"}] * 301
    with pytest.raises(ParameterError, match="at most 300 items, got 301"):
        coerce_inputs(SPEC, {"payouts": many, "coins": []})
    with pytest.raises(ParameterError, match="must be a list, got a mapping"):
        coerce_inputs(SPEC, {"payouts": {"a": 1}, "coins": []})


@pytest.mark.parametrize(("declaration", "line", "fragment"), [
    ("{type: list}", 3, "a list input needs items:"),
    ("{type: list, items: {type: list, items: {type: asset}}}", 3, "a list of lists is not supported"),
    ("{type: list, items: {type: asset}, default: USDT}", 3, "a list input has no default"),
    ("{type: list, items: {type: asset}, min_items: 3, max_items: 2}", 3, "min_items 3 is larger"),
    ("{type: decimal, max_items: 2}", 3, "max_items applies only to list inputs"),
    ("{type: list, items: {type: object}}", 3, "an object input needs fields:"),
    ("{type: list, items: {type: object, fields: {a: {type: list, items: {type: asset}}}}}", 3,
     "an object's fields are single values"),
    ("{type: string, fields: {a: {type: asset}}}", 3, "fields applies only to object inputs"),
])
def test_bad_declarations_are_located(declaration: str, line: int, fragment: str) -> None:
    found = load_problems(f"""\
        name: x
        inputs:
          payouts: {declaration}
        steps: [{{id: t, op: server_time, key: ops-read}}]
        """)
    assert only(found, fragment).line == line
