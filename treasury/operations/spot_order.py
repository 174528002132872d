"""``spot_order``: one spot order.

Reconciliation reads ``GET /api/v1/spot/order?origClientOrderId=``; ``0211`` (order not
found) is ABSENT. For the policy the asset is the ``symbol`` and the amount the quote
notional: ``amount`` when given, else ``quantity * price``. A market order by quantity has
no notional before it fills, so it is unknown (and refused at send time when a rule needs it).
"""

from __future__ import annotations

from pydantic import model_validator

from treasury.models import Permission, RateClass, RetryStrategy
from treasury.operations.lookups import OrderLookup
from treasury.operations.movement import Movement, ReadMovements, Values
from treasury.operations.params import Amount, ClientId, OrderType, Params, Side, Symbol, TimeInForce
from treasury.operations.spec import OperationSpec

POLICY_OP = "spot_order"


class SpotOrderParams(Params):
    symbol: Symbol
    side: Side
    type: OrderType
    quantity: Amount | None = None
    amount: Amount | None = None
    price: Amount | None = None
    timeInForce: TimeInForce | None = None
    newClientOrderId: ClientId | None = None

    @model_validator(mode="after")
    def _shape(self) -> SpotOrderParams:
        if self.quantity is not None and self.amount is not None:
            raise ValueError("send quantity or amount, not both")
        if self.type in (OrderType.LIMIT, OrderType.LIMIT_MAKER):
            if self.price is None or self.quantity is None:
                raise ValueError(f"a {self.type.value} order needs price and quantity")
            if self.amount is not None:
                raise ValueError("amount is only for MARKET orders")
        else:
            if self.price is not None:
                raise ValueError("a MARKET order takes no price")
            if self.quantity is None and self.amount is None:
                raise ValueError("a MARKET order needs quantity or amount")
        return self


def order_movement(r: Values, leg: int, account: str | None) -> Movement:
    """One order's movement: its symbol and quote notional."""
    symbol = r.text("symbol", "asset", upper=True)
    order_account = r.text("accountId", "account") or account
    if r.given("amount"):
        amount, error = r.amount("amount")
        param = "amount"
    else:
        param = "quantity * price"
        quantity, q_error = r.amount("quantity")
        price, p_error = r.amount("price")
        if quantity is not None and price is not None:
            amount, error = quantity * price, None
        elif "amount" in r.unknown:
            amount, error = None, None
        else:
            amount = None
            error = q_error or (
                f"{p_error}; a spot order's notional needs a price (or an amount) for policy limits"
            )
    return Movement(
        op=POLICY_OP, leg=leg, asset=symbol, amount=amount, account=order_account, destination=None,
        amount_param=param, amount_error=error, unknown=frozenset(r.unknown),
    )


class SpotMoney(ReadMovements):
    policy_op = POLICY_OP
    counted_note: str | None = None
    has_destination = False
    allowlist_needs = ("destination",)

    def _read(self, r: Values, account: str | None) -> list[Movement]:
        return [order_movement(r, 0, account)]

    def allowlist_text(self, mv: Movement) -> tuple[str, dict[str, str]]:
        return (f"{mv.asset} to account {mv.destination}",
                {"asset": mv.asset or "", "account": mv.destination or ""})


SPEC = OperationSpec(
    "spot_order", "POST", "/api/v1.1/spot/order", Permission.TRADE, RateClass.ORDER, 1,
    SpotOrderParams, RetryStrategy.RECONCILE_THEN_RETRY, "one spot order",
    mutates=True, client_id_field="newClientOrderId", noun="spot order", history="order history",
    reconcile=OrderLookup(), money=SpotMoney(),
    result_fields=frozenset({
        "accountId", "symbol", "symbolName", "clientOrderId", "orderId", "transactTime", "price", "origQty",
        "executedQty", "cumulativeQuoteQty", "status", "timeInForce", "type", "side", "reqAmount",
        "concentration",
    }),
)
