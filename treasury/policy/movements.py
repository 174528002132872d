"""What a step moves, read from its parameters: operation, asset, amount, account, destination.

Operations and their wire parameters (HashKey PRO names):

- ``withdraw``: ``coin``, ``chainType``, ``address``, ``addressExt``, ``quantity``;
- ``fiat_withdraw``: ``asset``, ``amount``, ``bankAccount`` (the reference);
- ``asset_transfer``: ``fromAccountId`` (the account), ``toAccountId`` (the destination),
  ``coin``, ``quantity``;
- ``spot_order``: ``symbol``; the amount is the quote notional, ``amount`` when given,
  else ``quantity * price``. A market order by quantity has no notional before it fills,
  so it is unknown (and refused at send time when a rule needs it);
- ``batch_orders``: ``orders``, a list of spot orders, counted as one spot-order movement
  per symbol with the summed notional (so a batch cannot split its way under a limit).

Any other operation moves nothing the policy measures.

A value is *unknown* while it is an unresolved template (a string containing ``${{``, or
whatever the caller's ``resolvable`` predicate rejects). Unknown is not the same as
absent or malformed: unknown values skip a rule before run time, bad ones deny it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from treasury.errors import ParameterError
from treasury.models import parse_amount

Resolvable = Callable[[str], bool]
_EVM = re.compile(r"^0x[0-9a-fA-F]{40}$")


def default_resolvable(value: str) -> bool:
    """A string is final unless it still holds a ``${{ … }}`` template."""
    return "${{" not in value


def normalize_destination(value: str) -> str:
    """Compare-ready form: EVM hex addresses ignore case (EIP-55 checksums); others are exact."""
    text = value.strip()
    return text.lower() if _EVM.match(text) else text


@dataclass(frozen=True)
class Movement:
    """One measurable movement of a step. ``None`` means absent unless the field is in ``unknown``."""

    op: str
    leg: int
    asset: str | None
    amount: Decimal | None
    account: str | None
    destination: str | None
    chain: str | None = None
    address_ext: str | None = None
    amount_param: str = "amount"
    amount_error: str | None = None  # absent or malformed (a template is unknown, not an error)
    unknown: frozenset[str] = frozenset()

    def known(self, *names: str) -> bool:
        return not (self.unknown & set(names))


class _Reader:
    """Reads parameters, recording which are still templates."""

    def __init__(self, params: Mapping[str, Any], resolvable: Resolvable | None) -> None:
        self.params = params
        self.is_final = resolvable or default_resolvable
        self.unknown: set[str] = set()

    def text(self, name: str, as_field: str, *, upper: bool = False) -> str | None:
        value = self.params.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            value = str(value)
        if not self.is_final(value):
            self.unknown.add(as_field)
            return None
        value = value.strip()
        return value.upper() if upper else value

    def amount(self, name: str) -> tuple[Decimal | None, str | None]:
        value = self.params.get(name)
        if value is None or value == "":
            return None, f"parameter {name!r} is missing"
        if isinstance(value, str) and not self.is_final(value):
            self.unknown.add("amount")
            return None, None
        try:
            return parse_amount(value, field=name), None
        except ParameterError as exc:
            return None, str(exc)


def movements(
    op: str,
    params: Mapping[str, Any],
    *,
    account: str | None = None,
    resolvable: Resolvable | None = None,
) -> list[Movement]:
    """The movements of one step; empty for operations the policy does not measure."""
    if op == "batch_orders":
        return _batch(params, account, resolvable)
    r = _Reader(params, resolvable)
    if op == "withdraw":
        amount, error = r.amount("quantity")
        address = r.text("address", "destination")
        return [Movement(
            op=op, leg=0, asset=r.text("coin", "asset", upper=True), amount=amount, account=account,
            destination=normalize_destination(address) if address else None,
            chain=r.text("chainType", "chain", upper=True), address_ext=r.text("addressExt", "address_ext"),
            amount_param="quantity", amount_error=error, unknown=frozenset(r.unknown),
        )]
    if op == "fiat_withdraw":
        amount, error = r.amount("amount")
        return [Movement(
            op=op, leg=0, asset=r.text("asset", "asset", upper=True), amount=amount, account=account,
            destination=r.text("bankAccount", "destination"), amount_param="amount",
            amount_error=error, unknown=frozenset(r.unknown),
        )]
    if op == "asset_transfer":
        amount, error = r.amount("quantity")
        source = r.text("fromAccountId", "account")
        return [Movement(
            op=op, leg=0, asset=r.text("coin", "asset", upper=True), amount=amount,
            account=source if source is not None or "account" in r.unknown else account,
            destination=r.text("toAccountId", "destination"), amount_param="quantity",
            amount_error=error, unknown=frozenset(r.unknown),
        )]
    if op == "spot_order":
        return [_spot(r, 0, account)]
    return []


def _spot(r: _Reader, leg: int, account: str | None) -> Movement:
    symbol = r.text("symbol", "asset", upper=True)
    order_account = r.text("accountId", "account") or account
    if r.params.get("amount") not in (None, ""):
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
        op="spot_order", leg=leg, asset=symbol, amount=amount, account=order_account, destination=None,
        amount_param=param, amount_error=error, unknown=frozenset(r.unknown),
    )


def _batch(params: Mapping[str, Any], account: str | None, resolvable: Resolvable | None) -> list[Movement]:
    orders = params.get("orders")
    is_final = resolvable or default_resolvable
    if isinstance(orders, str) and not is_final(orders):
        return [Movement(op="spot_order", leg=0, asset=None, amount=None, account=account, destination=None,
                         unknown=frozenset({"asset", "amount"}))]
    if not isinstance(orders, list) or not orders:
        return [Movement(op="spot_order", leg=0, asset=None, amount=None, account=account, destination=None,
                         amount_param="orders", amount_error="parameter 'orders' must be a non-empty list")]
    legs: list[Movement] = []
    for index, order in enumerate(orders):
        if not isinstance(order, Mapping):
            legs.append(Movement(op="spot_order", leg=0, asset=None, amount=None, account=account,
                                 destination=None, amount_param="orders",
                                 amount_error=f"orders[{index}] must be a mapping"))
            continue
        legs.append(_spot(_Reader(order, resolvable), 0, account))
    return _group_by_symbol(legs)


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
            op="spot_order", leg=len(out), asset=symbol, amount=total,
            account=accounts.pop() if len(accounts) == 1 else None, destination=None,
            amount_param="sum of order notionals", amount_error=errors[0] if errors else None,
            unknown=unknown,
        ))
    for mv in loose:
        out.append(Movement(
            op="spot_order", leg=len(out), asset=None, amount=mv.amount, account=mv.account,
            destination=None, amount_param=mv.amount_param, amount_error=mv.amount_error, unknown=mv.unknown,
        ))
    return out
