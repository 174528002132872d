"""Operations own their behaviour: the executor, reconciler and policy read the declaration."""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

import treasury
import treasury.operations as package
from treasury.execution import StepRequest, new_run_id
from treasury.execution import reconcile as rc
from treasury.execution.preparation import legs_for
from treasury.models import StepState
from treasury.operations import movement as movement_module
from treasury.operations import params as p
from treasury.operations.batch_orders import BatchOrdersParams
from treasury.operations.registry import LISTED, REGISTRY, get_operation, operations, parse_params
from treasury.operations.spot_order import SpotOrderParams
from treasury.policy import parse_policy
from treasury.policy.model import OPS
from treasury.policy.tables import policy_reservations

from .harness import PATHS, make_world

evaluate_module = sys.modules["treasury.policy.evaluate"]  # the module (the package's attribute is the function)

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


# the layers that read declarations: none of them may branch on an operation's name
DECLARATION_READERS = ("execution", "policy", "cli", "runs")


def test_no_branch_on_an_operation_name_in_execution_policy_cli_or_the_run_service() -> None:
    names = "|".join(re.escape(name) for name in REGISTRY)
    branch = re.compile(rf'(==|!=)\s*"({names})"|"({names})"\s*(==|!=)|\bin \(\s*"({names})"|\bcase\s+"({names})"')
    root = Path(treasury.__file__).parent
    paths = [path for folder in DECLARATION_READERS for path in sorted((root / folder).rglob("*.py"))]
    assert root / "runs" / "service.py" in paths and root / "cli" / "ops.py" in paths
    found = [f"{path.relative_to(root)}:{n}: {line.strip()}" for path in paths
             for n, line in enumerate(path.read_text().splitlines(), 1) if branch.search(line)]
    assert found == []
    # the pattern finds what it is for
    assert branch.search('if op_name == "balances" and data:') and branch.search('case "withdraw":')


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


POLICY = b"""limits:
  - {op: withdraw, coin: USDT, max_per_tx: "50000"}
  - {op: spot_order, symbol: BTCUSDT, max_per_tx: "1000"}
"""


@pytest.mark.parametrize("op", ["withdraw", "batch_orders"])
def test_the_reservation_and_the_check_before_a_resend_measure_the_validated_model(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, op: str
) -> None:
    world = make_world(sqlite_engine, policy=parse_policy(POLICY, "policy.yaml"))
    # the first answer is lost (503 before execution): absence is proven, and it is sent again
    world.sim.set_faults([{"method": "POST", "path": PATHS[op], "mode": "error_before", "status": 503, "count": 1}])
    spec = get_operation(op)
    measured: list[Any] = []
    original = evaluate_module.movements

    def spy_movements(name: str, params: Any, **kw: Any) -> Any:
        measured.append(params)
        return original(name, params, **kw)

    parsed: list[Any] = []
    parse = movement_module.parse_amount

    def spy_parse(value: Any, **kw: Any) -> Any:
        parsed.append(value)
        return parse(value, **kw)

    monkeypatch.setattr(evaluate_module, "movements", spy_movements)
    monkeypatch.setattr(movement_module, "parse_amount", spy_parse)
    out = world.executor.execute(world.request(op, max_seconds=300))
    assert out.state is StepState.SUCCEEDED, out
    assert len(world.sent(PATHS[op])) == 2
    stages = [e["payload"].get("stage") for e in world.events("policy.decision")]
    assert stages == [None, "before sending again"]
    # reserved, then checked again: both on the model the client sends, no amount parsed again
    assert len(measured) == 2 and all(isinstance(m, spec.params_model) for m in measured)
    assert parsed == []
    [reservation] = reservations(world)
    expected = "5" if op == "withdraw" else "120"  # a batch counts once, with its summed notional
    assert reservation == expected


def reservations(world: Any) -> list[str]:
    with world.engine.connect() as conn:
        return [r.amount for r in conn.execute(select(policy_reservations))]


def test_a_read_says_how_its_result_is_shown() -> None:
    shown = get_operation("balances").shown
    assert shown is not None
    data = {"userId": "42", "balances": [{"asset": "USDT", "total": "10", "free": "7", "locked": "3", "x": 1}]}
    assert shown.table(data) == ([("USDT", "10", "7", "3")], "balances (user 42)")
    assert shown.table({"balances": []}) == ([], "balances (user ?)")
    assert shown.table({"balances": "none"}) is None and shown.table([data]) is None
    assert get_operation("open_orders").shown is None


def test_the_registry_holds_every_operation_module_that_declares_a_spec() -> None:
    declared = {m.name: getattr(importlib.import_module(f"treasury.operations.{m.name}"), "SPEC", None)
                for m in pkgutil.iter_modules(package.__path__)}
    specs = {name: spec for name, spec in declared.items() if spec is not None}
    assert set(specs) == set(LISTED)
    assert all(REGISTRY[spec.name] is spec for spec in specs.values())
    # ``treasury ops`` lists the reads, the writes in their order, then the cancels
    names = [spec.name for spec in operations()]
    writes = [name for name in names if REGISTRY[name].moves_money or name == "whitelist_wallet_signing"]
    assert writes == [specs[m].name for m in LISTED]
    assert names[-3:] == ["cancel_order", "cancel_orders_by_ids", "cancel_open_orders"]
