"""``batch_orders``: up to 20 spot orders on one symbol in one request.

Each order is a leg with its own client id (``newClientOrderId``), looked up on its own like
a spot order. For the policy a batch counts as one spot-order movement per symbol with the
summed notional, so a batch cannot split its way under a limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, field_validator

from treasury.errors import DuplicateClientId, OutcomeUnknown, ParameterError, Rejected
from treasury.models import ExecState, Permission, RateClass, RetryStrategy, StepState
from treasury.operations.legs import Answered, ItemErrors, LegAnswer, LegView, SentLeg, Standing, succeeded
from treasury.operations.lookups import OrderLookup
from treasury.operations.movement import Checked, Movement, Reader, Resolvable, default_resolvable
from treasury.operations.params import Params
from treasury.operations.spec import OperationSpec
from treasury.operations.spot_order import POLICY_OP, SpotMoney, SpotOrderParams, order_movement

MAX_BATCH_LEGS = 20


class BatchOrdersParams(Params):
    orders: Annotated[list[SpotOrderParams], Field(min_length=1)]

    # a field validator, so that the error names ``orders`` rather than the whole parameter set
    @field_validator("orders")
    @classmethod
    def _legs(cls, orders: list[SpotOrderParams]) -> list[SpotOrderParams]:
        if len(orders) > MAX_BATCH_LEGS:
            raise ValueError(f"at most {MAX_BATCH_LEGS} orders per batch, got {len(orders)}")
        symbols = {o.symbol for o in orders}
        if len(symbols) > 1:
            raise ValueError(f"all orders in a batch must share one symbol, got {sorted(symbols)}")
        return orders


class Orders:
    """One leg per order of ``orders``; the answer has a result per order, matched to its leg
    by client order id (never by position)."""

    def number(self, index: int) -> int | None:
        return index

    def split(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        orders = params.get("orders")
        if not isinstance(orders, list) or not orders:
            raise ParameterError("orders", "must be a non-empty list of orders")
        return [dict(order) for order in orders]

    def join(self, legs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {"orders": list(legs)}

    def parts(self, checked: Params) -> list[Params]:
        if not isinstance(checked, BatchOrdersParams):
            raise TypeError(f"expected BatchOrdersParams, got {type(checked).__name__}")
        return list(checked.orders)

    def whole(self, parts: Sequence[Params]) -> Params:
        orders = [part for part in parts if isinstance(part, SpotOrderParams)]
        if not orders or len(orders) != len(parts):
            raise TypeError("a batch is made of one or more validated spot orders")
        # Each order was validated, and these are some of one batch that was validated whole
        # (one symbol, at most 20): built as it is, not parsed from text again.
        return BatchOrdersParams.model_construct(orders=orders)

    def answer(self, sent: Sequence[SentLeg], data: Any, *, item_error: ItemErrors) -> Answered:
        items = data.get("result") if isinstance(data, Mapping) else None
        items = items if isinstance(items, list) else []
        by_cid: dict[str, dict[str, Any]] = {}
        anonymous: list[dict[str, Any]] = []
        for item in items:
            if not isinstance(item, Mapping):
                continue
            order: Mapping[str, Any] = item["order"] if isinstance(item.get("order"), Mapping) else {}
            cid = str(order.get("clientOrderId") or item.get("clientOrderId") or item.get("newClientOrderId") or "")
            if cid:
                by_cid[cid] = dict(item)
            else:
                anonymous.append(dict(item))
        unmatched = [leg for leg in sent if leg.client_id not in by_cid]
        # Items without a client id cannot be tied to a leg. If there is exactly one such item
        # per unmatched leg and every one is a definite rejection, each of those legs was refused.
        anon_errors = [item_error(i) for i in anonymous]
        all_definite = (len(anonymous) == len(unmatched) and
                        all(e is not None and issubclass(e[0], Rejected) and not issubclass(e[0], DuplicateClientId)
                            for e in anon_errors))
        legs: dict[str, LegAnswer] = {}
        for leg in sent:
            item = by_cid.get(leg.client_id)
            if item is None:
                if all_definite:
                    texts = sorted({f"code {e[1]}: {e[2]}" for e in anon_errors if e})
                    legs[leg.client_id] = LegAnswer(
                        ExecState.FAILED, error="the exchange rejected this leg: " + " / ".join(texts))
                else:
                    legs[leg.client_id] = LegAnswer(
                        ExecState.UNKNOWN, error="the batch answer has no result for this leg")
                continue
            err = item_error(item)
            if err is None:
                legs[leg.client_id] = succeeded(item.get("order") or {})
            elif issubclass(err[0], OutcomeUnknown | DuplicateClientId) or not issubclass(err[0], Rejected):
                legs[leg.client_id] = LegAnswer(ExecState.UNKNOWN, error=f"code {err[1]}: {err[2]}")
            else:
                legs[leg.client_id] = LegAnswer(ExecState.FAILED, error=f"code {err[1]}: {err[2]}")
        return Answered(legs, names={"client_ids": [leg.client_id for leg in sent]}, outcome="batch")

    def standing(self, legs: Sequence[LegView]) -> Standing:
        result: dict[str, Any] = {"legs": [
            {"clientOrderId": leg.client_id, "orderId": leg.exchange_order_id, "status": leg.state.value,
             "error": leg.error if leg.state is not ExecState.SUCCEEDED else None} for leg in legs]}
        attention = [leg for leg in legs if leg.state is ExecState.NEEDS_ATTENTION]
        failed = [leg for leg in legs if leg.state is ExecState.FAILED]
        if attention:
            return Standing(StepState.NEEDS_ATTENTION, result,
                            error="; ".join(f"{leg.client_id}: {leg.error}" for leg in attention),
                            reason=" ".join(leg.reason or "" for leg in attention))
        if failed:
            return Standing(StepState.FAILED, result,
                            error="; ".join(f"{leg.client_id}: {leg.error}" for leg in failed))
        if all(leg.state is ExecState.SUCCEEDED for leg in legs):
            return Standing(StepState.SUCCEEDED, result)
        return Standing(StepState.RUNNING, result, error="not finished")


class BatchMoney(SpotMoney):
    counted_note = "a batch counts per symbol"

    def movements(self, params: Mapping[str, Any], *, account: str | None,
                  resolvable: Resolvable | None) -> list[Movement]:
        orders = params.get("orders")
        is_final = resolvable or default_resolvable
        if isinstance(orders, str) and not is_final(orders):
            return [Movement(op=POLICY_OP, leg=0, asset=None, amount=None, account=account, destination=None,
                             unknown=frozenset({"asset", "amount"}))]
        if not isinstance(orders, list) or not orders:
            return [Movement(op=POLICY_OP, leg=0, asset=None, amount=None, account=account, destination=None,
                             amount_param="orders", amount_error="parameter 'orders' must be a non-empty list")]
        legs: list[Movement] = []
        for index, order in enumerate(orders):
            if not isinstance(order, Mapping):
                legs.append(Movement(op=POLICY_OP, leg=0, asset=None, amount=None, account=account,
                                     destination=None, amount_param="orders",
                                     amount_error=f"orders[{index}] must be a mapping"))
                continue
            legs.append(order_movement(Reader(order, resolvable), 0, account))
        return _group_by_symbol(legs)

    def from_model(self, checked: Params, *, account: str | None) -> list[Movement]:
        if not isinstance(checked, BatchOrdersParams):
            raise TypeError(f"expected BatchOrdersParams, got {type(checked).__name__}")
        return _group_by_symbol([order_movement(Checked(order), 0, account) for order in checked.orders])


def _group_by_symbol(legs: list[Movement]) -> list[Movement]:
    """Sum legs per symbol; a leg with an unknown symbol stays on its own."""
    grouped: dict[str, list[Movement]] = {}
    loose: list[Movement] = []
    for mv in legs:
        if mv.asset is None:
            loose.append(mv)
        else:
            grouped.setdefault(mv.asset, []).append(mv)
    out: list[Movement] = []
    for symbol, group in grouped.items():
        errors = [m.amount_error for m in group if m.amount_error]
        unknown = frozenset().union(*(m.unknown for m in group))
        amounts = [m.amount for m in group if m.amount is not None]
        total = sum(amounts, Decimal(0)) if len(amounts) == len(group) and not errors else None
        accounts = {m.account for m in group}
        out.append(Movement(
            op=POLICY_OP, leg=len(out), asset=symbol, amount=total,
            account=accounts.pop() if len(accounts) == 1 else None, destination=None,
            amount_param="sum of order notionals", amount_error=errors[0] if errors else None,
            unknown=unknown,
        ))
    for mv in loose:
        out.append(Movement(
            op=POLICY_OP, leg=len(out), asset=None, amount=mv.amount, account=mv.account,
            destination=None, amount_param=mv.amount_param, amount_error=mv.amount_error, unknown=mv.unknown,
        ))
    return out


SPEC = OperationSpec(
    "batch_orders", "POST", "/api/v1/spot/batchOrders", Permission.TRADE, RateClass.ORDER, 5,
    BatchOrdersParams, RetryStrategy.RECONCILE_THEN_RETRY,
    "up to 20 orders on one symbol", mutates=True, client_id_field="newClientOrderId", body="json",
    noun="batch order leg", history="order history",
    reconcile=OrderLookup(), money=BatchMoney(), legs=Orders(),
    result_fields=frozenset({"code", "result", "concentration"}),
)
