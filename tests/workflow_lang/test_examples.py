"""The example workflows in workflows/ validate cleanly, and the JSON Schema fits them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from treasury.cli.validate import workflow_json_schema
from treasury.keys import KeySpec
from treasury.language.inputs import coerce_inputs
from treasury.language.loader import load_workflow, parse_yaml
from treasury.language.templates import TemplateContext, find_refs, resolve
from treasury.language.validate import check_files
from treasury.people.approvers import Approvers

from .conftest import WORKFLOWS
from .helpers import load
from .schema_check import schema_errors

EXAMPLES = sorted(WORKFLOWS.glob("*.yaml"))
BROKEN = Path(__file__).parent / "broken"


def test_the_five_examples_exist() -> None:
    names = {load_workflow(p).spec.name for p in EXAMPLES}
    assert {"treasury-sweep", "vendor-payout", "fiat-payout", "rebalance", "onboard-address"} <= names


def test_examples_validate_clean(
    keys: Mapping[str, KeySpec], approvers: Approvers, policy: Any | None
) -> None:
    results = check_files(EXAMPLES, keys=keys, approvers=approvers, policy=policy)
    assert {f: [str(p) for p in found] for f, found in results.items() if found} == {}


def _example(name: str) -> Any:
    return load_workflow(WORKFLOWS / f"{name}.yaml").spec


def test_sweep_is_scheduled_and_its_params_resolve() -> None:
    spec = _example("treasury-sweep")
    assert spec.schedule is not None
    assert (spec.schedule.cron, spec.schedule.timezone, spec.schedule.catchup) == (
        "0 18 * * MON-FRI", "Asia/Hong_Kong", "latest")
    inputs = coerce_inputs(spec, spec.schedule.inputs, source="schedule.inputs")
    sweep = spec.step("sweep")
    assert (sweep.op, sweep.key) == ("asset_transfer", "transfers")
    params = resolve(sweep.params, TemplateContext(inputs=inputs, run={"id": "r1", "requested_by": "beat"}))
    assert params == {"fromAccountId": "1001", "toAccountId": "1002", "coin": "USDT", "quantity": "10000",
                      "remark": "daily sweep r1"}


def test_vendor_payout_is_guarded_by_a_two_of_three_approval() -> None:
    spec = _example("vendor-payout")
    approve = spec.step("approve")
    assert approve.approval is not None
    assert (approve.approval.approvers, approve.approval.quorum) == (["alice", "bob", "group:risk"], 2)
    pay = spec.step("pay")
    assert (pay.op, pay.key, pay.params["coin"], pay.params["chainType"]) == ("withdraw", "withdrawals", "USDT", "ETH")
    assert spec.guards()["pay"] == ["approve"]


def test_fiat_payout_goes_to_the_payroll_account() -> None:
    spec = _example("fiat-payout")
    pay = spec.step("pay")
    assert (pay.op, pay.key, pay.params["asset"], pay.params["bankAccount"]) == (
        "fiat_withdraw", "fiat", "USD", "HSBC-001-234567-838")
    assert spec.guards()["pay"] == ["approve"]


def test_rebalance_sends_three_legs_from_inputs() -> None:
    spec = _example("rebalance")
    inputs = coerce_inputs(spec, {"price_near": "60100", "price_mid": "60300", "price_far": "60600"})
    assert inputs["leg_quantity"] == Decimal("0.1")
    sell = spec.step("sell")
    assert (sell.op, sell.key) == ("batch_orders", "trading")
    legs = resolve(sell.params, TemplateContext(inputs=inputs))["orders"]
    assert [(leg["symbol"], leg["price"], leg["quantity"]) for leg in legs] == [
        ("BTCUSDT", "60100", "0.1"), ("BTCUSDT", "60300", "0.1"), ("BTCUSDT", "60600", "0.1")]


def test_onboarding_approves_then_verifies_then_signs() -> None:
    spec = _example("onboard-address")
    assert [(s.id, s.op, s.key) for s in spec.steps] == [
        ("approve", None, None),
        ("verify", "whitelist_verify", "whitelisting"),
        ("sign", "whitelist_wallet_signing", "whitelisting"),
    ]
    assert spec.guards() == {"verify": ["approve"], "sign": ["approve"]}
    assert {r.parts[0] for r in find_refs(spec.step("sign").params)} == {
        "coin", "chain", "address", "message", "signature"}


# --------------------------------------------------------------------------- JSON Schema


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return workflow_json_schema()


def test_schema_header_and_shape(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("workflow.schema.json") and schema["title"] == "treasury workflow"
    assert schema["required"] == ["name", "steps"]
    for name in ("WorkflowSpec", "StepSpec", "InputSpec", "ApprovalSpec", "RetryBudget", "ScheduleBlock"):
        model = schema if name == "WorkflowSpec" else schema["$defs"][name]
        assert model["additionalProperties"] is False, name
    op = schema["$defs"]["StepSpec"]["properties"]["op"]["anyOf"][0]
    assert "withdraw" in op["enum"] and "asset_transfer" in op["enum"]
    json.dumps(schema)  # serialisable as printed


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_schema_accepts_every_example(schema: dict[str, Any], path: Path) -> None:
    assert schema_errors(schema, load_workflow(path).data) == []


@pytest.mark.parametrize(
    "name", ["unknown-step-field", "unknown-top-field", "op-and-approval", "input-unknown-type", "bad-name",
             "steps-empty", "quorum-zero", "bad-duration", "unknown-operation"],
)
def test_schema_rejects_broken_files(schema: dict[str, Any], name: str) -> None:
    data = parse_yaml((BROKEN / f"{name}.yaml").read_text(), source=name)
    assert schema_errors(schema, data) != []


def test_schema_accepts_needs_shorthand(schema: dict[str, Any]) -> None:
    data = load("""\
        name: x
        steps:
          - {id: a, op: server_time, key: r}
          - {id: b, op: server_time, key: r, needs: a}
        """).data
    assert schema_errors(schema, data) == []
