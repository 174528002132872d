"""Every validator rule: a failing file gives the problem at the right place; a passing one gives none."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from treasury.errors import WorkflowInvalid
from treasury.keys import KeySpec
from treasury.language.validate import check_files, ensure_valid
from treasury.people.approvers import Approvers

from .helpers import load, located, only, problems

GOOD = """\
name: good
inputs:
  amount: {type: decimal, min: "0.01", max: "50000"}
  address: {type: address}
schedule:
  cron: "0 9 * * MON-FRI"
  timezone: Asia/Hong_Kong
  inputs: {amount: "100", address: "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90"}
steps:
  - id: sweep
    op: asset_transfer
    key: transfers
    params: {fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "${{ inputs.amount }}"}
  - id: approve
    approval: {approvers: [alice, "group:risk"], quorum: 2}
  - id: pay
    op: withdraw
    key: withdrawals
    params:
      coin: USDT
      chainType: ETH
      address: "${{ inputs.address }}"
      quantity: "${{ inputs.amount }}"
  - id: note
    op: asset_transfer
    key: transfers
    needs: [pay, sweep]
    params:
      fromAccountId: "1002"
      toAccountId: "1001"
      coin: USDT
      quantity: "1"
      remark: "after ${{ steps.sweep.result.orderId }} and ${{ steps.pay.result.orderId }} by ${{ run.requested_by }}"
"""


@pytest.fixture
def check(keys: Mapping[str, KeySpec], approvers: Approvers, policy: Any | None) -> Any:
    def run(text: str, **overrides: Any) -> list[tuple[int, int, str]]:
        kw = {"keys": keys, "approvers": approvers, "policy": policy, **overrides}
        return located(problems(text, **kw))

    return run


def test_a_good_workflow_has_no_problems(check: Any) -> None:
    assert check(GOOD) == []


def test_without_config_only_config_free_rules_run(check: Any) -> None:
    text = GOOD.replace("key: transfers", "key: nobody").replace("[alice,", "[mallory,")
    assert check(text, keys=None, approvers=None, policy=None) == []
    assert len(check(text)) == 3


# --------------------------------------------------------------------------- operations and params

OP = """\
name: x
inputs:
  amount: {type: decimal}
steps:
  - id: t
    op: %s
    key: transfers
    params:
%s
"""
TRANSFER = '      fromAccountId: "1001"\n      toAccountId: "1002"\n      coin: USDT\n      quantity: "5"'


def test_unknown_operation(check: Any) -> None:
    assert check(OP % ("transfer", TRANSFER)) == [
        (6, 5, "unknown operation 'transfer'; did you mean 'asset_transfer'? (`treasury ops` lists them)")
    ]
    assert check(OP % ("asset_transfer", TRANSFER)) == []


def test_unknown_missing_and_mistyped_parameters(check: Any) -> None:
    params = '      fromAccount: "1001"\n      toAccountId: 1002\n      coin: 5\n      quantity: 5.5'
    assert check(OP % ("asset_transfer", params)) == [
        (8, 5, "missing parameter 'fromAccountId', required by asset_transfer"),
        (9, 7, "unknown parameter 'fromAccount' for asset_transfer; did you mean 'fromAccountId'?"),
        (11, 7, "parameter 'coin': must be a valid string"),
        (12, 7, "parameter 'quantity': must be a decimal string such as \"12.50\", not float 5.5"),
    ]


def test_cross_field_parameter_rules_apply_to_literals(check: Any) -> None:
    params = TRANSFER.replace('toAccountId: "1002"', 'toAccountId: "1001"')
    assert check(OP % ("asset_transfer", params)) == [
        (8, 5, "parameter '(parameters)': fromAccountId and toAccountId must differ")
    ]


def test_templated_parameters_are_checked_when_resolved_not_now(check: Any) -> None:
    params = TRANSFER.replace('quantity: "5"', 'quantity: "${{ inputs.amount }}"')
    assert check(OP % ("asset_transfer", params)) == []
    # ... but an unknown parameter name is unknown whatever its value.
    params += '\n      memo: "${{ inputs.amount }}"'
    assert check(OP % ("asset_transfer", params)) == [(13, 7, "unknown parameter 'memo' for asset_transfer; "
                                                                "known: fromAccountId, toAccountId, coin, quantity, "
                                                                "remark, clientOrderId")]


def test_a_template_cannot_stand_for_a_list(check: Any) -> None:
    text = (OP % ("batch_orders", '      orders: "${{ inputs.amount }}"')).replace("transfers", "trading")
    assert check(text) == [(9, 7, "parameter 'orders' needs a list; a template stands for a single value")]


def test_client_id_is_set_by_the_runner(check: Any) -> None:
    found = check(OP % ("asset_transfer", TRANSFER + "\n      clientOrderId: mine"))
    assert [(line, col) for line, col, _ in found] == [(13, 7)]
    assert "clientOrderId is set by the runner" in found[0][2]


def test_a_read_with_no_params(check: Any) -> None:
    assert check("name: x\nsteps:\n  - {id: t, op: server_time, key: ops-read}\n") == []
    assert check("name: x\nsteps:\n  - {id: t, op: server_time, key: ops-read, params: {x: 1}}\n") == [
        (3, 54, "unknown parameter 'x' for server_time")
    ]


# --------------------------------------------------------------------------- templates

REFS = """\
name: x
inputs:
  amount: {type: decimal}
steps:
  - id: first
    op: asset_transfer
    key: transfers
    params: {fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "1"}
  - id: approve
    approval: {approvers: [alice], quorum: 1}
  - id: list
    op: withdraw_orders
    key: ops-read
  - id: use
    op: asset_transfer
    key: transfers
    needs: [%s]
    params:
      fromAccountId: "1001"
      toAccountId: "1002"
      coin: USDT
      quantity: "1"
      remark: "%s"
"""


@pytest.mark.parametrize(
    ("needs", "remark", "fragment"),
    [
        ("first, approve", "${{ inputs.amout }}", "names unknown input 'amout'; did you mean 'amount'?"),
        ("first, approve", "${{ steps.frist.result.orderId }}", "names unknown step 'frist'; did you mean 'first'?"),
        ("first, approve", "${{ steps.first.result.orderID }}",
         "the result of asset_transfer has no field 'orderID'; did you mean 'orderId'?"),
        ("first, approve", "${{ steps.approve.result.x }}", "step 'approve' is an approval and has no result"),
        ("first", "${{ steps.list.result.0.id }}",
         "step 'list' does not run before 'use'; add it to the needs of 'use'"),
        ("first, approve", "${{ steps.use.result.orderId }}", "a step cannot use its own result"),
        ("first, approve", "${{ run.who }}", "a run has only run.id and run.requested_by"),
        ("first, approve, list", "${{ steps.list.result.id }}", "the result of withdraw_orders is a list"),
        ("first, approve", "${{ inputs.amount + 1 }}", "is not a lookup"),
        ("first, approve", "{{ inputs.amount }}", "looks like a template"),
    ],
)
def test_template_references(check: Any, needs: str, remark: str, fragment: str) -> None:
    found = check(REFS % (needs, remark))
    assert [(line, col) for line, col, msg in found if fragment in msg] == [(23, 15)], found


def test_good_template_references(check: Any) -> None:
    assert check(REFS % ("first, approve, list", "${{ steps.first.result.orderId }} ${{ steps.list.result.0.id }}"
                                                 " ${{ inputs.amount }} ${{ run.id }}")) == []


def test_templates_outside_params_are_refused(check: Any) -> None:
    text = "name: x\nsteps:\n  - id: t\n    op: server_time\n    key: '${{ inputs.t }}'\n"
    found = check(text, keys=None)
    assert (5, 10, "templates are resolved only in step params; this value would be used as written") in found
    # Descriptions and comments are prose: ${{ there is text.
    prose = "name: x\ndescription: uses ${{ inputs.x }}\nsteps:\n  - {id: t, op: server_time, key: ops-read}\n"
    assert check(prose) == []


# --------------------------------------------------------------------------- key profiles


def test_key_profiles(check: Any) -> None:
    text = OP % ("asset_transfer", TRANSFER)
    assert check(text.replace("key: transfers", "key: transfer")) == [
        (7, 5, "unknown key profile 'transfer'; did you mean 'transfers'?; profiles in keys.yaml: fiat, "
               "ops-read, trading, transfers, whitelisting, withdrawals")
    ]
    assert check(text.replace("key: transfers", "key: ops-read")) == [
        (7, 5, "key profile 'ops-read' lacks the 'transfer' permission that asset_transfer needs (it has: read)")
    ]
    assert check(text) == []


# --------------------------------------------------------------------------- approvals

APPROVAL = """\
name: x
steps:
  - id: approve
    approval:
      approvers: %s
      quorum: %d
  - {id: t, op: server_time, key: ops-read}
"""


def test_unknown_approvers_and_groups(check: Any) -> None:
    found = check(APPROVAL % ('[alice, mallory, "group:audit"]', 1))
    assert [(line, col) for line, col, _ in found] == [(5, 26), (5, 35)]
    assert found[0][2].startswith("unknown approver 'mallory'; people in people.yaml: alice, bob, carol")
    assert found[1][2] == (
        "unknown approver group 'audit'; groups in people.yaml: operations, risk, treasury-managers"
    )


@pytest.mark.parametrize(
    ("refs", "quorum", "ok"),
    [
        ("[alice, bob]", 2, True),
        ("[alice, bob]", 3, False),
        ('["group:treasury-managers"]', 3, True),  # alice, bob, dave
        ('["group:treasury-managers", dave, alice]', 4, False),  # one person counts once
        ('["group:risk", "group:treasury-managers"]', 4, True),  # alice, bob, carol, dave
    ],
)
def test_quorum_against_eligible_approvers(check: Any, refs: str, quorum: int, ok: bool) -> None:
    found = check(APPROVAL % (refs, quorum))
    if ok:
        assert found == []
    else:
        assert [(line, col) for line, col, _ in found] == [(6, 7)]
        assert found[0][2].startswith(f"quorum {quorum} is larger than the ")


def test_quorum_without_approvers_file(check: Any) -> None:
    assert check(APPROVAL % ("[alice, bob]", 3), approvers=None) == [
        (6, 7, "quorum 3 is larger than the 2 eligible approvers (alice, bob)")
    ]
    assert check(APPROVAL % ('["group:x"]', 9), approvers=None) == []  # group sizes unknown


# --------------------------------------------------------------------------- the graph


def _steps(*lines: str) -> str:
    return "name: x\nsteps:\n" + "".join(f"  - {{{line}, op: server_time, key: ops-read}}\n" for line in lines)


def test_duplicate_ids(check: Any) -> None:
    assert check(_steps("id: a", "id: b", "id: a")) == [(5, 6, "duplicate step id 'a' (first at line 3)")]


def test_needs_problems(check: Any) -> None:
    assert check(_steps("id: a", "id: b, needs: [a, a, c, b]")) == [
        (4, 24, "step 'a' is listed twice in needs"),
        (4, 27, "needs unknown step 'c'"),
        (4, 30, "step 'b' cannot need itself"),
    ]


def test_cycles(check: Any) -> None:
    found = check(_steps("id: a, needs: [c]", "id: b", "id: c"))
    assert found == [(3, 13, "steps depend on each other in a cycle: a → c → b → a")]
    assert check(_steps("id: a, needs: []", "id: b, needs: [c]", "id: c, needs: [a]")) == []


def test_an_approval_cannot_wait_for_a_step_it_guards(check: Any) -> None:
    text = ("name: x\nsteps:\n  - id: approve\n    needs: [t]\n    approval: {approvers: [alice], quorum: 1}\n"
            "  - {id: t, op: server_time, key: ops-read, needs: []}\n")
    assert only(problems(text), "cycle").message == (
        "steps depend on each other in a cycle: approve → t → approve "
        "(an approval step guards every operation step after it in the file)"
    )


# --------------------------------------------------------------------------- schedule


def test_schedule_inputs(check: Any) -> None:
    missing = GOOD.replace('  inputs: {amount: "100", address: "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90"}\n', "")
    assert check(missing) == [
        (5, 1, "input 'address' is required and has no default; give it in schedule.inputs"),
        (5, 1, "input 'amount' is required and has no default; give it in schedule.inputs"),
    ]
    bad = GOOD.replace('{amount: "100",', '{amount: "100000", memo: x,')
    assert check(bad) == [
        (8, 12, "schedule input 'amount' must be at most 50000, got 100000"),
        (8, 30, "schedule input 'memo' is not an input of workflow 'good'; inputs: amount, address"),
    ]


# --------------------------------------------------------------------------- policy

PAYOUT = """\
name: payout
inputs:
  amount: {type: decimal%s}
steps:
  - id: approve
    approval: {approvers: %s, quorum: %d}
  - id: pay
    op: withdraw
    key: withdrawals
    params:
      coin: USDT
      chainType: ETH
      address: "%s"
      quantity: "%s"
"""
VENDOR_A = "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90"


@pytest.fixture
def with_policy(policy: Any | None) -> Any:
    if policy is None:
        pytest.skip("config/policy.yaml or treasury.policy is not available")
    return policy


def test_policy_allowlist_and_per_tx_limit(check: Any, with_policy: Any) -> None:
    found = check(PAYOUT % ("", "[alice, bob]", 1, "0x000000000000000000000000000000000000dEaD", "60000"))
    assert [(line, col) for line, col, _ in found] == [(10, 5), (10, 5)]
    assert any("policy destinations.withdraw" in m for _, _, m in found)
    assert any("policy limits[0].max_per_tx" in m for _, _, m in found)
    assert check(PAYOUT % ("", "[alice, bob]", 1, VENDOR_A, "100")) == []
    assert check(PAYOUT % ("", "[alice, bob]", 1, VENDOR_A, "60000"), policy=None) == []


def test_policy_approval_tiers(check: Any, with_policy: Any) -> None:
    unbounded = PAYOUT % ("", '["group:risk"]', 2, VENDOR_A, "${{ inputs.amount }}")
    found = check(unbounded)
    assert [(line, col) for line, col, _ in found] == [(8, 5)]
    assert found[0][2].startswith("policy approval_tiers[0]: withdraw of USDT if its amount is above 100000")
    # The input's max keeps every run under the tier, so the tier never applies.
    bounded = PAYOUT % (', max: "100000"', '["group:risk"]', 2, VENDOR_A, "${{ inputs.amount }}")
    assert check(bounded) == []
    # Or the approval step meets the tier.
    meets = PAYOUT % ("", '["group:treasury-managers"]', 2, VENDOR_A, "${{ inputs.amount }}")
    assert check(meets) == []


def test_policy_is_skipped_when_params_are_already_wrong(check: Any, with_policy: Any) -> None:
    found = check(PAYOUT % ("", "[alice]", 1, "0x000000000000000000000000000000000000dEaD", "${{ inputs.amout }}"))
    assert [m for _, _, m in found if "policy" in m] == []


# --------------------------------------------------------------------------- files


def test_check_files(tmp_path: Path, keys: Mapping[str, KeySpec], approvers: Approvers) -> None:
    a, b, c = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    a.write_text(GOOD)
    b.write_text(GOOD)
    c.write_text("name: [\n")
    out = check_files([a, b, c, tmp_path / "d.yaml"], keys=keys, approvers=approvers, policy=None)
    assert out[str(a)] == []
    assert [(p.line, p.message) for p in out[str(b)]] == [(1, f"workflow name 'good' is also used by {a}")]
    assert out[str(c)][0].message.startswith("YAML syntax error")
    assert "cannot read the file" in out[str(tmp_path / "d.yaml")][0].message


def test_ensure_valid(keys: Mapping[str, KeySpec], approvers: Approvers) -> None:
    assert ensure_valid(load(GOOD), keys=keys, approvers=approvers).spec.name == "good"
    with pytest.raises(WorkflowInvalid) as info:
        ensure_valid(load(GOOD.replace("key: transfers", "key: nope")), keys=keys, approvers=approvers)
    assert len(info.value.problems) == 2


MIXED = """\
name: mixed
descripton: a typo
steps:
  - id: first
    op: asset_transfer
    key: nobody
    params: {fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "5"}
  - id: second
    op: no_such_op
    key: transfers
    params: {}
  - id: second
    op: withdraw
    key: ops-read
    colour: red
    params: {coin: USDT, chainType: ETH, address: "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90", quantity: "5"}
  - id: broken
    op: asset_transfer
    key: transfers
    retry: {max_attempts: 0}
    params: {fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "5"}
  - id: after
    needs: [broken]
    op: asset_transfer
    key: transfers
    params: {fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "5"}
"""


def test_schema_problems_do_not_hide_the_other_checks(
    tmp_path: Path, keys: Mapping[str, KeySpec], approvers: Approvers
) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED)
    got = [(p.line, p.col, p.path) for p in check_files([path], keys=keys, approvers=approvers)[str(path)]]
    assert got == [
        (2, 1, "descripton"),  # unknown field (schema)
        (6, 5, "steps[0].key"),  # unknown key profile
        (9, 5, "steps[1].op"),  # unknown operation
        (12, 5, "steps[2].id"),  # duplicate step id
        (14, 5, "steps[2].key"),  # lacks the permission
        (15, 5, "steps[2].colour"),  # unknown field (schema)
        (20, 13, "steps[3].retry.max_attempts"),  # out of range (schema): the step is left out...
    ]  # ...and 'after', which needs it, is not blamed for that


def test_a_schema_problem_outside_the_steps_still_stops_at_the_schema(
    tmp_path: Path, keys: Mapping[str, KeySpec], approvers: Approvers
) -> None:
    path = tmp_path / "bad-inputs.yaml"
    path.write_text(MIXED.replace("descripton: a typo\n", "inputs: {amount: {type: money}}\n"))
    got = check_files([path], keys=keys, approvers=approvers)[str(path)]
    assert [p.path for p in got][:1] == ["inputs.amount.type"]
    assert all(not p.path.endswith(".key") for p in got)  # no partial pass: the inputs are unknown
