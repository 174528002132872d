"""Operations own their behaviour: the executor, reconciler and policy read the declaration."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

import treasury
from treasury.execution import StepRequest, new_run_id
from treasury.execution import reconcile as rc
from treasury.execution.preparation import legs_for
from treasury.models import StepState
from treasury.operations import params as p
from treasury.operations.batch_orders import BatchOrdersParams
from treasury.operations.registry import REGISTRY, get_operation, operations, parse_params
from treasury.operations.spot_order import SpotOrderParams
from treasury.policy.model import OPS

from .harness import make_world

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.010", "price": "30000"}


def test_every_operation_with_a_client_id_declares_its_lookup_and_its_words() -> None:
    for spec in operations():
        if spec.moves_money:
            assert spec.reconcile is not None, spec.name
            assert spec.noun and spec.history != "history", spec.name


def test_the_policy_names_the_operations_whose_movements_are_their_own() -> None:
    assert set(OPS) == {"withdraw", "fiat_withdraw", "asset_transfer", "spot_order"}
    batch = get_operation("batch_orders").money
    assert batch is not None and batch.policy_op == "spot_order"


def test_reconciliation_follows_the_declaration_not_the_name() -> None:
    renamed = replace(get_operation("withdraw"), name="withdraw_elsewhere")
    plans = [rc.plan(spec, "T1", {"coin": "USDT"}, sent_at=NOW, now=NOW)
             for spec in (get_operation("withdraw"), renamed)]
    assert plans[0] == plans[1] and [lk.source for lk in plans[0]] == ["withdraw_orders", "balance_flow"]


def test_no_branch_on_an_operation_name_in_execution_or_policy() -> None:
    names = "|".join(re.escape(name) for name in REGISTRY)
    branch = re.compile(rf'(==|!=)\s*"({names})"|\bin \(\s*"({names})"')
    root = Path(treasury.__file__).parent
    found = [f"{path.relative_to(root)}:{n}: {line.strip()}"
             for folder in ("execution", "policy") for path in sorted((root / folder).glob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if branch.search(line)]
    assert found == []


def test_legs_are_validated_into_the_model_and_a_subset_of_a_batch_is_sent_as_validated() -> None:
    spec = get_operation("batch_orders")
    req = StepRequest(run_id=new_run_id(), step_id="buy", operation=spec.name, key_profile="trader",
                      params={"orders": [ORDER, {**ORDER, "price": "29000"}]}, actor="alice")
    legs = legs_for(spec, req)
    assert all(isinstance(leg.checked, SpotOrderParams) for leg in legs)
    assert [leg.checked.newClientOrderId for leg in legs if leg.checked] == [leg.client_id for leg in legs]
    second = [leg.checked for leg in legs[1:] if leg.checked]
    sent = spec.legs.whole(second)
    assert isinstance(sent, BatchOrdersParams)
    assert sent.to_wire() == parse_params(spec, {"orders": [legs[1].params]}).to_wire()
    assert sent.to_wire()["orders"][0]["quantity"] == "0.01"  # Decimal to the exchange's form, once


@pytest.mark.parametrize("op", ["withdraw", "batch_orders"])
def test_a_step_is_validated_once_and_the_client_gets_the_model(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, op: str
) -> None:
    world = make_world(sqlite_engine)
    spec = get_operation(op)
    given: list[Any] = []
    call = world.client.call

    def spy_call(operation: Any, profile: Any, params: Any = None, **kw: Any) -> Any:
        given.append(params)
        return call(operation, profile, params, **kw)

    validated: list[Any] = []
    model = spec.params_model
    original = model.model_validate

    def spy_validate(cls: type[p.Params], obj: Any, *args: Any, **kw: Any) -> p.Params:
        validated.append(obj)
        return original(obj, *args, **kw)

    monkeypatch.setattr(world.client, "call", spy_call)
    monkeypatch.setattr(model, "model_validate", classmethod(spy_validate))
    out = world.executor.execute(world.request(op))
    assert out.state is StepState.SUCCEEDED, out
    assert len(given) == 1 and isinstance(given[0], model)
    assert len(validated) == 1
