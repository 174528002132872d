"""for_each steps: the language checks, every problem located; instance ids and expansion."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest

from treasury.keys import KeySpec
from treasury.language.fanout import expand, expanded, instance_id, split_instance
from treasury.language.inputs import coerce_inputs
from treasury.language.templates import TemplateContext, TemplateError, resolve
from treasury.people.approvers import Approvers

from .helpers import load, load_problems, located, problems

GOOD = """\
name: batch
inputs:
  payouts:
    type: list
    max_items: 500
    items:
      type: object
      fields:
        account: {type: account}
        address: {type: address}
        amount: {type: decimal, min: "0.01"}
steps:
  - id: approve
    approval: {approvers: ["group:treasury-managers"], quorum: 2}
  - id: pay
    for_each: "${{ inputs.payouts }}"
    concurrency: 10
    op: withdraw
    key: "sub-${{ item.account }}"
    params:
      coin: USDT
      chainType: ETH
      address: "${{ item.address }}"
      quantity: "${{ item.amount }}"
"""


def _check(text: str, keys: Mapping[str, KeySpec], approvers: Approvers, policy: Any | None
           ) -> list[tuple[int, int, str]]:
    return located(problems(text, keys=keys, approvers=approvers, policy=policy))


def test_a_good_fan_out_has_no_problems(keys: Mapping[str, KeySpec], approvers: Approvers,
                                        policy: Any | None) -> None:
    assert _check(GOOD, keys, approvers, policy) == []


@pytest.mark.parametrize(("old", "new", "line", "fragment"), [
    ('for_each: "${{ inputs.payouts }}"', 'for_each: "${{ steps.approve.result.list }}"', 16,
     "a list from a step's result is not known when approval is asked"),
    ('for_each: "${{ inputs.payouts }}"', 'for_each: "${{ inputs.nope }}"', 16,
     "for_each names unknown input 'nope'; list inputs: payouts"),
    ('for_each: "${{ inputs.payouts }}"', 'for_each: "all ${{ inputs.payouts }}"', 16,
     "for_each must be one template naming a list input"),
    ('for_each: "${{ inputs.payouts }}"', 'for_each: "${{ item }}"', 16,
     "for_each must name a list input"),
    ('quantity: "${{ item.amount }}"', 'quantity: "${{ item.amout }}"', 24,
     "an item has no field 'amout'"),
    ('quantity: "${{ item.amount }}"', 'quantity: "${{ item }}"', 24,
     "is a whole item, which has fields"),
    ('quantity: "${{ item.amount }}"', 'quantity: "${{ item.amount.x }}"', 24,
     "item.amount is a single value"),
    ('key: "sub-${{ item.account }}"', 'key: "sub-${{ steps.approve.result.x }}"', 19,
     "a key profile is chosen from the item or the inputs only"),
    ('key: "sub-${{ item.account }}"', 'key: "sub-${{ item.acount }}"', 19, "an item has no field 'acount'"),
    ("    concurrency: 10\n", "    concurrency: 0\n", 17, "greater than or equal to 1"),
    ("    concurrency: 10\n", "    concurrency: 51\n", 17, "less than or equal to 50"),
])
def test_fan_out_problems_are_located(old: str, new: str, line: int, fragment: str,
                                      keys: Mapping[str, KeySpec], approvers: Approvers,
                                      policy: Any | None) -> None:
    assert old in GOOD
    found = _check(GOOD.replace(old, new), keys, approvers, policy)
    assert [f for f in found if fragment in f[2] and f[0] == line], found


def test_for_each_on_a_scalar_input_and_items_elsewhere(keys: Mapping[str, KeySpec], approvers: Approvers,
                                                         policy: Any | None) -> None:
    text = """\
name: x
inputs:
  amount: {type: decimal}
steps:
  - id: a
    for_each: "${{ inputs.amount }}"
    op: server_time
    key: ops-read
  - id: b
    op: withdraw
    key: "w-${{ inputs.amount }}"
    params: {coin: USDT, chainType: ETH, address: "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90",
             quantity: "${{ item.amount }}"}
"""
    found = _check(text, keys, approvers, policy)
    assert any(line == 6 and "for_each needs a list input; 'amount' is a decimal" in m for line, _, m in found), found
    assert any(line == 11 and "templates are resolved only in step params" in m for line, _, m in found)
    assert any(line == 13 and "only a step with for_each has an item" in m for line, _, m in found)


def test_for_each_shape_is_checked_when_loading() -> None:
    found = located(load_problems("""\
name: x
inputs:
  amount: {type: decimal}
steps:
  - id: c
    approval: {approvers: [alice], quorum: 1}
    for_each: "${{ inputs.amount }}"
  - id: d
    op: server_time
    key: ops-read
    concurrency: 3
"""))
    assert any(line == 7 and "an approval step is one decision" in m for line, _, m in found), found
    assert any(line == 11 and "concurrency applies only to a step with for_each" in m for line, _, m in found)


def test_a_list_of_scalars_is_used_as_item() -> None:
    text = GOOD.replace("""    items:
      type: object
      fields:
        account: {type: account}
        address: {type: address}
        amount: {type: decimal, min: "0.01"}""", "    items: {type: address}").replace(
        "${{ item.address }}", "${{ item }}").replace("${{ item.amount }}", "1").replace(
        "sub-${{ item.account }}", "withdrawals")
    assert [p.message for p in problems(text)] == []
    found = problems(text.replace('quantity: "1"', 'quantity: "${{ item.x }}"'))
    assert any("the items are single address values, with no fields" in p.message for p in found)


def test_instance_ids_are_deterministic_and_sort_in_item_order() -> None:
    assert instance_id("pay", 7) == "pay[0007]"
    assert split_instance("pay[0007]") == ("pay", 7)
    assert split_instance("pay") == ("pay", None)
    ids = [instance_id("pay", n) for n in range(200)]
    assert sorted(ids) == ids and len(set(ids)) == 200


def test_expansion_resolves_each_instance_from_its_item() -> None:
    spec = load(GOOD).spec
    inputs = coerce_inputs(spec, {"payouts": [
        {"account": "1001", "address": "0xA", "amount": "1.50"},
        {"account": "1002", "address": "0xB", "amount": "2"},
    ]})
    instances = expand(spec, inputs)["pay"]
    assert [i.id for i in instances] == ["pay[0000]", "pay[0001]"]
    step = spec.step("pay")
    ctx = TemplateContext(inputs=inputs, item={"item": instances[1].item})
    assert resolve(step.params, ctx)["quantity"] == "2"
    # the run's spec: each instance with its item filled in, and what needs the step needs them all
    run_spec = expanded(spec, inputs)
    assert [s.id for s in run_spec.steps] == ["approve", "pay[0000]", "pay[0001]"]
    assert run_spec.step("pay[0001]").key == "sub-1002"
    assert run_spec.step("pay[0001]").params["address"] == "0xB"
    assert run_spec.step("pay[0000]").needs == ["approve"]
    assert resolve(step.params, TemplateContext(inputs=inputs, item={"item": instances[0].item}))[
        "quantity"] == format(Decimal("1.5"))
    with pytest.raises(TemplateError, match="only a step with for_each has an item"):
        resolve(step.params, TemplateContext(inputs=inputs))


def test_a_step_after_a_fan_out_needs_every_instance_and_an_empty_list_passes_its_needs_on() -> None:
    text = GOOD.replace("    max_items: 500\n", "") + """\
  - id: check
    op: balances
    key: ops-read
"""
    spec = load(text).spec
    two = [{"account": "1001", "address": "0xA", "amount": "1"}, {"account": "1002", "address": "0xB", "amount": "2"}]
    assert expanded(spec, {"payouts": two}).step("check").needs == ["pay[0000]", "pay[0001]"]
    assert expanded(spec, {"payouts": []}).step("check").needs == ["approve"]
    plain = load("name: x\nsteps: [{id: t, op: server_time, key: ops-read}]\n").spec
    assert expanded(plain, {}) is plain
