"""Templates resolve by lookup only: nothing is ever evaluated."""

from __future__ import annotations

from decimal import Decimal

import pytest

from treasury.language.templates import (
    Ref,
    TemplateContext,
    TemplateError,
    find_refs,
    is_resolvable,
    resolve,
)

CTX = TemplateContext(
    inputs={"amount": Decimal("1250.500"), "count": 3, "dry": False, "address": "0xabc", "note": "a\\1 {x}"},
    steps={"sweep": {"orderId": "123", "fills": [{"price": "60000"}], "empty": None, "ok": True,
                     "ratio": 0.1}},
    run={"id": "r1", "requested_by": "erin"},
)


def test_find_refs_in_nested_values() -> None:
    refs = find_refs({"a": ["x ${{ inputs.amount }} y ${{run.id}}", {"b": "${{ steps.sweep.result.orderId }}"}],
                      "c": 5, "d": None})
    assert refs == [
        Ref("inputs", ("amount",), "inputs.amount"),
        Ref("run", ("id",), "run.id"),
        Ref("steps", ("sweep", "orderId"), "steps.sweep.result.orderId"),
    ]
    assert refs[2].step == "sweep" and refs[0].step is None


def test_whole_templates_render_as_plain_strings() -> None:
    assert resolve("${{ inputs.amount }}", CTX) == "1250.5"
    assert resolve("${{ inputs.count }}", CTX) == "3"
    assert resolve("${{ inputs.dry }}", CTX) == "false"
    assert resolve("${{ steps.sweep.result.ok }}", CTX) == "true"
    assert resolve("${{ steps.sweep.result.ratio }}", CTX) == "0.1"
    assert resolve("${{ steps.sweep.result.fills.0.price }}", CTX) == "60000"
    assert resolve("${{run.requested_by}}", CTX) == "erin"


def test_embedded_templates_interpolate_and_the_rest_is_literal() -> None:
    text = "pay ${{ inputs.amount }} to ${{ inputs.address }} ({{ x }})"
    assert resolve(text, CTX) == "pay 1250.5 to 0xabc ({{ x }})"
    # A looked-up value is inserted as it is: no backreferences, no format fields.
    assert resolve("n=${{ inputs.note }}", CTX) == "n=a\\1 {x}"
    out = resolve({"a": ["${{ run.id }}", 5, None], "b": Decimal("1")}, CTX)
    assert out == {"a": ["r1", 5, None], "b": Decimal("1")}


@pytest.mark.parametrize(
    "payload",
    [
        "${{ ''.__class__ }}",
        "${{ inputs.x | attr('y') }}",
        "${{ 1+1 }}",
        "${{ inputs.amount.__class__ }}x",
        "${{ inputs['amount'] }}",
        "${{ run.id() }}",
        "${{ __import__('os').system('true') }}",
        "${{ inputs.amount:>10 }}",
        "${{ steps.sweep.orderId }}",
        "${{ steps.sweep.result }}",
        "${{ inputs }}",
        "${{ env.HOME }}",
        "${{ inputs.a.b }}",
        "${{ inputs.amount",
        "${{ }}",
    ],
)
def test_anything_but_a_lookup_is_refused(payload: str) -> None:
    with pytest.raises(TemplateError):
        find_refs(payload)
    with pytest.raises(TemplateError):
        resolve(payload, CTX)
    assert not is_resolvable(payload, available_inputs={"amount", "x"}, finished_steps={"sweep"})


@pytest.mark.parametrize(
    "text",
    ["{{ ''.__class__ }}", "{x.__class__}", "%(amount)s", "$amount", "${amount}", "{0}", "${ inputs.amount }"],
)
def test_other_template_syntaxes_stay_literal(text: str) -> None:
    assert find_refs(text) == []
    assert resolve(text, CTX) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("${{ inputs.missing }}", "no input 'missing'"),
        ("${{ steps.later.result.orderId }}", "no result yet for step 'later'"),
        ("${{ steps.sweep.result.nope }}", "no field 'nope'"),
        ("${{ steps.sweep.result.empty }}", "'empty' is null"),
        ("${{ steps.sweep.result.fills.5.price }}", "list has no item 5"),
        ("${{ steps.sweep.result.fills.x }}", "cannot look up 'x' in a list"),
        ("${{ steps.sweep.result.fills }}", "is a list"),
        ("${{ steps.sweep.result.orderId.x }}", "cannot look up 'x' in a str"),
        ("${{ run.nope }}", "no run field 'nope'"),
    ],
)
def test_missing_lookups_name_the_reference(text: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        resolve(text, CTX)
    assert fragment in str(info.value)
    assert info.value.ref is not None and info.value.ref in text


def test_template_error_is_a_value_error() -> None:
    assert issubclass(TemplateError, ValueError)


def test_is_resolvable() -> None:
    value = {"q": "${{ inputs.amount }}", "r": "${{ steps.a.result.x }} ${{ run.id }}"}
    assert is_resolvable(value, available_inputs={"amount"}, finished_steps={"a"})
    assert not is_resolvable(value, available_inputs={"amount"}, finished_steps=set())
    assert not is_resolvable(value, available_inputs=set(), finished_steps={"a"})
    assert not is_resolvable("${{ run.other }}", available_inputs=set(), finished_steps=set())
    assert is_resolvable({"plain": "text", "n": 1}, available_inputs=set(), finished_steps=set())
